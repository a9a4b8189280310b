"""Where a transplanted real defect lands: a bank entry, flipped, rotated, scaled and placed per sample."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from ..checks import check_range
from ..rng import integers_below, log_uniform, uniform
from ..bank import BankSpec, BankTensors, as_bank
from ..foreground import sample_foreground_points
from ..registry import register_part
from .base import RegionMask

#: bilinear weights below this are float noise of an exact pixel-to-pixel copy, not anti-aliasing
_COVERAGE_EPS = 1e-3


def bank_grid(params: Dict[str, torch.Tensor], bank: BankTensors, height: int, width: int) -> torch.Tensor:
    """``(B, H, W, 2)`` ``grid_sample`` grid reading each destination pixel from its bank entry's atlas tile.

    A destination offset ``d`` from the paste centre maps to the offset ``F R^T d / scale`` from the entry's
    anchor (R: rotation by ``angle_deg``, counter-clockwise as displayed; F: the flips). Coordinates are
    clamped to one pixel around the tile, inside its gutter, so a pixel far from the defect reads the gutter
    (mask 0, the crop's edge colour) and never a neighbouring tile. Built from absolute pixel offsets, so a
    paste at scale 1 without rotation reads tile pixel centres and copies the defect unchanged.
    """
    index = params["bank_index"]
    device = bank.anchors.device
    atlas_h, atlas_w = bank.masks.shape[-2:]
    to_grid = torch.tensor([2.0 / atlas_w, 2.0 / atlas_h], device=device)  # (x, y)
    anchor = bank.anchors[index].flip(1) * to_grid - 1.0                   # (B, 2) as (x, y) in [-1, 1]
    box = bank.tile_boxes[index]
    low = (box[:, :2].flip(1) - 1.0) * to_grid - 1.0
    high = (box[:, 2:].flip(1) + 1.0) * to_grid - 1.0
    angle = torch.deg2rad(params["angle_deg"].float())
    cos, sin = torch.cos(angle), torch.sin(angle)
    inv_scale = 1.0 / params["scale"].float()
    flip = params["flip"]
    fx = torch.where(flip[:, 0], -inv_scale, inv_scale) * to_grid[0]
    fy = torch.where(flip[:, 1], -inv_scale, inv_scale) * to_grid[1]
    centre = params["centre"].float()
    dy = (torch.arange(height, device=device, dtype=torch.float32) + 0.5).view(1, height) - centre[:, :1]
    dx = (torch.arange(width, device=device, dtype=torch.float32) + 0.5).view(1, width) - centre[:, 1:]
    b = index.shape[0]
    grid = torch.empty(b, height, width, 2, device=device)
    # each coordinate is a column term plus a row term: one full-size write per coordinate, then the clamp
    for k, (along_x, along_y) in enumerate(((fx * cos, -fx * sin), (fy * sin, fy * cos))):
        columns = (along_x.view(b, 1) * dx + anchor[:, k:k + 1]).view(b, 1, width)
        rows = (along_y.view(b, 1) * dy).view(b, height, 1)
        torch.add(columns, rows, out=grid[..., k])
        grid[..., k].clamp_(low[:, k].view(b, 1, 1), high[:, k].view(b, 1, 1))
    return grid


def warp_bank(atlas: torch.Tensor, params: Dict[str, torch.Tensor], bank: BankTensors, height: int,
              width: int) -> torch.Tensor:
    """Warp each sample's tile of ``atlas`` (``(1, C, Ha, Wa)`` float32) to a ``(B, C, H, W)`` float32 view."""
    b, c = params["bank_index"].shape[0], atlas.shape[1]
    if b == 0:
        return torch.zeros(0, c, height, width, device=atlas.device)
    # the batch stacked along the rows: one grid_sample over the atlas, no per-sample gather of the tiles
    grid = bank_grid(params, bank, height, width).view(1, b * height, width, 2)
    out = F.grid_sample(atlas, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.view(c, b, height, width).transpose(0, 1)


@register_part("mask", "transplant")
class TransplantMask(RegionMask):
    """The mask of a real defect from a :class:`~defectgen.bank.DefectBank`, randomly flipped, rotated, scaled
    and placed; one defect (one box) per sample.

    Per sample: a bank entry (uniform over entries, or over types then entries with ``balance_types``), a
    horizontal and a vertical flip (each with probability 0.5 when ``flip``), a rotation from
    ``angle_deg_range``, a scale log-uniform in ``scale_range`` and a centre drawn uniformly over the image
    (or, with a foreground, on a foreground pixel). The mask is warped bilinearly, so its edges are soft.

    Args:
        bank: a DefectBank, an MVTec-layout folder, or a dict of ``DefectBank.from_mvtec`` arguments.
        scale_range: size relative to the real defect. With ``scale_with_image`` the real size is taken
            relative to the image: a defect cut from a 256 px image is doubled on 512 px images (the factor
            is ``min(H / source_height, W / source_width)``); otherwise 1 is the bank's own pixel size.
        angle_deg_range: rotation in degrees, counter-clockwise as displayed.
        flip: random horizontal and vertical flips.
        balance_types: pick the defect type uniformly first, so rare types are drawn as often as common ones.
        scale_with_image: see ``scale_range``.

    The paste centre is snapped so that it sits at the same sub-pixel phase as the entry's anchor: at scale 1
    without rotation the defect is copied pixel for pixel.

    Params: ``bank_index`` (B,) int64; ``flip`` (B, 2) bool (horizontal, vertical); ``angle_deg`` (B,);
    ``scale`` (B,), bank pixels to image pixels (the image-size factor included, so a replay does not depend
    on the image size); ``centre`` (B, 2) ``(row, col)`` of the defect's anchor in the image, pixel edges.
    """

    instances = "one"

    def __init__(self, bank: BankSpec, scale_range: Tuple[float, float] = (0.8, 1.25),
                 angle_deg_range: Tuple[float, float] = (-180, 180), flip: bool = True,
                 balance_types: bool = False, scale_with_image: bool = True):
        self.defect_bank = as_bank(bank)
        self.bank = str(bank) if isinstance(bank, Path) else bank
        self.scale_range = check_range(scale_range, "scale_range", 0.0, low_open=True)
        self.angle_deg_range = check_range(angle_deg_range, "angle_deg_range", -360.0, 360.0)
        self.flip = _check_bool(flip, "flip")
        self.balance_types = _check_bool(balance_types, "balance_types")
        self.scale_with_image = _check_bool(scale_with_image, "scale_with_image")
        counts = torch.bincount(self.defect_bank.types)[1:]
        starts = torch.cumsum(counts, 0) - counts
        present = counts > 0
        self._type_starts, self._type_counts = starts[present], counts[present]

    def check_replay(self, params, batch, height, width) -> None:
        index = params["bank_index"]
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= len(self.defect_bank)):
            raise ValueError(f"params['bank_index'] must be in [0, {len(self.defect_bank)}) for this bank, "
                             f"got values in [{int(index.min())}, {int(index.max())}]")
        if bool((params["scale"] <= 0).any()):
            raise ValueError("params['scale'] must be positive")

    def _sample_index(self, n: int, generator: torch.Generator) -> torch.Tensor:
        device = generator.device
        if not self.balance_types:
            return integers_below(torch.full((n,), len(self.defect_bank), dtype=torch.long, device=device), generator)
        kinds = len(self._type_counts)
        kind = integers_below(torch.full((n,), kinds, dtype=torch.long, device=device), generator)
        counts = self._type_counts.to(device)[kind]
        return self._type_starts.to(device)[kind] + integers_below(counts, generator)

    def _snap(self, centre: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Move ``centre`` (``(B, 2)``, inside the image) to the anchor's sub-pixel phase, staying inside."""
        anchors = self.defect_bank.anchors.to(centre.device)[index]
        return torch.floor(centre) + (anchors - torch.floor(anchors))

    def sample(self, n: int, height: int, width: int, generator: torch.Generator) -> Dict[str, torch.Tensor]:
        device = generator.device
        index = self._sample_index(n, generator)
        if self.flip:
            flip = torch.rand(n, 2, generator=generator, device=device) < 0.5
        else:
            flip = torch.zeros(n, 2, dtype=torch.bool, device=device)
        angle = uniform(n, self.angle_deg_range, generator)
        scale = log_uniform(n, self.scale_range, generator)
        if self.scale_with_image:
            source = self.defect_bank.source_sizes.to(device)[index].float()
            scale = scale * torch.minimum(height / source[:, 0], width / source[:, 1])
        u = torch.rand(n, 2, generator=generator, device=device)
        centre = self._snap(u * torch.tensor([height, width], dtype=torch.float32, device=device), index)
        return {"bank_index": index, "flip": flip, "angle_deg": angle, "scale": scale, "centre": centre}

    def place(self, params, foreground, generator):
        point = sample_foreground_points(foreground, 1, generator)[:, 0]
        return {**params, "centre": self._snap(point, params["bank_index"].to(point.device))}

    def draw(self, params, height, width, device):
        bank = self.defect_bank.tensors(None, device)
        coverage = warp_bank(bank.masks, params, bank, height, width)
        coverage = torch.where(coverage < _COVERAGE_EPS, 0.0, coverage)
        return torch.where(coverage > 1.0 - _COVERAGE_EPS, 1.0, coverage)


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value
