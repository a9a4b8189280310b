"""The defect inside each labelled box, as a mask: given, cut by template difference, or estimated.

Fitting measures a defect's area, shape, contrast and surroundings from the pixels that are defective, not from
its label box: a box is the defect plus an annotator's margin (DeepPCB adds 10 px on every side at 640 px), so
box statistics would make every defect look bigger, more square and lower in contrast than it is. Per box, in
this order of trust:

1. ``"mask"``: the set's own mask (MVTec, sets ``defectgen generate`` wrote) inside the box;
2. ``"template"``: where the tested image differs from its aligned defect-free template
   (:func:`defectgen.bank.difference_masks`, the cut :meth:`~defectgen.bank.DefectBank.from_deeppcb` makes);
3. ``"estimated"`` (:func:`estimate_box_mask`): the pixels inside the box that differ from the box's
   surroundings by more than an Otsu threshold (see there);
4. ``"box"``: the whole box, when nothing in it stands out from its surroundings.

Each mask is returned as a :class:`DefectMask`, a tight crop with its offset, so a 640 px image with a dozen
small defects does not hold a dozen full-size masks.
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from ..grey import grey
from .difference import difference_masks

MASK_SOURCES = ("mask", "template", "estimated", "box")
"""Where a defect's mask came from, most trusted first (see the module docstring)."""

#: a pixel must differ from the surroundings' median by at least this many grey levels to count as defective
#: when the box's own contrast split is weaker (JPEG noise on flat surfaces is a few levels)
MIN_DIFFERENCE = 10.0
#: and by this many times the surroundings' own robust spread (MAD * 1.4826), so texture is not a defect
NOISE_FACTOR = 3.0


class DefectMask(NamedTuple):
    """One defect's mask: ``mask`` is ``(h, w)`` bool, tight around the defect, at ``(top, left)`` of its image."""

    top: int
    left: int
    mask: np.ndarray
    source: str

    @property
    def box(self) -> Tuple[int, int, int, int]:
        """``(x1, y1, x2, y2)`` pixel edges of the mask's tight box."""
        return self.left, self.top, self.left + self.mask.shape[1], self.top + self.mask.shape[0]

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def full(self, height: int, width: int) -> np.ndarray:
        """The mask on the whole ``(height, width)`` image."""
        out = np.zeros((height, width), dtype=bool)
        out[self.top:self.top + self.mask.shape[0], self.left:self.left + self.mask.shape[1]] = self.mask
        return out


def grey_array(image: torch.Tensor) -> np.ndarray:
    """``(H, W)`` float32 luma (0..255) of a ``(C, H, W)`` uint8 image, as defectgen defines grey."""
    return grey(image.detach().cpu().float()[None])[0, 0].numpy().astype(np.float32)


