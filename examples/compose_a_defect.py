"""Compose a new defect type from parts: where (mask sampler) x what (source) x how (blend).

    python examples/compose_a_defect.py --out compose.png

A long, thin, rotated patch of the image itself with a strong colour shift: a "discoloured streak".
"""
import argparse

import torch

from defectgen import PatchDefect
from defectgen.blends import Replace
from defectgen.io import default_images
from defectgen.masks import ScarMask
from defectgen.preview import preview_grid, save_png
from defectgen.sources import ColourJitter, SelfPatch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="compose.png")
    args = parser.parse_args(argv)

    streak = PatchDefect(
        mask=ScarMask(width_px_range=(3, 6), length_px_range=(60, 120), angle_deg_range=(-90, 90)),
        source=SelfPatch(ColourJitter(brightness=0.4, contrast=0.2, saturation=0.5, hue=0.2)),
        blend=Replace(),
        label=1,
    )
    images = default_images(size=256, count=6)
    result = streak(images, generator=torch.Generator().manual_seed(0))
    save_png(preview_grid(images, result), args.out)
    print("config, for a YAML recipe:", streak.to_config())
    print("wrote", args.out)
    return result


if __name__ == "__main__":
    main()
