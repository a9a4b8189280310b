"""Named operators: presets over the mask / source / blend parts."""
from .base import DefectOp
from .confetti import Confetti
from .cutout import Cutout, Scar
from .cutpaste import CutPaste, CutPasteScar
from .diffusion import DiffusionDefect
from .patch import PatchDefect
from .perlin import PerlinDefect
from .perlin_presets import draem, glass, memseg
from .poisson_paste import PoissonPaste
from .region import RegionDefect
from .shape import ShapeDefect
from .transplant import DefectTransplant

__all__ = ["DefectOp", "PatchDefect", "RegionDefect", "CutPaste", "CutPasteScar", "Cutout", "Scar", "Confetti",
           "ShapeDefect", "PerlinDefect", "PoissonPaste", "DefectTransplant",
           "DiffusionDefect"]
__all__ += ["draem", "glass", "memseg"]
from .nsa import NSA  # noqa: E402
__all__ += ["NSA"]
