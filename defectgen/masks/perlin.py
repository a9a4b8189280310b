"""Thresholded Perlin noise masks (DRAEM, Zavrtanik et al., ICCV 2021; reused by MemSeg and GLASS).

DRAEM draws, per image, 2D Perlin noise with ``2^a x 2^b`` lattice cells (``a, b`` uniform in 0..5,
independently per axis), rotates the noise image by a uniform angle in [-90, 90] degrees and keeps the
pixels where the noise exceeds 0.5. Its noise is the classic gradient noise with the quintic fade
``6t^5 - 15t^4 + 10t^3`` and unit gradients at uniformly random angles, scaled by ``sqrt(2)`` so it spans
[-1, 1]; a threshold of 0.5 keeps sparse blobs, and some masks come out empty (those samples stay normal).

Here the whole batch is one vectorised evaluation on the images' device: every sample gets a
``(G, G)`` grid of gradient angles (``G = 2^max_exp + 1``, drawn from the generator, tiny) and uses the
part its own scale needs. The noise is evaluated on a canvas large enough for the image rotated by any
angle (the lattice repeats with period ``scale + 1`` beyond the image) and rotated bilinearly as DRAEM
rotates its noise image, so rotated masks reach the corners that DRAEM's rotation leaves empty
(``fill_corners=False`` leaves them empty, as DRAEM does).
Unrotated, the noise is DRAEM's ``rand_perlin_2d_np`` value for value (tests compare them).
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from ..checks import check_number, check_range
from ..rng import integers_below, uniform
from ..registry import register_part
from .base import RegionMask

#: the largest lattice the sampler accepts per axis (2^8 cells): finer noise is pixel-level speckle
MAX_SCALE_EXP = 8


@register_part("mask", "perlin")
class PerlinMask(RegionMask):
    """Blobs where 2D Perlin noise, rotated, exceeds ``threshold``; one box per connected blob.

    Args:
        scale_exp_range: ``(lo, hi)`` integers; each axis gets ``2^k`` lattice cells with ``k`` uniform in
            ``lo..hi`` (both ends included), independently per axis. DRAEM: (0, 5), i.e. 1..32 cells.
        threshold: noise level above which a pixel is in the mask. The noise spans [-1, 1] (DRAEM's
            scaling); DRAEM: 0.5. Higher gives fewer, smaller blobs.
        angle_deg_range: rotation of the noise pattern, uniform. DRAEM: (-90, 90).
        fill_corners: True rotates the pattern cut from a larger canvas, so blobs can reach every pixel. False
            rotates the image-sized noise with zeros outside it, as DRAEM's ``iaa.Affine(rotate=...)`` (and
            anomalib's ``RandomAffine(fill=0)``) does: the corners the rotation uncovers get no noise, so no
            blob (the ``draem`` preset).

    Sampled params: ``perlin_scale`` ``(B, 2)`` int64 (lattice cells along rows, columns), ``angle_deg``
    ``(B,)`` and ``gradient_angle`` ``(B, G, G)`` radians, ``G = 2^hi + 1``.
    """

    instances = "components"

    def __init__(self, scale_exp_range: Tuple[int, int] = (0, 5), threshold: float = 0.5,
                 angle_deg_range: Tuple[float, float] = (-90.0, 90.0), fill_corners: bool = True):
        lo, hi = check_range(scale_exp_range, "scale_exp_range", 0, MAX_SCALE_EXP)
        if not isinstance(fill_corners, bool):
            raise TypeError(f"fill_corners must be True or False, got {fill_corners!r}")
        self.fill_corners = fill_corners
        if lo != int(lo) or hi != int(hi):
            raise ValueError(f"scale_exp_range must hold integer exponents (scale = 2^k), got {tuple(scale_exp_range)}")
        self.scale_exp_range = (int(lo), int(hi))
        self.threshold = check_number(threshold, "threshold", -1.0, 1.0)
        self.angle_deg_range = check_range(angle_deg_range, "angle_deg_range", -360.0, 360.0)

    @property
    def lattice_size(self) -> int:
        """Side ``G`` of the per-sample gradient grid: the largest scale plus one lattice line."""
        return 2 ** self.scale_exp_range[1] + 1

    def sample(self, n, height, width, generator) -> Dict[str, torch.Tensor]:
        lo, hi = self.scale_exp_range
        span = torch.full((n, 2), hi - lo + 1, dtype=torch.long, device=generator.device)
        exponent = integers_below(span, generator) + lo
        g = self.lattice_size
        return {
            "perlin_scale": torch.pow(2, exponent),
            "angle_deg": uniform(n, self.angle_deg_range, generator),
            "gradient_angle": torch.rand(n, g, g, generator=generator, device=generator.device) * (2 * math.pi),
        }

    def draw(self, params, height, width, device) -> torch.Tensor:
        noise = perlin_noise(params["perlin_scale"].to(device), params["angle_deg"].to(device),
                             params["gradient_angle"].to(device), height, width,
                             zero_outside=not self.fill_corners)
        return (noise > self.threshold).unsqueeze(1).float()


def _fade(t: torch.Tensor) -> torch.Tensor:
    # Perlin's quintic 6t^5 - 15t^4 + 10t^3 in Horner form
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def perlin_noise(scale: torch.Tensor, angle_deg: torch.Tensor, gradient_angle: torch.Tensor, height: int,
                 width: int, dtype: torch.dtype = torch.float32, zero_outside: bool = False) -> torch.Tensor:
    """``(B, H, W)`` Perlin noise in [-1, 1], one lattice per sample, rotated, for the whole batch at once.

    ``scale`` ``(B, 2)``: lattice cells along rows and columns; unrotated, pixel ``(i, j)`` sits at lattice
    point ``(i * scale_y / H, j * scale_x / W)``. ``gradient_angle`` ``(B, G, G)``: the angle of the unit
    gradient at each lattice point; point ``(r, c)`` uses ``gradient_angle[r mod (scale_y + 1),
    c mod (scale_x + 1)]``, so the first ``scale + 1`` rows and columns are used and the lattice repeats
    beyond them. The gradient's cosine weighs the row offset and its sine the column offset, as in DRAEM's
    ``rand_perlin_2d_np``. The pattern is then rotated by ``angle_deg`` ``(B,)`` about the image centre with
    bilinear interpolation, as DRAEM rotates its noise image, but from a canvas large enough for any angle,
    so no corner is left without noise. ``zero_outside=True`` sets the canvas to 0 outside the image first: the
    image-sized noise rotated with zeros around it (bilinear at its edge), as DRAEM's rotation leaves it.

    How: unrotated, the noise is separable into sums of (row weight) x (lattice value) x (column weight):
    with fade weights ``a_d(i)`` (rows) and ``b_e(j)`` (columns) of the corners ``d, e`` in {0, 1} of the
    pixel's cell, ``noise / sqrt(2) = sum_{d,e} a_d (fu - d) b_e cos(angle) + a_d b_e (fv - e) sin(angle)``,
    which is ``Lr @ cos @ M.T + L @ sin @ Mc.T`` with ``(H, G)`` and ``(W, G)`` interpolation matrices that
    have two non-zeros per row. Two small batched matrix products give the whole canvas; one
    ``grid_sample`` rotates it.
    """
    b, g = gradient_angle.shape[0], gradient_angle.shape[-1]
    device = gradient_angle.device
    scale = scale.to(device=device).clamp(1, g - 1)
    period = scale + 1
    # a margin so that the image, rotated by any angle about its centre, stays inside the canvas
    half_diagonal = math.hypot(height, width) / 2
    margin_y = int(math.ceil(half_diagonal - height / 2)) + 1
    margin_x = int(math.ceil(half_diagonal - width / 2)) + 1
    canvas_h, canvas_w = height + 2 * margin_y, width + 2 * margin_x
    rows = _lattice_weights(canvas_h, margin_y, height, scale[:, 0], period[:, 0], g, dtype)
    cols = _lattice_weights(canvas_w, margin_x, width, scale[:, 1], period[:, 1], g, dtype)
    # [[0, cos], [sin, 0]] @ [ramp | plain].T stacks cos @ plain.T over sin @ ramp.T: the right factors of both
    # terms, so one product with [ramp | plain] of the rows sums them
    angles = gradient_angle.to(dtype)
    lattice = torch.zeros(b, 2 * g, 2 * g, device=device, dtype=dtype)
    lattice[:, :g, g:] = angles.cos() * math.sqrt(2.0)
    lattice[:, g:, :g] = angles.sin() * math.sqrt(2.0)
    canvas = torch.bmm(rows, torch.bmm(lattice, cols.transpose(1, 2)))  # (B, canvas_h, canvas_w)
    if zero_outside:
        inside = torch.zeros(canvas_h, canvas_w, dtype=torch.bool, device=device)
        inside[margin_y:margin_y + height, margin_x:margin_x + width] = True
        canvas = canvas * inside

    theta = torch.deg2rad(angle_deg.to(device=device, dtype=dtype))
    cos, sin = theta.cos(), theta.sin()
    # output pixel p samples the canvas at R (p - c) + c + margin; in align_corners=True normalised
    # coordinates the image centre is the canvas centre (0, 0), so the map is linear
    kx, ky = (width - 1) / (canvas_w - 1), (height - 1) / (canvas_h - 1)
    jx, iy = (width - 1) / (canvas_h - 1), (height - 1) / (canvas_w - 1)
    xo = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype) if width > 1 else cos.new_full((1,), -1.0)
    yo = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype) if height > 1 else cos.new_full((1,), -1.0)
    grid = torch.empty(b, height, width, 2, device=device, dtype=dtype)
    # affine_grid would do this with a (B, H*W, 3) x (3, 2) product; two broadcast adds are cheaper
    torch.add((cos * kx).view(b, 1, 1) * xo.view(1, 1, width),
              (sin * iy).view(b, 1, 1) * yo.view(1, height, 1), out=grid[..., 0])
    torch.add((-sin * jx).view(b, 1, 1) * xo.view(1, 1, width), (cos * ky).view(b, 1, 1) * yo.view(1, height, 1),
              out=grid[..., 1])
    return F.grid_sample(canvas.unsqueeze(1), grid, mode="bilinear", padding_mode="border",
                         align_corners=True).squeeze(1)


def _lattice_weights(length: int, margin: int, image_length: int, cells: torch.Tensor, period: torch.Tensor, g: int,
                     dtype: torch.dtype) -> torch.Tensor:
    """``(B, length, 2G)`` interpolation matrices along one axis of the canvas, side by side: fade weights times
    the offset from each corner (``ramp``), then fade weights alone (``plain``). Canvas pixel ``k`` is image
    pixel ``k - margin``, at lattice coordinate ``(k - margin) * cells / image_length``, wrapped with ``period``."""
    b = cells.shape[0]
    device = cells.device
    pos = (torch.arange(length, device=device, dtype=dtype) - margin).view(1, length)
    pos = pos * (cells.to(dtype) / image_length).view(b, 1)
    cell = pos.floor()
    frac = pos - cell
    fade = _fade(frac)
    period = period.view(b, 1)
    near = torch.remainder(cell.long(), period)
    far = torch.remainder(cell.long() + 1, period)
    index = torch.stack([near, far, near + g, far + g], dim=2)
    weight = torch.stack([(1 - fade) * frac, fade * (frac - 1), 1 - fade, fade], dim=2)
    return torch.zeros(b, length, 2 * g, device=device, dtype=dtype).scatter_add_(2, index, weight)


#: how PerlinPairMask joins its two masks, as stored in ``perlin_combine``
COMBINE_MODES = ("first", "intersection", "union")


@register_part("mask", "perlin_pair")
class PerlinPairMask(PerlinMask):
    """Two independent thresholded Perlin masks joined per sample: the first alone, their intersection or their
    union; redrawn while the result is empty (GLASS, Chen et al., ECCV 2024).

    GLASS's ``perlin_mask`` (github.com/cqylunlun/GLASS, ``perlin.py``) draws two masks as DRAEM does (scale
    ``2^k`` per axis, ``k`` uniform in 0..5, noise above 0.5, rotation in [-90, 90] degrees), then with one
    uniform draw ``u`` keeps their union (``u > 2/3``), their intersection (``1/3 < u <= 2/3``) or the first
    (otherwise), multiplies by the image's foreground mask and starts over, both masks included, while the
    result is empty. Here every sample draws ``attempts`` such tries up front; the noise of a try is computed
    only for the samples whose earlier tries all came out empty, so the cost stays near one try per sample.
    A sample whose tries are all empty keeps the last (empty) one and is left normal, where GLASS would loop
    on (forever, for an empty foreground). The tries are judged inside the operator's foreground when it has
    one (``RegionDefect`` passes it to ``draw`` in ``params["foreground"]``), as GLASS judges them after its
    foreground product.

    Args:
        scale_exp_range, threshold, angle_deg_range, fill_corners: as :class:`PerlinMask`, for both masks.
        union_prob: probability of keeping the union of the two masks (GLASS: 1/3).
        intersection_prob: probability of keeping their intersection (GLASS: 1/3); the first mask alone is kept
            with probability ``1 - union_prob - intersection_prob``.
        attempts: tries drawn per sample. At the defaults a try comes out empty 8-10 % of the time (mostly
            intersections), so without a foreground eight tries leave fewer than one sample in 10^7 normal.

    Sampled params: ``perlin_scale`` ``(B, A, 2, 2)`` int64 (try, mask, axis), ``angle_deg`` ``(B, A, 2)``,
    ``gradient_angle`` ``(B, A, 2, G, G)`` and ``perlin_combine`` ``(B, A)`` int64, an index into
    :data:`COMBINE_MODES`, with ``A = attempts``.
    """

    def __init__(self, scale_exp_range: Tuple[int, int] = (0, 5), threshold: float = 0.5,
                 angle_deg_range: Tuple[float, float] = (-90.0, 90.0), union_prob: float = 1 / 3,
                 intersection_prob: float = 1 / 3, attempts: int = 8, fill_corners: bool = True):
        super().__init__(scale_exp_range, threshold, angle_deg_range, fill_corners=fill_corners)
        self.union_prob = check_number(union_prob, "union_prob", 0.0, 1.0)
        self.intersection_prob = check_number(intersection_prob, "intersection_prob", 0.0, 1.0)
        if self.union_prob + self.intersection_prob > 1.0 + 1e-9:
            raise ValueError(f"union_prob + intersection_prob must be <= 1, got {union_prob} + {intersection_prob}")
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts must be an int >= 1, got {attempts!r}")
        self.attempts = attempts

    def sample(self, n, height, width, generator) -> Dict[str, torch.Tensor]:
        lo, hi = self.scale_exp_range
        a, g, device = self.attempts, self.lattice_size, generator.device
        span = torch.full((n, a, 2, 2), hi - lo + 1, dtype=torch.long, device=device)
        exponent = integers_below(span, generator) + lo
        angle_lo, angle_hi = self.angle_deg_range
        u = torch.rand(n, a, generator=generator, device=device)
        # GLASS's rule on one uniform draw: the top union_prob is the union, the next intersection_prob the
        # intersection, the rest the first mask alone
        combine = torch.where(u >= 1.0 - self.union_prob, 2, torch.where(
            u >= 1.0 - self.union_prob - self.intersection_prob, 1, 0))
        return {
            "perlin_scale": torch.pow(2, exponent),
            "angle_deg": torch.rand(n, a, 2, generator=generator, device=device) * (angle_hi - angle_lo) + angle_lo,
            "gradient_angle": torch.rand(n, a, 2, g, g, generator=generator, device=device) * (2 * math.pi),
            "perlin_combine": combine.long(),
        }

    def draw(self, params, height, width, device) -> torch.Tensor:
        scale = params["perlin_scale"].to(device)
        angle = params["angle_deg"].to(device)
        gradient = params["gradient_angle"].to(device)
        combine = params["perlin_combine"].to(device)
        foreground = params.get("foreground")
        b, a = combine.shape
        g = gradient.shape[-1]
        mask = torch.zeros(b, height, width, dtype=torch.bool, device=device)
        pending = torch.arange(b, device=device)
        for k in range(a):
            if pending.numel() == 0:
                break
            m = pending.numel()
            noise = perlin_noise(scale[pending, k].reshape(2 * m, 2), angle[pending, k].reshape(2 * m),
                                 gradient[pending, k].reshape(2 * m, g, g), height, width,
                                 zero_outside=not self.fill_corners)
            pair = (noise > self.threshold).view(m, 2, height, width)
            mode = combine[pending, k].view(m, 1, 1)
            joined = torch.where(mode == 2, pair[:, 0] | pair[:, 1],
                                 torch.where(mode == 1, pair[:, 0] & pair[:, 1], pair[:, 0]))
            if foreground is not None:
                joined &= foreground.to(device)[pending, 0]
            mask[pending] = joined
            pending = pending[~joined.flatten(1).any(1)]
        return mask.unsqueeze(1).float()
