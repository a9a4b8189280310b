"""Argument validation shared by every part and operator.

Errors name the argument and say what was expected, so a bad recipe fails at construction time with a
message a user can act on instead of a silent wrong result deep in a training loop.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Optional, Sequence, Tuple

import torch

SUPPORTED_CHANNELS = (1, 3)


def check_images(images: object, name: str = "images") -> Tuple[int, int, int, int]:
    """Validate a ``(B, C, H, W)`` batch and return its shape."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        hint = " (add a batch dimension with images.unsqueeze(0))" if images.ndim == 3 else ""
        raise ValueError(f"{name} must have 4 dimensions (B, C, H, W), got shape {tuple(images.shape)}{hint}")
    if not (images.dtype == torch.uint8 or images.dtype.is_floating_point):
        raise TypeError(f"{name} must be uint8 or floating point, got {images.dtype}")
    b, c, h, w = images.shape
    if c not in SUPPORTED_CHANNELS:
        raise ValueError(f"{name} must have 1 (grayscale) or 3 (RGB) channels, got C={c}")
    if h < 1 or w < 1:
        raise ValueError(f"{name} must have a non-empty image plane, got H={h}, W={w}")
    return b, c, h, w


def check_channels(value: object, name: str = "channels") -> int:
    """1 (grayscale) or 3 (RGB): the channel counts images are read into."""
    if isinstance(value, bool) or value not in SUPPORTED_CHANNELS:
        raise ValueError(f"{name} must be 1 (grayscale) or 3 (RGB), got {value!r}")
    return int(value)


def check_probability(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
    value = float(value)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def check_number(value: object, name: str, low: Optional[float] = None, high: Optional[float] = None,
                 low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def check_range(value: object, name: str, low: Optional[float] = None, high: Optional[float] = None,
                low_open: bool = False) -> Tuple[float, float]:
    """Validate a ``(min, max)`` range with optional bounds; returns a tuple of floats."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"{name} must be a (min, max) pair of numbers, got {value!r}")
    lo = check_number(value[0], f"{name}[0]", low, high, low_open)
    hi = check_number(value[1], f"{name}[1]", low, high, low_open)
    if lo > hi:
        raise ValueError(f"{name} must have min <= max, got {tuple(value)}")
    return (lo, hi)


def check_int(value: object, name: str, low: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def parse_device(device) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device`` -> a ``torch.device``, whether or not it exists
    here (a device named for another machine: an executor's worker); a ``ValueError`` for any other spelling."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return parsed


def resolve_device(device) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device`` ->
    a ``torch.device`` that exists here; a ``ValueError`` saying why otherwise (every API and command that
    takes a device resolves it here, so they accept the same spellings and fail the same way)."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = parse_device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available here (use 'cpu')")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} asked for, but this machine has {torch.cuda.device_count()} "
                             "CUDA device(s)")
    return resolved
