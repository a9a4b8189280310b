"""Sources: what fills a defect."""
from .base import Source
from .colour_jitter import ColourJitter
from .constant import ConstantFill
from .self_patch import SelfPatch

__all__ = ["Source", "ColourJitter", "ConstantFill", "SelfPatch"]
