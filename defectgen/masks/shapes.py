"""Shape masks: digits, squares, ellipses, hearts, random polygons and smooth blobs, one per image.

CutPaste (Li, Sohn, Yoon, Pfister, CVPR 2021, section 5.3 and the appendix on synthetic anomalies) compares
its rectangles with masks shaped as digits, squares, ellipses and hearts, filled with a random colour or a
natural image. The paper gives no sizes for them, so the defaults here follow its patch sizes instead (see
:class:`ShapeMask`). Random star-shaped polygons and low-order Fourier blobs add irregular outlines.

Every shape is a coverage template in its own local box ``[-1, 1]^2``: fixed ones (the ten digits, square,
ellipse, heart) are rendered once per process (:mod:`defectgen.masks.glyphs`), radial ones (polygons, blobs)
are evaluated per sample on a fixed polar grid. One ``grid_sample`` then warps each sample's template into a
window around its shape (scaled, stretched by the aspect ratio, rotated), with bilinear filtering for
anti-aliased edges, and the windows are written into the whole-image coverage with one scatter.
"""
from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import check_range
from ..rng import integers_below, log_uniform, uniform
from ..foreground import sample_foreground_points
from ..registry import register_part
from .base import RegionMask
from .glyphs import FIXED_SHAPES, TEMPLATE_SIZE, fixed_templates, polar_grid

#: every shape kind, in the order their ids are stored in ``params["shape_kind"]``
KINDS = ("digit", "square", "ellipse", "heart", "polygon", "blob")
#: Fourier harmonics of a blob outline: 1..4 gives lumpy but convex-looking outlines
BLOB_HARMONICS = 4
#: harmonic n has an amplitude up to BLOB_AMPLITUDE / n of the mean radius, so the radius stays above 0.17
BLOB_AMPLITUDE = 0.4
#: polygon vertex radii are uniform in [POLYGON_MIN_RADIUS, 1] before normalising the longest to 1
POLYGON_MIN_RADIUS = 0.35
#: coverage below half a grey level out of 255 changes nothing visible: it is cut so the mask stays tight
MIN_COVERAGE = 0.5 / 255
_ANGLE_SAMPLES = 256


