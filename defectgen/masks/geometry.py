"""Window geometry shared by the patch-shaped mask samplers.

Every patch defect (rectangle, thin scar, ...) is a rotated rectangle: a canonical axis-aligned size
``(height_px, width_px)`` turned by ``angle_deg`` and placed with the top-left corner of its bounding box at
``(top, left)``. To stay vectorised without a per-sample loop or a host sync, all samples of a batch are
rasterised inside a window of one static size ``(Hb, Wb)`` that the sampler derives from its ranges alone.
Windows are shifted to lie fully inside the image, so every window pixel maps to a distinct image pixel and
scatters never collide.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import torch


def rotated_extent_bound(height_px: float, width_px: float, angle_deg_range: Tuple[float, float]
                         ) -> Tuple[float, float]:
    """Largest bounding-box ``(height, width)`` of an ``height_px x width_px`` rectangle over the angle range.

    ``h|cos a| + w|sin a|`` peaks at ``sqrt(h^2 + w^2)`` where ``tan a = w / h`` (mod 180 deg); between its
    peaks it is unimodal-free, so the maximum over an interval is a peak inside it or one of the ends.
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
    t = torch.deg2rad(angle_deg.float())
    c, s = t.cos().abs(), t.sin().abs()
    h, w = height_px.float(), width_px.float()
    # the small slack keeps float noise (e.g. cos(0) * 10 = 10.000001) from adding a pixel
    bh = torch.ceil(h * c + w * s - 1e-3).long().clamp_min(1)
    bw = torch.ceil(w * c + h * s - 1e-3).long().clamp_min(1)
    return bh, bw


def window_size(extent_bound: Tuple[float, float], image_height: int, image_width: int) -> Tuple[int, int]:
    """Static window size for a batch; ``extent_bound`` comes from the sampler's ranges, not its samples."""
    return (min(image_height, math.ceil(extent_bound[0]) + 1), min(image_width, math.ceil(extent_bound[1]) + 1))


@dataclass(frozen=True)
class PatchWindow:
    """Where a batch of rotated-rectangle defects land, in window coordinates.

    Attributes:
        top, left: ``(B,)`` image coordinates of each window's top-left pixel.
        size: static ``(Hb, Wb)``.
        inside: ``(B, Hb, Wb)`` bool, the defect's pixels (already False for samples left normal).
        qy, qx: ``(B, Hb, Wb)`` offsets of each pixel centre from the shape centre in the shape's own,
            unrotated frame. Sources use them to read a rotated patch; ``|qy| < height/2`` inside.
        flat_index: ``(B, Hb * Wb)`` index of each window pixel in the flattened ``H * W`` image plane.
    """

    top: torch.Tensor
    left: torch.Tensor
    size: Tuple[int, int]
    inside: torch.Tensor
    qy: torch.Tensor
    qx: torch.Tensor
    flat_index: torch.Tensor


def rasterize_rotated_rectangles(height_px: torch.Tensor, width_px: torch.Tensor, angle_deg: torch.Tensor,
                                 top: torch.Tensor, left: torch.Tensor, applied: torch.Tensor,
                                 image_size: Tuple[int, int], window: Tuple[int, int]) -> PatchWindow:
    """Rasterise one rotated rectangle per sample whose bounding box has its top-left at ``(top, left)``.

    A pixel belongs to the shape when its centre falls inside the rectangle (half-open on the far side, so an
    unrotated ``h x w`` rectangle covers exactly ``h x w`` pixels). The pixel under the shape centre is always
    included: a 1-px scar at 45 degrees could otherwise miss every pixel centre and leave a "defect" sample
    with an empty mask.
    """
    H, W = image_size
    hb, wb = window
    device = top.device
    bh, bw = rotated_box_size(height_px, width_px, angle_deg)
    win_top = torch.minimum(top, torch.full_like(top, H - hb))
    win_left = torch.minimum(left, torch.full_like(left, W - wb))
    centre_y = (top - win_top).float() + bh.float() / 2
    centre_x = (left - win_left).float() + bw.float() / 2

    ys = torch.arange(hb, device=device, dtype=torch.float32) + 0.5
    xs = torch.arange(wb, device=device, dtype=torch.float32) + 0.5
    dy = ys.view(1, hb, 1) - centre_y.view(-1, 1, 1)
    dx = xs.view(1, 1, wb) - centre_x.view(-1, 1, 1)
    t = torch.deg2rad(angle_deg.float()).view(-1, 1, 1)
    cos, sin = t.cos(), t.sin()
    # rotate the pixel offsets back into the shape's frame
    qy = cos * dy + sin * dx
    qx = -sin * dy + cos * dx
    half_h = height_px.float().view(-1, 1, 1) / 2
    half_w = width_px.float().view(-1, 1, 1) / 2
    inside = (qy >= -half_h) & (qy < half_h) & (qx >= -half_w) & (qx < half_w)
    centre_pixel = (dy.abs() <= 0.5) & (dx.abs() <= 0.5)
    centre_pixel = centre_pixel & (dy < 0.5) & (dx < 0.5)  # exactly one pixel even on .5 boundaries
    inside = (inside | centre_pixel) & applied.view(-1, 1, 1)

    rows = win_top.view(-1, 1, 1) + torch.arange(hb, device=device).view(1, hb, 1)
    cols = win_left.view(-1, 1, 1) + torch.arange(wb, device=device).view(1, 1, wb)
    flat_index = (rows * W + cols).reshape(len(top), hb * wb)
    return PatchWindow(win_top, win_left, (hb, wb), inside, qy, qx, flat_index)


def window_boxes(window: PatchWindow) -> torch.Tensor:
    """Tight ``(B, 4)`` xyxy pixel-edge boxes of each sample's window mask (garbage where it is empty)."""
    inside = window.inside
    hb, wb = window.size
    rows = inside.any(dim=2)
    cols = inside.any(dim=1)
    y1 = rows.float().argmax(dim=1)
    y2 = hb - rows.flip(1).float().argmax(dim=1)
    x1 = cols.float().argmax(dim=1)
    x2 = wb - cols.flip(1).float().argmax(dim=1)
    top, left = window.top, window.left
    return torch.stack([x1 + left, y1 + top, x2 + left, y2 + top], dim=1).float()
