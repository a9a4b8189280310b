"""Which real labelled images a run learns from: the set, the split, the held-out images and the K chosen.

A fit, the transplant bank its recipe names, and ``defectgen train --real-count K`` must all look at the same K
images, or a comparison between "K real images" and "a recipe fitted to K real images" compares different
defects. So the one description, :class:`RealSpec`, is written into the recipe's bank config
(``layout: labelled``) and into ``statistics.json``; :func:`choose_names` picks the images with
:func:`~defectgen.io.labelled.choose_real`, the rule ``train --real-count`` and the studies call, from the same
split ``train`` reads by default (:data:`TRAINING_SPLITS`).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from ...checks import check_int
from .labelled_set import LabelledSet, choose_real
from .readers import FORMATS, detect_format, read_labelled

TRAINING_SPLITS: Dict[str, Optional[str]] = {"yolo": "train", "coco": "train", "voc": "train", "mvtec": "test",
                                             "deeppcb": None}
"""The split each format's real images are read from when none is given: what ``defectgen train --real`` reads
(``detectors.data.training_data``), so ``fit --real-count K`` and ``train --real-count K`` choose the same K.
MVTec's labelled defects are its ``test`` images (``train`` holds good images only)."""


@dataclass(frozen=True)
class RealSpec:
    """The real labelled images of a fit, as a recipe can name them again.

    Attributes:
        root: the set (a folder, or a COCO ``.json`` / YOLO ``data.yaml``); kept absolute, so a recipe that names
            it works from any working directory.
        format: one of :data:`~defectgen.io.labelled.FORMATS` (``"auto"`` is resolved by :meth:`resolved`).
        split: the split read; None: the format's training split (:data:`TRAINING_SPLITS`).
        count: K, the images chosen by ``seed``; None: every image (after ``test_every``).
        seed: seeds the choice (:func:`~defectgen.io.labelled.choose_real`).
        test_every: hold out every ``test_every``-th image (by sorted name, index ``% test_every ==
            test_every - 1``) before choosing, as a DeepPCB study does with ``data.test_every`` (the study's
            real training images are the others, and it chooses its K among them).
        image_size: read images at ``image_size x image_size``; None keeps each image's size.
    """

    root: str
    format: str = "auto"
    split: Optional[str] = None
    count: Optional[int] = None
    seed: int = 0
    test_every: Optional[int] = None
    image_size: Optional[int] = None

    def __post_init__(self):
        object.__setattr__(self, "root", str(Path(self.root).expanduser().absolute()))
        if self.format != "auto" and self.format not in FORMATS:
            raise ValueError(f"format must be 'auto' or one of {list(FORMATS)}, got {self.format!r}")
        if self.count is not None:
            object.__setattr__(self, "count", check_int(self.count, "count", 1))
        object.__setattr__(self, "seed", check_int(self.seed, "seed"))
        if self.test_every is not None:
            object.__setattr__(self, "test_every", check_int(self.test_every, "test_every", 2))
        if self.image_size is not None:
            object.__setattr__(self, "image_size", check_int(self.image_size, "image_size", 1))
        if self.split is not None and not isinstance(self.split, str):
            raise TypeError(f"split must be a string or None, got {self.split!r}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "RealSpec":
        """From a bank config's keys (``root``, ``format``, ``split``, ``count``, ``seed``, ``test_every``,
        ``image_size``); other keys are the caller's."""
        if "root" not in config:
            raise ValueError(f"a labelled bank config needs a 'root', got keys {sorted(config)}")
        keys = ("root", "format", "split", "count", "seed", "test_every", "image_size")
        return cls(**{k: config[k] for k in keys if k in config and config[k] is not None})

    def resolved(self) -> "RealSpec":
        """This spec with ``format`` detected and ``split`` defaulted (what a recipe should record)."""
        fmt = detect_format(self.root) if self.format == "auto" else self.format
        split = self.split if self.split is not None else TRAINING_SPLITS.get(fmt)
        return RealSpec(self.root, fmt, split, self.count, self.seed, self.test_every, self.image_size)

    def to_config(self) -> Dict[str, Any]:
        """The spec as plain data, keys in a fixed order, None values left out."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def held_out(labelled: LabelledSet, every: Optional[int]) -> LabelledSet:
    """``labelled`` without every ``every``-th image by sorted name (index ``% every == every - 1``); the set's
    order is kept. ``every=None`` keeps every image."""
    if every is None:
        return labelled
    order = sorted(range(len(labelled)), key=lambda i: labelled.names[i])
    dropped = {order[k] for k in range(len(order)) if k % every == every - 1}
    return labelled.subset([i for i in range(len(labelled)) if i not in dropped])


def choose_names(labelled: LabelledSet, spec: RealSpec) -> LabelledSet:
    """The images of ``labelled`` (read as ``spec`` says) that ``spec`` chooses: ``test_every`` held out, then
    :func:`~defectgen.io.labelled.choose_real` with ``count`` and ``seed``."""
    pool = held_out(labelled, spec.test_every)
    if spec.count is None:
        return pool
    if spec.count > len(pool):
        held = f" ({len(labelled) - len(pool)} held out by test_every={spec.test_every})" if spec.test_every else ""
        raise ValueError(f"count={spec.count} but the real set {spec.root!r} has only {len(pool)} images to choose "
                         f"from{held}")
    return choose_real(pool, spec.count, spec.seed)


_CACHE: Dict[Tuple, Tuple[LabelledSet, int]] = {}
_CACHE_ENTRIES = 2


def _signature(root: str) -> Tuple:
    """Names, sizes and modification times of every file of the set: a cached choice is reused only while the
    files are the ones it read."""
    path = Path(root)
    if path.is_file():
        stat = path.stat()
        return ((path.name, stat.st_size, stat.st_mtime_ns),)
    entries = []
    for folder, _, files in os.walk(path):
        for name in files:
            stat = os.stat(os.path.join(folder, name))
            entries.append((os.path.relpath(os.path.join(folder, name), path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


def read_chosen(spec: RealSpec, size: Optional[int] = None, channels: int = 3) -> Tuple[LabelledSet, int, int]:
    """``(chosen, pool, pool_boxes)``: the images ``spec`` chooses, read at ``size`` (None: each image's own
    size), how many images they were chosen from, and how many defect boxes those hold.

    The whole split is read (the choice depends on its length and order), then only the chosen images are kept.
    A recipe with one transplant branch per class asks once per class: the last two choices are cached (keyed
    by the spec, the size and the files' names, sizes and modification times), so a recipe build reads the set
    once and keeps only K images.
    """
    spec = spec.resolved()
    key = (spec, size, channels, _signature(spec.root))
    if key not in _CACHE:
        labelled = read_labelled(spec.root, spec.format, split=spec.split, size=size, channels=channels)
        chosen = choose_names(labelled, spec)
        while len(_CACHE) >= _CACHE_ENTRIES:
            _CACHE.pop(next(iter(_CACHE)))
        pool = held_out(labelled, spec.test_every)
        _CACHE[key] = (chosen, len(pool), sum(len(b) for b in pool.boxes))
    return _CACHE[key]


def read_real(spec: RealSpec, size: Optional[int] = None, channels: int = 3
              ) -> Tuple[LabelledSet, Optional[List[torch.Tensor]], int, int]:
    """The K real images ``spec`` chooses, read at ``size`` (None: their own size), with their templates for
    aligned pairs.

    Aligned pairs (DeepPCB) are read at their own size and in grey whatever ``size`` says: their masks are cut by
    difference with the template (:func:`defectgen.bank.difference_masks`), whose thresholds are in source
    pixels, and the scans are binarised grey.

    Returns:
        ``(chosen, templates, pool, pool_boxes)``: the chosen set; for DeepPCB one ``(1, H, W)`` uint8 template
        per chosen image (else None); how many images the choice was made from, and their defect boxes.
    """
    spec = spec.resolved()
    if spec.format == "deeppcb":
        chosen, pool, boxes = read_chosen(spec, None, 1)
        return chosen, deeppcb_templates(spec.root, chosen.names), pool, boxes
    chosen, pool, boxes = read_chosen(spec, size, channels)
    return chosen, None, pool, boxes


def deeppcb_templates(root: str, names) -> List[torch.Tensor]:
    """The ``(1, H, W)`` uint8 templates of the pairs ``names`` of an aligned-pairs folder, in that order."""
    import warnings

    from ..images import read_image_as
    from ..pairs import read_pairs

    with warnings.catch_warnings():  # the reader already reported the skipped label lines
        warnings.simplefilter("ignore")
        items = {item.name: item for item in read_pairs(root)}
    missing = [n for n in names if n not in items]
    if missing:
        raise ValueError(f"no pair {missing[:5]} under {root!r}")
    return [torch.from_numpy(np.ascontiguousarray(read_image_as(items[n].template, 1, None))).permute(2, 0, 1)
            for n in names]
