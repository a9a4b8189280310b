"""The ``defectgen`` command line.

Each subcommand is a ``(help, add_arguments, run)`` entry of :data:`_COMMANDS`, so new ones plug in without
touching :func:`main`: ``preview``, ``generate`` and ``fit`` here, ``train`` and ``eval`` from the sibling package
``detectors`` (:mod:`detectors.cli`, imported only when one of them is used). User errors (a bad option, an
unknown operator, an empty folder) end as one ``defectgen: error: ...`` line and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

from .cli_support import (EXIT_USAGE, CliError, Parser, add_device_argument, check_folder, int_at_least,
                          positive_int, resolve_device)
from .io import default_images, load_folder
from .preview import preview_grid, save_png
from .registry import create_op, list_ops

NEEDS_ARGUMENTS = ("patch", "region", "one_of", "transplant", "diffusion")
"""Operators that cannot be built from their name alone (generic compositions, and DefectTransplant, which
needs a bank of real defects); ``preview`` skips them by default."""


class _VersionAction(argparse.Action):
    """``--version``: one unwrapped line, computed only when asked (argparse's own wraps it to the terminal)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from . import __version__
        from .environment import describe

        print(f"defectgen {__version__}; {describe()}")
        parser.exit()


# -- preview ----------------------------------------------------------------------------------------------------
def _add_preview_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--size", metavar="PX", type=positive_int, default=256,
                        help="images are resized to PX x PX (default: %(default)s)")
    parser.add_argument("--seed", metavar="S", type=int, default=0,
                        help="seed of the operators' random draws (default: %(default)s)")


def _run_preview(args: argparse.Namespace) -> int:
    from .generation.job import build_op, class_names

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


# -- generate ---------------------------------------------------------------------------------------------------
def _add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    from .export.layout import FORMATS

    parser.add_argument("--input", metavar="DIR", type=Path, required=True,
                        help="folder of OK images, read recursively (png, jpg, bmp, tif; 8/16-bit; gray/RGB/RGBA)")
    parser.add_argument("--output", metavar="DIR", type=Path, required=True,
                        help="data set folder; must be empty or new unless --resume or --overwrite")
    parser.add_argument("--op", metavar="NAME", action="append", dest="ops",
                        help="operator (repeatable: one class each, every image gets one of them)")
    parser.add_argument("--recipe", metavar="FILE", type=Path,
                        help="YAML operator config (the registry's format), instead of --op")
    parser.add_argument("--count", metavar="N", type=positive_int, required=True, help="number of NG images")
    parser.add_argument("--format", metavar="FMT", action="append", dest="formats", choices=FORMATS,
                        help=f"label format, repeatable: {', '.join(FORMATS)} (default: yolo); images and "
                             "masks are always written")
    parser.add_argument("--seed", metavar="S", type=int, default=0,
                        help="image i depends only on (seed, i) and the settings (default: %(default)s)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--size", metavar="PX", type=positive_int, default=256,
                      help="resize OK images (or tiles) to PX x PX (default: %(default)s)")
    size.add_argument("--native-size", action="store_true", help="keep every image's own size")
    parser.add_argument("--tile", metavar="PX", type=positive_int,
                        help="cut OK images into PX x PX tiles first (each tile is a source)")
    parser.add_argument("--gray", action="store_true", help="write grayscale images (default: RGB)")
    parser.add_argument("--val-fraction", metavar="F", type=float, default=0.0,
                        help="share of OK files (and outputs) held out as the val split (default: %(default)s)")
    parser.add_argument("--segmentation", choices=("rle", "polygon"), default="rle",
                        help="COCO segmentation format (default: %(default)s)")
    parser.add_argument("--batch-size", metavar="N", type=positive_int, default=16,
                        help="images per operator batch; part of the job (default: %(default)s)")
    parser.add_argument("--workers", metavar="N", type=positive_int, default=1,
                        help="processes making batches in parallel (default: %(default)s)")
    add_device_argument(parser)
    parser.add_argument("--shard", metavar="K/N",
                        help="make only the K-th of N slices of the job (0-based), e.g. one per machine")
    parser.add_argument("--resume", action="store_true", help="continue the job in --output where it stopped")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete a previous defectgen output in --output first")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown on a terminal)")


