"""Poisson ("seamless clone") blending: the defect keeps the fill's gradients, the image's values at its edge.

Pérez, Gangnet, Blake: "Poisson Image Editing", SIGGRAPH 2003. Inside the region ``Ω`` the result ``u`` solves
the discrete Poisson equation ``|N_p| u_p - Σ_{q ∈ N_p} u_q = Σ_{q ∈ N_p} v_pq`` (4-neighbourhood ``N_p``), where
``u_q`` is the image's own value for every ``q`` outside ``Ω`` (Dirichlet boundary) and ``v_pq`` is the guidance
field on the edge ``p -> q``: the fill's difference ``fill_p - fill_q`` on edges between two region pixels
("normal" clone), or per edge and channel whichever of the fill's and the image's differences is larger in
magnitude ("mixed" clone, for textures: the image's texture shows through where the fill is flat). Edges that
leave the region use the image's difference: the fill is only defined inside the region. Only region pixels
change, so the region is exactly the blended area.

The solver works per sample on the region's bounding box, in windows gathered and scattered back by index
arithmetic: samples are split into at most four groups of similar box sizes, each solved in one batch with the
window of its largest box (one host sync reads the sizes). The unknown is the correction ``d = u - image``,
which is 0 on the boundary. On a box the Dirichlet Laplacian is diagonalised by the orthonormal DST-I, applied
as two batched matrix products per transform with each sample's own DST matrices embedded in the window, so
samples with different box sizes share one batched solve. A region that fills its box (a rectangle) is solved
exactly by that one transform pair; other shapes (ellipses, masks clipped to a foreground, real defect
outlines) are solved by conjugate gradients on the region's pixels, preconditioned by the box solve, to a
tenth of a grey level (1/2550 for float images), with one host sync per iteration to stop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from ..checks import check_int
from ..registry import register_part
from .base import Blend

MODES = ("normal", "mixed")
# The iteration stops when the preconditioned residual, which estimates the remaining error, is below this
# many grey levels (out of 255) everywhere; uint8 results then round to the exact solution's values almost
# everywhere.
TOLERANCE_GREY_LEVELS = 0.1


@register_part("blend", "poisson")
class Poisson(Blend):
    """Seamless clone: the fill's gradients inside the region, the image's values around it.

    The blended region is the coverage's pixels with coverage >= 0.5, less the image's outermost ring of pixels
    (every region pixel needs its four neighbours); only those pixels change and they are what the operator's
    mask marks. Results are clamped to the value range (0..255 for uint8, 0..1 for float images).

    Args:
        mode: ``"normal"`` (the fill's gradients; the defect keeps its own content, for objects) or ``"mixed"``
            (per pixel, direction and channel the stronger of the fill's and the image's gradients; for
            textures, where a flat part of the fill would otherwise wipe out the texture).
        max_iterations: cap on conjugate-gradient iterations for regions that are not rectangles.
    """

    def __init__(self, mode: str = "normal", max_iterations: int = 500):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.max_iterations = check_int(max_iterations, "max_iterations", 1)

    def blend_region(self, images, fill, coverage, params, max_value):
        region = coverage >= 0.5
        blended = blend_poisson(images, fill, region, self.mode, max_value, self.max_iterations)
        return blended, region & interior(region.shape[2], region.shape[3], region.device)


def interior(height: int, width: int, device: torch.device) -> torch.Tensor:
    """``(1, 1, H, W)`` bool: every pixel but the outermost ring, i.e. the pixels that have four neighbours."""
    inside = torch.zeros(1, 1, height, width, dtype=torch.bool, device=device)
    inside[..., 1:-1, 1:-1] = True
    return inside


def blend_poisson(images: torch.Tensor, fill: torch.Tensor, region: torch.Tensor, mode: str = "normal",
                  max_value: Optional[float] = None, max_iterations: int = 500) -> torch.Tensor:
    """Poisson-blend ``fill`` into ``images`` inside ``region`` (see the module docstring).

    Args:
        images, fill: ``(B, C, H, W)`` float tensors in the same value scale.
        region: ``(B, 1, H, W)`` bool; its pixels on the image's outermost ring are left unchanged.
        mode: ``"normal"`` or ``"mixed"`` clone.
        max_value: clamp the result to ``[0, max_value]`` (None: no clamp).
        max_iterations: cap on conjugate-gradient iterations (regions that are not rectangles).

    Returns a new ``(B, C, H, W)`` tensor, equal to ``images`` outside the region.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    _check_batch(images, fill, region)

    def rhs(window: _Windows) -> torch.Tensor:
        return _guidance_divergence(window.gather(images), window.gather(fill), window.inside, mode)

    return _solve(images, region, rhs, max_value, max_iterations)


def solve_poisson(images: torch.Tensor, laplacian: torch.Tensor, region: torch.Tensor,
                  max_iterations: int = 500) -> torch.Tensor:
    """Solve ``Δu = laplacian`` inside ``region`` with ``u = images`` outside it (Dirichlet boundary).

    ``Δ`` is the 5-point Laplacian ``u[y-1,x] + u[y+1,x] + u[y,x-1] + u[y,x+1] - 4 u[y,x]``. The general
    form of :func:`blend_poisson`, for guidance fields built elsewhere (the divergence of any gradient field).
    ``images`` and ``laplacian`` are ``(B, C, H, W)`` float, ``region`` ``(B, 1, H, W)`` bool (its pixels on the
    image's outermost ring are left unchanged). Returns the new batch; no clamping.
    """
    _check_batch(images, laplacian, region)
    lap_images = torch.zeros_like(images, dtype=laplacian.dtype)
    lap_images[..., 1:-1, 1:-1] = (images[..., :-2, 1:-1] + images[..., 2:, 1:-1] + images[..., 1:-1, :-2]
                                   + images[..., 1:-1, 2:] - 4 * images[..., 1:-1, 1:-1])
    # the correction d = u - images solves -Δd = Δimages - laplacian, with d = 0 outside the region
    target = lap_images - laplacian

    def rhs(window: _Windows) -> torch.Tensor:
        return torch.where(window.inside, window.gather(target), 0.0)

    return _solve(images, region, rhs, None, max_iterations)


def _check_batch(images: torch.Tensor, other: torch.Tensor, region: torch.Tensor) -> None:
    if images.ndim != 4 or not images.dtype.is_floating_point:
        raise ValueError(f"images must be a (B, C, H, W) float tensor, got {tuple(images.shape)} {images.dtype}")
    if other.shape != images.shape:
        raise ValueError(f"expected a {tuple(images.shape)} tensor to match the images, got {tuple(other.shape)}")
    if region.shape != (images.shape[0], 1) + tuple(images.shape[2:]) or region.dtype != torch.bool:
        raise ValueError(f"region must be a (B, 1, H, W) bool tensor matching the images, got "
                         f"{tuple(region.shape)} {region.dtype}")


@dataclass
class _Windows:
    """One ``nh x nw`` window for each sample of a group, inside the image, holding the sample's region box.

    Windows start where the box starts, moved up/left where they would leave the image, so every window pixel
    is a distinct image pixel and scattering back is exact. ``box_y``/``box_x`` are the box's offsets inside its
    window and ``box_h``/``box_w`` its size.
    """

    index: torch.Tensor  # (n,) the group's samples
    rows: torch.Tensor   # (n, nh) image row of each window row
    cols: torch.Tensor   # (n, nw)
    box_y: torch.Tensor  # (n,)
    box_x: torch.Tensor
    box_h: torch.Tensor
    box_w: torch.Tensor
    rectangles: bool     # every region of the group fills its box
    inside: Optional[torch.Tensor] = None  # (n, 1, nh, nw) bool: the region's pixels in the window

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, C, nh, nw)`` windows of a ``(B, C, H, W)`` tensor (any memory layout)."""
        return x[self.index.view(-1, 1, 1), :, self.rows.unsqueeze(2), self.cols.unsqueeze(1)].permute(0, 3, 1, 2)

    def scatter_(self, out: torch.Tensor, windows: torch.Tensor) -> None:
        """Write the windows back into ``out`` in place."""
        out[self.index.view(-1, 1, 1), :, self.rows.unsqueeze(2), self.cols.unsqueeze(1)] = (
            windows.permute(0, 2, 3, 1).to(out.dtype))


# Cost model for grouping samples by window size: elementwise work grows with the window area, the DST
# matrix products with area x (nh + nw); each group also costs a fixed overhead of kernel launches.
_GROUP_OVERHEAD = 5e6
_MAX_GROUPS = 4
_SIZE_STEP = 16


def _windows(region: torch.Tensor) -> List[_Windows]:
    """Windows of each sample's region bounding box, in up to four groups of similar box sizes.

    One padded window for the whole batch would make every sample pay for the largest box (NSA's patches
    range from 6 to 80 % of the side); grouping samples by box size costs a few more kernel launches and
    cuts the work several-fold. Samples with an empty region are left out.
    """
    batch, _, height, width = region.shape
    device = region.device
    rows_any, cols_any = region[:, 0].any(2), region[:, 0].any(1)
    r, c = torch.arange(height, device=device), torch.arange(width, device=device)
    y0 = torch.where(rows_any, r, height).amin(1)
    y1 = torch.where(rows_any, r + 1, 0).amax(1)
    x0 = torch.where(cols_any, c, width).amin(1)
    x1 = torch.where(cols_any, c + 1, 0).amax(1)
    box_h, box_w = (y1 - y0).clamp_min(0), (x1 - x0).clamp_min(0)
    area = region.flatten(1).sum(1)
    # the one host sync: windows need sizes the host knows
    sizes = torch.stack([box_h, box_w, (area == box_h * box_w).long()], dim=1).tolist()
    groups = _group_by_size([(i, h, w, rect) for i, (h, w, rect) in enumerate(sizes) if h > 0])
    windows = []
    for members in groups:
        index = torch.tensor([m[0] for m in members], device=device)
        nh, nw = max(m[1] for m in members), max(m[2] for m in members)
        gy0, gx0 = y0.index_select(0, index), x0.index_select(0, index)
        top, left = gy0.clamp_max(height - nh), gx0.clamp_max(width - nw)
        window = _Windows(index, top.unsqueeze(1) + torch.arange(nh, device=device),
                          left.unsqueeze(1) + torch.arange(nw, device=device), gy0 - top, gx0 - left,
                          box_h.index_select(0, index), box_w.index_select(0, index),
                          all(m[3] for m in members))
        window.inside = window.gather(region)
        windows.append(window)
    return windows


def _group_by_size(members: List[Tuple[int, int, int, int]]) -> List[List[Tuple[int, int, int, int]]]:
    """Split ``(sample, h, w, is_rectangle)`` entries into at most ``_MAX_GROUPS`` groups of consecutive size
    classes (larger side rounded up to ``_SIZE_STEP`` px) minimising the cost model, by dynamic programming
    over the few size classes."""
    if not members:
        return []
    classes: Dict[int, list] = {}
    for m in members:
        classes.setdefault(-(-max(m[1], m[2]) // _SIZE_STEP), []).append(m)
    keys = sorted(classes)
    k = len(keys)
    cost = [[0.0] * (k + 1) for _ in range(k + 1)]  # cost[i][j]: one group of classes keys[i:j]
    for i in range(k):
        count = nh = nw = 0
        for j in range(i + 1, k + 1):
            group = classes[keys[j - 1]]
            count += len(group)
            nh, nw = max(nh, *(m[1] for m in group)), max(nw, *(m[2] for m in group))
            cost[i][j] = count * nh * nw * (nh + nw + 32) + _GROUP_OVERHEAD
    inf = float("inf")
    best = [[inf] * (k + 1) for _ in range(_MAX_GROUPS + 1)]
    cut = [[0] * (k + 1) for _ in range(_MAX_GROUPS + 1)]
    best[0][0] = 0.0
    for g in range(1, _MAX_GROUPS + 1):
        for j in range(1, k + 1):
            for i in range(g - 1, j):
                value = best[g - 1][i] + cost[i][j]
                if value < best[g][j]:
                    best[g][j], cut[g][j] = value, i
    g = min(range(1, _MAX_GROUPS + 1), key=lambda n: best[n][k])
    bounds, j = [], k
    while g > 0:
        i = cut[g][j]
        bounds.append((i, j))
        j, g = i, g - 1
    return [[m for key in keys[i:j] for m in classes[key]] for i, j in reversed(bounds)]


def _solve(images: torch.Tensor, region: torch.Tensor, rhs_of: Callable[[_Windows], torch.Tensor],
           max_value: Optional[float], max_iterations: int) -> torch.Tensor:
    out = images.clone()
    if images.shape[0] == 0:
        return out
    region = region & interior(images.shape[2], images.shape[3], images.device)
    scale = 1.0 if max_value is None else max_value
    for window in _windows(region):
        d = _conjugate_gradients(rhs_of(window), window, TOLERANCE_GREY_LEVELS / 255.0 * scale, max_iterations)
        before = window.gather(images)
        u = before + d
        if max_value is not None:
            u = u.clamp(0.0, max_value)
        window.scatter_(out, torch.where(window.inside, u, before))
    return out


def _guidance_divergence(image: torch.Tensor, fill: torch.Tensor, inside: torch.Tensor, mode: str
                         ) -> torch.Tensor:
    """Right-hand side for the correction ``d``: the divergence of (guidance - image gradient) over the
    edges between two region pixels (on every other edge the guidance is the image's own difference)."""

    def edge_excess(axis: int) -> torch.Tensor:
        n = image.shape[axis]
        grad_image = image.narrow(axis, 1, n - 1) - image.narrow(axis, 0, n - 1)
        guidance = fill.narrow(axis, 1, n - 1) - fill.narrow(axis, 0, n - 1)
        if mode == "mixed":
            guidance = torch.where(guidance.abs() > grad_image.abs(), guidance, grad_image)
        both = inside.narrow(axis, 1, n - 1) & inside.narrow(axis, 0, n - 1)
        return torch.where(both, guidance - grad_image, 0.0)

    ex, ey = edge_excess(3), edge_excess(2)
    # each edge (p, p + 1) pushes p by -e and p + 1 by +e
    return F.pad(ex, (1, 0)) - F.pad(ex, (0, 1)) + F.pad(ey, (0, 0, 1, 0)) - F.pad(ey, (0, 0, 0, 1))


def _dst_basis(size: torch.Tensor, offset: torch.Tensor, n: int, dtype: torch.dtype
               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per sample, the ``size x size`` orthonormal DST-I matrix embedded at ``offset`` in an ``n x n`` zero
    matrix, and the eigenvalues ``2 - 2 cos(pi k / (size + 1))`` of the 1-D Dirichlet Laplacian on the same
    positions (1 elsewhere, where every transformed value is 0)."""
    device = size.device
    k = torch.arange(n, device=device).unsqueeze(0) - offset.unsqueeze(1) + 1  # (B, n), 1-based in the box
    valid = (k >= 1) & (k <= size.unsqueeze(1))
    period = 2 * (size + 1).view(-1, 1, 1)
    # sin(pi jk / (m + 1)) from jk mod 2(m + 1): an exact integer angle keeps float32 accurate at large jk
    phase = (k.unsqueeze(2) * k.unsqueeze(1)).remainder(period)
    norm = torch.sqrt(2.0 / (size + 1).to(torch.float64)).view(-1, 1, 1)
    basis = torch.sin(math.pi * phase.to(torch.float64) / (period / 2)) * norm
    basis = torch.where(valid.unsqueeze(2) & valid.unsqueeze(1), basis, 0.0)
    eigen = 2.0 - 2.0 * torch.cos(math.pi * k.to(torch.float64) / (size + 1).view(-1, 1))
    eigen = torch.where(valid, eigen, 1.0)
    return basis.to(dtype), eigen.to(dtype)


def _conjugate_gradients(rhs: torch.Tensor, window: _Windows, tolerance: float, max_iterations: int
                         ) -> torch.Tensor:
    """Solve ``-Δd = rhs`` on the region's pixels (``d = 0`` elsewhere), batched over samples and channels."""
    n, c, nh, nw = rhs.shape
    basis_h, eig_h = _dst_basis(window.box_h, window.box_y, nh, rhs.dtype)
    basis_w, eig_w = _dst_basis(window.box_w, window.box_x, nw, rhs.dtype)
    # samples x channels as one batch of matrices, so every product is a plain bmm with no broadcast copies
    basis_h = basis_h.repeat_interleave(c, 0)
    basis_w = basis_w.repeat_interleave(c, 0)
    eigen = (eig_h.view(-1, nh, 1) + eig_w.view(-1, 1, nw)).repeat_interleave(c, 0)
    inside = window.inside.expand(n, c, nh, nw).reshape(n * c, nh, nw)
    weight = inside.to(rhs.dtype)

    def box_solve(r: torch.Tensor) -> torch.Tensor:
        # the basis matrices are symmetric and orthonormal: each is its own inverse
        spectrum = torch.bmm(torch.bmm(basis_h, r), basis_w).div_(eigen)
        return torch.bmm(torch.bmm(basis_h, spectrum), basis_w).mul_(weight)

    r = rhs.reshape(n * c, nh, nw) * weight
    if window.rectangles:
        # the region is its box: the box solve is the exact inverse
        return box_solve(r).view(n, c, nh, nw)

    def apply(p: torch.Tensor) -> torch.Tensor:
        ap = p * 4
        ap[:, 1:] -= p[:, :-1]
        ap[:, :-1] -= p[:, 1:]
        ap[:, :, 1:] -= p[:, :, :-1]
        ap[:, :, :-1] -= p[:, :, 1:]
        return ap.mul_(weight)

    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.bmm(a.view(n * c, 1, -1), b.view(n * c, -1, 1))

    def safe_divide(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(b != 0, a / torch.where(b != 0, b, 1.0), 0.0)

    x = torch.zeros_like(r)
    z = box_solve(r)
    p = z
    rz = dot(r, z)
    for _ in range(max_iterations):
        ap = apply(p)
        alpha = safe_divide(rz, dot(p, ap))
        x.add_(alpha * p)
        r.sub_(alpha * ap)
        z = box_solve(r)
        # z estimates the remaining error (in the images' values); one host sync per iteration to stop early
        if not bool((z.abs() > tolerance).any()):
            break
        rz_next = dot(r, z)
        p = z + safe_divide(rz_next, rz) * p
        rz = rz_next
    return x.view(n, c, nh, nw)
