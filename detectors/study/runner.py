"""Running a study: every cell of the plan (or of one shard of it) into its own folder, resumable, then the report.

The study folder (``--out``; its layout: :mod:`.folder`) holds ``study.json`` and a folder per cell
(``cells/<id>/``: ``cell.json``, ``result.json``, ``log.txt``), and the report rendered from them
(``results.jsonl``, ``results.csv``, ``table.md``, ``heatmaps/``; :mod:`.report`).

A cell with a ``result.json`` is finished and never run again. A run killed mid-cell leaves the cell without
one: ``--resume`` runs it again from the start (cells are pure functions of their settings, so the study ends
as an uninterrupted run would). Shards (``k/N``: the cells whose plan index ``% N == k``) write disjoint cell
folders into one study folder, so merging shards run on several machines is copying their ``cells/`` together;
any run renders the report from whatever cells are there.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from defectgen.io.atomic import write_text_atomic
from defectgen.run_folder import interleaved_share, read_json, write_record

from .data import StudyData
from .folder import CELLS, RESULT, STUDY_FILE, check_out_folder
from .plan import Cell, Study, expand
from .report import render_report
from .schema import RecipeError, real_count


def study_record(study: Study, cells: List[Cell]) -> Dict[str, Any]:
    """What ``study.json`` holds: the fingerprint a resumed run must match, and what the report needs."""
    return {
        "name": study.name, "recipe": str(study.path) if study.path else None, "budget": study.budget,
        "fingerprint": study.fingerprint(),
        "families": list(study.families), "regimes": study.regimes, "metrics": study.metrics,
        "detectors": {name: {"kind": spec["kind"], "anomaly": study.is_anomaly(name)}
                      for name, spec in study.detectors.items()},
        "test_sets": {name: ("synthetic" if "synthetic" in spec else "real") for name, spec in study.test_sets.items()},
        "seeds": study.seeds,
        # families allowed (allow_overlap: true) to learn from files of a test set they are scored on
        "overlaps": {family: {test: {"count": found["count"], "files": found["files"][:10], "source": found["source"]}
                              for test, found in per_test.items()}
                     for family, per_test in study.overlaps.items()},
        "cells": [{"id": c.id, "family": c.family, "regime": c.regime, "detector": c.detector, "seed": c.seed}
                  for c in cells],
    }


def validate(study: Study, data: StudyData) -> None:
    """Everything that can be checked before training: the data supports the regimes, the test sets read."""
    objects = any(not study.is_anomaly(d) for d in study.detectors)
    needs = [real_count(r) for r in study.regimes if r != "synthetic"] if objects else []
    data.check(needs)


class _Log:
    """A cell's ``log.txt``: timestamped lines, also the place its stdout / stderr go while it runs."""

    def __init__(self, path: Path):
        self.file = open(path, "a", buffering=1)

    def __call__(self, line: str) -> None:
        self.file.write(f"{datetime.now().strftime('%H:%M:%S')} {line}\n")

    def close(self) -> None:
        self.file.close()


