"""A :class:`~defectgen.bank.DefectBank` from a labelled set: one entry per defect box, cut along its mask.

This is what lets a YAML recipe transplant "the defects of K real labelled images" of any format:
``bank: {layout: labelled, root: ..., format: yolo, count: 20, seed: 0}`` (see
:func:`~defectgen.bank.spec.bank_from_config`, which :func:`defectgen.bank.as_bank` calls). Each box's mask comes
from :func:`defectgen.bank.box_masks.image_defect_masks`
(the set's own mask, the difference with a template, or an estimate inside the box), so a box-only YOLO set
transplants its defects, not rectangles of background around them. Aligned pairs (DeepPCB) go through
:meth:`DefectBank.from_deeppcb`, which cuts by difference with the templates and re-registers each box.
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence, Tuple

import numpy as np
import torch

from ..io.labelled import LabelledSet
from .box_masks import image_defect_masks


def labelled_defects(labelled: LabelledSet, templates: Optional[Sequence[torch.Tensor]] = None,
                     classes: Optional[Sequence[str]] = None) -> Iterator[Tuple[np.ndarray, np.ndarray, str, str]]:
    """``(pixels (H, W, C) uint8, mask (H, W) bool, class name, where)`` for every defect box of ``labelled``
    (of ``classes`` only, if given): what :meth:`DefectBank.from_labelled` cuts.

    Raises:
        ValueError: naming the argument: a class name the set does not have, templates that do not match the
            images, or no box (of ``classes``) at all.
    """
    names = list(labelled.class_names)
    keep = torch.tensor(sorted(chosen_class_ids(labelled, classes)))
    if templates is not None and len(templates) != len(labelled):
        raise ValueError(f"templates: {len(labelled)} images but {len(templates)} templates")
    if not any(bool(torch.isin(lab, keep).any()) for lab in labelled.labels):
        which = "" if classes is None else f" of classes {list(classes)}"
        raise ValueError(f"no defect box{which} among the {len(labelled)} images to build a bank from")

    def defects():
        for i, (image, boxes, labels) in enumerate(zip(labelled.images, labelled.boxes, labelled.labels)):
            chosen = torch.isin(labels, keep)
            if not bool(chosen.any()):
                continue
            mask = None if labelled.masks is None else labelled.masks[i]
            template = None if templates is None else templates[i]
            masks = image_defect_masks(image, boxes[chosen], mask, template)
            # one array per image: the bank's cutter estimates an image's foreground once for all its defects
            pixels = np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())
            height, width = pixels.shape[:2]
            for k, (defect, label) in enumerate(zip(masks, labels[chosen].tolist())):
                yield pixels, defect.full(height, width), names[label - 1], f"{labelled.names[i]} box {k}"

    return defects()


def chosen_class_ids(labelled: LabelledSet, classes: Optional[Sequence[str]]) -> set:
    if classes is None:
        return set(range(1, len(labelled.class_names) + 1))
    if isinstance(classes, str):
        classes = [classes]
    unknown = [c for c in classes if c not in labelled.class_names]
    if unknown:
        raise ValueError(f"classes {unknown} are not classes of the set (it has {list(labelled.class_names)})")
    return {labelled.class_names.index(c) + 1 for c in classes}


__all__ = ["labelled_defects", "chosen_class_ids"]
