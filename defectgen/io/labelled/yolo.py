"""Reading YOLO (ultralytics / darknet) labelled sets, including what ``defectgen generate --format yolo`` writes.

Layouts read::

    root/data.yaml                  optional: path, train, val, test (folders, lists of folders, or .txt lists
                                    of image files) and names (a list, or a {index: name} mapping)
    root/images/<split>/*.png       the images of a split (or root/images/*.png when there are no splits)
    root/labels/<split>/<stem>.txt  one "class cx cy w h" line per box, normalised to [0, 1]

A label file is found as ultralytics finds it: the image path with its last ``images`` folder replaced by
``labels`` and the extension by ``.txt``. An image without a label file is defect-free. A line with more than
five numbers is a YOLO segmentation polygon (``class x1 y1 x2 y2 ...``) and is read as its bounding box.

Class index ``k`` of the files is class id ``k + 1`` (``class_names[k]``), as in defectgen's writer. Names come
from ``data.yaml``, else from a darknet ``classes.txt`` (one name per line) beside ``images/``, else from
``class_names=``; a folder with none of them is an error rather than a set of made-up names.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import yaml

from defectgen.io.images import IMAGE_EXTENSIONS, list_images

from .labelled_set import LabelledSet
from .assemble import (PathLike, SetBuilder, check_read_args, order_classes, pick_split, read_image_tensor,
                       read_structured)
from .problems import Problems, clean_boxes

SPLITS = ("train", "val", "test")
SPLIT_PREFERENCE = ("test", "val", "train")
"""Without ``split=``, the first of these the set has: evaluation data before training data."""


def read_yolo(root: PathLike, split: Optional[str] = None, size: Optional[int] = None, channels: int = 3,
              class_names: Optional[Sequence[str]] = None, limit: Optional[int] = None) -> LabelledSet:
    """A YOLO set (see the module docstring) as a :class:`LabelledSet`.

    Args:
        root: the set's folder, or its ``data.yaml``.
        split: ``"train"``, ``"val"`` or ``"test"``; default: the first of ``test``, ``val``, ``train`` the set
            has (a ``data.yaml`` may point ``val`` at the training images, as defectgen's does without a
            validation split). A folder without ``images/<split>/`` folders is one split.
        size: resize every image to ``size x size`` as it is read (boxes scaled); None keeps each image's size.
        channels: 1 (gray) or 3 (RGB).
        class_names: the names of class indices ``0..K-1`` when the set has no ``data.yaml`` / ``classes.txt``;
            when it has names, the id order of the returned set (every name of the set must be in it).
        limit: read only the first ``limit`` images (sorted by path).

    Label lines that do not parse are skipped, boxes reaching outside the image clipped, empty boxes dropped;
    each is reported (see :mod:`defectgen.io.labelled.problems`).

    Raises:
        ValueError: naming the file: no images, an unreadable image or ``data.yaml``, a class index outside the
            names, no class names at all.
    """
    size, channels, limit = check_read_args(size, channels, limit)
    root = Path(root)
    yaml_path = root if root.is_file() else root / "data.yaml"
    base = root.parent if root.is_file() else root
    config = _read_data_yaml(yaml_path) if yaml_path.is_file() else {}
    if config:
        base = _dataset_root(config, yaml_path)
        available = [s for s in SPLITS if config.get(s)]
        chosen = pick_split(split, available, SPLIT_PREFERENCE, str(yaml_path))
        images = _split_images(config[chosen], base, yaml_path, chosen)
    else:
        if not base.is_dir():
            raise ValueError(f"YOLO folder {str(base)!r} does not exist or is not a directory")
        folder = base / "images"
        if not folder.is_dir():
            raise ValueError(f"{str(base)!r} is not a YOLO set: it has neither data.yaml nor an images/ folder")
        available = [s for s in SPLITS if (folder / s).is_dir()]
        if available:
            chosen = pick_split(split, available, SPLIT_PREFERENCE, str(folder))
            images = list_images(folder / chosen)
        else:
            if split is not None:
                raise ValueError(f"{str(folder)!r} has no split folders (train/, val/, test/); omit split=")
            chosen, images = None, list_images(folder)
    names, from_files = _class_names(config, yaml_path, base, class_names)
    images = images[:limit]

    problems = Problems(str(base))
    builder = SetBuilder(size)
    for path in images:
        image = read_image_tensor(path, channels)
        height, width = image.shape[-2:]
        label_file = label_path(path)
        boxes, labels, where = _read_label_file(label_file, width, height, len(names), problems)
        boxes, labels = clean_boxes(boxes, labels, width, height, where, problems)
        builder.add(_name(path, base), image, boxes, labels)
    info = {"format": "yolo", "root": str(base), "split": chosen}
    labelled = builder.build(names, problems, info)
    if from_files and class_names is not None:
        labelled = order_classes(labelled, class_names, str(yaml_path if config else base))
    return labelled


def label_path(image: Path) -> Path:
    """The label file of ``image``: its last ``images`` folder replaced by ``labels``, extension ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")  # darknet keeps labels beside the images


