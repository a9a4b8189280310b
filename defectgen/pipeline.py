"""Labelled compositions of operators, for self-supervised pretext tasks and mixed NG datasets."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import torch

from .checks import check_int, check_number
from .ops.base import Canvas, DefectOp, Painted
from .ops.cutpaste import CutPaste, CutPasteScar
from .registry import create_op, register_op
from .result import Params


@register_op("one_of")
class OneOf(DefectOp):
    """Give each sample at most one of several defects, with per-sample class labels.

    A sample is left normal (label 0) with probability ``1 - p``; otherwise branch ``k`` is chosen with
    probability proportional to ``weights[k]``, and the sample's label is ``labels[k]`` (default: each
    branch's own labels). With ``balanced=True`` the class counts in every batch are as close to their
    expected values as whole numbers allow (stratified draw, then shuffled), the way the CutPaste paper
    builds batches with equal numbers of normal, CutPaste and scar images.

    Args:
        ops: operators, registered names or config dicts.
        weights: relative frequency of each branch among the defective samples (default: equal).
        p: probability that a sample gets a defect.
        labels: class id per branch, overriding the branches' own; equal ids merge classes (``union``).
        balanced: stratify the draw so each batch holds the expected count of every class.
        seed: seeds the operator's own generator.
        foreground: a foreground mode for every branch (see :class:`~defectgen.DefectOp`); with None each
            branch uses its own, and a mask passed to the call applies to every branch.
    """

    def __init__(self, ops: Sequence[Union[DefectOp, str, Mapping[str, Any]]],
                 weights: Optional[Sequence[float]] = None, p: float = 1.0,
                 labels: Optional[Sequence[int]] = None, balanced: bool = False, seed: Optional[int] = None,
                 foreground: Optional[str] = None):
        super().__init__(p=p, label=1, seed=seed, foreground=foreground)
        if isinstance(ops, (str, Mapping)) or not isinstance(ops, Sequence) or len(ops) == 0:
            raise TypeError("ops must be a non-empty list of operators, names or config dicts")
        self.ops = [op if isinstance(op, DefectOp) else create_op(op) for op in ops]
        if weights is None:
            weights = [1.0] * len(self.ops)
        if len(weights) != len(self.ops):
            raise ValueError(f"weights must have one entry per op ({len(self.ops)}), got {len(weights)}")
        self.weights = [check_number(w, f"weights[{i}]", 0.0) for i, w in enumerate(weights)]
        if sum(self.weights) <= 0:
            raise ValueError("weights must not all be zero")
        if labels is not None:
            if len(labels) != len(self.ops):
                raise ValueError(f"labels must have one entry per op ({len(self.ops)}), got {len(labels)}")
            labels = [check_int(v, f"labels[{i}]", 1) for i, v in enumerate(labels)]
        self.labels = labels
        if not isinstance(balanced, bool):
            raise TypeError(f"balanced must be a bool, got {balanced!r}")
        self.balanced = balanced

    def _choose(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """``(B,)`` branch index per sample, -1 for normal."""
        device = generator.device
        total = sum(self.weights)
        probs = torch.tensor([1 - self.p] + [self.p * w / total for w in self.weights], dtype=torch.float64)
        cdf = probs.cumsum(0).to(device)
        cdf[-1] = 1.0
        if self.balanced:
            # systematic sampling: one offset, evenly spaced quantiles, then a random order
            u = (torch.arange(batch, device=device, dtype=torch.float64)
                 + torch.rand(1, generator=generator, device=device, dtype=torch.float64)) / max(batch, 1)
            choice = torch.searchsorted(cdf, u, right=True)
            choice = choice[torch.randperm(batch, generator=generator, device=device)]
        else:
            u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
            choice = torch.searchsorted(cdf, u, right=True)
        return choice.clamp_max(len(self.ops)) - 1

    def sample_params(self, batch, channels, height, width, generator) -> Params:
        choice = self._choose(batch, generator)
        branches = [op.gate(op.sample_params(batch, channels, height, width, generator), choice == k)
                    for k, op in enumerate(self.ops)]
        return {"choice": choice, "branches": branches}

    def place(self, params: Params, foreground: torch.Tensor, generator: torch.Generator) -> Params:
        branches = [op.place(b, foreground, generator) for op, b in zip(self.ops, params["branches"])]
        return {**params, "branches": branches}

    def place_on_foreground(self, images, params, generator, given) -> Params:
        if given is not None or self.foreground is not None:
            return super().place_on_foreground(images, params, generator, given)
        branches = [op.place_on_foreground(images, b, generator, None) for op, b in zip(self.ops, params["branches"])]
        return {**params, "branches": branches}

    def check_replay(self, params: Params, height: int, width: int) -> None:
        for op, branch in zip(self.ops, params["branches"]):
            op.check_replay(branch, height, width)

    def paint(self, canvas: Canvas, mask: torch.Tensor, params: Params) -> Painted:
        label = torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)
        parts = []
        for k, (op, branch) in enumerate(zip(self.ops, params["branches"])):
            # branches gate disjoint samples, so painting them one after another on the same canvas is exact
            painted = op.paint(canvas, mask, branch)
            if self.labels is not None:
                painted.box_label = torch.full_like(painted.box_label, self.labels[k])
                painted.label = torch.where(painted.label > 0, self.labels[k], 0)
            label = torch.where(painted.label > 0, painted.label, label)
            parts.append(painted)
        box_index = torch.cat([q.box_index for q in parts])
        order = torch.argsort(box_index, stable=True)
        return Painted(boxes=torch.cat([q.boxes for q in parts])[order], box_index=box_index[order],
                       box_label=torch.cat([q.box_label for q in parts])[order],
                       valid=torch.cat([q.valid for q in parts])[order], label=label,
                       target=_merge_targets(mask, params["choice"], [q.target for q in parts]))

    def gate(self, params: Params, keep: torch.Tensor) -> Params:
        choice = torch.where(keep, params["choice"], -1)
        branches = [op.gate(b, keep) for op, b in zip(self.ops, params["branches"])]
        return {"choice": choice, "branches": branches}


def _merge_targets(mask: torch.Tensor, choice: torch.Tensor, targets: Sequence[Optional[torch.Tensor]]
                   ) -> Optional[torch.Tensor]:
    """The graded target of a one-of batch: each sample's from the branch that painted it. A branch without
    graded labels contributes its mask as 1.0; with no graded branch at all the target stays None."""
    if all(t is None for t in targets):
        return None
    target = mask.float()  # the whole batch's mask: 1.0 on every defect of a branch without a target
    for k, branch_target in enumerate(targets):
        if branch_target is not None:
            target = torch.where((choice == k).view(-1, 1, 1, 1), branch_target, target)
    return target


@register_op("cutpaste_union")
def cutpaste_union(p: float = 0.5, seed: Optional[int] = None, foreground: Optional[str] = None) -> OneOf:
    """The CutPaste paper's binary "union" pretext: normal (0) vs. CutPaste or CutPaste-Scar (1).

    Half of each batch is left normal and the defective half is split evenly between the two operators.
    """
    return OneOf([CutPaste(), CutPasteScar()], p=p, labels=[1, 1], balanced=True, seed=seed, foreground=foreground)


@register_op("cutpaste_3way")
def cutpaste_3way(p: float = 2 / 3, seed: Optional[int] = None, foreground: Optional[str] = None) -> OneOf:
    """The CutPaste paper's 3-way pretext: normal (0), CutPaste (1), CutPaste-Scar (2), a third of each."""
    return OneOf([CutPaste(), CutPasteScar()], p=p, labels=[1, 2], balanced=True, seed=seed, foreground=foreground)
