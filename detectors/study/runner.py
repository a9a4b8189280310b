"""Running a study: every cell of the plan (or of one shard of it) into its own folder, resumable, then the report.

The study folder (``--out``; its layout: :mod:`.folder`) holds ``study.json`` and a folder per cell
(``cells/<id>/``: ``cell.json``, ``result.json``, ``log.txt``), and the report rendered from them
(``results.jsonl``, ``results.csv``, ``table.md``, ``heatmaps/``; :mod:`.report`).

A cell with a ``result.json`` is finished and never run again. A run killed mid-cell leaves the cell without
one: ``--resume`` runs it again from the start (cells are pure functions of their settings, so the study ends
as an uninterrupted run would). Shards (``k/N``: the cells whose plan index ``% N == k``) write disjoint cell
folders into one study folder, so merging shards run on several machines is copying their ``cells/`` together;
any run renders the report from whatever cells are there. With an executor (``--executor ray`` / ``slurm``) the
cells run as its tasks (:mod:`.cell_tasks`) into the same folders, so runs on any executor mix and resume each
other.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from defectgen.executors.base import Executor
from defectgen.executors.options import DEFAULT_RETRIES
from defectgen.io.atomic import write_text_atomic
from defectgen.progress import format_duration
from defectgen.run_folder import interleaved_share, read_json

from .cell_run import headline, run_one
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


def run_study(study: Study, out: Path, device: str = "cpu", shard: Optional[Tuple[int, int]] = None,
              resume: bool = False, retry_failed: bool = False, progress: bool = True,
              runner: Optional[Callable] = None, report: bool = True, executor: Optional[Executor] = None,
              retries: int = DEFAULT_RETRIES, resources: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Run the study's cells (this shard's) into ``out`` and render the report; see the module docstring.

    Args:
        study: from :func:`~detectors.study.recipe.load_study`.
        out: the study folder.
        device: where cells train (with an executor: the kind each cell's task runs on, ``auto`` being CUDA for a
            cell that asks for a GPU: :func:`~defectgen.executors.base.task_device`).
        shard: ``(k, N)``: run only the cells whose plan index ``% N == k``.
        resume: continue a study folder that already holds finished cells of this run (otherwise refused, so a
            typo in ``--out`` does not silently mix two runs).
        retry_failed: run cells recorded as failed again (by default a failure is final, like a result).
        progress: a line per cell on stderr: done / remaining, ETA, the cell's headline metric.
        runner: replaces :func:`~detectors.study.cell.run_cell` (tests).
        report: render the report files afterwards.
        executor: run the cells as tasks of this executor (:mod:`defectgen.executors`: Ray, SLURM) instead of one
            after another here (:mod:`.cell_tasks`); the study folder is the same either way.
        retries: with an executor, how often a lost cell task is submitted again before it is recorded as failed.
        resources: with an executor, what every cell asks for over the recipe's ``resources`` (None values kept
            from the recipe): ``cpus``, ``gpus``, ``minutes``, ``partition``.

    Returns ``{"done", "failed", "skipped", "cells"}`` counts for this run's share of the plan (with an executor
    also ``"retried"``: the resubmissions of lost cells).
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
        + f"; {counts['skipped']} already finished, {len(todo)} to run, "
        + (f"on {executor.describe()}" if executor is not None else f"device {device}"))
    if executor is not None:
        from .cell_tasks import run_cells

        counts.update(run_cells(study, todo, out, executor, device, retries, resources or {}, runner, say))
        if report:
            render_report(out)
        return counts
    for n, cell in enumerate(todo, start=1):
        say(f"[{n}/{len(todo)}] {cell.label} (cell {cell.id}) ...")
        result = run_one(study, data, cell, out / CELLS / cell.id, device, runner)
        counts[result["status"]] += 1
        elapsed = time.perf_counter() - started
        eta = elapsed / n * (len(todo) - n)
        say(f"[{n}/{len(todo)}] {result['status']} in {result['seconds']:.0f} s: {headline(result, study.metrics)}; "
            f"{len(todo) - n} left, ETA {format_duration(eta)}")
    if report:
        render_report(out)
    return counts
