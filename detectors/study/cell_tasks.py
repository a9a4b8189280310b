"""A study's cells as tasks of an executor (``--executor ray`` / ``slurm``, :mod:`defectgen.executors`).

The folder stays the truth. Each task runs :func:`~.cell_run.run_one` for its cell wherever the executor places it:
the worker reads the study's data (once per worker process) and writes the cell's folder, ``result.json`` last, as
a run in this process does, so cells finished by any executor or by a local run count for every other, and
``--resume`` continues any of them anywhere. The driver only watches: a progress line per finished cell (done /
left / ETA); a cell whose task is lost ``1 + retries`` times (worker died, job killed or preempted) is recorded
here as failed with the error, unless its folder says it finished, and the study goes on.

Workers reach the data and the study folder at the paths this process sees (made absolute here): on a cluster,
both must be on a file system every node mounts at the same place.
"""
from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from defectgen.executors.base import Executor, Resources, Task, task_device
from defectgen.executors.driver import run_tasks
from defectgen.run_folder import read_json, write_record

from .cell_run import CellLog, cell_result, headline, run_one
from .data import StudyData
from .folder import CELLS, RESULT
from .plan import Cell, Study, settings_hash

_WORKER_DATA: Dict[str, StudyData] = {}
"""The study data a worker process read, kept for the next cell of the same study that lands there."""


def _study_data(study: Study) -> StudyData:
    key = settings_hash({"root": str(study.root), "study": study.fingerprint()})
    if key not in _WORKER_DATA:
        _WORKER_DATA.clear()  # one study per worker at a time: its images are what takes the memory
        _WORKER_DATA[key] = StudyData(study)
    return _WORKER_DATA[key]


def run_cell_task(study: Study, cell: Cell, folder: str, device: str, runner: Optional[Callable] = None
                  ) -> Dict[str, Any]:
    """What a worker runs for one cell (``device``: ``"cpu"`` or ``"cuda"``, the GPU the executor gave the task):
    :func:`~.cell_run.run_one`. Returns the cell's result (also in its ``result.json``)."""
    from defectgen.checks import resolve_device

    return run_one(study, _study_data(study), cell, Path(folder), str(resolve_device(device)), runner)


def cell_resources(study: Study, cell: Cell, overrides: Mapping[str, Any]) -> Resources:
    """What ``cell``'s task asks for: the recipe's resources (the detector's over the study's), the flags'
    (``overrides``, None values left out) over those."""
    return Resources().updated(study.cell_resources(cell.detector)).updated(overrides)


def record_lost(cell: Cell, folder: Path, error: str, attempts: int) -> Dict[str, Any]:
    """Record a cell whose task was lost ``attempts`` times as failed (its ``result.json``), unless its folder says
    it finished meanwhile; returns the result the folder holds."""
    existing = read_json(folder / RESULT)
    if existing is not None:
        return existing
    folder.mkdir(parents=True, exist_ok=True)
    log = CellLog(folder / "log.txt")
    log(f"the task was lost {attempts} time(s), last: {error}; recorded as failed")
    log.close()
    result = cell_result(cell)
    result.update(status="failed", error=f"task lost {attempts} time(s): {error}", seconds=None,
                  finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    write_record(folder / RESULT, result, indent=1, default=str)
    return result


def run_cells(study: Study, cells: List[Cell], out: Path, executor: Executor, device: str, retries: int,
              overrides: Mapping[str, Any], runner: Optional[Callable], say: Callable[[str], None]
              ) -> Dict[str, int]:
    """Run ``cells`` of ``study`` into ``out`` as tasks of ``executor``; returns ``{"done", "failed", "retried"}``.

    ``runner`` replaces :func:`~.cell.run_cell` in the workers (tests; it must pickle). A cell about to run again
    (``--retry-failed``) loses its old ``result.json`` first, so the folder says "finished" only of this run's.
    """
    out = Path(os.path.abspath(out))
    # the worker may start in another folder: every path the study resolves is made absolute here
    portable = replace(study, root=Path(os.path.abspath(study.root)))
    folders = {cell.id: out / CELLS / cell.id for cell in cells}
    resources = {cell.id: cell_resources(study, cell, overrides) for cell in cells}
    devices = {cell.id: task_device(device, resources[cell.id]) for cell in cells}  # refused before any task runs
    tasks = [Task(key=cell.id, label=f"{cell.label} (cell {cell.id})", function=run_cell_task,
                  args=(portable, cell, str(folders[cell.id]), devices[cell.id], runner),
                  resources=resources[cell.id]) for cell in cells]
    for folder in folders.values():
        (folder / RESULT).unlink(missing_ok=True)
    by_key = {cell.id: cell for cell in cells}
    counts = {"done": 0, "failed": 0}

    def finished(task: Task, result: Dict[str, Any]) -> str:
        counts[result["status"]] += 1
        seconds = result.get("seconds")
        took = f" in {seconds:.0f} s" if isinstance(seconds, (int, float)) else ""
        return f"{result['status']}{took}: {headline(result, study.metrics)}"

    def given_up(task: Task, error: str, attempts: int) -> str:
        result = record_lost(by_key[task.key], folders[task.key], error, attempts)
        counts[result["status"]] += 1
        return f"{result['status']}: {headline(result, study.metrics)}"

    def already_done(task: Task) -> Optional[Dict[str, Any]]:
        return read_json(folders[task.key] / RESULT)

    ran = run_tasks(executor, tasks, retries=retries, finished=finished, given_up=given_up,
                    already_done=already_done, say=say)
    return {**counts, "retried": ran["retried"]}


__all__ = ["run_cell_task", "cell_resources", "record_lost", "run_cells"]
