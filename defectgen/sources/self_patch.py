"""A patch of the same image, read from elsewhere (CutPaste, CutPaste-Scar)."""
from __future__ import annotations

from typing import Dict, Mapping, Union

import torch

from ..rng import integers_below
from ..patch_pixels import PatchPixels
from ..registry import register_part
from ..values import value_scale
from .base import Source
from .colour_jitter import ColourJitter


@register_part("source", "self_patch")
class SelfPatch(Source):
    """Copy an axis-aligned ``height_px x width_px`` region of the same image into the defect.

    The source region is drawn uniformly, fully inside the image. When the mask is rotated the copied
    content turns with it (nearest-neighbour, as PIL's ``rotate`` in the CutPaste reference code), so a scar
    is a rotated strip of the image rather than a strip cut along the scar's direction. An optional
    :class:`ColourJitter` is applied to the copied pixels.
    """

    def __init__(self, colour_jitter: Union[ColourJitter, Mapping, None] = None):
        if isinstance(colour_jitter, Mapping):
            colour_jitter = ColourJitter(**colour_jitter)
        if colour_jitter is not None and not isinstance(colour_jitter, ColourJitter):
            raise TypeError(f"colour_jitter must be a ColourJitter or None, got {type(colour_jitter).__name__}")
        self.colour_jitter = colour_jitter

    def sample(self, n, channels, height, width, shape, generator) -> Dict[str, torch.Tensor]:
        params = {
            "src_top": integers_below((height - shape["height_px"] + 1).clamp_min(1), generator),
            "src_left": integers_below((width - shape["width_px"] + 1).clamp_min(1), generator),
        }
        if self.colour_jitter is not None:
            params.update(self.colour_jitter.sample(n, generator))
        return params

    def render(self, images: torch.Tensor, params: Dict[str, torch.Tensor], pixels: PatchPixels) -> torch.Tensor:
        b, c, h, w = images.shape
        if pixels.qy is None:
            # unrotated: the source is the destination translated by a per-sample offset
            shift = (params["src_top"] - params["top"]) * w + (params["src_left"] - params["left"])
            index = pixels.channel_index(c, shift)
        else:
            centre = torch.stack([params["src_top"] + params["height_px"] / 2,
                                  params["src_left"] + params["width_px"] / 2], dim=1).float()
            centre = pixels.per_pixel(centre)
            rows = torch.floor(centre[:, 0] + pixels.qy).long().clamp_(0, h - 1)
            cols = torch.floor(centre[:, 1] + pixels.qx).long().clamp_(0, w - 1)
            # move each pixel's index from its destination to its source position
            index = pixels.channel_index(c) + (rows * w + cols - pixels.plane_index % (h * w)).unsqueeze(0)
        values = images.reshape(-1).take(index)
        if self.colour_jitter is None:
            return values
        return ColourJitter.apply(values.float(), pixels, params, value_scale(images.dtype))
