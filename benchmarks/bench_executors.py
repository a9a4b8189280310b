"""Executors on one machine: a study's cells and a generation job's shards on a local Ray against the same work in
one process, with the results compared exactly.

    python benchmarks/bench_executors.py --json docs/results/executors_cpu.json     # the published run
    python benchmarks/bench_executors.py --smoke                                     # a minute: the script works

Every run is the ``defectgen`` command a user types, in its own process (``python -m defectgen ...``), timed from
start to exit, so Ray's start and the workers' imports are part of its time, as they are for a user.

- **study**: a recipe of 8 small cells (the CutPaste detector, ``--steps`` steps at 64 px on texture tiles written
  to the work folder, tested on ``shape`` defects painted on a quarter of them, held out: families none / cutout /
  scar / shape x seeds 0, 1) run three ways into three study folders:
  in one process with one torch thread, in one process with torch's default threads (all cores), and with
  ``--executor ray`` (Ray started by the command with the machine's CPUs; each cell a task of one CPU, one torch
  thread). Ray's metrics must equal the one-thread local run's, cell by cell (a cell is a pure function of its
  settings at a given thread count); whether the default-thread run's equal them too is reported.
- **generation**: ``--count`` images (``cutpaste``, ``--size`` px, YOLO labels) in one process, with ``--workers``
  = the core count, and with ``--executor ray --shards 4``; the three manifests must hash the same
  (``defectgen.generation.manifest_digest``); each run's images per second, and the ratios to the one-process run.

``--json PATH`` writes the raw results file (``benchmarks/raw_results.py``: every run's command, wall time and
result, the versions and the machine); ``render_tables(raw)`` renders the tables the script prints. ``--smoke``
shrinks both parts (2 cells of 2 steps, 48 images in 2 shards) to check that the script works; its numbers mean
nothing and it writes no file unless ``--json`` is given.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_generate import write_ok_folder  # noqa: E402  (the same OK images bench_generate.py writes)
from defectgen.generation import manifest_digest  # noqa: E402
from raw_results import ROOT, command_line, markdown_table, write_raw  # noqa: E402

FAMILIES = {"none": "none", "cutout": {"op": "cutout"}, "scar": {"op": "scar"}, "shape": {"op": "shape"}}


# -- the inputs -----------------------------------------------------------------------------------------------
def write_study_data(root: Path, ok_images: int) -> None:
    """``ok_images`` OK images of 64 px (texture tiles, rolled variants)."""
    write_ok_folder(root / "ok", ok_images, 64)


def study_recipe(families: Dict[str, Any], seeds: List[int], steps: int, held_out: int) -> Dict[str, Any]:
    """The CutPaste detector on the OK images, tested on ``shape`` defects painted on ``held_out`` of them."""
    return {"name": "bench_executors", "data": {"format": "folder", "ok": "ok", "holdout_ok": held_out},
            "families": families, "regimes": ["synthetic"],
            "detectors": {"cutpaste": {"kind": "cutpaste", "settings": {"batch_size": 16, "head_layers": [64]},
                                       "steps": steps}},
            "test_sets": {"shape": {"synthetic": {"op": "shape"}, "images": held_out}}, "seeds": seeds,
            "metrics": ["image_auroc"], "image_size": 64, "resources": {"cpus": 1}}


# -- one timed command ------------------------------------------------------------------------------------------
def run(argv: List[str], threads: Optional[int], work: Path) -> Dict[str, Any]:
    """``python -m defectgen ARGV`` in its own process (``threads``: ``OMP_NUM_THREADS``, None: unset): its command
    as typed (the work folder written ``$WORK``) and wall seconds; a failure stops the benchmark with the command's
    stderr."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(
        os.pathsep))
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "defectgen", *map(str, argv)]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    prefix = f"OMP_NUM_THREADS={threads} " if threads is not None else ""
    typed = prefix + "defectgen " + " ".join(map(str, argv))
    return {"command": typed.replace(str(work), "$WORK"), "seconds": round(seconds, 2)}


