"""anomalib's inference output to defectgen's one :class:`~detectors.types.Prediction`.

In eval mode an anomalib model returns an ``InferenceBatch`` whose ``pred_score`` is ``(B,)`` or ``(B, 1)`` and
whose ``anomaly_map`` is ``(B, H, W)`` or ``(B, 1, H, W)`` (``None`` for image-only models), in the order of the
input batch. Scores are raw (post-processing is off, so no threshold or min-max statistics of a validation set
enter them; AUROC and AUPRO only need the order). Maps are brought to the detector's image size, so they align
pixel for pixel with the input images and their masks.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F

from ..types import Prediction


def to_prediction(output: Any, batch: int, image_size: int) -> Prediction:
    """The :class:`Prediction` of an ``InferenceBatch`` for a batch of ``batch`` images at ``image_size`` px."""
    maps = _maps(getattr(output, "anomaly_map", None), batch, image_size)
    score = getattr(output, "pred_score", None)
    if score is None:
        if maps is None:
            raise ValueError("the anomalib model returned neither scores nor maps")
        scores = maps.flatten(1).amax(1)  # a map-only model: the image score is its map's peak
    else:
        scores = torch.as_tensor(score).detach().float().reshape(batch, -1)
        if scores.shape[1] != 1:
            raise ValueError(f"anomalib pred_score has shape {tuple(torch.as_tensor(score).shape)}, not ({batch},)")
        scores = scores[:, 0]
    return Prediction(scores.contiguous(), maps)


def _maps(anomaly_map: Optional[torch.Tensor], batch: int, image_size: int) -> Optional[torch.Tensor]:
    if anomaly_map is None:
        return None
    maps = torch.as_tensor(anomaly_map).detach().float()
    if maps.ndim == 3:
        maps = maps.unsqueeze(1)
    if maps.ndim != 4 or maps.shape[0] != batch or maps.shape[1] != 1:
        raise ValueError(f"anomalib anomaly_map has shape {tuple(anomaly_map.shape)}, not ({batch}, 1, H, W)")
    if tuple(maps.shape[-2:]) != (image_size, image_size):
        maps = F.interpolate(maps, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return maps.contiguous()


__all__ = ["to_prediction"]
