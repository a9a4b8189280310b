"""Reading aligned image pairs with defect boxes (DeepPCB and sets written the same way).

Inspection sets made by template comparison (PCB, printed sheets) come as a *tested* image, the aligned
defect-free *template* it was compared with, and one box + type per defect; there are no masks. Two layouts
are read:

1. One folder per role (``/work/shared/data/deeppcb_400`` and any set exported that way)::

       root/images/<id>.jpg       tested images
       root/templates/<id>.jpg    the aligned defect-free template of each (same stem, any image extension)
       root/labels/<id>.txt       one defect per line

2. The DeepPCB repository's own layout (``PCBData/group<g>/<g>/`` beside ``PCBData/group<g>/<g>_not/``)::

       <folder>/<id>_test.jpg     tested image
       <folder>/<id>_temp.jpg     its template, in the same folder
       <folder>_not/<id>.txt      labels in a sibling folder named after the image folder plus ``_not``,
                                  or <folder>/<id>.txt beside the image

   searched recursively under ``root`` (``root`` may be ``PCBData``, one group, or one image folder).

A label line is ``x1 y1 x2 y2 type`` separated by spaces, commas or both. ``type`` is DeepPCB's id 1..6 or
a name of :data:`DEEPPCB_TYPES` (also DeepPCB's evaluation names ``copper`` and ``pin-hole``).

DeepPCB's ``x2``/``y2`` are *inclusive* pixel indices. Its boxes are each defect's pixel bounding box grown by
10 px on every side: on deeppcb_400 the tested/template difference inside a box starts exactly 10 columns after
``x1`` in 1021 of the 2754 boxes and its last column is exactly 10 before ``x2`` in 1165 (rows: 1054 and 1084;
most others have trace-edge noise reaching the box border). Were ``x2`` one past the last pixel, the far margin
would be 11. Boxes are returned in pixel edges, ``x2 + 1`` and ``y2 + 1``, the convention of every other box in
defectgen.

Only files are listed here (nothing is decoded), so a box is not checked against its image's size; users of the
boxes clip them (:meth:`defectgen.bank.DefectBank.from_aligned_pairs` does).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .images import IMAGE_EXTENSIONS, PathLike

DEEPPCB_TYPES = ("open", "short", "mousebite", "spur", "spurious_copper", "pin_hole")
"""DeepPCB's defect types; label id ``k`` in a label file is ``DEEPPCB_TYPES[k - 1]``."""

# DeepPCB's evaluation scripts spell two types differently from its paper; accept both
_ALIASES = {"copper": "spurious_copper", "pinhole": "pin_hole", "mouse_bite": "mousebite"}

_HINT = ("expected images/<id>.jpg + templates/<id>.jpg + labels/<id>.txt, or DeepPCB's <id>_test.jpg beside "
         "<id>_temp.jpg with labels in a sibling <folder>_not/<id>.txt")


@dataclass(frozen=True, eq=False)
class PairItem:
    """One tested image, its aligned template and its labelled defects.

    Attributes:
        image: the tested (defective) image file.
        template: the aligned defect-free template file.
        boxes: ``(n, 4)`` float32 ``x1 y1 x2 y2`` in pixel edges (``x2`` one past the last column); n may be 0.
        types: one name of :data:`DEEPPCB_TYPES` per box.
        name: the pair's id (the file stem, without DeepPCB's ``_test`` suffix).
        labels: the label file the boxes were read from.
        problems: one ``"<file>:<line>: <why>"`` per label line that was skipped (also raised as a warning), so
            a caller can count or report them after the warnings are gone.
    """

    image: Path
    template: Path
    boxes: np.ndarray = field(repr=False)
    types: List[str]
    name: str
    labels: Optional[Path] = None
    problems: Tuple[str, ...] = ()

    def __post_init__(self):
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "types", list(self.types))
        if len(self.types) != boxes.shape[0]:
            raise ValueError(f"pair {self.name!r}: {boxes.shape[0]} boxes but {len(self.types)} types")

    def __eq__(self, other):  # numpy boxes make the generated __eq__ ambiguous
        if not isinstance(other, PairItem):
            return NotImplemented
        return (self.image, self.template, self.types, self.name, self.labels, self.problems) == \
            (other.image, other.template, other.types, other.name, other.labels, other.problems) and \
            np.array_equal(self.boxes, other.boxes)


