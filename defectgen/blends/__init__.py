"""Blends: how a defect meets the image."""
from .base import Blend
from .opacity import Feather, Opacity
from .poisson import Poisson, blend_poisson, solve_poisson
from .replace import Replace

__all__ = ["Blend", "Replace", "Opacity", "Feather", "Poisson", "blend_poisson", "solve_poisson"]
