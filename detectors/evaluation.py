"""Evaluating a detector on an MVTec-layout test split: scores, maps, metrics, and the report files.

Works for any detector with ``image_size``, ``channels``, ``score(images)`` and ``predict(images)`` (scores
and anomaly maps from one pass).
Pixel metrics are computed at the detector's image size (the masks are resized to it by nearest neighbour);
the report records that size.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import torch

from defectgen.io.atomic import write_text_atomic

from . import metrics
from .data import load_test_set


def evaluate_detector(detector, root: Union[str, Path], defects: Optional[Sequence[str]] = None,
                      pixel: bool = True, batch_size: int = 16, fpr_limit: float = 0.3,
                      **map_kwargs: Any) -> Dict[str, Any]:
    """Score every test image of ``root`` and compute the metrics (see :func:`detectors.metrics.evaluate`).

    Args:
        detector: a fitted detector.
        root: an MVTec-layout folder with ``test/`` and ``ground_truth/``.
        defects: defect types to evaluate (default: all); the ``good`` test images are always used.
        pixel: also compute anomaly maps and the pixel metrics (pixel AUROC, AUPRO, pixel AP).
        batch_size: images per scoring call.
        map_kwargs: passed to ``detector.predict`` / ``score`` (e.g. ``stride=`` for a patch-level CutPaste model).

    Returns the metrics dict plus ``"data"`` (the folder), ``"pixel_size"`` and ``"seconds"`` (scoring time).
    """
    test = load_test_set(root, detector.image_size, detector.channels, defects)
    start = time.perf_counter()
    scores, maps = [], []
    for chunk in test.images.split(batch_size):
        if pixel:  # scores and maps from one pass (they share the forward pass / the patch scores)
            chunk_scores, chunk_maps = detector.predict(chunk, **map_kwargs)
            maps.append(chunk_maps)
        else:
            chunk_scores = detector.score(chunk, **map_kwargs)
        scores.append(chunk_scores)
    seconds = time.perf_counter() - start
    report = metrics.evaluate(torch.cat(scores), test.labels > 0,
                              torch.cat(maps) if pixel else None, test.masks if pixel else None,
                              test.defects, fpr_limit=fpr_limit)
    report.update({"data": str(root), "pixel_size": detector.image_size if pixel else None,
                   "seconds": round(seconds, 3)})
    return report


def write_report(report: Dict[str, Any], out: Union[str, Path], title: str = "Anomaly detection") -> Dict[str, Path]:
    """Write ``report`` as ``<out>.json`` and ``<out>.md`` (``out`` without suffix); returns both paths."""
    out = Path(out)
    base = out.with_suffix("") if out.suffix in (".json", ".md") else out
    paths = {"json": base.with_name(base.name + ".json"), "markdown": base.with_name(base.name + ".md")}
    write_text_atomic(paths["json"], json.dumps(report, indent=2, sort_keys=True) + "\n")
    write_text_atomic(paths["markdown"], metrics.format_markdown(report, title=title))
    return paths
