"""The driver: submit a run's tasks to an executor, watch them end, retry the lost ones, report progress, and
cancel what is left on Ctrl-C. The same loop drives every executor, so a study and a generation job behave alike
on Ray and on SLURM.

A task that returns is finished, whatever it reports (a cell that failed inside training records that itself).
A task that is lost (worker died, job killed or preempted, an exception outside the work it wraps) is submitted
again, up to ``retries`` more times, unless the run folder already says it is done (it died after writing its
record); then it is given up: the caller records it as failed and the run goes on.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional, Sequence

from ..progress import format_duration
from .base import Executor, Task, TaskLost

POLL_S = 1.0
"""How long one wait for an ending task lasts: the longest a Ctrl-C or a heartbeat waits."""


def run_tasks(executor: Executor, tasks: Sequence[Task], *, retries: int,
              finished: Callable[[Task, Any], str], given_up: Callable[[Task, str, int], str],
              already_done: Optional[Callable[[Task], Optional[Any]]] = None,
              say: Callable[[str], None] = lambda text: None, heartbeat_s: float = 300.0) -> Dict[str, int]:
    """Run ``tasks`` on ``executor`` until each has returned or been given up.

    Args:
        retries: how many more times a lost task is submitted before it is given up.
        finished: called in the driver with each returned task and its value; returns the progress text.
        given_up: called with a task lost ``1 + retries`` times, the last error and the attempt count; records
            the failure (in the run folder) and returns the progress text.
        already_done: the folder's word on a lost task: its finished value if the task wrote its record before
            it was lost, else None (then it is retried).
        say: where progress lines go (one per ended task with done / left / ETA, one per retry, and a heartbeat
            every ``heartbeat_s`` seconds while nothing ends).

    Returns ``{"finished", "given_up", "retried"}``: the tasks that returned, that were given up, and the
    resubmissions. On ``KeyboardInterrupt`` every outstanding task is cancelled, then the interrupt is raised
    again; tasks that ended keep their records, the cancelled ones have none (records are written atomically).
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    for resources in {task.resources for task in tasks}:
        executor.check(resources)
    counts = {"finished": 0, "given_up": 0, "retried": 0}
    attempts: Dict[str, int] = {task.key: 1 for task in tasks}
    pending: Dict[Any, Task] = {}
    started = last_line = time.perf_counter()
    ended = 0

    def line(task: Task, text: str) -> None:
        nonlocal last_line
        left = len(tasks) - ended
        eta = (time.perf_counter() - started) / ended * left
        say(f"[{ended}/{len(tasks)}] {task.label}: {text}; {left} left, ETA {format_duration(eta)}")
        last_line = time.perf_counter()

    try:
        pending.update(zip(executor.submit(list(tasks)), tasks))
        while pending:
            done = executor.wait(list(pending), POLL_S)
            if not done and time.perf_counter() - last_line >= heartbeat_s:
                elapsed = time.perf_counter() - started
                eta = f", ETA {format_duration(elapsed / ended * (len(tasks) - ended))}" if ended else ""
                say(f"... {ended} done, {len(tasks) - ended} left, {format_duration(elapsed)} elapsed{eta}")
                last_line = time.perf_counter()
            for handle in done:
                task = pending.pop(handle)
                try:
                    value = executor.result(handle)
                except TaskLost as lost:
                    value = already_done(task) if already_done is not None else None
                    if value is None and attempts[task.key] <= retries:
                        attempts[task.key] += 1
                        counts["retried"] += 1
                        say(f"{task.label}: lost ({lost}); attempt {attempts[task.key]} of {retries + 1}")
                        pending.update(zip(executor.submit([task]), [task]))
                        continue
                    if value is None:
                        ended += 1
                        counts["given_up"] += 1
                        line(task, given_up(task, str(lost), attempts[task.key]))
                        continue
                ended += 1
                counts["finished"] += 1
                line(task, finished(task, value))
    except KeyboardInterrupt:
        executor.cancel(list(pending))
        say(f"interrupted: cancelled {len(pending)} unfinished task(s); {ended} ended and keep their records")
        raise
    return counts


__all__ = ["POLL_S", "run_tasks"]
