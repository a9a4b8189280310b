"""Object-detection metrics: COCO box mAP per class and overall, plus image AUROC / AP from the top box score.

An object detector is judged on two axes:

- **where** the defects are: COCO mAP@50 and mAP@50:95 (and AP per class), computed by
  ``torchmetrics.detection.MeanAveragePrecision`` with the pycocotools backend, i.e. the reference COCO
  evaluation (greedy matching by score, 101-point interpolated precision, up to :data:`MAX_DETECTIONS` boxes per
  image, mAP = mean over the classes that have boxes in the test set);
- **whether** a part is defective: image AUROC and AP of the image-level score (``Prediction.scores``, which an
  object detector sets to its highest box score, 0 where it found none) against "has a defect". Real test sets hold
  defect-free images too, and this axis is the one anomaly detectors are measured on
  (:func:`detectors.metrics.anomaly.evaluate`), so both kinds of detector land in one table. The image-level numbers
  are computed by the same functions as the anomaly report (exact, rank-transformed when scores leave [0, 1]).

Class names: a detector trained on synthetic classes is often tested on a real set whose classes are named
differently. :func:`evaluate_boxes` therefore matches classes **by name**, never by id, and refuses mismatched names
unless told how to compare them: ``class_map`` (rename the detector's classes to the set's, dropping the rest) or
``agnostic=True`` (every box is one class, "is there a defect here").

Coordinates: predicted boxes must be in the pixels of the test images as stored in the :class:`LabelledSet`. A
detector that ran on resized images (e.g. on ``truth.resized(S)``) gives boxes in the ``S x S`` frame;
:func:`rescale_boxes` puts them back. Boxes far outside an image are refused because they are the usual symptom of
forgetting that.

Values are plain Python floats in [0, 1], not rounded (as in the anomaly report;
:func:`~detectors.metrics.tables.format_box_markdown` shows percent with one decimal). A metric that is undefined on the
given data is left out and a sentence in ``report["notes"]`` says why; the report never holds the ``-1`` that COCO tools
use for "undefined".
"""
from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Optional, Union

import torch

from ..types import LabelledSet, Prediction
from .checks import check_both_classes, check_finite, image_inputs, in_unit_interval
from .image import auroc_checked, average_precision_checked

__all__ = ["evaluate_boxes", "rescale_boxes", "MAX_DETECTIONS"]

MAX_DETECTIONS = 100
"""Boxes per image that COCO evaluation keeps (the highest-scoring ones); COCO's own default, and the only value
torchmetrics' pycocotools backend handles correctly (other values give -1 in torchmetrics 1.2)."""

BOUNDS_TOLERANCE = 1.0
"""How far (pixels) a predicted box may reach outside its image before it is taken for a box in the wrong frame."""

Size = Union[int, Sequence[int]]


# ----------------------------------------------------------------------------------------------------------------------
# coordinates


def _pair(size: Any, name: str) -> tuple[int, int]:
    """``(height, width)`` from an int (a square) or a pair."""
    if isinstance(size, int) and not isinstance(size, bool):
        h = w = size
    elif isinstance(size, Sequence) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                               for v in size):
        h, w = size
    else:
        raise ValueError(f"{name} must be an int (a square image) or a (height, width) pair of ints, got {size!r}")
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be positive, got {size!r}")
    return int(h), int(w)


def _sizes(sizes: Any, n: int, name: str) -> list[tuple[int, int]]:
    """One ``(height, width)`` per image from: an int or a pair of ints (every image), a LabelledSet (its images'
    sizes), or a sequence of ``n`` pairs (not ints, so that a pair of ints always means one height and width)."""
    if isinstance(sizes, LabelledSet):
        out = [(int(im.shape[-2]), int(im.shape[-1])) for im in sizes.images]
    elif isinstance(sizes, int) or (isinstance(sizes, Sequence) and len(sizes) == 2
                                    and all(isinstance(v, int) for v in sizes)):
        return [_pair(sizes, name)] * n
    elif isinstance(sizes, Sequence) and not isinstance(sizes, str):
        bad = [i for i, s in enumerate(sizes) if not isinstance(s, Sequence)]
        if bad:
            raise ValueError(f"{name}: one size per image must be a (height, width) pair, got {sizes[bad[0]]!r} at "
                             f"{bad[0]}")
        out = [_pair(s, f"{name}[{i}]") for i, s in enumerate(sizes)]
    else:
        raise ValueError(f"{name} must be an int, a (height, width) pair, a LabelledSet or one size per image; "
                         f"got {type(sizes).__name__}")
    if len(out) != n:
        raise ValueError(f"{name} gives {len(out)} image sizes for a prediction of {n} images")
    return out


