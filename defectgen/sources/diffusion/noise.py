"""Gaussian noise from per-sample seeds, for a whole batch at once.

Diffusion sampling draws noise for every sample at every step. A ``torch.Generator`` per sample would need a
Python loop over the batch, and one generator for the batch would make a sample's noise depend on which other
samples share its batch. Here the noise is a pure function of ``(seed, counter, element index)``: a 32-bit
integer hash (the "0x45d9f3b" mixer, constants below 2^31 so every product fits in int64) turned into two
uniforms and then, by Box-Muller, into one standard normal. So a sample's noise is the same alone or in any
batch, on any device, and replaying a call needs only the seeds stored in its params.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

_MASK = 0xFFFFFFFF
_MULTIPLIER = 0x45D9F3B


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit avalanche hash of int64 tensors holding values in ``[0, 2^32)``."""
    x = x ^ (x >> 16)
    x = (x * _MULTIPLIER) & _MASK
    x = x ^ (x >> 16)
    x = (x * _MULTIPLIER) & _MASK
    return x ^ (x >> 16)


def seeded_normal(seeds: torch.Tensor, counter: int, shape: Sequence[int], device=None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(N, *shape)`` standard normal noise; row ``i`` depends only on ``seeds[i]``, ``counter`` and ``shape``.

    Args:
        seeds: ``(N,)`` integer seeds (any int64 values; the low 32 bits and the high 32 bits are both used).
        counter: which draw this is (e.g. the sampling step), so one seed gives a fresh stream per draw.
        shape: the shape of one sample's noise.
    """
    if seeds.ndim != 1 or seeds.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"seeds must be a (N,) integer tensor, got {tuple(seeds.shape)} {seeds.dtype}")
    device = seeds.device if device is None else torch.device(device)
    seeds = seeds.to(device=device, dtype=torch.int64)
    count = math.prod(shape)
    base = _mix(_mix(seeds & _MASK) ^ ((seeds >> 32) & _MASK))
    base = _mix(base ^ (int(counter) * 0x2545F491 & _MASK))
    index = torch.arange(count, device=device, dtype=torch.int64)
    first = _mix(base[:, None] ^ (2 * index)[None])
    second = _mix(base[:, None] ^ (2 * index + 1)[None])
    # (h + 0.5) / 2^32 lies strictly inside (0, 1): the logarithm is finite
    u1 = (first.double() + 0.5) / 4294967296.0
    u2 = (second.double() + 0.5) / 4294967296.0
    normal = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return normal.to(dtype).reshape(len(seeds), *shape)


def draw_seeds(n: int, generator: torch.Generator) -> torch.Tensor:
    """``(n,)`` int64 seeds drawn from ``generator`` (on its device)."""
    return torch.randint(0, 2 ** 62, (n,), generator=generator, device=generator.device, dtype=torch.int64)
