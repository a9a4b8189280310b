"""Run a defectgen operator as a ``torchvision.transforms.v2`` transform that returns tv_tensors.

``DefectTransformV2`` takes an image (a ``tv_tensors.Image`` or a plain ``(C, H, W)`` / ``(B, C, H, W)``
tensor) or a dict with an ``"image"`` entry, and returns a dict whose entries are typed, so that the v2
transforms after it move the defect with the image::

    from torchvision.transforms import v2
    from defectgen.compat.torchvision import DefectTransformV2

    transform = v2.Compose([DefectTransformV2("cutpaste", seed=0), v2.RandomHorizontalFlip(),
                            v2.ToDtype(torch.float32, scale=True)])
    out = transform(image)      # {"image": Image, "mask": Mask, "boxes": BoundingBoxes, "labels", "label"}
"""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..checks import check_int
from ..registry import resolve_op
from ..values import space_arguments
from . import _worker_seed

__all__ = ["DefectTransformV2"]


class DefectTransformV2(v2.Transform):
    """A defectgen operator as a torchvision v2 transform.

    Input: one of
        - an image: ``tv_tensors.Image`` or a plain tensor, ``(C, H, W)`` or a batch ``(B, C, H, W)``,
          uint8 or float, ``C`` in {1, 3};
        - a dict with that image under ``"image"``; its other entries come back too (see below).

    Output: a dict (the input dict's entries plus these):
        - ``"image"``: ``tv_tensors.Image`` with the defect, same shape, dtype and device as the input; pixels
          outside the mask are unchanged.
        - ``"mask"``: ``tv_tensors.Mask``, bool, ``(1, H, W)`` (``(B, 1, H, W)`` for a batch), True on the defect.
        - ``"boxes"``: ``tv_tensors.BoundingBoxes``, ``(n, 4)`` float32 XYXY pixel-edge boxes, one per defect
          instance, with ``canvas_size=(H, W)``.
        - ``"labels"``: ``(n,)`` int64 class of each box (the name ``v2.SanitizeBoundingBoxes`` looks for).
        - ``"label"``: int64 class of the sample, 0 when it was left normal (a 0-d tensor; ``(B,)`` for a batch).
        - ``"box_index"``: for a batch only, ``(n,)`` int64 sample index of each box.

    With a dict input, entries that are already there are extended rather than replaced, so two
    DefectTransformV2 can run one after the other and a detection target keeps its boxes: ``"mask"`` (a bool
    or 0/1 anomaly mask of the same shape) is OR-ed with the defect mask; ``"boxes"`` (``BoundingBoxes``
    of the same canvas, any format) get the defect boxes appended, converted to their format, and
    ``"labels"`` (and ``"box_index"`` for a batch) grow with them; ``"label"`` is replaced where a defect
    was made.

    Geometric v2 transforms after this one (flips, crops, affine, resize) move ``image``, ``mask`` and
    ``boxes`` consistently because they are tv_tensors; ``labels`` and ``label`` are plain tensors and pass
    through. A batch goes through the operator in one batched call.

    Args:
        op: a defectgen operator, a registered name or a config dict (see :func:`defectgen.create_op`).
        seed: seed of a generator owned by this transform: the sequence of defects repeats for the same seed.
            In a DataLoader worker the generator is re-seeded with the seed mixed with the worker's PyTorch
            seed, so workers (and epochs) differ yet stay reproducible under ``torch.manual_seed``.
        generator: an explicit ``torch.Generator`` to draw from instead (used as is, also in workers).
        With neither, the operator's own generator is used (seeded by its ``seed``, else by the OS and
        re-seeded in each new process).
        value_range, mean, std: the value space of float images outside ``[0, 1]`` (e.g. after
            ``v2.Normalize``: its ``mean`` and ``std``), passed to every operator call (:mod:`defectgen.values`).
    """

    def __init__(self, op: Any, seed: Optional[int] = None, generator: Optional[torch.Generator] = None,
                 value_range=None, mean=None, std=None):
        super().__init__()
        self.op = resolve_op(op)
        self.space = space_arguments(value_range, mean, std)
        if seed is not None and generator is not None:
            raise ValueError("pass either seed= or generator=, not both")
        self.seed = None if seed is None else check_int(seed, "seed")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.generator = generator
        self._stream: Optional[torch.Generator] = None
        self._stream_pid: Optional[int] = None

    def extra_repr(self) -> str:
        space = "".join(f", {k}={v}" for k, v in self.space.items())
        return f"op={self.op!r}, seed={self.seed}{space}"

    def _generator(self) -> Optional[torch.Generator]:
        if self.generator is not None:
            return self.generator
        if self.seed is None:
            return None  # the operator's own generator
        if self._stream is None or self._stream_pid != os.getpid():
            self._stream = torch.Generator().manual_seed(_worker_seed(self.seed))
            self._stream_pid = os.getpid()
        return self._stream

    def forward(self, *inputs: Any) -> Dict[str, Any]:
        # v2.Transform.forward maps every input to one output of the same kind; this transform adds entries
        # (mask, boxes, labels), so it takes the whole sample itself.
        if len(inputs) != 1:
            raise TypeError(f"DefectTransformV2 takes one input (an image tensor or a dict with an 'image' entry), "
                            f"got {len(inputs)}")
        sample = inputs[0]
        if isinstance(sample, Mapping):
            if "image" not in sample:
                raise ValueError(f"a dict input needs an 'image' entry, got keys {sorted(sample)}")
            data = dict(sample)
        else:
            data = {"image": sample}
        image = _check_image(data["image"])
        batched = image.ndim == 4
        result = self.op(image if batched else image.unsqueeze(0), generator=self._generator(), **self.space)
        height, width = image.shape[-2:]

        pick = (lambda t: t) if batched else (lambda t: t[0])
        new_mask = pick(result.mask)
        boxes = tv_tensors.BoundingBoxes(result.boxes, format=tv_tensors.BoundingBoxFormat.XYXY,
                                         canvas_size=(height, width))
        data["image"] = tv_tensors.Image(pick(result.image))
        data["mask"] = tv_tensors.Mask(_merge_mask(data.get("mask"), new_mask))
        label = pick(result.label)
        data["label"] = label if "label" not in data else torch.where(label != 0, label, _like(data["label"], label))

        if ("boxes" in data) != ("labels" in data):
            raise ValueError("a dict input must carry 'boxes' and 'labels' together (one label per box)")
        if "boxes" in data:
            data["boxes"] = _append_boxes(data["boxes"], boxes)
            data["labels"] = torch.cat([_like(data["labels"], result.box_label), result.box_label.to(
                data["labels"].device, data["labels"].dtype)])
        else:
            data["boxes"], data["labels"] = boxes, result.box_label
        if batched:
            old_index = data.get("box_index")
            if old_index is None and data["boxes"].shape[0] != boxes.shape[0]:
                raise ValueError("a batch with earlier 'boxes' needs their 'box_index' (the sample of each box)")
            data["box_index"] = result.box_index if old_index is None else torch.cat(
                [old_index, result.box_index.to(old_index.device, old_index.dtype)])
        return data


