"""SimSiam (Chen & He, CVPR 2021): a projector and a predictor; each view's prediction matches the other view's
projection, which gets no gradient (the stop-gradient that keeps it from collapsing, §4.1).

Heads: a three-layer projector width -> 1024 -> 1024 -> 1024 ending in batch norm, and a bottleneck predictor
1024 -> 256 -> 1024 (the paper's 2048 / 512, halved for CPU budgets). Loss:
``-(cos(p1, sg(z2)) + cos(p2, sg(z1))) / 2``, in [-1, 1]; no negatives (so hard negatives do not apply).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .common import Method, MethodOutput, Negatives, mlp


class SimSiam(Method):
    name = "simsiam"

    def __init__(self, width: int, dim: int = 1024, hidden: int = 256):
        super().__init__()
        self.projector = mlp([width, dim, dim, dim], last_norm=True)
        self.output_dim = dim  # of the outputs the collapse guard is taken on
        self.predictor = mlp([dim, hidden, dim])

    def forward(self, trunk, view1: torch.Tensor, view2: torch.Tensor,
                negatives: Optional[Negatives] = None) -> MethodOutput:
        b = len(view1)
        z = self.projector(trunk(torch.cat([view1, view2])))
        p = self.predictor(z)
        z = z.detach()  # the stop-gradient
        loss = -(F.cosine_similarity(p[:b], z[b:]).mean() + F.cosine_similarity(p[b:], z[:b]).mean()) / 2
        return MethodOutput(loss, z[:b])
