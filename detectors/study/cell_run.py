"""One cell into its folder (``cells/<id>/``): ``cell.json`` first, the cell's output in ``log.txt``, ``result.json``
last and atomically, so a cell is finished exactly when its ``result.json`` can be read. The same function runs a
cell in this process (:mod:`.runner`) and as an executor's task on another machine (:mod:`.cell_tasks`).
"""
from __future__ import annotations

import contextlib
import shutil
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from defectgen.run_folder import write_record

from .data import StudyData
from .folder import RESULT
from .plan import Cell, Study


class CellLog:
    """A cell's ``log.txt``: timestamped lines, also the place its stdout / stderr go while it runs."""

    def __init__(self, path: Path):
        self.file = open(path, "a", buffering=1)

    def __call__(self, line: str) -> None:
        self.file.write(f"{datetime.now().strftime('%H:%M:%S')} {line}\n")

    def close(self) -> None:
        self.file.close()


def cell_result(cell: Cell) -> Dict[str, Any]:
    """The fields every ``result.json`` starts with: the cell and the library versions it ran with."""
    from defectgen.environment import describe

    return {"id": cell.id, "family": cell.family, "regime": cell.regime, "detector": cell.detector,
            "seed": cell.seed, "versions": describe()}


def run_one(study: Study, data: StudyData, cell: Cell, folder: Path, device: str,
            runner: Optional[Callable] = None) -> Dict[str, Any]:
    """Run ``cell`` into ``folder``; a failure (any ``Exception``) is recorded, not raised. Returns the result."""
    from .cell import run_cell

    runner = runner or run_cell
    if folder.exists():  # a cell killed mid-run: start it again from nothing
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    write_record(folder / "cell.json", {"id": cell.id, "settings": cell.settings}, indent=1, default=str)
    log = CellLog(folder / "log.txt")
    log(f"cell {cell.id}: {cell.label}, device {device}")
    result = cell_result(cell)
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
