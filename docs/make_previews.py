"""Regenerate the README's operator gallery: docs/previews/<op>.png and docs/previews/bottle/<op>.png.

    python docs/make_previews.py            # from the repository root
    python docs/make_previews.py pcb        # only the DeepPCB previews (deeppcb_*.png, pcb_defects.png)

Default-image previews use the embedded OK images (so they rebuild anywhere); bottle previews use
``../shared/data/mvtec_bottle_256`` and are skipped when it is absent. On the bottle, operators place their
defects on the Otsu foreground (the bottle, not the white background), and DefectTransplant learns its
defects from the bottle's own NG test images. Every grid is 4 images of 192 px with seed 0.

The DeepPCB previews use ``../shared/data/deeppcb_400`` (skipped when absent) at its own 640 px, each cell a
160 px window around one defect, since a whole scan shrunk to a cell would hide defects of 10-30 px:
``deeppcb_bank_masks.png`` (the masks DefectBank.from_deeppcb cuts from image/template differences),
``deeppcb_transplant.png`` (those defects transplanted onto templates) and ``pcb_defects.png``
(``recipes/pcb_defects.yaml`` on templates, above real DeepPCB defects of the matching types).
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from defectgen import DefectBank, DefectTransplant, OneOf, create_op
from defectgen.bank import difference_masks
from defectgen.io import DEEPPCB_TYPES, read_pairs
from defectgen.io.images import default_images, load_folder, read_image_as
from defectgen.preview import preview_grid, save_png
from defectgen.result import DefectBatch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "previews"
BOTTLE = ROOT.parent / "shared" / "data" / "mvtec_bottle_256"
DEEPPCB = ROOT.parent / "shared" / "data" / "deeppcb_400"
WINDOW = 160  # px of a 640 px DeepPCB scan around each defect
COUNT, SIZE, SEED = 4, 192, 0

# (name, constructor arguments); an entry needing the bottle data is skipped without it
GALLERY = [
    ("cutpaste", {}), ("cutpaste_scar", {}), ("cutout", {}), ("scar", {}), ("cutpaste_3way", {}),
    ("confetti", {}), ("shape", {}), ("perlin", {}), ("poisson_paste", {}),
    ("transplant", {"bank": str(BOTTLE)}),
    ("draem", {}), ("glass", {}), ("memseg", {}), ("nsa", {}),
]


def render(name: str, kwargs: dict, images: torch.Tensor, path: Path) -> None:
    op = create_op(name, **kwargs)
    result = op(images, generator=torch.Generator().manual_seed(SEED))
    save_png(preview_grid(images, result, class_names=getattr(op, "class_names", None) and
                          ["normal", *op.class_names]), path)
    print(path.relative_to(ROOT))


def _windows(images: torch.Tensor, result: DefectBatch) -> tuple:
    """``(inputs, result)`` cut to a WINDOW-px square around each sample's first box (samples without one are
    dropped), so defects of a few pixels show at full resolution in :func:`preview_grid`."""
    keep, corners = [], []
    height, width = images.shape[-2:]
    for i in range(images.shape[0]):
        boxes = result.boxes_of(i)
        if len(boxes) == 0:
            continue
        x1, y1, x2, y2 = boxes[0].tolist()
        top = int(min(max((y1 + y2) / 2 - WINDOW / 2, 0), height - WINDOW))
        left = int(min(max((x1 + x2) / 2 - WINDOW / 2, 0), width - WINDOW))
        keep.append(i)
        corners.append((top, left))

    def cut(t):
        return torch.stack([t[i, :, y:y + WINDOW, x:x + WINDOW] for i, (y, x) in zip(keep, corners)])

    index = torch.cat([torch.nonzero(result.box_index == i)[:, 0] for i in keep])
    offsets = torch.tensor([[x, y, x, y] for y, x in corners], dtype=torch.float32)
    sample = {i: k for k, i in enumerate(keep)}
    box_index = torch.tensor([sample[int(i)] for i in result.box_index[index]])
    boxes = (result.boxes[index] - offsets[box_index]).clamp(0, WINDOW)
    return cut(images), DefectBatch(image=cut(result.image), mask=cut(result.mask), label=result.label[keep],
                                    boxes=boxes, box_index=box_index, box_label=result.box_label[index], params={})


def _templates(start: int, count: int) -> torch.Tensor:
    paths = sorted((DEEPPCB / "templates").glob("*.jpg"))[start::37][:count]
    return torch.from_numpy(np.stack([read_image_as(p, 1) for p in paths])).permute(0, 3, 1, 2).contiguous()


def _real_defects(types, per_type: int) -> tuple:
    """Real DeepPCB defects as a DefectBatch over their templates (label: index in ``types`` + 1)."""
    templates, tested, masks, boxes, labels = [], [], [], [], []
    for k, kind in enumerate(types):
        found = 0
        for item in read_pairs(DEEPPCB)[k::23]:
            if kind not in item.types or found == per_type:
                continue
            j = item.types.index(kind)
            templates.append(read_image_as(item.template, 1))
            tested.append(read_image_as(item.image, 1))
            masks.append(difference_masks(item.image, item.template, item.boxes[j:j + 1])[0][:, :, None])
            boxes.append(item.boxes[j])
            labels.append(k + 1)
            found += 1

    def batch(arrays):
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    n = len(labels)
    return batch(templates), DefectBatch(image=batch(tested), mask=batch(masks), label=torch.tensor(labels),
                                         boxes=torch.from_numpy(np.stack(boxes)), box_index=torch.arange(n),
                                         box_label=torch.tensor(labels), params={})


def deeppcb_bank_masks(path: Path) -> None:
    """Per row: tested image, template, their difference (before the per-box re-registration, so the slivers the
    mask leaves out show), the cut mask (red) with the label box (green); 4 boxes per type."""
    side, rows = 128, []
    items = read_pairs(DEEPPCB)
    for kind in DEEPPCB_TYPES:
        chosen = [(it, j) for it in items[::9] for j, t in enumerate(it.types) if t == kind][:4]
        for item, j in chosen:
            image, template = read_image_as(item.image, 1)[:, :, 0], read_image_as(item.template, 1)[:, :, 0]
            mask = difference_masks(item.image, item.template, item.boxes[j:j + 1])[0]
            x1, y1, x2, y2 = item.boxes[j].astype(int)
            cy, cx = (y1 + y2) // 2, (x1 + x2) // 2
            window = min(max(64, x2 - x1 + 16, y2 - y1 + 16), 640)
            top, left = min(max(cy - window // 2, 0), 640 - window), min(max(cx - window // 2, 0), 640 - window)
            zoom = side / window
            difference = np.abs(image.astype(np.int16) - template).astype(np.uint8)
            tinted = np.repeat(image[:, :, None], 3, 2).astype(np.float32)
            tinted[mask] = 0.55 * tinted[mask] + 0.45 * np.array([255, 0, 0])
            cells = []
            for cell in (image, template, difference, tinted.astype(np.uint8)):
                cell = np.atleast_3d(cell[top:top + window, left:left + window])
                cell = np.ascontiguousarray(np.repeat(cell, 3 // cell.shape[2], 2))
                cell = cv2.resize(cell, (side, side), interpolation=cv2.INTER_NEAREST)
                corners = np.round(np.array([x1 - left, y1 - top, x2 - left, y2 - top]) * zoom).astype(int)
                cv2.rectangle(cell, tuple(corners[:2]), tuple(corners[2:] - 1), (0, 200, 0), 1)
                cells.append(np.pad(cell, ((2, 2), (2, 2), (0, 0)), constant_values=255))
            row = np.concatenate(cells, 1)
            cv2.putText(row, f"{kind} {int(mask.sum())} px", (5, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 0, 255), 1,
                        cv2.LINE_AA)
            rows.append(row)
    half = len(rows) // 2
    left_column, right_column = np.concatenate(rows[:half]), np.concatenate(rows[half:])
    gap = np.full((left_column.shape[0], 12, 3), 255, np.uint8)
    save_png(np.concatenate([left_column, gap, right_column], 1), path)
    print(path.relative_to(ROOT))


def deeppcb_transplant(path: Path) -> None:
    """Real DeepPCB defects transplanted onto templates: copper-removing types on copper (dark), copper-adding
    types on the substrate, pasted as they are (binarised: no feathering, no brightness matching)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a box without difference would only be skipped
        removed = DefectBank.from_deeppcb(DEEPPCB, limit=100, types=["open", "mousebite", "pin_hole"])
        added = DefectBank.from_deeppcb(DEEPPCB, limit=100, types=["short", "spur", "spurious_copper"])
    paste = {"blend": "replace", "match_brightness": False}
    op = OneOf([DefectTransplant(removed, foreground="otsu_dark", **paste),
                DefectTransplant(added, foreground="otsu_bright", **paste)])
    images = _templates(3, 8)
    inputs, result = _windows(images, op(images, generator=torch.Generator().manual_seed(SEED)))
    save_png(preview_grid(inputs, result, class_names=["normal", *DEEPPCB_TYPES]), path)
    print(path.relative_to(ROOT))


