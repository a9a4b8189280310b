"""CutPaste and CutPaste-Scar (Li, Sohn, Yoon, Pfister: "CutPaste: Self-Supervised Learning for Anomaly
Detection and Localization", CVPR 2021)."""
from __future__ import annotations

from typing import Optional, Tuple

from ..checks import check_number
from ..masks.rectangle import RectangleMask
from ..masks.scar import ScarMask
from ..registry import register_op
from ..sources.colour_jitter import ColourJitter
from ..sources.self_patch import SelfPatch
from .patch import PatchDefect


def _jitter(strength: float) -> Optional[ColourJitter]:
    strength = check_number(strength, "colour_jitter", 0.0, 0.5)
    return ColourJitter(strength, strength, strength, strength) if strength > 0 else None


@register_op("cutpaste")
class CutPaste(PatchDefect):
    """Cut a rectangle from the image and paste it, colour-jittered, somewhere else in the same image.

    Defaults are the paper's: patch area 2-15 % of the image, aspect ratio ``width / height`` log-uniform in
    [0.3, 1/0.3], colour jitter 0.1 (brightness, contrast, saturation and hue), source and destination both
    drawn uniformly and fully inside the image (they may overlap).

    Args:
        area_frac_range: patch area as a fraction of the image area.
        aspect_ratio_range: ``width / height`` of the patch, drawn log-uniformly.
        colour_jitter: strength of the colour jitter on the pasted patch (0 turns it off).
        p: probability that a sample gets a defect; the others come back untouched with label 0.
        label: class id of this defect in ``label`` and ``box_label``.
        seed: seeds the operator's own generator, used when a call passes neither ``generator`` nor ``seed``.
        foreground: where defects may land: None (anywhere), ``"otsu"``/``"otsu_dark"``/``"otsu_bright"``
            (estimated per image) or ``"given"`` (a mask passed to each call); see :mod:`defectgen.foreground`.
    """

    def __init__(self, area_frac_range: Tuple[float, float] = (0.02, 0.15),
                 aspect_ratio_range: Tuple[float, float] = (0.3, 1 / 0.3), colour_jitter: float = 0.1,
                 p: float = 1.0, label: int = 1, seed: Optional[int] = None,
                 foreground: Optional[str] = None):
        mask = RectangleMask(area_frac_range, aspect_ratio_range)
        super().__init__(mask=mask, source=SelfPatch(_jitter(colour_jitter)), p=p, label=label, seed=seed,
                         foreground=foreground)
        self.area_frac_range = mask.area_frac_range
        self.aspect_ratio_range = mask.aspect_ratio_range
        self.colour_jitter = float(colour_jitter)


@register_op("cutpaste_scar")
class CutPasteScar(PatchDefect):
    """Cut a thin strip from the image and paste it, rotated and colour-jittered, somewhere else.

    Defaults are the paper's, given at 256 px: width 2-16 px, length 10-25 px, rotation -45..45 degrees,
    colour jitter 0.1. The pixel ranges scale with the image: they are multiplied by
    ``min(H, W) / reference_size`` (so at 512 px the scar is 4-32 x 20-50 px); ``reference_size=None``
    makes them absolute pixels.

    Args:
        width_px_range, length_px_range: scar size in pixels at ``reference_size``.
        angle_deg_range: rotation; 0 is a vertical scar.
        reference_size: image side the pixel ranges refer to, or None for absolute pixels.
        colour_jitter, p, label, seed, foreground: as in :class:`CutPaste`.
    """

    def __init__(self, width_px_range: Tuple[float, float] = (2, 16), length_px_range: Tuple[float, float] = (10, 25),
                 angle_deg_range: Tuple[float, float] = (-45, 45), reference_size: Optional[float] = 256,
                 colour_jitter: float = 0.1, p: float = 1.0, label: int = 1, seed: Optional[int] = None,
                 foreground: Optional[str] = None):
        mask = ScarMask(width_px_range, length_px_range, angle_deg_range, reference_size)
        super().__init__(mask=mask, source=SelfPatch(_jitter(colour_jitter)), p=p, label=label, seed=seed,
                         foreground=foreground)
        self.width_px_range = mask.width_px_range
        self.length_px_range = mask.length_px_range
        self.angle_deg_range = mask.angle_deg_range
        self.reference_size = mask.reference_size
        self.colour_jitter = float(colour_jitter)
