"""Axis-aligned rectangles sized by area fraction and aspect ratio (CutPaste, Cutout)."""
from __future__ import annotations

import math
from typing import Dict, Tuple

import torch

from ..checks import check_range
from ..rng import log_uniform, uniform
from ..registry import register_part
from .base import MaskSampler


@register_part("mask", "rectangle")
class RectangleMask(MaskSampler):
    """Rectangles whose area is ``area_frac`` of the image and whose ``width / height`` is ``aspect_ratio``.

    The aspect ratio is drawn log-uniformly so that tall and wide patches are equally likely, as in
    Li et al. (CutPaste, CVPR 2021). Sizes are rounded to whole pixels and clamped to the image.

    Args:
        area_frac_range: patch area as a fraction of ``H * W``, in ``(0, 1]``.
        aspect_ratio_range: ``width / height``, positive; drawn log-uniformly.
    """

    axis_aligned = True

    def __init__(self, area_frac_range: Tuple[float, float] = (0.02, 0.15),
                 aspect_ratio_range: Tuple[float, float] = (0.3, 1 / 0.3)):
        self.area_frac_range = check_range(area_frac_range, "area_frac_range", 0.0, 1.0, low_open=True)
        self.aspect_ratio_range = check_range(aspect_ratio_range, "aspect_ratio_range", 0.0, low_open=True)
        widest = self.area_frac_range[1] * self.aspect_ratio_range[1]
        tallest = self.area_frac_range[1] / self.aspect_ratio_range[0]
        if widest > 1.0 or tallest > 1.0:
            raise ValueError(
                f"area_frac_range {self.area_frac_range} with aspect_ratio_range {self.aspect_ratio_range} "
                "allows patches wider or taller than the image; lower the maximum area or narrow the aspect range")

    def _sizes(self, area_frac: torch.Tensor, aspect: torch.Tensor, height: int, width: int):
        area = area_frac * (height * width)
        h = torch.sqrt(area / aspect).round().long().clamp(1, height)
        w = torch.sqrt(area * aspect).round().long().clamp(1, width)
        return h, w

    def sample(self, n: int, height: int, width: int, generator: torch.Generator) -> Dict[str, torch.Tensor]:
        area_frac = uniform(n, self.area_frac_range, generator)
        aspect = log_uniform(n, self.aspect_ratio_range, generator)
        h, w = self._sizes(area_frac, aspect, height, width)
        return {"height_px": h, "width_px": w, "angle_deg": torch.zeros(n, device=generator.device)}

    def extent_bound(self, height: int, width: int) -> Tuple[float, float]:
        area = self.area_frac_range[1] * height * width
        return (min(height, math.ceil(math.sqrt(area / self.aspect_ratio_range[0]))),
                min(width, math.ceil(math.sqrt(area * self.aspect_ratio_range[1]))))
