"""The Ray executor: each task a Ray task with the CPUs and GPUs it asks for, on a Ray instance started here or on
a running cluster (``--address``). Needs the optional extra ``ray`` (``pip install 'defectgen[ray]'``), imported
only in this module.

Without an address, Ray is started on this machine with its CPUs and GPUs (or the counts given), listening on the
loopback address only and without its dashboard, and shut down when the run ends: nothing outside the machine can
reach it (left to itself, Ray listens on every interface). With an address (``auto``: the cluster this machine
belongs to, or ``ray://host:10001``), tasks run on that cluster's nodes, which must have defectgen installed and
see the run folder at the same path (a shared file system): the folder is where tasks write their results. Ray's
own retries are off (``max_retries=0``): the driver retries a lost task itself, the same way for every executor.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from typing import Any, List, Optional, Sequence

from .base import ExecutorError, Resources, Task, TaskLost, run_task

MISSING = "--executor ray needs ray: pip install 'defectgen[ray]'"


LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch for multi-machine clusters. Off (its default on Windows and macOS), the instance it starts takes
the loopback address as the node's; on Linux it is on, and the instance listens on every interface."""


def _import_ray(loopback: bool = False):
    if importlib.util.find_spec("ray") is None:
        raise ExecutorError(MISSING)
    if loopback:  # read when Ray is imported, and by the processes it starts
        os.environ[LOOPBACK_SWITCH] = "0"
    import ray

    if loopback:  # Ray imported earlier read the switch then
        constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
        if constants is not None and hasattr(constants, "ENABLE_RAY_CLUSTER"):
            constants.ENABLE_RAY_CLUSTER = False
    return ray


class RayExecutor:
    """Tasks as Ray tasks (see the module docstring).

    Args:
        address: a running cluster's address (``auto``, ``ray://host:port``); None starts Ray here.
        num_cpus, num_gpus: what a Ray started here offers (default: the machine's); not with ``address``.
    If Ray is already initialised in this process (a notebook, a test), that instance is used and left running.
    """

    name = "ray"

    def __init__(self, address: Optional[str] = None, num_cpus: Optional[int] = None,
                 num_gpus: Optional[int] = None):
        if address is not None and (num_cpus is not None or num_gpus is not None):
            raise ExecutorError("num_cpus and num_gpus size a Ray started here; a cluster at an address has its own")
        ray = self._ray = _import_ray(loopback=address is None)
        self.address = address
        self.started = False
        if not ray.is_initialized():
            quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            try:
                if address is None:
                    # a Ray started on the user's behalf reports no usage statistics
                    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, **quiet)
                else:
                    ray.init(address=address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = f"at --address {address}" if address else "here"
                raise ExecutorError(f"could not start or reach Ray {where}: "
                                    f"{' '.join(str(error).split()) or type(error).__name__}") from None
            self.started = True
        self._remote = ray.remote(max_retries=0, retry_exceptions=False)(run_task)

    def _totals(self):
        available = self._ray.cluster_resources()
        return float(available.get("CPU", 0)), float(available.get("GPU", 0))

    def describe(self) -> str:
        cpus, gpus = self._totals()
        where = f"cluster at {self.address}" if self.address else "local"
        return f"Ray, {where}: {cpus:g} CPUs, {gpus:g} GPUs"

    def check(self, resources: Resources) -> None:
        if self.address is not None:
            return  # a cluster may add nodes when tasks wait for them (autoscaling)
        cpus, gpus = self._totals()
        if resources.cpus > cpus or resources.gpus > gpus:
            raise ExecutorError(f"a task asks for {resources.cpus:g} CPUs and {resources.gpus:g} GPUs, but the Ray "
                                f"started here has {cpus:g} and {gpus:g}: lower the resources or run on a cluster "
                                "(--address)")

    def submit(self, tasks: Sequence[Task]) -> List[Any]:
        return [self._remote.options(num_cpus=task.resources.cpus, num_gpus=task.resources.gpus,
                                     name=task.label).remote(task) for task in tasks]

    def wait(self, handles: Sequence[Any], timeout: float) -> List[Any]:
        ray = self._ray
        ready, _ = ray.wait(list(handles), num_returns=1, timeout=timeout, fetch_local=False)
        if ready:  # and every other one that ended meanwhile
            ready, _ = ray.wait(list(handles), num_returns=len(handles), timeout=0, fetch_local=False)
        return ready

    def result(self, handle: Any) -> Any:
        exceptions = self._ray.exceptions
        try:
            return self._ray.get(handle)
        except exceptions.RayTaskError as error:  # the task raised: name its own exception
            cause = getattr(error, "cause", None) or error
            raise TaskLost(_one_line(cause)) from None
        except exceptions.RayError as error:  # the worker or its node died, the task was cancelled, ...
            raise TaskLost(_one_line(error)) from None

    def cancel(self, handles: Sequence[Any]) -> None:
        if not handles:
            return
        _, running = self._ray.wait(list(handles), num_returns=len(handles), timeout=0, fetch_local=False)
        for handle in running:
            try:
                # a queued task is dropped; a running one gets KeyboardInterrupt, which run_one lets through, so
                # its cell ends without a result.json. Not force=True: killing a worker whose task is just
                # completing can abort the driver (Ray 2.60: "Tried to complete task that was not pending")
                self._ray.cancel(handle, force=False)
            except Exception:  # noqa: BLE001 - it ended meanwhile; nothing to cancel
                pass

    def parallel_slots(self, resources: Resources) -> Optional[int]:
        cpus, gpus = self._totals()
        slots = int(cpus // resources.cpus)
        if resources.gpus:
            slots = min(slots, int(gpus // resources.gpus))
        return max(1, slots)

    def close(self) -> None:
        if self.started:
            self._ray.shutdown()
            self.started = False


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split("\n", 1)[0].split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


__all__ = ["MISSING", "RayExecutor"]