def cell_metrics(folder: Path) -> Dict[str, Any]:
    """``{cell id: {test set: metrics}}`` from a study folder's ``results.jsonl``, and the torch threads each cell
    ran with (from its versions line)."""
    metrics: Dict[str, Any] = {}
    threads = set()
    for line in (folder / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["status"] != "done":
            raise SystemExit(f"cell {row['cell']} of {folder} failed: {row.get('error')}")
        metrics.setdefault(row["cell"], {})[row["test_set"]] = row["metrics"]
        threads.add(row["versions"].split("torch ")[-1].split(" threads")[0])
    return {"metrics": metrics, "torch_threads": sorted(threads)}


# -- the two parts ------------------------------------------------------------------------------------------------
def bench_study(work: Path, families: Dict[str, Any], seeds: List[int], steps: int, ok_images: int
                ) -> Dict[str, Any]:
    root = work / "study"
    write_study_data(root, ok_images)
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(study_recipe(families, seeds, steps, held_out=max(2, ok_images // 4))))
    common = ["ablate", recipe, "--device", "cpu", "--quiet"]
    runs = {"local, 1 thread": run(common + ["--out", root / "local1"], threads=1, work=work),
            "local, default threads": run(common + ["--out", root / "local"], threads=None, work=work),
            "ray": run(common + ["--out", root / "ray", "--executor", "ray"], threads=1, work=work)}
    found = {"local, 1 thread": cell_metrics(root / "local1"), "local, default threads": cell_metrics(root / "local"),
             "ray": cell_metrics(root / "ray")}
    for name, result in found.items():
        runs[name].update(torch_threads=result["torch_threads"])
    identical = found["ray"]["metrics"] == found["local, 1 thread"]["metrics"]
    base = runs["local, 1 thread"]["seconds"]
    for name in runs:
        runs[name]["wall_ratio_to_local_1_thread"] = round(runs[name]["seconds"] / base, 3)
    return {"cells": len(found["ray"]["metrics"]), "steps": steps, "families": list(families), "seeds": seeds,
            "runs": runs, "ray_equals_local_1_thread": identical,
            "default_threads_equal_local_1_thread": found["local, default threads"]["metrics"]
            == found["local, 1 thread"]["metrics"],
            "metrics": found["ray"]["metrics"]}


def bench_generation(work: Path, count: int, size: int, files: int, shards: int) -> Dict[str, Any]:
    root = work / "generation"
    write_ok_folder(root / "ok", files, size)
    common = ["generate", "--input", root / "ok", "--op", "cutpaste", "--count", count, "--size", size,
              "--device", "cpu", "--no-progress"]
    cores = os.cpu_count() or 1
    plans = {"local": ["--output", root / "local"],
             f"local, --workers {cores}": ["--output", root / "workers", "--workers", cores],
             f"ray, {shards} shards": ["--output", root / "ray", "--executor", "ray", "--shards", shards]}
    runs = {}
    for name, extra in plans.items():
        runs[name] = run(common + extra, threads=None, work=work)
        runs[name]["manifest_sha256"] = manifest_digest(extra[1])
        runs[name]["images_per_s"] = round(count / runs[name]["seconds"], 1)
        shutil.rmtree(extra[1])  # the images: thousands of files, kept only as long as needed
    base = runs["local"]["images_per_s"]
    for name in runs:
        runs[name]["throughput_ratio_to_local"] = round(runs[name]["images_per_s"] / base, 3)
    return {"count": count, "size": size, "files": files, "shards": shards, "runs": runs,
            "identical": len({r["manifest_sha256"] for r in runs.values()}) == 1}


# -- the tables -----------------------------------------------------------------------------------------------------
def render_tables(raw) -> Dict[str, str]:
    """``study``: wall time per way of running the 8 cells and the ratio to one process with one thread;
    ``generation``: images per second per way and the ratio to one process."""
    r = raw["results"]
    study = r["study"]
    rows = [[name, ", ".join(run["torch_threads"]), f"{run['seconds']:.1f} s",
             f"{run['wall_ratio_to_local_1_thread']:.2f}x"] for name, run in study["runs"].items()]
    same = "yes" if study["ray_equals_local_1_thread"] else "**no**"
    header = [f"{study['cells']} cells ({study['steps']} steps each)", "torch threads per cell", "wall time",
              "wall / local 1 thread"]
    tables = {"study": markdown_table(header, rows)
              + f"\n\nRay's metrics equal the one-thread local run's, cell by cell: {same}."}
    gen = r["generation"]
    rows = [[name, f"{run['seconds']:.1f} s", f"{run['images_per_s']:.1f}", f"{run['throughput_ratio_to_local']:.2f}x",
             run["manifest_sha256"][:12]] for name, run in gen["runs"].items()]
    tables["generation"] = markdown_table([f"{gen['count']} images, {gen['size']} px", "wall time", "images/s",
                                           "throughput / local", "manifest sha256"], rows)
    return tables


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="CutPaste steps per study cell (default: %(default)s)")
    parser.add_argument("--ok-images", type=int, default=48, help="OK images of the study (default: %(default)s)")
    parser.add_argument("--count", type=int, default=10000, help="images generated (default: %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="generated image side (default: %(default)s)")
    parser.add_argument("--files", type=int, default=64, help="OK images generation reads (default: %(default)s)")
    parser.add_argument("--shards", type=int, default=4, help="generation shards on Ray (default: %(default)s)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that checks the script works")
    parser.add_argument("--work", type=Path, default=None, help="the work folder (default: a temporary one, removed)")
    parser.add_argument("--json", type=Path, default=None,
                        help="write the raw results file here (e.g. docs/results/executors_cpu.json)")
    args = parser.parse_args(argv)
    families, seeds = FAMILIES, [0, 1]
    if args.smoke:
        families, seeds = {"none": "none", "cutout": {"op": "cutout"}}, [0]
        args.steps, args.ok_images, args.count, args.size, args.files, args.shards = 2, 12, 48, 64, 8, 2
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_executors_"))
    try:
        study = bench_study(work, families, seeds, args.steps, args.ok_images)
        generation = bench_generation(work, args.count, args.size, args.files, args.shards)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    results = {"smoke": args.smoke, "study": study, "generation": generation}
    tables = render_tables({"results": results})
    print(tables["study"])
    print()
    print(tables["generation"])
    if args.json:
        write_raw(args.json, "bench_executors", command_line(__file__, argv), results)
        print(f"wrote {args.json}")
    failures = [what for what, ok in (("study: Ray's metrics differ from the local run's",
                                       study["ray_equals_local_1_thread"]),
                                      ("generation: the manifests differ", generation["identical"])) if not ok]
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
