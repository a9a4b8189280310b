"""A :class:`~defectgen.bank.DefectBank` from a labelled set: one entry per defect box, cut along its mask.

This is what lets a YAML recipe transplant "the defects of K real labelled images" of any format:
``bank: {layout: labelled, root: ..., format: yolo, count: 20, seed: 0}`` (see :func:`bank_from_config`, which
:func:`defectgen.bank.as_bank` calls). Each box's mask comes from :func:`defectgen.fit.box_masks.image_defect_masks`
(the set's own mask, the difference with a template, or an estimate inside the box), so a box-only YOLO set
transplants its defects, not rectangles of background around them. Aligned pairs (DeepPCB) go through
:meth:`DefectBank.from_deeppcb`, which cuts by difference with the templates and re-registers each box.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ..io.labelled import LabelledSet
from .box_masks import image_defect_masks
from .real import RealSpec, read_chosen

LAYOUT_KEYS = ("root", "format", "split", "count", "seed", "test_every", "image_size", "classes", "channels",
               "margin_px", "ring_px", "foreground")
"""The keys of a ``layout: labelled`` bank config (besides ``layout``)."""


def labelled_defects(labelled: LabelledSet, templates: Optional[Sequence[torch.Tensor]] = None,
                     classes: Optional[Sequence[str]] = None) -> Iterator[Tuple[np.ndarray, np.ndarray, str, str]]:
    """``(pixels (H, W, C) uint8, mask (H, W) bool, class name, where)`` for every defect box of ``labelled``
    (of ``classes`` only, if given): what :meth:`DefectBank.from_labelled` cuts.

    Raises:
        ValueError: naming the argument: a class name the set does not have, templates that do not match the
            images, or no box (of ``classes``) at all.
    """
    names = list(labelled.class_names)
    keep = torch.tensor(sorted(_class_ids(labelled, classes)))
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


def _class_ids(labelled: LabelledSet, classes: Optional[Sequence[str]]) -> set:
    if classes is None:
        return set(range(1, len(labelled.class_names) + 1))
    if isinstance(classes, str):
        classes = [classes]
    unknown = [c for c in classes if c not in labelled.class_names]
    if unknown:
        raise ValueError(f"classes {unknown} are not classes of the set (it has {list(labelled.class_names)})")
    return {labelled.class_names.index(c) + 1 for c in classes}


def bank_from_config(config: Mapping[str, Any], foreground: Optional[str] = None):
    """The bank a ``{layout: labelled, ...}`` config names (see :data:`LAYOUT_KEYS`).

    The set at ``root`` (``format``, ``split``: as :func:`~defectgen.io.labelled.read_labelled`, the split
    defaulting to the one ``defectgen train --real`` reads) is read, every ``test_every``-th image held out, and
    ``count`` images chosen with ``seed`` by :func:`~defectgen.io.labelled.choose_real` (the K images ``train
    --real-count K --seed S`` uses); their boxes of ``classes`` become the bank's entries. Aligned pairs
    (``format: deeppcb``) are cut by :meth:`DefectBank.from_deeppcb` with the chosen pair ids; other formats by
    :meth:`DefectBank.from_labelled` on images read at ``image_size`` (default: their own size).

    ``foreground`` is the transplant's: the default of the config's own ``foreground`` key.
    """
    from ..bank import DefectBank

    unknown = sorted(set(config) - set(LAYOUT_KEYS) - {"layout"})
    if unknown:
        raise TypeError(f"a labelled bank config takes {list(LAYOUT_KEYS)}; unknown keys {unknown}")
    spec = RealSpec.from_config(config).resolved()
    classes = config.get("classes")
    foreground = config.get("foreground", foreground)
    cutting = {k: config[k] for k in ("margin_px", "ring_px") if k in config}
    if spec.format == "deeppcb":
        # names only: the pairs are cut again at full size, by difference with their templates
        chosen = read_chosen(spec, None, 1)[0]
        if classes is not None:
            _class_ids(chosen, classes)  # the same error for an unknown class as the other formats
        return DefectBank.from_deeppcb(spec.root, ids=list(chosen.names), types=classes, foreground=foreground,
                                       channels=config.get("channels", 1), **cutting)
    chosen = read_chosen(spec, spec.image_size, config.get("channels", 3))[0]
    return DefectBank.from_labelled(chosen, classes=classes, foreground=foreground, **cutting)
