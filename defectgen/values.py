"""Value ranges: the one place that decides what "black", "white" and "grey" mean for a batch.

Operators paint in the space of ``[0, 1]`` float (or ``0..255`` uint8) images: fills, colour jitter, random
colours and clamps are written for it. Training loops often hand over other spaces — ImageNet-normalised
tensors (about ``[-2, 2.6]``), ``[-1, 1]``, float ``[0, 255]`` — where a fill of 0.5 is not grey and a clamp to
``[0, 1]`` flattens the defect into a patch a network spots by its value range alone. So every call states its
space (``value_range=(lo, hi)``, or ``mean=`` / ``std=`` of a normalisation) and :class:`ValueSpace` maps the
batch to ``[0, 1]``, lets the operator paint there, and maps the defect back; pixels outside the mask are the
caller's own, bit for bit. Float input outside its declared space (beyond rounding), NaN or infinity is an error
naming what was found and the argument that fixes it, never a silent clamp.

For ``[0, 1]`` float and uint8 input nothing is converted: results are bit-identical to painting directly.
"""
from __future__ import annotations

from numbers import Real
from typing import Optional, Sequence, Tuple, Union

import torch

Number = Union[float, Sequence[float]]

TOLERANCE = 1e-3
"""How far (as a fraction of the range's width) float input may stray outside its range before it is refused:
resampling and float rounding overshoot by a little; a wrong range misses by far more."""


