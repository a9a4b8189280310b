"""One definition of grey: a leaf module, importable from parts, operators and foreground alike."""
from __future__ import annotations

import torch

#: ITU-R 601 luma weights: the grey level of an RGB pixel everywhere in defectgen
LUMA = (0.299, 0.587, 0.114)


def luma(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB -> ``(B, 1, H, W)`` grey (float in, float out)."""
    return LUMA[0] * x[:, :1] + LUMA[1] * x[:, 1:2] + LUMA[2] * x[:, 2:]
