"""One rectangle or ellipse per image, sized like NSA's patches, as a whole-image region (PoissonPaste)."""
from __future__ import annotations

from typing import Dict, Tuple

import torch

from ..checks import check_int, check_number, check_range
from ..rng import integers_below
from ..foreground import sample_foreground_points
from ..registry import register_part
from .base import RegionMask

SHAPES = ("rectangle", "ellipse")


@register_part("mask", "patch_region")
class PatchRegion(RegionMask):
    """A ``height_px x width_px`` rectangle (or the ellipse inscribed in it) at ``(top, left)``, one per image.

    Each side, as a fraction of the image's side along it, is ``side_frac_range[0] + Gamma(2, side_frac_scale)``
    clipped to ``side_frac_range``: NSA (Schlüter et al., ECCV 2022) draws each half-width as
    ``0.03 + Gamma(2, 0.05)`` of the image side clipped to ``[0.03, 0.4]``, which in full sides is the default
    ``0.06 + Gamma(2, 0.1)`` in ``[0.06, 0.8]`` (mean about 0.26). Sides are whole pixels, at least 1, and the
    shape keeps ``margin_px`` pixels from the image border (a Poisson blend needs the pixels around it). The
    position is uniform; with a foreground, the shape's centre is moved onto a foreground pixel (shifted inward
    where it would cross the margin).

    Args:
        side_frac_range: ``(min, max)`` side as a fraction of the image side, in ``(0, 1]``.
        side_frac_scale: scale of the shape-2 gamma added to the minimum (0: every side is the minimum).
        shape: ``"rectangle"`` or ``"ellipse"`` (the ellipse inscribed in the rectangle: pixel centres inside it).
        margin_px: pixels kept free at the image border.
    """

    instances = "one"

    def __init__(self, side_frac_range: Tuple[float, float] = (0.06, 0.8), side_frac_scale: float = 0.1,
                 shape: str = "rectangle", margin_px: int = 1):
        self.side_frac_range = check_range(side_frac_range, "side_frac_range", 0.0, 1.0, low_open=True)
        self.side_frac_scale = check_number(side_frac_scale, "side_frac_scale", 0.0)
        if shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
        self.shape = shape
        self.margin_px = check_int(margin_px, "margin_px", 0)

    def _check_fits(self, height: int, width: int) -> None:
        if min(height, width) < 2 * self.margin_px + 1:
            raise ValueError(f"{type(self).__name__}: images of {height}x{width} px leave no room for a patch "
                             f"{self.margin_px} px from the border; use images of at least "
                             f"{2 * self.margin_px + 1}x{2 * self.margin_px + 1} px")

    def _sides(self, n: int, extent: int, generator: torch.Generator) -> torch.Tensor:
        lo, hi = self.side_frac_range
        u = torch.rand(n, 2, generator=generator, device=generator.device)
        gamma2 = -torch.log1p(-u).sum(1)  # a sum of two unit exponentials is Gamma(2, 1)
        frac = (lo + self.side_frac_scale * gamma2).clamp(lo, hi)
        return (frac * extent).round().long().clamp(1, extent - 2 * self.margin_px)

    def sample(self, n: int, height: int, width: int, generator: torch.Generator) -> Dict[str, torch.Tensor]:
        self._check_fits(height, width)
        h = self._sides(n, height, generator)
        w = self._sides(n, width, generator)
        m = self.margin_px
        top = m + integers_below(height - 2 * m - h + 1, generator)
        left = m + integers_below(width - 2 * m - w + 1, generator)
        return {"height_px": h, "width_px": w, "top": top, "left": left}

    def place(self, params, foreground, generator):
        height, width = foreground.shape[2:]
        h, w, m = params["height_px"], params["width_px"], self.margin_px
        centre = sample_foreground_points(foreground, 1, generator)[:, 0]
        top = torch.minimum((centre[:, 0] - h / 2).round().long().clamp_min(m), height - m - h)
        left = torch.minimum((centre[:, 1] - w / 2).round().long().clamp_min(m), width - m - w)
        return {**params, "top": top, "left": left}

    def check_replay(self, params, batch, height, width) -> None:
        self.check_fits(params, height, width)

    def check_fits(self, params: Dict[str, torch.Tensor], height: int, width: int) -> None:
        """Raise ValueError when replayed params describe shapes outside ``height x width`` images."""
        self._check_fits(height, width)
        h, w, top, left = params["height_px"], params["width_px"], params["top"], params["left"]
        if ((h < 1) | (w < 1) | (top < 0) | (left < 0) | (top + h > height) | (left + w > width)).any():
            raise ValueError(f"params describe patches that do not fit {height}x{width} images; replay params "
                             "on images of the size that made them")

    def draw(self, params, height, width, device):
        top, left = params["top"].view(-1, 1, 1, 1), params["left"].view(-1, 1, 1, 1)
        h, w = params["height_px"].view(-1, 1, 1, 1), params["width_px"].view(-1, 1, 1, 1)
        rows = torch.arange(height, device=device).view(1, 1, -1, 1)
        cols = torch.arange(width, device=device).view(1, 1, 1, -1)
        if self.shape == "rectangle":
            inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
        else:
            dy = (rows + 0.5 - top - h / 2) / (h / 2)
            dx = (cols + 0.5 - left - w / 2) / (w / 2)
            inside = dy * dy + dx * dx <= 1.0
        return inside.float()
