"""Confetti noise (Liznerski et al.: "Explainable Deep One-Class Classification", ICLR 2021): a few rotated
square blobs per image, each with its own colour, Gaussian-smoothed and added to the image.

FCDD's ``confetti`` noise mode (``fcdd/datasets/noise_modes.py`` and ``noise.py`` in its repository) makes,
for a 240 x 240 training image (its MVTec-AD ``raw_shape``; the noise is made before the 224 px crop):

- two layers of square blobs with integer sides uniform in 8..54 px, each blob rotated by a uniform angle
  in [-45, 45] degrees; blob centres are per-pixel Bernoulli draws with densities 1.8e-5 (coloured layer)
  and 1.2e-5 (white layer), redrawn until each layer has at least one blob: 2 or more blobs per image, 3.0
  on average, rarely more than 5;
- coloured blobs get a random RGB colour (uniform 0..255 per channel), white blobs add 255;
- the two layers are summed, Gaussian-blurred (kernel 25, sigma 5 px, on every sample) and *added* to the
  image, clipped to 0..255 (``OnlineSupervisor`` with ``malformed_normal``; it subtracts instead in the rare
  case that adding changes nearly nothing, i.e. an all-white image).

What is kept here: the sizes (as a range scaled to the image, ``reference_size=240``), the rotation, the
per-blob colours with a white share of 0.46 (FCDD's expected 1.39 white of 2.99 blobs), the blur and the
addition (``mode="add"``). What differs: the blob count is uniform in ``count_range`` (default 2..4, FCDD's
minimum and mean, without its rare tail); every coloured blob has its own colour (FCDD shares one colour
among the blobs of a layer with the same side, an artefact of how it batches them); blobs are exact analytic
squares (FCDD rotates pixel squares with nearest-neighbour resampling), and the blur is analytic: a
Gaussian-blurred square is a product of two differences of normal CDFs in the square's own frame, so no
convolution runs. Overlapping blobs are composited in blob order ("over", the last one on top) instead of
summed, which keeps every pixel in range and is deterministic; FCDD's inversion for saturated images is not
reproduced. ``mode="replace"`` paints the colours instead of adding them.

The mask is every pixel where a blob's blurred coverage reaches half a grey level (0.5 / 255), one box per
connected component: the blobs' footprint, as FCDD's ground truth is for a white blob. In ``"add"`` mode a
dark colour, or a pixel already saturated, changes less than the footprint suggests.

Each blob is evaluated in a square window around it (sized for the batch's largest blob and its blur tail),
and the windows are composited into the batch with one gather and one scatter per blob slot, never a loop
over the images.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch

from ..checks import check_number, check_range
from ..rng import integers_below
from ..foreground import sample_foreground_points
from ..registry import register_part
from .base import RegionMask

#: coverage below half a grey level out of 255 changes nothing visible; cutting it keeps the mask tight (and
#: coverage that close to 1 is made 1)
MIN_COVERAGE = 0.5 / 255
#: the blur's tail is cut where the coverage falls below MIN_COVERAGE, 2.9 sigma past a square's side
_TAIL_SIGMAS = 3.0
#: blob counts are capped so the per-blob compositing loop stays short
MAX_BLOBS = 64
MODES = ("add", "replace")
#: the params key of the per-blob colours, drawn by :class:`~defectgen.sources.confetti.ConfettiColour`
COLOUR_KEY = "blob_colour"


@register_part("mask", "confetti")
class ConfettiMask(RegionMask):
    """A few rotated, optionally Gaussian-smoothed square blobs per image (FCDD's confetti noise).

    Defaults are FCDD's at its 240 px training images: sides 8-54 px, rotation +-45 degrees, Gaussian blur
    with sigma 5 px; 2-4 blobs per image (FCDD: 2 or more, 3 on average). The pixel ranges scale with the
    image by ``min(H, W) / reference_size`` (at 256 px the sides are 8.5-57.6 px); ``reference_size=None``
    makes them absolute. Blob centres are uniform over the image (blobs may be cut by its border).

    Args:
        size_px_range: side of each square, uniform, in pixels at ``reference_size``.
        angle_deg_range: rotation of each square, uniform.
        count_range: number of blobs per image, uniform integers (both ends included, at most 64).
        sigma_px: standard deviation of the Gaussian blur in pixels at ``reference_size``; 0 gives hard
            squares (pixel centres inside the square are covered).
        reference_size: image side the pixel values refer to, or None for absolute pixels.

    Sampled params: ``blob_count`` ``(B,)``, ``blob_centre_yx`` ``(B, K, 2)`` (row, column in pixels),
    ``blob_side_px`` and ``blob_angle_deg`` ``(B, K)``, ``blob_sigma_px`` ``(B,)``, with ``K = count_range[1]``;
    blobs ``k >= blob_count`` are unused.
    """

    instances = "components"

    def __init__(self, size_px_range: Tuple[float, float] = (8, 54), angle_deg_range: Tuple[float, float] = (-45, 45),
                 count_range: Tuple[int, int] = (2, 4), sigma_px: float = 5.0, reference_size: Optional[float] = 240):
        self.size_px_range = check_range(size_px_range, "size_px_range", 0.0, low_open=True)
        self.angle_deg_range = check_range(angle_deg_range, "angle_deg_range", -360.0, 360.0)
        lo, hi = check_range(count_range, "count_range", 0, MAX_BLOBS)
        if lo != int(lo) or hi != int(hi) or hi < 1:
            raise ValueError(f"count_range must hold integers with max >= 1, got {tuple(count_range)}")
        self.count_range = (int(lo), int(hi))
        self.sigma_px = check_number(sigma_px, "sigma_px", 0.0)
        self.reference_size = (None if reference_size is None
                               else check_number(reference_size, "reference_size", 0.0, low_open=True))
        #: set by :class:`~defectgen.ops.confetti.Confetti` to hand the composited colours to its source
        self._shared: Optional[SharedBlobs] = None

    def _scale(self, height: int, width: int) -> float:
        return 1.0 if self.reference_size is None else min(height, width) / self.reference_size

    def sample(self, n, height, width, generator) -> Dict[str, torch.Tensor]:
        device = generator.device
        lo, hi = self.count_range
        scale = self._scale(height, width)
        count = integers_below(torch.full((n,), hi - lo + 1, dtype=torch.long, device=device), generator) + lo
        centre = torch.rand(n, hi, 2, generator=generator, device=device) * torch.tensor(
            [float(height), float(width)], device=device)
        s_lo, s_hi = self.size_px_range
        side = (torch.rand(n, hi, generator=generator, device=device) * (s_hi - s_lo) + s_lo) * scale
        a_lo, a_hi = self.angle_deg_range
        angle = torch.rand(n, hi, generator=generator, device=device) * (a_hi - a_lo) + a_lo
        sigma = torch.full((n,), self.sigma_px * scale, device=device)
        return {"blob_count": count, "blob_centre_yx": centre, "blob_side_px": side, "blob_angle_deg": angle,
                "blob_sigma_px": sigma}

    def place(self, params, foreground, generator):
        k = params["blob_side_px"].shape[1]
        return {**params, "blob_centre_yx": sample_foreground_points(foreground, k, generator)}

    def draw(self, params, height, width, device) -> torch.Tensor:
        blobs = blob_coverage(params, height, width, device)
        # linked to its colour source (the Confetti preset), the mask composites the colours in the same
        # pass and leaves them for the source: the compositing's gathers and scatters dominate the cost
        colour = params.get(COLOUR_KEY) if self._shared is not None else None
        alpha, colours = composite_blobs(blobs, params, height, width, device, colour)
        if colours is not None:
            self._shared.put(params, height, width, device, colours)
        return alpha


_KEYS = ("blob_count", "blob_centre_yx", "blob_side_px", "blob_angle_deg", "blob_sigma_px", "blob_colour")


class SharedBlobs:
    """Hands one call's composited colours from :class:`ConfettiMask` to
    :class:`~defectgen.sources.confetti.ConfettiColour`, so the
    preset composites the blobs once instead of twice. The colour source takes them only for the very same
    param tensors (same objects, not modified since) and image size, and the slot is emptied when taken."""

    def __init__(self):
        self._slot = None

    def __getstate__(self):  # a pickled or copied operator keeps the link, never a batch's colours
        return {"_slot": None}

    @staticmethod
    def _key(params, height, width, device):
        return [params[k] for k in _KEYS], [params[k]._version for k in _KEYS], (height, width, str(device))

    def put(self, params, height, width, device, value) -> None:
        self._slot = (self._key(params, height, width, device), value)

    def take(self, params, height, width, device):
        slot, self._slot = self._slot, None
        if slot is None:
            return None
        (tensors, versions, size), value = slot
        now_tensors, now_versions, now_size = self._key(params, height, width, device)
        same = all(a is b for a, b in zip(tensors, now_tensors)) and versions == now_versions and size == now_size
        return value if same else None


def blob_coverage(params, height: int, width: int, device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Every blob's coverage in its own window, blob slot first: ``(coverage (K, B, N), flat index (K, B, N))``
    with the index into a ``(B * H * W)`` plane.

    The window is the smallest square that holds the largest blob of the batch with its blur tail, read from
    the params (one host read per call; the connected-component labelling of the boxes reads back anyway).
    Windows are shifted inside the image, so every index is a real pixel and a blob cut by the border keeps
    its in-image part.
    """
    # slot-major, so the compositing can walk the blobs in order over one flat list
    centre = params["blob_centre_yx"].to(device=device, dtype=torch.float32).transpose(0, 1).contiguous()
    side = params["blob_side_px"].to(device=device, dtype=torch.float32).clamp_min(0.0).t().contiguous()
    sigma = params["blob_sigma_px"].to(device=device, dtype=torch.float32).clamp_min(0.0)
    k, b = side.shape
    if b == 0:
        return torch.zeros(k, 0, 0, device=device), torch.zeros(k, 0, 0, dtype=torch.long, device=device)
    present = (torch.arange(k, device=device).view(k, 1) < params["blob_count"].to(device).view(1, b)).view(k, b, 1, 1)
    reach = side * (math.sqrt(2) / 2) + _TAIL_SIGMAS * sigma
    largest, sharpest, blurriest = torch.stack([reach.amax(), sigma.amin(), sigma.amax()]).tolist()
    n = int(math.ceil(2 * largest)) + 2
    win_h, win_w = min(n, height), min(n, width)
    cy, cx = centre[..., 0], centre[..., 1]
    top = (cy - win_h / 2).floor().long().clamp(0, height - win_h)
    left = (cx - win_w / 2).floor().long().clamp(0, width - win_w)
    rows = torch.arange(win_h, device=device)
    cols = torch.arange(win_w, device=device)
    dy = ((top.unsqueeze(-1) + rows).float() + 0.5 - cy.unsqueeze(-1)).unsqueeze(-1)  # (K, B, h, 1)
    dx = ((left.unsqueeze(-1) + cols).float() + 0.5 - cx.unsqueeze(-1)).unsqueeze(-2)  # (K, B, 1, w)
    # blurred blobs are evaluated in units of sigma * sqrt(2), erf's natural unit: folding the scale into
    # the rotation keeps the per-pixel work to the two coordinates and four erf calls
    blurred = (sigma > 0).view(1, b, 1, 1)
    unit = torch.where(blurred, 1.0 / (sigma * math.sqrt(2)).clamp_min(1e-12).view(1, b, 1, 1), 1.0)
    theta = torch.deg2rad(params["blob_angle_deg"].to(device=device, dtype=torch.float32)).t().reshape(k, b, 1, 1)
    cos, sin = theta.cos() * unit, theta.sin() * unit
    u = cos * dx + sin * dy
    v = cos * dy - sin * dx
    half = side.view(k, b, 1, 1) / 2 * unit
    if blurriest > 0:
        # a square blurred by a Gaussian is the product of the blurred 1D box along each of its own axes:
        # (Phi((h - u) / sigma) - Phi((-h - u) / sigma)) = (erf(h' - u') + erf(h' + u')) / 2 in erf units
        coverage = (torch.erf(half - u) + torch.erf(half + u)) * (present * 0.25) * (torch.erf(half - v)
                                                                                     + torch.erf(half + v))
        if sharpest == 0:
            hard = (u.abs() <= half) & (v.abs() <= half) & present
            coverage = torch.where(blurred, coverage, hard.float())
    else:
        coverage = ((u.abs() <= half) & (v.abs() <= half) & present).float()
    # within half a grey level of none or full is none or full: the mask stays tight, the core exact
    coverage = torch.where(coverage >= MIN_COVERAGE, coverage, 0.0)
    coverage = torch.where(coverage > 1.0 - MIN_COVERAGE, 1.0, coverage)
    corner = torch.arange(b, device=device) * (height * width) + top * width + left
    index = corner.view(k, b, 1, 1) + (rows * width).view(1, 1, win_h, 1) + cols.view(1, 1, 1, win_w)
    return coverage.view(k, b, -1), index.view(k, b, -1)


def composite_blobs(blobs: Tuple[torch.Tensor, torch.Tensor], params, height: int, width: int, device,
                    colour: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The blobs of :func:`blob_coverage` composited in order, each over the ones before it.

    Returns the ``(B, 1, H, W)`` total coverage ``A`` (``A <- a + A (1 - a)`` per blob) and, with ``colour``
    ``(B, K, C)``, the ``(B, C, H, W)`` composite colour ``P / A`` (``P <- a c + P (1 - a)``; 0 where no blob
    is), else None. Only covered pixels change the composite, so they are listed first (one host read for the
    per-slot counts; most of a window is empty). A blob's pixels all lie in its own image, so each blob slot
    is one exact gather and scatter into planes of coverage and colour.
    """
    coverage, index = blobs
    k, b, n = coverage.shape
    channels = 0 if colour is None else colour.shape[-1]
    weights = torch.ones(k * b, 1 + channels, device=device)  # what a blob adds per unit of coverage
    if colour is not None:
        weights[:, 1:] = colour.to(device=device, dtype=torch.float32).transpose(0, 1).reshape(k * b, channels)
    flat = coverage.reshape(-1)
    covered = flat > 0
    where = covered.nonzero().squeeze(1)  # slot by slot, as the compositing order needs
    counts = covered.view(k, b * n).sum(1).tolist()
    a, at = flat.index_select(0, where), index.reshape(-1).index_select(0, where)
    value = weights.index_select(0, where // max(n, 1)).t() * a  # (1 + C, M)
    out = torch.zeros(1 + channels, b * height * width, device=device)
    start = 0
    for i, count in enumerate(counts):
        step = slice(start, start + count)
        start += count
        if i == 0:  # the first blob lands on an empty table
            out.index_copy_(1, at[step], value[:, step])
        else:
            out.index_copy_(1, at[step], value[:, step] + out.index_select(1, at[step]) * (1.0 - a[step]))
    alpha = out[0].view(b, 1, height, width)
    if colour is None:
        return alpha, None
    # P is 0 wherever A is, so the clamp only avoids 0 / 0; dividing into (B, C, H, W) reorders the planes
    colours = torch.empty(b, channels, height, width, device=device)
    torch.div(out[1:].view(channels, b, height, width).transpose(0, 1), alpha.clamp_min(MIN_COVERAGE), out=colours)
    return alpha, colours
