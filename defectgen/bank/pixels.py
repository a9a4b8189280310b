"""Reading a bank builder's inputs into pixels: image and mask files, tensors and arrays, as numpy arrays.

Every builder of :class:`~defectgen.bank.DefectBank` accepts images and masks as files, ``(C, H, W)`` / ``(H, W)``
tensors (uint8, or float in [0, 1]) or ``(H, W[, C])`` uint8 arrays; these functions turn each into the one form
the cutter works on, and name the input (``where``) in every error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import torch

from ..grey import luma_array

PathLike = Union[str, Path]
ImageLike = Union[PathLike, torch.Tensor, np.ndarray]


def as_list(items, name: str) -> list:
    if isinstance(items, torch.Tensor) and (items.ndim == 4 or (name == "masks" and items.ndim == 3)):
        return list(items)
    if isinstance(items, (str, Path, torch.Tensor, np.ndarray)):
        raise TypeError(f"{name} must be a sequence (files, tensors, arrays) or one (N, C, H, W) tensor, "
                        f"got {type(items).__name__}" + (f" of shape {tuple(items.shape)}" if hasattr(items, "shape")
                                                         else ""))
    return list(items)


def read_pixels(image: ImageLike, where: str) -> np.ndarray:
    """``(H, W, 1 | 3)`` uint8."""
    if isinstance(image, (str, Path)):
        from ..io.images import read_image

        return read_image(image)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 2:
            t = t.unsqueeze(0)
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"{where}: an image tensor must be (C, H, W) with C in (1, 3) or (H, W), "
                             f"got {tuple(image.shape)}")
        if t.dtype.is_floating_point:
            if not torch.isfinite(t).all():
                raise ValueError(f"{where}: image contains NaN or infinite values")
            t = (t.float() * 255).round().clamp(0, 255).to(torch.uint8)
        elif t.dtype != torch.uint8:
            raise TypeError(f"{where}: image tensors must be uint8 or float in [0, 1], got {t.dtype}")
        return np.ascontiguousarray(t.permute(1, 2, 0).numpy())
    if isinstance(image, np.ndarray):
        a = image[:, :, None] if image.ndim == 2 else image
        if a.ndim != 3 or a.shape[2] not in (1, 3) or a.dtype != np.uint8:
            raise ValueError(f"{where}: an image array must be (H, W) or (H, W, 1 | 3) uint8, got {image.shape} "
                             f"{image.dtype}")
        return np.ascontiguousarray(a)
    raise TypeError(f"{where}: expected an image file, tensor or array, got {type(image).__name__}")


def read_mask(mask: ImageLike, where: str) -> np.ndarray:
    """``(H, W)`` bool."""
    if isinstance(mask, (str, Path)):
        from ..io.images import read_image

        return read_image(mask).any(axis=2)
    if isinstance(mask, torch.Tensor):
        t = mask.detach().cpu()
        t = t[0] if t.ndim == 3 and t.shape[0] == 1 else t
        if t.ndim != 2:
            raise ValueError(f"{where}: a mask must be (H, W) or (1, H, W), got {tuple(mask.shape)}")
        return (t >= 0.5 if t.dtype.is_floating_point else t != 0).numpy()
    if isinstance(mask, np.ndarray):
        a = mask[:, :, 0] if mask.ndim == 3 and mask.shape[2] == 1 else mask
        if a.ndim != 2:
            raise ValueError(f"{where}: a mask array must be (H, W), got {mask.shape}")
        return a >= 0.5 if a.dtype.kind == "f" else a != 0
    raise TypeError(f"{where}: expected a mask file, tensor or array, got {type(mask).__name__}")


def as_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """``(H, W, channels)`` uint8: grey as luma (as :func:`defectgen.io.read_image_as` converts), or repeated."""
    if pixels.shape[2] == channels:
        return pixels
    if channels == 3:
        return np.repeat(pixels, 3, axis=2)
    return np.clip(np.round(luma_array(pixels)), 0, 255).astype(np.uint8)[:, :, None]


__all__ = ["PathLike", "ImageLike", "as_list", "read_pixels", "read_mask", "as_channels"]
