"""Constant-colour defects: Cutout (DeVries & Taylor 2017) and Scar (the thin-rectangle variant that Li et al.
2021 use as a baseline pretext)."""
from __future__ import annotations

from typing import Optional, Tuple

from ..masks.rectangle import RectangleMask
from ..masks.scar import ScarMask
from ..registry import register_op
from ..sources.constant import ConstantFill
from .patch import PatchDefect


@register_op("cutout")
class Cutout(PatchDefect):
    """Erase a rectangle with a constant colour: a stain, a missing print, a dead region.

    Unlike occlusion-style random erasing, the erased region *is* the defect: it is in the mask and boxes.
    The rectangle is sized as in :class:`~defectgen.CutPaste` (area 2-15 %, aspect 0.3-3.3) so the two
    are directly comparable as pretext tasks.

    Args:
        area_frac_range, aspect_ratio_range: as in :class:`~defectgen.CutPaste`.
        fill: ``"gray"`` (mid-grey), ``"mean"`` (the image's per-channel mean), ``"random"`` (a uniform
            random colour per sample) or ``"random_gray"`` (a random grey level, for grey images stored as RGB).
        p, label, seed, foreground: as in :class:`~defectgen.CutPaste`.
    """

    def __init__(self, area_frac_range: Tuple[float, float] = (0.02, 0.15),
                 aspect_ratio_range: Tuple[float, float] = (0.3, 1 / 0.3), fill: str = "gray",
                 p: float = 1.0, label: int = 1, seed: Optional[int] = None,
                 foreground: Optional[str] = None):
        mask = RectangleMask(area_frac_range, aspect_ratio_range)
        super().__init__(mask=mask, source=ConstantFill(fill), p=p, label=label, seed=seed,
                         foreground=foreground)
        self.area_frac_range = mask.area_frac_range
        self.aspect_ratio_range = mask.aspect_ratio_range
        self.fill = fill


@register_op("scar")
class Scar(PatchDefect):
    """A thin rotated rectangle of a constant colour: a scratch or a painted line.

    Geometry defaults are CutPaste-Scar's (2-16 x 10-25 px at 256 px, -45..45 degrees, scaled by
    ``min(H, W) / reference_size``); the fill is a uniform random colour by default.

    Args:
        width_px_range, length_px_range, angle_deg_range, reference_size: as in :class:`~defectgen.CutPasteScar`.
        fill: as in :class:`Cutout`; default ``"random"``.
        p, label, seed, foreground: as in :class:`~defectgen.CutPaste`.
    """

    def __init__(self, width_px_range: Tuple[float, float] = (2, 16), length_px_range: Tuple[float, float] = (10, 25),
                 angle_deg_range: Tuple[float, float] = (-45, 45), reference_size: Optional[float] = 256,
                 fill: str = "random", p: float = 1.0, label: int = 1, seed: Optional[int] = None,
                 foreground: Optional[str] = None):
        mask = ScarMask(width_px_range, length_px_range, angle_deg_range, reference_size)
        super().__init__(mask=mask, source=ConstantFill(fill), p=p, label=label, seed=seed,
                         foreground=foreground)
        self.width_px_range = mask.width_px_range
        self.length_px_range = mask.length_px_range
        self.angle_deg_range = mask.angle_deg_range
        self.reference_size = mask.reference_size
        self.fill = fill
