"""Does a detector trained on synthetic PCB defects find real ones? Faster R-CNN and YOLO on DeepPCB.

Data: ``../shared/data/deeppcb_400`` (400 aligned pairs: a defect-free template, the tested image, its boxes).
The pairs are split by id, fixed: sorted by id, every 4th pair (index 3, 7, 11, ...) is a test pair (100), the
other 300 train. Every run is evaluated once, at the end of its budget, on the 100 real tested images,
class-agnostic (each run's classes differ; "is there a defect here"): mAP@50, mAP@50:95, and the agnostic AP
against each real type (the other types' boxes ignored).

Training data per run (every synthetic run paints on the 300 training templates only):

- ``real``: the 300 real tested images with their boxes (the reference);
- ``synth_pcb``: ``recipes/pcb_defects.yaml`` (opens, shorts, copper blobs, holes composed from parts);
- ``synth_cutpaste``: plain ``cutpaste``;
- ``synth_transplant``: the real defects of 20 training pairs (chosen by seed), cut out by difference with
  their templates (``DefectBank.from_deeppcb``) and transplanted, copper-removing types on copper and
  copper-adding types on substrate;
- ``real20``: 20 real training images (chosen by seed) alone;
- ``synth_pcb+real20``: the PCB recipe plus the same 20 real images (``--real-repeat R``: each of them R times
  per epoch, so they are not diluted among the 300 synthetic ones; the run is then named ``synth_pcb+real20xR``).

Synthetic images get ``--defects-per-image`` defects (real ones hold 2-13) and their boxes the 10 px margin
(at 640 px) that DeepPCB's labels have around each defect. Every run sees the same number of training images
(``--images-seen``, so 20 real images are shown 15 times as often as 300).

    python benchmarks/bench_object.py                       # CPU budget, both detectors, every run
    python benchmarks/bench_object.py --budget gpu --device cuda
    python benchmarks/bench_object.py --detectors fasterrcnn --runs real synth_pcb --json out.json
    python benchmarks/bench_object.py --json docs/results/object_deeppcb_cpu.json   # the raw results file

``--json PATH`` writes the raw results file (``benchmarks/raw_results.py``), rewritten after every run; an
existing file's finished runs are kept and not run again, and a file continued by another command names every
command in ``merged_from``. ``render_tables(raw)`` renders the table the script prints.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from raw_results import command_line, markdown_table, write_raw  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "deeppcb_400"
RUNS = ("real", "synth_pcb", "synth_cutpaste", "synth_transplant", "real20", "synth_pcb+real20")
DETECTORS = ("fasterrcnn", "yolo")
BUDGETS: Dict[str, Dict[str, Any]] = {
    # images seen per run: 300 x epochs; sized so that 12 runs finish in about an hour on 2 CPU cores
    "cpu": {"image_size": 320, "images_seen": {"fasterrcnn": 300 * 3, "yolo": 300 * 8}, "seeds": [0],
            "batch_size": {"fasterrcnn": 4, "yolo": 16}},
    "gpu": {"image_size": 640, "images_seen": {"fasterrcnn": 300 * 24, "yolo": 300 * 100}, "seeds": [0, 1, 2],
            "batch_size": {"fasterrcnn": 8, "yolo": 16}},
}
REAL_FEW = 20
TYPES_ON_COPPER = ("open", "mousebite", "pin_hole")       # remove copper: belong on the (dark) copper
TYPES_ON_SUBSTRATE = ("short", "spur", "spurious_copper")  # add copper: belong on the (bright) substrate


def split_ids(root: Path):
    """(train ids, test ids): sorted ids, every 4th (index % 4 == 3) a test pair."""
    from defectgen.io import read_pairs

    ids = sorted(item.name for item in read_pairs(root))
    return [i for k, i in enumerate(ids) if k % 4 != 3], [i for k, i in enumerate(ids) if k % 4 == 3]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    p.add_argument("--detectors", nargs="+", choices=DETECTORS, default=list(DETECTORS))
    p.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    p.add_argument("--seeds", type=int, nargs="+", help="default: the budget's")
    p.add_argument("--image-size", type=int, help="default: the budget's")
    p.add_argument("--images-seen", type=int, help="training images per run (default: the budget's, per detector)")
    p.add_argument("--defects-per-image", type=int, default=4)
    p.add_argument("--box-margin-640", type=float, default=10.0,
                   help="margin added to synthetic boxes, in px at 640 px (DeepPCB's labels: 10)")
    p.add_argument("--real-repeat", type=int, default=1,
                   help="synth_pcb+real20: each real image R times per epoch (default 1: 20 of 320 images)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, help="the raw results file: every run's report; an existing file's finished "
                                             "runs are kept (published: docs/results/object_deeppcb_cpu.json)")
    return p.parse_args(argv)


class Bench:
    def __init__(self, args):
        from detectors.data import read_deeppcb, read_templates

        self.args = args
        budget = BUDGETS[args.budget]
        self.size = args.image_size or budget["image_size"]
        self.train_ids, self.test_ids = split_ids(args.data)
        everything = read_deeppcb(args.data, size=self.size)
        order = {name: k for k, name in enumerate(everything.names)}
        self.real_train = everything.subset([order[i] for i in self.train_ids])
        self.real_test = read_deeppcb(args.data).subset([order[i] for i in self.test_ids])  # native 640 px
        templates = read_templates(args.data, self.size)
        self.templates = templates[[order[i] for i in self.train_ids]]
        self.margin = args.box_margin_640 * self.size / 640

    def operator(self, run: str, seed: int):
        """The defectgen operator config of a synthetic run (the transplant bank is built here)."""
        if run.startswith("synth_pcb"):
            return {"recipe": str(REPO / "recipes" / "pcb_defects.yaml")}
        if run == "synth_cutpaste":
            return {"op": ["cutpaste"]}
        from defectgen import DefectBank, DefectTransplant, OneOf
        from defectgen.io.labelled import choose_real

        ids = list(choose_real(self.real_train, REAL_FEW, seed).names)
        branches = []
        for types, foreground in ((TYPES_ON_COPPER, "otsu_dark"), (TYPES_ON_SUBSTRATE, "otsu_bright")):
            bank = DefectBank.from_deeppcb(self.args.data, ids=ids, types=types)
            # binarised scans: copy the defect's pixels as they are (a feathered, brightness-matched paste greys them)
            branches.append(DefectTransplant(bank=bank, foreground=foreground, blend="replace",
                                             match_brightness=False))
        return {"op": [OneOf(branches, labels=[1, 1])]}

    def source(self, run: str, seed: int, device: str):
        from defectgen.io.labelled import choose_real
        from detectors.data.sources import LabelledSource, SyntheticSource, mix

        if run == "real":
            return LabelledSource(self.real_train, self.size, device, seed, agnostic=True)
        if run == "real20":
            return LabelledSource(choose_real(self.real_train, REAL_FEW, seed), self.size, device, seed,
                                  agnostic=True)
        op = self.operator(run, seed)
        synthetic = SyntheticSource(self.templates, op=op.get("op"), recipe=op.get("recipe"), image_size=self.size,
                                    device=device, seed=seed, agnostic=True,
                                    defects_per_image=self.args.defects_per_image, box_margin_px=self.margin)
        if run.endswith("+real20"):
            few = choose_real(self.real_train, REAL_FEW, seed)
            repeated = few
            for _ in range(self.args.real_repeat - 1):
                repeated = repeated.concat(few)
            # proportional, as published: each of the 20 real images --real-repeat times per epoch among the 300
            return mix(synthetic, repeated, seed=seed, real_fraction=None)
        return synthetic

    def train_and_evaluate(self, detector_kind: str, run: str, seed: int) -> Dict[str, Any]:
        from detectors.evaluation import evaluate_labelled
        from detectors.registry import create_detector

        budget = BUDGETS[self.args.budget]
        source = self.source(run, seed, self.args.device)
        seen = self.args.images_seen or budget["images_seen"][detector_kind]
        epochs = max(1, math.ceil(seen / len(source)))
        detector = create_detector(detector_kind, class_names=list(source.class_names), image_size=self.size,
                                   batch_size=budget["batch_size"][detector_kind], seed=seed)
        start = time.perf_counter()
        detector.fit(source, epochs=epochs, device=self.args.device, progress=sys.stderr.isatty())
        seconds = time.perf_counter() - start
        report = evaluate_labelled(detector, self.real_test, agnostic=True)
        return {"detector": detector_kind, "run": run_label(run, self.args.real_repeat), "seed": seed, "epochs": epochs,
                "images_per_epoch": len(source), "train_seconds": round(seconds, 1), "report": report}


def run_label(run: str, real_repeat: int) -> str:
    """The name a run's row carries: ``synth_pcb+real20x8`` when its real images are repeated."""
    return f"{run}x{real_repeat}" if run.endswith("+real20") and real_repeat > 1 else run


