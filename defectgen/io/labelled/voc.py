"""Reading Pascal VOC XML annotations (NEU-DET and other surface-defect sets are published this way).

Layout (folder names matched case-insensitively: NEU-DET spells them ``ANNOTATIONS`` and ``IMAGES``)::

    root/Annotations/<id>.xml             <object><name>...</name><bndbox>xmin ymin xmax ymax</bndbox></object>
    root/JPEGImages/<id>.jpg              or root/images/ (searched recursively: some sets keep one sub-folder
                                          per class)
    root/ImageSets/Main/<split>.txt       optional: the ids of a split, one per line

The image is the annotation's ``<filename>``, else the image file with the annotation's stem. VOC coordinates
are 1-based and inclusive (the top-left pixel is ``(1, 1)``, ``xmax`` is the last column of the box), so a box
becomes pixel edges as ``x1 = xmin - 1, x2 = xmax`` (and the same for y). ``<difficult>`` objects are kept;
the image size comes from the image file, not ``<size>``.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from defectgen.io.images import IMAGE_EXTENSIONS

from .labelled_set import LabelledSet
from .assemble import PathLike, SetBuilder, check_read_args, order_classes, pick_split, read_image_tensor
from .problems import Problems, clean_boxes

SPLIT_PREFERENCE = ("test", "val", "train", "trainval")
"""Without ``split=``, the first of these ``ImageSets/Main`` lists: evaluation data before training data."""

ANNOTATION_FOLDERS = ("annotations",)
IMAGE_FOLDERS = ("jpegimages", "images")


def read_voc(root: PathLike, split: Optional[str] = None, size: Optional[int] = None, channels: int = 3,
             class_names: Optional[Sequence[str]] = None, limit: Optional[int] = None) -> LabelledSet:
    """A Pascal VOC set (see the module docstring) as a :class:`LabelledSet`.

    Args:
        root: the folder holding ``Annotations/`` and ``JPEGImages/`` (or ``images/``).
        split: a list in ``ImageSets/Main/<split>.txt``; default: the first of ``test``, ``val``, ``train``,
            ``trainval`` there, or every annotation when the set has no ``ImageSets/Main``.
        size: resize every image to ``size x size`` as it is read (boxes scaled); None keeps each image's size.
        channels: 1 (gray) or 3 (RGB).
        class_names: the id order of the returned set (every ``<name>`` must be in it, else ``ValueError``
            naming the unknown ones); default: the names found, sorted.
        limit: read only the first ``limit`` annotations (sorted by id, or in the split list's order).

    Objects without a usable ``<bndbox>`` are skipped and reported with their file and object number.

    Raises:
        ValueError: naming the file: no annotation folder or files, an XML that does not parse, an annotation
            whose image is missing, a split list naming a missing annotation.
    """
    size, channels, limit = check_read_args(size, channels, limit)
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"VOC folder {str(root)!r} does not exist or is not a directory")
    annotations_dir = find_folder(root, ANNOTATION_FOLDERS)
    images_dir = find_folder(root, IMAGE_FOLDERS)
    if annotations_dir is None or images_dir is None:
        raise ValueError(f"{str(root)!r} is not a VOC set: it needs Annotations/*.xml and JPEGImages/ (or images/)")
    files, chosen = _annotation_files(root, annotations_dir, split)
    files = files[:limit]
    images = _images_by_stem(images_dir)

    problems = Problems(str(root))
    parsed = [_parse(path, problems) for path in files]
    names = sorted({name for _, objects in parsed for name, _, _ in objects})
    if class_names is not None:
        unknown = sorted(set(names) - set(class_names))
        if unknown:
            raise ValueError(f"{str(annotations_dir)!r} has classes {unknown} that class_names "
                             f"{list(class_names)} does not hold")
    builder = SetBuilder(size)
    for path, (filename, objects) in zip(files, parsed):
        image_path = _image_of(path, filename, images_dir, images)
        image = read_image_tensor(image_path, channels)
        height, width = image.shape[-2:]
        boxes = torch.tensor([box for _, box, _ in objects], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([names.index(name) + 1 for name, _, _ in objects], dtype=torch.int64)
        boxes, labels = clean_boxes(boxes, labels, width, height, [w for _, _, w in objects], problems)
        builder.add(image_path.relative_to(images_dir).as_posix(), image, boxes, labels)
    info = {"format": "voc", "root": str(root), "split": chosen}
    return order_classes(builder.build(names, problems, info), class_names, str(annotations_dir))


def find_folder(root: Path, names: Sequence[str]) -> Optional[Path]:
    """The first sub-folder of ``root`` whose lower-cased name is in ``names`` (in ``names`` order)."""
    folders = {p.name.lower(): p for p in sorted(root.iterdir()) if p.is_dir()} if root.is_dir() else {}
    return next((folders[n] for n in names if n in folders), None)


def _annotation_files(root: Path, folder: Path, split: Optional[str]):
    lists = root / "ImageSets" / "Main"
    available = sorted(p.stem for p in lists.glob("*.txt")) if lists.is_dir() else []
    if not available:
        if split is not None:
            raise ValueError(f"{str(root)!r} has no ImageSets/Main/<split>.txt lists; omit split=")
        files = sorted(folder.glob("*.xml"))
        if not files:
            raise ValueError(f"{str(folder)!r} holds no .xml annotations")
        return files, None
    chosen = pick_split(split, available, SPLIT_PREFERENCE, str(lists))
    files = []
    split_file = lists / f"{chosen}.txt"
    for number, line in enumerate(split_file.read_text().splitlines(), 1):
        if not line.split():
            continue
        path = folder / f"{line.split()[0]}.xml"
        if not path.is_file():
            raise ValueError(f"{split_file}:{number}: no annotation {str(path)!r}")
        files.append(path)
    if not files:
        raise ValueError(f"{str(split_file)!r} lists no images")
    return files, chosen


def _parse(path: Path, problems: Problems):
    """``(filename or None, [(name, xyxy pixel edges, where), ...])`` of one annotation file."""
    try:
        tree = ElementTree.parse(path)
    except (OSError, ElementTree.ParseError) as error:
        raise ValueError(f"cannot parse annotation {str(path)!r}: {error}") from None
    filename = (tree.findtext("filename") or "").strip() or None
    objects = []
    for number, obj in enumerate(tree.iter("object"), 1):
        where = f"{path}: object {number}"
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if not name:
            problems.add(f"{where}: has no <name>; skipped")
            continue
        try:
            xmin, ymin, xmax, ymax = (float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            problems.add(f"{where}: <bndbox> needs numeric xmin, ymin, xmax, ymax; skipped")
            continue
        if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)):
            problems.add(f"{where}: <bndbox> is not finite; skipped")
            continue
        objects.append((name, [xmin - 1, ymin - 1, xmax, ymax], where))  # 1-based inclusive -> pixel edges
    return filename, objects


def _images_by_stem(folder: Path) -> Dict[str, List[Path]]:
    out: Dict[str, List[Path]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
        out.setdefault(path.stem, []).append(path)
        out.setdefault(path.name, []).append(path)
    return out


def _image_of(annotation: Path, filename: Optional[str], folder: Path, images: Dict[str, List[Path]]) -> Path:
    for key in ([filename, Path(filename).stem] if filename else []) + [annotation.stem]:
        if key in images:
            return images[key][0]
    raise ValueError(f"annotation {str(annotation)!r}: no image {filename or annotation.stem!r} under {str(folder)!r}")
