"""The "how" part of a defect: how the source's values meet the image inside the mask."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

from .._config import Configurable
from ..patch_pixels import PatchPixels


class Blend(Configurable):
    """Writes a source's ``(C, N)`` values into ``canvas`` (a contiguous working copy) in place.

    A blend may only change pixels where ``pixels.inside`` is True: that is what makes the mask the truth.
    """

    def paint(self, canvas: torch.Tensor, values: torch.Tensor, pixels: PatchPixels) -> None:
        raise TypeError(f"blend {type(self).__name__} works on whole-image regions only; use it in a region "
                        "operator (RegionDefect), not with a rectangle/scar mask in PatchDefect")

    def sample(self, n: int, generator: torch.Generator) -> Dict[str, torch.Tensor]:
        """Per-sample blend parameters (e.g. opacity), drawn on the generator's device."""
        return {}

    def blend_region(self, images: torch.Tensor, fill: torch.Tensor, coverage: torch.Tensor,
                     params: Dict[str, torch.Tensor], max_value: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """Whole-image blend for region operators.

        ``images`` and ``fill`` are ``(B, C, H, W)`` float32 in the value scale (``max_value`` is 255 or 1),
        ``coverage`` the ``(B, 1, H, W)`` mask coverage in [0, 1]. Returns the blended batch and the
        ``(B, 1, H, W)`` bool region it changed; the operator keeps the input outside that region, so a blend
        that reaches further than the coverage (feathering, a Poisson solve) must report it here.
        """
        raise TypeError(f"blend {type(self).__name__} has no whole-image form")

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
