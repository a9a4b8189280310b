"""Reading data sets in the MVTec AD folder layout: defect-free training images, labelled test images, masks.

The layout (one MVTec AD category, or any folder written the same way)::

    root/train/good/*.png                  defect-free training images
    root/test/good/*.png                   defect-free test images (no masks)
    root/test/<defect>/*.png               defective test images, one folder per defect type
    root/ground_truth/<defect>/<stem>_mask.png   binary (0 / non-zero) mask of each defective test image

Images may be any of :data:`~defectgen.io.images.IMAGE_EXTENSIONS`, 8 or 16 bit, gray or colour (read by
:func:`~defectgen.io.images.read_image`). A mask may also be ``<stem>_mask`` with another image extension.

Either split may be missing: a folder with only ``train/good`` is a valid training set, one with only ``test``
(and ``ground_truth``) a valid evaluation set or source of real defects. :func:`read_mvtec` lists the files and
checks that every defective image has a mask; pixels are read only by the ``load_*`` helpers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import math
from typing import Dict, Hashable, List, NamedTuple, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch

from ..checks import check_channels, check_int
from .images import IMAGE_EXTENSIONS, PathLike, resize_square, _stack, list_images, read_image, read_image_as

GOOD = "good"
"""Folder name of the defect-free images, in ``train/`` and ``test/``."""

_TEST_HINT = "expected an MVTec-layout folder with test/<defect>/*.png and ground_truth/<defect>/<stem>_mask.png"
_TRAIN_HINT = "expected an MVTec-layout folder with train/good/*.png (the defect-free training images)"


@dataclass(frozen=True)
class MVTecItem:
    """One test image: its file, its mask file (``None`` for a good image) and its type folder name."""

    image: Path
    mask: Optional[Path]
    defect: str

    @property
    def is_anomalous(self) -> bool:
        """``True`` for a defective image (any type but ``good``)."""
        return self.defect != GOOD


class MVTecBatch(NamedTuple):
    """Loaded test images (see :meth:`MVTecLayout.load_test`); unpacks as ``images, masks, labels, defects``."""

    images: torch.Tensor  # (N, C, H, W) uint8
    masks: torch.Tensor   # (N, 1, H, W) bool, all False for good images
    labels: torch.Tensor  # (N,) int64: 0 good, k + 1 for defect_types[k]
    defects: List[str]    # type folder name of each image ("good" or a defect type)

    @property
    def anomalous(self) -> torch.Tensor:
        """``(N,)`` bool: the image-level ground truth of anomaly detection (``labels > 0``)."""
        return self.labels > 0


@dataclass
class MVTecLayout:
    """The files of an MVTec-layout folder, as listed by :func:`read_mvtec`.

    Attributes:
        root: the folder.
        train: the images under ``train/good`` in :func:`~defectgen.io.images.list_images` order; empty when
            there is no ``train/good`` folder.
        test: the test images: ``good`` ones first, then each defect type in :attr:`defect_types` order, each
            type's images in :func:`~defectgen.io.images.list_images` (sorted path) order; empty when there is
            no ``test`` folder.
        defect_types: the defect types read (sorted, never ``good``); label ``k + 1`` is ``defect_types[k]``.
    """

    root: Path
    train: List[Path]
    test: List[MVTecItem]
    defect_types: List[str]

    def __repr__(self) -> str:
        counts = ", ".join(f"{name} {n}" for name, n in self.counts().items())
        return f"MVTecLayout(root={str(self.root)!r}, train={len(self.train)}, test={len(self.test)} ({counts}))"

    def counts(self) -> Dict[str, int]:
        """Number of test images per type folder, ``good`` first: ``{"good": 20, "broken_large": 20, ...}``."""
        counts: Dict[str, int] = {}
        for item in self.test:
            counts[item.defect] = counts.get(item.defect, 0) + 1
        return counts

    def label(self, item: MVTecItem) -> int:
        """``0`` for a good image, ``k + 1`` for an image of ``defect_types[k]``."""
        return 0 if not item.is_anomalous else self.defect_types.index(item.defect) + 1

    def load_train(self, size: Optional[int] = None, channels: int = 3, limit: Optional[int] = None) -> torch.Tensor:
        """The ``train/good`` images as one ``(N, channels, H, W)`` uint8 batch.

        Args:
            size: resize every image to ``size x size`` (as :func:`~defectgen.io.images.load_folder` does);
                ``None`` keeps the files' size, which must then be the same for all.
            channels: 1 (grayscale) or 3 (RGB).
            limit: read at most this many images (the first in order); ``None`` reads all.

        Raises:
            ValueError: naming ``root/train/good`` when the layout has no training images.
        """
        size, channels = _check_load_args(size, channels)
        if limit is not None:
            limit = check_int(limit, "limit", 1)
        if not self.train:
            raise ValueError(f"no training images: {str(self.root / 'train' / GOOD)!r} is not a directory; "
                             f"{_TRAIN_HINT}")
        return _stack_same_size([read_image_as(p, channels, size) for p in self.train[:limit]], self.train)

    def load_test(self, size: Optional[int] = None, channels: int = 3,
                  items: Optional[Sequence[MVTecItem]] = None) -> MVTecBatch:
        """The test images with their masks, labels and type names.

        Args:
            size: resize images (area or linear, as :func:`~defectgen.io.images.load_folder`) and masks
                (nearest neighbour) to ``size x size``; ``None`` keeps the files' size, which must then be the
                same for all.
            channels: 1 (grayscale) or 3 (RGB).
            items: a subset of :attr:`test` to load (in the order given); ``None`` loads all of :attr:`test`.

        Raises:
            ValueError: naming ``root/test`` when the layout has no test images, naming the files when an image
                and its mask differ in size.
        """
        size, channels = _check_load_args(size, channels)
        items = list(self.test if items is None else items)
        if not items:
            where = "no items given" if self.test else f"{str(self.root / 'test')!r} is not a directory; {_TEST_HINT}"
            raise ValueError(f"no test images: {where}")
        unknown = sorted({it.defect for it in items if it.is_anomalous and it.defect not in self.defect_types})
        if unknown:
            raise ValueError(f"items of defect types {unknown} are not in this layout's {self.defect_types}")
        images, masks = [], []
        for item in items:
            image = read_image_as(item.image, channels, None)
            mask = _mask_array(item, image.shape[:2])
            if size is not None:
                image = resize_square(image, size)
                mask = resize_mask(mask, size)
            images.append(image)
            masks.append(mask[:, :, None])
        paths = [it.image for it in items]
        labels = torch.tensor([self.label(it) for it in items], dtype=torch.int64)
        return MVTecBatch(_stack_same_size(images, paths), _stack(masks), labels, [it.defect for it in items])


def read_mvtec(root: PathLike, defects: Optional[Union[str, Sequence[str]]] = None, *,
               require_train: bool = False, require_test: bool = False) -> MVTecLayout:
    """List an MVTec-layout folder (see the module docstring) and pair each defective image with its mask.

    Args:
        root: an MVTec AD category folder, or any folder with that layout.
        defects: defect types (folders under ``test/``) to list; ``None`` lists every folder except ``good``.
            The ``good`` test images are always listed.
        require_train: raise if there is no ``train/good`` folder (else :attr:`MVTecLayout.train` is empty).
        require_test: raise if there is no ``test`` folder (else :attr:`MVTecLayout.test` is empty).

    A mask is looked up by the image's stem: ``ground_truth/<defect>/<stem>_mask.png``, else
    ``<stem>_mask`` with another of :data:`~defectgen.io.images.IMAGE_EXTENSIONS` (the first in sorted order).

    Raises:
        ValueError: naming the path when ``root`` is not a directory, it has neither ``train/good`` nor
            ``test``, a required split is missing, a listed folder holds no images, a requested defect type has
            no folder (or is ``good``), or a defective image has no mask (naming the expected mask file).
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"MVTec folder {str(root)!r} does not exist or is not a directory")
    train_dir, test_dir, truth = root / "train" / GOOD, root / "test", root / "ground_truth"
    if require_test and not test_dir.is_dir():
        raise ValueError(f"{str(test_dir)!r} is not a directory; {_TEST_HINT}")
    if require_train and not train_dir.is_dir():
        raise ValueError(f"{str(train_dir)!r} is not a directory; {_TRAIN_HINT}")
    if not train_dir.is_dir() and not test_dir.is_dir():
        raise ValueError(f"{str(root)!r} is not an MVTec-layout folder: it has neither train/good/ nor test/ "
                         "(expected train/good/*.png, test/<type>/*.png and ground_truth/<defect>/<stem>_mask.png)")
    available = sorted(p.name for p in test_dir.iterdir() if p.is_dir() and p.name != GOOD) \
        if test_dir.is_dir() else []
    if defects is None:
        defects = available
    elif isinstance(defects, str):
        defects = [defects]
    defects = sorted(set(defects))
    missing = [d for d in defects if d not in available]
    if missing:
        raise ValueError(f"no defect folder {missing} under {str(test_dir)!r} (found: {available})")

    train = list_images(train_dir) if train_dir.is_dir() else []
    test: List[MVTecItem] = []
    if (test_dir / GOOD).is_dir():
        test += [MVTecItem(p, None, GOOD) for p in list_images(test_dir / GOOD)]
    for defect in defects:
        masks = _masks_by_stem(truth / defect)
        for path in list_images(test_dir / defect):
            mask = masks.get(path.stem)
            if mask is None:
                expected = truth / defect / f"{path.stem}_mask.png"
                raise ValueError(f"image {str(path)!r} has no mask (expected {str(expected)!r})")
            test.append(MVTecItem(path, mask, defect))
    return MVTecLayout(root, train, test, list(defects))


