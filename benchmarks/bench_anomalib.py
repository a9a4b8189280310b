"""anomalib's DRAEM trained with anomalib's own synthetic anomalies and with defectgen's, on MVTec bottle.

    python benchmarks/bench_anomalib.py                              # CPU budget: 4 DRAEM runs of ~22 min each
    python benchmarks/bench_anomalib.py --generators anomalib draem & \
        python benchmarks/bench_anomalib.py --generators cutpaste_3way perlin_self   # ~45 min on 2 cores
    python benchmarks/bench_anomalib.py --budget gpu --device cuda   # GPU budget
    python benchmarks/bench_anomalib.py --steps 2 --size 32 --generators anomalib cutpaste_3way   # smoke run
    python benchmarks/bench_anomalib.py --timing-only --device cuda       # generator time per batch only
    python benchmarks/bench_anomalib.py --merge a.json b.json     # one table from runs split over processes

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
DATA = ROOT.parent / "shared" / "data" / "mvtec_bottle_256"
TEXTURES = ROOT.parent / "shared" / "data" / "deeppcb_400" / "templates"

BUDGETS = {
    # DRAEM's network has 97 M parameters: a 64 px step of 8 images takes about 3.5 s on 2 cores, 6.6 s on one
    "cpu": {"size": 64, "steps": 200, "batch": 8, "seeds": [0]},
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


def markdown(table: list, timing: dict, budget: dict, device: str) -> str:
    lines = [f"DRAEM on mvtec bottle, {budget['size']} px, {budget['steps']} steps of {budget['batch']}, "
             f"seeds {budget['seeds']}, {device}", "",
             "| generator | image AUROC | pixel AUROC | AUPRO (0.3) | s / step | generator s / step |",
             "|---|---|---|---|---|---|"]
    for e in table:
        def pm(key, scale=100.0, digits=1):
            sd = f" ± {scale * e[key + '_std']:.{digits}f}" if len(e["seeds"]) > 1 else ""
            return f"{scale * e[key]:.{digits}f}{sd}"
        lines.append(f"| {e['generator']} | {pm('image_auroc')} | {pm('pixel_auroc')} | {pm('aupro')} | "
                     f"{pm('step_s', 1, 2)} | {pm('generator_s', 1, 3)} |")
    if timing:
        base = timing.get("anomalib")
        lines += ["", "| generator | ms per batch | speed vs anomalib's generator |", "|---|---|---|"]
        for name, seconds in timing.items():
            lines.append(f"| {name} | {1000 * seconds:.1f} | {base / seconds:.2f}x |")
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
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--timing-only", action="store_true", help="time the generators, train nothing")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                        help="print one table from the runs of earlier --json files (generator timing: the last "
                             "file that has one) and run nothing; with --json / --markdown, write it there too")
    parser.add_argument("--json", type=Path, help="write the results here (rewritten after every DRAEM run)")
    parser.add_argument("--markdown", type=Path, help="write the tables here")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.json, args.markdown)
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
    result = {"budget": budget, "device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "timing_batch": args.time_batch, "generator_seconds": timing, "runs": rows}
    try:
        import anomalib

        result["anomalib"] = anomalib.__version__
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as workdir:
        for seed in [] if args.timing_only else budget["seeds"]:
            for name in args.generators:
                row = train_and_test(name, specs[name], seed, budget, args.data, args.textures, args.device,
                                     Path(workdir))
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.json:  # a run stopped later keeps the DRAEM runs it finished
                    args.json.write_text(json.dumps(result, indent=2))
    result["table"] = summarise(rows, args.generators)
    return _write(result, args.device, args.json, args.markdown)


def _write(result: dict, device: str, json_path, markdown_path) -> dict:
    text = markdown(result["table"], result["generator_seconds"], result["budget"], device)
    print(text)
    if json_path:
        json_path.write_text(json.dumps(result, indent=2))
    if markdown_path:
        markdown_path.write_text(text + "\n")
    return result


def merge(paths, json_path, markdown_path) -> dict:
    """One result from the runs of several result files (e.g. seeds or generators run as separate processes)."""
    loaded = [json.loads(Path(p).read_text()) for p in paths]
    rows, seen = [], set()
    for part in loaded:
        for row in part["runs"]:
            key = (row["generator"], row["seed"])
            if key not in seen:  # a run present in two files counts once
                seen.add(key)
                rows.append(row)
    names = [name for name in defectgen_ops(TEXTURES) if any(r["generator"] == name for r in rows)]
    rows.sort(key=lambda r: (r["seed"], names.index(r["generator"])))
    timing = next((p["generator_seconds"] for p in reversed(loaded) if p.get("generator_seconds")), {})
    budget = {**loaded[0]["budget"], "seeds": sorted({r["seed"] for r in rows})}
    result = {**loaded[0], "budget": budget, "generator_seconds": timing, "runs": rows,
              "table": summarise(rows, names), "merged_from": [str(p) for p in paths]}
    return _write(result, result.get("device", "cpu"), json_path, markdown_path)


if __name__ == "__main__":
    main(sys.argv[1:])
