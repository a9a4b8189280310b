"""Pixel-level AUROC: every pixel of every anomaly map pooled into one ranking (:func:`pixel_auroc`).

Maps follow the usual convention: higher means more anomalous; masks use any nonzero value for a defect pixel.
"""
from __future__ import annotations

from typing import Any

from .checks import check_both_classes, pixel_inputs
from .image import auroc_checked


def pixel_auroc(maps: Any, masks: Any) -> float:
    """AUROC over every pixel of every image, pooled into one ranking (not averaged per image).

    Pooling is the standard definition (MVTec AD) and also checks that map values are comparable across images, which
    a per-image average would not. Large defects dominate it, which is what
    :func:`~detectors.metrics.region.aupro` corrects.

    Args:
        maps: (N, 1, H, W) or (N, H, W) anomaly maps, higher = more anomalous.
        masks: the same shape, bool or 0/1; nonzero = defect pixel.

    Raises:
        ValueError: on mismatched shapes, non-binary masks, NaN/inf maps, empty input, or masks with no defect pixel
            (or no normal pixel).
    """
    m, g = pixel_inputs(maps, masks)
    check_both_classes(g, "pixel AUROC", "pixels")
    return auroc_checked(m.flatten(), g.flatten())
