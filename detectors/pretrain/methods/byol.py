"""BYOL (Grill et al., NeurIPS 2020): an online network (trunk, projector, predictor) predicts a target network's
projection of the other view; the target (copies of trunk and projector) follows the online one by momentum.

Heads: projector and predictor width -> 1024 -> 256 (the paper's 4096 -> 256, hidden layer scaled down for CPU
budgets). Loss: ``2 - 2 cos(p1, z2') + 2 - 2 cos(p2, z1')``, no negatives (so hard negatives do not apply).
Target momentum 0.996 rising to 1 on a cosine (BYOL §3.2).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .common import Method, MethodOutput, Negatives, follow, frozen_copy, mlp


class BYOL(Method):
    name = "byol"

    def __init__(self, trunk, width: int, dim: int = 256, hidden: int = 1024, momentum: float = 0.996):
        super().__init__()
        self.base_momentum = float(momentum)
        self.projector = mlp([width, hidden, dim])
        self.output_dim = dim  # of the outputs the collapse guard is taken on
        self.predictor = mlp([dim, hidden, dim])
        self.target_trunk, self.target_projector = frozen_copy(trunk), frozen_copy(self.projector)

    def forward(self, trunk, view1: torch.Tensor, view2: torch.Tensor,
                negatives: Optional[Negatives] = None) -> MethodOutput:
        b = len(view1)
        projected = self.projector(trunk(torch.cat([view1, view2])))
        p = F.normalize(self.predictor(projected), dim=1)
        with torch.no_grad():
            z = F.normalize(self.target_projector(self.target_trunk(torch.cat([view1, view2]))), dim=1)
        loss = (2 - 2 * (p[:b] * z[b:]).sum(1)).mean() + (2 - 2 * (p[b:] * z[:b]).sum(1)).mean()
        return MethodOutput(loss, projected[:b])

    def after_step(self, trunk, step: int, steps: int) -> float:
        pairs = [(self.target_trunk, trunk), (self.target_projector, self.projector)]
        return follow(pairs, self.base_momentum, step, steps)
