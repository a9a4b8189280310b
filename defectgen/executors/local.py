"""The local executor: tasks run in this process, one after another, in the order they were submitted.

``--executor local`` (the default) keeps each command's own loop (``defectgen ablate`` runs its cells in turn,
``defectgen generate`` its units with ``--workers``); this executor is the same thing behind the executor
interface, for code that takes an :class:`~defectgen.executors.base.Executor` (``run_study(...,
executor=LocalExecutor())``) and for stepping through a task in a debugger. A task that raises is lost (and
retried by the driver) like a remote one whose worker died; ``KeyboardInterrupt`` stops it where it is.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Deque, List, Optional, Sequence

from .base import Resources, Task, TaskLost


class _LocalRun:
    """A submitted task and, once run, its value or the error it raised."""

    def __init__(self, task: Task):
        self.task = task
        self.value: Any = None
        self.error: Optional[str] = None


class LocalExecutor:
    """Runs each task in this process when the driver waits for one (see the module docstring)."""

    name = "local"

    def __init__(self):
        self._queue: Deque[_LocalRun] = deque()

    def describe(self) -> str:
        return "this process, one task at a time"

    def check(self, resources: Resources) -> None:
        """Any resources: a task here uses what this process has."""

    def submit(self, tasks: Sequence[Task]) -> List[_LocalRun]:
        runs = [_LocalRun(task) for task in tasks]
        self._queue.extend(runs)
        return runs

    def wait(self, handles: Sequence[_LocalRun], timeout: float) -> List[_LocalRun]:
        wanted = set(map(id, handles))
        run = next((r for r in self._queue if id(r) in wanted), None)
        if run is None:
            return []
        self._queue.remove(run)
        try:
            run.value = run.task()
        except Exception as error:  # noqa: BLE001 - a task's own failure is the driver's to retry or give up
            run.error = f"{type(error).__name__}: {error}".splitlines()[0]
        return [run]

    def result(self, handle: _LocalRun) -> Any:
        if handle.error is not None:
            raise TaskLost(handle.error)
        return handle.value

    def cancel(self, handles: Sequence[_LocalRun]) -> None:
        cancelled = set(map(id, handles))
        self._queue = deque(r for r in self._queue if id(r) not in cancelled)

    def parallel_slots(self, resources: Resources) -> Optional[int]:
        return 1

    def close(self) -> None:
        self._queue.clear()


__all__ = ["LocalExecutor"]
