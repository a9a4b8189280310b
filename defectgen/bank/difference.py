"""The defect masks of an aligned pair: where a tested image differs from its defect-free template, per box.

Template-comparison sets (DeepPCB) label each defect with a box only; the defect itself is where the tested image
differs from its template, after re-registering the template locally around the box (the method is described at
:meth:`DefectBank.from_aligned_pairs <defectgen.bank.DefectBank.from_aligned_pairs>`, which cuts these masks).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..checks import check_int, check_number
from ..grey import luma_array
from .pixels import ImageLike, read_pixels


def difference_masks(image: ImageLike, template: ImageLike, boxes: np.ndarray, threshold: float = 128,
                     shift_px: int = 3, open_px: int = 1, close_px: int = 1, min_area_px: int = 12,
                     tolerance_px: int = 1) -> np.ndarray:
    """The defect mask of each box of an aligned pair: ``(n, H, W)`` bool, all False where nothing changed.

    This is what :meth:`DefectBank.from_aligned_pairs` cuts (see it for the method and the arguments); call it
    to look at the masks a bank will learn, or to turn a box-labelled pair into a mask-labelled one.

    Args:
        image, template: the tested image and its aligned template (a file, ``(C, H, W)`` / ``(H, W)`` tensor or
            ``(H, W[, C])`` uint8 array), of the same size.
        boxes: ``(n, 4)`` ``x1 y1 x2 y2`` in pixel edges.
    """
    settings = difference_settings(threshold, shift_px, open_px, close_px, min_area_px, tolerance_px)
    boxes = check_boxes(boxes, "boxes")
    where = str(image) if isinstance(image, (str, Path)) else "image"
    pixels = read_pixels(image, where)
    reference = read_pixels(template, str(template) if isinstance(template, (str, Path)) else "template")
    return aligned_difference_masks(pixels, reference, boxes, where, **settings)


def difference_settings(threshold, shift_px, open_px, close_px, min_area_px, tolerance_px) -> dict:
    return {"threshold": check_number(threshold, "threshold", 0.0, 255.0, low_open=True),
            "shift_px": check_int(shift_px, "shift_px", 0), "open_px": check_int(open_px, "open_px", 0),
            "close_px": check_int(close_px, "close_px", 0), "min_area_px": check_int(min_area_px, "min_area_px", 1),
            "tolerance_px": check_int(tolerance_px, "tolerance_px", 0)}


def check_boxes(boxes, name: str) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4 or not np.isfinite(b).all():
        raise ValueError(f"{name} must be a finite (n, 4) array of x1 y1 x2 y2, got shape {b.shape}")
    return b


#: context around a box on which its template shift is measured: enough trace edges to lock on, local enough to
#: follow the scan's non-rigid drift (DeepPCB's registration is off by 1-3 px in places, differently per region)
REGISTRATION_CONTEXT_PX = 8


def _disc(radius: int) -> np.ndarray:
    import cv2

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def aligned_difference_masks(pixels: np.ndarray, reference: np.ndarray, boxes: np.ndarray, where: str, threshold: float,
                      shift_px: int, open_px: int, close_px: int, min_area_px: int, tolerance_px: int) -> np.ndarray:
    import cv2

    if reference.shape[:2] != pixels.shape[:2]:
        raise ValueError(f"image {where!r} is {pixels.shape[0]}x{pixels.shape[1]} px but its template is "
                         f"{reference.shape[0]}x{reference.shape[1]} px")
    image, template = luma_array(pixels), luma_array(reference)
    height, width = image.shape
    padded = cv2.copyMakeBorder(template, shift_px, shift_px, shift_px, shift_px, cv2.BORDER_REPLICATE)
    # smallest shifts first, and only a strictly better match moves: a featureless spot keeps the given alignment
    shifts = sorted(((dy, dx) for dy in range(-shift_px, shift_px + 1) for dx in range(-shift_px, shift_px + 1)),
                    key=lambda d: (abs(d[0]) + abs(d[1]), d))
    grow = REGISTRATION_CONTEXT_PX + 2 * (open_px + close_px) + tolerance_px
    masks = np.zeros((len(boxes), height, width), dtype=bool)
    for k, box in enumerate(boxes):
        x1, y1 = max(0, int(np.floor(box[0])) - tolerance_px), max(0, int(np.floor(box[1])) - tolerance_px)
        x2, y2 = min(width, int(np.ceil(box[2])) + tolerance_px), min(height, int(np.ceil(box[3])) + tolerance_px)
        if x2 <= x1 or y2 <= y1:
            continue
        wx1, wy1, wx2, wy2 = max(0, x1 - grow), max(0, y1 - grow), min(width, x2 + grow), min(height, y2 + grow)
        window = image[wy1:wy2, wx1:wx2]
        context = np.ones(window.shape, dtype=bool)  # the window outside the box: no defect, only alignment
        context[y1 - wy1:y2 - wy1, x1 - wx1:x2 - wx1] = False
        best, changed = None, None
        for dy, dx in shifts:
            moved = padded[wy1 + shift_px - dy:wy2 + shift_px - dy, wx1 + shift_px - dx:wx2 + shift_px - dx]
            differs = np.abs(window - moved) >= threshold
            score = int(np.count_nonzero(differs & context))
            if best is None or score < best:
                best, changed = score, differs
        changed = changed.astype(np.uint8)
        # opening first: thin slivers left by misregistration must be gone before closing could fuse them on
        if open_px:
            disc = _disc(open_px)
            opened = cv2.morphologyEx(changed, cv2.MORPH_OPEN, disc)
            # a disc rounds a defect's corners off: give back the changed pixels next to what survived
            changed = cv2.dilate(opened, disc) & changed
        if close_px:
            changed = cv2.morphologyEx(changed, cv2.MORPH_CLOSE, _disc(close_px))
        inside = np.ascontiguousarray(changed[y1 - wy1:y2 - wy1, x1 - wx1:x2 - wx1])
        _, parts, stats, _ = cv2.connectedComponentsWithStats(inside, connectivity=8)
        keep = stats[:, cv2.CC_STAT_AREA] >= min_area_px
        keep[0] = False  # the unchanged pixels
        masks[k, y1:y2, x1:x2] = keep[parts]
    return masks


__all__ = ["difference_masks", "aligned_difference_masks", "difference_settings", "check_boxes",
           "REGISTRATION_CONTEXT_PX"]
