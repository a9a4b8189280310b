"""Checked metric inputs: what every metric of :mod:`detectors.metrics` refuses, and the rank transform they share.

Every metric is exact (no threshold binning), computed on the CPU in float64 where we do the arithmetic ourselves,
and refuses input on which it would be meaningless: mismatched shapes, non-binary ground truth, NaN/inf scores, empty
input, or a single class (AUROC with no anomalous image is not 0.5, it is undefined). A silently wrong number in a
benchmark table is worse than an exception. The checks here turn the caller's tensors or arrays into detached CPU
tensors (scores float64, ground truth bool) or raise a ``ValueError`` that names what is wrong.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_tensor(x: Any, name: str) -> torch.Tensor:
    """A detached CPU tensor of a real (bool, integer or floating) dtype."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be numeric (bool, int or float), got a numpy array of dtype {arr.dtype}")
        # a copy, because torch.from_numpy refuses read-only arrays and shares memory with the caller's array
        t = torch.from_numpy(np.array(arr, copy=True))
    if t.is_complex():
        raise ValueError(f"{name} must be real-valued, got dtype {t.dtype}")
    return t


def check_finite(t: torch.Tensor, name: str) -> None:
    bad = ~torch.isfinite(t)
    if bad.any():
        n_nan = int(torch.isnan(t).sum())
        n_inf = int(bad.sum()) - n_nan
        first = np.unravel_index(int(bad.flatten().nonzero()[0, 0]), tuple(t.shape))
        first = tuple(int(i) for i in first)
        where = first[0] if len(first) == 1 else first
        raise ValueError(
            f"{name} must be finite; found {n_nan} NaN and {n_inf} inf value(s) (first at index {where}) "
            f"in shape {tuple(t.shape)}"
        )


def binary(t: torch.Tensor, name: str) -> torch.Tensor:
    """``t`` as a bool tensor; ``t`` must hold only 0/1 (or be bool)."""
    if t.dtype == torch.bool:
        return t
    ok = (t == 0) | (t == 1)
    if not ok.all():
        found = torch.unique(t[~ok].to(torch.float64))[:5].tolist()
        raise ValueError(f"{name} must be binary (0/1 or bool); found other values {found} in shape {tuple(t.shape)}")
    return t != 0


def image_inputs(scores: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores float64 (N,), labels bool (N,)), validated."""
    s = to_tensor(scores, "scores")
    y = to_tensor(labels, "labels")
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D with one score per image, got shape {tuple(s.shape)}")
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D with one label per image, got shape {tuple(y.shape)}")
    if s.shape != y.shape:
        raise ValueError(
            f"scores and labels must have the same length, got {s.shape[0]} scores and {y.shape[0]} labels"
        )
    if s.numel() == 0:
        raise ValueError("scores and labels are empty; need at least one normal and one anomalous image")
    s = s.to(torch.float64)
    check_finite(s, "scores")
    return s, binary(y, "labels")


def per_image(t: torch.Tensor, name: str) -> torch.Tensor:
    """(N, 1, H, W) or (N, H, W) -> (N, H, W)."""
    if t.ndim == 4 and t.shape[1] == 1:
        return t[:, 0]
    if t.ndim == 3:
        return t
    raise ValueError(f"{name} must have shape (N, 1, H, W) or (N, H, W), got {tuple(t.shape)}")


def pixel_inputs(maps: Any, masks: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps float64 (N, H, W), masks bool (N, H, W)), validated.

    A (N, 1, H, W) map with a (N, H, W) mask (or the reverse) is accepted: the channel axis carries no information.
    """
    m = to_tensor(maps, "maps").to(torch.float64)
    g = to_tensor(masks, "masks")
    m3 = per_image(m, "maps")
    g3 = per_image(g, "masks")
    if m3.shape != g3.shape:
        raise ValueError(
            f"maps and masks must have the same shape, got maps {tuple(m.shape)} and masks {tuple(g.shape)}"
        )
    if m3.numel() == 0:
        raise ValueError(f"maps and masks are empty (shape {tuple(m.shape)})")
    check_finite(m, "maps")  # on the caller's shape, so the index it reports is theirs
    return m3, binary(g3, "masks")


def check_fpr_limit(fpr_limit: Any) -> float:
    try:
        limit = float(fpr_limit)
    except (TypeError, ValueError):
        raise ValueError(f"fpr_limit must be a number in (0, 1], got {fpr_limit!r}") from None
    if not 0.0 < limit <= 1.0:  # also false for NaN
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit!r}")
    return limit


def check_both_classes(target: torch.Tensor, metric: str, unit: str) -> None:
    n = target.numel()
    n_pos = int(target.sum())
    if n_pos == 0:
        raise ValueError(f"{metric} undefined: all {n} {unit} are normal, none is anomalous")
    if n_pos == n:
        raise ValueError(f"{metric} undefined: all {n} {unit} are anomalous, none is normal")


def in_unit_interval(x: torch.Tensor) -> torch.Tensor:
    """``x`` mapped into [0, 1] without changing its order or its ties.

    torchmetrics treats predictions outside [0, 1] as logits and applies a sigmoid, which in floating point maps all
    large scores (distances, negative log-likelihoods around 20 and above) to exactly 1.0 and so merges them into one
    tie. Scores already in [0, 1] pass unchanged; others are replaced by their dense rank scaled to [0, 1], which is
    exact (ranks below 2**53 are exact in float64) and keeps every rank-based metric unchanged.
    """
    if bool((x >= 0).all()) and bool((x <= 1).all()):
        return x
    uniq, inverse = torch.unique(x, sorted=True, return_inverse=True)
    return inverse.to(torch.float64) / max(uniq.numel() - 1, 1)
