"""Named operators: presets over the mask / source / blend parts."""
from .base import DefectOp
from .confetti import Confetti
from .cutout import Cutout, Scar
from .cutpaste import CutPaste, CutPasteScar
from .diffusion import DiffusionDefect
from .patch import PatchDefect
from .perlin import PerlinDefect
from .poisson_paste import PoissonPaste
from .region import RegionDefect
from .shape import ShapeDefect
from .transplant import DefectTransplant

__all__ = ["DefectOp", "PatchDefect", "RegionDefect", "CutPaste", "CutPasteScar", "Cutout", "Scar", "Confetti",
           "ShapeDefect", "PerlinDefect", "PoissonPaste", "DefectTransplant",
           "DiffusionDefect"]
