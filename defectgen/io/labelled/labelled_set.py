"""One labelled set type that every reader, training source, evaluator and ``defectgen fit`` shares.

:class:`LabelledSet` holds images with their defect boxes (and, where known, masks), whatever the file format
they were read from (YOLO, COCO, MVTec, Pascal VOC, DeepPCB pairs) or made by defectgen. Class ids follow
defectgen's convention: ``class_names[k]`` has id ``k + 1``; ``0`` is "no defect" (and torchvision's
background), so a box label is never 0. It lives in ``defectgen`` (not in ``detectors``) because both the
detectors and the defect fitting read labelled sets, and dependencies run one way: detectors -> defectgen.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch

from ...checks import check_int
from ...rng import index_seed

AGNOSTIC_CLASS = "defect"
"""The one class name of a class-agnostic set (see :meth:`LabelledSet.agnostic`)."""


@dataclass(frozen=True)
class LabelledSet:
    """Labelled images in memory, one entry per image (images may differ in size).

    Attributes:
        images: ``(C, H, W)`` uint8 tensors, C = 1 or 3 (the same C for every image).
        boxes: ``(n, 4)`` float32 ``x1 y1 x2 y2`` boxes in the image's pixels (pixel edges: a box over columns
            3..5 is ``x1 = 3, x2 = 6``); ``n = 0`` for a defect-free image.
        labels: ``(n,)`` int64 class ids, ``1..len(class_names)``.
        class_names: the classes; id ``k + 1`` is ``class_names[k]``.
        names: an identifier per image (its file name or id), for reports and errors.
        masks: optional ``(1, H, W)`` bool defect masks (MVTec layouts and defectgen sets have them).
    """

    images: Sequence[torch.Tensor]
    boxes: Sequence[torch.Tensor]
    labels: Sequence[torch.Tensor]
    class_names: Tuple[str, ...]
    names: Tuple[str, ...] = ()
    masks: Optional[Sequence[torch.Tensor]] = None
    info: Dict[str, object] = field(default_factory=dict, compare=False)  # e.g. the folder and format read

    def __post_init__(self):
        n = len(self.images)
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "names", tuple(self.names) if self.names else tuple(str(i) for i in range(n)))
        for what, items in (("boxes", self.boxes), ("labels", self.labels), ("names", self.names)) + (
                (("masks", self.masks),) if self.masks is not None else ()):
            if len(items) != n:
                raise ValueError(f"LabelledSet: {n} images but {len(items)} {what}")
        channels = {int(im.shape[0]) for im in self.images}
        if len(channels) > 1:
            raise ValueError(f"LabelledSet: images must all have the same channel count, got {sorted(channels)}")
        for i, (image, boxes, labels) in enumerate(zip(self.images, self.boxes, self.labels)):
            if image.ndim != 3 or image.dtype != torch.uint8 or image.shape[0] not in (1, 3):
                raise ValueError(f"LabelledSet: image {self.names[i]!r} must be (1 or 3, H, W) uint8, got "
                                 f"{tuple(image.shape)} {image.dtype}")
            if boxes.ndim != 2 or boxes.shape[1] != 4 or labels.shape != (boxes.shape[0],):
                raise ValueError(f"LabelledSet: image {self.names[i]!r} needs (n, 4) boxes and (n,) labels, got "
                                 f"{tuple(boxes.shape)} and {tuple(labels.shape)}")
            if len(labels) and (labels.min() < 1 or labels.max() > len(self.class_names)):
                raise ValueError(f"LabelledSet: image {self.names[i]!r} has class ids {labels.tolist()} outside "
                                 f"1..{len(self.class_names)} ({', '.join(self.class_names)})")

    # -- views ------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return int(self.images[0].shape[0]) if len(self.images) else 3

    @property
    def defective(self) -> torch.Tensor:
        """``(N,)`` bool: the image-level truth, an image with at least one box (or a non-empty mask)."""
        has_box = torch.tensor([len(b) > 0 for b in self.boxes], dtype=torch.bool)
        if self.masks is not None:
            has_box |= torch.tensor([bool(m.any()) for m in self.masks], dtype=torch.bool)
        return has_box

    def counts(self) -> Dict[str, int]:
        """Boxes per class name, plus ``"images"`` and ``"defect-free images"``."""
        counts = {"images": len(self), "defect-free images": int((~self.defective).sum())}
        all_labels = torch.cat([torch.as_tensor(lab, dtype=torch.int64) for lab in self.labels]) \
            if len(self) else torch.zeros(0, dtype=torch.int64)
        for k, name in enumerate(self.class_names):
            counts[name] = int((all_labels == k + 1).sum())
        return counts

    def subset(self, indices: Union[Sequence[int], torch.Tensor]) -> "LabelledSet":
        """The images at ``indices`` (in that order), with their labels."""
        idx = [int(i) for i in indices]
        pick = lambda items: [items[i] for i in idx]  # noqa: E731
        return replace(self, images=pick(self.images), boxes=pick(self.boxes), labels=pick(self.labels),
                       names=tuple(pick(self.names)), masks=None if self.masks is None else pick(self.masks))

    def resized(self, size: int) -> "LabelledSet":
        """Every image resized to ``size x size`` as defectgen's image readers resize (OpenCV area when shrinking,
        linear when growing), boxes scaled, masks by nearest pixel centre."""
        from defectgen.io.images import resize_square
        from defectgen.io.mvtec import resize_mask

        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        images, boxes, masks = [], [], []
        for i, image in enumerate(self.images):
            h, w = image.shape[-2:]
            if (h, w) == (size, size):
                images.append(image)
                boxes.append(self.boxes[i])
            else:
                array = resize_square(image.permute(1, 2, 0).contiguous().cpu().numpy(), size)
                images.append(torch.from_numpy(array).permute(2, 0, 1).contiguous())
                scale = torch.tensor([size / w, size / h, size / w, size / h], dtype=torch.float32)
                boxes.append(self.boxes[i].float() * scale)
            if self.masks is not None:
                m = self.masks[i]
                masks.append(m if m.shape[-2:] == (size, size) else
                             torch.from_numpy(resize_mask(m[0].cpu().numpy(), size))[None])
        return replace(self, images=images, boxes=boxes, masks=masks if self.masks is not None else None)

    def agnostic(self) -> "LabelledSet":
        """Every defect as one class, :data:`AGNOSTIC_CLASS` (id 1)."""
        return replace(self, labels=[torch.ones(len(lab), dtype=torch.int64) for lab in self.labels],
                       class_names=(AGNOSTIC_CLASS,))

    def mapped(self, mapping: Mapping[str, Optional[str]], class_names: Optional[Sequence[str]] = None
               ) -> "LabelledSet":
        """Rename classes: ``mapping[old] = new`` (classes not named keep their name; ``None`` drops the boxes
        of that class). ``class_names`` fixes the new id order (default: the new names, sorted)."""
        unknown = sorted(set(mapping) - set(self.class_names))
        if unknown:
            raise ValueError(f"class map names unknown classes {unknown}; this set has {list(self.class_names)}")
        new = {old: mapping.get(old, old) for old in self.class_names}
        names = tuple(class_names) if class_names is not None else tuple(sorted({v for v in new.values() if v}))
        missing = sorted({v for v in new.values() if v} - set(names))
        if missing:
            raise ValueError(f"class map gives names {missing} that class_names {list(names)} does not hold")
        lookup = torch.tensor([0] + [names.index(new[old]) + 1 if new[old] else 0 for old in self.class_names])
        boxes, labels = [], []
        for b, lab in zip(self.boxes, self.labels):
            ids = lookup[lab]
            keep = ids > 0
            boxes.append(b[keep])
            labels.append(ids[keep])
        return replace(self, boxes=boxes, labels=labels, class_names=names)

    def concat(self, other: "LabelledSet") -> "LabelledSet":
        """This set followed by ``other``; classes are matched by name (``other``'s new names are appended)."""
        if self.channels != other.channels and len(self) and len(other):
            raise ValueError(f"cannot join a {self.channels}-channel set with a {other.channels}-channel one")
        names = list(self.class_names) + [c for c in other.class_names if c not in self.class_names]
        lookup = torch.tensor([0] + [names.index(c) + 1 for c in other.class_names])
        if (self.masks is None) != (other.masks is None):
            masks = None  # one side has no masks: the joined set has none
        else:
            masks = None if self.masks is None else list(self.masks) + list(other.masks)
        return LabelledSet(images=list(self.images) + list(other.images), boxes=list(self.boxes) + list(other.boxes),
                           labels=list(self.labels) + [lookup[lab] for lab in other.labels], class_names=tuple(names),
                           names=self.names + other.names, masks=masks, info={"joined": [self.info, other.info]})


def choose_real(labelled: LabelledSet, k: int, seed: int) -> LabelledSet:
    """The one rule that picks "K real images" everywhere (``defectgen fit``, ``train --real-count``, studies):
    ``k`` images of ``labelled`` chosen by ``seed``: the first ``k`` of one seeded permutation, kept in the
    set's order. The same seed gives the same images, and for a fixed seed a smaller ``k`` gives a subset of a
    larger one's images (so "k real images" experiments over k are nested)."""
    k = check_int(k, "k", 0)
    if k > len(labelled):
        raise ValueError(f"k={k} but the labelled set has only {len(labelled)} images")
    generator = torch.Generator().manual_seed(index_seed(check_int(seed, "seed"), 0, "choose-real"))
    chosen = torch.randperm(len(labelled), generator=generator)[:k].sort().values
    return labelled.subset(chosen)
