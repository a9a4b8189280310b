"""``defectgen preview``: render a PNG grid (input / defect / mask + boxes) per operator."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..cli_support import CliError, Command, add_image_size_argument, add_seed_argument, positive_int
from ..io import default_images, load_folder
from ..preview import preview_grid, save_png
from ..registry import create_op, list_ops

NEEDS_ARGUMENTS = ("patch", "region", "one_of", "transplant", "diffusion")
"""Operators that cannot be built from their name alone (generic compositions, and DefectTransplant, which
needs a bank of real defects); ``preview`` skips them by default."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", metavar="DIR", type=Path,
                        help="folder of OK images (searched recursively); default: the embedded texture tiles")
    parser.add_argument("--op", metavar="NAME", action="append", dest="ops",
                        help="operator to preview (repeatable); default: every operator that needs no arguments")
    parser.add_argument("--recipe", metavar="FILE", type=Path, action="append", dest="recipes",
                        help="YAML operator recipe to preview (repeatable; written as <recipe name>.png), e.g. one "
                             "that needs arguments: recipes/diffusion_bottle.yaml")
    parser.add_argument("--out-dir", metavar="DIR", type=Path, default=Path("previews"),
                        help="where <op>.png files are written (default: %(default)s)")
    parser.add_argument("--count", metavar="N", type=positive_int, default=6,
                        help="number of images (columns) per preview (default: %(default)s)")
    add_image_size_argument(parser, "images are resized to PX x PX (default: %(default)s)", 256, flag="--size")
    add_seed_argument(parser, "seed of the operators' random draws (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from ..recipe import build_op, class_names

    names = args.ops or ([] if args.recipes else [name for name in list_ops() if name not in NEEDS_ARGUMENTS])
    ops, labels = {}, {}
    for name in names:  # build every operator first, so a typo fails before anything is written
        try:
            ops[name] = create_op(name)
        except (ValueError, TypeError) as error:
            raise CliError(str(error)) from error
    for recipe in args.recipes or []:
        try:
            op, given = build_op(None, recipe)
            labels[recipe.stem] = class_names(op, given)
        except (ValueError, TypeError, OSError) as error:
            raise CliError(str(error)) from error
        ops[recipe.stem] = op
    try:
        images = default_images(args.size, args.count) if args.input is None else load_folder(
            args.input, args.size, limit=args.count)
    except ValueError as error:
        raise CliError(str(error)) from error
    for name, op in ops.items():
        try:
            result = op(images, generator=torch.Generator().manual_seed(args.seed))
        except ValueError as error:
            raise CliError(f"op {name!r}: {error}") from error
        path = args.out_dir / f"{name}.png"
        try:
            save_png(preview_grid(images, result, labels.get(name)), path)
        except OSError as error:
            raise CliError(str(error)) from error
        print(path)
    return 0


PREVIEW = Command("preview", "render a PNG grid (input / defect / mask + boxes) per operator", add_arguments, run,
                  order=10)
