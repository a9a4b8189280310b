"""Pixel geometry shared by the patch-shaped mask samplers.

Every patch defect (rectangle, thin scar, ...) is a rotated rectangle: a canonical axis-aligned size
``(height_px, width_px)`` turned by ``angle_deg`` and placed with the top-left corner of its bounding box at
``(top, left)``. A batch of them is rasterised as one *ragged pixel list*: every pixel of every defective
sample's bounding box, tagged with its sample index. Work then scales with the defects' area (2-15 % of the
image for CutPaste) instead of a padded worst-case window, and there is still no loop over the batch. Sizing
the list needs one host sync (reading its row and pixel counts), the same kind that selecting the boxes of the
defective samples needs anyway.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch

from ..patch_pixels import PatchPixels


def rotated_extent_bound(height_px: float, width_px: float, angle_deg_range: Tuple[float, float]
                         ) -> Tuple[float, float]:
    """Largest bounding-box ``(height, width)`` of an ``height_px x width_px`` rectangle over the angle range.

    ``h|cos a| + w|sin a|`` peaks at ``sqrt(h^2 + w^2)`` where ``tan a = w / h`` (mod 180 deg) and has no other
    local maximum, so the maximum over an interval is a peak inside it or one of its ends.
    """
    lo, hi = (math.radians(a) for a in angle_deg_range)

    def best(a: float, b: float) -> float:
        f = lambda t: a * abs(math.cos(t)) + b * abs(math.sin(t))  # noqa: E731
        value = max(f(lo), f(hi))
        peak = math.atan2(b, a)
        for k in range(-2, 3):
            for t in (peak + k * math.pi, -peak + k * math.pi):
                if lo <= t <= hi:
                    value = max(value, math.hypot(a, b))
        return value

    return best(height_px, width_px), best(width_px, height_px)


def rotated_box_size(height_px: torch.Tensor, width_px: torch.Tensor, angle_deg: torch.Tensor
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-sample integer bounding-box size of the rotated rectangles."""
    c, s = (v.abs() for v in _cos_sin(angle_deg))
    h, w = height_px.float(), width_px.float()
    # the small slack keeps float noise (e.g. cos(0) * 10 = 10.000001) from adding a pixel
    bh = torch.ceil(h * c + w * s - 1e-3).long().clamp_min(1)
    bw = torch.ceil(w * c + h * s - 1e-3).long().clamp_min(1)
    return bh, bw


def rasterize_rotated_rectangles(height_px: torch.Tensor, width_px: torch.Tensor, angle_deg: torch.Tensor,
                                 top: torch.Tensor, left: torch.Tensor, applied: torch.Tensor,
                                 image_size: Tuple[int, int], axis_aligned: bool = False) -> PatchPixels:
    """Rasterise one rotated rectangle per defective sample whose bounding box starts at ``(top, left)``.

    A pixel belongs to the shape when its centre falls inside the rectangle (half-open on the far side, so an
    unrotated ``h x w`` rectangle covers exactly ``h x w`` pixels). The pixel under the shape centre is always
    included: a 1-px scar at 45 degrees could otherwise miss every pixel centre and leave a "defect" sample
    with an empty mask. ``axis_aligned=True`` promises every angle is 0 and skips the rotation maths.
    """
    height, width = image_size
    device = top.device
    batch = top.shape[0]
    if axis_aligned:
        box_h, box_w = height_px, width_px
    else:
        box_h, box_w = rotated_box_size(height_px, width_px, angle_deg)
    rows = box_h * applied.long()
    area = rows * box_w
    # the one host sync: the sizes of the ragged row and pixel lists
    n_rows, count = (int(v) for v in torch.stack([rows.sum(), area.sum()]).tolist())
    samples = torch.arange(batch, device=device)
    start = _offsets(area)

    row_sample = torch.repeat_interleave(samples, rows, output_size=n_rows)
    row_i = torch.arange(n_rows, device=device) - _offsets(rows)[:-1].index_select(0, row_sample)
    row_length = box_w.index_select(0, row_sample)
    row_first = _offsets(row_length)[:-1]  # list position of each row's first pixel
    corner = (samples * height + top) * width + left
    row_offset = corner.index_select(0, row_sample) + row_i * width - row_first

    positions = torch.arange(count, device=device)
    sample = torch.repeat_interleave(row_sample, row_length, output_size=count)
    plane_index = torch.repeat_interleave(row_offset, row_length, output_size=count) + positions
    common = dict(batch=batch, count=count, image_size=image_size, start=start, sample=sample,
                  plane_index=plane_index, row_sample=row_sample, row_offset=row_offset, row_length=row_length,
                  positions=positions)
    if axis_aligned:
        return PatchPixels(inside=None, qy=None, qx=None, boxes=rectangle_boxes(top, left, height_px, width_px),
                           **common)

    i = torch.repeat_interleave(row_i, row_length, output_size=count)
    j = positions - torch.repeat_interleave(row_first, row_length, output_size=count)
    # offsets from the shape centre, rotated back into the shape's frame
    per_sample = torch.stack([box_h.float() / 2, box_w.float() / 2, height_px.float() / 2, width_px.float() / 2,
                              *_cos_sin(angle_deg)], dim=1).index_select(0, sample)
    centre_y, centre_x, half_h, half_w, cos, sin = per_sample.unbind(1)
    dy = i.float() + 0.5 - centre_y
    dx = j.float() + 0.5 - centre_x
    qy = cos * dy + sin * dx
    qx = cos * dx - sin * dy
    inside = (qy >= -half_h) & (qy < half_h) & (qx >= -half_w) & (qx < half_w)
    inside |= (dy >= -0.5) & (dy < 0.5) & (dx >= -0.5) & (dx < 0.5)  # the centre pixel
    boxes = _tight_boxes(sample, i + top.index_select(0, sample), j + left.index_select(0, sample), inside, batch,
                         image_size)
    return PatchPixels(inside=inside, qy=qy, qx=qx, boxes=boxes, **common)


