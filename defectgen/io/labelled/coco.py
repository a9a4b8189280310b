"""Reading COCO detection annotations, including what ``defectgen generate --format coco`` writes.

Layouts read::

    root/annotations/instances_<split>.json   one JSON per split (defectgen, COCO 2017)
    root/images/<split>/<file_name>           defectgen's images
    root/<split>/<file_name>                  COCO 2017's images (e.g. val2017/)

or a JSON file given directly, its images looked up under the same candidates and beside the JSON. ``bbox`` is
``[x, y, w, h]`` in pixels (pixel edges, as COCO defines it). Categories become class ids ``1..K`` in the order
of their COCO ids, so defectgen's category ``k`` stays class ``k``. Images listed with no annotation are
defect-free. Crowd annotations (``iscrowd: 1``) are boxes like any other; segmentations are not read.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .labelled_set import LabelledSet
from .assemble import (PathLike, SetBuilder, check_read_args, order_classes, pick_split, read_image_tensor,
                       read_structured)
from .problems import Problems, clean_boxes

SPLIT_PREFERENCE = ("test", "val", "train")
"""Without ``split=``, the first of these the folder has a JSON for: evaluation data before training data."""

_JSON = re.compile(r"^instances_(?P<split>.+)\.json$")


def read_coco(root: PathLike, split: Optional[str] = None, size: Optional[int] = None, channels: int = 3,
              class_names: Optional[Sequence[str]] = None, limit: Optional[int] = None) -> LabelledSet:
    """A COCO set (see the module docstring) as a :class:`LabelledSet`.

    Args:
        root: the set's folder (with ``annotations/instances_<split>.json``) or a JSON file.
        split: which ``instances_<split>.json``; default: the first of ``test``, ``val``, ``train`` present
            (ignored when ``root`` is a JSON file).
        size: resize every image to ``size x size`` as it is read (boxes scaled); None keeps each image's size.
        channels: 1 (gray) or 3 (RGB).
        class_names: the id order of the returned set (every category name must be in it); default: the
            categories in id order.
        limit: read only the first ``limit`` images (in the JSON's order).

    Raises:
        ValueError: naming the file: no JSON, invalid JSON, a missing image, an annotation of a category the JSON
            does not define.
    """
    size, channels, limit = check_read_args(size, channels, limit)
    json_path, chosen = _find_json(Path(root), split)
    data = _load(json_path)
    categories = _categories(data, json_path)
    names = tuple(name for _, name in categories)
    class_of = {cid: k + 1 for k, (cid, _) in enumerate(categories)}
    base = json_path.parent.parent if json_path.parent.name == "annotations" else json_path.parent
    folders = _image_folders(base, json_path.parent, chosen)

    images = data.get("images")
    if not isinstance(images, list) or not all(isinstance(e, dict) and "id" in e and "file_name" in e
                                               for e in images):
        raise ValueError(f"{str(json_path)!r}: 'images' must be a list of {{'id', 'file_name', ...}} entries")
    problems = Problems(str(json_path))
    per_image = _annotations_by_image(data, json_path, {e["id"] for e in images}, class_of, problems)
    builder = SetBuilder(size)
    for entry in images[:limit]:
        path = _image_file(entry["file_name"], folders, json_path)
        image = read_image_tensor(path, channels)
        height, width = image.shape[-2:]
        found = per_image.get(entry["id"], [])
        boxes = torch.tensor([box for box, _, _ in found], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([label for _, label, _ in found], dtype=torch.int64)
        boxes, labels = clean_boxes(boxes, labels, width, height, [w for _, _, w in found], problems)
        builder.add(str(entry["file_name"]), image, boxes, labels)
    info = {"format": "coco", "root": str(base), "split": chosen, "annotations": str(json_path)}
    return order_classes(builder.build(names, problems, info), class_names, str(json_path))


def coco_splits(root: Path) -> List[str]:
    """The splits with an ``annotations/instances_<split>.json`` under ``root``."""
    folder = root / "annotations"
    if not folder.is_dir():
        return []
    return sorted(m.group("split") for p in folder.iterdir() if p.is_file() and (m := _JSON.match(p.name)))


def _find_json(root: Path, split: Optional[str]) -> Tuple[Path, Optional[str]]:
    if root.is_file():
        match = _JSON.match(root.name)
        return root, match.group("split") if match else None
    if not root.is_dir():
        raise ValueError(f"COCO path {str(root)!r} does not exist")
    available = coco_splits(root)
    if not available:
        raise ValueError(f"{str(root)!r} is not a COCO set: no annotations/instances_<split>.json")
    chosen = pick_split(split, available, SPLIT_PREFERENCE, str(root / "annotations"))
    return root / "annotations" / f"instances_{chosen}.json", chosen


def _load(path: Path) -> Dict[str, Any]:
    return read_structured(path, json.loads, "JSON", json.JSONDecodeError,
                           "a COCO object with images, annotations and categories")


def _categories(data: Dict[str, Any], path: Path) -> List[Tuple[Any, str]]:
    categories = data.get("categories")
    if not isinstance(categories, list) or not categories or \
            not all(isinstance(c, dict) and "id" in c and "name" in c for c in categories):
        raise ValueError(f"{str(path)!r}: 'categories' must be a non-empty list of {{'id', 'name'}} entries")
    pairs = sorted(((c["id"], str(c["name"])) for c in categories), key=lambda p: p[0])
    names = [n for _, n in pairs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates or len({i for i, _ in pairs}) != len(pairs):
        raise ValueError(f"{str(path)!r}: categories repeat ids or names ({duplicates or 'ids'})")
    return pairs


def _annotations_by_image(data: Dict[str, Any], path: Path, image_ids, class_of: Dict[Any, int],
                          problems: Problems) -> Dict[Any, List[Tuple[List[float], int, str]]]:
    """``{image id: [(xyxy, class id, where), ...]}``; unusable annotations skipped and reported."""
    out: Dict[Any, List[Tuple[List[float], int, str]]] = {}
    unknown = set()
    for number, annotation in enumerate(data.get("annotations") or []):
        where = f"{path}: annotation {annotation.get('id', number) if isinstance(annotation, dict) else number}"
        if not isinstance(annotation, dict):
            problems.add(f"{where}: not an object; skipped")
            continue
        if annotation.get("category_id") not in class_of:
            unknown.add(annotation.get("category_id"))
            continue
        if annotation.get("image_id") not in image_ids:
            problems.add(f"{where}: image_id {annotation.get('image_id')!r} is not in 'images'; skipped")
            continue
        bbox = annotation.get("bbox")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or \
                not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox):
            problems.add(f"{where}: bbox {bbox!r} is not [x, y, w, h]; skipped")
            continue
        x, y, w, h = (float(v) for v in bbox)
        out.setdefault(annotation["image_id"], []).append(([x, y, x + w, y + h], class_of[annotation["category_id"]],
                                                           where))
    if unknown:
        raise ValueError(f"{str(path)!r}: annotations use category ids {sorted(unknown, key=str)} that 'categories' "
                         f"does not define (defined: {sorted(class_of, key=str)})")
    return out


def _image_folders(base: Path, json_dir: Path, split: Optional[str]) -> List[Path]:
    candidates = ([base / "images" / split, base / split] if split else []) + [base / "images", json_dir, base]
    return [c for c in dict.fromkeys(candidates) if c.is_dir()]


def _image_file(file_name: str, folders: List[Path], json_path: Path) -> Path:
    for folder in folders:
        path = folder / file_name
        if path.is_file():
            return path
    raise ValueError(f"{str(json_path)!r}: image {file_name!r} not found (looked in "
                     f"{', '.join(repr(str(f)) for f in folders)})")
