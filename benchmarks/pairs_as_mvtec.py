"""Write an aligned-pairs set (DeepPCB) as an MVTec AD category: a second real category for the study recipes
written for MVTec (``recipes/methods_bottle.yaml`` with ``--data-root``), where only bottle is held here.

    python benchmarks/pairs_as_mvtec.py --out runs/deeppcb_mvtec          # ../shared/data/deeppcb_400, 256 px

The pairs, sorted by id, are split by board so no board is both trained on and tested on:

- ``train/good``: the defect-free templates of the first ``--train`` pairs (the only training data);
- ``test/good``: the templates of the next ``--test-good`` pairs;
- ``test/pcb_defect`` and ``ground_truth/pcb_defect/<id>_mask.png``: the tested images of the remaining pairs,
  each mask the union of its labelled boxes (DeepPCB labels boxes, not outlines: pixel metrics score box
  regions, so they are coarser than MVTec's).

Images are resized with area interpolation, masks with nearest neighbour (values 0 / 255), as the shared
``mvtec_bottle_256`` was made. The folder must be new or empty.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAIRS = ROOT.parent / "shared" / "data" / "deeppcb_400"
DEFECT = "pcb_defect"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=Path, default=PAIRS, help="an aligned-pairs folder (default: %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="the category folder to write (new or empty)")
    p.add_argument("--size", type=int, default=256, help="side of the written images (default: %(default)s)")
    p.add_argument("--train", type=int, default=300, help="pairs whose templates train (default: %(default)s)")
    p.add_argument("--test-good", type=int, default=50,
                   help="pairs whose templates are defect-free test images (default: %(default)s)")
    return p.parse_args(argv)


def error(message: str) -> None:
    print(f"pairs_as_mvtec: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def box_mask(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """The union of ``x1 y1 x2 y2`` boxes (pixel edges) as a 0 / 255 mask of the original image's size."""
    mask = np.zeros((height, width), np.uint8)
    for x1, y1, x2, y2 in np.round(boxes).astype(int):
        mask[max(y1, 0):min(y2, height), max(x1, 0):min(x2, width)] = 255
    return mask


def write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


def main(argv: Optional[List[str]] = None) -> int:
    from defectgen.io import read_pairs

    args = parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        error(f"--out {str(args.out)!r} is not empty")
    try:
        items = read_pairs(args.pairs)
    except ValueError as exc:
        error(str(exc))
    if args.train < 1 or args.test_good < 1 or args.train + args.test_good >= len(items):
        error(f"--train {args.train} + --test-good {args.test_good} must leave defective test pairs out of "
              f"{len(items)}")
    size = (args.size, args.size)
    counts = {"train/good": 0, "test/good": 0, f"test/{DEFECT}": 0}
    for k, item in enumerate(items):
        if k < args.train + args.test_good:
            folder = "train/good" if k < args.train else "test/good"
            template = cv2.imread(str(item.template), cv2.IMREAD_COLOR)
            write(args.out / folder / f"{item.name}.png", cv2.resize(template, size, interpolation=cv2.INTER_AREA))
            counts[folder] += 1
            continue
        if len(item.boxes) == 0:
            continue  # a tested image without a labelled defect is not a defective test image
        image = cv2.imread(str(item.image), cv2.IMREAD_COLOR)
        mask = box_mask(item.boxes, *image.shape[:2])
        write(args.out / "test" / DEFECT / f"{item.name}.png", cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        write(args.out / "ground_truth" / DEFECT / f"{item.name}_mask.png",
              cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST))
        counts[f"test/{DEFECT}"] += 1
    print(f"wrote {args.out}: " + ", ".join(f"{n} {folder}" for folder, n in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
