"""Sources: what fills a defect."""
from .base import Source
from .colour_jitter import ColourJitter
from .confetti import ConfettiColour
from .constant import ConstantFill
from .diffusion import DiffusionInpaint, InpaintModel
from .draem_augment import DraemAugment
from .either import EitherSource
from .glass_augment import GlassAugment
from .other_image import OtherImagePatch
from .self_patch import SelfPatch
from .shuffle import SelfShuffle
from .texture import TextureSource
from .transplant import TransplantSource

__all__ = ["Source", "ColourJitter", "ConstantFill", "SelfPatch", "TextureSource", "SelfShuffle", "DraemAugment",
           "OtherImagePatch", "TransplantSource",
           "DiffusionInpaint", "InpaintModel"]
__all__ += ["EitherSource", "GlassAugment", "ConfettiColour"]
