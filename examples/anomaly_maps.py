"""Train a CutPaste detector on normal images and look at its anomaly maps on real defects.

    python examples/anomaly_maps.py --data ../shared/data/mvtec_bottle_256 --steps 100 --out maps.png
    python examples/anomaly_maps.py --level patch --image-size 128 --out patch_maps.png

Writes one column per test image (two per type): the image, its anomaly map (one colour scale for the whole
figure, so columns compare) and the ground-truth mask; prints the image scores.
"""
import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from detectors.cutpaste import CutPasteDetector
from detectors.data import load_test_set

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_bottle_256"


def pick(defects, per_type):
    """Indices of the first ``per_type`` images of every type, in type order."""
    chosen, seen = [], {}
    for i, name in enumerate(defects):
        if seen.get(name, 0) < per_type:
            chosen.append(i)
            seen[name] = seen.get(name, 0) + 1
    return chosen


def figure(images, maps, masks):
    """Rows: images, heat maps on a shared scale, masks; uint8 HxWx3 BGR."""
    lo, hi = float(maps.min()), float(maps.max())
    heat = ((maps - lo) / max(hi - lo, 1e-12) * 255).clamp(0, 255).to(torch.uint8)
    columns = []
    for image, h, mask in zip(images, heat, masks):
        rgb = image.expand(3, -1, -1).permute(1, 2, 0).numpy()[:, :, ::-1]
        coloured = cv2.applyColorMap(h[0].numpy(), cv2.COLORMAP_JET)
        overlay = cv2.addWeighted(np.ascontiguousarray(rgb), 0.5, coloured, 0.5, 0)
        gt = np.repeat(mask[0].numpy()[:, :, None].astype(np.uint8) * 255, 3, axis=2)
        columns.append(np.concatenate([rgb, overlay, gt], axis=0))
    return np.concatenate(columns, axis=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MVTec-layout category folder")
    parser.add_argument("--pretext", default="3way")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--level", choices=["image", "patch"], default="image")
    parser.add_argument("--per-type", type=int, default=2, help="test images shown per type")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--out", type=Path, default=Path("maps.png"))
    args = parser.parse_args(argv)

    det = CutPasteDetector(pretext=args.pretext, image_size=args.image_size, level=args.level, seed=0)
    det.fit(args.data, steps=args.steps, device=args.device)
    test = load_test_set(args.data, args.image_size, det.channels)
    index = pick(test.defects, args.per_type)
    images, masks = test.images[index], test.masks[index]
    prediction = det.predict(images)
    scores, maps = prediction.scores, prediction.maps
    for i, score in zip(index, scores.tolist()):
        print(f"{test.defects[i]:>16}: score {score:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), figure(images, maps.cpu(), masks))
    print(f"wrote {args.out}")
    return scores


if __name__ == "__main__":
    main()