class DefectSplit(NamedTuple):
    """A fixed split of a category's defective test images (see :func:`split_defects`)."""

    train: List[MVTecItem]     # the part a model may learn from, in :attr:`MVTecLayout.test` order
    held_out: List[MVTecItem]  # the rest, in the same order


SPLIT_PARTS = ("train", "held_out")
"""The parts of a :class:`DefectSplit`, as ``DefectBank.from_mvtec(split=...)`` names them."""


def check_shots(shots, what: str = "shots") -> Union[int, float]:
    """``shots`` checked: a fraction in (0, 1) of each type, or a whole count >= 1 per type."""
    if isinstance(shots, bool) or not isinstance(shots, (int, float)) or not shots > 0 or \
            (shots >= 1 and shots != int(shots)) or not math.isfinite(shots):
        raise ValueError(f"{what} must be a fraction in (0, 1) or a whole count >= 1, got {shots!r}")
    return int(shots) if shots >= 1 else float(shots)


def split_by_type(types: Sequence[Hashable], shots: Union[int, float], seed: int = 0) -> Tuple[List[int], List[int]]:
    """Indices into ``types`` to train on and to hold out: a seeded permutation within each type.

    ``shots`` < 1 is a fraction of each type (rounded up, at least one), ``shots`` >= 1 a count per type (all of a
    type with fewer). Types are visited in sorted order, all drawing from one generator seeded with ``seed``, so
    the choice depends only on the types present, their sizes and ``seed``. Both lists are sorted by type, then
    index. This is the one rule behind :func:`split_defects`, ``DefectBank.from_mvtec(split=...)`` and
    :func:`defectgen.sources.diffusion.train.split_shots` (bank entries: types are their class ids, whose
    order is the sorted type names').
    """
    shots = check_shots(shots)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    import torch

    types = list(types)
    generator = torch.Generator().manual_seed(seed)
    train: List[int] = []
    held_out: List[int] = []
    for kind in sorted(set(types)):
        entries = [i for i, t in enumerate(types) if t == kind]
        order = [entries[j] for j in torch.randperm(len(entries), generator=generator).tolist()]
        keep = max(1, math.ceil(shots * len(order) - 1e-9)) if shots < 1 else min(int(shots), len(order))
        train += sorted(order[:keep])
        held_out += sorted(order[keep:])
    return train, held_out


