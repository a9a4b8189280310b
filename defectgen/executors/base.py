"""What an executor runs and the interface every executor keeps: a :class:`Task` with its :class:`Resources`,
the :class:`Executor` protocol, and the two errors (:class:`TaskLost`, :class:`ExecutorError`).

A task is one independent unit of a run (a study's cell, a generation job's shard): a picklable function and its
arguments, run once wherever the executor places it. It writes its own results into the run folder, which stays
the truth (a cell is done when its ``result.json`` exists); the executor only decides where and when it runs and
tells the driver (:mod:`.driver`) when it returned or was lost.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, List, Mapping, Optional, Protocol, Sequence, Tuple

RESOURCE_KEYS = ("cpus", "gpus", "minutes", "partition")
"""What a task may ask for: CPUs and GPUs (Ray and SLURM), a time limit in minutes and a partition (SLURM)."""


class ExecutorError(ValueError):
    """An executor that cannot run as asked (a missing optional extra, flags that do not go together, resources
    it cannot allocate, no cluster at the address): one line, raised before any task runs."""


class TaskLost(Exception):
    """A task that did not return: its worker died, the scheduler killed, cancelled or preempted it, or it raised.
    The message is one line naming what happened."""


@dataclass(frozen=True)
class Resources:
    """What one task needs. ``cpus`` and ``gpus`` may be fractions on Ray (two cells sharing a GPU: ``gpus:
    0.5``); SLURM allocates whole ones. ``minutes`` and ``partition`` are SLURM's time limit and partition (None:
    the executor's default)."""

    cpus: float = 1
    gpus: float = 0
    minutes: Optional[int] = None
    partition: Optional[str] = None

    def __post_init__(self):
        if isinstance(self.cpus, bool) or not isinstance(self.cpus, (int, float)) or not self.cpus > 0:
            raise ExecutorError(f"cpus must be a number > 0, got {self.cpus!r}")
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, (int, float)) or not self.gpus >= 0:
            raise ExecutorError(f"gpus must be a number >= 0, got {self.gpus!r}")
        if self.minutes is not None and (isinstance(self.minutes, bool) or not isinstance(self.minutes, int)
                                         or self.minutes < 1):
            raise ExecutorError(f"minutes must be a positive integer, got {self.minutes!r}")
        if self.partition is not None and (not isinstance(self.partition, str) or not self.partition):
            raise ExecutorError(f"partition must be a partition name, got {self.partition!r}")

    def updated(self, changes: Mapping[str, Any]) -> "Resources":
        """These resources with the non-None values of ``changes`` (keys of :data:`RESOURCE_KEYS`) put in."""
        unknown = [key for key in changes if key not in RESOURCE_KEYS]
        if unknown:
            raise ExecutorError(f"unknown resource {unknown[0]!r}; allowed: {', '.join(RESOURCE_KEYS)}")
        return replace(self, **{key: value for key, value in changes.items() if value is not None})

    def whole(self) -> Tuple[int, int]:
        """``(cpus, gpus)`` as whole numbers, for a scheduler that allocates whole ones; an error for fractions."""
        for name in ("cpus", "gpus"):
            value = getattr(self, name)
            if value != math.floor(value):
                raise ExecutorError(f"SLURM allocates whole {name.upper()}s, but a task asks for {name} {value}")
        return int(self.cpus), int(self.gpus)


@dataclass(frozen=True)
class Task:
    """One unit of work: ``function(*args)``, run once where the executor places it, with ``resources``.

    ``key`` names it uniquely within a run (a cell id, ``shard 3/8``), ``label`` is what progress lines show.
    ``function`` must be importable where the task runs (a module-level function of an installed package), and
    ``args`` picklable.
    """

    key: str
    label: str
    function: Callable[..., Any]
    args: Tuple[Any, ...] = ()
    resources: Resources = field(default_factory=Resources)

    def __call__(self) -> Any:
        return self.function(*self.args)


def task_device(device: str, resources: Resources) -> str:
    """The device kind (``"cpu"`` / ``"cuda"``) a task of ``resources`` runs on, for ``--device`` as given: a task
    sees only the GPUs it asks for, so ``auto`` is CUDA exactly when it asks for one, ``cuda:N`` is the task's own
    GPU, and CUDA without a GPU asked for is refused (:class:`ExecutorError`) rather than left to fail on a worker."""
    from ..checks import parse_device

    if device == "auto":
        return "cuda" if resources.gpus > 0 else "cpu"
    try:
        kind = parse_device(device).type
    except ValueError as error:
        raise ExecutorError(f"--device: {error}") from None
    if kind == "cuda" and resources.gpus == 0:
        raise ExecutorError(f"--device {device}, but the tasks ask for no GPU and would see none: give them one "
                            "(--gpus-per-task, or resources.gpus in a study recipe), or use --device auto")
    return kind


def run_task(task: Task) -> Any:
    """What a worker runs (a module-level function, so Ray and submitit pickle it by name): the task, with as many
    torch threads as CPUs it asked for (a reused worker keeps the thread count of the task it ran first)."""
    import torch

    torch.set_num_threads(max(1, int(task.resources.cpus)))
    return task()


class Executor(Protocol):
    """Where tasks run. The driver (:func:`~defectgen.executors.driver.run_tasks`) submits tasks, waits for some
    to end, asks each for its result, resubmits the lost ones and cancels the rest on Ctrl-C."""

    name: str

    def describe(self) -> str:
        """Where tasks run, for the first progress line (``Ray, local: 2 CPUs, 0 GPUs``)."""

    def check(self, resources: Resources) -> None:
        """Raise :class:`ExecutorError` if a task of these resources cannot run here (before any is submitted)."""

    def submit(self, tasks: Sequence[Task]) -> List[Any]:
        """Start ``tasks``; returns one handle per task, in order."""

    def wait(self, handles: Sequence[Any], timeout: float) -> List[Any]:
        """The handles among ``handles`` whose task ended (returned or was lost), after at most ``timeout`` s."""

    def result(self, handle: Any) -> Any:
        """An ended task's return value; :class:`TaskLost` if it did not return."""

    def cancel(self, handles: Sequence[Any]) -> None:
        """Stop these tasks (queued or running) without waiting for them."""

    def parallel_slots(self, resources: Resources) -> Optional[int]:
        """How many tasks of ``resources`` can run at once, where the executor knows (None: it does not)."""

    def close(self) -> None:
        """Release what the executor started (a local Ray instance); tasks already ended keep their results."""


__all__ = ["RESOURCE_KEYS", "ExecutorError", "TaskLost", "Resources", "Task", "task_device", "run_task", "Executor"]