def _run_generate(args: argparse.Namespace) -> int:
    import warnings

    from .generation import generate, parse_shard, print_summary

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"defectgen: warning: {message}", file=sys.stderr)

    import cv2

    # unreadable inputs are reported by defectgen (warning + end-of-run list); OpenCV's own log lines about
    # them would only repeat that in another format. Some OpenCV builds (4.10 from PyPI) have no
    # cv2.utils.logging; they do not log unreadable files either.
    opencv_log = getattr(cv2.utils, "logging", None)
    if opencv_log is not None:
        opencv_log.setLogLevel(opencv_log.LOG_LEVEL_SILENT)
    try:
        shard = None if args.shard is None else parse_shard(args.shard)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = show
            summary = generate(
                args.input, args.output, args.ops, recipe=args.recipe, count=args.count,
                formats=args.formats or ["yolo"], seed=args.seed, size=None if args.native_size else args.size,
                tile=args.tile, channels=1 if args.gray else 3, val_fraction=args.val_fraction,
                batch_size=args.batch_size, workers=args.workers, device=args.device, shard=shard,
                resume=args.resume, overwrite=args.overwrite, segmentation=args.segmentation,
                progress=False if args.no_progress else None)
    except (ValueError, TypeError) as error:
        raise CliError(str(error)) from error
    except OSError as error:
        raise CliError(f"{error.strerror or error}: {error.filename}" if error.filename else str(error)) from error
    print_summary(summary)
    return 0


# -- fit --------------------------------------------------------------------------------------------------------
def _add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    from .io.labelled import FORMATS

    parser.add_argument("--real", metavar="DIR", type=Path, required=True,
                        help="the real labelled set (folder, COCO .json or YOLO data.yaml)")
    parser.add_argument("--real-format", choices=("auto",) + tuple(FORMATS), default="auto",
                        help="--real's format (default: %(default)s)")
    parser.add_argument("--real-split",
                        help="--real's split (default: the one 'defectgen train --real' reads: train; MVTec: test)")
    parser.add_argument("--real-count", metavar="K", type=positive_int,
                        help="fit to K of --real's images, chosen by --seed as 'train --real-count K' chooses them "
                             "(default: every image)")
    parser.add_argument("--real-test-every", metavar="N", type=int_at_least(2, "an integer >= 2"),
                        help="hold out every N-th image (sorted by name) before choosing, as a DeepPCB study's "
                             "data.test_every N does (its K real images are chosen among the others)")
    parser.add_argument("--seed", metavar="S", type=int, default=0,
                        help="chooses the K images and seeds the synthetic side of the report (default: %(default)s)")
    parser.add_argument("--ok", metavar="DIR", type=Path,
                        help="OK images for the synthetic side of the report and previews (an MVTec category: its "
                             "train/good; aligned pairs: their templates); default: --real's own, if it has them")
    parser.add_argument("--image-size", metavar="PX", type=positive_int, default=256,
                        help="images are measured at PX x PX (aligned pairs at their own size); every measure is "
                             "relative to the image (default: %(default)s)")
    parser.add_argument("--samples", metavar="N", type=positive_int, default=64,
                        help="synthetic images made and measured for the report (default: %(default)s)")
    parser.add_argument("--out", metavar="DIR", type=Path, required=True,
                        help="where recipe.yaml, statistics.json, report.md and the plots go; must be new or empty "
                             "unless --force")
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out")
    parser.add_argument("--no-transplant", action="store_true",
                        help="calibrated shapes only, no transplant of the real defects")
    add_device_argument(parser)


