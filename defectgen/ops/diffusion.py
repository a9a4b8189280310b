"""DiffusionDefect: defects a diffusion model paints into any mask (learnt from a few NG images, or OK-only)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

from ..blends.base import Blend
from ..masks.base import RegionMask
from ..registry import register_op
from ..sources.diffusion.source import Backend, DiffusionInpaint
from .region import RegionDefect


@register_op("diffusion")
class DiffusionDefect(RegionDefect):
    """``RegionDefect`` with a :class:`~defectgen.DiffusionInpaint` source, as a named operator for recipes.

    Any *where* part gives the mask (``"perlin"`` by default; a ``{"type": "transplant", "bank": ...}`` mask
    reuses the real defects' shapes, varied by random affine changes); the model inpaints it; the blend
    (feathered by default) mixes the result in and pastes the original back outside the mask. A sample's
    label is its defect class: ``class_names[i]`` has id ``label + i``.

    Args:
        model, steps, guidance, classes, strength, resample, prompts, batch_size: see
            :class:`~defectgen.DiffusionInpaint`.
        mask: the mask sampler (instance, name or config).
        blend: how the fill is mixed in (``"feather"``, ``"replace"``, ``"poisson"``, ...).
        p, label, seed, foreground: as for every operator.
    """

    def __init__(self, model: Union[str, Path, Backend], mask: Union[RegionMask, str, Mapping] = "perlin",
                 blend: Union[Blend, str, Mapping] = "feather", steps: int = 25, guidance: float = 3.0,
                 classes: Optional[Sequence[str]] = None, strength: float = 1.0, resample: int = 1,
                 prompts: Optional[Mapping[str, str]] = None, batch_size: Optional[int] = None, p: float = 1.0,
                 label: int = 1, seed: Optional[int] = None, foreground: Optional[str] = None):
        source = DiffusionInpaint(model, steps=steps, guidance=guidance, classes=classes, strength=strength,
                                  resample=resample, prompts=prompts, batch_size=batch_size)
        super().__init__(mask=mask, source=source, blend=blend, p=p, label=label, seed=seed, foreground=foreground)
        self.model = source.model
        self.steps, self.guidance, self.classes = source.steps, source.guidance, source.classes
        self.strength, self.resample, self.prompts, self.batch_size = (source.strength, source.resample,
                                                                       source.prompts, source.batch_size)

    @property
    def class_names(self) -> List[str]:
        """Defect class names; ``class_names[i]`` has class id ``label + i``."""
        return list(self.source.class_names)

    @property
    def class_ids(self) -> Dict[int, str]:
        """``{class id: class name}``, e.g. for ``preview_grid(..., class_names=op.class_ids)``."""
        return {self.label + i: name for i, name in enumerate(self.source.class_names)}
