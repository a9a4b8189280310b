"""The ``defectgen train`` and ``defectgen eval`` commands: train a detector, evaluate it on real labelled data.

``defectgen`` finds :data:`TRAIN` and :data:`EVAL` through the ``defectgen.commands`` entry points
(``pyproject.toml``), so the dependency goes one way (detectors -> defectgen). This module stays light: the
torch-heavy detector modules are imported only when ``train`` or ``eval`` is chosen (``defectgen --help``
imports none of them).

``train`` takes the detector kind as its first argument (``defectgen train cutpaste --data ... --out ...``):
every kind registered in :mod:`detectors.registry` is one, with the options and the run its class declares
(``add_train_arguments``, ``train_command``; the object detectors share theirs, :mod:`detectors.object_cli`).
``eval`` loads any model with :func:`detectors.registry.load_detector`, which dispatches on the file's format
tag. Every user error raises :class:`~defectgen.cli_support.CliError` (one ``defectgen: error: ...`` line, exit
code 2).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Optional

from defectgen.cli_support import (LIBRARY_ERRORS, CliError, Command, add_batch_size_argument, add_device_argument,
                                   add_image_size_argument, check_folder, library_error, positive_int,
                                   resolve_device)

from .object_cli import FORMAT_CHOICES


# -- train -----------------------------------------------------------------------------------------------------
def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from defectgen.sources.diffusion import cli as inpaint_cli

    from .registry import detector_classes, detector_names

    kinds = parser.add_subparsers(dest="detector", metavar="MODEL", required=True,
                                  help=f"the detector to train ({', '.join(detector_names())}) or 'inpaint', the "
                                       "diffusion model that paints defects")
    for name, cls in detector_classes().items():
        kinds.add_command(name, cls.HELP, cls.add_train_arguments, train=cls.train_command)
    # not a detector (eval cannot read it), but trained the same way; its code lives beside the diffusion source
    kinds.add_command("inpaint", inpaint_cli.HELP, inpaint_cli.add_inpaint_arguments,
                      train=inpaint_cli.run_train_inpaint)


def run_train(args: argparse.Namespace) -> int:
    return args.train(args)


# -- eval ------------------------------------------------------------------------------------------------------
def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    from .registry import detector_names

    parser.add_argument("--model", metavar="MODEL", type=Path, required=True,
                        help=f"a model file or run folder written by 'defectgen train' "
                             f"({', '.join(detector_names())})")
    parser.add_argument("--data", metavar="DIR", type=Path, required=True,
                        help="the labelled test set: an MVTec-layout folder (test/<type>/, ground_truth/<type>/), "
                             "YOLO, COCO, Pascal VOC or DeepPCB pairs")
    parser.add_argument("--format", choices=FORMAT_CHOICES, default="auto",
                        help="--data's format (default: auto-detected)")
    parser.add_argument("--split", help="--data's split (default: test, else val, else train)")
    parser.add_argument("--out", metavar="PREFIX", type=Path,
                        help="report files PREFIX.json and PREFIX.md (default: beside the model, '_eval' added: "
                             "bottle.pt -> bottle_eval.json, run/ -> run/eval.json)")
    parser.add_argument("--agnostic", action="store_true",
                        help="object detectors: every box counts as one class (the detector's class names need not "
                             "match the test set's)")
    parser.add_argument("--class-map", metavar="MAP",
                        help="object detectors: 'detector_class=test_class,...' or a YAML/JSON file")
    parser.add_argument("--defect", metavar="TYPE", action="append", dest="defects",
                        help="MVTec data: defect type (folder under test/) to evaluate, repeatable (default: all); "
                             "the good test images are always used")
    parser.add_argument("--no-pixel", action="store_true",
                        help="anomaly detectors: image metrics only, no anomaly maps or pixel AUROC / AUPRO (faster)")
    parser.add_argument("--stride", metavar="S", type=positive_int,
                        help="patch-grid stride of a patch-level model's maps and scores (default: the model's)")
    add_image_size_argument(parser, "the image size to evaluate at; must be the model's (a check; default: the "
                                    "model's)")
    add_batch_size_argument(parser, "test images per prediction call (default: %(default)s)", 16)
    parser.add_argument("--fpr-limit", metavar="F", type=float, default=0.3,
                        help="false-positive-rate limit of AUPRO, in (0, 1] (default: %(default)s)")
    add_device_argument(parser)


def load_model(path: Path, image_size: Optional[int], device: str):
    """The detector in ``path`` (a model file or a run folder); a :class:`CliError` if it is not one."""
    if not path.exists():
        raise CliError(f"model {str(path)!r} does not exist")
    from .errors import NotAModelFile
    from .registry import detector_names, load_detector

    try:
        return load_detector(path, image_size=image_size, device=device)
    except NotAModelFile:
        raise CliError(f"{str(path)!r} is not a model file written by 'defectgen train' "
                       f"({', '.join(detector_names())})") from None
    except LIBRARY_ERRORS as error:  # a model of ours, but unusable here (e.g. made for another image size)
        raise library_error(error) from error


def _report_prefix(args: argparse.Namespace) -> Path:
    if args.out is not None:
        return args.out
    if args.model.is_dir():
        return args.model / "eval"
    return args.model.with_name(args.model.stem + "_eval")


def run_eval(args: argparse.Namespace) -> int:
    check_folder(args.data, "--data")
    device = resolve_device(args.device)
    detector = load_model(args.model, args.image_size, device)
    from defectgen.io.labelled import detect_format

    try:
        fmt = detect_format(args.data) if args.format == "auto" else args.format
    except ValueError as error:
        raise library_error(error) from error
    from .registry import ANOMALY, detector_classes

    anomaly = detector.TASK == ANOMALY
    if args.stride is not None and getattr(detector, "level", None) != "patch":
        raise CliError("--stride only applies to patch-level models (trained with --level patch)")
    if not anomaly and (args.defects or args.no_pixel):
        raise CliError(f"--defect and --no-pixel apply to anomaly detectors ({', '.join(detector_classes(ANOMALY))}), "
                       f"not to {detector.kind} models")
    if anomaly and (args.agnostic or args.class_map):
        raise CliError("--agnostic and --class-map apply to object detectors; an anomaly detector has no classes")
    map_kwargs = {} if args.stride is None else {"stride": args.stride}

    from .evaluation import evaluate_detector, evaluate_labelled, format_report, write_report

    try:
        if anomaly and fmt == "mvtec":  # per defect type, with the pixel metrics at the model's size
            if not (args.data / "test").is_dir():
                raise CliError(f"--data {str(args.data)!r} has no test/ folder; eval needs an MVTec-layout folder "
                               "with test/<type>/*.png and ground_truth/<type>/<stem>_mask.png")
            report = evaluate_detector(detector, args.data, defects=args.defects, pixel=not args.no_pixel,
                                       batch_size=args.batch_size, fpr_limit=args.fpr_limit, **map_kwargs)
        else:
            if args.defects:
                raise CliError("--defect needs MVTec-layout --data")
            from defectgen.io.labelled import parse_class_map
            from defectgen.io.labelled import read_labelled

            test = read_labelled(args.data, fmt, split=args.split, channels=detector.channels)
            class_map = None if args.class_map is None else parse_class_map(args.class_map)
            if anomaly and args.no_pixel:
                test = dataclasses.replace(test, masks=None)
            report = evaluate_labelled(detector, test, batch_size=args.batch_size, agnostic=args.agnostic,
                                       class_map=class_map, fpr_limit=args.fpr_limit, **map_kwargs)
    except LIBRARY_ERRORS as error:
        raise library_error(error) from error
    report["model"] = {"path": str(args.model), **detector.describe()}
    if getattr(detector, "level", None) == "patch":  # the grid the scores and maps were made on
        report["stride"] = args.stride if args.stride is not None else detector.patch_stride
    what = report["model"].get("pretext") or report["model"].get("backbone") or report["model"].get("model") or "?"
    title = f"{detector.kind} ({what}) on {args.data.resolve().name}"
    try:
        paths = write_report(report, _report_prefix(args), title=title)
    except OSError as error:
        raise library_error(error) from error
    sys.stdout.write(format_report(report, title))
    sys.stdout.flush()
    print(f"report written to {paths['json']} and {paths['markdown']}", file=sys.stderr)
    return 0


TRAIN = Command("train", "train a detector (CutPaste on normal images, or Faster R-CNN / YOLO on synthetic and/or "
                         "real defect boxes) or the diffusion inpainting model that paints defects",
                add_train_arguments, run_train, order=40)
EVAL = Command("eval", "evaluate a trained detector on a real labelled test set (MVTec, YOLO, COCO, VOC, DeepPCB)",
               add_eval_arguments, run_eval, order=50)

__all__ = ["TRAIN", "EVAL", "add_train_arguments", "run_train", "add_eval_arguments", "run_eval"]
