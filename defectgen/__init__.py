"""defectgen: batched synthetic defects for industrial visual inspection.

A defect is *where* (a mask sampler) x *what* (a source) x *how* (a blend); the named operators are presets of
published methods over those parts. Every operator maps a ``(B, C, H, W)`` batch to a :class:`DefectBatch`.
"""
from .bank import DefectBank
from .generation import generate
from .ops import (Confetti, Cutout, CutPaste, CutPasteScar, DefectOp, DefectTransplant, DiffusionDefect, PatchDefect,
                  PerlinDefect, PoissonPaste, RegionDefect, Scar, ShapeDefect)
from .ops.perlin_presets import draem, glass, memseg
from .ops.nsa import NSA
from .pipeline import OneOf, cutpaste_3way, cutpaste_union
from .registry import create_op, create_part, list_ops, register_op, register_part
from .result import DefectBatch
from .sources.diffusion import DiffusionInpaint, InpaintModel
from .version import __version__  # noqa: F401  (defectgen.__version__)

__all__ = [
    "CutPaste", "CutPasteScar", "Cutout", "Scar", "Confetti", "ShapeDefect", "PerlinDefect", "PoissonPaste",
    "DefectTransplant", "DiffusionDefect", "DiffusionInpaint", "InpaintModel",
    "DefectBank", "PatchDefect", "RegionDefect", "DefectOp", "OneOf",
    "draem", "glass", "memseg",
    "cutpaste_union", "cutpaste_3way", "create_op", "create_part", "list_ops", "register_op",
    "register_part", "DefectBatch", "generate",
]
__all__ += ["NSA"]
