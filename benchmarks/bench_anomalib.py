"""anomalib's DRAEM trained with anomalib's own synthetic anomalies and with defectgen's, on MVTec bottle.

    python benchmarks/bench_anomalib.py --json docs/results/anomalib_bottle_cpu.json   # the published CPU budget:
                                                           # 8 DRAEM runs (4 generators, seeds 0 and 1) of ~22 min
    python benchmarks/bench_anomalib.py --seeds 0 --json s0.json & \
        python benchmarks/bench_anomalib.py --seeds 1 --json s1.json        # the same, split over two processes
    python benchmarks/bench_anomalib.py --merge s0.json s1.json --json merged.json   # ... and one table of both
    python benchmarks/bench_anomalib.py --budget gpu --device cuda   # GPU budget
    python benchmarks/bench_anomalib.py --steps 2 --size 32 --generators anomalib cutpaste_3way   # smoke run
    python benchmarks/bench_anomalib.py --timing-only --device cuda       # generator time per batch only

Needs ``pip install 'defectgen[anomalib]'``. Nothing is downloaded: DRAEM's texture folder (``dtd_dir``, the
DTD data set in the paper, which anomalib fetches when the folder is missing) is ``--textures``, an existing
local folder; by default the DeepPCB templates of ``../shared/data`` stand in for DTD, as foreign images
whose augmented copies fill the Perlin blobs. anomalib's generator and defectgen's ``draem`` preset read the
same folder, so they differ only in how they make the anomaly.

1. **Generator time per batch**, in the same run: anomalib's ``PerlinAnomalyGenerator`` (as DRAEM builds it)
   and each defectgen generator through :class:`~defectgen.compat.anomalib.AnomalibGenerator`, on the same
   ``(--time-batch, 3, 256, 256)`` batch of bottle training images, median of ``--repeats`` calls.
2. **DRAEM** (``anomalib.models.Draem``, its own network, loss and optimiser) trained for ``--steps`` steps of
   ``--batch`` images at ``--size`` px per generator and seed, from the same initial weights for a seed
   (``lightning.seed_everything(seed)`` before the model is built); then tested on all 83 bottle test images
   by anomalib's own evaluator: image AUROC, pixel AUROC and AUPRO (FPR limit 0.3). The time per training step
   (median over the steps after the first three) and the generator's share of it are measured inside the run.

Generators (``--generators``): ``anomalib`` (DRAEM's default ``PerlinAnomalyGenerator`` over ``--textures``,
``blend_factor=(0.1, 1.0)``, half the samples left normal), ``draem`` (defectgen's DRAEM preset over the same
textures), ``cutpaste_3way`` (the CutPaste paper's normal / CutPaste / scar thirds) and ``perlin_self``
(DRAEM's Perlin blobs filled with the image's own shuffled blocks, MemSeg's structure source; half normal).

``--json PATH`` writes the raw results file (``benchmarks/raw_results.py``: every run, the generator timing, the
command, versions and machine), rewritten after every DRAEM run so a stopped run keeps what it finished.
``--merge`` makes one such file from the runs of several (``merged_from`` names them; the generator timing is
the last file's that has one). ``render_tables(raw)`` renders the tables the script prints and the docs publish.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from raw_results import command_line, markdown_table, write_raw  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "mvtec_bottle_256"
TEXTURES = ROOT.parent / "shared" / "data" / "deeppcb_400" / "templates"

BUDGETS = {
    # DRAEM's network has 97 M parameters: a 64 px step of 8 images takes about 3.5 s on 2 cores, 6.6 s on one
    "cpu": {"size": 64, "steps": 200, "batch": 8, "seeds": [0, 1]},
    # the paper trains 700 epochs of 8 images at 256 px; this is about 190 epochs of bottle's 209 images
    "gpu": {"size": 256, "steps": 5000, "batch": 8, "seeds": [0, 1, 2]},
}


def defectgen_ops(textures: Path) -> dict:
    """The defectgen side of the comparison, as operator configs (None: anomalib's own generator)."""
    return {
        "anomalib": None,
        "draem": {"op": "draem", "textures": str(textures)},
        "cutpaste_3way": "cutpaste_3way",
        "perlin_self": {"op": "perlin", "p": 0.5},
    }


class TimedGenerator(torch.nn.Module):
    """Wraps a generator and records how long each call takes (synchronised on CUDA)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner
        self.seconds: list = []

    def forward(self, images):
        _sync(images.device)
        start = time.perf_counter()
        out = self.inner(images)
        _sync(images.device)
        self.seconds.append(time.perf_counter() - start)
        return out


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def step_timer():
    """A Lightning callback that records the wall time of every training step."""
    from lightning.pytorch.callbacks import Callback

    class StepTimer(Callback):
        def __init__(self):
            self.seconds: list = []
            self._start = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            _sync(pl_module.device)
            self._start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            _sync(pl_module.device)
            self.seconds.append(time.perf_counter() - self._start)

    return StepTimer()


def build_generator(name: str, spec, textures: Path):
    """anomalib's generator as DRAEM builds it, or a defectgen operator behind AnomalibGenerator."""
    if spec is None:
        from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator

        return PerlinAnomalyGenerator(anomaly_source_path=textures, blend_factor=(0.1, 1.0))
    from defectgen.compat.anomalib import AnomalibGenerator

    return AnomalibGenerator(spec)


def time_generators(names, textures: Path, data: Path, batch: int, repeats: int, device: str) -> dict:
    """Median seconds per call of each generator on the same batch of bottle images (256 px, float [0, 1])."""
    from defectgen.io.images import load_folder

    images = load_folder(data / "train" / "good", size=256, limit=batch).float().div(255).to(device)
    specs = defectgen_ops(textures)
    out = {}
    for name in names:
        torch.manual_seed(0)
        generator = build_generator(name, specs[name], textures)
        generator(images)  # warm-up: texture folders are read, kernels compiled
        times = []
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            generator(images)
            _sync(device)
            times.append(time.perf_counter() - start)
        out[name] = statistics.median(times)
    return out


def train_and_test(name: str, spec, seed: int, budget: dict, data: Path, textures: Path, device: str,
                   workdir: Path) -> dict:
    import lightning
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from anomalib.metrics import AUPRO, AUROC, Evaluator
    from anomalib.models import Draem
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms import v2

    lightning.seed_everything(seed, verbose=False)
    size = budget["size"]
    evaluator = Evaluator(test_metrics=[
        AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
        AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_"),
        AUPRO(fields=["anomaly_map", "gt_mask"], prefix="pixel_", fpr_limit=0.3),
    ])
    model = Draem(dtd_dir=textures, pre_processor=PreProcessor(transform=v2.Resize((size, size))),
                  evaluator=evaluator, visualizer=False)
    if spec is not None:
        from defectgen.compat.anomalib import AnomalibGenerator

        model.augmenter = AnomalibGenerator(spec)  # seeded from the training seed (torch.initial_seed())
    model.augmenter = TimedGenerator(model.augmenter)
    datamodule = MVTecAD(root=data.parent, category=data.name, train_batch_size=budget["batch"],
                         eval_batch_size=16, num_workers=0, val_split_mode="same_as_test", seed=seed)
    timer = step_timer()
    engine = Engine(max_steps=budget["steps"], accelerator="gpu" if device.startswith("cuda") else "cpu",
                    devices=1, barebones=True, callbacks=[timer], default_root_dir=workdir / f"{name}_{seed}",
                    # validation (threshold and normalisation statistics) runs once, before the test
                    check_val_every_n_epoch=10**6)
    start = time.perf_counter()
    engine.fit(model, datamodule=datamodule)
    train_seconds = time.perf_counter() - start
    metrics = engine.test(model, datamodule=datamodule, verbose=False)[0]
    steps = timer.seconds[3:] or timer.seconds
    generator = model.augmenter.seconds[3:] or model.augmenter.seconds
    return {"generator": name, "seed": seed, "image_auroc": metrics["image_AUROC"],
            "pixel_auroc": metrics["pixel_AUROC"], "aupro": metrics["pixel_AUPRO"],
            "step_s": statistics.median(steps), "generator_s": statistics.median(generator),
            "steps": len(timer.seconds), "train_s": train_seconds}


def summarise(rows: list, names: list) -> list:
    table = []
    for name in names:
        mine = [r for r in rows if r["generator"] == name]
        if not mine:
            continue
        entry = {"generator": name, "seeds": [r["seed"] for r in mine]}
        for key in ("image_auroc", "pixel_auroc", "aupro", "step_s", "generator_s"):
            values = [r[key] for r in mine]
            entry[key] = statistics.mean(values)
            entry[key + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        table.append(entry)
    return table


# the README's names of the generators
README_LABELS = {"anomalib": "anomalib's `PerlinAnomalyGenerator`", "draem": "`draem` (same textures)",
                 "cutpaste_3way": "`cutpaste_3way`",
                 "perlin_self": "`perlin` over the image's own shuffled blocks, p = 0.5"}


def _pm(entry: dict, key: str, scale: float = 100.0, digits: int = 1) -> str:
    sd = f" ± {scale * entry[key + '_std']:.{digits}f}" if len(entry["seeds"]) > 1 else ""
    return f"{scale * entry[key]:.{digits}f}{sd}"


def render_tables(raw: dict) -> dict:
    """The tables of a raw results file: ``draem`` (mean ± std over seeds, step and generator time), ``timing``
    (generator ms per batch and speed against anomalib's), ``readme`` (the README's summary of both) and ``runs``
    (every DRAEM run)."""
    results = raw["results"]
    table, timing = results["table"], results.get("generator_seconds") or {}
    tables = {"draem": markdown_table(
        ["generator", "image AUROC", "pixel AUROC", "AUPRO (0.3)", "s / step", "generator s / step"],
        [[e["generator"], _pm(e, "image_auroc"), _pm(e, "pixel_auroc"), _pm(e, "aupro"), _pm(e, "step_s", 1, 2),
          _pm(e, "generator_s", 1, 3)] for e in table])}
    base = timing.get("anomalib")
    if timing and base:
        tables["timing"] = markdown_table(["generator", "ms per batch", "speed vs anomalib's generator"],
                                          [[name, f"{1000 * sec:.1f}", f"{base / sec:.2f}x"]
                                           for name, sec in timing.items()])
    rows, compared = [], 0
    for e in table:
        ms = timing.get(e["generator"])
        if ms is None:
            cell = "-"
        elif e["generator"] == "anomalib" or not base:
            cell = f"{1000 * ms:.0f}"
        else:
            compared += 1
            cell = f"{1000 * ms:.0f} ({base / ms:.3g}x{' faster' if compared == 1 and base > ms else ''})"
        rows.append([README_LABELS.get(e["generator"], f"`{e['generator']}`"), _pm(e, "image_auroc"),
                     _pm(e, "pixel_auroc"), _pm(e, "aupro"), cell])
    batch = results.get("timing_batch")
    tables["readme"] = markdown_table(["generator", "image AUROC", "pixel AUROC", "AUPRO",
                                       f"generator ms per ({batch}, 3, 256, 256) batch"], rows)
    tables["runs"] = markdown_table(
        ["generator", "seed", "image AUROC", "pixel AUROC", "AUPRO", "s / step", "generator s / step"],
        [[r["generator"], r["seed"], f"{100 * r['image_auroc']:.1f}", f"{100 * r['pixel_auroc']:.1f}",
          f"{100 * r['aupro']:.1f}", f"{r['step_s']:.2f}", f"{r['generator_s']:.4f}"] for r in results["runs"]])
    return tables


def markdown(result: dict) -> str:
    """What the script prints: a header line, the DRAEM table and the generator timing."""
    budget = result["budget"]
    tables = render_tables({"results": result})
    lines = [f"DRAEM on mvtec bottle, {budget['size']} px, {budget['steps']} steps of {budget['batch']}, "
             f"seeds {budget['seeds']}, {result.get('device', 'cpu')}", "", tables["draem"]]
    if "timing" in tables:
        lines += ["", tables["timing"]]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--textures", type=Path, default=TEXTURES,
                        help="an existing folder of texture images for DRAEM (stands in for DTD)")
    parser.add_argument("--generators", nargs="+", default=list(defectgen_ops(TEXTURES)),
                        choices=list(defectgen_ops(TEXTURES)))
    parser.add_argument("--steps", type=int, help="override the budget's training steps")
    parser.add_argument("--size", type=int, help="override the budget's image size")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the budget's seeds")
    parser.add_argument("--time-batch", type=int, default=64, help="batch size of the generator timing")
    parser.add_argument("--repeats", type=int, default=20, help="generator timing: calls per generator (median)")
    parser.add_argument("--timing-only", action="store_true", help="time the generators, train nothing")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                        help="print one table from the runs of earlier --json files (generator timing: the last "
                             "file that has one) and run nothing; with --json / --markdown, write it there too")
    parser.add_argument("--replace", nargs="+", default=[], metavar="GENERATOR",
                        help="with --merge: take these generators' runs from the first file that has them only "
                             "(new runs of a changed generator replacing every earlier one, all seeds)")
    parser.add_argument("--json", type=Path, help="write the raw results file here (rewritten after every DRAEM "
                                                  "run; published: docs/results/anomalib_bottle_cpu.json)")
    parser.add_argument("--markdown", type=Path, help="write the tables here")
    args = parser.parse_args(argv)
    command = command_line(__file__, argv)
    if args.merge:
        return merge(args.merge, args.json, args.markdown, command, replace=args.replace)
    for path, what in ((args.data, "--data"), (args.textures, "--textures")):
        if not path.is_dir():
            parser.error(f"{what} {path} is not a folder")
    budget = dict(BUDGETS[args.budget])
    for key in ("steps", "size", "seeds"):
        if getattr(args, key) is not None:
            budget[key] = getattr(args, key)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, device "
          f"{args.device}; budget {budget}", flush=True)
    # anomalib's generator is always timed: it is the baseline of the ratios
    timed = ["anomalib"] + [name for name in args.generators if name != "anomalib"]
    timing = time_generators(timed, args.textures, args.data, args.time_batch, args.repeats, args.device)
    for name, seconds in timing.items():
        print(f"generator {name}: {1000 * seconds:.1f} ms per ({args.time_batch}, 3, 256, 256) batch", flush=True)

    specs = defectgen_ops(args.textures)
    rows = []
    threads = torch.get_num_threads()
    result = {"budget": budget, "device": args.device, "threads": threads, "timing_batch": args.time_batch,
              "timing_repeats": args.repeats, "timing_threads": threads, "generator_seconds": timing, "runs": rows,
              "table": []}
    with tempfile.TemporaryDirectory() as workdir:
        for seed in [] if args.timing_only else budget["seeds"]:
            for name in args.generators:
                row = train_and_test(name, specs[name], seed, budget, args.data, args.textures, args.device,
                                     Path(workdir))
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.json:  # a run stopped later keeps the DRAEM runs it finished
                    result["table"] = summarise(rows, args.generators)
                    write_raw(args.json, "bench_anomalib", command, result)
    result["table"] = summarise(rows, args.generators)
    if args.json:
        write_raw(args.json, "bench_anomalib", command, result)
    return _write(result, args.markdown)