# -- data.yaml --------------------------------------------------------------------------------------------------------
def _read_data_yaml(path: Path) -> Dict[str, Any]:
    return read_structured(path, yaml.safe_load, "YAML", yaml.YAMLError,
                           "a mapping with train/val/test and names entries")


def _dataset_root(config: Dict[str, Any], yaml_path: Path) -> Path:
    """``path:`` of ``data.yaml``, relative to the file's folder; the folder itself when absent or missing (a
    set copied to another machine keeps an absolute ``path:`` that no longer exists)."""
    here = yaml_path.parent
    if not config.get("path"):
        return here
    given = Path(str(config["path"]))
    candidate = given if given.is_absolute() else here / given
    return candidate if candidate.is_dir() else here


def _split_images(entry: Any, base: Path, yaml_path: Path, split: str) -> List[Path]:
    """The image files of one ``data.yaml`` split entry: folders (searched recursively) or ``.txt`` lists."""
    entries = entry if isinstance(entry, (list, tuple)) else [entry]
    images: List[Path] = []
    for item in entries:
        path = Path(str(item))
        path = path if path.is_absolute() else base / path
        if path.is_dir():
            images += list_images(path)
        elif path.is_file() and path.suffix == ".txt":
            for line in path.read_text().splitlines():
                if line.strip():
                    listed = Path(line.strip())
                    images.append(listed if listed.is_absolute() else base / listed)
        elif path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(path)
        else:
            raise ValueError(f"{str(yaml_path)!r}: {split}: {str(path)!r} is neither an image folder nor a .txt "
                             "list of images")
    if not images:
        raise ValueError(f"{str(yaml_path)!r}: split {split!r} lists no images")
    return sorted(dict.fromkeys(images))


def _class_names(config: Dict[str, Any], yaml_path: Path, base: Path,
                 class_names: Optional[Sequence[str]]) -> Tuple[Tuple[str, ...], bool]:
    """The names of indices 0..K-1, and whether they came from the set's own files."""
    names = config.get("names")
    if names is not None:
        if isinstance(names, dict):
            try:
                keys = sorted(int(k) for k in names)
            except (TypeError, ValueError):
                raise ValueError(f"{str(yaml_path)!r}: names keys must be class indices, got {list(names)}") from None
            if keys != list(range(len(keys))):
                raise ValueError(f"{str(yaml_path)!r}: names must number the classes 0..K-1, got indices {keys}")
            names = [names[k] if k in names else names[str(k)] for k in keys]
        if not isinstance(names, (list, tuple)) or not names:
            raise ValueError(f"{str(yaml_path)!r}: names must be a non-empty list or {{index: name}} mapping")
        return tuple(str(n) for n in names), True
    classes_txt = base / "classes.txt"
    if classes_txt.is_file():
        names = [line.strip() for line in classes_txt.read_text().splitlines() if line.strip()]
        if names:
            return tuple(names), True
    if class_names is None:
        raise ValueError(f"YOLO set {str(base)!r} names no classes (no data.yaml 'names', no classes.txt); "
                         "pass class_names= for indices 0..K-1")
    if isinstance(class_names, str) or not class_names:
        raise TypeError(f"class_names must be a non-empty list of names, got {class_names!r}")
    return tuple(str(n) for n in class_names), False


# -- label files ------------------------------------------------------------------------------------------------------
def _read_label_file(path: Path, width: int, height: int, n_classes: int, problems: Problems):
    """``(boxes (n, 4) pixels, labels (n,) ids 1..K, where)`` of one label file; none when it is missing."""
    if not path.is_file():
        return torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read label file {str(path)!r}: {error}") from None
    boxes, labels, where = [], [], []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        here = f"{path}:{number}"
        parsed = _parse_line(fields)
        if isinstance(parsed, str):
            problems.add(f"{here}: {parsed}: {line.strip()!r}; line skipped")
            continue
        index, box = parsed
        if not 0 <= index < n_classes:
            raise ValueError(f"{here}: class index {index} is outside the {n_classes} class names (0..{n_classes - 1})")
        boxes.append(box)
        labels.append(index + 1)
        where.append(here)
    scale = torch.tensor([width, height, width, height], dtype=torch.float64)
    pixels = torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4) * scale
    return pixels.float(), torch.tensor(labels, dtype=torch.int64), where


def _parse_line(fields: List[str]):
    """``(class index, normalised xyxy)`` of a label line, or why it does not parse."""
    if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
        return f"expected 'class cx cy w h' (or 'class x1 y1 x2 y2 ...' for a polygon), got {len(fields)} fields"
    try:
        number = float(fields[0])
        values = [float(v) for v in fields[1:]]
    except ValueError:
        return "not numbers"
    if not number.is_integer() or number < 0:
        return f"class {fields[0]!r} is not a class index"
    if not all(math.isfinite(v) for v in values):
        return "coordinates are not finite"
    if len(values) == 4:
        cx, cy, w, h = values
        if w < 0 or h < 0:
            return "negative width or height"
        return int(number), (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    xs, ys = values[0::2], values[1::2]
    return int(number), (min(xs), min(ys), max(xs), max(ys))


def _name(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)
