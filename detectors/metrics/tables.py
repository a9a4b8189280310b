"""The Markdown tables of the metric reports: :func:`format_markdown` for the anomaly report
(:func:`~detectors.metrics.anomaly.evaluate`) and :func:`format_box_markdown` for the box report
(:func:`~detectors.metrics.boxes.evaluate_boxes`), written by one table helper so that both have one format:
metrics in percent with one decimal, ``-`` where a metric is undefined.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..types import AGNOSTIC_CLASS
from .anomaly import GOOD
from .boxes import MAX_DETECTIONS

_METRIC_LABELS = {
    "image_auroc": "image AUROC",
    "image_ap": "image AP",
    "image_f1_max": "image F1-max",
    "pixel_auroc": "pixel AUROC",
    "pixel_ap": "pixel AP",
    "aupro": "AUPRO",
}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _percent(value: Any) -> str:
    """A metric in [0, 1] as a percentage with one decimal; ``"-"`` where it is absent (undefined)."""
    return "-" if value is None else f"{100 * float(value):.1f}"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> list[str]:
    """The lines of a Markdown table: the first ``left`` columns aligned left (names), the others right (numbers).

    Shared by the anomaly and the box reports so that both write one table format.
    """
    align = [":---"] * left + ["---:"] * (len(header) - left)
    return [
        "| " + " | ".join(_cell(h) for h in header) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows),
    ]


def format_markdown(report: dict, title: str = "Anomaly detection") -> str:
    """A report from :func:`~detectors.metrics.anomaly.evaluate` as a Markdown document: a title and one table
    with a row "overall" and a row per defect type, metrics in percent with one decimal, and the number of images
    (and anomalous images) each row was computed on.
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


_BOX_METRIC_LABELS = {
    "map_50": "AP@50",
    "map_50_95": "AP@50:95",
    "image_auroc": "image AUROC",
    "image_ap": "image AP",
}


def format_box_markdown(report: dict, title: str = "Object detection") -> str:
    """A report from :func:`~detectors.metrics.boxes.evaluate_boxes` as a Markdown document: a title, one table
    (a row "overall" with mAP@50, mAP@50:95, image AUROC and image AP, then a row per class with its AP@50 and
    AP@50:95), metrics in percent with one decimal and ``-`` where undefined, and the report's notes. The table is
    written by the same helper as the anomaly report's (:func:`format_markdown`).
    """
    if not isinstance(report, dict) or "overall" not in report or "counts" not in report:
        raise ValueError("report must be a dict from evaluate_boxes() with 'overall' and 'counts' keys")
    overall = report["overall"]
    counts = report["counts"]
    per_class = report.get("per_class", {})
    class_boxes = report.get("class_boxes", {})
    keys = list(_BOX_METRIC_LABELS)

    rows = [["overall (mAP)", str(counts.get("boxes", "-")), *(_percent(overall.get(k)) for k in keys)]]
    for name in report.get("class_names", sorted(per_class)):
        ap = per_class.get(name, {})
        rows.append([name, str(class_boxes.get(name, "-")), _percent(ap.get("ap_50")), _percent(ap.get("ap_50_95")),
                     "-", "-"])
    for name, ap in report.get("per_true_class", {}).items():
        rows.append([f"{name} (agnostic)", "-", _percent(ap.get("ap_50")), _percent(ap.get("ap_50_95")), "-", "-"])
    lines = [f"# {title}", "", *_markdown_table(["subset", "boxes", *_BOX_METRIC_LABELS.values()], rows)]

    notes = [
        f"{counts.get('images', '?')} images, {counts.get('defective images', '?')} defective. Metrics in %.",
        f"AP: COCO box average precision (pycocotools; up to {report.get('max_detections', MAX_DETECTIONS)} boxes per "
        "image) at IoU 0.5 and averaged over IoU 0.50:0.95; the overall row is the mean over classes with boxes.",
        "Image AUROC / AP rank the images by their top box score.",
    ]
    if report.get("agnostic"):
        notes.append(f"Class-agnostic: every box counted as one class ({AGNOSTIC_CLASS!r}).")
        if report.get("per_true_class"):
            notes.append("A row '<class> (agnostic)' scores the boxes against that test class alone, the other "
                         "classes' boxes ignored (COCO crowd regions).")
    if report.get("class_map"):
        shown = ", ".join(f"{k} -> {v if v is not None else '(dropped)'}" for k, v in report["class_map"].items())
        notes.append(f"Detector classes mapped: {shown}.")
    notes += list(report.get("notes", []))
    lines += ["", " ".join(notes), ""]
    return "\n".join(lines)
