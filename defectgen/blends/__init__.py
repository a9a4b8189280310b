"""Blends: how a defect meets the image."""
from .base import Blend
from .replace import Replace

__all__ = ["Blend", "Replace"]