def pixel_box(box: Sequence[float], height: int, width: int) -> Optional[Tuple[int, int, int, int]]:
    """``(x1, y1, x2, y2)`` integer pixel edges covering ``box`` (floor / ceil), clipped; None when empty."""
    # a thousandth of a pixel of slack: boxes read from normalised YOLO / COCO numbers land a hair off the edges
    x1, y1 = max(0, int(np.floor(float(box[0]) + 1e-3))), max(0, int(np.floor(float(box[1]) + 1e-3)))
    x2, y2 = min(width, int(np.ceil(float(box[2]) - 1e-3))), min(height, int(np.ceil(float(box[3]) - 1e-3)))
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def tight(mask: np.ndarray, top: int, left: int, source: str) -> Optional[DefectMask]:
    """``mask`` (at ``top, left``) cropped to its pixels; None when it has none."""
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    if len(rows) == 0:
        return None
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return DefectMask(top + int(y0), left + int(x0), np.ascontiguousarray(mask[y0:y1, x0:x1]), source)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of non-negative values on a 0..255 scale (256 bins): the classes are ``<= t`` and ``> t``
    (the middle of the gap when the classes are apart)."""
    levels = np.clip(np.round(values), 0, 255).astype(np.int64)
    hist = np.bincount(levels.ravel(), minlength=256).astype(np.float64)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * np.arange(256))
    total, mean_total = w0[-1], m0[-1]
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean_total / max(total, 1.0) * w0 - m0) ** 2 / (w0 * w1)
    between[(w0 == 0) | (w1 == 0)] = -1.0
    if between.max() <= 0:  # one value only: nothing to split
        return float(levels.max())
    # every level of an empty gap between the classes splits them alike: take the middle of the gap, not its
    # lower end, or noise just above the normal class's largest value would count as defective
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    end = best[0]
    while end + 1 < len(between) and end + 1 in best:
        end += 1
    return float(best[0] + end) / 2


def estimate_box_mask(grey: np.ndarray, box: Sequence[float]) -> DefectMask:
    """Estimate the defect inside a label box from the image alone (no mask, no template).

    A defect is what differs from its surroundings. The reference is the median grey of a band just outside the
    box (``0.25 x`` its shorter side wide, 2..12 px); a pixel of the box is defective when its distance to that
    median is above Otsu's threshold of the distances over box and band together (the band supplies the "normal"
    class even when the defect fills the box) and above both :data:`MIN_DIFFERENCE` grey levels and
    :data:`NOISE_FACTOR` times the band's own robust spread (so the texture of the surface is not taken for a
    defect). Specks under 1 % of the box (at least 2 px) are dropped. When nothing is left (a defect with no
    contrast, a box that fills the image so there are no surroundings), the whole box is the mask (``"box"``).

    Args:
        grey: ``(H, W)`` float grey levels 0..255.
        box: ``x1 y1 x2 y2`` in pixel edges.
    """
    import cv2

    height, width = grey.shape
    edges = pixel_box(box, height, width)
    if edges is None:
        raise ValueError(f"box {list(box)} lies outside the {height}x{width} image")
    x1, y1, x2, y2 = edges
    whole = DefectMask(y1, x1, np.ones((y2 - y1, x2 - x1), dtype=bool), "box")
    band = int(np.clip(round(0.25 * min(x2 - x1, y2 - y1)), 2, 12))
    ox1, oy1, ox2, oy2 = max(0, x1 - band), max(0, y1 - band), min(width, x2 + band), min(height, y2 + band)
    window = grey[oy1:oy2, ox1:ox2]
    inside = np.zeros(window.shape, dtype=bool)
    inside[y1 - oy1:y2 - oy1, x1 - ox1:x2 - ox1] = True
    ring = window[~inside]
    if ring.size < 4:
        return whole
    reference = float(np.median(ring))
    spread = 1.4826 * float(np.median(np.abs(ring - reference)))
    distance = np.abs(window - reference)
    threshold = max(otsu_threshold(distance), MIN_DIFFERENCE, NOISE_FACTOR * spread)
    defective = (distance > threshold) & inside
    crop = np.ascontiguousarray(defective[y1 - oy1:y2 - oy1, x1 - ox1:x2 - ox1]).astype(np.uint8)
    count, parts, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= max(2, int(round(0.01 * crop.size)))
    keep[0] = False
    found = tight(keep[parts], y1, x1, "estimated")
    return whole if found is None else found


def _given_mask(mask: torch.Tensor, edges: Tuple[int, int, int, int]) -> Optional[DefectMask]:
    x1, y1, x2, y2 = edges
    # one pixel of tolerance: a box drawn around a mask's component touches it exactly, a rounded one may not
    height, width = mask.shape[-2:]
    ty1, tx1, ty2, tx2 = max(0, y1 - 1), max(0, x1 - 1), min(height, y2 + 1), min(width, x2 + 1)
    crop = mask[0, ty1:ty2, tx1:tx2].cpu().numpy().astype(bool)
    return tight(crop, ty1, tx1, "mask")


def image_defect_masks(image: torch.Tensor, boxes: torch.Tensor, mask: Optional[torch.Tensor] = None,
                       template: Optional[torch.Tensor] = None) -> List[DefectMask]:
    """One :class:`DefectMask` per box of one image (see the module docstring for the order of sources).

    Args:
        image: ``(C, H, W)`` uint8.
        boxes: ``(n, 4)`` ``x1 y1 x2 y2`` pixel edges.
        mask: the image's ``(1, H, W)`` defect mask, if the set has one.
        template: the image's aligned defect-free ``(C', H, W)`` uint8 template, if the set has one.
    """
    height, width = image.shape[-2:]
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    grey = grey_array(image)
    differences = None
    if template is not None and mask is None and len(boxes):
        if tuple(template.shape[-2:]) != (height, width):
            raise ValueError(f"template is {tuple(template.shape[-2:])} px but its image is {(height, width)} px")
        differences = difference_masks(torch.from_numpy(grey).round().clamp(0, 255).to(torch.uint8),
                                       torch.from_numpy(grey_array(template)).round().clamp(0, 255).to(torch.uint8),
                                       boxes.numpy())
    out: List[DefectMask] = []
    for k, box in enumerate(boxes.tolist()):
        edges = pixel_box(box, height, width)
        if edges is None:
            raise ValueError(f"box {box} lies outside the {height}x{width} image")
        found = None
        if mask is not None:
            found = _given_mask(mask, edges)
        elif differences is not None:
            found = tight(differences[k], 0, 0, "template")
        out.append(found if found is not None else estimate_box_mask(grey, box))
    return out
