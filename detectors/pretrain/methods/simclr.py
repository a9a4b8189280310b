"""SimCLR (Chen et al., ICML 2020): a projector and the NT-Xent loss over the 2B views of a batch.

Head: a two-layer MLP projector (width -> width -> 128), as the paper's. Loss: each view's positive is the other
view of its image; the other 2B - 2 views are its negatives; temperature 0.2 (the paper tunes it between 0.1
and 1). With hard negatives, each image's defective copy is projected in the same forward pass (so batch norm
cannot tell it apart by its batch statistics) and added to the denominator of both its clean views.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .common import Method, MethodOutput, Negatives, contrastive_loss, mlp


class SimCLR(Method):
    name = "simclr"
    contrastive = True

    def __init__(self, width: int, dim: int = 128, temperature: float = 0.2):
        super().__init__()
        self.temperature = float(temperature)
        self.projector = mlp([width, width, dim])
        self.output_dim = dim  # of the outputs the collapse guard is taken on

    def forward(self, trunk, view1: torch.Tensor, view2: torch.Tensor,
                negatives: Optional[Negatives] = None) -> MethodOutput:
        b = len(view1)
        batch = [view1, view2] + ([negatives.images] if negatives is not None else [])
        projected = self.projector(trunk(torch.cat(batch)))
        z = F.normalize(projected, dim=1)
        anchors = z[:2 * b]
        logits = anchors @ anchors.T / self.temperature
        logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
        targets = (torch.arange(2 * b, device=z.device) + b) % (2 * b)  # view 1 of i <-> view 2 of i
        negative_logits = None
        if negatives is not None:
            own = z[2 * b:].repeat(2, 1)  # image i's defective copy, for both of its views
            negative_logits = (anchors * own).sum(1) / self.temperature
        loss = contrastive_loss(logits, targets, negative_logits, negatives)
        return MethodOutput(loss, projected[:b])
