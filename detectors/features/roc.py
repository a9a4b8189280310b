"""ROC curves of a detector's image scores on a labelled test set, overall and per defect type.

The scores come from the evaluator's own path (:func:`detectors.evaluation.predict_all` on the test set as
``defectgen eval`` reads and resizes it), and each AUROC from :func:`detectors.metrics.image_auroc`, the
function the evaluation report uses: the overall AUROC here is the ``image_auroc`` ``defectgen eval`` reports
for the same model and data. A defect type's curve, like its row in the report, is its images against all the
defect-free ones. The FPR / TPR points are the exact curve (every distinct score a threshold), with the scores
mapped into [0, 1] as the metrics map them (the order, and so the curve, is unchanged).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

OVERALL = "overall"


def detector_scores(detector, root: Union[str, Path], fmt: str = "auto", split: Optional[str] = None,
                    defects: Optional[Sequence[str]] = None, batch_size: int = 16,
                    **predict_kwargs: Any) -> Tuple[torch.Tensor, torch.Tensor, Optional[List[str]]]:
    """``(scores, defective, types)`` of every test image of the labelled set ``root``, predicted as
    ``defectgen eval`` predicts them (``types`` None when the set has no per-type breakdown)."""
    from defectgen.io.labelled import detect_format, read_labelled

    from ..data import load_test_set
    from ..evaluation import image_types, predict_all
    from ..registry import ANOMALY

    fmt = detect_format(root) if fmt == "auto" else fmt
    if detector.TASK == ANOMALY and fmt == "mvtec":  # eval's MVTec path: load_test_set at the model's size
        test = load_test_set(root, detector.image_size, detector.channels, defects)
        prediction = predict_all(detector, test.images, batch_size, **predict_kwargs)
        return prediction.scores.detach().cpu(), test.anomalous, list(test.defects)
    if defects:
        raise ValueError("--defect needs MVTec-layout --data")
    labelled = read_labelled(root, fmt, split=split, channels=detector.channels)
    if len(labelled) == 0:
        raise ValueError(f"--data {str(root)!r} holds no images")
    labelled = labelled.resized(detector.image_size)
    prediction = predict_all(detector, labelled.images, batch_size, **predict_kwargs)
    return prediction.scores.detach().cpu(), labelled.defective, image_types(labelled)


def roc_curve(scores: torch.Tensor, defective: torch.Tensor) -> Dict[str, Any]:
    """``{"auroc", "fpr", "tpr", "count": {"good", "defective"}}`` of image scores (higher = more defective)."""
    from torchmetrics.functional.classification import binary_roc

    from ..metrics import image_auroc
    from ..metrics.checks import image_inputs, in_unit_interval

    auroc = image_auroc(scores, defective)  # raises for a single class, NaN scores, mismatched lengths
    s, y = image_inputs(scores, defective)
    fpr, tpr, _ = binary_roc(in_unit_interval(s), y.long(), thresholds=None)
    return {"auroc": auroc, "fpr": [round(float(v), 6) for v in fpr], "tpr": [round(float(v), 6) for v in tpr],
            "count": {"good": int((~y).sum()), "defective": int(y.sum())}}


def roc_curves(scores: torch.Tensor, defective: torch.Tensor, types: Optional[Sequence[str]] = None
               ) -> Dict[str, Dict[str, Any]]:
    """The overall curve, then one per defect type (its images against every defect-free one), by name."""
    from ..metrics import GOOD

    curves = {OVERALL: roc_curve(scores, defective)}
    if types is not None:
        good = ~defective
        for name in sorted(set(types) - {GOOD}):
            keep = good | torch.tensor([t == name for t in types], dtype=torch.bool)
            try:
                curves[name] = roc_curve(scores[keep], defective[keep])
            except ValueError as error:
                raise ValueError(f"defect type {name!r}: {error}") from error
    return curves


__all__ = ["detector_scores", "roc_curve", "roc_curves", "OVERALL"]