def rescale_boxes(prediction: Prediction, from_size: Any, to_sizes: Any) -> Prediction:
    """The prediction with its boxes moved from the frame the detector saw into each test image's own pixels.

    Detectors usually run on resized images (``LabelledSet.resized(S)`` stretches every image to ``S x S``), while the
    ground truth stays in the original pixels, where mAP must be computed (IoU is not invariant to stretching a box
    differently along x and y, and a 3000-pixel image evaluated in a 256-pixel frame hides localisation errors). The
    box ``x`` coordinates are multiplied by ``W / from_W`` and ``y`` by ``H / from_H``: the inverse of a plain resize.
    A letterboxed resize (padding to keep the aspect ratio) is not undone here; detectors that letterbox (ultralytics)
    already return boxes in the original image's pixels.

    Args:
        prediction: a prediction with boxes.
        from_size: the size the detector saw: an int (square), a ``(height, width)`` pair, or one pair per image.
        to_sizes: the test images' sizes: a :class:`LabelledSet` (its images), an int or pair for every image, or a
            sequence of ``(height, width)`` pairs, one per image.

    Returns:
        A new :class:`Prediction`; scores, box scores, labels and maps are unchanged (maps stay in the detector's
        frame).
    """
    if not isinstance(prediction, Prediction) or not prediction.has_boxes:
        raise ValueError("rescale_boxes needs a Prediction with boxes")
    n = len(prediction)
    src = _sizes(from_size, n, "from_size")
    dst = _sizes(to_sizes, n, "to_sizes")
    boxes = []
    for b, (fh, fw), (h, w) in zip(prediction.boxes, src, dst):
        scale = torch.tensor([w / fw, h / fh, w / fw, h / fh], dtype=torch.float32, device=b.device)
        boxes.append(b.float() * scale)
    return replace(prediction, boxes=boxes)


# ----------------------------------------------------------------------------------------------------------------------
# classes


def _resolve_classes(
    prediction_class_names: Sequence[str], truth: LabelledSet, agnostic: bool, class_map: Optional[Mapping]
) -> tuple[torch.Tensor, LabelledSet, list[str]]:
    """(lookup from prediction id to evaluated id, 0 = dropped; the truth in evaluated ids; dropped class names)."""
    pred_names = list(prediction_class_names)
    if len(set(pred_names)) != len(pred_names):
        raise ValueError(f"prediction_class_names has repeated names: {pred_names}")
    if agnostic:
        if class_map is not None:
            raise ValueError("give class_map or agnostic=True, not both: agnostic already makes every box one class")
        return torch.ones(len(pred_names) + 1, dtype=torch.int64), truth.agnostic(), []
    true_names = list(truth.class_names)
    if class_map is None:
        if set(pred_names) != set(true_names):
            raise ValueError(
                f"the detector's classes {pred_names} are not the test set's classes {true_names}; pass class_map="
                "{detector class: test class} to compare them by name, or agnostic=True to compare boxes only")
        target = {name: name for name in pred_names}
    else:
        if not isinstance(class_map, Mapping):
            raise ValueError(f"class_map must be a mapping {{detector class: test class}}, got "
                             f"{type(class_map).__name__}")
        unknown = sorted(set(class_map) - set(pred_names))
        if unknown:
            raise ValueError(f"class_map names classes {unknown} that the detector does not have; the detector's "
                             f"classes are {pred_names}")
        wrong = sorted({v for v in class_map.values() if v is not None} - set(true_names))
        if wrong:
            raise ValueError(f"class_map maps to classes {wrong} that the test set does not have; the test set's "
                             f"classes are {true_names}")
        target = {name: class_map.get(name) for name in pred_names}
    lookup = torch.tensor([0] + [true_names.index(target[p]) + 1 if target[p] is not None else 0 for p in pred_names],
                          dtype=torch.int64)
    dropped = [p for p in pred_names if target[p] is None]
    return lookup, truth, dropped


