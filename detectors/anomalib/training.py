"""Training an anomalib module through anomalib's own ``Engine`` on a tensor of normal images, quietly.

The engine runs barebones (no checkpoint callback, no logger, no progress bar, no model summary) with its root
folder in a temporary directory, so nothing is written into the working directory; its Lightning chatter is
silenced for the run. Memory-bank models (PaDiM, PatchCore, ...) make one pass over the data whatever the step
budget; the others train for ``steps`` optimiser steps of ``batch_size`` images.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional

import torch

def is_memory_bank(module: Any) -> bool:
    """Whether the model fits a memory bank or a density in one pass instead of training by gradient steps."""
    from anomalib.models.components import MemoryBankMixin

    return isinstance(module, MemoryBankMixin)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Lightning's and anomalib's info lines, progress bars and warnings off for the block (errors still
    raise)."""
    # Lightning re-reads its loggers' settings while it sets a trainer up, so levels set on them beforehand do not
    # hold; logging.disable does (for the block only: the previous setting is restored)
    disabled = logging.root.manager.disable
    try:
        logging.disable(logging.WARNING)
        # anomalib's coreset selection draws a tqdm bar on stderr; Lightning prints tips on stdout
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), \
                contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(disabled)


def _batches(images: torch.Tensor, batch_size: int, seed: int) -> torch.utils.data.DataLoader:
    """A loader of anomalib ``ImageBatch`` es (float [0, 1], three channels, all labelled normal)."""
    from anomalib.data import ImageBatch

    def collate(items: List[torch.Tensor]) -> ImageBatch:
        x = torch.stack(items)
        return ImageBatch(image=x, gt_label=torch.zeros(len(x), dtype=torch.long))

    return torch.utils.data.DataLoader(list(images), batch_size=min(batch_size, len(images)), shuffle=True,
                                       drop_last=False, collate_fn=collate,
                                       generator=torch.Generator().manual_seed(seed))


def train_module(module: Any, images: torch.Tensor, steps: int, batch_size: int, device: torch.device, seed: int,
                 callback: Optional[Callable[[Dict[str, float]], None]] = None) -> List[Dict[str, float]]:
    """Train ``module`` on ``images`` (``(N, 3, S, S)`` float in [0, 1]) with anomalib's ``Engine``; returns the
    per-step records ``{"step", "loss"}`` (empty for a memory-bank model, which has no loss)."""
    from anomalib.engine import Engine
    from lightning.pytorch.callbacks import Callback

    history: List[Dict[str, float]] = []

    class Record(Callback):  # the loss of every step, as the other detectors' histories hold it
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if isinstance(loss, torch.Tensor) and not memory_bank:  # a memory bank's "loss" is a dummy 0
                history.append({"step": trainer.global_step, "loss": float(loss.detach())})
                if callback is not None:
                    callback(history[-1])

    memory_bank = is_memory_bank(module)
    with quiet(), tempfile.TemporaryDirectory(prefix="defectgen-anomalib-") as root:
        engine = Engine(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, barebones=True,
                        default_root_dir=root, logger=False, callbacks=[Record()], limit_val_batches=0,
                        num_sanity_val_steps=0, max_steps=-1 if memory_bank else steps)
        engine.fit(module, train_dataloaders=_batches(images, batch_size, seed))
    return history


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """``lightning.seed_everything(seed)`` for the block, the caller's random streams (torch, CUDA, numpy,
    random) restored after it: a fit is reproducible without changing the caller's state."""
    import random

    import lightning
    import numpy as np

    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        lightning.seed_everything(seed, verbose=False)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


__all__ = ["train_module", "is_memory_bank", "quiet", "seeded"]
