"""The two data types every detector, reader and evaluator shares: a labelled set and a prediction.

- :class:`LabelledSet`: images with their defect boxes (and, where known, masks), whatever the file format
  they were read from (YOLO, COCO, MVTec, Pascal VOC, DeepPCB pairs) or made by defectgen. Class ids follow
  defectgen's convention: ``class_names[k]`` has id ``k + 1``; ``0`` is "no defect" (and torchvision's
  background), so a box label is never 0.
- :class:`Prediction`: what a detector says about a batch. Every detector gives an image-level score (higher
  = more likely defective), so anomaly detectors and object detectors meet on one axis (image AUROC); an
  anomaly detector adds pixel maps, an object detector boxes with scores and class ids. The evaluator picks
  the metrics by the fields present.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Sequence, Union

import torch

from defectgen.io.labelled.labelled_set import AGNOSTIC_CLASS, LabelledSet  # noqa: F401  (re-exported)

class TrainingBatch(NamedTuple):
    """One batch from a training source (see :mod:`detectors.data.sources`), on the source's device."""

    images: torch.Tensor        # (B, C, S, S) uint8
    boxes: List[torch.Tensor]   # B tensors (n_i, 4) float32 x1 y1 x2 y2, pixels of the S x S image
    labels: List[torch.Tensor]  # B tensors (n_i,) int64 class ids 1..K


@dataclass(frozen=True)
class Prediction:
    """A detector's output for a batch of ``B`` images.

    Attributes:
        scores: ``(B,)`` float32 image-level scores, higher = more likely defective (an anomaly score, or an
            object detector's highest box score, 0 where it found no box).
        maps: optional ``(B, 1, H, W)`` float32 pixel anomaly maps.
        boxes: optional list of ``B`` tensors ``(n_i, 4)`` float32 ``x1 y1 x2 y2`` in the input's pixels.
        box_scores: optional list of ``B`` tensors ``(n_i,)`` float32 confidences.
        box_labels: optional list of ``B`` tensors ``(n_i,)`` int64 class ids (``1..K``).
    """

    scores: torch.Tensor
    maps: Optional[torch.Tensor] = None
    boxes: Optional[List[torch.Tensor]] = None
    box_scores: Optional[List[torch.Tensor]] = None
    box_labels: Optional[List[torch.Tensor]] = None

    def __post_init__(self):
        b = len(self.scores)
        if self.scores.ndim != 1:
            raise ValueError(f"Prediction.scores must be (B,), got {tuple(self.scores.shape)}")
        if self.maps is not None and (self.maps.ndim != 4 or len(self.maps) != b):
            raise ValueError(f"Prediction.maps must be ({b}, 1, H, W), got {tuple(self.maps.shape)}")
        box_fields = (self.boxes, self.box_scores, self.box_labels)
        if any(f is not None for f in box_fields):
            if any(f is None for f in box_fields):
                raise ValueError("Prediction: boxes, box_scores and box_labels come together")
            if not len(self.boxes) == len(self.box_scores) == len(self.box_labels) == b:
                raise ValueError(f"Prediction: need {b} entries of boxes, box_scores and box_labels")

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def has_maps(self) -> bool:
        return self.maps is not None

    @property
    def has_boxes(self) -> bool:
        return self.boxes is not None

    def to(self, device: Union[str, torch.device]) -> "Prediction":
        move = lambda items: None if items is None else [t.to(device) for t in items]  # noqa: E731
        return Prediction(self.scores.to(device), None if self.maps is None else self.maps.to(device),
                          move(self.boxes), move(self.box_scores), move(self.box_labels))

    @classmethod
    def from_boxes(cls, boxes: List[torch.Tensor], box_scores: List[torch.Tensor], box_labels: List[torch.Tensor],
                   device: Union[str, torch.device, None] = None) -> "Prediction":
        """An object detector's prediction: the image score is each image's highest box score (0 without a box)."""
        device = device if device is not None else (box_scores[0].device if box_scores else "cpu")
        counts = torch.tensor([len(s) for s in box_scores], dtype=torch.int64, device=device)
        owner = torch.repeat_interleave(torch.arange(len(box_scores), device=device), counts)
        flat = torch.cat(box_scores).float() if box_scores else torch.zeros(0, device=device)
        scores = torch.zeros(len(box_scores), device=device).scatter_reduce(0, owner, flat, "amax", include_self=True)
        return cls(scores, boxes=boxes, box_scores=box_scores, box_labels=box_labels)

    @staticmethod
    def cat(parts: Sequence["Prediction"]) -> "Prediction":
        """Join predictions of consecutive batches (all with the same fields)."""
        if not parts:
            raise ValueError("Prediction.cat needs at least one prediction")
        join = lambda name: None if getattr(parts[0], name) is None else \
            [t for p in parts for t in getattr(p, name)]  # noqa: E731
        return Prediction(torch.cat([p.scores for p in parts]),
                          None if parts[0].maps is None else torch.cat([p.maps for p in parts]),
                          join("boxes"), join("box_scores"), join("box_labels"))


__all__ = ["LabelledSet", "Prediction", "TrainingBatch", "AGNOSTIC_CLASS"]