def _write(result: dict, markdown_path) -> dict:
    text = markdown(result)
    print(text)
    if markdown_path:
        markdown_path.write_text(text + "\n")
    return result


def _results(loaded: dict) -> dict:
    """A result file's results: a raw results file's, or an older plain file (the results at the top)."""
    return loaded["results"] if "results" in loaded and "benchmark" in loaded else loaded


def merge(paths, json_path, markdown_path, command: str, replace=()) -> dict:
    """One result from the runs of several result files (e.g. seeds or generators run as separate processes).
    A generator in ``replace`` takes its runs from the first file that has any (a changed generator's new runs
    replace all of its earlier ones, not seed by seed).

    Its raw file names the merged runs' commands (or files) in ``merged_from`` and takes the date, versions and
    machine of the runs: the latest date, the first file's versions and machine."""
    loaded = [json.loads(Path(p).read_text()) for p in paths]
    parts = [_results(part) for part in loaded]
    rows, seen, owner = [], set(), {}
    for k, part in enumerate(parts):
        for row in part["runs"]:
            key = (row["generator"], row["seed"])
            if row["generator"] in replace and owner.setdefault(row["generator"], k) != k:
                continue  # replaced by the first file's runs of this generator
            if key not in seen:  # a run present in two files counts once
                seen.add(key)
                rows.append(row)
    names = [name for name in defectgen_ops(TEXTURES) if any(r["generator"] == name for r in rows)]
    rows.sort(key=lambda r: (r["seed"], names.index(r["generator"])))
    timed = next((part for part in reversed(parts) if part.get("generator_seconds")), {})
    budget = {**parts[0]["budget"], "seeds": sorted({r["seed"] for r in rows})}
    result = {key: parts[0][key] for key in ("budget", "device", "threads") if key in parts[0]}
    result.update(budget=budget, generator_seconds=timed.get("generator_seconds", {}), runs=rows,
                  table=summarise(rows, names))
    if timed:
        for key in ("timing_batch", "timing_repeats", "timing_threads"):
            if key in timed:
                result[key] = timed[key]
    if json_path:
        merged_from = []
        for path, part in zip(paths, loaded):
            raw = "results" in part and "benchmark" in part
            merged_from += (part.get("merged_from") or [part["command"]]) if raw else [str(path)]
        raws = [part for part in loaded if "results" in part and "benchmark" in part]
        write_raw(json_path, "bench_anomalib", command, result, merged_from=list(dict.fromkeys(merged_from)),
                  date=max(part["date"] for part in raws) if raws else None,
                  versions=raws[0]["versions"] if raws else None,
                  machine_info=raws[0]["machine"] if raws else None)
    return _write(result, markdown_path)


if __name__ == "__main__":
    main(sys.argv[1:])
