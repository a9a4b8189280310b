"""The one typed result every operator returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch

Params = Dict[str, Any]
"""Sampled per-sample parameters: a dict of ``(B, ...)`` tensors (pipelines nest one dict per branch).
Pass it back as ``op(images, params=params)`` to replay a call exactly."""

#: params that hold the batch index of another sample; they are shifted when per-item params are stacked
#: (:func:`defectgen.itemwise.concat_params`), and a source that renders a subset of the batch cannot use them
BATCH_INDEX_KEYS = ("partner",)


@dataclass(frozen=True)
class DefectBatch:
    """A batch of synthetic defects.

    Attributes:
        image: ``(B, C, H, W)`` defective images, same dtype and device as the input.
        mask: ``(B, 1, H, W)`` bool, True exactly where a defect was placed. Outside it ``image`` is
            bit-identical to the input.
        label: ``(B,)`` int64 per-sample class: 0 = left normal, otherwise the class id of the defect.
            Usable directly as cross-entropy targets.
        boxes: ``(N, 4)`` float32 ``x1, y1, x2, y2`` pixel boxes, one per defect instance. Coordinates are
            pixel edges: a defect covering columns 3..5 has ``x1 = 3`` and ``x2 = 6``, as COCO and YOLO
            expect.
        box_index: ``(N,)`` int64 sample index of each box, sorted ascending.
        box_label: ``(N,)`` int64 defect class of each box.
        params: the sampled parameters; ``op(images, params=params)`` replays the call exactly.
        target: ``(B, 1, H, W)`` float32 graded label in ``[0, 1]``, or None. Operators with graded labels (NSA's
            intensity-based soft labels) say here *how* anomalous each pixel is; ``mask`` still says *where*
            pixels changed. The target is 0 outside ``mask`` and may be below 1 (even 0) inside it, where a
            pixel changed too little to count. None means "the mask is the target"; :meth:`soft_target`
            gives a tensor either way.
    """

    image: torch.Tensor
    mask: torch.Tensor
    label: torch.Tensor
    boxes: torch.Tensor
    box_index: torch.Tensor
    box_label: torch.Tensor
    params: Params = field(repr=False)
    target: Optional[torch.Tensor] = field(default=None, repr=False)

    def soft_target(self) -> torch.Tensor:
        """``(B, 1, H, W)`` float32 training target: :attr:`target` where the operator grades its defects, else
        the binary mask as 0.0 / 1.0."""
        return self.mask.float() if self.target is None else self.target

    def boxes_of(self, index: int) -> torch.Tensor:
        """The ``(n, 4)`` boxes of sample ``index``."""
        return self.boxes[self.box_index == index]
