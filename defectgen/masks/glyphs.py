"""Shape templates for :class:`~defectgen.masks.shapes.ShapeMask`: digit glyphs and fixed analytic shapes.

Templates are ``(R, R)`` float32 coverage images in [0, 1] whose square spans the shape's local box
``[-1, 1]^2`` (x right, y down). They are rendered once per process with OpenCV / NumPy and warped into
place by ``grid_sample``, whose bilinear interpolation gives anti-aliased edges at any scale.

Digits are drawn by ``cv2.putText`` with ``FONT_HERSHEY_SIMPLEX`` (built into OpenCV, so nothing is read
from disk: the Hershey stroke font up to OpenCV 4, a sans-serif outline font from OpenCV 5 on, so the
glyphs, and the masks a seed gives, differ slightly between the two), large and anti-aliased, cropped to
the ink and centred in the square keeping their own aspect ratio: a "1" stays tall and narrow, and the
shape's box sets the glyph's height. Squares, ellipses and
hearts are rasterised by supersampling their implicit functions.
"""
from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

#: side of every template in texels; shapes larger than this on screen get an edge ramp of a few pixels
TEMPLATE_SIZE = 128
#: order of the fixed templates after the ten digits
FIXED_SHAPES = ("square", "ellipse", "heart")
#: stroke width of the digits as a fraction of the glyph height; OpenCV 4's Hershey strokes need it, OpenCV 5
#: caps the weight of its outline font well below it (a bold face)
DIGIT_STROKE = 0.13
_SUPERSAMPLE = 4


@lru_cache(maxsize=4)
def digit_templates(size: int = TEMPLATE_SIZE) -> np.ndarray:
    """``(10, size, size)`` float32 coverage of the digits 0-9, glyph height = template height."""
    big = size * _SUPERSAMPLE
    scale = cv2.getFontScaleFromHeight(cv2.FONT_HERSHEY_SIMPLEX, big)
    thickness = max(1, int(round(DIGIT_STROKE * big)))
    out = np.zeros((10, size, size), dtype=np.float32)
    for digit in range(10):
        canvas = np.zeros((3 * big, 3 * big), dtype=np.uint8)
        cv2.putText(canvas, str(digit), (big // 2, 2 * big), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness,
                    cv2.LINE_AA)
        rows, cols = np.nonzero(canvas)
        glyph = canvas[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        h, w = glyph.shape
        side = max(h, w)
        square = np.zeros((side, side), dtype=np.uint8)
        top, left = (side - h) // 2, (side - w) // 2
        square[top:top + h, left:left + w] = glyph
        out[digit] = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return _clean(out)


def _supersampled(inside, size: int) -> np.ndarray:
    """Coverage of ``inside(x, y)`` (y down, both in [-1, 1]) on a ``size x size`` grid, 4x4 samples a texel."""
    n = size * _SUPERSAMPLE
    t = (np.arange(n, dtype=np.float64) + 0.5) / n * 2.0 - 1.0
    y, x = np.meshgrid(t, t, indexing="ij")
    fine = inside(x, y).astype(np.float32)
    return fine.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(1, 3))


def _heart(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # the classic sextic heart (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, lobes up; its extent is measured, not
    # assumed, so the curve fills the template's square exactly
    lo_x, hi_x, lo_y, hi_y = _heart_extent()
    hx = lo_x + (x + 1.0) * 0.5 * (hi_x - lo_x)
    hy = hi_y - (y + 1.0) * 0.5 * (hi_y - lo_y)  # image rows grow downwards
    return (hx * hx + hy * hy - 1.0) ** 3 - hx * hx * hy ** 3 <= 0.0


@lru_cache(maxsize=1)
def _heart_extent():
    t = np.linspace(-1.5, 1.5, 3001)
    y, x = np.meshgrid(t, t, indexing="ij")
    inside = (x * x + y * y - 1.0) ** 3 - x * x * y ** 3 <= 0.0
    rows, cols = np.nonzero(inside)
    step = t[1] - t[0]
    return t[cols.min()] - step, t[cols.max()] + step, t[rows.min()] - step, t[rows.max()] + step


@lru_cache(maxsize=4)
def fixed_templates(size: int = TEMPLATE_SIZE) -> np.ndarray:
    """``(13, size, size)`` float32: digits 0-9, then :data:`FIXED_SHAPES` (square, ellipse, heart)."""
    square = np.ones((size, size), dtype=np.float32)
    ellipse = _supersampled(lambda x, y: x * x + y * y <= 1.0, size)
    heart = _supersampled(_heart, size)
    return np.concatenate([digit_templates(size), np.stack([square, ellipse, heart])]).astype(np.float32)


@lru_cache(maxsize=4)
def polar_grid(size: int = TEMPLATE_SIZE):
    """Radius (1 = the square's half side) and angle in [0, 2 pi) of every texel centre, ``(size, size)`` each.

    Computed once with NumPy so every sample's radial shape is evaluated on the very same numbers."""
    t = (np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(t, t, indexing="ij")
    rho = np.sqrt(x * x + y * y)
    phi = np.mod(np.arctan2(y, x), 2.0 * math.pi)
    return rho.astype(np.float32), phi.astype(np.float32)


def _clean(templates: np.ndarray) -> np.ndarray:
    # the area filter leaves faint texels far below a visible grey level; they would only widen the mask
    return np.where(templates >= 1.0 / 255.0, templates, 0.0).astype(np.float32)
