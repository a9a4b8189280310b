"""What a transplanted real defect looks like: its own pixels, warped like its mask, brightness-matched."""
from __future__ import annotations

from pathlib import Path

import torch

from ..bank import BankSpec, as_bank
from ..masks.transplant import warp_bank
from ..registry import register_part
from ..values import value_scale
from .base import Source

# where region operators put the call's foreground in params (ops.base.FOREGROUND_KEY; parts do not import ops)
FOREGROUND_KEY = "foreground"


@register_part("source", "transplant")
class TransplantSource(Source):
    """Fill with the real defect pixels of a :class:`~defectgen.bank.DefectBank` entry.

    It reads the geometry :class:`~defectgen.masks.transplant.TransplantMask` sampled (``bank_index``,
    ``flip``, ``angle_deg``, ``scale``, ``centre``), so pair it with a mask on the same bank. The crop's
    context around the mask is warped too, so a feathered edge fades into the defect's real surroundings.

    Args:
        bank: a DefectBank, an MVTec-layout folder, or a dict of ``DefectBank.from_mvtec`` arguments.
        match_brightness: shift the defect's colour, per channel, by the difference between the destination's
            mean on the ring just outside the pasted mask and the source image's mean on the same ring, so a
            defect cut from a dark part of its image does not paste as a dark stain onto a bright part.
    """

    def __init__(self, bank: BankSpec, match_brightness: bool = True):
        if not isinstance(match_brightness, bool):
            raise TypeError(f"match_brightness must be True or False, got {match_brightness!r}")
        self.defect_bank = as_bank(bank)
        self.bank = str(bank) if isinstance(bank, Path) else bank
        self.match_brightness = match_brightness

    def render_region(self, images, params, coverage):
        b, c, h, w = images.shape
        bank = self.defect_bank.tensors(c, images.device)
        max_value = value_scale(images.dtype)
        if not self.match_brightness:
            fill = warp_bank(bank.pixels_ring[:, :c], params, bank, h, w)
            return fill if max_value == 255.0 else fill * (max_value / 255.0)
        warped = warp_bank(bank.pixels_ring, params, bank, h, w)
        # the ring as it lands, minus whatever the (soft, possibly foreground-clipped) defect covers
        ring = warped[:, c:] * (coverage == 0)
        if FOREGROUND_KEY in params:
            # a defect pasted at the object's edge must match the object, not the background beside it
            ring = ring * params[FOREGROUND_KEY]
        weight = ring.sum((2, 3))
        # multiply and sum, not bmm: a sample's sum must not depend on the rest of the batch
        destination = (images.float() * ring).sum((2, 3)) / weight.clamp_min(1e-6)
        source = bank.background[params["bank_index"]] * (max_value / 255.0)
        # a ring that fell entirely off the image says nothing about the destination: keep the colours
        shift = torch.where(weight > 0.5, destination - source, 0.0)
        fill = torch.add(shift.view(b, c, 1, 1), warped[:, :c], alpha=max_value / 255.0)
        return fill.clamp_(0.0, max_value)
