"""Building a :class:`~detectors.types.LabelledSet` one image at a time, as every reader does.

Each image is read at its own size and its boxes are checked against that size
(:func:`~defectgen.io.labelled.problems.clean_boxes`); only then is it resized, when the caller asked for ``size``:
boxes are scaled with the image by :meth:`LabelledSet.resized`, so a set read at 256 px holds 256 px images,
not a copy of every full-size one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch

from defectgen.checks import check_channels, check_int
from defectgen.io.images import read_image_as

from .labelled_set import LabelledSet
from .problems import Problems

PathLike = Union[str, Path]


def read_structured(path: Path, parse, what: str, errors, expected: str) -> dict:
    """``parse(text)`` of a JSON / YAML file, as a dict; one ``ValueError`` naming the file for every failure
    (unreadable, not ``what``, not a mapping: ``expected`` says what it should hold)."""
    try:
        data = parse(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {str(path)!r}: {error}") from None
    except errors as error:
        raise ValueError(f"{str(path)!r} is not valid {what}: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} must be {expected}")
    return data


def check_read_args(size: Optional[int], channels: int, limit: Optional[int]):
    """The shared reader arguments, validated (errors name the argument)."""
    size = None if size is None else check_int(size, "size", 1)
    limit = None if limit is None else check_int(limit, "limit", 1)
    return size, check_channels(channels), limit


def read_image_tensor(path: PathLike, channels: int) -> torch.Tensor:
    """One image file as a ``(channels, H, W)`` uint8 tensor at its own size (``ValueError`` naming the file
    when it cannot be decoded)."""
    return torch.from_numpy(read_image_as(path, channels, None)).permute(2, 0, 1).contiguous()


def pick_split(split: Optional[str], available: Sequence[str], preference: Sequence[str], where: str) -> str:
    """``split`` if ``available`` has it, else the first of ``preference`` that it has.

    Readers default to the evaluation split (``test``, then ``val``, then ``train``): a labelled set is most
    often read to test a detector on. Raises ``ValueError`` naming ``where`` and the splits it has.
    """
    if split is not None:
        if split not in available:
            raise ValueError(f"{where} has no split {split!r} (it has: {', '.join(available) or 'none'})")
        return split
    for name in preference:
        if name in available:
            return name
    if len(available) == 1:
        return available[0]
    raise ValueError(f"{where}: cannot choose a split among {list(available)}; pass split=")


class SetBuilder:
    """Collects images with their cleaned boxes, resizing each as it comes when ``size`` is set."""

    def __init__(self, size: Optional[int], keep_masks: bool = False):
        self.size = size
        self.keep_masks = keep_masks
        self.images: List[torch.Tensor] = []
        self.boxes: List[torch.Tensor] = []
        self.labels: List[torch.Tensor] = []
        self.names: List[str] = []
        self.masks: List[torch.Tensor] = []

    def add(self, name: str, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
            mask: Optional[torch.Tensor] = None) -> None:
        boxes, labels = boxes.reshape(-1, 4).float(), labels.reshape(-1).long()
        if self.size is not None:
            # LabelledSet.resized scales boxes and masks with the image; the labels ride along unchanged
            one = LabelledSet([image], [boxes], [torch.ones(len(boxes), dtype=torch.int64)], class_names=("_",),
                              names=(name,), masks=[mask] if self.keep_masks else None).resized(self.size)
            image, boxes = one.images[0], one.boxes[0]
            mask = one.masks[0] if self.keep_masks else None
        self.images.append(image)
        self.boxes.append(boxes)
        self.labels.append(labels)
        self.names.append(name)
        if self.keep_masks:
            self.masks.append(mask)

    def __len__(self) -> int:
        return len(self.images)

    def build(self, class_names: Sequence[str], problems: Problems, info: Dict[str, object]) -> LabelledSet:
        """The set, after warning about ``problems`` (recorded in ``info["problems"]``)."""
        info = dict(info, problems=problems.warn())
        return LabelledSet(self.images, self.boxes, self.labels, tuple(class_names), tuple(self.names),
                           masks=self.masks if self.keep_masks else None, info=info)


def order_classes(labelled: LabelledSet, class_names: Optional[Sequence[str]], where: str) -> LabelledSet:
    """``labelled`` with its classes in the order of ``class_names`` (matched by name), or as read if None.

    Every class the files name must be in ``class_names`` (``ValueError`` naming those that are not); names
    there that the files never use are classes with no boxes.
    """
    if class_names is None:
        return labelled
    class_names = _check_names(class_names)
    unknown = [c for c in labelled.class_names if c not in class_names]
    if unknown:
        raise ValueError(f"{where} has classes {unknown} that class_names {list(class_names)} does not hold")
    return labelled.mapped({}, class_names)


def _check_names(class_names: Sequence[str]) -> tuple:
    if isinstance(class_names, str) or not all(isinstance(c, str) and c for c in class_names):
        raise TypeError(f"class_names must be a list of non-empty strings, got {class_names!r}")
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"class_names has duplicates: {list(class_names)}")
    return tuple(class_names)
