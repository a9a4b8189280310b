"""The one training loop of the built-in torch detectors: steps, schedule, progress, callbacks, checkpoints.

The CutPaste detector and Faster R-CNN (and what comes after them) differ in what one step computes, not in
how training runs around it: a detector hands :class:`TrainingLoop` its network, optimiser and schedule and a
``step(i)`` function returning the loss (and any numbers worth recording); the loop does the backward pass and
the update, advances the schedule, refuses a diverged loss, keeps the history, draws the progress bar
(loss and ETA), calls the user's callback and writes checkpoints.

A checkpoint holds the network, the optimiser, the schedule, the step and the history, plus whatever the
detector adds (e.g. its batch generator's state): :meth:`TrainingLoop.restore` puts it all back, so an
interrupted run continues where it stopped and ends with the model an uninterrupted run gives. Checkpoints are
written atomically (a kill while writing leaves the previous one) and read with ``weights_only=True``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch

from .io.torch_files import read_local_torch_file, save_state
from .progress import Progress

Record = Dict[str, float]
StepFn = Callable[[int], Tuple[torch.Tensor, Dict[str, Any]]]

CHECKPOINT_FORMAT = "defectgen.detectors.checkpoint/1"


class TrainingLoop:
    """Runs ``steps`` updates of ``network`` (see the module docstring).

    Args:
        network: the module being trained (put in train mode for the run, eval mode after it).
        optimiser: its optimiser.
        schedule: an LR scheduler stepped once per step (or ``None``).
        history: the list records are appended to (the detector's own, so it survives several fits).
        label, unit: the progress bar's label and unit.
        progress: show the bar on stderr (``None``: when stderr is a terminal).
        callback: called after every step with the step's record.
        checkpoint: file to write checkpoints to (``None``: no checkpoints).
        checkpoint_every: write one every this many steps (and after the last); ``0`` = only after the last.
        extra_state: returns detector-specific state to store in each checkpoint (tensors and plain data).
        postfix: formats a record for the progress bar (default: ``loss 0.123`` and any ``accuracy``).
    """

    def __init__(self, network: torch.nn.Module, optimiser: torch.optim.Optimizer, schedule=None, *,
                 history: Optional[List[Record]] = None, label: str = "train", unit: str = "step",
                 progress: Optional[bool] = None, callback: Optional[Callable[[Record], None]] = None,
                 checkpoint: Optional[Union[str, Path]] = None, checkpoint_every: int = 0,
                 extra_state: Optional[Callable[[], Dict[str, Any]]] = None,
                 postfix: Optional[Callable[[Record], str]] = None):
        self.network, self.optimiser, self.schedule = network, optimiser, schedule
        self.history = history if history is not None else []
        self.label, self.unit, self.progress, self.callback = label, unit, progress, callback
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.checkpoint_every = int(checkpoint_every)
        self.extra_state = extra_state
        self.postfix = postfix or _default_postfix
        self.step = 0  # steps done in this run (a resumed run starts from the checkpoint's)

    def run(self, steps: int, step_fn: StepFn, first_record_step: int = 0) -> List[Record]:
        """Do steps ``self.step .. steps - 1``; returns this run's records.

        ``step_fn(i)`` computes step ``i``'s loss (a scalar tensor with a graph) and a dict of extra numbers
        (tensors or floats); ``first_record_step`` offsets the ``"step"`` field (a detector trained before).
        """
        records: List[Record] = []
        bar = Progress(steps, already=self.step, label=self.label, enabled=self.progress, unit=self.unit)
        self.network.train()
        try:
            while self.step < steps:
                loss, extras = step_fn(self.step)
                self.optimiser.zero_grad(set_to_none=True)
                loss.backward()
                self.optimiser.step()
                record: Record = {"step": first_record_step + self.step + 1, "loss": loss.item(),
                                  **{k: float(v) for k, v in extras.items()}}
                if self.schedule is not None:
                    record["lr"] = self.schedule.get_last_lr()[0]
                    self.schedule.step()
                if not math.isfinite(record["loss"]):
                    raise FloatingPointError(f"training diverged at step {record['step']} (loss {record['loss']}); "
                                             "try a lower learning_rate")
                self.step += 1
                self.history.append(record)
                records.append(record)
                bar.update(1, self.postfix(record))
                if self.callback is not None:
                    self.callback(record)
                if self.checkpoint is not None and (self.step == steps or (
                        self.checkpoint_every and self.step % self.checkpoint_every == 0)):
                    self.save_checkpoint()
        finally:
            bar.close()
            self.network.eval()
        return records

    # -- checkpoints --------------------------------------------------------------------------------------------
    def state(self) -> Dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "step": self.step, "history": list(self.history),
                "network": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
                "optimiser": self.optimiser.state_dict(),
                "schedule": None if self.schedule is None else self.schedule.state_dict(),
                "extra": self.extra_state() if self.extra_state is not None else {}}

    def save_checkpoint(self) -> Path:
        return save_state(self.state(), self.checkpoint)

    def restore(self, path: Optional[Union[str, Path]] = None) -> Dict[str, Any]:
        """Load a checkpoint into the network, optimiser and schedule; returns its ``extra`` state.

        The history is replaced by the checkpoint's and :attr:`step` set to its step.
        """
        path = Path(path) if path is not None else self.checkpoint
        state = read_checkpoint(path)
        device = next(self.network.parameters()).device
        self.network.load_state_dict(state["network"])
        self.network.to(device)
        self.optimiser.load_state_dict(state["optimiser"])
        if self.schedule is not None and state["schedule"] is not None:
            self.schedule.load_state_dict(state["schedule"])
        self.history[:] = state["history"]
        self.step = int(state["step"])
        return state["extra"]


def read_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """A checkpoint written by :class:`TrainingLoop` (``ValueError`` naming the file otherwise)."""
    state = read_local_torch_file(path, "checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not a defectgen training checkpoint")
    return state


def _default_postfix(record: Record) -> str:
    text = f"loss {record['loss']:.3f}"
    if "accuracy" in record:
        text += f" acc {record['accuracy']:.3f}"
    return text


def cosine_schedule(optimiser: torch.optim.Optimizer, steps: int, warmup: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate rising linearly over ``warmup`` steps, then decayed to zero on a half cosine over the
    remaining steps (training from scratch with Adam needs the warm-up; the paper's CutPaste schedule has none)."""
    if warmup <= 0:
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda t: 0.5 * (1 + math.cos(math.pi * t / steps)))
    decay = max(steps - warmup, 1)
    return torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda t: (t + 1) / warmup if t < warmup else 0.5 * (1 + math.cos(math.pi * (t - warmup) / decay)))


__all__ = ["TrainingLoop", "read_checkpoint", "cosine_schedule", "CHECKPOINT_FORMAT"]
