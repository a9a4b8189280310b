"""The executor flags ``defectgen ablate`` and ``defectgen generate`` share, their checks, and the executor they
make. No ray, submitit or torch is imported here (the executor modules import their library only when one is
made): building ``--help`` stays fast.

    --executor local|ray|slurm   where tasks run (default local: this process, as without the flag)
    --address ADDR               ray: a running cluster (auto, ray://host:10001); default: start Ray here
    --retries N                  ray, slurm: how often a lost task is submitted again (default 2)
    --cpus-per-task / --gpus-per-task   ray, slurm: what each task gets (over the recipe's resources)
    --partition / --time MIN / --slurm-folder DIR   slurm only

A flag that does not apply to the chosen executor is refused (one line, exit 2), so a typo never runs a study
somewhere other than intended.
"""
from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from ..cli_support import non_negative_int, positive_int
from .base import Executor, ExecutorError
from .ray_executor import MISSING as RAY_MISSING
from .ray_executor import RayExecutor
from .slurm_executor import MISSING as SLURM_MISSING
from .slurm_executor import SlurmExecutor

EXECUTORS = ("local", "ray", "slurm")
DEFAULT_RETRIES = 2


def _non_negative_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return int(value) if value == int(value) else value


def _positive_number(text: str) -> float:
    value = _non_negative_number(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number > 0, got 0")
    return value


def add_executor_arguments(parser: argparse.ArgumentParser, unit: str) -> None:
    """The executor flags; ``unit`` names what becomes a task (``cell``, ``shard``) in their help."""
    group = parser.add_argument_group("where the work runs (docs/executors.md)")
    group.add_argument("--executor", choices=EXECUTORS, default="local",
                       help=f"local: this process (default); ray: each {unit} a Ray task (Ray started here, or "
                            f"--address); slurm: each {unit} a SLURM array task, through submitit")
    group.add_argument("--address", metavar="ADDR",
                       help="ray: the address of a running Ray cluster (auto, ray://host:10001); default: start "
                            "Ray on this machine with its CPUs and GPUs")
    group.add_argument("--retries", metavar="N", type=non_negative_int,
                       help=f"ray, slurm: submit a lost {unit} (worker died, job killed or preempted) up to N more "
                            f"times before recording it as failed (default: {DEFAULT_RETRIES})")
    group.add_argument("--cpus-per-task", metavar="N", type=_positive_number,
                       help=f"ray, slurm: CPUs each {unit} gets (default: the recipe's resources, else 1)")
    group.add_argument("--gpus-per-task", metavar="N", type=_non_negative_number,
                       help=f"ray, slurm: GPUs each {unit} gets (a fraction shares one on Ray; default: the "
                            "recipe's resources, else 0)")
    group.add_argument("--partition", metavar="NAME", help="slurm: the partition (default: the recipe's, else the "
                                                           "cluster's default)")
    group.add_argument("--time", metavar="MIN", type=positive_int, dest="time_min",
                       help=f"slurm: each {unit}'s time limit in minutes (default: the recipe's, else 120)")
    group.add_argument("--slurm-folder", metavar="DIR", type=Path,
                       help="slurm: where submitit keeps the jobs' pickles and logs (default: inside the output "
                            "folder)")


@dataclass(frozen=True)
class ExecutorOptions:
    """The executor flags, checked (:func:`executor_options`)."""

    executor: str = "local"
    address: Optional[str] = None
    retries: int = DEFAULT_RETRIES
    cpus: Optional[float] = None
    gpus: Optional[float] = None
    partition: Optional[str] = None
    minutes: Optional[int] = None
    slurm_folder: Optional[Path] = None

    @property
    def local(self) -> bool:
        return self.executor == "local"

    def resource_overrides(self) -> Dict[str, Any]:
        """The flags that override every task's resources (None: the recipe's, or the default)."""
        return {"cpus": self.cpus, "gpus": self.gpus, "minutes": self.minutes, "partition": self.partition}


def executor_options(args: argparse.Namespace) -> ExecutorOptions:
    """The executor flags of ``args`` checked together; :class:`ExecutorError` names a flag that does not apply."""
    executor = args.executor
    if args.address is not None and executor != "ray":
        raise ExecutorError("--address is a Ray cluster's address: use it with --executor ray")
    slurm_only = [flag for flag, value in (("--partition", args.partition), ("--time", args.time_min),
                                           ("--slurm-folder", args.slurm_folder)) if value is not None]
    if slurm_only and executor != "slurm":
        raise ExecutorError(f"{', '.join(slurm_only)} {'is' if len(slurm_only) == 1 else 'are'} for --executor "
                            "slurm")
    if executor == "local":
        remote_only = [flag for flag, value in (("--retries", args.retries), ("--cpus-per-task", args.cpus_per_task),
                                                ("--gpus-per-task", args.gpus_per_task)) if value is not None]
        if remote_only:
            raise ExecutorError(f"{', '.join(remote_only)}: for the tasks of --executor ray or slurm; this process "
                                "runs the work itself (--device picks its device)")
    extra = {"ray": ("ray", RAY_MISSING), "slurm": ("submitit", SLURM_MISSING)}.get(executor)
    if extra is not None and importlib.util.find_spec(extra[0]) is None:  # said before anything is prepared
        raise ExecutorError(extra[1])
    if executor == "slurm":
        for flag, value in (("--cpus-per-task", args.cpus_per_task), ("--gpus-per-task", args.gpus_per_task)):
            if value is not None and value != int(value):
                raise ExecutorError(f"{flag} {value}: SLURM allocates whole ones")
    return ExecutorOptions(executor=executor, address=args.address,
                           retries=DEFAULT_RETRIES if args.retries is None else args.retries,
                           cpus=args.cpus_per_task, gpus=args.gpus_per_task, partition=args.partition,
                           minutes=args.time_min, slurm_folder=args.slurm_folder)


def make_executor(options: ExecutorOptions, slurm_folder: Path) -> Optional[Executor]:
    """The executor the options name, started (a local Ray instance is started here); None for ``local`` (the
    command's own loop). ``slurm_folder``: the log folder when ``--slurm-folder`` is not given. Raises
    :class:`ExecutorError` for a missing extra (``--executor ray needs ray: pip install 'defectgen[ray]'``), or a
    cluster that cannot be reached."""
    if options.executor == "ray":
        return RayExecutor(address=options.address)
    if options.executor == "slurm":
        return SlurmExecutor(options.slurm_folder or slurm_folder)
    return None


__all__ = ["EXECUTORS", "DEFAULT_RETRIES", "add_executor_arguments", "ExecutorOptions", "executor_options",
           "make_executor"]
