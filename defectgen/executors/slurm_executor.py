"""The SLURM executor: tasks as SLURM jobs through submitit, one job array per kind of task (a study's cells of
one detector, a generation job's shards), one array task per cell or shard. Needs the optional extra ``slurm``
(``pip install 'defectgen[slurm]'``: submitit), imported only in this module.

Each array task gets the CPUs, GPUs, time limit and partition its task asks for (the recipe's ``resources``,
overridden by ``--cpus-per-task``, ``--gpus-per-task``, ``--time`` and ``--partition``). The run folder must be on
a file system the nodes share: tasks write their results there, submitit its pickled tasks and logs under the
log folder (``--slurm-folder``). A job that ends without a result (killed at its time limit, preempted, its node
lost) is lost, and the driver submits it again. submitit's ``local`` cluster (each task a process on this machine)
and ``debug`` cluster (each task in this process) run the same code without SLURM, for tests.
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from .base import ExecutorError, Resources, Task, TaskLost, run_task

MISSING = "--executor slurm needs submitit: pip install 'defectgen[slurm]'"
DEFAULT_MINUTES = 120
"""The time limit of a task that states none (submitit's own default, 5 minutes, would kill most cells)."""


def _import_submitit():
    if importlib.util.find_spec("submitit") is None:
        raise ExecutorError(MISSING)
    import submitit

    return submitit


class SlurmExecutor:
    """Tasks as SLURM array jobs (see the module docstring).

    Args:
        folder: where submitit keeps each job's pickled task, result and logs (``<folder>/<job id>/``).
        cluster: ``"slurm"`` (the default: refused where there is no ``srun``), or submitit's ``"local"`` /
            ``"debug"`` to run without SLURM.
        default_minutes: the time limit of a task whose resources state none.
    """

    name = "slurm"

    def __init__(self, folder: Union[str, Path], cluster: str = "slurm", default_minutes: int = DEFAULT_MINUTES):
        self._submitit = _import_submitit()
        if cluster == "slurm" and self._submitit.SlurmExecutor.affinity() <= 0:
            raise ExecutorError("--executor slurm: no SLURM on this machine (srun not found); submit from a login "
                                "node of the cluster")
        self.folder = Path(folder)
        self.cluster = cluster
        self.default_minutes = default_minutes

    def describe(self) -> str:
        where = "SLURM" if self.cluster == "slurm" else f"submitit's {self.cluster} cluster"
        return f"{where} through submitit, logs in {self.folder}"

    def check(self, resources: Resources) -> None:
        resources.whole()

    def _executor(self, resources: Resources):
        cpus, gpus = resources.whole()
        executor = self._submitit.AutoExecutor(folder=self.folder / "%j", cluster=self.cluster)
        executor.update_parameters(name="defectgen", nodes=1, tasks_per_node=1, cpus_per_task=cpus,
                                   gpus_per_node=gpus, timeout_min=resources.minutes or self.default_minutes,
                                   slurm_partition=resources.partition)
        return executor

    def submit(self, tasks: Sequence[Task]) -> List[Any]:
        groups: Dict[Resources, List[int]] = {}
        for position, task in enumerate(tasks):
            groups.setdefault(task.resources, []).append(position)
        jobs: List[Any] = [None] * len(tasks)
        for resources, positions in groups.items():  # one job array per kind of task
            try:
                submitted = self._executor(resources).map_array(run_task, [tasks[p] for p in positions])
            except (RuntimeError, OSError, ValueError) as error:
                raise ExecutorError(f"submitting to SLURM failed: {_first_line(str(error))}") from None
            for position, job in zip(positions, submitted):
                if self.cluster != "slurm":
                    # submitit gives a job that ended without a result 15 s for the file to appear over a shared
                    # file system (its attribute; its own tests set it so too); on this machine it is there at once
                    job._results_timeout_s = 0
                jobs[position] = job
        return jobs

    def wait(self, handles: Sequence[Any], timeout: float) -> List[Any]:
        deadline = time.monotonic() + timeout
        while True:
            ended = [job for job in handles if job.done()]
            if ended or time.monotonic() >= deadline:
                return ended
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def result(self, handle: Any) -> Any:
        utils = self._submitit.core.utils
        try:
            return handle.result()
        except utils.FailedJobError as error:  # the task raised: its traceback ends with the exception line
            lines = [line for line in str(error).splitlines() if line.strip()]
            raise TaskLost(lines[-1].strip() if lines else "FailedJobError") from None
        except utils.UncompletedJobError as error:  # killed, timed out, preempted, cancelled, node lost
            raise TaskLost(f"UncompletedJobError: {_first_line(str(error))}") from None
        except Exception as error:  # noqa: BLE001 - the debug cluster raises the task's own exception
            raise TaskLost(f"{type(error).__name__}: {_first_line(str(error))}") from None

    def cancel(self, handles: Sequence[Any]) -> None:
        for job in handles:
            try:
                job.cancel(check=False)
            except Exception:  # noqa: BLE001 - it ended meanwhile, or scancel is gone: nothing left to stop
                pass

    def parallel_slots(self, resources: Resources) -> Optional[int]:
        return None  # the cluster's size and queue are SLURM's business

    def close(self) -> None:
        """Nothing to release: the jobs that ended keep their results, the folder its logs."""


def _first_line(text: str) -> str:
    return " ".join(text.strip().split("\n", 1)[0].split())


__all__ = ["MISSING", "DEFAULT_MINUTES", "SlurmExecutor"]
