"""Metrics of every detector kind, one module per kind of output, under one import path.

- :mod:`detectors.metrics.anomaly`: image scores and pixel maps (image / pixel AUROC, AP, F1-max, AUPRO), the
  report :func:`evaluate` and its table :func:`format_markdown`.
- :mod:`detectors.metrics.boxes`: boxes (COCO mAP@50 and mAP@50:95, AP per class) plus image AUROC / AP from the
  top box score, the report :func:`evaluate_boxes` and its table :func:`format_box_markdown`.

Both reports put an image-level score on one axis (image AUROC), so anomaly and object detectors compare directly;
their Markdown tables are written by one helper. Everything that was importable from the former single module
``detectors/metrics.py`` is importable from here unchanged.
"""
from .anomaly import (
    GOOD,
    aupro,
    average_precision,
    evaluate,
    f1_max,
    format_markdown,
    image_auroc,
    pixel_auroc,
    pro_curve,
)
from .boxes import evaluate_boxes, format_box_markdown, rescale_boxes

__all__ = [
    "GOOD",
    "image_auroc",
    "average_precision",
    "f1_max",
    "pixel_auroc",
    "pro_curve",
    "aupro",
    "evaluate",
    "format_markdown",
    "evaluate_boxes",
    "format_box_markdown",
    "rescale_boxes",
]
