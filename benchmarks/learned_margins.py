"""How far the learned tests' measurements sit from their limits, over seeds, and whether breakages fail them.

A test that asserts a learned result (an AUROC, an accuracy, boxes found on new images) runs on whatever torch
release a fresh machine installs, with whatever thread count it has. This script runs the very measurement each
such test makes (``measure_*(seed, breakage)`` in the test modules, listed in their ``LEARNED`` tables) over
several seeds and prints, per quantity, the limit and the spread; where the claim is that training helps, the
same quantity for the same network untrained (``<q>_control``) and the gain over it (``<q>_gain``, the asserted
margin; see ``tests/learned.py``). Then it runs each deliberate breakage (no training, a learning rate of 0,
shuffled pretext labels or boxes, negated scores, transposed maps, ...) and shows which limits it misses.
It is the one place these margins are measured::

    python benchmarks/learned_margins.py                  # the published run: seeds 0-4, breakages on 0-2, 1 thread
    python benchmarks/learned_margins.py --tests fasterrcnn_training --seeds 0 1 2 --json /tmp/m.json

The full run writes its raw results (every seed's measurements, every breakage's, the command, versions and
machine) to ``docs/results/learned_margins.json`` (``benchmarks/raw_results.py``), from which
``docs/render_tables.py`` renders the published tables with :func:`render_tables`; a run of chosen ``--tests``
writes only where ``--json`` says. Exit status 1 when a seed misses a limit or a breakage passes all of them (a
test without teeth).
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from raw_results import RESULTS, command_line, markdown_table, write_raw  # noqa: E402

TESTS = Path(__file__).resolve().parents[1] / "tests"
MODULES = ["test_detectors_cutpaste", "test_detectors_rcnn", "test_detectors_yolo", "test_mixing", "test_pretrain"]
DEFAULT_JSON = RESULTS / "learned_margins.json"
sys.path.insert(0, str(TESTS))
from learned import meets  # noqa: E402


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
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(5)))
    p.add_argument("--breakage-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tests", nargs="+", help="names from the LEARNED tables (default: all)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1; 0: torch's own choice)")
    p.add_argument("--json", type=Path, help=f"raw results file (default with every test: {DEFAULT_JSON})")
    p.add_argument("--no-json", action="store_true", help="write no raw results file")
    return p.parse_args(argv)


def _public(measured):
    return {k: (None if v is None else float(v)) for k, v in measured.items() if not k.startswith("_")}


def _missed(value, op, threshold) -> bool:
    return not meets(value, op, threshold)  # the tests' own rule (tests/learned.py)


# -- the tables (printed and published: one piece of code) ----------------------------------------------------
def _integral(values) -> bool:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return bool(finite) and all(float(v).is_integer() for v in finite) and max(abs(v) for v in finite) > 1


def _number(value, integral: bool) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    if integral:
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    return f"{value:.3f}"


def _spread(values, integral: bool) -> str:
    """``min / median / max`` of the finite values (``–`` where there is none)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return "–"
    parts = [min(finite), statistics.median(finite), max(finite)]
    return " / ".join(_number(v, integral) for v in parts)


def _range(values, integral: bool) -> str:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return "–"
    lo, hi = _number(min(finite), integral), _number(max(finite), integral)
    return lo if lo == hi else f"{lo} to {hi}"


def _seed_list(seeds) -> str:
    if len(seeds) > 2 and list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _quantities(test: Dict[str, Any]) -> List[str]:
    """The rows of one test: its limited quantities, then the reported ones (controls go in their own column)."""
    keys = list(next(iter(test["runs"].values())))
    limited = list(test["limits"])
    reported = [k for k in keys if k not in limited and not (k.endswith("_control") and k[:-8] in keys)]
    return limited + reported


