"""Executors: where the independent tasks of a run go — a study's cells, a generation job's shards.

The run folder stays the truth (a cell is done when its ``result.json`` exists, a generation unit when its
record does), so an executor only decides where tasks run: runs on several executors mix and resume each other.

- :mod:`.base`: :class:`Task` (a picklable function and its arguments), :class:`Resources` (CPUs, GPUs, time
  limit, partition), the :class:`Executor` interface, :class:`TaskLost` and :class:`ExecutorError`;
- :mod:`.driver`: :func:`run_tasks`, the one loop that submits, watches, retries lost tasks, reports progress and
  cancels on Ctrl-C;
- :mod:`.local`: :class:`LocalExecutor`, tasks in this process one after another;
- :mod:`.ray_executor`: ``RayExecutor``, Ray tasks on a Ray started here or a cluster (optional extra ``ray``);
- :mod:`.slurm_executor`: ``SlurmExecutor``, SLURM job arrays through submitit (optional extra ``slurm``);
- :mod:`.options`: the ``--executor`` flags both commands take, their checks, and :func:`make_executor`.

Ray and submitit are imported only in their modules, when chosen: ``import defectgen`` never needs them.
"""
from .base import Executor, ExecutorError, Resources, Task, TaskLost
from .driver import run_tasks
from .local import LocalExecutor
from .options import ExecutorOptions, add_executor_arguments, executor_options, make_executor

__all__ = ["Executor", "ExecutorError", "Resources", "Task", "TaskLost", "run_tasks", "LocalExecutor",
           "ExecutorOptions", "add_executor_arguments", "executor_options", "make_executor"]
