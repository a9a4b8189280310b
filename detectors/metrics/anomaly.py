"""Anomaly-detection metrics: image-level, pixel-level and region-level (AUPRO), with a report and a Markdown table.

Every metric here is exact (no threshold binning), computed on the CPU in float64 where we do the arithmetic ourselves,
and refuses input on which it would be meaningless: mismatched shapes, non-binary ground truth, NaN/inf scores, empty
input, or a single class (AUROC with no anomalous image is not 0.5, it is undefined). A silently wrong number in a
benchmark table is worse than an exception.

Scores and anomaly maps follow the usual convention: higher means more anomalous. Labels and masks use 1 (or True,
or any nonzero mask value) for anomalous.

Public API:

- :func:`image_auroc`, :func:`average_precision`, :func:`f1_max` — image-level, from one score per image.
- :func:`pixel_auroc` — AUROC over every pixel of every image pooled together.
- :func:`pro_curve`, :func:`aupro` — the per-region-overlap curve and its normalised area up to an FPR limit
  (Bergmann et al., "The MVTec Anomaly Detection Dataset", IJCV 2021).
- :func:`evaluate` — all of the above, overall and per defect type, as a JSON-serialisable dict.
- :func:`format_markdown` — that dict as a Markdown table.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import torch
from scipy import ndimage
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_precision_recall_curve,
)

__all__ = [
    "image_auroc",
    "average_precision",
    "f1_max",
    "pixel_auroc",
    "pro_curve",
    "aupro",
    "evaluate",
    "format_markdown",
]

GOOD = "good"
"""The defect-type name of normal images, as in MVTec AD."""

# 8-connectivity inside each image and none across images: one scipy call labels the whole (N, H, W) stack without
# merging regions that happen to sit at the same place in consecutive images.
_STACK_8_CONNECTIVITY = np.zeros((3, 3, 3), dtype=bool)
_STACK_8_CONNECTIVITY[1] = True

_METRIC_LABELS = {
    "image_auroc": "image AUROC",
    "image_ap": "image AP",
    "image_f1_max": "image F1-max",
    "pixel_auroc": "pixel AUROC",
    "pixel_ap": "pixel AP",
    "aupro": "AUPRO",
}


# ----------------------------------------------------------------------------------------------------------------------
# input checking


def _to_tensor(x: Any, name: str) -> torch.Tensor:
    """A detached CPU tensor of a real (bool, integer or floating) dtype."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be numeric (bool, int or float), got a numpy array of dtype {arr.dtype}")
        # a copy, because torch.from_numpy refuses read-only arrays and shares memory with the caller's array
        t = torch.from_numpy(np.array(arr, copy=True))
    if t.is_complex():
        raise ValueError(f"{name} must be real-valued, got dtype {t.dtype}")
    return t


def _check_finite(t: torch.Tensor, name: str) -> None:
    bad = ~torch.isfinite(t)
    if bad.any():
        n_nan = int(torch.isnan(t).sum())
        n_inf = int(bad.sum()) - n_nan
        first = np.unravel_index(int(bad.flatten().nonzero()[0, 0]), tuple(t.shape))
        first = tuple(int(i) for i in first)
        where = first[0] if len(first) == 1 else first
        raise ValueError(
            f"{name} must be finite; found {n_nan} NaN and {n_inf} inf value(s) (first at index {where}) "
            f"in shape {tuple(t.shape)}"
        )


def _binary(t: torch.Tensor, name: str) -> torch.Tensor:
    """``t`` as a bool tensor; ``t`` must hold only 0/1 (or be bool)."""
    if t.dtype == torch.bool:
        return t
    ok = (t == 0) | (t == 1)
    if not ok.all():
        found = torch.unique(t[~ok].to(torch.float64))[:5].tolist()
        raise ValueError(f"{name} must be binary (0/1 or bool); found other values {found} in shape {tuple(t.shape)}")
    return t != 0


