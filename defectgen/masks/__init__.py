"""Mask samplers: where a defect goes."""
from .base import MaskSampler
from .rectangle import RectangleMask
from .scar import ScarMask

__all__ = ["MaskSampler", "RectangleMask", "ScarMask"]
