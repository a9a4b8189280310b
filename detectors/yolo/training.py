"""One fit of the YOLO detector on ultralytics' trainer: the step plan its sampler draws, the trainer with the
detector's callbacks (progress, epoch records written to the run folder, the user's callback), the weights kept,
and the process-wide state ultralytics changes, restored afterwards.

The trainer, dataset and samplers themselves are in :mod:`.dataset`; why the fit is wired this way is in
``docs/yolo.md``.
"""
from __future__ import annotations

import copy
import math
import os
import random
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional

import numpy as np
import torch

from defectgen.progress import Progress

from .run_folder import write_state


def step_plan(data: Any, run_data, epochs: Optional[int], images_seen: Optional[int], batch_size: int, seed: int):
    """The run's :class:`~detectors.yolo.dataset.StepPlan`, or None for an epoch run on ultralytics' own
    sampler (``epochs`` given and no step-based mix)."""
    from ..data.sources import steps_for
    from .dataset import StepPlan, choose_epochs
    from .yoloset import mixed_files

    step_mixed = bool(getattr(data, "step_based", False)) and callable(getattr(data, "plan", None))
    if images_seen is None and not step_mixed:
        return None
    b = batch_size
    files = run_data.counts["labelled"] + run_data.counts["ok"]
    per_pass = data.steps_per_epoch(b) if step_mixed else math.ceil(files / b)
    if images_seen is None:
        n_epochs, per_epoch = epochs, per_pass
    else:
        n_epochs, per_epoch = choose_epochs(steps_for(images_seen, b), per_pass)
    if not step_mixed:
        return StepPlan(n_epochs, per_epoch, b, seed)
    synthetic_files, real_files = mixed_files(data, run_data)
    return StepPlan(n_epochs, per_epoch, b, seed, data, synthetic_files, real_files)


@dataclass
class TrainedRun:
    """What a fit on ultralytics' trainer hands back: the weights kept, this fit's epoch records (a resumed fit's
    included), and its optimiser steps and training images."""

    weights: Dict[str, torch.Tensor]
    records: List[Dict[str, Any]]
    steps: int
    images: int


def train_on_ultralytics(overrides: Dict[str, Any], run_data, plan, network: Optional[torch.nn.Module], run: Path,
                         state: Dict[str, Any], epochs: int, per_epoch: int, batch_size: int,
                         progress: Optional[bool], callback: Optional[Callable[[Dict[str, Any]], None]]) -> TrainedRun:
    """Train ``epochs`` epochs of ``per_epoch`` batches with ultralytics' training arguments ``overrides``,
    from ``network``'s weights (None: a resumed fit, from its checkpoint), recording each epoch in ``state``.

    The weights kept are ultralytics' final model, the EMA of the weights after the last epoch, in fp32.
    """
    from .dataset import DefectgenTrainer

    threads = torch.get_num_threads()
    trainer = DefectgenTrainer(overrides=overrides, data=run_data.data, synthetic=run_data.synthetic,
                               steps=plan)
    torch.set_num_threads(threads)  # ultralytics' select_device sets its own count (cores - 1) on CPU
    if network is not None:
        trainer.model = copy.deepcopy(network)  # training continues from the current weights
    base = int(state["before"]["epochs_trained"])
    records: List[Dict[str, Any]] = list(state["records"])
    bar: List[Progress] = []

    def on_train_start(t) -> None:
        batches = len(t.train_loader)
        records[:] = records[:t.start_epoch]  # a resumed run keeps the records its checkpoint covers
        bar.append(Progress(epochs * batches, already=t.start_epoch * batches, label="yolo", enabled=progress,
                            unit="batch"))

    def on_train_batch_end(t) -> None:
        if bar:
            losses = _losses(t)
            bar[0].update(1, f"epoch {t.epoch + 1}/{epochs} " + " ".join(
                f"{k.replace('_loss', '')} {v:.3f}" for k, v in losses.items()))

    def on_fit_epoch_end(t) -> None:
        record = _epoch_record(t, base)
        done = t.epoch + 1  # epochs of this fit so far; the record gives the detector's totals
        record["steps"] = int(state["before"].get("steps_trained", 0)) + done * per_epoch
        record["images_seen"] = int(state["before"].get("images_seen", 0)) + done * (
            per_epoch * batch_size if plan is not None else len(t.train_loader.dataset))
        records.append(record)
        state["records"] = list(records)
        write_state(run, state)
        if callback is not None:
            callback(record)

    trainer.add_callback("on_train_start", on_train_start)
    trainer.add_callback("on_train_batch_end", on_train_batch_end)
    trainer.add_callback("on_fit_epoch_end", on_fit_epoch_end)
    try:
        trainer.train()
    finally:
        if bar:
            bar[0].close()
    ema = trainer.ema.ema if trainer.ema is not None else trainer.model
    trained = {k: v.detach().float() if v.is_floating_point() else v.detach() for k, v in ema.state_dict().items()}
    # an epoch run on ultralytics' sampler shows every training image once per epoch (no batch is dropped)
    images = plan.images if plan is not None else epochs * len(trainer.train_loader.dataset)
    steps = plan.total_steps if plan is not None else epochs * len(trainer.train_loader)
    return TrainedRun(trained, records, steps, images)


def _losses(trainer) -> Dict[str, float]:
    """The epoch's running mean losses by name (``box_loss``, ``cls_loss``, ``dfl_loss``)."""
    tloss = trainer.tloss
    if tloss is None:
        return {}
    if isinstance(tloss, Mapping):
        return {str(k): float(v) for k, v in tloss.items()}
    return {str(k): float(v) for k, v in zip(trainer.loss_names, torch.as_tensor(tloss).flatten())}


_METRICS = {"metrics/precision(B)": "precision", "metrics/recall(B)": "recall", "metrics/mAP50(B)": "mAP50",
            "metrics/mAP50-95(B)": "mAP50-95"}


def _epoch_record(trainer, base: int) -> Dict[str, Any]:
    losses = _losses(trainer)
    record: Dict[str, Any] = {"epoch": base + trainer.epoch + 1, "loss": float(sum(losses.values())), **losses,
                              "seconds": float(trainer.epoch_time or 0.0)}
    lr = getattr(trainer, "lr", None)
    if lr:
        record["lr"] = float(next(iter(lr.values())))
    for key, name in _METRICS.items():
        if trainer.metrics and key in trainer.metrics:
            record[name] = float(trainer.metrics[key])
    return record


@contextmanager
def preserved_global_state() -> Iterator[None]:
    """Restore what ultralytics' seeding and device selection change process-wide: the random streams of
    Python, NumPy and torch, the deterministic-algorithm flags and their environment, the thread count."""
    py_state, np_state = random.getstate(), np.random.get_state()
    flags = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    fill = getattr(torch.utils.deterministic, "fill_uninitialized_memory", None)
    env = {key: os.environ.get(key) for key in ("CUBLAS_WORKSPACE_CONFIG", "PYTHONHASHSEED")}
    threads = torch.get_num_threads()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() \
        else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        if fill is not None:
            torch.utils.deterministic.fill_uninitialized_memory = fill
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(threads)
