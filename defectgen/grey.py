"""One definition of grey: a leaf module, importable from parts, operators, readers and detectors alike."""
from __future__ import annotations

import numpy as np
import torch

#: ITU-R 601 luma weights: the grey level of an RGB pixel everywhere in defectgen
LUMA = (0.299, 0.587, 0.114)


def luma(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB -> ``(B, 1, H, W)`` grey (float in, float out)."""
    return LUMA[0] * x[:, :1] + LUMA[1] * x[:, 1:2] + LUMA[2] * x[:, 2:]


def grey(x: torch.Tensor) -> torch.Tensor:
    """``(B, 1 | 3, H, W)`` -> ``(B, 1, H, W)``: grey images as they are, RGB as :func:`luma`."""
    return x if x.shape[1] == 1 else luma(x)


def luma_array(pixels: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32 luma of an ``(H, W, 1 | 3)`` image array (uint8 levels stay on 0..255)."""
    if pixels.shape[2] == 1:
        return pixels[:, :, 0].astype(np.float32)
    return pixels.astype(np.float32) @ np.asarray(LUMA, dtype=np.float32)
