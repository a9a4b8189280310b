"""The composed region operator: a whole-image mask (where) x a fill (what) x a blend (how)."""
from __future__ import annotations

from typing import Mapping, Optional, Union

import torch

from ..rng import bernoulli
from ..blends.base import Blend, cast_like
from ..masks.base import RegionMask
from ..components import component_boxes, mask_boxes
from ..registry import register_op
from ..result import Params
from ..sources.base import Source, has_region_fill
from ..values import value_scale
from .base import FOREGROUND_KEY, Canvas, DefectOp, Painted
from .patch import _part


@register_op("region")
class RegionDefect(DefectOp):
    """Compose a defect whose mask is any shape: ``RegionDefect(mask=PerlinMask(), source=..., blend=...)``.

    The mask sampler draws a ``(B, 1, H, W)`` coverage, the source a whole-image fill, and the blend mixes
    them (replace, opacity, feathered, Poisson ...). Every pixel the blend changes is in the mask; every
    other pixel is the input's, bit for bit. Boxes are one per connected region or one per image,
    as the mask sampler says. Named operators (``PerlinDefect``, ``Confetti``, ``ShapeDefect``, ...) are
    presets of this class; parts may be instances, registered names or ``{"type": name, ...}`` configs.

    With a foreground (see :class:`~defectgen.DefectOp`) positioned shapes are moved onto it and every
    defect is clipped to it; a sample whose defect ends up empty is left normal (label 0), as DRAEM does
    with empty Perlin masks.
    """

    def __init__(self, mask: Union[RegionMask, str, Mapping], source: Union[Source, str, Mapping],
                 blend: Union[Blend, str, Mapping] = "replace", p: float = 1.0, label: int = 1,
                 seed: Optional[int] = None, foreground: Optional[str] = None):
        super().__init__(p=p, label=label, seed=seed, foreground=foreground)
        self.mask = _part("mask", mask, RegionMask)
        self.source = _part("source", source, Source)
        self.blend = _part("blend", blend, Blend)
        if not has_region_fill(self.source):
            raise TypeError(f"source {type(self.source).__name__} cannot fill a whole-image region; use it in "
                            "PatchDefect with a rectangle/scar mask")
        if type(self.blend).blend_region is Blend.blend_region:
            raise TypeError(f"blend {type(self.blend).__name__} has no whole-image form; use it in PatchDefect")

    def sample_params(self, batch, channels, height, width, generator) -> Params:
        params = {"applied": bernoulli(batch, self.p, generator)}
        shape = self.mask.sample(batch, height, width, generator)
        params.update(shape)
        params.update(self.source.sample(batch, channels, height, width, shape, generator))
        params.update(self.blend.sample(batch, generator))
        return params

    def place(self, params: Params, foreground: torch.Tensor, generator: torch.Generator) -> Params:
        return {**self.mask.place(params, foreground, generator), FOREGROUND_KEY: foreground}

    def check_replay(self, params: Params, height: int, width: int) -> None:
        batch = params["applied"].shape[0]
        self.mask.check_replay(params, batch, height, width)
        self.source.check_replay(params, batch, height, width)

    def sample_labels(self, params: Params) -> torch.Tensor:
        """``(B,)`` class id of each sample's defect; subclasses with several defect types override it."""
        applied = params["applied"]
        labels = torch.full(applied.shape, self.label, dtype=torch.long, device=applied.device)
        offset = self.source.class_offset(params)
        return labels if offset is None else labels + offset.to(applied.device)

    def paint(self, canvas: Canvas, mask: torch.Tensor, params: Params) -> Painted:
        images = canvas.image
        batch, _, height, width = images.shape
        allowed = params["applied"].view(-1, 1, 1, 1)
        if FOREGROUND_KEY in params:
            allowed = allowed & params[FOREGROUND_KEY]
        coverage = torch.where(allowed, self.mask.draw(params, height, width, images.device), 0.0)
        max_value = value_scale(images.dtype)
        fill = self.source.render_region(images, params, coverage)
        blended, region = self.blend.blend_region(images.float(), fill.float(), coverage, params, max_value)
        region = region & allowed
        painted = cast_like(blended, images.dtype)
        # a blend's fresh output tensor can take the selection in place (saves a batch-sized allocation); never
        # write into a view, the caller's images or the source's fill
        fresh = painted._base is None and painted.untyped_storage().data_ptr() not in (
            images.untyped_storage().data_ptr(), fill.untyped_storage().data_ptr())
        out = painted if fresh else None
        canvas.replace(torch.where(region, painted, images, out=out))
        torch.logical_or(mask, region, out=mask)

        classes = self.sample_labels(params)
        if self.mask.instances == "one":
            boxes, valid = mask_boxes(region)
            box_index = torch.arange(batch, device=images.device)
            defective = valid
        else:
            boxes, box_index = component_boxes(region)
            valid = torch.ones(len(box_index), dtype=torch.bool, device=images.device)
            defective = region.flatten(1).any(1)
        return Painted(boxes=boxes, box_index=box_index, box_label=classes[box_index], valid=valid,
                       label=torch.where(defective, classes, 0))

    def gate(self, params: Params, keep: torch.Tensor) -> Params:
        return {**params, "applied": params["applied"] & keep}
