"""Cutting one defect out of its image: the crop around the mask, the ring outside it and its mean colour.

The one cutting path of every :class:`~defectgen.bank.DefectBank` builder, and the settings they all take.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..checks import check_int

#: foreground modes a bank can estimate on its source images
ESTIMATED_FOREGROUNDS = ("otsu", "otsu_dark", "otsu_bright")


def check_cut_settings(margin_px: int, ring_px: int, foreground: Optional[str]) -> Tuple[int, int]:
    """The cutting settings every builder takes, checked: ``(margin_px, ring_px)``."""
    margin_px = check_int(margin_px, "margin_px", 0)
    ring_px = check_int(ring_px, "ring_px", 1)
    if foreground is not None and foreground not in ESTIMATED_FOREGROUNDS:
        raise ValueError(f"foreground must be None or one of {ESTIMATED_FOREGROUNDS}, got {foreground!r}")
    if ring_px > margin_px:
        raise ValueError(f"ring_px ({ring_px}) must be <= margin_px ({margin_px}): the ring must lie in the crop")
    return margin_px, ring_px


def cut_defect(pixels: np.ndarray, mask: np.ndarray, margin: int, ring_px: int, allowed: Optional[np.ndarray]):
    """Crop one defect: ``(pixels, mask, ring, anchor, background, source_size)``."""
    import cv2

    height, width = mask.shape
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    cy0, cy1 = max(0, y0 - margin), min(height, y1 + margin)
    cx0, cx1 = max(0, x0 - margin), min(width, x1 + margin)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring_px + 1, 2 * ring_px + 1))
    ring = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~mask
    # the stored ring stays whole: the destination clips it to its own foreground
    measured = ring & allowed if allowed is not None and (ring & allowed).any() else ring
    # a mask that fills its image has no outside: its whole image is the best reference there is
    reference = pixels[measured] if measured.any() else pixels.reshape(-1, pixels.shape[2])
    background = reference.astype(np.float64).mean(0)
    anchor = ((y0 + y1) / 2 - cy0, (x0 + x1) / 2 - cx0)
    # a copy, not a view: a view would keep every whole source image alive until the bank is stacked
    return (pixels[cy0:cy1, cx0:cx1].copy(), mask[cy0:cy1, cx0:cx1].astype(np.uint8),
            ring[cy0:cy1, cx0:cx1].astype(np.uint8), anchor, background, (height, width))


__all__ = ["ESTIMATED_FOREGROUNDS", "check_cut_settings", "cut_defect"]