def rectangle_boxes(top: torch.Tensor, left: torch.Tensor, height_px: torch.Tensor, width_px: torch.Tensor
                    ) -> torch.Tensor:
    """``(B, 4)`` xyxy pixel-edge boxes of unrotated rectangles: exact, no pixels needed."""
    return torch.stack([left, top, left + width_px, top + height_px], dim=1).float()


def rectangle_masks(top: torch.Tensor, left: torch.Tensor, height_px: torch.Tensor, width_px: torch.Tensor,
                    applied: torch.Tensor, image_size: Tuple[int, int]) -> torch.Tensor:
    """``(B, 1, H, W)`` masks of unrotated rectangles, as the outer product of row and column intervals."""
    height, width = image_size
    rows = torch.arange(height, device=top.device)
    cols = torch.arange(width, device=top.device)
    in_rows = (rows >= top.unsqueeze(1)) & (rows < (top + height_px).unsqueeze(1)) & applied.unsqueeze(1)
    in_cols = (cols >= left.unsqueeze(1)) & (cols < (left + width_px).unsqueeze(1))
    # a uint8 product vectorises about 10x better on CPU than a broadcast bool `&`; 0/1 bytes are valid bools
    outer = in_rows.to(torch.uint8)[:, None, :, None] * in_cols.to(torch.uint8)[:, None, None, :]
    return outer.view(torch.bool)


def _offsets(counts: torch.Tensor) -> torch.Tensor:
    """``(n + 1,)`` start offsets of consecutive runs of the given lengths: an exclusive cumsum plus the total."""
    offsets = torch.zeros(len(counts) + 1, dtype=counts.dtype, device=counts.device)
    torch.cumsum(counts, 0, out=offsets[1:])
    return offsets


def _cos_sin(angle_deg: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    t = torch.deg2rad(angle_deg.float())
    return t.cos(), t.sin()


def _tight_boxes(sample: torch.Tensor, row: torch.Tensor, col: torch.Tensor, inside: torch.Tensor, batch: int,
                 image_size: Tuple[int, int]) -> torch.Tensor:
    height, width = image_size
    edges = []
    for coord, extent in ((col, width), (row, height)):
        low = torch.full((batch,), extent, dtype=torch.long, device=coord.device)
        high = torch.zeros(batch, dtype=torch.long, device=coord.device)
        edges.append(low.scatter_reduce(0, sample, torch.where(inside, coord, extent), "amin"))
        edges.append(high.scatter_reduce(0, sample, torch.where(inside, coord + 1, 0), "amax"))
    x1, x2, y1, y2 = edges
    return torch.stack([x1, y1, x2, y2], dim=1).float()
