"""Region overlap: the per-region-overlap (PRO) curve and its normalised area up to an FPR limit, AUPRO
(Bergmann et al., "The MVTec Anomaly Detection Dataset", IJCV 2021): :func:`pro_curve`, :func:`aupro`.

Averaging per defect region rather than per pixel makes a small scratch count as much as a large stain, which pixel
AUROC does not.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import ndimage

from .checks import check_fpr_limit, pixel_inputs

# 8-connectivity inside each image and none across images: one scipy call labels the whole (N, H, W) stack without
# merging regions that happen to sit at the same place in consecutive images.
_STACK_8_CONNECTIVITY = np.zeros((3, 3, 3), dtype=bool)
_STACK_8_CONNECTIVITY[1] = True


def pro_curve_checked(m: torch.Tensor, g: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The exact PRO curve of validated (N, H, W) float64 maps and bool masks, as float64 numpy arrays."""
    mask = g.numpy()
    regions, n_regions = ndimage.label(mask, structure=_STACK_8_CONNECTIVITY)
    if n_regions == 0:
        raise ValueError(f"AUPRO undefined: the masks (shape {tuple(mask.shape)}) contain no defect region")
    n_normal = mask.size - int(np.count_nonzero(mask))
    if n_normal == 0:
        raise ValueError(f"AUPRO undefined: the masks (shape {tuple(mask.shape)}) contain no normal pixel")

    scores = m.numpy().ravel()
    region = regions.ravel()
    # tie order inside a run does not matter: only the cumulative sums at the end of each run are kept
    order = np.argsort(scores)[::-1]
    scores = scores[order]
    region = region[order]

    # FPR from integer counts, so it is exact and ends at exactly 1.0
    fpr = np.cumsum(region == 0, dtype=np.int64) / n_normal
    # every region weighs 1/#regions however large it is, shared equally among its pixels
    sizes = np.bincount(region, minlength=n_regions + 1).astype(np.float64)
    weight = 1.0 / (sizes * n_regions)
    weight[0] = 0.0
    pro = np.cumsum(weight[region])

    ends = np.append(np.flatnonzero(scores[1:] != scores[:-1]), scores.size - 1)
    fpr = np.concatenate([[0.0], fpr[ends]])
    # a cumulative sum of millions of terms may land a few ulps above 1
    pro = np.clip(np.concatenate([[0.0], pro[ends]]), 0.0, 1.0)
    return fpr, pro


def pro_curve(maps: Any, masks: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact per-region-overlap (PRO) curve: (fpr, pro) at every distinct map value, float64, from (0, 0).

    The masks are split into connected components (8-connectivity, within each image). For a threshold t,

    - FPR(t) is the fraction of all normal pixels (over all images) with map >= t,
    - PRO(t) is the mean over all regions of the fraction of the region's pixels with map >= t.

    Averaging per region rather than per pixel makes a small scratch count as much as a large stain, which pixel AUROC
    does not. The curve has one point per distinct map value (descending thresholds, so fpr is non-decreasing), plus
    the point (0, 0) in front; it ends at (1, 1). It is computed in one sort: each normal pixel adds 1/#normal to FPR,
    each defect pixel adds 1/(|region| x #regions) to PRO, and the cumulative sums are read at the end of each run of
    tied values.

    Raises:
        ValueError: on invalid maps/masks (see :func:`~detectors.metrics.pixel.pixel_auroc`), masks without any
            defect region, or masks without any normal pixel.
    """
    m, g = pixel_inputs(maps, masks)
    fpr, pro = pro_curve_checked(m, g)
    return torch.from_numpy(fpr), torch.from_numpy(pro)


def area_to_limit(fpr: np.ndarray, pro: np.ndarray, limit: float) -> float:
    """Trapezoid area under (fpr, pro) from 0 to ``limit``, divided by ``limit``."""
    k = int(np.searchsorted(fpr, limit, side="right"))  # fpr[:k] <= limit < fpr[k:]
    x = fpr[:k]
    y = pro[:k]
    if k < fpr.size:
        # the curve is linear between its points, so cutting a segment at the limit interpolates linearly;
        # fpr[k] > limit >= fpr[k - 1] keeps the denominator positive
        t = (limit - fpr[k - 1]) / (fpr[k] - fpr[k - 1])
        x = np.append(x, limit)
        y = np.append(y, pro[k - 1] + t * (pro[k] - pro[k - 1]))
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1])) / 2.0)
    return area / limit


def aupro(maps: Any, masks: Any, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` (MVTec AD's AUPRO; anomalib also uses 0.3).

    The area under :func:`pro_curve` is taken with the trapezoid rule from FPR 0 to ``fpr_limit``, the curve being
    interpolated linearly at exactly ``fpr_limit``, and divided by ``fpr_limit`` so that a perfect detector scores 1.0
    (and a constant map ``fpr_limit / 2``). The limit exists because beyond ~30 % false-positive pixels a
    segmentation is useless in practice, and the region overlap there says nothing about the detector.

    Raises:
        ValueError: as :func:`pro_curve`, or if ``fpr_limit`` is not in (0, 1].
    """
    limit = check_fpr_limit(fpr_limit)
    m, g = pixel_inputs(maps, masks)
    fpr, pro = pro_curve_checked(m, g)
    return area_to_limit(fpr, pro, limit)
