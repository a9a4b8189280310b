"""The anomaly-detection report: every metric of image scores and anomaly maps, overall and per defect type
(:func:`evaluate`), as a JSON-serialisable dict; :func:`~detectors.metrics.tables.format_markdown` writes it as a
table.

Scores and anomaly maps follow the usual convention: higher means more anomalous. Labels and masks use 1 (or True,
or any nonzero mask value) for anomalous. The metrics: :mod:`.image` (image AUROC, AP, F1-max), :mod:`.pixel`
(pixel AUROC), :mod:`.region` (PRO curve, AUPRO); what they refuse: :mod:`.checks`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import torch

from .checks import check_both_classes, check_fpr_limit, image_inputs, in_unit_interval, pixel_inputs
from .image import auroc_checked, average_precision_checked, f1_max_checked
from .region import area_to_limit, pro_curve_checked

GOOD = "good"
"""The defect-type name of normal images, as in MVTec AD."""


def _metrics(
    s: torch.Tensor, y: torch.Tensor, m: Optional[torch.Tensor], g: Optional[torch.Tensor], limit: float
) -> dict[str, float]:
    check_both_classes(y, "image metrics", "images")
    out = {"image_auroc": auroc_checked(s, y), "image_ap": average_precision_checked(s, y),
           "image_f1_max": f1_max_checked(s, y)}
    if m is not None and g is not None:
        check_both_classes(g, "pixel metrics", "pixels")
        mf, gf = in_unit_interval(m.flatten()), g.flatten()
        out["pixel_auroc"] = auroc_checked(mf, gf)
        out["pixel_ap"] = average_precision_checked(mf, gf)
        out["aupro"] = area_to_limit(*pro_curve_checked(m, g), limit)
    return out


def _check_defects(defects: Any, y: torch.Tensor) -> list[str]:
    if isinstance(defects, str) or not isinstance(defects, (Sequence, np.ndarray)):
        raise ValueError(f"defects must be a sequence of strings (one per image), got {type(defects).__name__}")
    names = list(np.asarray(defects).ravel()) if isinstance(defects, np.ndarray) else list(defects)
    if len(names) != y.numel():
        raise ValueError(f"defects must have one entry per image: got {len(names)} defects for {y.numel()} images")
    not_str = [i for i, d in enumerate(names) if not isinstance(d, str)]
    if not_str:
        raise ValueError(f"defects must be strings; entries at {not_str[:5]} are {[names[i] for i in not_str[:5]]!r}")
    names = [str(d) for d in names]
    labels = y.tolist()
    bad = [i for i, (d, a) in enumerate(zip(names, labels)) if (d == GOOD) == a]
    if bad:
        shown = ", ".join(f"image {i}: label {int(labels[i])}, defect {names[i]!r}" for i in bad[:5])
        raise ValueError(
            f"labels and defects disagree for {len(bad)} image(s) ({shown}); anomalous images (label 1) need a "
            f"defect type other than {GOOD!r} and normal images (label 0) must be {GOOD!r}"
        )
    return names


def evaluate(
    scores: Any,
    labels: Any,
    maps: Any = None,
    masks: Any = None,
    defects: Optional[Sequence[str]] = None,
    fpr_limit: float = 0.3,
) -> dict:
    """All metrics, overall and per defect type, as a JSON-serialisable dict.

    Returns::

        {"overall": {"image_auroc", "image_ap", "image_f1_max"[, "pixel_auroc", "pixel_ap", "aupro"]},
         "per_defect": {"<type>": {same keys}, ...},      # only with ``defects``; types sorted by name
         "counts": {"good": n, "<type>": n, ...},          # {"good": n, "anomalous": n} without ``defects``
         "fpr_limit": fpr_limit}

    The pixel keys are present when ``maps`` and ``masks`` are given (``pixel_ap`` is the average precision over all
    pixels). The metrics of a defect type are computed on the normal ("good") images plus the images of that type,
    which is how MVTec AD results are usually broken down: each row asks "can the detector tell this defect from
    normal parts".

    Args:
        scores: (N,) image anomaly scores.
        labels: (N,) 0/1 or bool, 1 = anomalous.
        maps: optional (N, 1, H, W) or (N, H, W) anomaly maps.
        masks: optional masks of the same shape; nonzero = defect pixel.
        defects: optional sequence of N defect-type names, ``"good"`` for the normal images.
        fpr_limit: the FPR limit of AUPRO, in (0, 1].

    Raises:
        ValueError: on any invalid input of the metrics, maps without masks (or the reverse), maps with a different
            number of images than scores, defect types that disagree with the labels (label 1 must not be "good",
            label 0 must be), no normal image when per-defect metrics are asked for, or a normal (label 0) image
            whose mask has defect pixels (image and pixel ground truth would contradict each other).
    """
    limit = check_fpr_limit(fpr_limit)
    s, y = image_inputs(scores, labels)
    m = g = None
    if (maps is None) != (masks is None):
        raise ValueError("maps and masks must be given together (got only " + ("maps)" if masks is None else "masks)"))
    if maps is not None:
        m, g = pixel_inputs(maps, masks)
        if m.shape[0] != s.shape[0]:
            raise ValueError(
                f"maps hold {m.shape[0]} images (shape {tuple(m.shape)}) but there are {s.shape[0]} scores"
            )
        dirty = (g.flatten(1).any(1) & ~y).nonzero().flatten().tolist()
        if dirty:
            raise ValueError(f"normal images (label 0) must have empty masks; images {dirty[:5]} have defect pixels")

    # rank once here rather than in every metric of every subset; the ranks keep all orders and ties
    s = in_unit_interval(s)
    if m is not None:
        m = in_unit_interval(m.flatten()).reshape_as(m)

    names = None
    if defects is not None:
        names = _check_defects(defects, y)
        if GOOD not in names:
            raise ValueError("per-defect metrics need normal images, but no image has defect type 'good'")

    report: dict[str, Any] = {"overall": _metrics(s, y, m, g, limit)}
    if names is None:
        report["counts"] = {GOOD: int((~y).sum()), "anomalous": int(y.sum())}
    else:
        n_good = names.count(GOOD)
        types = sorted(set(names) - {GOOD})
        report["per_defect"] = {}
        report["counts"] = {GOOD: n_good}
        good = ~y
        for t in types:
            keep = good | torch.tensor([d == t for d in names], dtype=torch.bool)
            try:
                report["per_defect"][t] = _metrics(
                    s[keep], y[keep], None if m is None else m[keep], None if g is None else g[keep], limit
                )
            except ValueError as e:
                raise ValueError(f"defect type {t!r}: {e}") from e
            report["counts"][t] = names.count(t)
    report["fpr_limit"] = limit
    return report
