"""Defect-aware pretraining: defectgen operators as hard negatives, or as an auxiliary pretext task.

Both are off by default and take operator names (or configs) or a recipe file (:func:`defectgen.recipe.build_op`).

- **Hard negatives** (contrastive methods only: SimCLR, MoCo v3). Each image's first view gets a defect (the
  operator with ``p = 1``, so every sample is defective) and that defective copy is a negative of the image's
  two clean views: one more term in their softmax denominator, weighted by ``weight``. The defect is painted on
  the view rather than on the raw image so that no crop can cut it away: the negative differs from view 1 only
  inside the defect's mask, the hardest negative there is, and the features must keep what a defect changes
  instead of becoming invariant to it. A sample the operator could not paint (no room on the foreground) is
  no negative. BYOL and SimSiam have no negatives, so they refuse this option.
- **Pretext head** (every method). CutPaste-style classification of view 1 against each operator's defective
  copy of it (class 0 normal, class k operator k; :class:`detectors.cutpaste.pretext.Pretext`) by a linear
  classifier on the trunk's pooled features, its cross-entropy added to the self-supervised loss with a weight.
  The clean and defective images go through the trunk in one batch, so batch norm's statistics cannot tell
  them apart.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from defectgen.checks import check_number
from defectgen.ops.base import DefectOp
from defectgen.recipe import build_op, jsonable
from defectgen.registry import create_op
from defectgen.result import DefectBatch

from ..cutpaste.pretext import Pretext
from .methods import CONTRASTIVE, Negatives

Ops = Optional[Sequence[Union[str, Mapping[str, Any], DefectOp]]]


def _describe(op) -> Any:
    try:
        return jsonable(op.to_config())
    except Exception:  # an op holding data (a DefectBank) has no plain config; its type still says what it was
        return type(op).__name__


def _always(op: Union[str, Mapping[str, Any], DefectOp]) -> DefectOp:
    """The operator with ``p = 1`` (every sample defective), built anew: a caller's instance is not changed."""
    if isinstance(op, DefectOp):
        return op if op.p == 1.0 else create_op({**op.to_config(), "p": 1.0})
    return create_op(op, p=1.0) if isinstance(op, str) else create_op({**op, "p": 1.0})


class HardNegatives:
    """Makes each sample's defective copy (see the module docstring). ``ops``: operator names or configs (several
    become a ``OneOf``); or ``recipe``: a recipe file. ``weight`` > 0 multiplies the negative's term."""

    def __init__(self, ops: Ops = None, recipe: Optional[Union[str, Path]] = None, weight: float = 1.0):
        self.weight = check_number(weight, "negative_weight", 0.0, low_open=True)
        if ops:
            ops = [_always(op) for op in ops]
        self.op, _ = build_op(ops or None, recipe)
        self.op.p = 1.0  # a recipe's (new) operator too; a OneOf over several: always one of them
        self.recipe = None if recipe is None else str(recipe)

    def describe(self) -> Dict[str, Any]:
        return {"operator": _describe(self.op), "recipe": self.recipe, "weight": self.weight}

    def __call__(self, view: torch.Tensor, generator: torch.Generator) -> Tuple[Negatives, DefectBatch]:
        """The negatives of a batch whose first views are ``view``, and the operator's result (its params replay
        it)."""
        out = self.op(view, generator=generator)
        return Negatives(out.image, out.label.to(view.device) > 0, self.weight), out


def check_negatives_method(method: str) -> None:
    if method not in CONTRASTIVE:
        raise ValueError(f"hard negatives apply only to contrastive methods ({', '.join(CONTRASTIVE)}); {method} has "
                         "no negatives (use the pretext head to make it defect-aware)")


class PretextTask(nn.Module):
    """The auxiliary pretext: a linear classifier over the trunk's features, normal vs each operator.

    ``ops``: operator names or configs (or named CutPaste pretexts: ``cutpaste``, ``scar``, ``3way``), one class
    each; or ``recipe``: one class, the recipe's operator. ``weight``: the cross-entropy's factor in the loss.
    """

    def __init__(self, width: int, ops: Ops = None, recipe: Optional[Union[str, Path]] = None, weight: float = 1.0):
        super().__init__()
        self.weight = check_number(weight, "pretext_weight", 0.0, low_open=True)
        if bool(ops) == (recipe is not None):
            raise ValueError("give the pretext either as operator names or as a recipe file, not both and not neither")
        if recipe is not None:
            spec = build_op(None, recipe)[0]
        else:
            spec = ops[0] if len(ops) == 1 else list(ops)
        self.task = Pretext(spec)
        self.recipe = None if recipe is None else str(recipe)
        self.classifier = nn.Linear(width, self.task.num_classes)

    def describe(self) -> Dict[str, Any]:
        return {**self.task.describe(), "recipe": self.recipe, "weight": self.weight,
                "classes": self.task.num_classes}

    def forward(self, trunk: nn.Module, view: torch.Tensor, generator: torch.Generator) -> Tuple[torch.Tensor,
                                                                                                 torch.Tensor]:
        """``(cross-entropy, accuracy)`` of the pretext on ``view`` and its defective copies."""
        images, labels = self.task.make_batch(view, generator)
        logits = self.classifier(trunk(images))
        return F.cross_entropy(logits, labels), (logits.argmax(1) == labels).float().mean()


__all__ = ["HardNegatives", "PretextTask", "check_negatives_method"]
