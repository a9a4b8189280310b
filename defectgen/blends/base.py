"""The "how" part of a defect: how the source's values meet the image inside the mask."""
from __future__ import annotations

from typing import Optional

import torch

from .._config import Configurable
from ..masks.geometry import PatchPixels


class Blend(Configurable):
    """Writes a source's ``(C, N)`` values into ``canvas`` (a contiguous working copy) in place.

    A blend may only change pixels where ``pixels.inside`` is True: that is what makes the mask the truth.
    """

    def paint(self, canvas: torch.Tensor, values: torch.Tensor, pixels: PatchPixels) -> None:
        raise NotImplementedError

    def fill(self, image: torch.Tensor, region: torch.Tensor, colour: torch.Tensor) -> Optional[torch.Tensor]:
        """A new batch with ``colour`` ``(B, C)`` blended into the ``(B, 1, H, W)`` ``region``, or None if this
        blend has no whole-batch form (the operator then falls back to :meth:`paint`)."""
        return None


def cast_like(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cast computed values to an image dtype, rounding and saturating for uint8."""
    if values.dtype == dtype:
        return values
    if dtype == torch.uint8:
        return values.round().clamp_(0, 255).to(torch.uint8)
    return values.to(dtype)
