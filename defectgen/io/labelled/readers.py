"""The front door for labelled sets: one call reads any supported format into a :class:`LabelledSet`.

Training and evaluation code takes "a labelled set" without caring whether it came as YOLO text files, a COCO
JSON, an MVTec folder of masks, Pascal VOC XML or DeepPCB pairs; :func:`read_labelled` finds out which
(``format="auto"``) and hands the path to that format's reader. Every reader follows the same conventions:
class ids ``1..K`` by ``class_names``, boxes in pixel edges, recoverable label problems reported (see
:mod:`defectgen.io.labelled.problems`), real errors raised as ``ValueError`` naming the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from .labelled_set import LabelledSet
from .assemble import PathLike
from .coco import coco_splits, read_coco
from .mvtec import read_mvtec_labelled
from .pairs import read_deeppcb
from .voc import ANNOTATION_FOLDERS, IMAGE_FOLDERS, find_folder, read_voc
from .yolo import read_yolo

FORMATS = ("yolo", "coco", "mvtec", "voc", "deeppcb")

LAYOUTS = {
    "yolo": "data.yaml and/or images/<split>/*.png + labels/<split>/<stem>.txt ('class cx cy w h' per line)",
    "coco": "annotations/instances_<split>.json + images/<split>/ (or the .json file itself)",
    "mvtec": "train/good/*.png, test/<type>/*.png, ground_truth/<type>/<stem>_mask.png",
    "voc": "Annotations/*.xml + JPEGImages/ or images/ (optional ImageSets/Main/<split>.txt)",
    "deeppcb": "images/<id>.jpg + templates/<id>.jpg + labels/<id>.txt ('x1 y1 x2 y2 type'), or DeepPCB's "
               "<id>_test.jpg + <id>_temp.jpg",
}
"""What each format looks like on disk, for error messages and ``--help`` texts."""

READERS: Dict[str, Callable[..., LabelledSet]] = {
    "yolo": read_yolo, "coco": read_coco, "mvtec": read_mvtec_labelled, "voc": read_voc, "deeppcb": read_deeppcb,
}


def read_labelled(path: PathLike, format: str = "auto", split: Optional[str] = None, size: Optional[int] = None,
                  channels: int = 3, class_names: Optional[Sequence[str]] = None,
                  limit: Optional[int] = None) -> LabelledSet:
    """Read the labelled set at ``path`` (a folder, or a COCO ``.json`` / YOLO ``data.yaml``).

    Args:
        path: the set.
        format: one of :data:`FORMATS`, or ``"auto"`` (:func:`detect_format`).
        split: which split to read; each format's default is its evaluation split (``test``, else ``val``,
            else ``train``; MVTec: ``test``; DeepPCB has none). The split read is in ``info["split"]``.
        size: resize every image to ``size x size`` as it is read, boxes (and masks) scaled with it; None keeps
            each image's own size.
        channels: 1 (gray) or 3 (RGB).
        class_names: the class id order of the result (for YOLO without names in its files: the names of
            indices ``0..K-1``); every class the files name must be in it.
        limit: read at most this many images (the first in the reader's order).

    Returns:
        the set, with ``info`` holding ``format``, ``root``, ``split`` and ``problems`` (the label lines
        skipped, boxes clipped or dropped, each also warned about).

    Raises:
        ValueError: naming the path: unknown ``format``, a path that does not exist or is empty, a folder of no
            known format (the message lists what each looks like), and the readers' own errors.
    """
    if format == "auto":
        format = detect_format(path)
    elif format not in READERS:
        raise ValueError(f"format must be 'auto' or one of {list(FORMATS)}, got {format!r}")
    else:
        _check_exists(Path(path))
    return READERS[format](path, split=split, size=size, channels=channels, class_names=class_names, limit=limit)


def detect_format(path: PathLike) -> str:
    """The format of the set at ``path``: a ``.json`` file is COCO, a ``.yaml`` YOLO; a folder is tested for
    each layout of :data:`LAYOUTS` (DeepPCB's ``templates/`` first, since it also has ``images/`` and
    ``labels/``; YOLO before COCO before MVTec, so a folder ``defectgen generate`` wrote in several formats
    reads as YOLO; a defectgen folder with only ``mvtec/`` reads as MVTec).

    Raises:
        ValueError: naming ``path`` when it does not exist, is empty, or matches no layout (listing them).
    """
    root = Path(path)
    _check_exists(root)
    if root.is_file():
        suffix = root.suffix.lower()
        if suffix == ".json":
            return "coco"
        if suffix in (".yaml", ".yml"):
            return "yolo"
        raise ValueError(f"{str(root)!r} is a file but not a COCO .json or a YOLO data.yaml; give the set's folder")
    if (root / "templates").is_dir() and (root / "images").is_dir():
        return "deeppcb"
    if (root / "data.yaml").is_file() or ((root / "images").is_dir() and (root / "labels").is_dir()):
        return "yolo"
    if coco_splits(root):
        return "coco"
    if _is_mvtec(root) or _is_mvtec(root / "mvtec"):
        return "mvtec"
    annotations = find_folder(root, ANNOTATION_FOLDERS)
    if annotations is not None and find_folder(root, IMAGE_FOLDERS) is not None and any(annotations.glob("*.xml")):
        return "voc"
    if any(p.is_file() for p in root.rglob("*_temp.*")) and any(p.is_file() for p in root.rglob("*_test.*")):
        return "deeppcb"
    layouts = "\n".join(f"  {name}: {layout}" for name, layout in LAYOUTS.items())
    raise ValueError(f"cannot tell the format of {str(root)!r}; pass format= one of {list(FORMATS)}. "
                     f"Each looks like this:\n{layouts}")


def _is_mvtec(root: Path) -> bool:
    return (root / "train" / "good").is_dir() or ((root / "test").is_dir() and (root / "ground_truth").is_dir()) \
        or (root / "test" / "good").is_dir()


def _check_exists(root: Path) -> None:
    if not root.exists():
        raise ValueError(f"labelled set {str(root)!r} does not exist")
    if root.is_dir() and not any(root.iterdir()):
        raise ValueError(f"labelled set folder {str(root)!r} is empty")