def _check_shapes(shapes: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    if isinstance(shapes, str):
        shapes = (shapes,)
    if not isinstance(shapes, Sequence) or len(shapes) == 0:
        raise TypeError(f"shapes must be a non-empty sequence of shape names from {KINDS}, got {shapes!r}")
    unknown = [s for s in shapes if s not in KINDS]
    if unknown:
        raise ValueError(f"shapes must be names from {KINDS}, got unknown {unknown}")
    return tuple(shapes)


@register_part("mask", "shape")
class ShapeMask(RegionMask):
    """One shape per image: a digit, square, ellipse, heart, random polygon or smooth blob.

    Each sample picks a kind uniformly from ``shapes`` (list a kind twice to draw it twice as often). The
    shape's box has side ``sqrt(area)`` with the area fraction of ``min(H, W)^2`` uniform in
    ``size_frac_range`` squared, like CutPaste's patch areas; ``aspect_ratio_range`` stretches it
    (``width / height``, log-uniform) and ``angle_deg_range`` rotates it (positive = clockwise on screen).
    The centre is uniform such that the rotated box lies inside the image (or at the image centre if it
    cannot). Edges are anti-aliased: fractional coverage on the border, and every pixel with coverage > 0
    is in the mask. Digits keep their glyph's own aspect ratio inside the box (a "1" is narrow), polygons
    and blobs are inscribed in the box's ellipse.

    Defaults: the published shape experiments give no sizes, so ``size_frac_range=(0.15, 0.4)`` is CutPaste's
    patch area of 2-15 % of the image (as side fractions, rounded); the aspect ratio (0.5, 2) and the rotation
    of +-45 degrees (CutPaste-Scar's) are ours, chosen so digits stay legible.

    Args:
        shapes: kinds to draw from, any of ``"digit"``, ``"square"``, ``"ellipse"``, ``"heart"``, ``"polygon"``
            (star-shaped, random radii at evenly spaced angles) and ``"blob"`` (a low-order Fourier outline).
        size_frac_range: side of the shape's box (before the aspect ratio) as a fraction of ``min(H, W)``.
        aspect_ratio_range: ``width / height`` of the box, drawn log-uniformly.
        angle_deg_range: rotation, uniform.
        vertices_range: number of polygon vertices, uniform integers (both ends included).

    Sampled params: ``shape_kind`` ``(B,)`` (index into :data:`KINDS`), ``digit`` ``(B,)``, ``centre_yx``
    ``(B, 2)`` pixel coordinates (row, column; pixel ``i`` spans ``[i, i + 1)``), ``height_px``, ``width_px``,
    ``angle_deg`` ``(B,)``, ``polygon_vertices`` ``(B,)``, ``polygon_radii`` ``(B, V)`` and ``blob_harmonics``
    ``(B, 4, 2)`` (amplitude and phase, both in [0, 1)). Replay params with the mask that drew them: it sizes
    its rendering window from its own ranges.
    """

    instances = "one"

    def __init__(self, shapes: Union[str, Sequence[str]] = KINDS, size_frac_range: Tuple[float, float] = (0.15, 0.4),
                 aspect_ratio_range: Tuple[float, float] = (0.5, 2.0),
                 angle_deg_range: Tuple[float, float] = (-45.0, 45.0), vertices_range: Tuple[int, int] = (3, 8)):
        self.shapes = _check_shapes(shapes)
        self.size_frac_range = check_range(size_frac_range, "size_frac_range", 0.0, 1.0, low_open=True)
        self.aspect_ratio_range = check_range(aspect_ratio_range, "aspect_ratio_range", 0.0, low_open=True)
        self.angle_deg_range = check_range(angle_deg_range, "angle_deg_range", -360.0, 360.0)
        lo, hi = check_range(vertices_range, "vertices_range", 3, 64)
        if lo != int(lo) or hi != int(hi):
            raise ValueError(f"vertices_range must hold integers, got {tuple(vertices_range)}")
        self.vertices_range = (int(lo), int(hi))
        self._cache: Dict[str, Dict[str, torch.Tensor]] = {}

    # -- sampling -------------------------------------------------------------------------------------------
    def sample(self, n, height, width, generator) -> Dict[str, torch.Tensor]:
        device = generator.device
        choice = integers_below(torch.full((n,), len(self.shapes), dtype=torch.long, device=device), generator)
        kind = torch.tensor([KINDS.index(s) for s in self.shapes], dtype=torch.long, device=device)[choice]
        digit = integers_below(torch.full((n,), 10, dtype=torch.long, device=device), generator)
        lo, hi = self.size_frac_range
        side = uniform(n, (lo * lo, hi * hi), generator).sqrt() * min(height, width)
        stretch = log_uniform(n, self.aspect_ratio_range, generator).sqrt()
        box_h, box_w = side / stretch, side * stretch
        angle = uniform(n, self.angle_deg_range, generator)
        half_y, half_x = _half_extent(box_h, box_w, angle)
        u = torch.rand(n, 2, generator=generator, device=device)
        centre = torch.stack([_inside(u[:, 0], half_y, height), _inside(u[:, 1], half_x, width)], dim=1)
        v_lo, v_hi = self.vertices_range
        vertices = integers_below(torch.full((n,), v_hi - v_lo + 1, dtype=torch.long, device=device), generator) + v_lo
        radii = torch.rand(n, v_hi, generator=generator, device=device) * (1 - POLYGON_MIN_RADIUS) + POLYGON_MIN_RADIUS
        harmonics = torch.rand(n, BLOB_HARMONICS, 2, generator=generator, device=device)
        return {"shape_kind": kind, "digit": digit, "centre_yx": centre, "height_px": box_h, "width_px": box_w,
                "angle_deg": angle, "polygon_vertices": vertices, "polygon_radii": radii, "blob_harmonics": harmonics}

    def place(self, params, foreground, generator):
        return {**params, "centre_yx": sample_foreground_points(foreground, 1, generator)[:, 0]}

    # -- drawing --------------------------------------------------------------------------------------------
    def window(self, height: int, width: int) -> Tuple[int, int]:
        """Rows and columns of the window each shape is rendered in: its largest rotated box, plus the
        bilinear edge ramp, cut to the image."""
        side = self.size_frac_range[1] * min(height, width)
        diagonal = side * max(math.sqrt(a + 1.0 / a) for a in self.aspect_ratio_range)
        n = int(math.ceil(diagonal + 2.0 * diagonal / TEMPLATE_SIZE)) + 2
        return min(n, height), min(n, width)

    def draw(self, params, height, width, device) -> torch.Tensor:
        b = params["shape_kind"].shape[0]
        if b == 0:
            return torch.zeros(0, 1, height, width, device=device)
        templates = self.templates(params, device)
        win_h, win_w = self.window(height, width)
        centre = params["centre_yx"].to(device=device, dtype=torch.float32)
        cy, cx = centre[:, 0], centre[:, 1]
        top = (cy - win_h / 2).floor().long().clamp(0, height - win_h)
        left = (cx - win_w / 2).floor().long().clamp(0, width - win_w)
        rows = torch.arange(win_h, device=device)
        cols = torch.arange(win_w, device=device)
        dy = ((top.view(b, 1) + rows).float() + 0.5 - cy.view(b, 1)).view(b, win_h, 1)
        dx = ((left.view(b, 1) + cols).float() + 0.5 - cx.view(b, 1)).view(b, 1, win_w)
        theta = torch.deg2rad(params["angle_deg"].to(device=device, dtype=torch.float32)).view(b, 1, 1)
        cos, sin = theta.cos(), theta.sin()
        half_w = (params["width_px"].to(device=device, dtype=torch.float32) / 2).view(b, 1, 1)
        half_h = (params["height_px"].to(device=device, dtype=torch.float32) / 2).view(b, 1, 1)
        # grid_sample's (x, y): the pixel centre in the shape's own box, whose edges are at -1 and 1
        grid = torch.stack([(cos * dx + sin * dy) / half_w, (cos * dy - sin * dx) / half_h], dim=-1)
        coverage = F.grid_sample(templates, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # bilinear weights need not sum to exactly 1 in float32: snap both ends so the inside is the fill exactly
        coverage = torch.where(coverage >= MIN_COVERAGE, coverage, 0.0)
        coverage = torch.where(coverage > 1.0 - MIN_COVERAGE, 1.0, coverage)
        index = ((top * width + left).view(b, 1, 1) + (rows * width).view(1, win_h, 1) + cols.view(1, 1, win_w))
        out = torch.zeros(b, height * width, device=device)
        out.scatter_(1, index.view(b, -1), coverage.view(b, -1))
        return out.view(b, 1, height, width)

    def templates(self, params, device) -> torch.Tensor:
        """``(B, 1, R, R)`` coverage template of every sample's shape in its local box."""
        cache = self._tables(device)
        kind = params["shape_kind"].to(device)
        b = kind.shape[0]
        fixed = torch.tensor([0] + [10 + FIXED_SHAPES.index(k) for k in KINDS[1:4]] + [0, 0], device=device)
        index = torch.where(kind == KINDS.index("digit"), params["digit"].to(device).clamp(0, 9),
                            fixed[kind.clamp(0, len(KINDS) - 1)])
        out = cache["atlas"][index]
        if "polygon" in self.shapes:
            polygon = polygon_templates(params["polygon_vertices"].to(device), params["polygon_radii"].to(device),
                                        cache["rho"], cache["phi"])
            out = torch.where((kind == KINDS.index("polygon")).view(b, 1, 1), polygon, out)
        if "blob" in self.shapes:
            blob = blob_templates(params["blob_harmonics"].to(device), cache)
            out = torch.where((kind == KINDS.index("blob")).view(b, 1, 1), blob, out)
        return out.unsqueeze(1)

    def _tables(self, device) -> Dict[str, torch.Tensor]:
        key = str(device)
        if key not in self._cache:
            size = TEMPLATE_SIZE
            rho, phi = polar_grid(size)
            n = np.arange(1, BLOB_HARMONICS + 1, dtype=np.float64).reshape(-1, 1, 1)
            at = np.arange(_ANGLE_SAMPLES, dtype=np.float64) * (2 * math.pi / _ANGLE_SAMPLES)
            tables = {"atlas": fixed_templates(size), "rho": rho, "phi": phi,
                      # cos/sin of n * phi, so a blob's outline is sums of products, not a cos per texel
                      "cos_n": np.cos(n * phi.astype(np.float64)), "sin_n": np.sin(n * phi.astype(np.float64)),
                      "cos_at": np.cos(n[:, :, 0] * at), "sin_at": np.sin(n[:, :, 0] * at)}
            self._cache[key] = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)).to(device)
                                for k, v in tables.items()}
        return self._cache[key]

    def __getstate__(self):  # device tables are rebuilt on demand, not pickled into DataLoader workers
        return {**self.__dict__, "_cache": {}}