def render_tables(raw: Dict[str, Any]) -> Dict[str, str]:
    """The published tables of a raw results file: ``summary`` (per test and quantity: limit, trained spread, the
    untrained control and every breakage) and ``cost`` (seconds per measurement)."""
    results = raw["results"]
    seeds, breakage_seeds = results["seeds"], results["breakage_seeds"]
    rows, cost = [], []
    for name, test in results["tests"].items():
        runs = test["runs"]
        first = True
        for key in _quantities(test):
            values = [runs[str(s)].get(key) for s in seeds]
            control = key[:-5] + "_control" if key.endswith("_gain") else key + "_control"
            integral = _integral(values + [runs[str(s)].get(control) for s in seeds])
            limit = test["limits"].get(key)
            shown_limit = f"{limit[0]} {limit[1]}" if limit else "(reported)"
            control_values = [runs[str(s)].get(control) for s in seeds] if not key.endswith("_gain") else []
            missing = [s for s in seeds if limit and _missed(runs[str(s)].get(key), *limit)]
            broken = "; ".join(
                f"{b}: {_range([by_seed[str(s)].get(key) for s in breakage_seeds], integral)}"
                for b, by_seed in test["breakages"].items())
            rows.append([f"`{name}`" if first else "", f"`{key}`", shown_limit, _spread(values, integral),
                         (", ".join(map(str, missing)) or "none") if limit else "",
                         _spread(control_values, integral) if control_values and control_values[0] is not None
                         else "", broken])
            first = False
        cost.append([f"`{name}`", f"{test['seconds_per_run']:.0f}", len(seeds),
                     f"{test['seconds_per_breakage_run']:.0f}" if test["breakages"] else "–",
                     sum(len(v) for v in test["breakages"].values())])
    seed_text, broken_text = _seed_list(seeds), _seed_list(breakage_seeds)
    header = ["test", "quantity", "limit", f"trained, seeds {seed_text}: min / median / max", "seeds missing it",
              "same network untrained: min / median / max", f"breakages, seeds {broken_text}: min to max"]
    cost_header = ["test", "seconds per measurement", "seeds", "seconds per breakage run", "breakage runs"]
    return {"summary": markdown_table(header, rows), "cost": markdown_table(cost_header, cost)}


# -- the run ------------------------------------------------------------------------------------------------------
def measure_test(name, measure, limits, breakages, seeds, breakage_seeds, problems: List[str]) -> Dict[str, Any]:
    start = time.perf_counter()
    runs = {}
    for seed in seeds:
        runs[seed] = _public(measure(seed))
        print(f"  {name} seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in runs[seed].items()
                                                   if v is not None), flush=True)
    seconds = (time.perf_counter() - start) / len(seeds)
    for key, (op, threshold) in limits.items():
        problems += [f"{name} seed {s}: {key} = {runs[s][key]:.4f}" for s in seeds if _missed(runs[s][key], op,
                                                                                              threshold)]
    broken: Dict[str, Dict[int, Dict[str, float]]] = {}
    start, count = time.perf_counter(), 0
    for breakage in breakages:
        broken[breakage] = {}
        for seed in breakage_seeds:
            broken[breakage][seed] = _public(measure(seed, breakage))
            count += 1
            missed = [k for k, (op, t) in limits.items() if _missed(broken[breakage][seed].get(k), op, t)]
            print(f"  {name} breakage {breakage} seed {seed}: "
                  + (f"misses {', '.join(missed)}" if missed else "PASSES every limit"), flush=True)
            if not missed:
                problems.append(f"{name}: breakage {breakage} passes every limit on seed {seed}")
    return {"limits": {k: list(v) for k, v in limits.items()}, "runs": runs, "breakages": broken,
            "seconds_per_run": seconds, "seconds_per_breakage_run": (time.perf_counter() - start) / max(count, 1)}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from defectgen.environment import describe

    table = learned_tests()
    names = args.tests or list(table)
    unknown = sorted(set(names) - set(table))
    if unknown:
        raise SystemExit(f"unknown test(s) {unknown}; known: {sorted(table)}")
    out: Optional[Path] = None if args.no_json else (args.json or (None if args.tests else DEFAULT_JSON))
    print(describe())
    print(f"seeds {args.seeds}, breakages on seeds {args.breakage_seeds}, {torch.get_num_threads()} torch threads")
    problems: List[str] = []
    results: Dict[str, Any] = {"seeds": args.seeds, "breakage_seeds": args.breakage_seeds,
                               "threads": torch.get_num_threads(), "tests": {}}
    start = time.perf_counter()
    for name in names:
        measure, limits, breakages = table[name]
        results["tests"][name] = measure_test(name, measure, limits, breakages, args.seeds, args.breakage_seeds,
                                              problems)
    results["seconds"] = time.perf_counter() - start
    results["problems"] = problems
    raw = {"results": _with_string_keys(results)}
    if out is not None:
        raw = write_raw(out, "learned_margins", command_line(__file__, argv), raw["results"])
        print(f"\nraw results: {out}")
    tables = render_tables(raw)
    print("\n" + tables["summary"] + "\n\n" + tables["cost"])
    print(f"\n{results['seconds'] / 60:.1f} min in all")
    print("\nOK: every seed meets every limit and every breakage misses one" if not problems
          else "\nPROBLEMS:\n" + "\n".join(problems))
    return 1 if problems else 0


def _with_string_keys(value):
    """As JSON stores it (seeds become string keys), so the printed and the published tables read one shape."""
    if isinstance(value, dict):
        return {str(k): _with_string_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_string_keys(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
