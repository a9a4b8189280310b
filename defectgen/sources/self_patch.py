"""A patch of the same image, read from elsewhere (CutPaste, CutPaste-Scar)."""
from __future__ import annotations

from typing import Dict, Mapping, Union

import torch

from .._rng import integers_below
from ..masks.geometry import PatchWindow
from ..registry import register_part
from .base import Source, value_scale
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

    def render(self, images: torch.Tensor, params: Dict[str, torch.Tensor], window: PatchWindow) -> torch.Tensor:
        b, c, h, w = images.shape
        hb, wb = window.size
        src_cy = params["src_top"].float() + params["height_px"].float() / 2
        src_cx = params["src_left"].float() + params["width_px"].float() / 2
        ys = torch.floor(src_cy.view(-1, 1, 1) + window.qy).long().clamp_(0, h - 1)
        xs = torch.floor(src_cx.view(-1, 1, 1) + window.qx).long().clamp_(0, w - 1)
        index = (ys * w + xs).view(b, 1, hb * wb).expand(b, c, hb * wb)
        patch = images.reshape(b, c, h * w).gather(2, index).view(b, c, hb, wb)
        if self.colour_jitter is None:
            return patch
        return ColourJitter.apply(patch.float(), window.inside.unsqueeze(1), params, value_scale(images.dtype))