def split_defects(source: Union[PathLike, MVTecLayout], shots: Union[int, float], seed: int = 0,
                  defects: Optional[Union[str, Sequence[str]]] = None) -> DefectSplit:
    """One fixed split of a category's defective test images into a part to learn from and the rest.

    Per defect type, a seeded permutation of its images (``shots`` < 1: that fraction, rounded up, at least one;
    ``shots`` >= 1: that many) goes to ``train``, the rest to ``held_out`` (:func:`split_by_type`). Only file
    names are listed, nothing is decoded; the split is the one ``defectgen train inpaint --shots X --seed S``
    trains on (over the same ``defects``), and what a study's ``data.defect_split`` takes out of its real
    test set. An image whose mask is empty still counts here (a bank then skips it).

    Args:
        source: an MVTec-layout folder, or its :class:`MVTecLayout` (then ``defects`` must be None).
        shots: a fraction in (0, 1) of each type, or a count >= 1 per type.
        seed: seeds the permutation.
        defects: the types to split (default: all); the split of a type depends on which types are split.
    """
    if isinstance(source, MVTecLayout):
        if defects is not None:
            raise ValueError("split_defects: give defects when reading a folder, not with an MVTecLayout")
        layout = source
    else:
        layout = read_mvtec(source, defects, require_test=True)
    items = [it for it in layout.test if it.is_anomalous]
    train, held_out = split_by_type([it.defect for it in items], shots, seed)
    # back to the layout's order (types in order, each type's files sorted), which split_by_type keeps
    return DefectSplit([items[i] for i in train], [items[i] for i in held_out])


