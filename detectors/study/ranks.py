"""Spearman's rank correlation with a confidence interval: does one test set rank candidates as another does?

Used by the synthetic validation of a study: for each detector, the families' mean metric on a synthetic test
set against the same on the real one; and by its method ranking (:mod:`.methods`): the detectors' scores.
Ties get the average of the ranks they span (so a constant vector has no defined correlation: ``nan``). The
interval is Fisher's z-transform with the standard error ``sqrt(1.06 / (n - 3))`` of Fieller, Hartley & Pearson
(1957), which is what Spearman's coefficient needs instead of Pearson's ``1 / sqrt(n - 3)``; it needs ``n >= 4``
and is wide for the few candidates a study has (8 families: +-0.7 around 0.5), which is the honest answer.
At rho = +-1 the transform is infinite and the interval would collapse to the point (certainty from 8
candidates); there rho is taken half a step of the statistic's resolution from the bound (the next value
below 1 is one adjacent swap: 1 - 12 / (n (n^2 - 1))), so a perfect ranking of 8 gets [0.93, 1.00], not [1, 1].
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

Z_95 = 1.959963984540054


def average_ranks(values: Sequence[float]) -> list:
    """Ranks ``1..n`` of ``values`` (ascending), ties sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's correlation of the average ranks; ``nan`` when either side is constant."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs two sequences of one length, got {len(x)} and {len(y)}")
    if len(x) < 2:
        return float("nan")
    rx, ry = average_ranks(x), average_ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return float("nan")
    return sxy / math.sqrt(sxx * syy)


def spearman_interval(rho: float, n: int, z: float = Z_95) -> Tuple[float, float]:
    """The confidence interval of ``rho`` from ``n`` pairs (95 % by default); ``(nan, nan)`` for ``n < 4``; at
    ``rho = +-1`` it is that of half a resolution step inside the bound (module docstring), and still reaches it."""
    if n < 4 or math.isnan(rho):
        return float("nan"), float("nan")
    step = 6 / (n * (n * n - 1))  # half of one adjacent swap's change of rho: the statistic's resolution
    clipped = max(min(rho, 1 - step), -1 + step)
    centre, half = math.atanh(clipped), z * math.sqrt(1.06 / (n - 3))
    low, high = math.tanh(centre - half), math.tanh(centre + half)
    if abs(rho) == 1:  # the observed value stays inside its interval
        low, high = (low, 1.0) if rho > 0 else (-1.0, high)
    return low, high
