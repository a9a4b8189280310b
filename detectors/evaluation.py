"""Evaluating any detector on real labelled data: predictions, metrics, and the report files.

- :func:`evaluate_labelled`: any detector on any :class:`~detectors.types.LabelledSet` (YOLO, COCO, MVTec,
  VOC, DeepPCB...). The metrics follow the prediction's fields: boxes give COCO mAP and AP per class
  (:func:`~detectors.metrics.evaluate_boxes`), maps with the set's masks give pixel AUROC / AUPRO, and every
  detector's image score gives image AUROC / AP against the images with and without defects — one axis for
  object and anomaly detectors.
- :func:`evaluate_detector`: an anomaly detector on an MVTec-layout test split, per defect type.

Metrics are computed at the detector's image size: the test images are resized to it (boxes scaled with them,
masks by nearest neighbour). IoU is unchanged by scaling both boxes alike, so mAP is the same as in the original
frame; the report records the size.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from defectgen.io.atomic import write_text_atomic

from . import metrics
from .data import load_test_set
from .types import LabelledSet, Prediction


def predict_all(detector, images, batch_size: int = 16, **kwargs: Any) -> Prediction:
    """``detector.predict`` over ``images`` (a ``(N, C, S, S)`` tensor or a list of ``(C, S, S)``), in batches."""
    images = torch.stack(list(images)) if not isinstance(images, torch.Tensor) else images
    return Prediction.cat([detector.predict(chunk, **kwargs) for chunk in images.split(batch_size)])


def evaluate_labelled(detector, test: LabelledSet, batch_size: int = 16, agnostic: bool = False,
                      class_map: Optional[Dict[str, Optional[str]]] = None, fpr_limit: float = 0.3,
                      **predict_kwargs: Any) -> Dict[str, Any]:
    """Predict every image of ``test`` and compute the metrics its fields allow (see the module docstring).

    Args:
        detector: a fitted detector (:mod:`detectors.base`).
        test: the labelled test set, defect-free images included; resized here to the detector's image size.
        agnostic, class_map: how the detector's classes meet the set's (:func:`detectors.metrics.evaluate_boxes`).
        predict_kwargs: passed to ``detector.predict`` (e.g. ``stride=`` for a patch-level CutPaste model).

    Returns the report: ``{"kind": "boxes" | "anomaly", "overall": {...}, ...}`` plus ``"data"``,
    ``"image_size"`` and ``"seconds"`` (prediction time). An anomaly report of a set with several classes also
    has ``"per_defect"``: the metrics on the defect-free images plus those of each type.
    """
    if len(test) == 0:
        raise ValueError("the test set holds no images")
    test = test.resized(detector.image_size)
    start = time.perf_counter()
    prediction = predict_all(detector, test.images, batch_size, **predict_kwargs)
    seconds = time.perf_counter() - start
    if prediction.has_boxes:
        report = metrics.evaluate_boxes(prediction, test, prediction_class_names=list(detector.class_names),
                                        agnostic=agnostic, class_map=class_map)
        report["kind"] = "boxes"
    else:
        pixel = prediction.has_maps and test.masks is not None
        report = metrics.evaluate(prediction.scores, test.defective,
                                  prediction.maps if pixel else None,
                                  torch.stack(list(test.masks)) if pixel else None, image_types(test),
                                  fpr_limit=fpr_limit)
        report["kind"] = "anomaly"
    report.update({"data": test.info.get("root"), "format": test.info.get("format"), "split": test.info.get("split"),
                   "image_size": detector.image_size, "seconds": round(seconds, 3)})
    return report


def image_types(test: LabelledSet) -> Optional[List[str]]:
    """Each image's defect type (its most frequent box class; ``"good"`` without boxes), for the per-type rows
    of an anomaly report; None when the set has one class or no defect-free image (nothing to break down)."""
    if len(test.class_names) < 2:
        return None
    types = []
    for labels, defective in zip(test.labels, test.defective.tolist()):
        if defective and len(labels) == 0:
            return None  # a mask without a box: no type to file it under
        types.append(test.class_names[int(labels.mode().values) - 1] if defective else metrics.GOOD)
    return types if metrics.GOOD in types else None


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
            prediction = detector.predict(chunk, **map_kwargs)
            if prediction.maps is None:
                raise ValueError(f"{describe_model(detector)} makes no anomaly maps, so pixel metrics cannot be "
                                 "computed; evaluate image metrics only (--no-pixel, or pixel=False)")
            chunk_scores = prediction.scores
            maps.append(prediction.maps)
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


def describe_model(detector) -> str:
    """A detector as messages name it: its kind, and its model where the kind wraps several (anomalib's)."""
    model = getattr(detector, "model", None)
    return " ".join(str(part) for part in (getattr(detector, "kind", type(detector).__name__),
                                            model if isinstance(model, str) else None) if part)


def format_report(report: Dict[str, Any], title: str) -> str:
    """The Markdown of a report from :func:`evaluate_labelled` or :func:`evaluate_detector`."""
    if report.get("kind") == "boxes":
        return metrics.format_box_markdown(report, title=title)
    return metrics.format_markdown(report, title=title)


def write_report(report: Dict[str, Any], out: Union[str, Path], title: str = "Anomaly detection") -> Dict[str, Path]:
    """Write ``report`` as ``<out>.json`` and ``<out>.md`` (``out`` without suffix); returns both paths."""
    out = Path(out)
    base = out.with_suffix("") if out.suffix in (".json", ".md") else out
    paths = {"json": base.with_name(base.name + ".json"), "markdown": base.with_name(base.name + ".md")}
    write_text_atomic(paths["json"], json.dumps(report, indent=2, sort_keys=True) + "\n")
    write_text_atomic(paths["markdown"], format_report(report, title))
    return paths
