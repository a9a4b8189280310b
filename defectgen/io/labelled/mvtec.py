"""Reading an MVTec-layout folder (MVTec AD, or ``defectgen generate --format mvtec``'s ``mvtec/``) with boxes.

MVTec sets label defects by masks only. A box is drawn around each 8-connected region of a mask by
:func:`defectgen.components.component_boxes`, the rule the operators use for their own boxes, so a
defectgen set read back here gets the boxes the operator reported (for defects that are one region each) and
a real set gets boxes on the same footing. The masks themselves are kept in ``LabelledSet.masks``.

Class names are the defect types (the ``test/<type>`` folders, sorted; in a folder ``defectgen generate`` wrote,
the job's class order from its ``report.json``, so ids match the YOLO and COCO labels written beside it);
``good`` images are defect-free.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from defectgen.io import load_image, read_mvtec
from defectgen.components import component_boxes

from .labelled_set import LabelledSet
from .assemble import PathLike, SetBuilder, check_read_args, order_classes
from .problems import Problems

SPLITS = ("test", "train")


def read_mvtec_labelled(root: PathLike, split: Optional[str] = None, size: Optional[int] = None, channels: int = 3,
                        class_names: Optional[Sequence[str]] = None, limit: Optional[int] = None) -> LabelledSet:
    """An MVTec-layout folder as a :class:`LabelledSet` with masks and one box per mask region.

    Args:
        root: the category folder (``train/good``, ``test/<type>``, ``ground_truth/<type>``), or a folder
            ``defectgen generate`` wrote, holding one as ``mvtec/``.
        split: ``"test"`` (default: the labelled images, ``good`` first, then each type) or ``"train"``
            (``train/good``: defect-free images, no boxes, empty masks).
        size: resize every image to ``size x size`` as it is read (boxes scaled, masks by nearest pixel); None
            keeps each image's size. Boxes are found on the full-size mask, then scaled.
        channels: 1 (gray) or 3 (RGB).
        class_names: the id order of the returned set (every defect type must be in it); default: the types
            (in a defectgen output, the job's order).
        limit: read only the first ``limit`` images (in the layout's order).

    Raises:
        ValueError: from :func:`defectgen.io.read_mvtec` (not a layout, a defective image without a mask...) or
            naming ``split`` when it is not one of :data:`SPLITS`.
    """
    size, channels, limit = check_read_args(size, channels, limit)
    split = "test" if split is None else split
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} for an MVTec layout, got {split!r}")
    root = Path(root)
    if not (root / "train").is_dir() and not (root / "test").is_dir() and (root / "mvtec").is_dir():
        root = root / "mvtec"  # the root of a folder `defectgen generate --format mvtec` wrote
    layout = read_mvtec(root, require_test=split == "test", require_train=split == "train")
    builder = SetBuilder(size, keep_masks=True)
    if split == "train":
        for path in layout.train[:limit]:
            image = load_image(path, None, channels)
            builder.add(path.relative_to(root).as_posix(), image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64),
                        torch.zeros((1,) + tuple(image.shape[-2:]), dtype=torch.bool))
    else:
        for item in layout.test[:limit]:
            images, masks, labels, _ = layout.load_test(None, channels, items=[item])
            boxes, _ = component_boxes(masks)
            builder.add(item.image.relative_to(root).as_posix(), images[0], boxes, labels.expand(len(boxes)), masks[0])
    info = {"format": "mvtec", "root": str(root), "split": split}
    labelled = builder.build(layout.defect_types, Problems(str(root)), info)
    if class_names is None:
        class_names = generated_class_order(root)
    return order_classes(labelled, class_names, str(root))


def generated_class_order(root: Path) -> Optional[List[str]]:
    """The class names of the ``defectgen generate`` job whose ``mvtec/`` folder ``root`` is, in id order
    (from the job's ``report.json``), so the set gets the ids its YOLO and COCO labels have; None otherwise."""
    report = root.parent / "report.json"
    if root.name != "mvtec" or not report.is_file():
        return None
    try:
        names = json.loads(report.read_text()).get("class_names")
        return [str(names[k]) for k in sorted(names, key=int)]
    except (OSError, ValueError, TypeError, AttributeError):
        return None  # not a defectgen report: keep the types' sorted order
