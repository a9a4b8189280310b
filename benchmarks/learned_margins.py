"""How far the learned tests' measurements sit from their limits, over seeds, and whether breakages fail them.

A test that asserts a learned result (an AUROC, an accuracy, a falling loss) runs on whatever torch release a
fresh machine installs, with whatever thread count it has. This script runs the very measurement each such test
makes (``measure_*(seed, breakage)`` in the test modules, listed in their ``LEARNED`` tables) over many seeds and
prints, per quantity, the limit and the spread; then it runs each deliberate breakage (shuffled pretext labels,
negated scores, transposed maps, ...) and shows which limits it misses. Run it in every virtual environment you
want to vouch for::

    python benchmarks/learned_margins.py                       # seeds 0-9, breakages on seeds 0-2
    python benchmarks/learned_margins.py --threads 1 --seeds 0 1 2 3 4 --json margins.json

Exit status 1 when a seed misses a limit or a breakage passes all of them (a test without teeth).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import pytest
import torch

from defectgen.environment import describe, versions

TESTS = Path(__file__).resolve().parents[1] / "tests"
MODULES = ["test_detectors_cutpaste", "test_detectors_rcnn", "test_detectors_yolo"]


def learned_tests():
    """``{name: (measure, limits, breakages)}`` from every module's ``LEARNED`` table."""
    sys.path.insert(0, str(TESTS))
    table = {}
    for module in MODULES:
        try:
            table.update(__import__(module).LEARNED)
        except (Exception, pytest.skip.Exception) as error:  # e.g. an optional library missing (importorskip)
            print(f"{module}: skipped ({type(error).__name__}: {error})")
    return table


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--breakage-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tests", nargs="+", help="names from the LEARNED tables (default: all)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own choice)")
    p.add_argument("--json", type=Path, help="write every measurement here")
    return p.parse_args(argv)


def _public(measured):
    return {k: v for k, v in measured.items() if not k.startswith("_")}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(TESTS))
    from learned import check_limits

    table = learned_tests()
    names = args.tests or list(table)
    unknown = sorted(set(names) - set(table))
    if unknown:
        raise SystemExit(f"unknown test(s) {unknown}; known: {sorted(table)}")
    print(describe())
    print(f"seeds {args.seeds}, breakages on seeds {args.breakage_seeds}")
    record, problems = {"versions": versions(), "threads": torch.get_num_threads(), "tests": {}}, []
    for name in names:
        measure, limits, breakages = table[name]
        start = time.perf_counter()
        runs = {seed: _public(measure(seed)) for seed in args.seeds}
        seconds = (time.perf_counter() - start) / len(args.seeds)
        print(f"\n## {name}  ({seconds:.1f} s per run)\n")
        print("| quantity | limit | min | median | max | seeds missing it |")
        print("|---|---|---|---|---|---|")
        for key, (op, threshold) in limits.items():
            values = [runs[s][key] for s in args.seeds]
            missing = [s for s in args.seeds if check_limits({key: runs[s][key]}, {key: (op, threshold)})]
            problems += [f"{name} seed {s}: {key} = {runs[s][key]:.4f}" for s in missing]
            print(f"| {key} | {op} {threshold} | {min(values):.3f} | {statistics.median(values):.3f} | "
                  f"{max(values):.3f} | {missing or '-'} |")
        for key in sorted(set(runs[args.seeds[0]]) - set(limits)):  # measured for the record, not asserted
            values = [runs[s][key] for s in args.seeds]
            print(f"| {key} | (not asserted) | {min(values):.3f} | {statistics.median(values):.3f} | "
                  f"{max(values):.3f} | |")
        broken = {}
        for breakage in breakages:
            broken[breakage] = {s: _public(measure(s, breakage)) for s in args.breakage_seeds}
            caught = {s: check_limits(broken[breakage][s], limits) for s in args.breakage_seeds}
            escaped = [s for s, missed in caught.items() if not missed]
            problems += [f"{name}: breakage {breakage} passes every limit on seed {s}" for s in escaped]
            shown = "; ".join(f"seed {s}: misses " + ", ".join(m.split(" (")[0] for m in missed) if missed
                              else f"seed {s}: PASSES" for s, missed in caught.items())
            print(f"\nbreakage {breakage}: {shown}")
        record["tests"][name] = {"limits": limits, "runs": runs, "breakages": broken, "seconds_per_run": seconds}
    if args.json:
        args.json.write_text(json.dumps(record, indent=1, default=str))
    print("\nOK: every seed meets every limit and every breakage misses one" if not problems
          else "\nPROBLEMS:\n" + "\n".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