def _half_extent(box_h: torch.Tensor, box_w: torch.Tensor, angle_deg: torch.Tensor):
    """Half height and half width of the axis-aligned box around a ``box_h x box_w`` box rotated by the angle."""
    theta = torch.deg2rad(angle_deg)
    cos, sin = theta.cos().abs(), theta.sin().abs()
    return (box_h * cos + box_w * sin) / 2, (box_h * sin + box_w * cos) / 2


def _inside(u: torch.Tensor, half: torch.Tensor, size: int) -> torch.Tensor:
    """A centre coordinate uniform in ``[half, size - half]``, or the middle when the shape is larger."""
    span = size - 2 * half
    return torch.where(span >= 0, half + u * span.clamp_min(0), torch.full_like(half, size / 2))


def polygon_templates(vertices: torch.Tensor, radii: torch.Tensor, rho: torch.Tensor,
                      phi: torch.Tensor) -> torch.Tensor:
    """``(B, R, R)`` coverage of star-shaped polygons: vertex ``i`` at angle ``2 pi i / V`` and radius
    ``radii[i]`` (the longest scaled to the template's half side), straight edges between neighbours."""
    b, v_max = radii.shape
    size = rho.shape[-1]
    count = vertices.clamp(3, v_max)
    present = torch.arange(v_max, device=radii.device) < count.view(b, 1)
    r = torch.where(present, radii.clamp_min(1e-3), 0.0)
    # the longest vertex just inside the template, so the anti-aliasing ramp is not cut off
    r = r / r.amax(1, keepdim=True) * (1.0 - 1.0 / size)
    step = (2 * math.pi / count.float()).view(b, 1, 1)
    position = phi.unsqueeze(0) / step
    i = torch.minimum(position.floor().long(), (count - 1).view(b, 1, 1))
    j = torch.where(i + 1 >= count.view(b, 1, 1), 0, i + 1)
    t = (position - i.float()) * step  # angle past vertex i
    ri = r.gather(1, i.view(b, -1)).view(b, size, size)
    rj = r.gather(1, j.view(b, -1)).view(b, size, size)
    # where the ray at angle phi meets the edge from vertex i to vertex j (law of sines)
    edge = ri * rj * step.sin() / (ri * t.sin() + rj * (step - t).sin())
    return ((edge - rho.unsqueeze(0)) * (size / 2) + 0.5).clamp(0.0, 1.0)