def table(rows: List[Dict[str, Any]], types: List[str]) -> str:
    head = ["detector", "training data", "real labels", "mAP@50", "mAP@50:95", *types, "train s"]
    body = []
    for row in rows:
        overall = row["report"]["overall"]
        per = row["report"].get("per_true_class", {})
        real = "300" if row["run"] == "real" else "20" if "real20" in row["run"] else "0"
        body.append([row["detector"], row["run"], real, _pct(overall.get("map_50")), _pct(overall.get("map_50_95")),
                     *(_pct(per.get(t, {}).get("ap_50")) for t in types), f"{row['train_seconds']:.0f}"])
    return markdown_table(head, body)


def render_tables(raw: Dict[str, Any]) -> Dict[str, str]:
    """``deeppcb``: one row per (detector, run, seed), the README's layout."""
    from defectgen.io import DEEPPCB_TYPES

    return {"deeppcb": table(raw["results"]["rows"], list(DEEPPCB_TYPES))}


def previous_runs(path) -> Dict[str, Any]:
    """An existing ``--json`` file's rows, and the commands that made them (a raw file or the older plain one)."""
    if path is None or not path.is_file():
        return {"rows": [], "commands": []}
    saved = json.loads(path.read_text())
    if "results" in saved and "benchmark" in saved:  # a raw results file
        return {"rows": saved["results"]["rows"], "commands": saved.get("merged_from") or [saved["command"]]}
    return {"rows": saved["rows"], "commands": [f"earlier runs in {path.name} (command not recorded)"]}