def load_image(item: Union[MVTecItem, PathLike], size: Optional[int] = None, channels: int = 3) -> torch.Tensor:
    """One image (an :class:`MVTecItem`'s or a file) as a ``(channels, H, W)`` uint8 tensor.

    ``size`` resizes it to ``size x size`` (area when shrinking, else linear); ``None`` keeps its size.
    """
    size, channels = _check_load_args(size, channels)
    path = item.image if isinstance(item, MVTecItem) else Path(item)
    return torch.from_numpy(read_image_as(path, channels, size)).permute(2, 0, 1).contiguous()


def load_mask(item: MVTecItem, size: Optional[int] = None) -> torch.Tensor:
    """An item's mask as a ``(1, H, W)`` bool tensor (all False for a good image).

    A pixel is defective where any channel of the mask file is non-zero. ``size`` resizes it to
    ``size x size`` by nearest neighbour; ``None`` keeps the image's size (read from the image file).

    Raises:
        ValueError: naming both files when the mask's size differs from its image's.
    """
    size, _ = _check_load_args(size, 1)
    if not item.is_anomalous and size is not None:
        return torch.zeros(1, size, size, dtype=torch.bool)
    mask = _mask_array(item, read_image(item.image).shape[:2])
    if size is not None:
        mask = resize_mask(mask, size)
    return torch.from_numpy(mask)[None]


# -- helpers ---------------------------------------------------------------------------------------------------------
def _masks_by_stem(folder: Path) -> Dict[str, Path]:
    """``{image stem: mask file}`` for the ``<stem>_mask.<ext>`` files in ``folder``, ``.png`` preferred."""
    if not folder.is_dir():
        return {}
    found: Dict[str, Path] = {}
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    for path in files:
        if path.stem.endswith("_mask"):
            stem = path.stem[:-len("_mask")]
            if stem not in found or path.suffix == ".png":
                found[stem] = path
    return found


def _check_load_args(size: Optional[int], channels: int):
    if size is not None:
        size = check_int(size, "size", 1)
    return size, check_channels(channels)


def _mask_array(item: MVTecItem, shape) -> np.ndarray:
    """``(H, W)`` bool mask of ``item`` at its image's ``shape`` (all False for a good image)."""
    if item.mask is None:
        return np.zeros(tuple(shape), dtype=bool)
    mask = read_image(item.mask).any(axis=2)
    if mask.shape != tuple(shape):
        raise ValueError(f"image {str(item.image)!r} is {shape[0]}x{shape[1]} px but its mask {str(item.mask)!r} "
                         f"is {mask.shape[0]}x{mask.shape[1]} px")
    return mask


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of an ``(H, W)`` bool mask to ``size x size`` (pixel centres, as PIL does)."""
    if mask.shape == (size, size):
        return mask
    return cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)


def _stack_same_size(arrays: List[np.ndarray], paths: Sequence[Path]) -> torch.Tensor:
    """``(H, W, C)`` arrays -> ``(N, C, H, W)``; names two files when the sizes differ (``size=None``)."""
    first = arrays[0].shape[:2]
    for array, path in zip(arrays, paths):
        if array.shape[:2] != first:
            raise ValueError(f"images differ in size: {str(paths[0])!r} is {first[0]}x{first[1]} px but "
                             f"{str(path)!r} is {array.shape[0]}x{array.shape[1]} px; pass size= to resize them")
    return _stack(arrays)
