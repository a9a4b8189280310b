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

:class:`DefectgenTrainer` is ultralytics' ``DetectionTrainer`` with the few hooks it is meant to override:
``get_dataset`` (the data dictionary, without ``check_det_dataset``'s font download), ``build_dataset`` and
``get_dataloader`` (the dataset and sampler above), ``save_model`` (``last.pt`` written atomically: a kill while
writing leaves the previous one; no ``best.pt``), ``final_eval`` (skipped: it re-validates ``best.pt``, a
selection we do not make, through ``check_det_dataset``) and ``run_callbacks`` (ultralytics' auto-attached
integrations never run; see :mod:`.offline`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np

from .offline import import_ultralytics, is_ultralytics_integration

import_ultralytics()  # offline environment before the first ultralytics import

from ultralytics.data.dataset import YOLODataset  # noqa: E402
from ultralytics.models.yolo.detect import DetectionTrainer  # noqa: E402
from ultralytics.utils import colorstr  # noqa: E402
from ultralytics.utils.torch_utils import unwrap_model  # noqa: E402

from .yoloset import SyntheticPart  # noqa: E402


class DefectgenDataset(YOLODataset):
    """ultralytics' YOLO dataset over ``<run>/data/images/train``, painting a defect on each OK image it loads."""

    def __init__(self, *args: Any, synthetic: SyntheticPart, **kwargs: Any):
        self.synthetic = synthetic
        self.epoch = 0
        super().__init__(*args, **kwargs)
        self._ok_of_file = {f: synthetic.files[Path(f).name] for f in self.im_files
                            if Path(f).name in synthetic.files}

    def __getitem__(self, index: int) -> Dict[str, Any]:
        # EpochBatches encodes the epoch in the index; items fetched without it (e.g. by ultralytics' own
        # checks) count as epoch 0
        self.epoch, index = divmod(int(index), len(self))
        return super().__getitem__(index)

    def update_labels_info(self, label: Dict[str, Any]) -> Dict[str, Any]:
        ok = self._ok_of_file.get(label["im_file"])
        if ok is not None:
            image, boxes, classes = self.synthetic.paint_for_epoch(ok, self.epoch)
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


class DefectgenTrainer(DetectionTrainer):
    """``DetectionTrainer`` on a run's data (see the module docstring)."""

    def __init__(self, overrides: Dict[str, Any], data: Dict[str, Any], synthetic: Optional[SyntheticPart]):
        self._defectgen_data = data
        self._defectgen_synthetic = synthetic
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
        if isinstance(loader.dataset, DefectgenDataset):
            repeat = loader.batch_sampler  # ultralytics' _RepeatSampler around the epoch's batch sampler
            repeat.sampler = EpochBatches(repeat.sampler, len(loader.dataset), lambda: int(getattr(self, "epoch", 0)))
        return loader

    def _close_dataloader_mosaic(self) -> None:
        super()._close_dataloader_mosaic()
        sampler = getattr(self.train_loader.batch_sampler, "sampler", None)
        if isinstance(sampler, EpochBatches):
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


__all__ = ["DefectgenDataset", "DefectgenTrainer", "EpochBatches"]