def targets(rows: List[Dict[str, Any]]) -> List[str]:
    """The issue's two targets, per detector and seed-averaged: synthetic-only >= 50 % of real-only mAP@50, and
    synthetic + 20 real >= 20 real alone + 5 points."""
    out = []
    for det in sorted({r["detector"] for r in rows}):
        mean = {}
        for run in sorted({r["run"] for r in rows if r["detector"] == det}):
            values = [r["report"]["overall"].get("map_50", 0.0) for r in rows
                      if r["detector"] == det and r["run"] == run]
            mean[run] = sum(values) / len(values)
        if "real" in mean:
            for run in ("synth_pcb", "synth_cutpaste", "synth_transplant"):
                if run in mean:
                    ratio = mean[run] / mean["real"] if mean["real"] > 0 else float("nan")
                    out.append(f"{det}: {run} reaches {100 * ratio:.0f} % of real-only mAP@50 "
                               f"({'meets' if ratio >= 0.5 else 'misses'} the >= 50 % target)")
        for run in (r for r in mean if r.startswith("synth_pcb+real20") and "real20" in mean):
            gain = 100 * (mean[run] - mean["real20"])
            out.append(f"{det}: {run} is {gain:+.1f} points over 20 real alone "
                       f"({'meets' if gain >= 5 else 'misses'} the >= +5 target)")
    return out


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def main(argv=None) -> List[Dict[str, Any]]:
    args = parse_args(argv)
    if not (args.data / "templates").is_dir():
        raise SystemExit(f"{args.data} is not a DeepPCB-style folder (templates/, images/, labels/)")
    from defectgen.environment import describe

    budget = BUDGETS[args.budget]
    seeds = args.seeds or budget["seeds"]
    bench = Bench(args)
    print(describe())
    print(f"budget {args.budget}: {bench.size} px, images seen per run {args.images_seen or budget['images_seen']}, "
          f"seeds {seeds}, {args.defects_per_image} synthetic defects per image, box margin {bench.margin:.1f} px; "
          f"train {len(bench.train_ids)} / test {len(bench.test_ids)} pairs (every 4th id)", flush=True)
    previous = previous_runs(args.json)
    rows: List[Dict[str, Any]] = previous["rows"]
    command = command_line(__file__, argv)
    # a file continued by another command holds the runs of several: say so (a resumed run of the same command is
    # still that command's)
    commands = list(dict.fromkeys(previous["commands"] + [command])) if rows else [command]
    merged_from = commands if len(commands) > 1 else None
    done = {(r["detector"], r["run"], r["seed"]) for r in rows}
    if args.real_repeat < 1:
        raise SystemExit("--real-repeat must be >= 1")
    for detector_kind in args.detectors:
        for run in args.runs:
            for seed in seeds:
                if (detector_kind, run_label(run, args.real_repeat), seed) in done:
                    continue
                row = bench.train_and_evaluate(detector_kind, run, seed)
                rows.append(row)
                overall = row["report"]["overall"]
                print(f"{detector_kind:10s} {run:18s} seed {seed}: mAP@50 {_pct(overall.get('map_50'))}, "
                      f"{row['epochs']} epochs of {row['images_per_epoch']} in {row['train_seconds']:.0f} s",
                      flush=True)
                if args.json is not None:
                    results = json.loads(json.dumps({"budget": args.budget, "size": bench.size, "rows": rows},
                                                    default=str))
                    write_raw(args.json, "bench_object", command, results, merged_from=merged_from)
    from defectgen.io import DEEPPCB_TYPES

    print()
    print(table(rows, list(DEEPPCB_TYPES)))
    print()
    for line in targets(rows):
        print(line)
    return rows


if __name__ == "__main__":
    main()