def _run_fit(args: argparse.Namespace) -> int:
    from .fit import RealSpec, fit_defects

    check_folder(args.real, "--real") if not args.real.is_file() else None
    if args.ok is not None:
        check_folder(args.ok, "--ok")
    try:
        spec = RealSpec(str(args.real), args.real_format, args.real_split, args.real_count, args.seed,
                        args.real_test_every)
        result = fit_defects(spec, args.out, ok=args.ok, samples=args.samples, image_size=args.image_size,
                             device=resolve_device(args.device), force=args.force,
                             transplant=not args.no_transplant)
    except (ValueError, TypeError) as error:
        text = str(error).splitlines()[0]
        for name, flag in (("force=True / --force", "--force"), ("count=", "--real-count "),
                           ("test_every=", "--real-test-every "), ("pass format=", "pass --real-format")):
            text = text.replace(name, flag)
        raise CliError(text) from error
    except OSError as error:
        raise CliError(f"{error.strerror or error}: {error.filename}" if error.filename else str(error)) from error
    classes = ", ".join(f"{name}: {summary['defects']}" for name, summary in result.real.classes.items())
    print(f"fitted {len(result.real.defects)} defects of {len(result.chosen)} real images ({classes})")
    for path in result.files:
        print(path)
    return 0


# -- train / eval -----------------------------------------------------------------------------------------------
# The detectors package depends on defectgen (detectors -> defectgen), never the reverse: defectgen must not
# import ``detectors`` at module import time, so these thin wrappers import ``detectors.cli`` only when the
# parser is built or the command runs.
def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from detectors.cli import add_train_arguments

    add_train_arguments(parser)


def _run_train(args: argparse.Namespace) -> int:
    from detectors.cli import run_train

    return run_train(args)


def _add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    from detectors.cli import add_eval_arguments

    add_eval_arguments(parser)


def _run_eval(args: argparse.Namespace) -> int:
    from detectors.cli import run_eval

    return run_eval(args)


def _add_ablate_arguments(parser: argparse.ArgumentParser) -> None:
    from detectors.study.cli import add_ablate_arguments

    add_ablate_arguments(parser)


def _run_ablate(args: argparse.Namespace) -> int:
    from detectors.study.cli import run_ablate

    return run_ablate(args)


# -- dispatch ---------------------------------------------------------------------------------------------------
_COMMANDS: Dict[str, Tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "preview": ("render a PNG grid (input / defect / mask + boxes) per operator",
                _add_preview_arguments, _run_preview),
    "generate": ("make a labelled NG data set (YOLO / COCO / MVTec) from a folder of OK images",
                 _add_generate_arguments, _run_generate),
    "fit": ("measure the defects of K real labelled images and write an operator recipe that makes more like "
            "them (recipe.yaml, statistics.json, report.md with plots and previews)", _add_fit_arguments, _run_fit),
    "train": ("train a detector (CutPaste on normal images, or Faster R-CNN / YOLO on synthetic and/or real "
              "defect boxes) or the diffusion inpainting model that paints defects",
              _add_train_arguments, _run_train),
    "eval": ("evaluate a trained detector on a real labelled test set (MVTec, YOLO, COCO, VOC, DeepPCB)",
             _add_eval_arguments, _run_eval),
    "ablate": ("run a study: which synthetic defect families, in which detectors, find which real defects "
               "(a YAML recipe expanded into resumable, shardable cells; tables and heatmaps)",
               _add_ablate_arguments, _run_ablate),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per entry of :data:`_COMMANDS`."""
    parser = Parser(prog="defectgen", description="Batched synthetic defects for industrial visual inspection.")
    parser.add_argument("--version", action=_VersionAction, help="print the versions of defectgen and the "
                        "libraries it runs with (for bug reports), then exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, add_arguments, run) in _COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(run=run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``defectgen`` console script and ``python -m defectgen``; returns the exit code.

    ``--help`` returns 0 instead of raising ``SystemExit``, so callers (and tests) always get a code back.
    """
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
        return args.run(args)
    except CliError as error:
        print(f"defectgen: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as done:  # raised only by argparse's --help, after printing it
        return int(done.code or 0)