def run_one(study: Study, data: StudyData, cell: Cell, folder: Path, device: str,
            runner: Optional[Callable] = None) -> Dict[str, Any]:
    """Run ``cell`` into ``folder``; a failure (any ``Exception``) is recorded, not raised. Returns the result."""
    from defectgen.environment import describe

    from .cell import run_cell

    runner = runner or run_cell
    if folder.exists():  # a cell killed mid-run: start it again from nothing
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    write_record(folder / "cell.json", {"id": cell.id, "settings": cell.settings}, indent=1, default=str)
    log = _Log(folder / "log.txt")
    log(f"cell {cell.id}: {cell.label}, device {device}")
    result: Dict[str, Any] = {"id": cell.id, "family": cell.family, "regime": cell.regime,
                              "detector": cell.detector, "seed": cell.seed, "versions": describe()}
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(log.file), contextlib.redirect_stderr(log.file):
            outcome = runner(study, data, cell, device, folder, log)
        result.update(status="done", **outcome)
    except Exception as error:  # noqa: BLE001 - a failing cell is recorded and the study goes on
        log("FAILED:\n" + traceback.format_exc())
        result.update(status="failed", error=f"{type(error).__name__}: {error}".splitlines()[0])
    finally:
        log.close()
    result["seconds"] = round(time.perf_counter() - start, 2)
    result["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    shutil.rmtree(folder / "run", ignore_errors=True)  # a YOLO run folder: weights and data, not kept
    write_record(folder / RESULT, result, indent=1, default=str)
    return result


def run_study(study: Study, out: Path, device: str = "cpu", shard: Optional[Tuple[int, int]] = None,
              resume: bool = False, retry_failed: bool = False, progress: bool = True,
              runner: Optional[Callable] = None, report: bool = True) -> Dict[str, Any]:
    """Run the study's cells (this shard's) into ``out`` and render the report; see the module docstring.

    Args:
        study: from :func:`~detectors.study.recipe.load_study`.
        out: the study folder.
        device: where cells train.
        shard: ``(k, N)``: run only the cells whose plan index ``% N == k``.
        resume: continue a study folder that already holds finished cells of this run (otherwise refused, so a
            typo in ``--out`` does not silently mix two runs).
        retry_failed: run cells recorded as failed again (by default a failure is final, like a result).
        progress: a line per cell on stderr: done / remaining, ETA, the cell's headline metric.
        runner: replaces :func:`~detectors.study.cell.run_cell` (tests).
        report: render the report files afterwards.

    Returns ``{"done", "failed", "skipped", "cells"}`` counts for this run's share of the plan.
    Raises :class:`RecipeError` (before any training) for a folder of another study, finished cells without
    ``resume``, or data the regimes need and do not have.
    """
    out = Path(out)
    cells = expand(study)
    check_out_folder(study, out, cells)
    mine = interleaved_share(cells, shard)
    finished = [c for c in mine if (out / CELLS / c.id / RESULT).is_file()]
    if finished and not resume:
        raise RecipeError(f"{str(out)!r} already holds {len(finished)} finished cells of this study; pass --resume "
                          "to continue it, or choose another --out")
    data = StudyData(study)
    try:
        validate(study, data)
    except (ValueError, OSError) as error:
        raise RecipeError(str(error)) from None
    out.mkdir(parents=True, exist_ok=True)
    if not (out / STUDY_FILE).is_file():
        write_text_atomic(out / STUDY_FILE, json.dumps(study_record(study, cells), indent=1, default=str) + "\n")
    todo = []
    for cell in mine:
        result = read_json(out / CELLS / cell.id / RESULT)
        if result is not None and (result.get("status") == "done" or not retry_failed):
            continue
        todo.append(cell)
    counts = {"cells": len(mine), "skipped": len(mine) - len(todo), "done": 0, "failed": 0}
    started = time.perf_counter()
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if progress else (lambda text: None)
    say(f"study {study.name}: {len(cells)} cells" + (f", shard {shard[0]}/{shard[1]}: {len(mine)}" if shard else "")
        + f"; {counts['skipped']} already finished, {len(todo)} to run, device {device}")
    for n, cell in enumerate(todo, start=1):
        say(f"[{n}/{len(todo)}] {cell.label} (cell {cell.id}) ...")
        result = run_one(study, data, cell, out / CELLS / cell.id, device, runner)
        counts[result["status"]] += 1
        elapsed = time.perf_counter() - started
        eta = elapsed / n * (len(todo) - n)
        say(f"[{n}/{len(todo)}] {result['status']} in {result['seconds']:.0f} s: {headline(result, study.metrics)}; "
            f"{len(todo) - n} left, ETA {_duration(eta)}")
    if report:
        render_report(out)
    return counts


def headline(result: Dict[str, Any], metrics: List[str]) -> str:
    """One line of a cell's result: the first metric it has on each test set, or its error."""
    if result.get("status") != "done":
        return result.get("error", "failed")
    parts = []
    for name, test in result.get("tests", {}).items():
        metric = next((m for m in metrics if isinstance(test["overall"].get(m), float)), None)
        if metric:
            parts.append(f"{name} {metric} {100 * test['overall'][metric]:.1f}")
    return ", ".join(parts) or "no metric"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