def read_pairs(root: PathLike) -> List[PairItem]:
    """List the aligned pairs under ``root`` (either layout of the module docstring), sorted by id.

    Bad label lines (wrong field count, not a number, unknown type, ``x2 < x1``, negative coordinates) are
    skipped: each is warned about with its file and line number and kept in the item's
    :attr:`PairItem.problems`, so one typo does not lose the other defects of a 400-image set.

    Raises:
        ValueError: naming the path when ``root`` is not a folder or holds no pair, when a tested image has no
            template (naming the image and where the template was looked for) or no label file.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"pairs folder {str(root)!r} does not exist or is not a directory")
    if (root / "images").is_dir() or (root / "templates").is_dir():
        found = _by_role(root)
    else:
        found = _deeppcb(root)
    if not found:
        raise ValueError(f"pairs folder {str(root)!r} holds no image pairs; {_HINT}")
    items = []
    for name, image, template, labels in sorted(found, key=lambda f: (f[0], str(f[1]))):
        boxes, types, problems = _read_labels(labels)
        for problem in problems:
            warnings.warn(f"read_pairs: skipping label line {problem}", stacklevel=2)
        items.append(PairItem(image=image, template=template, boxes=boxes, types=types, name=name, labels=labels,
                              problems=tuple(problems)))
    return items


def _images_by_stem(folder: Path) -> Dict[str, Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    out: Dict[str, Path] = {}
    for p in files:
        out.setdefault(p.stem, p)  # the first extension in sorted order, as read_mvtec picks masks
    return out


def _by_role(root: Path):
    images_dir, templates_dir, labels_dir = root / "images", root / "templates", root / "labels"
    for folder in (images_dir, templates_dir, labels_dir):
        if not folder.is_dir():
            raise ValueError(f"{str(folder)!r} is not a directory; {_HINT}")
    templates = _images_by_stem(templates_dir)
    found = []
    for stem, image in _images_by_stem(images_dir).items():
        if stem not in templates:
            raise ValueError(f"tested image {str(image)!r} has no template: no {stem}.<ext> in "
                             f"{str(templates_dir)!r} ({', '.join(IMAGE_EXTENSIONS)})")
        labels = labels_dir / f"{stem}.txt"
        if not labels.is_file():
            raise ValueError(f"tested image {str(image)!r} has no label file {str(labels)!r}")
        found.append((stem, image, templates[stem], labels))
    return found


_TEST = re.compile(r"^(?P<id>.+)_test$")


def _deeppcb(root: Path):
    found, folders = [], {}
    for image in sorted(p for p in root.rglob("*_test.*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
        name = _TEST.match(image.stem).group("id")
        if image.parent not in folders:
            folders[image.parent] = _images_by_stem(image.parent)
        template = folders[image.parent].get(f"{name}_temp")
        if template is None:
            raise ValueError(f"tested image {str(image)!r} has no template {name}_temp.<ext> beside it "
                             f"({', '.join(IMAGE_EXTENSIONS)})")
        candidates = [image.parent.with_name(image.parent.name + "_not") / f"{name}.txt", image.parent / f"{name}.txt"]
        labels = next((c for c in candidates if c.is_file()), None)
        if labels is None:
            raise ValueError(f"tested image {str(image)!r} has no label file (looked for "
                             f"{' and '.join(repr(str(c)) for c in candidates)})")
        found.append((name, image, template, labels))
    return found


def _type_name(token: str) -> Optional[str]:
    if token.isdigit():
        k = int(token)
        return DEEPPCB_TYPES[k - 1] if 1 <= k <= len(DEEPPCB_TYPES) else None
    name = token.lower().replace("-", "_")
    name = _ALIASES.get(name, name)
    return name if name in DEEPPCB_TYPES else None


def _read_labels(path: Path):
    """``(boxes (n, 4) float32 pixel edges, types, problems)`` of one label file."""
    boxes, types, problems = [], [], []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read label file {str(path)!r}: {error}") from None
    for number, line in enumerate(text.splitlines(), 1):
        tokens = [t for t in re.split(r"[,\s]+", line.strip()) if t]
        if not tokens:
            continue
        where = f"{path}:{number}"
        if len(tokens) != 5:
            problems.append(f"{where}: expected 'x1 y1 x2 y2 type', got {len(tokens)} fields: {line.strip()!r}")
            continue
        try:
            x1, y1, x2, y2 = (float(t) for t in tokens[:4])
        except ValueError:
            problems.append(f"{where}: coordinates are not numbers: {line.strip()!r}")
            continue
        kind = _type_name(tokens[4])
        if kind is None:
            problems.append(f"{where}: unknown defect type {tokens[4]!r} (expected 1..{len(DEEPPCB_TYPES)} or one "
                            f"of {list(DEEPPCB_TYPES)})")
            continue
        if not all(np.isfinite((x1, y1, x2, y2))) or min(x1, y1) < 0 or x2 < x1 or y2 < y1:
            problems.append(f"{where}: not a box (need 0 <= x1 <= x2 and 0 <= y1 <= y2): {line.strip()!r}")
            continue
        boxes.append((x1, y1, x2 + 1, y2 + 1))  # inclusive last pixel -> edge after it
        types.append(kind)
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), types, problems