def _image_inputs(scores: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores float64 (N,), labels bool (N,)), validated."""
    s = _to_tensor(scores, "scores")
    y = _to_tensor(labels, "labels")
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D with one score per image, got shape {tuple(s.shape)}")
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D with one label per image, got shape {tuple(y.shape)}")
    if s.shape != y.shape:
        raise ValueError(
            f"scores and labels must have the same length, got {s.shape[0]} scores and {y.shape[0]} labels"
        )
    if s.numel() == 0:
        raise ValueError("scores and labels are empty; need at least one normal and one anomalous image")
    s = s.to(torch.float64)
    _check_finite(s, "scores")
    return s, _binary(y, "labels")


def _per_image(t: torch.Tensor, name: str) -> torch.Tensor:
    """(N, 1, H, W) or (N, H, W) -> (N, H, W)."""
    if t.ndim == 4 and t.shape[1] == 1:
        return t[:, 0]
    if t.ndim == 3:
        return t
    raise ValueError(f"{name} must have shape (N, 1, H, W) or (N, H, W), got {tuple(t.shape)}")


def _pixel_inputs(maps: Any, masks: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps float64 (N, H, W), masks bool (N, H, W)), validated.

    A (N, 1, H, W) map with a (N, H, W) mask (or the reverse) is accepted: the channel axis carries no information.
    """
    m = _to_tensor(maps, "maps").to(torch.float64)
    g = _to_tensor(masks, "masks")
    m3 = _per_image(m, "maps")
    g3 = _per_image(g, "masks")
    if m3.shape != g3.shape:
        raise ValueError(
            f"maps and masks must have the same shape, got maps {tuple(m.shape)} and masks {tuple(g.shape)}"
        )
    if m3.numel() == 0:
        raise ValueError(f"maps and masks are empty (shape {tuple(m.shape)})")
    _check_finite(m, "maps")  # on the caller's shape, so the index it reports is theirs
    return m3, _binary(g3, "masks")


def _check_fpr_limit(fpr_limit: Any) -> float:
    try:
        limit = float(fpr_limit)
    except (TypeError, ValueError):
        raise ValueError(f"fpr_limit must be a number in (0, 1], got {fpr_limit!r}") from None
    if not 0.0 < limit <= 1.0:  # also false for NaN
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit!r}")
    return limit


def _check_both_classes(target: torch.Tensor, metric: str, unit: str) -> None:
    n = target.numel()
    n_pos = int(target.sum())
    if n_pos == 0:
        raise ValueError(f"{metric} undefined: all {n} {unit} are normal, none is anomalous")
    if n_pos == n:
        raise ValueError(f"{metric} undefined: all {n} {unit} are anomalous, none is normal")


def _in_unit_interval(x: torch.Tensor) -> torch.Tensor:
    """``x`` mapped into [0, 1] without changing its order or its ties.

    torchmetrics treats predictions outside [0, 1] as logits and applies a sigmoid, which in floating point maps all
    large scores (distances, negative log-likelihoods around 20 and above) to exactly 1.0 and so merges them into one
    tie. Scores already in [0, 1] pass unchanged; others are replaced by their dense rank scaled to [0, 1], which is
    exact (ranks below 2**53 are exact in float64) and keeps every rank-based metric unchanged.
    """
    if bool((x >= 0).all()) and bool((x <= 1).all()):
        return x
    uniq, inverse = torch.unique(x, sorted=True, return_inverse=True)
    return inverse.to(torch.float64) / max(uniq.numel() - 1, 1)


# ----------------------------------------------------------------------------------------------------------------------
# image level


def _auroc(preds: torch.Tensor, target: torch.Tensor) -> float:
    return float(binary_auroc(_in_unit_interval(preds), target.long(), thresholds=None, validate_args=False))


def _average_precision(preds: torch.Tensor, target: torch.Tensor) -> float:
    return float(
        binary_average_precision(_in_unit_interval(preds), target.long(), thresholds=None, validate_args=False)
    )


def _f1_max(preds: torch.Tensor, target: torch.Tensor) -> float:
    precision, recall, _ = binary_precision_recall_curve(
        _in_unit_interval(preds), target.long(), thresholds=None, validate_args=False
    )
    precision = precision.to(torch.float64)
    recall = recall.to(torch.float64)
    denom = precision + recall
    # P + R == 0 only where nothing predicted is anomalous-and-correct; F1 is 0 there rather than 0/0
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-300), torch.zeros_like(denom))
    return float(f1.max())


