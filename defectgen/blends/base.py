"""The "how" part of a defect: how the source's values meet the image inside the mask."""
from __future__ import annotations

import torch

from .._config import Configurable
from ..masks.geometry import PatchWindow


class Blend(Configurable):
    """Writes a source's values into ``canvas`` (a contiguous working copy) at the window's mask, in place.

    A blend may only change pixels where ``window.inside`` is True: that is what makes the mask the truth.
    """

    def paint(self, canvas: torch.Tensor, values: torch.Tensor, window: PatchWindow) -> None:
        raise NotImplementedError


def cast_like(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cast computed values to an image dtype, rounding and saturating for uint8."""
    if values.dtype == dtype:
        return values
    if dtype == torch.uint8:
        return values.round().clamp_(0, 255).to(torch.uint8)
    return values.to(dtype)