# ----------------------------------------------------------------------------------------------------------------------
# input checking


def _check_prediction(prediction: Prediction, truth: LabelledSet, n_classes: int) -> None:
    if not isinstance(prediction, Prediction):
        raise ValueError(f"prediction must be a detectors.types.Prediction, got {type(prediction).__name__}")
    if not isinstance(truth, LabelledSet):
        raise ValueError(f"truth must be a detectors.types.LabelledSet, got {type(truth).__name__}")
    if not prediction.has_boxes:
        raise ValueError("the prediction has no boxes (an anomaly detector's?); box metrics need boxes, "
                         "detectors.metrics.evaluate scores image scores and maps")
    if len(prediction) != len(truth):
        raise ValueError(f"the prediction covers {len(prediction)} images but the test set has {len(truth)}")
    if len(truth) == 0:
        raise ValueError("the test set is empty")
    for i, (b, s, lab) in enumerate(zip(prediction.boxes, prediction.box_scores, prediction.box_labels)):
        name = truth.names[i]
        if b.ndim != 2 or b.shape[1] != 4 or s.shape != (b.shape[0],) or lab.shape != (b.shape[0],):
            raise ValueError(f"image {name!r}: predicted boxes must be (n, 4) with (n,) box_scores and box_labels, "
                             f"got {tuple(b.shape)}, {tuple(s.shape)} and {tuple(lab.shape)}")
        if not (b.is_floating_point() and s.is_floating_point()):
            raise ValueError(f"image {name!r}: predicted boxes and box_scores must be floating point, got "
                             f"{b.dtype} and {s.dtype}")
        if lab.is_floating_point() or lab.dtype == torch.bool:
            raise ValueError(f"image {name!r}: box_labels must be integer class ids, got {lab.dtype}")
        if not len(b):
            continue
        check_finite(b.detach().cpu(), f"predicted boxes of image {name!r}")
        check_finite(s.detach().cpu(), f"box_scores of image {name!r}")
        if int(lab.min()) < 1 or int(lab.max()) > n_classes:
            raise ValueError(f"image {name!r}: box_labels {lab.tolist()} outside 1..{n_classes} (the detector's "
                             f"{n_classes} classes; 0 is background and never a box label)")
        bc = b.detach().cpu().to(torch.float64)
        if bool((bc[:, 2] < bc[:, 0]).any() or (bc[:, 3] < bc[:, 1]).any()):
            raise ValueError(f"image {name!r}: predicted boxes must be x1 y1 x2 y2 with x2 >= x1 and y2 >= y1")
        h, w = truth.images[i].shape[-2:]
        tol = BOUNDS_TOLERANCE
        if bool((bc[:, :2] < -tol).any() or (bc[:, 2] > w + tol).any() or (bc[:, 3] > h + tol).any()):
            worst = bc[:, 2:].amax(0).tolist()
            raise ValueError(
                f"image {name!r} is {w} x {h} pixels but predicted boxes reach x = {worst[0]:g}, y = {worst[1]:g} "
                f"(or below 0): predictions must be in the test images' pixels; if the detector ran on resized "
                f"images, map its boxes back with detectors.metrics.rescale_boxes")


# ----------------------------------------------------------------------------------------------------------------------
# report


def _mean_average_precision(**kwargs: Any):
    """A ``MeanAveragePrecision`` on the pycocotools backend, whatever the torchmetrics release.

    torchmetrics 1.0 and 1.1 always use pycocotools and have no ``backend`` argument (an unknown keyword is an error
    there); 1.2 added ``backend`` with a choice of pycocotools or faster_coco_eval. We ask for pycocotools explicitly
    where the argument exists so that the numbers stay those of the reference COCO evaluation.
    """
    if importlib.util.find_spec("pycocotools") is None:
        raise ModuleNotFoundError("box metrics need pycocotools (a core dependency of defectgen): "
                                  "pip install 'pycocotools>=2.0.7'")
    from torchmetrics.detection import MeanAveragePrecision

    if "backend" in inspect.signature(MeanAveragePrecision.__init__).parameters:
        kwargs["backend"] = "pycocotools"
    # max_detection_thresholds stays at its default [1, 10, MAX_DETECTIONS]: see MAX_DETECTIONS
    return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True, **kwargs)


