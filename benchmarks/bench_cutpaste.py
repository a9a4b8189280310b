"""CutPaste detector on an MVTec-layout category: which pretext helps, against two controls, over seeds.

    python benchmarks/bench_cutpaste.py                       # CPU budget (about 30 min on 2 cores), bottle
    python benchmarks/bench_cutpaste.py --budget paper --device cuda
    python benchmarks/bench_cutpaste.py --pretexts 3way untrained --seeds 0 1 --steps 50 --json out.json
    python benchmarks/bench_cutpaste.py --json docs/results/cutpaste_bottle_cpu.json   # the raw results file

Rows: the paper's pretexts ``cutpaste``, ``scar`` and ``3way``, and two controls: ``cutout`` (a defect that is
not cut-and-paste, as pretext) and ``untrained`` (the same network with random weights, only the Gaussian
density fitted). Each row is trained with the same budget for every seed and evaluated once at the end of
the budget on the whole test split (nothing is selected on test data); the table shows mean +- std over seeds
of image AUROC, pixel AUROC and AUPRO (to FPR 0.3) of Grad-CAM maps (image level) or patch maps (patch level).

Budgets (every value can be overridden by its flag):

- ``cpu``: 128 px images, 100 steps of 32 normal images (+ their defective copies), seeds 0 1 2.
- ``paper``: as we read Li et al. (2021) and its appendix: 256 px, batch of 32 normal images per class
  (96 images per 3-way step), SGD lr 0.03, momentum 0.9, weight decay 3e-5, cosine decay, 256 epochs of the
  training set (``ceil(256 * N / 32)`` steps; 1672 for bottle's 209 images), seeds 0-4.

``--json PATH`` writes the raw results file (``benchmarks/raw_results.py``: every run, per defect type, with the
command, versions and machine); ``render_tables(raw)`` renders the table the script prints.
"""
from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raw_results import command_line, markdown_table, write_raw  # noqa: E402
from defectgen.checks import resolve_device  # noqa: E402
from defectgen.io import read_mvtec  # noqa: E402
from detectors.cutpaste import CutPasteDetector  # noqa: E402
from detectors.evaluation import evaluate_detector  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_bottle_256"
PRETEXTS = ["cutpaste", "scar", "3way", "cutout", "untrained"]
BUDGETS = {
    "cpu": {"image_size": 128, "steps": 100, "batch_size": 32, "seeds": [0, 1, 2]},
    "paper": {"image_size": 256, "steps": None, "batch_size": 32, "seeds": [0, 1, 2, 3, 4]},
}
METRICS = ("image_auroc", "pixel_auroc", "aupro")
PAPER_EPOCHS = 256


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MVTec-layout category folder")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--pretexts", nargs="+", default=PRETEXTS,
                        help="rows: named pretexts, defectgen operator names, or 'untrained'")
    parser.add_argument("--seeds", nargs="+", type=int, help="default: the budget's")
    parser.add_argument("--steps", type=int, help="training steps (default: the budget's)")
    parser.add_argument("--image-size", type=int, help="default: the budget's")
    parser.add_argument("--batch-size", type=int, help="normal images per step (default: the budget's)")
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--head-layers", type=int, nargs="+",
                        help="MLP head widths (default: the reference code's eight 512s and a 128)")
    parser.add_argument("--level", choices=["image", "patch"], default="image")
    parser.add_argument("--patch-stride", type=int, default=None,
                        help="patch level: stride of the dense patch grid at evaluation (default: the model's, 4)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    parser.add_argument("--no-pixel", action="store_true", help="image metrics only (no anomaly maps)")
    parser.add_argument("--json", type=Path,
                        help="write the raw results file here: every run and the summary (the published CPU budget: "
                             "docs/results/cutpaste_bottle_cpu.json)")
    return parser.parse_args(argv)


def settings(args: argparse.Namespace) -> Dict:
    budget = dict(BUDGETS[args.budget])
    for key in ("image_size", "steps", "batch_size", "seeds"):
        value = getattr(args, key)
        if value is not None:
            budget[key] = value
    if budget["steps"] is None:  # the paper's 256 epochs, in steps of batch_size normal images
        train = len(read_mvtec(args.data, require_train=True).train)
        budget["steps"] = math.ceil(PAPER_EPOCHS * train / budget["batch_size"])
    budget["device"] = str(resolve_device(args.device))
    return budget


def run_one(args, budget: Dict, pretext: str, seed: int) -> Dict:
    untrained = pretext == "untrained"
    det = CutPasteDetector(pretext="3way" if untrained else pretext, image_size=budget["image_size"],
                           level=args.level, batch_size=budget["batch_size"], learning_rate=args.lr, seed=seed,
                           **({"head_layers": args.head_layers} if args.head_layers else {}))
    start = time.perf_counter()
    det.fit(args.data, steps=0 if untrained else budget["steps"], device=budget["device"], progress=False)
    train_s = time.perf_counter() - start
    extra = {"stride": args.patch_stride} if args.level == "patch" and args.patch_stride else {}
    report = evaluate_detector(det, args.data, pixel=not args.no_pixel, **extra)
    tail = det.history[-10:]
    return {"pretext": pretext, "seed": seed, "train_s": round(train_s, 2), "eval_s": report["seconds"],
            "final_loss": statistics.fmean(h["loss"] for h in tail) if tail else None,
            "final_accuracy": statistics.fmean(h["accuracy"] for h in tail) if tail else None,
            "overall": report["overall"], "per_defect": report.get("per_defect", {})}


def summarise(runs: List[Dict], pretexts: List[str]) -> List[Dict]:
    rows = []
    for pretext in pretexts:
        mine = [r for r in runs if r["pretext"] == pretext]
        row = {"pretext": pretext, "runs": len(mine), "train_s": statistics.fmean(r["train_s"] for r in mine)}
        for key in METRICS:
            values = [r["overall"][key] for r in mine if key in r["overall"]]
            if values:
                row[key] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
        accuracy = [r["final_accuracy"] for r in mine if r["final_accuracy"] is not None]
        row["final_accuracy"] = statistics.fmean(accuracy) if accuracy else None
        rows.append(row)
    return rows


CONTROLS = ("cutout", "untrained")


def table(rows: List[Dict], head_layers: Optional[List[int]] = None) -> str:
    """The README's layout: mean ± std per metric, the pretext accuracy and the training time per run."""
    first = "pretext" + (f", head ({', '.join(map(str, head_layers))})" if head_layers else "")
    body = []
    for row in rows:
        cells = [f"{100 * row[k][0]:.1f} ± {100 * row[k][1]:.1f}" if k in row else "-" for k in METRICS]
        acc = "-" if row["final_accuracy"] is None else f"{100 * row['final_accuracy']:.0f} %"
        name = f"control: {row['pretext']}" if row["pretext"] in CONTROLS else row["pretext"]
        body.append([name, *cells, acc, f"{row['train_s']:.0f}"])
    return markdown_table([first, "image AUROC", "pixel AUROC", "AUPRO@0.3", "pretext acc.", "train s/run"], body)


def render_tables(raw: Dict) -> Dict[str, str]:
    """``pretexts``: the table of a raw results file, as the script prints it."""
    results = raw["results"]
    return {"pretexts": table(results["rows"], results.get("head_layers"))}


def main(argv: Optional[List[str]] = None) -> List[Dict]:
    args = parse_args(argv)
    budget = settings(args)
    header = (f"CutPaste on {args.data.name}: budget {args.budget} -> {budget['image_size']} px, "
              f"{budget['steps']} steps x {budget['batch_size']} normal images, lr {args.lr}, level {args.level}, "
              f"head {args.head_layers or 'default'}, "
              f"seeds {budget['seeds']}, device {budget['device']}; torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, {platform.machine()}")
    print(header, flush=True)
    start = time.perf_counter()
    runs = []
    for seed in budget["seeds"]:
        for pretext in args.pretexts:
            run = run_one(args, budget, pretext, seed)
            runs.append(run)
            metrics = "  ".join(f"{k} {100 * run['overall'][k]:.1f}" for k in METRICS if k in run["overall"])
            print(f"  seed {seed} {pretext:>10}: {metrics}  (train {run['train_s']:.0f} s, "
                  f"eval {run['eval_s']:.0f} s)", flush=True)
    rows = summarise(runs, args.pretexts)
    results = {"header": header, "budget": budget, "level": args.level, "lr": args.lr,
               "head_layers": args.head_layers, "patch_stride": args.patch_stride, "data": str(args.data),
               "total_s": round(time.perf_counter() - start, 1), "runs": runs, "rows": rows}
    print()
    print(render_tables({"results": results})["pretexts"])
    print(f"\ntotal {results['total_s']:.0f} s; mean ± std over {len(budget['seeds'])} seeds, "
          "each model evaluated once at the end of its budget")
    if args.json:
        write_raw(args.json, "bench_cutpaste", command_line(__file__, argv), results)
    return rows


if __name__ == "__main__":
    main()
