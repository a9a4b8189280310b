"""Image-level metrics, from one anomaly score per image: :func:`image_auroc`, :func:`average_precision`,
:func:`f1_max`.

Scores follow the usual convention: higher means more anomalous; labels use 1 (or True) for anomalous. Computed
exactly with torchmetrics on scores mapped into [0, 1] without changing their order (:func:`.checks.in_unit_interval`).
The ``*_checked`` functions take inputs already checked (:mod:`.checks`); the pixel and box metrics rank with them too.
"""
from __future__ import annotations

from typing import Any

import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_precision_recall_curve,
)

from .checks import check_both_classes, image_inputs, in_unit_interval


def auroc_checked(preds: torch.Tensor, target: torch.Tensor) -> float:
    return float(binary_auroc(in_unit_interval(preds), target.long(), thresholds=None, validate_args=False))


def average_precision_checked(preds: torch.Tensor, target: torch.Tensor) -> float:
    return float(
        binary_average_precision(in_unit_interval(preds), target.long(), thresholds=None, validate_args=False)
    )


def f1_max_checked(preds: torch.Tensor, target: torch.Tensor) -> float:
    precision, recall, _ = binary_precision_recall_curve(
        in_unit_interval(preds), target.long(), thresholds=None, validate_args=False
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
    s, y = image_inputs(scores, labels)
    check_both_classes(y, "image AUROC", "images")
    return auroc_checked(s, y)


def average_precision(scores: Any, labels: Any) -> float:
    """Average precision of the image scores: sum over thresholds of (recall gain) x (precision at that threshold).

    Unlike AUROC it depends on the fraction of anomalous images and rewards putting the anomalies at the very top of
    the ranking, which matters when an operator only inspects the highest-scoring parts. Computed exactly with
    ``torchmetrics.functional.classification.binary_average_precision`` (the step-wise sum, not a trapezoid).

    Both classes are required: with no anomalous image recall is undefined, and with no normal one AP is trivially 1.

    Raises:
        ValueError: as :func:`image_auroc`.
    """
    s, y = image_inputs(scores, labels)
    check_both_classes(y, "average precision", "images")
    return average_precision_checked(s, y)


def f1_max(scores: Any, labels: Any) -> float:
    """The best F1 score over all thresholds: max of 2PR / (P + R) along the exact precision-recall curve.

    It answers "how good is this detector with an ideally chosen threshold", an optimistic but common companion of
    AUROC (e.g. in anomalib). F1 is taken as 0 where P + R == 0.

    Both classes are required (F1 without anomalous images is undefined, with only anomalous ones trivially 1).

    Raises:
        ValueError: as :func:`image_auroc`.
    """
    s, y = image_inputs(scores, labels)
    check_both_classes(y, "F1-max", "images")
    return f1_max_checked(s, y)