def pcb_defects(path: Path) -> None:
    """recipes/pcb_defects.yaml on templates (top), real DeepPCB defects of the same kinds (bottom)."""
    config = yaml.safe_load((ROOT / "recipes" / "pcb_defects.yaml").read_text())
    names = config.pop("class_names")
    op = create_op(config)
    images = _templates(5, 8)
    generated = op(images, generator=torch.Generator().manual_seed(SEED))
    synthetic = preview_grid(*_windows(images, generated), class_names=["normal", *names])
    real = preview_grid(*_windows(*_real_defects(names, 2)), class_names=["real", *names])
    width = max(synthetic.shape[1], real.shape[1])
    pad = [np.pad(g, ((0, 0), (0, width - g.shape[1]), (0, 0)), constant_values=255) for g in (synthetic, real)]
    gap = np.full((12, width, 3), 255, np.uint8)
    save_png(np.concatenate([pad[0], gap, pad[1]]), path)
    print(path.relative_to(ROOT))


def pcb_previews() -> None:
    if not (DEEPPCB / "labels").is_dir():
        print(f"skipped the DeepPCB previews: {DEEPPCB} is absent", file=sys.stderr)
        return
    deeppcb_bank_masks(OUT / "deeppcb_bank_masks.png")
    deeppcb_transplant(OUT / "deeppcb_transplant.png")
    pcb_defects(OUT / "pcb_defects.png")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["pcb"]:
        pcb_previews()
        return 0
    if argv:
        print("usage: python docs/make_previews.py [pcb]", file=sys.stderr)
        return 2
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
    pcb_previews()
    return 0


if __name__ == "__main__":
    sys.exit(main())