def blob_templates(harmonics: torch.Tensor, tables: Dict[str, torch.Tensor]) -> torch.Tensor:
    """``(B, R, R)`` coverage of blobs with radius ``1 + sum_n a_n cos(n phi + psi_n)``, ``n = 1..4``,
    ``a_n = BLOB_AMPLITUDE * u / n`` and ``psi_n = 2 pi u'`` from ``harmonics`` ``(B, 4, 2)``; the largest
    radius is scaled to the template's half side."""
    b = harmonics.shape[0]
    size = tables["rho"].shape[-1]
    order = torch.arange(1, BLOB_HARMONICS + 1, device=harmonics.device, dtype=torch.float32)
    amplitude = harmonics[..., 0].float() * BLOB_AMPLITUDE / order
    phase = harmonics[..., 1].float() * (2 * math.pi)
    # cos(n phi + psi) = cos(psi) cos(n phi) - sin(psi) sin(n phi)
    a, c = amplitude * phase.cos(), -amplitude * phase.sin()
    radius = torch.ones(b, size, size, device=harmonics.device)
    longest = torch.ones(b, tables["cos_at"].shape[-1], device=harmonics.device)
    for n in range(BLOB_HARMONICS):
        an, cn = a[:, n].view(b, 1, 1), c[:, n].view(b, 1, 1)
        radius = radius + an * tables["cos_n"][n] + cn * tables["sin_n"][n]
        longest = longest + an.view(b, 1) * tables["cos_at"][n] + cn.view(b, 1) * tables["sin_at"][n]
    scale = (1.0 - 1.0 / size) / longest.amax(1).view(b, 1, 1)
    return ((radius * scale - tables["rho"]) * (size / 2) + 0.5).clamp(0.0, 1.0)
