"""The colours of FCDD's confetti noise: the per-blob colour source of :class:`~defectgen.masks.confetti.ConfettiMask`.

The mask places, sizes, rotates and blurs the blobs; this source colours them (white or a random colour each)
and adds or paints the composite. :mod:`defectgen.masks.confetti` holds the paper's account and the blob maths
both share.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch

from ..checks import check_probability
from ..masks.confetti import COLOUR_KEY, MODES, SharedBlobs, blob_coverage, composite_blobs
from ..registry import register_part
from ..values import value_scale
from .base import Source


@register_part("source", "confetti_colour")
class ConfettiColour(Source):
    """Per-blob colours for :class:`ConfettiMask` (it reads the mask's blob params): each blob is white with
    probability ``white_prob``, else a uniform random colour (a random grey on 1-channel images).

    ``mode="add"`` (FCDD) adds the composited colours to the image, clipped to the value range; ``"replace"``
    paints them. Blurred edges mix either with the image by their coverage.

    Sampled params: ``blob_colour`` ``(B, K, C)`` in [0, 1].
    """

    def __init__(self, mode: str = "add", white_prob: float = 0.46):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.white_prob = check_probability(white_prob, "white_prob")
        self._shared: Optional[SharedBlobs] = None

    def sample(self, n, channels, height, width, shape, generator) -> Dict[str, torch.Tensor]:
        if "blob_side_px" not in shape:
            raise TypeError("source 'confetti_colour' colours the blobs of a 'confetti' mask; use it with that mask")
        device = generator.device
        k = shape["blob_side_px"].shape[1]
        colour = torch.rand(n, k, channels, generator=generator, device=device)
        white = torch.rand(n, k, 1, generator=generator, device=device) < self.white_prob
        return {COLOUR_KEY: torch.where(white, 1.0, colour)}

    def render_region(self, images, params, coverage):
        b, c, h, w = images.shape
        scale = value_scale(images.dtype)
        fill = None if self._shared is None else self._shared.take(params, h, w, images.device)
        if fill is None:
            blobs = blob_coverage(params, h, w, images.device)
            _, fill = composite_blobs(blobs, params, h, w, images.device, params[COLOUR_KEY])
        fill = fill.expand(b, c, h, w).clone() if fill.shape[1] != c else fill  # the composite is ours to change
        if scale != 1.0:
            fill = fill.mul_(scale)
        if self.mode == "add":
            fill = fill.add_(images).clamp_(0.0, scale)
        return fill


__all__ = ["ConfettiColour"]
