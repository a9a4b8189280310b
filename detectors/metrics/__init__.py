"""Metrics of every detector kind, one module per family of metric, under one import path.

- :mod:`.image`: image-level, from one score per image (image AUROC, AP, F1-max);
- :mod:`.pixel`: pixel-level AUROC over every pixel of every map;
- :mod:`.region`: region overlap, the PRO curve and AUPRO;
- :mod:`.boxes`: boxes (COCO mAP@50 and mAP@50:95, AP per class) plus image AUROC / AP from the top box score,
  the report :func:`evaluate_boxes`;
- :mod:`.anomaly`: the anomaly report :func:`evaluate` (every metric of scores and maps, overall and per defect type);
- :mod:`.tables`: both reports as Markdown tables, :func:`format_markdown` and :func:`format_box_markdown`,
  written by one helper;
- :mod:`.checks`: what every metric refuses (shapes, non-binary truth, NaN / inf, a single class).

Both reports put an image-level score on one axis (image AUROC), so anomaly and object detectors compare directly.
Everything that was importable from the former single module ``detectors/metrics.py`` is importable from here
unchanged.
"""
from .anomaly import GOOD, evaluate
from .boxes import evaluate_boxes, rescale_boxes
from .image import average_precision, f1_max, image_auroc
from .pixel import pixel_auroc
from .region import aupro, pro_curve
from .tables import format_box_markdown, format_markdown

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
