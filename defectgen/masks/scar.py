"""Thin rotated rectangles: scratches and scars (CutPaste-Scar, DeVries-style Scar)."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

from ..checks import check_number, check_range
from ..rng import uniform
from ..registry import register_part
from .base import MaskSampler
from .geometry import rotated_extent_bound


@register_part("mask", "scar")
class ScarMask(MaskSampler):
    """Thin rectangles ``width_px x length_px`` rotated by ``angle_deg`` (0 = the long side vertical).

    The pixel ranges are given for an image whose shorter side is ``reference_size`` and are scaled linearly by
    ``min(H, W) / reference_size``: the published 2-16 x 10-25 px at 256 px become 1-8 x 5-12.5 px at 128 px
    and 4-32 x 20-50 px at 512 px, so a scar covers the same fraction of the image at every resolution. With
    ``reference_size=None`` the ranges are absolute pixels and an image smaller than the longest scar is an
    error. Sizes are rounded to whole pixels, at least 1.
    """

    def __init__(self, width_px_range: Tuple[float, float] = (2, 16),
                 length_px_range: Tuple[float, float] = (10, 25),
                 angle_deg_range: Tuple[float, float] = (-45, 45),
                 reference_size: Optional[float] = 256):
        self.width_px_range = check_range(width_px_range, "width_px_range", 0.0, low_open=True)
        self.length_px_range = check_range(length_px_range, "length_px_range", 0.0, low_open=True)
        self.angle_deg_range = check_range(angle_deg_range, "angle_deg_range", -180.0, 180.0)
        self.reference_size = (None if reference_size is None
                               else check_number(reference_size, "reference_size", 0.0, low_open=True))
        self.axis_aligned = self.angle_deg_range == (0.0, 0.0)

    def _scale(self, height: int, width: int) -> float:
        return 1.0 if self.reference_size is None else min(height, width) / self.reference_size

    def sample(self, n: int, height: int, width: int, generator: torch.Generator) -> Dict[str, torch.Tensor]:
        scale = self._scale(height, width)
        w = (uniform(n, self.width_px_range, generator) * scale).round().long().clamp_min(1)
        length = (uniform(n, self.length_px_range, generator) * scale).round().long().clamp_min(1)
        angle = uniform(n, self.angle_deg_range, generator)
        return {"height_px": length, "width_px": w, "angle_deg": angle}

    def size_bound(self, height: int, width: int) -> Tuple[float, float]:
        scale = self._scale(height, width)
        # +0.5: the bound must hold after rounding the sampled sizes
        return (max(1.0, self.length_px_range[1] * scale + 0.5), max(1.0, self.width_px_range[1] * scale + 0.5))

    def extent_bound(self, height: int, width: int) -> Tuple[float, float]:
        return rotated_extent_bound(*self.size_bound(height, width), self.angle_deg_range)
