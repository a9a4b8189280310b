"""MoCo v3 (Chen, Xie & He, ICCV 2021): a query encoder (trunk, projector, predictor), a momentum key encoder
(copies of trunk and projector), and the in-batch InfoNCE loss, symmetrised.

Heads: projector width -> 1024 -> 256 and predictor 256 -> 1024 -> 256, ending in batch norm as the paper's
(scaled down from its 4096-unit hidden layers for CPU budgets). Loss: ``2 tau * CE(q1 k2^T / tau) +
2 tau * CE(q2 k1^T / tau)`` with the keys of the other images as negatives; temperature 0.2 (the paper's ViT
setting, and MoCo v1/v2's; its ResNet setting of 1.0 goes with batches of 4096, where a softer softmax still
sees thousands of negatives, not the tens a CPU batch has). The key encoder follows the query encoder with
momentum 0.99 rising to 1 on a cosine. With hard negatives, each image's defective copy is encoded by the key
encoder in the same pass as the clean keys and added to the denominator of both queries of that image.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .common import Method, MethodOutput, Negatives, contrastive_loss, follow, frozen_copy, mlp


class MoCoV3(Method):
    name = "moco"
    contrastive = True

    def __init__(self, trunk, width: int, dim: int = 256, hidden: int = 1024, temperature: float = 0.2,
                 momentum: float = 0.99):
        super().__init__()
        self.temperature, self.base_momentum = float(temperature), float(momentum)
        self.projector = mlp([width, hidden, dim], last_norm=True)
        self.output_dim = dim  # of the outputs the collapse guard is taken on
        self.predictor = mlp([dim, hidden, dim], last_norm=True)
        self.key_trunk, self.key_projector = frozen_copy(trunk), frozen_copy(self.projector)

    def forward(self, trunk, view1: torch.Tensor, view2: torch.Tensor,
                negatives: Optional[Negatives] = None) -> MethodOutput:
        b = len(view1)
        projected = self.projector(trunk(torch.cat([view1, view2])))
        q = F.normalize(self.predictor(projected), dim=1)
        with torch.no_grad():
            batch = [view1, view2] + ([negatives.images] if negatives is not None else [])
            k = F.normalize(self.key_projector(self.key_trunk(torch.cat(batch))), dim=1)
        targets = torch.arange(b, device=q.device)
        loss = 0
        for query, key in ((q[:b], k[b:2 * b]), (q[b:], k[:b])):
            negative_logits = None if negatives is None else (query * k[2 * b:]).sum(1) / self.temperature
            loss = loss + contrastive_loss(query @ key.T / self.temperature, targets, negative_logits, negatives)
        return MethodOutput(loss * 2 * self.temperature, projected[:b])

    def after_step(self, trunk, step: int, steps: int) -> float:
        pairs = [(self.key_trunk, trunk), (self.key_projector, self.projector)]
        return follow(pairs, self.base_momentum, step, steps)
