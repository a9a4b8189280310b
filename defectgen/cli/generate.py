"""``defectgen generate``: make a labelled NG data set (YOLO / COCO / MVTec) from a folder of OK images, in this
process (``--workers``, ``--shard k/N``) or as shards on an executor (``--executor ray|slurm --shards K``).

Exit codes: 0 when the job is complete (or this shard is done), 1 when shard tasks were lost for good (the job is
incomplete: ``--resume`` finishes it), 2 for a usage error, 130 when interrupted with an executor."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli_support import (CliError, Command, add_batch_size_argument, add_device_argument, add_gray_argument,
                           add_image_size_argument, add_seed_argument, positive_int)
from ..executors.options import add_executor_arguments

INTERRUPTED = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..export.layout import FORMATS

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
    add_seed_argument(parser, "image i depends only on (seed, i) and the settings (default: %(default)s)")
    size = parser.add_mutually_exclusive_group()
    add_image_size_argument(size, "resize OK images (or tiles) to PX x PX (default: %(default)s)", 256, flag="--size")
    size.add_argument("--native-size", action="store_true", help="keep every image's own size")
    parser.add_argument("--tile", metavar="PX", type=positive_int,
                        help="cut OK images into PX x PX tiles first (each tile is a source)")
    add_gray_argument(parser, "write grayscale images (default: RGB)")
    parser.add_argument("--val-fraction", metavar="F", type=float, default=0.0,
                        help="share of OK files (and outputs) held out as the val split (default: %(default)s)")
    parser.add_argument("--segmentation", choices=("rle", "polygon"), default="rle",
                        help="COCO segmentation format (default: %(default)s)")
    add_batch_size_argument(parser, "images per operator batch; part of the job (default: %(default)s)", 16)
    parser.add_argument("--workers", metavar="N", type=positive_int, default=1,
                        help="processes making batches in parallel (default: %(default)s)")
    add_device_argument(parser)
    parser.add_argument("--shard", metavar="K/N",
                        help="make only the K-th of N slices of the job (0-based), e.g. one per machine")
    parser.add_argument("--resume", action="store_true", help="continue the job in --output where it stopped")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete a previous defectgen output in --output first")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown on a terminal)")
    parser.add_argument("--shards", metavar="K", type=positive_int,
                        help="with --executor ray or slurm: split the job into K shard tasks (default on Ray: as "
                             "many as run at once; at most one per --batch-size images)")
    add_executor_arguments(parser, "shard")


def run(args: argparse.Namespace) -> int:
    import warnings

    from ..executors.options import executor_options
    from ..generation import generate, print_summary
    from ..run_folder import parse_shard

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
        options = executor_options(args)
        if args.shards is not None and options.local:
            raise CliError("--shards K splits the job into tasks of --executor ray or slurm; in this process use "
                           "--workers N, or --shard k/N per machine")
        if args.shard is not None and not options.local:
            raise CliError(f"--shard runs one slice in this process; --executor {options.executor} runs every "
                           "slice as a task: use --shards K")
        shard = None if args.shard is None else parse_shard(args.shard)
        job = dict(recipe=args.recipe, count=args.count, formats=args.formats or ["yolo"], seed=args.seed,
                   size=None if args.native_size else args.size, tile=args.tile, channels=1 if args.gray else 3,
                   val_fraction=args.val_fraction, batch_size=args.batch_size, segmentation=args.segmentation)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = show
            if options.local:
                summary = generate(args.input, args.output, args.ops, **job, workers=args.workers,
                                   device=args.device, shard=shard, resume=args.resume, overwrite=args.overwrite,
                                   progress=False if args.no_progress else None)
            else:
                summary = _generate_on_executor(args, options, job)
                if summary is None:
                    return INTERRUPTED
    except (ValueError, TypeError) as error:
        raise CliError(str(error)) from error
    except OSError as error:
        raise CliError(f"{error.strerror or error}: {error.filename}" if error.filename else str(error)) from error
    print_summary(summary)
    return 0 if summary.complete or options.local else 1


def _generate_on_executor(args: argparse.Namespace, options, job):
    """The job's shards as tasks of the executor the options name; None when interrupted (outstanding shards
    cancelled; the units they finished are kept and ``--resume`` continues)."""
    from ..executors.base import Resources
    from ..executors.options import make_executor
    from ..generation.shard_tasks import prepare_sharded, run_shards

    resources = Resources().updated(options.resource_overrides())
    sharded = prepare_sharded(args.input, args.output, args.ops, device=args.device, resources=resources,
                              resume=args.resume, overwrite=args.overwrite, **job)
    executor = make_executor(options, slurm_folder=args.output / ".defectgen" / "slurm")
    try:
        summary = run_shards(executor, sharded, args.shards, resources=resources, retries=options.retries,
                             workers=args.workers, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"interrupted: the finished units are kept in {args.output}; --resume continues", file=sys.stderr)
        return None
    finally:
        executor.close()
    summary.output = args.output
    return summary


GENERATE = Command("generate", "make a labelled NG data set (YOLO / COCO / MVTec) from a folder of OK images",
                   add_arguments, run, order=20)