class ValueSpace:
    """An affine per-channel map between a batch's values and ``[0, 1]``: ``unit = (x - low) / (high - low)``.

    Build it with :func:`value_space`; ``low`` / ``high`` are ``(C,)`` float32 tensors (the values that mean
    black and white in each channel).
    """

    def __init__(self, low: torch.Tensor, high: torch.Tensor, described: str, fix: str):
        self.low, self.high = low, high
        self.described, self.fix = described, fix

    def _view(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return t.to(like.device).view(1, -1, 1, 1)

    def to_unit(self, images: torch.Tensor) -> torch.Tensor:
        """The batch as float32 in ``[0, 1]`` (clamped: values within the tolerance land on the edge)."""
        x = images.float()
        low, high = self._view(self.low, x), self._view(self.high, x)
        return ((x - low) / (high - low)).clamp_(0, 1)

    def from_unit(self, unit: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        low, high = self._view(self.low, unit), self._view(self.high, unit)
        return (unit.float() * (high - low) + low).to(dtype)

    def check(self, images: torch.Tensor, name: str = "images") -> None:
        """Refuse NaN, infinity and values outside the space (beyond :data:`TOLERANCE`); one pass over the batch."""
        if images.numel() == 0:
            return
        if bool((self.low == self.low[0]).all() and (self.high == self.high[0]).all()):
            found_low, found_high = (v.view(1) for v in torch.aminmax(images))  # one read of the batch
        else:
            found_low, found_high = images.amin(dim=(0, 2, 3)), images.amax(dim=(0, 2, 3))
        if bool(torch.isnan(found_low).any() | torch.isnan(found_high).any()):
            raise ValueError(f"{name} contain NaN values")
        if bool(torch.isinf(found_low).any() | torch.isinf(found_high).any()):
            raise ValueError(f"{name} contain infinite values")
        low, high = self.low.to(images.device), self.high.to(images.device)
        # rounding: a fraction of the range, or the dtype's resolution at these values (float16 near 100: 0.06)
        slack = torch.maximum(TOLERANCE * (high - low),
                              2 * torch.finfo(images.dtype).eps * torch.maximum(low.abs(), high.abs()))
        if bool((found_low.float() < low - slack).any() | (found_high.float() > high + slack).any()):
            shown = f"[{float(found_low.min()):.4g}, {float(found_high.max()):.4g}]"
            raise ValueError(f"{name} hold values in {shown} but were declared {self.described}; {self.fix}")


def value_scale(dtype: torch.dtype) -> float:
    """Largest intensity of a dtype: 255 for uint8 images, 1.0 for float images (assumed in [0, 1])."""
    return 255.0 if dtype == torch.uint8 else 1.0


def _per_channel(value: Number, channels: int, name: str) -> torch.Tensor:
    if isinstance(value, Real) and not isinstance(value, bool):
        values = [float(value)] * channels
    elif isinstance(value, (Sequence, torch.Tensor)) and not isinstance(value, str):
        values = [float(v) for v in value]
        if len(values) == 1:
            values = values * channels
    else:
        raise TypeError(f"{name} must be a number or one number per channel, got {value!r}")
    if len(values) != channels:
        raise ValueError(f"{name} must give 1 or {channels} values (one per channel), got {len(values)}")
    t = torch.tensor(values, dtype=torch.float32)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got {values}")
    return t


_FIX = ("pass value_range=(low, high) for the range the batch is in, or mean= and std= if it was normalised "
        "(x - mean) / std from [0, 1] images")


def value_space(images: torch.Tensor, value_range: Optional[Tuple[Number, Number]] = None,
                mean: Optional[Number] = None, std: Optional[Number] = None) -> Optional[ValueSpace]:
    """The space of ``images`` for an operator call; ``None`` when it is the operators' own (``[0, 1]`` float,
    uint8), after checking that float input lies in it.

    Args:
        value_range: ``(low, high)``: the values that mean black and white (numbers, or one per channel);
            default ``(0, 1)`` for float input.
        mean, std: the input was normalised ``(x - mean) / std`` from ``[0, 1]`` images (numbers or one per
            channel, e.g. ImageNet's); then black is ``-mean / std`` and white ``(1 - mean) / std``.

    Raises:
        ValueError: NaN or infinite float input, float input outside its space, a space with ``low >= high``,
            ``value_range`` together with ``mean`` / ``std``, one of ``mean`` / ``std`` without the other, or a
            value range for uint8 input.
        TypeError: malformed numbers.
    """
    channels = images.shape[1]
    custom = value_range is not None or mean is not None or std is not None
    if images.dtype == torch.uint8:
        if custom:
            raise ValueError("value_range / mean / std describe float input; uint8 images are 0..255 by their dtype")
        return None
    if value_range is not None and (mean is not None or std is not None):
        raise ValueError("give either value_range= or mean= and std=, not both")
    if (mean is None) != (std is None):
        raise ValueError("mean= and std= come together (the normalisation (x - mean) / std)")
    if mean is not None:
        m, s = _per_channel(mean, channels, "mean"), _per_channel(std, channels, "std")
        if not bool((s > 0).all()):
            raise ValueError(f"std must be > 0, got {s.tolist()}")
        low, high = -m / s, (1 - m) / s
        described = f"normalised with mean {_numbers(m)} and std {_numbers(s)} (channels in {_ranges(low, high)})"
    else:
        if value_range is None:
            value_range = (0.0, 1.0)
        if not isinstance(value_range, (tuple, list)) or len(value_range) != 2:
            raise TypeError(f"value_range must be a (low, high) pair, got {value_range!r}")
        low, high = (_per_channel(v, channels, f"value_range[{i}]") for i, v in enumerate(value_range))
        if not bool((low < high).all()):
            raise ValueError(f"value_range must have low < high, got {list(value_range)}")
        described = f"in value_range {_ranges(low, high)}" + ("" if custom else " (the default for float input)")
    space = ValueSpace(low, high, described, _FIX)
    space.check(images)
    default = bool((low == 0).all() and (high == 1).all())
    return None if default else space


def as_unit(images: torch.Tensor, value_range=None, mean=None, std=None) -> torch.Tensor:
    """``images`` in the operators' own space: mapped to ``[0, 1]`` when declared otherwise, else as they are."""
    space = value_space(images, value_range, mean, std)
    return images if space is None else space.to_unit(images)


def space_arguments(value_range: Optional[Tuple[Number, Number]] = None, mean: Optional[Number] = None,
                    std: Optional[Number] = None) -> dict:
    """The ``value_range`` / ``mean`` / ``std`` keywords an adapter passes on to every operator call, checked
    once where they are given (the per-channel counts are checked against each batch)."""
    if value_range is not None and (mean is not None or std is not None):
        raise ValueError("give either value_range= or mean= and std=, not both")
    if (mean is None) != (std is None):
        raise ValueError("mean= and std= come together (the normalisation (x - mean) / std)")
    out = {}
    if value_range is not None:
        if not isinstance(value_range, (tuple, list)) or len(value_range) != 2:
            raise TypeError(f"value_range must be a (low, high) pair, got {value_range!r}")
        out["value_range"] = tuple(value_range)
    if mean is not None:
        out["mean"], out["std"] = mean, std
    return out


def unit_check(images: torch.Tensor, name: str, fix: str) -> None:
    """Refuse float ``images`` outside ``[0, 1]`` (beyond :data:`TOLERANCE`), NaN or infinity; ``fix`` ends the
    message (what the caller should do instead)."""
    if images.is_floating_point():
        ones = torch.ones(images.shape[1])
        ValueSpace(ones * 0, ones, "float in [0, 1]", fix).check(images, name)


def _numbers(t: torch.Tensor) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in t) + "]"


def _ranges(low: torch.Tensor, high: torch.Tensor) -> str:
    if bool((low == low[0]).all() and (high == high[0]).all()):
        return f"[{float(low[0]):.4g}, {float(high[0]):.4g}]"
    return ", ".join(f"[{float(a):.4g}, {float(b):.4g}]" for a, b in zip(low, high))


__all__ = ["ValueSpace", "value_space", "as_unit", "space_arguments", "unit_check", "value_scale", "TOLERANCE"]
