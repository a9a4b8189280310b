"""Named operators: presets over the mask / source / blend parts."""
from .base import DefectOp
from .cutout import Cutout, Scar
from .cutpaste import CutPaste, CutPasteScar
from .patch import PatchDefect

__all__ = ["DefectOp", "PatchDefect", "CutPaste", "CutPasteScar", "Cutout", "Scar"]
