"""Confetti noise (Liznerski, Ruff, Vandermeulen, Franks, Kloft, Müller: "Explainable Deep One-Class
Classification", ICLR 2021): FCDD's synthetic anomalies for MVTec-AD."""
from __future__ import annotations

from typing import Optional, Tuple

from ..masks.confetti import ConfettiMask, SharedBlobs
from ..registry import register_op
from ..sources.confetti import ConfettiColour
from .region import RegionDefect


@register_op("confetti")
class Confetti(RegionDefect):
    """A few rotated square blobs per image, each white or a random colour, blurred and added to the image.

    Defaults are FCDD's ``confetti`` noise at its 240 px training images: sides 8-54 px, rotation +-45
    degrees, Gaussian blur sigma 5 px, colours added to the image and clipped, about 46 % of the blobs white;
    2-4 blobs per image (FCDD: at least 2, 3 on average). Pixel values scale with ``min(H, W) /
    reference_size``. :mod:`defectgen.masks.confetti` lists what matches FCDD and what differs. FCDD turns
    half of its training samples into anomalies: ``p=0.5`` reproduces that, the default 1.0 makes every
    sample defective like the other operators.

    The mask is every pixel the blurred blobs change by at least half a grey level; one box per connected
    group of blobs.

    Args:
        size_px_range, angle_deg_range, count_range, sigma_px, reference_size: the blobs, as in
            :class:`~defectgen.masks.confetti.ConfettiMask` (``sigma_px=0`` gives hard-edged squares).
        mode: ``"add"`` (FCDD: the colour is added to the image) or ``"replace"`` (the colour is painted).
        white_prob: probability that a blob is white instead of a random colour.
        p, label, seed, foreground: as in :class:`~defectgen.CutPaste`; with a foreground, blob centres are
            drawn on it and the blobs are clipped to it.
    """

    def __init__(self, size_px_range: Tuple[float, float] = (8, 54), angle_deg_range: Tuple[float, float] = (-45, 45),
                 count_range: Tuple[int, int] = (2, 4), sigma_px: float = 5.0, reference_size: Optional[float] = 240,
                 mode: str = "add", white_prob: float = 0.46, p: float = 1.0, label: int = 1,
                 seed: Optional[int] = None, foreground: Optional[str] = None):
        mask = ConfettiMask(size_px_range, angle_deg_range, count_range, sigma_px, reference_size)
        source = ConfettiColour(mode, white_prob)
        super().__init__(mask=mask, source=source, blend="replace", p=p, label=label, seed=seed,
                         foreground=foreground)
        # the colour source reuses the blob coverage the mask computed in the same call
        mask._shared = source._shared = SharedBlobs()
        self.size_px_range = mask.size_px_range
        self.angle_deg_range = mask.angle_deg_range
        self.count_range = mask.count_range
        self.sigma_px = mask.sigma_px
        self.reference_size = mask.reference_size
        self.mode = source.mode
        self.white_prob = source.white_prob
