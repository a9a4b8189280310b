"""Pretext tasks: which synthetic defects the network learns to tell from normal images.

A pretext is a list of defectgen operators, one per defect class: class 0 is the unchanged normal image and
class ``k`` is the image operator ``k - 1`` made from it. Every training step takes a batch of normal images
and passes the whole batch through every operator, so each class holds the same images (the paper's balanced
batches) and the defects are made batched on the training device.

Named pretexts (the paper's, Li et al. 2021):

- ``cutpaste``: normal vs CutPaste (binary).
- ``scar``: normal vs CutPaste-Scar (binary).
- ``union``: normal vs "CutPaste or CutPaste-Scar", half each (binary).
- ``3way``: normal vs CutPaste vs CutPaste-Scar (three classes).

Any other registered operator name, config dict or operator instance (``Cutout()``, ``OneOf([...])``) is a
binary pretext, and a list of them a multi-class one, so ablations can compare any defect as a pretext.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from defectgen import CutPaste, CutPasteScar, DefectOp, OneOf
from defectgen.recipe import jsonable
from defectgen.registry import resolve_op

NAMED = ("cutpaste", "scar", "union", "3way")
PretextSpec = Union[str, Mapping[str, Any], DefectOp, Sequence[Union[str, Mapping[str, Any], DefectOp]]]


def _scar(reference_size: float) -> CutPasteScar:
    return CutPasteScar(reference_size=reference_size)


def _named(name: str, scar_reference: float) -> List[DefectOp]:
    if name == "cutpaste":
        return [CutPaste()]
    if name == "scar":
        return [_scar(scar_reference)]
    if name == "union":
        return [OneOf([CutPaste(), _scar(scar_reference)], labels=[1, 1])]
    return [CutPaste(), _scar(scar_reference)]  # 3way


class Pretext:
    """The classes of a pretext task (see the module docstring).

    Args:
        spec: a named pretext, an operator (instance, registered name or config dict) or a list of them.
        scar_reference: ``reference_size`` of the named pretexts' CutPaste-Scar, i.e. the side (px) of the
            training input at which the scar has the paper's 2-16 x 10-25 px size. The detector sets it so a
            scar on a 64 px patch of a 256 px image is as big as on the whole image.
    """

    def __init__(self, spec: PretextSpec = "3way", scar_reference: float = 256):
        self.spec = spec
        if isinstance(spec, str) and spec in NAMED:
            self.name = spec
            self.ops = _named(spec, scar_reference)
        else:
            items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
            if not items:
                raise ValueError("a pretext needs at least one operator")
            try:
                self.ops = [resolve_op(item, "pretext") for item in items]
            except (ValueError, TypeError) as error:
                raise type(error)(f"pretext must be one of {list(NAMED)}, a defectgen operator (or registered "
                                  f"name / config dict) or a list of them: {error}") from None
            self.name = "+".join(type(op).__name__ if not isinstance(item, str) else item
                                 for op, item in zip(self.ops, items))

    @property
    def num_classes(self) -> int:
        return len(self.ops) + 1

    def describe(self) -> Dict[str, Any]:
        """JSON-able record of the pretext: its name and each operator's config (``None`` where an operator
        cannot describe itself as plain data)."""
        configs: List[Optional[Any]] = []
        for op in self.ops:
            try:
                configs.append(jsonable(op.to_config()))
            except Exception:  # an op holding data (a DefectBank) has no plain config; the name still says what
                configs.append(None)
        return {"name": self.name, "ops": configs}

    def make_batch(self, normals: torch.Tensor, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(images, labels)``: ``normals`` followed by each operator's defective copy of them.

        Labels are ``0`` for the normals and ``k`` for operator ``k - 1``'s output, except where the operator
        left a sample unchanged (``p < 1``, or no room on the foreground): that sample is labelled normal.
        """
        images, labels = [normals], [torch.zeros(len(normals), dtype=torch.long, device=normals.device)]
        for k, op in enumerate(self.ops, start=1):
            out = op(normals, generator=generator)
            images.append(out.image)
            labels.append(torch.where(out.label.to(normals.device) > 0, k, 0))
        return torch.cat(images), torch.cat(labels)
