"""What the method modules share: the method interface, MLP heads, the momentum (EMA) encoder and its schedule,
the collapse guard, and the contrastive cross-entropy with an optional hard negative per anchor."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class MethodOutput:
    """One step of a method: the loss, and the (unnormalised) outputs of view 1 the collapse guard is taken on."""

    loss: torch.Tensor
    outputs: torch.Tensor


@dataclass
class Negatives:
    """Hard negatives for a contrastive method: ``images[i]`` is a defective copy of sample ``i``; ``valid[i]``
    is False where the operator left it unchanged (it is then no negative); ``weight`` multiplies its term in the
    softmax denominator (1: it counts as one more negative)."""

    images: torch.Tensor
    valid: torch.Tensor
    weight: float = 1.0


class Method(nn.Module):
    """A self-supervised method's heads and loss, over a trunk it is given (not owned: the trunk is saved apart).

    ``forward(trunk, view1, view2, negatives=None) -> MethodOutput``; ``after_step(trunk, step, steps)`` is
    called after each optimiser step (the momentum update of BYOL and MoCo) and returns the momentum used, if any.
    """

    name: ClassVar[str] = ""
    contrastive: ClassVar[bool] = False  # has negatives, so takes hard negatives
    output_dim: int  # the width of MethodOutput.outputs

    def forward(self, trunk: nn.Module, view1: torch.Tensor, view2: torch.Tensor,
                negatives: Optional[Negatives] = None) -> MethodOutput:
        raise NotImplementedError

    def after_step(self, trunk: nn.Module, step: int, steps: int) -> Optional[float]:
        return None


def mlp(sizes, last_norm: bool = False) -> nn.Sequential:
    """Linear-BatchNorm-ReLU layers through ``sizes``; the last layer is linear only (with a BatchNorm without
    affine parameters when ``last_norm``, as SimSiam's projector and MoCo v3's heads end)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        layers.append(nn.Linear(a, b, bias=last and not last_norm))
        if not last:
            layers += [nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        elif last_norm:
            layers.append(nn.BatchNorm1d(b, affine=False))
    return nn.Sequential(*layers)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` trained only by :func:`ema_update` (no gradients)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


def cosine_momentum(base: float, step: int, steps: int) -> float:
    """The momentum after ``step`` of ``steps`` steps: ``base`` rising to 1 on a half cosine (BYOL §3.2,
    MoCo v3 §4): ``1 - (1 - base) * (cos(pi * step / steps) + 1) / 2``."""
    return 1 - (1 - base) * (math.cos(math.pi * step / max(steps, 1)) + 1) / 2


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target = momentum * target + (1 - momentum) * online``, parameter by parameter."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)


def follow(pairs, base: float, step: int, steps: int) -> float:
    """Move each ``(target, online)`` pair's target towards its online module with the scheduled momentum
    (:func:`cosine_momentum`); returns the momentum (BYOL's target and MoCo's key encoder)."""
    momentum = cosine_momentum(base, step, steps)
    for target, online in pairs:
        ema_update(target, online, momentum)
    return momentum


def output_std(outputs: torch.Tensor) -> torch.Tensor:
    """The collapse guard (SimSiam §4.1): the per-dimension standard deviation over the batch of the
    L2-normalised outputs, averaged over dimensions. About ``1 / sqrt(d)`` for outputs spread on the sphere,
    0 when every sample maps to the same vector (collapse)."""
    return F.normalize(outputs.detach().float(), dim=1).std(0).mean()


def contrastive_loss(logits: torch.Tensor, targets: torch.Tensor, negative_logits: Optional[torch.Tensor] = None,
                     negatives: Optional[Negatives] = None) -> torch.Tensor:
    """Cross-entropy of ``logits`` (similarities / temperature) against ``targets``, with each row's hard
    negative (``negative_logits[i]``, where ``negatives.valid``) added to the softmax denominator with weight
    ``negatives.weight`` (``+ log(weight)`` on its logit)."""
    if negatives is not None:
        valid = negatives.valid.to(logits.device).repeat(len(logits) // len(negatives.valid))
        extra = negative_logits + math.log(negatives.weight)
        extra = extra.masked_fill(~valid, float("-inf"))
        logits = torch.cat([logits, extra[:, None]], dim=1)
    return F.cross_entropy(logits, targets)
