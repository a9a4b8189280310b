"""A generation job's shards as tasks of an executor (``defectgen generate --executor ray|slurm --shards K``).

The job is split exactly as ``--shard k/K`` splits it (consecutive units per shard), and each shard is a task that
runs :func:`~.engine.generate` with its ``shard=(k, K)`` into the one output folder, as K machines sharing the
folder would: every unit writes its files and then its record, so a lost shard resubmitted does only the units
it had not finished. The folder is prepared here first (settings checked, ``job.json`` written for the device the
tasks will use), and once every shard ended the gathered files (manifest, labels, report) are written if no shard
did (:func:`~.engine.finish_job`). Item ``i`` depends only on ``(seed, i)`` and the settings, so the data set is
byte for byte a local run's (:func:`~.engine.manifest_digest`).

Workers write the output folder and read the input at the paths this process sees (made absolute here): on a
cluster both must be on a file system every node mounts at the same place.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

from ..checks import check_int
from ..executors.base import Executor, ExecutorError, Resources, Task, task_device
from ..executors.driver import run_tasks
from ..executors.options import DEFAULT_RETRIES
from ..progress import format_duration
from ..recipe import OpSpec
from .engine import GenerateSummary, PathLike, finish_job, generate, open_job


@dataclass(frozen=True)
class ShardedJob:
    """A checked job whose output folder is prepared, ready to be run as shards (:func:`prepare_sharded`)."""

    input: str
    output: str
    ops: Any
    settings: Dict[str, Any]  # generate()'s keyword arguments that fix the data set (count, seed, formats, ...)
    device: str               # "cpu" or "cuda": what every shard runs on (job.json records it)
    units: int                # the job's NG units: more shards than this would be empty


def prepare_sharded(input: PathLike, output: PathLike, ops: Union[OpSpec, Sequence[OpSpec], None] = None, *,
                    device: str = "auto", resources: Resources = Resources(), resume: bool = False,
                    overwrite: bool = False, **settings: Any) -> ShardedJob:
    """Check the job (``settings``: :func:`~.engine.generate`'s ``recipe``, ``count``, ``formats``, ``seed``,
    ``size``, ``tile``, ``channels``, ``val_fraction``, ``batch_size``, ``segmentation``, ``class_names``) and
    prepare its output folder as :func:`~.engine.generate` does, without making an image. Raises ``ValueError``
    (one line) for a bad setting or folder, before any task runs."""
    kind = task_device(device, resources)
    spec = open_job(input, output, ops, device_type=kind, resume=resume, overwrite=overwrite, **settings)
    if settings.get("recipe") is not None:  # read again by every task, which may start in another folder
        settings = dict(settings, recipe=os.path.abspath(settings["recipe"]))
    units = -(-spec.settings["count"] // spec.settings["batch_size"])
    return ShardedJob(input=os.path.abspath(input), output=os.path.abspath(output), ops=ops, settings=settings,
                      device=kind, units=units)


def generate_shard(job: ShardedJob, shard: Sequence[int], workers: int) -> GenerateSummary:
    """What a worker runs: shard ``(k, K)`` of the job into its output folder (the units already done skipped)."""
    return generate(job.input, job.output, job.ops, **job.settings, device=job.device, workers=workers,
                    shard=tuple(shard), progress=False)


def run_shards(executor: Executor, job: ShardedJob, shards: Optional[int] = None, *,
               resources: Resources = Resources(), retries: int = DEFAULT_RETRIES, workers: int = 1,
               progress: bool = True) -> GenerateSummary:
    """Run ``job`` as ``shards`` tasks of ``executor`` (default: as many as run at once there, at most one per
    unit), then write the gathered files if no shard did. A shard lost ``1 + retries`` times leaves its unfinished
    units undone (the summary says the job is incomplete; run it again with ``resume`` to finish it)."""
    started = time.perf_counter()
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if progress else (lambda text: None)
    if shards is None:
        shards = executor.parallel_slots(resources)
        if shards is None:
            raise ExecutorError(f"--executor {executor.name} needs --shards K: how many tasks the job is split into")
    shards = min(check_int(shards, "shards", 1), job.units)
    say(f"generate {job.settings['count']} images in {shards} shards on {executor.describe()}, device {job.device}")
    tasks = [Task(key=f"shard {k}/{shards}", label=f"shard {k}/{shards}", function=generate_shard,
                  args=(job, (k, shards), workers), resources=resources) for k in range(shards)]
    generated = 0

    def finished(task: Task, summary: GenerateSummary) -> str:
        nonlocal generated
        generated += summary.generated
        return f"{summary.generated} images in {format_duration(summary.seconds)}"

    def given_up(task: Task, error: str, attempts: int) -> str:
        return f"lost {attempts} time(s), last: {error}; its unfinished units stay undone"

    run_tasks(executor, tasks, retries=retries, finished=finished, given_up=given_up, say=say)
    summary = finish_job(job.output)
    summary.output = Path(job.output)
    summary.generated, summary.seconds = generated, time.perf_counter() - started
    return summary


__all__ = ["ShardedJob", "prepare_sharded", "generate_shard", "run_shards"]
