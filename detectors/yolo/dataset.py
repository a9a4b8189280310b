"""The ultralytics side of the YOLO detector: a dataset that paints a fresh defect every epoch, and the trainer.

Why a custom dataset rather than rewriting the synthetic images in the run folder at each epoch start: the
ultralytics dataset keeps its labels in memory (read once, cached in ``labels/*.cache``), its mosaic buffer
keeps recently loaded images, and dataloader workers hold their own copies of all of it and prefetch batches of
the *next* epoch before ``on_train_epoch_start`` fires. Files rewritten on disk would be seen by some batches and
not others. :class:`DefectgenDataset` instead paints the defect in memory, where the image is loaded
(``update_labels_info``), with a generator seeded by (seed, epoch, image index): the defect an OK image gets at
a given epoch is a pure function of those three numbers.

The epoch reaches the dataset through the sampler, not through shared state: :class:`EpochBatches` wraps the
loader's batch sampler (which runs in the main process) and hands out ``epoch * N + i`` instead of ``i``, counting
its own passes from the trainer's start epoch. ``__getitem__`` splits it again. So the defects are the same with
0 or 8 workers, with prefetching, and after a resume (the count restarts at the checkpoint's epoch). Mosaic
partners an item pulls in are painted with that item's epoch. Labelled images go through ultralytics' own path.

A run counted in images seen (``fit(images_seen=...)``) or mixed step by step (a
:class:`~detectors.data.sources.MixedSource` with a ``real_fraction`` or the ``"finetune"`` schedule) replaces
the batch sampler altogether with :class:`StepBatches`: ultralytics counts a run in epochs of
``len(train_loader)`` batches, so the sampler yields a fixed number of batches per epoch (:class:`StepPlan`), and
batch ``j`` of epoch ``e`` is global step ``e * per_epoch + j``, whose images are a pure function of the step:
a seeded stream of permutations of the training images, or the mixed source's :meth:`plan` mapped to the files
of its OK and real images. Its tag is the step (``step * N + i``) and the defect of a step is drawn from the
``yolo-step`` stream, so every draw of an OK image gets a defect of its own even when an epoch shows it twice.

:class:`DefectgenTrainer` is ultralytics' ``DetectionTrainer`` with the few hooks it is meant to override:
``get_dataset`` (the data dictionary, without ``check_det_dataset``'s font download), ``build_dataset`` and
``get_dataloader`` (the dataset and sampler above), ``save_model`` (``last.pt`` written atomically: a kill while
writing leaves the previous one; no ``best.pt``), ``final_eval`` (skipped: it re-validates ``best.pt``, a
selection we do not make, through ``check_det_dataset``) and ``run_callbacks`` (ultralytics' auto-attached
integrations never run; see :mod:`.offline`).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .offline import import_ultralytics, is_ultralytics_integration

import_ultralytics()  # offline environment before the first ultralytics import

from ultralytics.data.dataset import YOLODataset  # noqa: E402
from ultralytics.models.yolo.detect import DetectionTrainer  # noqa: E402
from ultralytics.utils import colorstr  # noqa: E402
from ultralytics.utils.torch_utils import unwrap_model  # noqa: E402

from defectgen.rng import index_seed  # noqa: E402

from .yoloset import SyntheticPart  # noqa: E402


class DefectgenDataset(YOLODataset):
    """ultralytics' YOLO dataset over ``<run>/data/images/train``, painting a defect on each OK image it loads."""

    def __init__(self, *args: Any, synthetic: SyntheticPart, **kwargs: Any):
        self.synthetic = synthetic
        self.epoch = 0  # the tag of the item being loaded: its epoch, or its global step (tag_unit)
        self.tag_unit = "epoch"  # "step" under StepBatches (set before the loader's workers start)
        super().__init__(*args, **kwargs)
        self._ok_of_file = {f: synthetic.files[Path(f).name] for f in self.im_files
                            if Path(f).name in synthetic.files}

    def __getitem__(self, index: int) -> Dict[str, Any]:
        # the sampler encodes the epoch (or step) in the index; items fetched without it (e.g. by ultralytics'
        # own checks) count as epoch 0
        self.epoch, index = divmod(int(index), len(self))
        return super().__getitem__(index)

    def update_labels_info(self, label: Dict[str, Any]) -> Dict[str, Any]:
        ok = self._ok_of_file.get(label["im_file"])
        if ok is not None:
            image, boxes, classes = self.synthetic.paint_for_epoch(ok, self.epoch, self.tag_unit)
            array = image.permute(1, 2, 0).numpy()
            # the loader hands out BGR (ultralytics' Format turns it into RGB); gray becomes three equal channels
            label["img"] = np.ascontiguousarray(np.repeat(array, 3, 2) if array.shape[2] == 1 else array[..., ::-1])
            h, w = array.shape[:2]
            xywh = np.zeros((len(boxes), 4), dtype=np.float32)
            if len(boxes):
                b = boxes.numpy().astype(np.float32)
                xywh[:, 0], xywh[:, 1] = (b[:, 0] + b[:, 2]) / 2 / w, (b[:, 1] + b[:, 3]) / 2 / h
                xywh[:, 2], xywh[:, 3] = (b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h
            label["bboxes"] = xywh
            label["cls"] = classes.numpy().astype(np.float32).reshape(-1, 1)
            label["segments"] = []
        return super().update_labels_info(label)

    def verify_labels(self, labels, cache_path) -> None:
        if any(len(lb["cls"]) for lb in labels):  # OK images alone have empty label files by design: no warning
            super().verify_labels(labels, cache_path)


class EpochBatches:
    """A batch sampler that tags each index with its epoch: ``epoch * size + i`` (see the module docstring)."""

    def __init__(self, batches: Any, size: int, start: Callable[[], int]):
        self.batches, self.size, self.start = batches, size, start
        self.next_epoch: Optional[int] = None

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        epoch = self.start() if self.next_epoch is None else self.next_epoch
        self.next_epoch = epoch + 1
        for batch in self.batches:
            yield [epoch * self.size + int(i) for i in batch]

    def restart(self, epoch: int) -> None:
        """The next pass is ``epoch`` (after ultralytics rebuilds its iterator, e.g. when mosaic closes)."""
        self.next_epoch = epoch


def choose_epochs(total_steps: int, per_pass: int) -> Tuple[int, int]:
    """``(E, L)``: ``E`` epochs of ``L`` batches for a run of ``total_steps`` steps, ``E * L`` the smallest
    count ``>= total_steps`` that epochs of about ``per_pass`` batches (one pass over the data) allow.

    ultralytics counts a run in epochs of a fixed number of batches (its warm-up, learning-rate schedule,
    validation and checkpoints are per epoch), so a run counted in steps must be cut into equal epochs. Among
    epochs of ``per_pass / 2 .. 2 * per_pass`` batches (any length when none fits) the one with the fewest extra
    steps wins, then the one closest to a pass: an exact ``E * L == total_steps`` whenever such a split exists,
    else fewer than ``E`` extra steps (the detector records the count it trained).
    """
    if total_steps < 1 or per_pass < 1:
        raise ValueError(f"total_steps and per_pass must be >= 1, got {total_steps} and {per_pass}")
    if total_steps <= per_pass:  # less than a pass: one epoch
        return 1, total_steps
    # E = ceil(T / per_pass) gives L in [per_pass / 2, per_pass]: the range below always holds a candidate
    options = []
    for epochs in range(max(1, total_steps // (2 * per_pass)), min(total_steps, 2 * total_steps // per_pass + 1) + 1):
        length = math.ceil(total_steps / epochs)
        if per_pass / 2 <= length <= 2 * per_pass:
            options.append((epochs * length - total_steps, abs(math.log(length / per_pass)), epochs, length))
    _, _, epochs, length = min(options)
    return epochs, length


@dataclass
class StepPlan:
    """A training run counted in steps: ``epochs`` ultralytics epochs of ``per_epoch`` batches of ``batch_size``.

    ``mixed`` (optional): a step-based :class:`~detectors.data.sources.MixedSource` whose
    ``plan(step, batch_size, total_steps)`` composes every batch; ``synthetic_files`` / ``real_files`` name the
    training file of its synthetic item ``k`` and real image ``k``. Without it, batches walk a stream of seeded
    permutations of every training image (each image once per pass, to within one batch).
    """

    epochs: int
    per_epoch: int
    batch_size: int
    seed: int
    mixed: Any = None
    synthetic_files: Sequence[str] = ()
    real_files: Sequence[str] = ()

    @property
    def total_steps(self) -> int:
        return self.epochs * self.per_epoch

    @property
    def images(self) -> int:
        """Images the run trains on (every batch holds ``batch_size``)."""
        return self.total_steps * self.batch_size

    def composer(self, im_files: Sequence[str]) -> Callable[[int], List[int]]:
        """``step -> dataset indices`` over a dataset whose files are ``im_files`` (ultralytics' order)."""
        position = {Path(f).name: i for i, f in enumerate(im_files)}
        if self.mixed is None:
            return _stream_batches(len(im_files), self.batch_size, self.seed)
        missing = [f for f in (*self.synthetic_files, *self.real_files) if f not in position]
        if missing:
            raise ValueError(f"the run's data lacks the files of the mixed source's items: {missing[:3]}...")
        synthetic = torch.tensor([position[f] for f in self.synthetic_files], dtype=torch.int64)
        real = torch.tensor([position[f] for f in self.real_files], dtype=torch.int64)
        mixed, batch_size, total = self.mixed, self.batch_size, self.total_steps

        def compose(step: int) -> List[int]:
            syn, rea = mixed.plan(step, batch_size, total)
            return torch.cat([synthetic[syn], real[rea]]).tolist()

        return compose


def _stream_batches(count: int, batch_size: int, seed: int) -> Callable[[int], List[int]]:
    """``step -> indices``: positions ``step * B .. step * B + B - 1`` of an endless stream of seeded
    permutations of ``range(count)`` (permutation ``p`` from ``index_seed(seed, p, "yolo-stream")``)."""
    cache: Dict[int, torch.Tensor] = {}

    def permutation(p: int) -> torch.Tensor:
        if p not in cache:
            if len(cache) > 4:
                cache.clear()
            generator = torch.Generator().manual_seed(index_seed(seed, p, "yolo-stream"))
            cache[p] = torch.randperm(count, generator=generator)
        return cache[p]

    def compose(step: int) -> List[int]:
        start = step * batch_size
        first, last = start // count, (start + batch_size - 1) // count
        walked = torch.cat([permutation(p) for p in range(first, last + 1)])
        offset = start - first * count
        return walked[offset:offset + batch_size].tolist()

    return compose


class StepBatches:
    """A batch sampler yielding ``per_epoch`` batches per pass: batch ``j`` of epoch ``e`` holds the dataset
    indices ``compose(e * per_epoch + j)`` (see the module docstring), tagged ``step * size + i`` when ``size``
    is given (a :class:`DefectgenDataset`). Passes are counted from ``start()`` (the trainer's start epoch, so a
    resumed run goes on where the checkpoint stopped). Steps past ``total_steps`` (batches dataloader workers
    prefetch after the last epoch, never trained on) repeat the run's first steps instead of failing."""

    def __init__(self, compose: Callable[[int], List[int]], per_epoch: int, total_steps: int,
                 start: Callable[[], int], size: Optional[int] = None, batch_size: Optional[int] = None):
        self.compose, self.per_epoch, self.total_steps = compose, per_epoch, total_steps
        self.start, self.size, self.batch_size = start, size, batch_size
        self.next_epoch: Optional[int] = None

    def __len__(self) -> int:
        return self.per_epoch

    def batch(self, step: int) -> List[int]:
        """The (tagged) dataset indices of global step ``step``."""
        indices = [int(i) for i in self.compose(step % self.total_steps)]
        if self.batch_size is not None and len(indices) != self.batch_size:
            raise RuntimeError(f"step {step} planned {len(indices)} images, not the batch size {self.batch_size}")
        return indices if self.size is None else [step * self.size + i for i in indices]

    def __iter__(self):
        epoch = self.start() if self.next_epoch is None else self.next_epoch
        self.next_epoch = epoch + 1
        for j in range(self.per_epoch):
            yield self.batch(epoch * self.per_epoch + j)

    def restart(self, epoch: int) -> None:
        """The next pass is ``epoch`` (after ultralytics rebuilds its iterator, e.g. when mosaic closes)."""
        self.next_epoch = epoch


class DefectgenTrainer(DetectionTrainer):
    """``DetectionTrainer`` on a run's data (see the module docstring)."""

    def __init__(self, overrides: Dict[str, Any], data: Dict[str, Any], synthetic: Optional[SyntheticPart],
                 steps: Optional[StepPlan] = None):
        self._defectgen_data = data
        self._defectgen_synthetic = synthetic
        self._defectgen_steps = steps
        super().__init__(overrides=overrides)
        for event, functions in self.callbacks.items():  # the validator gets this dict: clean it once
            self.callbacks[event] = [f for f in functions if not is_ultralytics_integration(f)]

    def run_callbacks(self, event: str) -> None:
        for callback in self.callbacks.get(event, []):
            if not is_ultralytics_integration(callback):  # __init__ runs one event before we can clean the dict
                callback(self)

    def get_dataset(self) -> Dict[str, Any]:
        return dict(self._defectgen_data)

    def build_dataset(self, img_path: str, mode: str = "train", batch: Optional[int] = None):
        if mode != "train" or self._defectgen_synthetic is None:
            return super().build_dataset(img_path, mode, batch)
        args = self.args
        return DefectgenDataset(img_path=img_path, imgsz=args.imgsz, batch_size=batch, augment=True, hyp=args,
                                rect=False, cache=args.cache or None, single_cls=False,
                                stride=max(int(unwrap_model(self.model).stride.max()), 32), pad=0.0,
                                prefix=colorstr(f"{mode}: "), task=args.task, classes=args.classes, data=self.data,
                                fraction=1.0, synthetic=self._defectgen_synthetic)

    def get_dataloader(self, dataset_path: str, batch_size: int = 16, rank: int = 0, mode: str = "train"):
        loader = super().get_dataloader(dataset_path, batch_size, rank, mode)
        dataset, plan = loader.dataset, self._defectgen_steps
        repeat = loader.batch_sampler  # ultralytics' _RepeatSampler around the epoch's batch sampler
        start = lambda: int(getattr(self, "epoch", 0))  # noqa: E731
        tagged = isinstance(dataset, DefectgenDataset)
        if mode == "train" and plan is not None:
            if batch_size != plan.batch_size:
                raise RuntimeError(f"the run was planned for batches of {plan.batch_size}, ultralytics asks for "
                                   f"{batch_size} (an out-of-memory retry halves it): lower batch_size instead")
            if tagged:
                dataset.tag_unit = "step"
            repeat.sampler = StepBatches(plan.composer(dataset.im_files), plan.per_epoch, plan.total_steps, start,
                                         len(dataset) if tagged else None, plan.batch_size)
        elif tagged:
            repeat.sampler = EpochBatches(repeat.sampler, len(dataset), start)
        return loader

    def _close_dataloader_mosaic(self) -> None:
        super()._close_dataloader_mosaic()
        sampler = getattr(self.train_loader.batch_sampler, "sampler", None)
        if isinstance(sampler, (EpochBatches, StepBatches)):
            sampler.restart(self.epoch)  # the loop resets the iterator next: the new pass is this epoch

    def save_model(self) -> bool:
        """ultralytics' checkpoint, written atomically: ``last.pt`` only (``best.pt``, chosen on the validation
        images, is never used here, so its bytes go to the null device instead of a second 30 MB file)."""
        last, best = self.last, self.best
        self.last, self.best = last.with_name(f".{last.name}.{os.getpid()}.tmp"), Path(os.devnull)
        try:
            saved = super().save_model()
            os.replace(self.last, last)
        finally:
            self.last.unlink(missing_ok=True)
            self.last, self.best = last, best
        return saved

    def final_eval(self) -> None:
        """Skipped: ultralytics re-validates ``best.pt`` here; the detector keeps the last model."""


__all__ = ["DefectgenDataset", "DefectgenTrainer", "EpochBatches", "StepBatches", "StepPlan", "choose_epochs"]