def _per_class(result: dict) -> dict[int, Optional[float]]:
    """{class id: AP} from a torchmetrics result; COCO's -1 ("no box of this class in the truth") becomes None."""
    classes = result["classes"].reshape(-1).tolist()
    values = result["map_per_class"].reshape(-1).tolist()
    return {int(c): (float(v) if v >= 0 else None) for c, v in zip(classes, values)}


def evaluate_boxes(
    prediction: Prediction,
    truth: LabelledSet,
    *,
    prediction_class_names: Optional[Sequence[str]] = None,
    agnostic: bool = False,
    class_map: Optional[Mapping[str, Optional[str]]] = None,
) -> dict:
    """Box and image-level metrics of an object detector's prediction on a labelled test set, as a JSON-able dict.

    Returns::

        {"overall": {"map_50", "map_50_95", "image_auroc", "image_ap"},
         "per_class": {"<class>": {"ap_50", "ap_50_95"}, ...},   # classes with at least one box in the test set
         "per_true_class": {...},   # agnostic, with several test classes: AP against each (see below)
         "counts": {"images", "defective images", "defect-free images", "boxes", "predicted boxes"
                    [, "dropped predicted boxes"]},
         "class_boxes": {"<class>": n, ...},                      # every evaluated class, in id order
         "class_names": [...], "agnostic": bool, "class_map": {...} or None,
         "max_detections": 100, "notes": [...]}

    A key is absent where its metric is undefined, and ``notes`` says why: mAP without any true box in the test set,
    image AUROC / AP when every image is defective or none is, AP of a class with no box in the test set (it is also
    left out of the mAP, as in COCO). With true boxes but no predicted box at all, mAP is 0 (every defect missed).

    Args:
        prediction: an object detector's output on ``truth``'s images, in order, with boxes in those images'
            pixels (see :func:`rescale_boxes`). Its ``scores`` (the top box score per image, 0 without a box) give
            the image-level metrics; with ``class_map`` they still count every box, dropped classes included.
        truth: the test set, defect-free images included (they carry the image-level metrics and catch false
            boxes).
        prediction_class_names: the detector's classes; box label ``k + 1`` is ``prediction_class_names[k]``.
            Default: ``truth.class_names`` (a detector trained on this set's classes).
        agnostic: score every predicted and true box as one class, :data:`~detectors.types.AGNOSTIC_CLASS`: does
            the detector find the defects, whatever it calls them (e.g. a detector trained on synthetic classes on a
            real set named otherwise). With several test classes, ``per_true_class`` then gives the agnostic AP
            against each test class alone, the other classes' boxes ignored as COCO crowd regions: which real
            defects it finds.
        class_map: ``{detector class: test class}``; boxes of a detector class mapped to ``None`` **or not named**
            are dropped (the class has no counterpart in the test set, so its boxes are neither hits nor false
            alarms), and their number is reported. Test classes nothing maps to keep their boxes and score AP 0.

    Raises:
        ValueError: on a prediction without boxes or of another length than ``truth``, malformed or non-finite
            boxes / scores, labels outside the detector's classes, boxes outside the images (wrong frame), class
            names that differ without ``class_map`` or ``agnostic`` (the message lists both), a ``class_map`` naming
            unknown classes, or both ``class_map`` and ``agnostic``.
    """
    if not isinstance(truth, LabelledSet):
        raise ValueError(f"truth must be a detectors.types.LabelledSet, got {type(truth).__name__}")
    if isinstance(prediction_class_names, str):
        raise ValueError(f"prediction_class_names must be a sequence of names, got the string "
                         f"{prediction_class_names!r}")
    pred_names = tuple(truth.class_names if prediction_class_names is None else prediction_class_names)
    _check_prediction(prediction, truth, len(pred_names))
    lookup, target, dropped = _resolve_classes(pred_names, truth, bool(agnostic), class_map)
    names = list(target.class_names)
    notes: list[str] = []

    preds, targets = [], []
    n_pred = n_dropped = 0
    for b, s, lab, tb, tl in zip(prediction.boxes, prediction.box_scores, prediction.box_labels, target.boxes,
                                 target.labels):
        ids = lookup[lab.detach().cpu().long()]
        keep = ids > 0
        preds.append({"boxes": b.detach().cpu().float()[keep], "scores": s.detach().cpu().float()[keep],
                      "labels": ids[keep]})
        targets.append({"boxes": torch.as_tensor(tb, dtype=torch.float32).cpu().reshape(-1, 4),
                        "labels": torch.as_tensor(tl, dtype=torch.int64).cpu().reshape(-1)})
        n_pred += int(keep.sum())
        n_dropped += int((~keep).sum())

    all_labels = torch.cat([t["labels"] for t in targets])
    class_boxes = {name: int((all_labels == k + 1).sum()) for k, name in enumerate(names)}
    defective = truth.defective
    counts = {"images": len(truth), "defective images": int(defective.sum()),
              "defect-free images": int((~defective).sum()), "boxes": int(all_labels.numel()),
              "predicted boxes": n_pred}
    if class_map is not None:
        counts["dropped predicted boxes"] = n_dropped
        if dropped:
            notes.append(f"Detector classes {dropped} have no test class in class_map: their {n_dropped} box(es) "
                         f"were dropped.")

    overall: dict[str, float] = {}
    per_class: dict[str, dict[str, float]] = {}
    per_true_class: dict[str, dict[str, float]] = {}
    if all_labels.numel() == 0:
        notes.append(f"mAP undefined: none of the {len(truth)} test images has a box.")
    else:
        coco = _mean_average_precision()
        coco.update(preds, targets)
        result = coco.compute()
        coco50 = _mean_average_precision(iou_thresholds=[0.5])
        coco50.update(preds, targets)
        result50 = coco50.compute()
        # with at least one true box the mean runs over at least one class, so neither is COCO's -1
        overall["map_50"] = float(result["map_50"])
        overall["map_50_95"] = float(result["map"])
        ap, ap50 = _per_class(result), _per_class(result50)
        for k, name in enumerate(names):
            if class_boxes[name] == 0:
                continue
            # a class with true boxes is always evaluated (AP 0 when never predicted): never None here
            per_class[name] = {"ap_50": ap50[k + 1], "ap_50_95": ap[k + 1]}
        absent = [name for name in names if class_boxes[name] == 0]
        if absent:
            notes.append(f"AP undefined for classes {absent}: no box of theirs in the test set (left out of the mAP).")
        if agnostic and len(truth.class_names) > 1:
            per_true_class = _agnostic_ap_per_true_class(preds, truth)

    scores, y = image_inputs(prediction.scores, defective)
    try:
        check_both_classes(y, "image AUROC and AP", "images")
    except ValueError as e:
        notes.append(f"{e}.")
    else:
        scores = in_unit_interval(scores)
        overall["image_auroc"] = auroc_checked(scores, y)
        overall["image_ap"] = average_precision_checked(scores, y)

    return {
        "overall": overall,
        "per_class": per_class,
        **({"per_true_class": per_true_class} if per_true_class else {}),
        "counts": counts,
        "class_boxes": class_boxes,
        "class_names": names,
        "agnostic": bool(agnostic),
        "class_map": None if class_map is None else dict(class_map),
        "max_detections": MAX_DETECTIONS,
        "notes": notes,
    }


def _agnostic_ap_per_true_class(preds: list, truth: LabelledSet) -> dict[str, dict[str, float]]:
    """Class-agnostic AP against each of the test set's classes in turn: the boxes of the other classes become
    COCO crowd regions, so a detection on them is ignored (neither a hit nor a false alarm). This says which real
    defects a detector trained on synthetic classes finds, without asking it to name them."""
    out: dict[str, dict[str, float]] = {}
    for k, name in enumerate(truth.class_names):
        targets, any_box = [], False
        for b, lab in zip(truth.boxes, truth.labels):
            lab = torch.as_tensor(lab, dtype=torch.int64).cpu().reshape(-1)
            any_box |= bool((lab == k + 1).any())
            targets.append({"boxes": torch.as_tensor(b, dtype=torch.float32).cpu().reshape(-1, 4),
                            "labels": torch.ones_like(lab), "iscrowd": (lab != k + 1).to(torch.int64)})
        if not any_box:
            continue
        coco = _mean_average_precision()
        coco.update(preds, targets)
        result = coco.compute()
        out[name] = {"ap_50": float(result["map_50"]), "ap_50_95": float(result["map"])}
    return out
