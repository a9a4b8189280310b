"""Regenerate the README's operator gallery: docs/previews/<op>.png and docs/previews/bottle/<op>.png.

    python docs/make_previews.py            # from the repository root

Default-image previews use the embedded OK images (so they rebuild anywhere); bottle previews use
``../shared/data/mvtec_bottle_256`` and are skipped when it is absent. On the bottle, operators place their
defects on the Otsu foreground (the bottle, not the white background), and DefectTransplant learns its
defects from the bottle's own NG test images. Every grid is 4 images of 192 px with seed 0.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from defectgen import create_op
from defectgen.io.images import default_images, load_folder
from defectgen.preview import preview_grid, save_png

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "previews"
BOTTLE = ROOT.parent / "shared" / "data" / "mvtec_bottle_256"
COUNT, SIZE, SEED = 4, 192, 0

# (name, constructor arguments); an entry needing the bottle data is skipped without it
GALLERY = [
    ("cutpaste", {}), ("cutpaste_scar", {}), ("cutout", {}), ("scar", {}), ("cutpaste_3way", {}),
    ("confetti", {}), ("shape", {}), ("perlin", {}), ("poisson_paste", {}),
    ("transplant", {"bank": str(BOTTLE)}),
]


def render(name: str, kwargs: dict, images: torch.Tensor, path: Path) -> None:
    op = create_op(name, **kwargs)
    result = op(images, generator=torch.Generator().manual_seed(SEED))
    save_png(preview_grid(images, result, class_names=getattr(op, "class_names", None) and
                          ["normal", *op.class_names]), path)
    print(path.relative_to(ROOT))


def main() -> int:
    default = default_images(SIZE, COUNT)
    bottle = load_folder(BOTTLE / "train" / "good", SIZE, limit=COUNT) if BOTTLE.is_dir() else None
    for name, kwargs in GALLERY:
        needs_bottle = any(str(BOTTLE) == str(v) for v in kwargs.values())
        if bottle is None and needs_bottle:
            print(f"skipped {name}: {BOTTLE} is absent", file=sys.stderr)
            continue
        render(name, kwargs, default, OUT / f"{name}.png")
        if bottle is not None:
            render(name, {**kwargs, "foreground": "otsu"}, bottle, OUT / "bottle" / f"{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