def image_auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve of the image scores: the probability that a random anomalous image scores higher than
    a random normal one (ties count one half).

    It is threshold-free and insensitive to class balance, which is why it is the headline image-level metric of
    MVTec-style benchmarks. Computed exactly with ``torchmetrics.functional.classification.binary_auroc``.

    Args:
        scores: (N,) anomaly scores, higher = more anomalous (tensor on any device, or array).
        labels: (N,) 0/1 or bool, 1 = anomalous.

    Raises:
        ValueError: on mismatched lengths, non-binary labels, NaN/inf scores, empty input, or a single class.
    """
    s, y = _image_inputs(scores, labels)
    _check_both_classes(y, "image AUROC", "images")
    return _auroc(s, y)


def average_precision(scores: Any, labels: Any) -> float:
    """Average precision of the image scores: sum over thresholds of (recall gain) x (precision at that threshold).

    Unlike AUROC it depends on the fraction of anomalous images and rewards putting the anomalies at the very top of
    the ranking, which matters when an operator only inspects the highest-scoring parts. Computed exactly with
    ``torchmetrics.functional.classification.binary_average_precision`` (the step-wise sum, not a trapezoid).

    Both classes are required: with no anomalous image recall is undefined, and with no normal one AP is trivially 1.

    Raises:
        ValueError: as :func:`image_auroc`.
    """
    s, y = _image_inputs(scores, labels)
    _check_both_classes(y, "average precision", "images")
    return _average_precision(s, y)


def f1_max(scores: Any, labels: Any) -> float:
    """The best F1 score over all thresholds: max of 2PR / (P + R) along the exact precision-recall curve.

    It answers "how good is this detector with an ideally chosen threshold", an optimistic but common companion of
    AUROC (e.g. in anomalib). F1 is taken as 0 where P + R == 0.

    Both classes are required (F1 without anomalous images is undefined, with only anomalous ones trivially 1).

    Raises:
        ValueError: as :func:`image_auroc`.
    """
    s, y = _image_inputs(scores, labels)
    _check_both_classes(y, "F1-max", "images")
    return _f1_max(s, y)


# ----------------------------------------------------------------------------------------------------------------------
# pixel level


def pixel_auroc(maps: Any, masks: Any) -> float:
    """AUROC over every pixel of every image, pooled into one ranking (not averaged per image).

    Pooling is the standard definition (MVTec AD) and also checks that map values are comparable across images, which
    a per-image average would not. Large defects dominate it, which is what :func:`aupro` corrects.

    Args:
        maps: (N, 1, H, W) or (N, H, W) anomaly maps, higher = more anomalous.
        masks: the same shape, bool or 0/1; nonzero = defect pixel.

    Raises:
        ValueError: on mismatched shapes, non-binary masks, NaN/inf maps, empty input, or masks with no defect pixel
            (or no normal pixel).
    """
    m, g = _pixel_inputs(maps, masks)
    _check_both_classes(g, "pixel AUROC", "pixels")
    return _auroc(m.flatten(), g.flatten())


def _pro_curve(m: torch.Tensor, g: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
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
        ValueError: on invalid maps/masks (see :func:`pixel_auroc`), masks without any defect region, or masks
            without any normal pixel.
    """
    m, g = _pixel_inputs(maps, masks)
    fpr, pro = _pro_curve(m, g)
    return torch.from_numpy(fpr), torch.from_numpy(pro)


def _area_to_limit(fpr: np.ndarray, pro: np.ndarray, limit: float) -> float:
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
    limit = _check_fpr_limit(fpr_limit)
    m, g = _pixel_inputs(maps, masks)
    fpr, pro = _pro_curve(m, g)
    return _area_to_limit(fpr, pro, limit)


# ----------------------------------------------------------------------------------------------------------------------
# report


