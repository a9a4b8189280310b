"""Reading aligned image pairs (DeepPCB) as a labelled set of the tested images, and their templates.

The files are listed by :func:`defectgen.io.read_pairs` (both of its layouts, its label rules). The
:class:`LabelledSet` holds the *tested* images with their boxes; the templates are the same boards without
defects, so :func:`read_templates` gives them as a batch of "OK" images: what a detector trains on, or
defects are synthesised over, before it is tested on the real defects of the tested images.

Class ids follow DeepPCB's type ids: ``1 open, 2 short, 3 mousebite, 4 spur, 5 spurious_copper, 6 pin_hole``
(:data:`defectgen.io.DEEPPCB_TYPES`), whatever subset of them a set uses.
"""
from __future__ import annotations

import warnings
from typing import List, Optional, Sequence

import torch

from defectgen.io import DEEPPCB_TYPES, PairItem, read_pairs
from defectgen.io.images import read_image_as

from .labelled_set import LabelledSet
from .assemble import PathLike, SetBuilder, check_read_args, order_classes, read_image_tensor
from .problems import Problems, clean_boxes


def read_deeppcb(root: PathLike, split: Optional[str] = None, size: Optional[int] = None, channels: int = 3,
                 class_names: Optional[Sequence[str]] = None, limit: Optional[int] = None) -> LabelledSet:
    """The tested images of an aligned-pairs set with their boxes (see the module docstring).

    Args:
        root: a folder :func:`defectgen.io.read_pairs` reads.
        split: must be None: the pair layouts have no splits (choose images with ``LabelledSet.subset``).
        size: resize every image to ``size x size`` as it is read (boxes scaled); None keeps each image's size.
        channels: 1 (gray) or 3 (RGB); DeepPCB's binarised scans are gray, repeated to RGB for 3.
        class_names: the id order of the returned set (every DeepPCB type must be in it); default
            :data:`defectgen.io.DEEPPCB_TYPES`.
        limit: read only the first ``limit`` pairs (sorted by id).

    Label lines :func:`~defectgen.io.read_pairs` skips, and boxes reaching past the image (clipped), are
    reported once, through :mod:`defectgen.io.labelled.problems`.
    """
    size, channels, limit = check_read_args(size, channels, limit)
    _check_no_split(split, root)
    items = _items(root)
    problems = Problems(str(root))
    for item in items:
        for problem in item.problems:
            problems.add(f"{problem}; line skipped")
    builder = SetBuilder(size)
    for item in items[:limit]:
        image = read_image_tensor(item.image, channels)
        height, width = image.shape[-2:]
        labels = torch.tensor([DEEPPCB_TYPES.index(t) + 1 for t in item.types], dtype=torch.int64)
        where = [f"{item.labels}: box {k + 1}" for k in range(len(labels))]
        boxes, labels = clean_boxes(torch.from_numpy(item.boxes), labels, width, height, where, problems)
        builder.add(item.name, image, boxes, labels)
    info = {"format": "deeppcb", "root": str(root), "split": None}
    return order_classes(builder.build(DEEPPCB_TYPES, problems, info), class_names, str(root))


def read_templates(root: PathLike, size: int, channels: int = 3, limit: Optional[int] = None) -> torch.Tensor:
    """The defect-free templates of an aligned-pairs set as one ``(N, channels, size, size)`` uint8 batch, in
    the order :func:`read_deeppcb` gives the tested images (template ``i`` belongs to image ``i``)."""
    size, channels, limit = check_read_args(size, channels, limit)
    if size is None:
        raise ValueError("read_templates needs size= (the templates are stacked into one batch)")
    items = _items(root)[:limit]
    arrays = [read_image_as(item.template, channels, size) for item in items]
    return torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrays]).contiguous()


def _items(root: PathLike) -> List[PairItem]:
    # read_pairs warns about each skipped line itself; the reader reports them once, collapsed, instead
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_pairs(root)


def _check_no_split(split: Optional[str], root: PathLike) -> None:
    if split is not None:
        raise ValueError(f"aligned pairs {str(root)!r} have no splits; omit split= (got {split!r}) and choose "
                         "images with LabelledSet.subset")
