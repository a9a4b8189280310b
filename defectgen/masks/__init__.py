"""Mask samplers: where a defect goes. ``MaskSampler``: one rotated rectangle per sample (patch defects);
``RegionMask``: any whole-image mask (blobs, shapes, real defects)."""
from .base import MaskSampler, RegionMask
from .confetti import ConfettiMask
from .patch_region import PatchRegion
from .perlin import PerlinMask, PerlinPairMask
from .rectangle import RectangleMask
from .scar import ScarMask
from .shapes import ShapeMask
from .transplant import TransplantMask

__all__ = ["MaskSampler", "RegionMask", "RectangleMask", "ScarMask", "PerlinMask", "ConfettiMask",
           "ShapeMask", "PatchRegion", "TransplantMask"]
__all__ += ["PerlinPairMask"]