def _metrics(
    s: torch.Tensor, y: torch.Tensor, m: Optional[torch.Tensor], g: Optional[torch.Tensor], limit: float
) -> dict[str, float]:
    _check_both_classes(y, "image metrics", "images")
    out = {"image_auroc": _auroc(s, y), "image_ap": _average_precision(s, y), "image_f1_max": _f1_max(s, y)}
    if m is not None and g is not None:
        _check_both_classes(g, "pixel metrics", "pixels")
        mf, gf = _in_unit_interval(m.flatten()), g.flatten()
        out["pixel_auroc"] = _auroc(mf, gf)
        out["pixel_ap"] = _average_precision(mf, gf)
        out["aupro"] = _area_to_limit(*_pro_curve(m, g), limit)
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
    limit = _check_fpr_limit(fpr_limit)
    s, y = _image_inputs(scores, labels)
    m = g = None
    if (maps is None) != (masks is None):
        raise ValueError("maps and masks must be given together (got only " + ("maps)" if masks is None else "masks)"))
    if maps is not None:
        m, g = _pixel_inputs(maps, masks)
        if m.shape[0] != s.shape[0]:
            raise ValueError(
                f"maps hold {m.shape[0]} images (shape {tuple(m.shape)}) but there are {s.shape[0]} scores"
            )
        dirty = (g.flatten(1).any(1) & ~y).nonzero().flatten().tolist()
        if dirty:
            raise ValueError(f"normal images (label 0) must have empty masks; images {dirty[:5]} have defect pixels")

    # rank once here rather than in every metric of every subset; the ranks keep all orders and ties
    s = _in_unit_interval(s)
    if m is not None:
        m = _in_unit_interval(m.flatten()).reshape_as(m)

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


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _percent(value: Any) -> str:
    """A metric in [0, 1] as a percentage with one decimal; ``"-"`` where it is absent (undefined)."""
    return "-" if value is None else f"{100 * float(value):.1f}"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> list[str]:
    """The lines of a Markdown table: the first ``left`` columns aligned left (names), the others right (numbers).

    Shared by the anomaly and the box reports (:mod:`detectors.metrics.boxes`) so that both write one table format.
    """
    align = [":---"] * left + ["---:"] * (len(header) - left)
    return [
        "| " + " | ".join(_cell(h) for h in header) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows),
    ]


def format_markdown(report: dict, title: str = "Anomaly detection") -> str:
    """A report from :func:`evaluate` as a Markdown document: a title and one table with a row "overall" and a row
    per defect type, metrics in percent with one decimal, and the number of images (and anomalous images) each row
    was computed on.
    """
    if not isinstance(report, dict) or "overall" not in report or "counts" not in report:
        raise ValueError("report must be a dict from evaluate() with 'overall' and 'counts' keys")
    overall = report["overall"]
    counts = report["counts"]
    per_defect = report.get("per_defect", {})
    limit = float(report.get("fpr_limit", 0.3))
    keys = [k for k in _METRIC_LABELS if k in overall]
    labels = [f"AUPRO@{100 * limit:g}%" if k == "aupro" else _METRIC_LABELS[k] for k in keys]

    n_good = int(counts.get(GOOD, 0))
    n_anomalous = sum(int(v) for k, v in counts.items() if k != GOOD)

    def row(name: str, metrics: dict, n_images: int, n_anom: int) -> list[str]:
        return [name, str(n_images), str(n_anom), *(_percent(metrics.get(k)) for k in keys)]

    rows = [row("overall", overall, n_good + n_anomalous, n_anomalous)]
    for name in sorted(per_defect):
        n = int(counts.get(name, 0))
        rows.append(row(name, per_defect[name], n_good + n, n))
    lines = [f"# {title}", "", *_markdown_table(["subset", "images", "anomalous", *labels], rows)]

    notes = ["Metrics in %."]
    if per_defect:
        notes.append(f"Each defect row is computed on the {n_good} good images plus the images of that defect type.")
    if "aupro" in keys:
        notes.append(f"AUPRO: area up to a false-positive rate of {limit:g}, normalised to 100 for a perfect map.")
    lines += ["", " ".join(notes), ""]
    return "\n".join(lines)
