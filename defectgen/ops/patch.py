"""The composed patch operator: one shape (where) x one source (what) x one blend (how) per sample."""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Union

import torch

from ..rng import bernoulli, integers_below
from ..foreground import sample_foreground_points
from ..blends.base import Blend
from ..masks.base import MaskSampler
from ..masks.geometry import rasterize_rotated_rectangles, rectangle_boxes, rectangle_masks, rotated_box_size
from ..registry import create_part, register_op
from ..result import Params
from ..sources.base import Source
from .base import Canvas, DefectOp, Painted


def _part(kind: str, value: Any, cls: type):
    if isinstance(value, cls):
        return value
    if isinstance(value, (str, Mapping)):
        return create_part(kind, value)
    raise TypeError(f"{kind} must be a {cls.__name__}, a registered name or a config dict, got {type(value).__name__}")


@register_op("patch")
class PatchDefect(DefectOp):
    """Compose a defect from parts: ``PatchDefect(mask=ScarMask(), source=SelfPatch(), blend=Replace())``.

    Each sample (with probability ``p``) gets one shape from ``mask``, placed uniformly with its bounding
    box fully inside the image, filled by ``source`` and written by ``blend``. The named operators
    (``CutPaste``, ``Scar``, ...) are presets of this class. Parts may be given as instances, registered
    names or ``{"type": name, ...}`` configs, so a new defect type can be written in a YAML recipe.

    With a foreground (see :class:`~defectgen.DefectOp`), each defect is centred on a foreground pixel
    drawn uniformly (shifted inward where it would cross the image border); its shape is kept whole.
    """

    def __init__(self, mask: Union[MaskSampler, str, Mapping], source: Union[Source, str, Mapping],
                 blend: Union[Blend, str, Mapping] = "replace", p: float = 1.0, label: int = 1,
                 seed: Optional[int] = None, foreground: Optional[str] = None):
        super().__init__(p=p, label=label, seed=seed, foreground=foreground)
        self.mask = _part("mask", mask, MaskSampler)
        self.source = _part("source", source, Source)
        self.blend = _part("blend", blend, Blend)
        if type(self.blend).paint is Blend.paint:
            raise TypeError(f"blend {type(self.blend).__name__} works on whole-image regions only; use it in "
                            "RegionDefect (or a preset of it), not in PatchDefect")
        if type(self.source).render is Source.render:
            raise TypeError(f"source {type(self.source).__name__} fills whole-image regions only; use it in "
                            "RegionDefect (or a preset of it), not in PatchDefect")

    def _check_fits(self, height: int, width: int) -> None:
        bound = self.mask.extent_bound(height, width)
        # the unrotated size must fit too: a source reads an unrotated patch of it from the image
        size = self.mask.size_bound(height, width)
        needed = tuple(math.ceil(max(b, s) - 1e-3) for b, s in zip(bound, size))
        if needed[0] > height or needed[1] > width:
            raise ValueError(
                f"{type(self).__name__}: images of {height}x{width} px are too small for its mask {self.mask!r}, "
                f"whose defects can span {needed[0]}x{needed[1]} px; use larger images or smaller ranges")

    def sample_params(self, batch, channels, height, width, generator) -> Params:
        self._check_fits(height, width)
        params = {"applied": bernoulli(batch, self.p, generator)}
        shape = self.mask.sample(batch, height, width, generator)
        params.update(shape)
        box_h, box_w = rotated_box_size(shape["height_px"], shape["width_px"], shape["angle_deg"])
        params["top"] = integers_below(height - box_h + 1, generator)
        params["left"] = integers_below(width - box_w + 1, generator)
        params.update(self.source.sample(batch, channels, height, width, shape, generator))
        return params

    def place(self, params: Params, foreground: torch.Tensor, generator: torch.Generator) -> Params:
        height, width = foreground.shape[2:]
        box_h, box_w = rotated_box_size(params["height_px"], params["width_px"], params["angle_deg"])
        centre = sample_foreground_points(foreground, 1, generator)[:, 0]
        top = torch.minimum((centre[:, 0] - box_h / 2).round().long().clamp_min(0), height - box_h)
        left = torch.minimum((centre[:, 1] - box_w / 2).round().long().clamp_min(0), width - box_w)
        return {**params, "top": top, "left": left}

    def check_replay(self, params: Params, height: int, width: int) -> None:
        self._check_fits(height, width)
        box_h, box_w = rotated_box_size(params["height_px"], params["width_px"], params["angle_deg"])
        if ((params["height_px"] < 1) | (params["width_px"] < 1) | (params["top"] < 0) | (params["left"] < 0)
                | (params["top"] + box_h > height) | (params["left"] + box_w > width)).any():
            raise ValueError(f"params describe defects that do not fit {height}x{width} images; replay params "
                             "on images of the size that made them")

    def paint(self, canvas: Canvas, mask: torch.Tensor, params: Params) -> Painted:
        batch = mask.shape[0]
        applied = params["applied"]
        if self.mask.axis_aligned and self._fill_rectangles(canvas, mask, params):
            boxes = rectangle_boxes(params["top"], params["left"], params["height_px"], params["width_px"])
        else:
            boxes = self._paint_pixels(canvas, mask, params)
        label = torch.full((batch,), self.label, dtype=torch.long, device=mask.device)
        return Painted(boxes=boxes, box_index=torch.arange(batch, device=mask.device), box_label=label,
                       valid=applied, label=torch.where(applied, label, 0))

    def _fill_rectangles(self, canvas: Canvas, mask: torch.Tensor, params: Params) -> bool:
        """Constant colours in unrotated rectangles: one whole-batch blend instead of a per-pixel scatter.

        Returns False (having done nothing) when the source or blend has no such form."""
        colour = self.source.constant_colour(canvas.image, params)
        if colour is None:
            return False
        region = rectangle_masks(params["top"], params["left"], params["height_px"], params["width_px"],
                                 params["applied"], tuple(mask.shape[2:]))
        filled = self.blend.fill(canvas.image, region, colour)
        if filled is None:
            return False
        canvas.replace(filled)
        torch.logical_or(mask, region, out=mask)
        return True

    def _paint_pixels(self, canvas: Canvas, mask: torch.Tensor, params: Params) -> torch.Tensor:
        """The general path: rasterise the defect pixels, render the source there, blend; returns the boxes."""
        height, width = mask.shape[2:]
        pixels = rasterize_rotated_rectangles(params["height_px"], params["width_px"], params["angle_deg"],
                                              params["top"], params["left"], params["applied"], (height, width),
                                              self.mask.axis_aligned)
        image = canvas.writable()
        self.blend.paint(image, self.source.render(image, params, pixels), pixels)
        flat_mask = mask.view(-1)
        if pixels.inside is None:
            flat_mask.index_fill_(0, pixels.plane_index, True)
        else:
            flat_mask.put_(pixels.plane_index, flat_mask.take(pixels.plane_index) | pixels.inside)
        return pixels.boxes

    def gate(self, params: Params, keep: torch.Tensor) -> Params:
        return {**params, "applied": params["applied"] & keep}
