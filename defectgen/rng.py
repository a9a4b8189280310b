"""Explicit randomness: every draw goes through a ``torch.Generator``, never a global RNG.

Per-sample scalars are drawn on the generator's device as ``(B,)`` tensors and moved to the images' device
by the caller, so a CPU generator gives the same parameters whatever device the images are on.
"""
from __future__ import annotations

import math
import os
from typing import Optional, Tuple

import torch


def resolve_generator(generator: Optional[torch.Generator], seed: Optional[int],
                      fallback: "OwnGenerator") -> torch.Generator:
    if generator is not None and seed is not None:
        raise ValueError("pass either generator= or seed=, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        return torch.Generator().manual_seed(seed)
    return fallback.get()


class OwnGenerator:
    """The generator an operator uses when a call passes neither ``generator`` nor ``seed``.

    With ``seed=None`` it is seeded from the OS. It is re-seeded when it finds itself in a new process:
    forked DataLoader workers would otherwise all inherit the same state and make the same defects.
    """

    def __init__(self, seed: Optional[int] = None):
        self.seed = seed
        self._generator: Optional[torch.Generator] = None
        self._pid: Optional[int] = None

    def get(self) -> torch.Generator:
        pid = os.getpid()
        if self._generator is None or (self.seed is None and pid != self._pid):
            seed = self.seed if self.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
            self._generator = torch.Generator().manual_seed(seed)
            self._pid = pid
        return self._generator

    def __getstate__(self):  # a pickled op starts its own stream in the new process
        return {"seed": self.seed}

    def __setstate__(self, state):
        self.__init__(state["seed"])


def uniform(n: int, value_range: Tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    lo, hi = value_range
    return torch.rand(n, generator=generator, device=generator.device) * (hi - lo) + lo


def log_uniform(n: int, value_range: Tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    lo, hi = value_range
    return torch.exp(uniform(n, (math.log(lo), math.log(hi)), generator))


def bernoulli(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=generator.device) < p


def integers_below(upper_exclusive: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One uniform integer in ``[0, upper)`` per element of a ``(B,)`` int64 tensor (upper >= 1)."""
    u = torch.rand(upper_exclusive.shape, generator=generator, device=generator.device)
    upper = upper_exclusive.to(generator.device)
    return torch.minimum((u * upper).long(), upper - 1)


def index_seed(seed: int, index: int, stream: str = "") -> int:
    """A 63-bit seed that depends only on ``(seed, index, stream)``: per-item randomness for data sets.

    Used wherever item ``i`` of a data set must get the same defect however the work is split (batches,
    shards, worker processes, resumed runs). A hash, not ``seed + index``, so neighbouring items and
    neighbouring seeds get unrelated streams; ``stream`` separates independent uses of the same pair.
    """
    import hashlib

    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index must be a non-negative int, got {index!r}")
    digest = hashlib.blake2b(f"defectgen:{stream}:{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
