"""DefectTransplant: real defects learnt from a handful of NG images, pasted onto OK images."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch

from ..bank import BankSpec, as_bank
from ..blends.base import Blend
from ..masks.transplant import TransplantMask
from ..registry import register_op
from ..result import Params
from ..sources.transplant import TransplantSource
from .region import RegionDefect


@register_op("transplant")
class DefectTransplant(RegionDefect):
    """Cut real defects out of a few annotated NG images and paste them, varied, onto OK images.

    Each defective sample gets one defect from ``bank`` (see :class:`~defectgen.bank.DefectBank`), randomly
    flipped, rotated and rescaled, placed with its centre inside the image (or on the foreground), its colours
    shifted to the destination's local brightness, and blended in with a feathered edge (or Poisson-cloned with
    ``blend="poisson"``). The sample's label is its defect type: ``class_names[i]`` has class id
    ``label + i`` (1, 2, ... by default), and so do its box and mask.

    Args:
        bank: a DefectBank, an MVTec-layout folder (``test/<defect>/*.png`` with
            ``ground_truth/<defect>/<stem>_mask.png``; ``good`` is skipped) or a dict of
            ``DefectBank.from_mvtec`` arguments (``{"root": ..., "defects": [...], "max_per_type": 5}``); a
            bank read from a folder takes ``foreground`` (if an Otsu mode) for its background references.
        blend: ``"feather"`` (Gaussian soft edge, sigma 1.5 px), ``"poisson"``, ``"replace"``, a Blend or a config.
        scale_range: size relative to the real defect, log-uniform; 1 keeps its size relative to the image.
        angle_deg_range: rotation in degrees (the default: any orientation).
        flip: random horizontal and vertical flips.
        match_brightness: shift the defect to the destination's brightness around it.
        balance_types: draw each defect type equally often, whatever its number of examples.
        scale_with_image: scale with the image size (a defect from a 256 px image doubles on 512 px images).
        p: probability that a sample gets a defect; the others come back untouched with label 0.
        label: class id of the first defect type; the others follow.
        seed: seeds the operator's own generator, used when a call passes neither ``generator`` nor ``seed``.
        foreground: where defects may land: None (anywhere), ``"otsu"``/``"otsu_dark"``/``"otsu_bright"``
            (estimated per image) or ``"given"``; see :mod:`defectgen.foreground`. Defects are clipped to it.
    """

    def __init__(self, bank: BankSpec, blend: Union[Blend, str, Mapping] = "feather",
                 scale_range: Tuple[float, float] = (0.8, 1.25), angle_deg_range: Tuple[float, float] = (-180, 180),
                 flip: bool = True, match_brightness: bool = True, balance_types: bool = False,
                 scale_with_image: bool = True, p: float = 1.0, label: int = 1, seed: Optional[int] = None,
                 foreground: Optional[str] = None):
        # a bank read here measures its defects' backgrounds on the same kind of foreground they will land on
        defect_bank = as_bank(bank, foreground)
        mask = TransplantMask(defect_bank, scale_range=scale_range, angle_deg_range=angle_deg_range, flip=flip,
                              balance_types=balance_types, scale_with_image=scale_with_image)
        source = TransplantSource(defect_bank, match_brightness=match_brightness)
        super().__init__(mask=mask, source=source, blend=blend, p=p, label=label, seed=seed, foreground=foreground)
        self.defect_bank = defect_bank
        self.bank = str(bank) if isinstance(bank, Path) else bank
        self.scale_range = mask.scale_range
        self.angle_deg_range = mask.angle_deg_range
        self.flip = mask.flip
        self.match_brightness = source.match_brightness
        self.balance_types = mask.balance_types
        self.scale_with_image = mask.scale_with_image

    @property
    def class_names(self) -> List[str]:
        """Defect type names; ``class_names[i]`` has class id ``label + i``."""
        return list(self.defect_bank.class_names)

    @property
    def class_ids(self) -> Dict[int, str]:
        """``{class id: type name}``, e.g. for ``preview_grid(..., class_names=op.class_ids)``."""
        return {self.label + i: name for i, name in enumerate(self.defect_bank.class_names)}

    def sample_labels(self, params: Params) -> torch.Tensor:
        index = params["bank_index"]
        types = self.defect_bank.tensors(None, index.device).types
        return types[index] + (self.label - 1)

