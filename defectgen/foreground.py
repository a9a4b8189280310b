"""Where a defect may land: per-image foreground masks, given or estimated, and sampling points on them.

For object categories (a bottle, a screw) a defect on the background means nothing. Every operator takes
``foreground=`` at construction: ``None`` (anywhere), ``"given"`` (each call passes a ``(B, 1, H, W)`` mask),
or an estimate from the image itself by Otsu's threshold on the grey level: ``"otsu_dark"`` / ``"otsu_bright"``
pick the darker / brighter class, and ``"otsu"`` picks the class that touches less of the image border,
which is the object in the usual centred-object photograph whatever its brightness.
"""
from __future__ import annotations

from typing import Optional

import torch

from .grey import luma

FOREGROUND_MODES = ("given", "otsu", "otsu_dark", "otsu_bright")


def check_foreground_mode(mode: object) -> Optional[str]:
    if mode is None or mode in FOREGROUND_MODES:
        return mode
    raise ValueError(f"foreground must be None or one of {FOREGROUND_MODES}, got {mode!r}")


def check_foreground_mask(foreground: object, images: torch.Tensor) -> torch.Tensor:
    """Validate a given foreground mask against the batch; returns it as ``(B, 1, H, W)`` bool on the device."""
    if not isinstance(foreground, torch.Tensor):
        raise TypeError(f"foreground must be a (B, 1, H, W) tensor, got {type(foreground).__name__}")
    b, _, h, w = images.shape
    if foreground.ndim == 3:
        foreground = foreground.unsqueeze(1)
    if foreground.shape != (b, 1, h, w):
        raise ValueError(f"foreground must have shape {(b, 1, h, w)} (or {(b, h, w)}) to match the images, "
                         f"got {tuple(foreground.shape)}")
    if foreground.dtype.is_floating_point and not torch.isfinite(foreground).all():
        raise ValueError("foreground contains NaN or infinite values")
    return foreground.to(device=images.device) != 0


def grey_levels(images: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` integer grey levels 0..255 (ITU-R 601 luma for RGB)."""
    x = images.float()
    if images.dtype != torch.uint8:
        x = x * 255.0
    if x.shape[1] == 3:
        x = luma(x)
    return x[:, 0].round().clamp_(0, 255).long()


def otsu_thresholds(grey: torch.Tensor) -> torch.Tensor:
    """Per-image Otsu threshold ``t`` (``(B,)`` int64): the classes are ``grey <= t`` and ``grey > t``."""
    b = grey.shape[0]
    offsets = torch.arange(b, device=grey.device).view(b, 1, 1) * 256
    hist = torch.bincount((grey + offsets).reshape(-1), minlength=b * 256).view(b, 256).double()
    levels = torch.arange(256, device=grey.device, dtype=torch.float64)
    w0 = hist.cumsum(1)
    m0 = (hist * levels).cumsum(1)
    total, mean_total = w0[:, -1:], m0[:, -1:]
    w1 = total - w0
    # between-class variance, up to a constant: (mu_total * w0 - m0)^2 / (w0 * w1)
    between = (mean_total / total.clamp_min(1) * w0 - m0) ** 2 / (w0 * w1).clamp_min(1e-12)
    between = torch.where((w0 > 0) & (w1 > 0), between, -1.0)
    return between.argmax(1)


def estimate_foreground(images: torch.Tensor, mode: str) -> torch.Tensor:
    """``(B, 1, H, W)`` bool foreground of each image by Otsu's threshold (see the module docstring)."""
    grey = grey_levels(images)
    threshold = otsu_thresholds(grey).view(-1, 1, 1)
    bright = grey > threshold
    if mode == "otsu_bright":
        fg = bright
    elif mode == "otsu_dark":
        fg = ~bright
    elif mode == "otsu":
        border = torch.cat([bright[:, 0], bright[:, -1], bright[:, :, 0], bright[:, :, -1]], dim=1).float()
        # the object is the class that touches less of the border
        bright_is_background = border.mean(1) > 0.5
        fg = torch.where(bright_is_background.view(-1, 1, 1), ~bright, bright)
    else:
        raise ValueError(f"cannot estimate a foreground with mode {mode!r}")
    return fg.unsqueeze(1)


def sample_foreground_points(foreground: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``(B, count, 2)`` float ``(row, col)`` pixel centres drawn uniformly from each image's foreground.

    The uniform draws come from ``generator`` (on its device) and are mapped to pixels by inverse-CDF
    lookup, so the result depends only on the generator and the masks. Images with an empty foreground get
    points drawn uniformly over the whole image.
    """
    b, _, h, w = foreground.shape
    device = foreground.device
    u = torch.rand(b, count, generator=generator, device=generator.device, dtype=torch.float64).to(device)
    flat = foreground.reshape(b, h * w)
    flat = torch.where(flat.any(1, keepdim=True), flat, True)
    cdf = flat.cumsum(1)
    total = cdf[:, -1:]
    k = torch.minimum((u * total).long(), total - 1) + 1  # the k-th foreground pixel, 1-based
    index = torch.searchsorted(cdf, k)
    return torch.stack([index // w, index % w], dim=-1).float() + 0.5
