"""Constant-colour fills (Cutout, Scar)."""
from __future__ import annotations

from typing import Dict

import torch

from ..patch_pixels import PatchPixels
from ..registry import register_part
from ..values import value_scale
from .base import Source

FILLS = ("gray", "mean", "random", "random_gray")


@register_part("source", "constant")
class ConstantFill(Source):
    """Fill the defect with one colour per sample.

    ``fill="gray"`` uses mid-grey (0.5, or 128 for uint8), ``"mean"`` the image's per-channel mean, and
    ``"random"`` a uniform random colour per sample (each channel independently; grayscale images get a
    random grey), and ``"random_gray"`` a uniform random grey level on every channel, for grey images stored
    as RGB where a coloured defect would give itself away by colour alone.
    """

    def __init__(self, fill: str = "random"):
        if fill not in FILLS:
            raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
        self.fill = fill

    def sample(self, n, channels, height, width, shape, generator) -> Dict[str, torch.Tensor]:
        if self.fill == "random":
            return {"colour": torch.rand(n, channels, generator=generator, device=generator.device)}
        if self.fill == "random_gray":
            return {"colour": torch.rand(n, 1, generator=generator, device=generator.device)}
        return {}

    def constant_colour(self, images: torch.Tensor, params: Dict[str, torch.Tensor]) -> torch.Tensor:
        scale = value_scale(images.dtype)
        b, c = images.shape[:2]
        if self.fill == "gray":
            return torch.full((b, c), 0.5 * scale, device=images.device)
        if self.fill == "mean":
            return images.mean(dim=(2, 3), dtype=torch.float32)  # no float copy of the whole batch
        return params["colour"].float().expand(b, c) * scale

    def render_region(self, images: torch.Tensor, params: Dict[str, torch.Tensor],
                      coverage: torch.Tensor) -> torch.Tensor:
        b, c, h, w = images.shape
        return self.constant_colour(images, params).view(b, c, 1, 1).expand(b, c, h, w)

    def render(self, images: torch.Tensor, params: Dict[str, torch.Tensor], pixels: PatchPixels) -> torch.Tensor:
        return pixels.per_pixel_channels(self.constant_colour(images, params))
