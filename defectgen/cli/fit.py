"""``defectgen fit``: measure the defects of K real labelled images and write an operator recipe that makes more
like them."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..cli_support import (CliError, Command, add_device_argument, add_image_size_argument, add_seed_argument,
                           check_folder, int_at_least, positive_int, resolve_device)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..io.labelled import FORMATS

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
    add_seed_argument(parser, "chooses the K images and seeds the synthetic side of the report (default: "
                              "%(default)s)")
    parser.add_argument("--ok", metavar="DIR", type=Path,
                        help="OK images for the synthetic side of the report and previews (an MVTec category: its "
                             "train/good; aligned pairs: their templates); default: --real's own, if it has them")
    add_image_size_argument(parser, "images are measured at PX x PX (aligned pairs at their own size); every measure "
                                    "is relative to the image (default: %(default)s)", 256)
    parser.add_argument("--samples", metavar="N", type=positive_int, default=64,
                        help="synthetic images made and measured for the report (default: %(default)s)")
    parser.add_argument("--out", metavar="DIR", type=Path, required=True,
                        help="where recipe.yaml, statistics.json, report.md and the plots go; must be new or empty "
                             "unless --force")
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out")
    parser.add_argument("--no-transplant", action="store_true",
                        help="calibrated shapes only, no transplant of the real defects")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    from ..fit import RealSpec, fit_defects

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


FIT = Command("fit", "measure the defects of K real labelled images and write an operator recipe that makes more "
                     "like them (recipe.yaml, statistics.json, report.md with plots and previews)", add_arguments, run,
              order=30)