def _check_image(image: Any) -> torch.Tensor:
    """The image as a plain tensor, after checking it is one the operators take."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a tv_tensors.Image or a tensor (convert PIL images with v2.ToImage() "
                        f"first), got {type(image).__name__}")
    if isinstance(image, tv_tensors.TVTensor) and not isinstance(image, tv_tensors.Image):
        raise TypeError(f"image must be a tv_tensors.Image or a plain tensor, got {type(image).__name__}")
    plain = image.as_subclass(torch.Tensor)
    if plain.ndim not in (3, 4):
        raise ValueError(f"image must be (C, H, W) or a batch (B, C, H, W), got shape {tuple(plain.shape)}")
    return plain


def _like(value: Any, reference: torch.Tensor) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"expected a tensor of shape {tuple(reference.shape)}, got {type(value).__name__}")
    return value.as_subclass(torch.Tensor)


def _merge_mask(previous: Any, mask: torch.Tensor) -> torch.Tensor:
    if previous is None:
        return mask
    previous = _like(previous, mask)
    if previous.shape != mask.shape:
        raise ValueError(f"the input's 'mask' has shape {tuple(previous.shape)}, the defect mask "
                         f"{tuple(mask.shape)}: it must be the anomaly mask of the same image")
    return previous | mask.to(previous.device, previous.dtype)


def _append_boxes(previous: Any, boxes: tv_tensors.BoundingBoxes) -> tv_tensors.BoundingBoxes:
    if not isinstance(previous, tv_tensors.BoundingBoxes):
        raise TypeError(f"the input's 'boxes' must be tv_tensors.BoundingBoxes (so their format and canvas are "
                        f"known), got {type(previous).__name__}")
    if tuple(previous.canvas_size) != tuple(boxes.canvas_size):
        raise ValueError(f"the input's 'boxes' have canvas_size {tuple(previous.canvas_size)}, the image is "
                         f"{tuple(boxes.canvas_size)}")
    converted = F.convert_bounding_box_format(boxes, new_format=previous.format)
    merged = torch.cat([previous.as_subclass(torch.Tensor),
                        converted.as_subclass(torch.Tensor).to(previous.device, previous.dtype)])
    return tv_tensors.wrap(merged, like=previous)
