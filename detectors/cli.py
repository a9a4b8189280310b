"""The ``defectgen train`` and ``defectgen eval`` commands: train a detector, evaluate it on real labelled data.

:mod:`defectgen.cli` registers the two commands and imports this module only when one of them runs, so the
dependency goes one way (detectors -> defectgen). Here, too, the torch-heavy detector modules are imported
inside the run functions, so building the parser (``defectgen --help``) stays fast.

``train`` takes the detector kind as its first argument (``defectgen train cutpaste --data ... --out ...``);
each kind is one entry of :data:`DETECTORS` with its own options (the object detectors' are in
:mod:`detectors.object_cli`). ``eval`` loads any model with :func:`detectors.registry.load_detector`, which
dispatches on the file's format tag. Every user error raises :class:`~defectgen.cli_support.CliError`
(one ``defectgen: error: ...`` line, exit code 2).
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
import time
from pathlib import Path
from functools import partial
from typing import Callable, Dict, List, NamedTuple, Optional

from defectgen.cli_support import (LIBRARY_ERRORS, CliError, add_device_argument, check_folder, library_error,
                                   non_negative_int, positive_int, resolve_device)

from .object_cli import FORMAT_CHOICES, add_object_arguments, run_train_object

NAMED_PRETEXTS = ("cutpaste", "scar", "union", "3way")
CUTPASTE_STEPS = 256  # train cutpaste's default length
"""The paper's pretext tasks (mirrors :data:`detectors.cutpaste.pretext.NAMED`, without importing torch)."""

class DetectorKind(NamedTuple):
    """One trainable detector: its ``train`` options and its ``train`` run."""

    help: str
    add_train_arguments: Callable[[argparse.ArgumentParser], None]
    train: Callable[[argparse.Namespace], int]


# -- train cutpaste --------------------------------------------------------------------------------------------
def _add_cutpaste_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", metavar="DIR", type=Path, required=True,
                        help="normal training images: an MVTec-layout folder (its train/good) or any folder of "
                             "images, read recursively and resized to --image-size")
    parser.add_argument("--out", metavar="MODEL.pt", type=Path, required=True, help="where the model is written")
    parser.add_argument("--pretext", metavar="NAME", action="append", dest="pretexts",
                        help=f"pretext task: {', '.join(NAMED_PRETEXTS)} (the paper's; default: 3way) or any "
                             "defectgen operator name (see 'defectgen preview --help'); repeat it for a multi-class "
                             "pretext, one class per operator (e.g. --pretext cutout --pretext scar)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", metavar="N", type=non_negative_int,
                        help=f"SGD steps (0: random network, density only) (default: {CUTPASTE_STEPS} unless "
                             "--images-seen)")
    length.add_argument("--images-seen", metavar="N", type=positive_int,
                        help="train until N normal images are drawn: ceil(N / --batch-size) steps (each also trains "
                             "on their defective copies), to compare runs at equal cost")
    parser.add_argument("--image-size", metavar="PX", type=positive_int, default=256,
                        help="images are resized to PX x PX (default: %(default)s)")
    parser.add_argument("--gray", action="store_true", help="train on grayscale images (default: RGB)")
    parser.add_argument("--level", choices=("image", "patch"), default="image",
                        help="image: whole images, Grad-CAM maps; patch: the paper's patch-level variant "
                             "(default: %(default)s)")
    parser.add_argument("--patch-size", metavar="PX", type=positive_int,
                        help="patch side for --level patch (default: image size / 4)")
    parser.add_argument("--patch-stride", metavar="S", type=positive_int, default=4,
                        help="stride of the dense patch grid for --level patch (default: %(default)s)")
    parser.add_argument("--batch-size", metavar="N", type=positive_int, default=32,
                        help="normal images per step; each step trains on N x classes images (default: %(default)s)")
    parser.add_argument("--lr", metavar="X", type=float, default=0.03,
                        help="SGD learning rate, cosine-decayed to 0 over the steps (default: %(default)s)")
    parser.add_argument("--seed", metavar="S", type=non_negative_int, default=0,
                        help="seeds the initialisation, the batches and the defects (default: %(default)s)")
    parser.add_argument("--head-layers", metavar="W", type=positive_int, nargs="+",
                        help="widths of the MLP projection head (default: the reference code's eight 512s and a 128)")
    parser.add_argument("--weights", metavar="FILE", type=Path,
                        help="local torchvision ResNet-18 state_dict to start from (e.g. ImageNet); default: random")
    add_device_argument(parser)
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar with loss and accuracy on stderr (default: on when stderr is a terminal)")


def _pretext_spec(names: Optional[List[str]]):
    """The ``pretext=`` argument for the given ``--pretext`` names, checked against the known names."""
    from defectgen.registry import list_ops

    if not names:
        return "3way"
    ops = list_ops()
    known = sorted(set(NAMED_PRETEXTS) | set(ops))
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise CliError(f"unknown pretext {name!r}; {hint}(known: {', '.join(NAMED_PRETEXTS)} or an operator: "
                           f"{', '.join(ops)})")
    if len(names) == 1:
        return names[0]
    whole = [name for name in names if name not in ops]
    if whole:
        raise CliError(f"pretext {whole[0]!r} is a whole task and cannot be combined with other --pretext names; "
                       "a multi-class pretext takes operator names (e.g. --pretext cutpaste --pretext scar)")
    return list(names)


def _cutpaste_steps(args: argparse.Namespace) -> int:
    """``--steps``, or the steps of ``--images-seen`` (normal images drawn, ``batch_size`` per step)."""
    if args.images_seen is None:
        return CUTPASTE_STEPS if args.steps is None else args.steps
    return -(-args.images_seen // args.batch_size)  # ceil, as detectors.data.sources.steps_for (no torch here)


def _run_train_cutpaste(args: argparse.Namespace) -> int:
    check_folder(args.data, "--data")
    if args.weights is not None and not args.weights.is_file():
        raise CliError(f"--weights file {str(args.weights)!r} does not exist")
    if args.out.is_dir():
        raise CliError(f"--out {str(args.out)!r} is a folder; give the model file's path (e.g. model.pt)")
    if args.patch_size is not None and args.level != "patch":
        raise CliError("--patch-size only applies to --level patch")
    pretext = _pretext_spec(args.pretexts)
    device = resolve_device(args.device)

    from .cutpaste import CutPasteDetector

    try:
        detector = CutPasteDetector(
            pretext=pretext, image_size=args.image_size, channels=1 if args.gray else 3, level=args.level,
            patch_size=args.patch_size, patch_stride=args.patch_stride, weights=args.weights,
            batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
            **({"head_layers": args.head_layers} if args.head_layers else {}))
        start = time.perf_counter()
        detector.fit(args.data, steps=_cutpaste_steps(args), device=device, progress=args.progress)
        seconds = time.perf_counter() - start
    except LIBRARY_ERRORS as error:
        raise library_error(error) from error
    try:
        detector.save(args.out)
    except OSError as error:
        raise library_error(error) from error
    print(_train_summary(detector, args, device, seconds))
    return 0


def _train_summary(detector, args: argparse.Namespace, device: str, seconds: float) -> str:
    last = detector.history[-10:]
    what = (f"Trained CutPaste ({detector.pretext_record['name']} pretext, {detector.level} level, "
            f"{detector.image_size} px {'gray' if detector.channels == 1 else 'RGB'}) on {args.data} "
            f"for {detector.steps_trained} step{'' if detector.steps_trained == 1 else 's'} "
            f"({detector.steps_trained * args.batch_size} normal images seen) on {device} in {seconds:.1f} s")
    if last:
        loss = sum(r["loss"] for r in last) / len(last)
        accuracy = sum(r["accuracy"] for r in last) / len(last)
        what += f": final loss {loss:.4f}, accuracy {accuracy:.3f} (mean of the last {len(last)} steps)"
    else:
        what += " (no training steps: random network, density only)"
    return f"{what}. Model saved to {args.out}."


DETECTORS: Dict[str, DetectorKind] = {
    "cutpaste": DetectorKind("CutPaste self-supervised detector (Li et al. 2021) on a defectgen pretext task",
                             _add_cutpaste_arguments, _run_train_cutpaste),
    "fasterrcnn": DetectorKind("Faster R-CNN (torchvision, MobileNet-v3 or ResNet-50 FPN) on synthetic and/or real "
                               "defect boxes", partial(add_object_arguments, kind="fasterrcnn"), run_train_object),
    "yolo": DetectorKind("YOLO (ultralytics, AGPL-3.0, the optional 'yolo' extra) on synthetic and/or real defect "
                         "boxes", partial(add_object_arguments, kind="yolo"), run_train_object),
}
"""The detectors ``train`` can make and ``eval`` can read; a new one is one more entry."""


# -- train -----------------------------------------------------------------------------------------------------
def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from defectgen.sources.diffusion import cli as inpaint_cli

    kinds = parser.add_subparsers(dest="detector", metavar="MODEL", required=True,
                                  help=f"the detector to train ({', '.join(DETECTORS)}) or 'inpaint', the diffusion "
                                       "model that paints defects")
    for name, kind in DETECTORS.items():
        sub = kinds.add_parser(name, help=kind.help, description=kind.help)
        kind.add_train_arguments(sub)
        sub.set_defaults(train=kind.train)
    # not a detector (eval cannot read it), but trained the same way; its code lives beside the diffusion source
    sub = kinds.add_parser("inpaint", help=inpaint_cli.HELP, description=inpaint_cli.HELP)
    inpaint_cli.add_inpaint_arguments(sub)
    sub.set_defaults(train=inpaint_cli.run_train_inpaint)


def run_train(args: argparse.Namespace) -> int:
    return args.train(args)


# -- eval ------------------------------------------------------------------------------------------------------
def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="MODEL", type=Path, required=True,
                        help=f"a model file or run folder written by 'defectgen train' ({', '.join(DETECTORS)})")
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
    parser.add_argument("--image-size", metavar="PX", type=positive_int,
                        help="the image size to evaluate at; must be the model's (a check; default: the model's)")
    parser.add_argument("--batch-size", metavar="N", type=positive_int, default=16,
                        help="test images per prediction call (default: %(default)s)")
    parser.add_argument("--fpr-limit", metavar="F", type=float, default=0.3,
                        help="false-positive-rate limit of AUPRO, in (0, 1] (default: %(default)s)")
    add_device_argument(parser)


def _load_model(path: Path, image_size: Optional[int], device: str):
    """The detector in ``path`` (a model file or a run folder); a :class:`CliError` if it is not one."""
    if not path.exists():
        raise CliError(f"model {str(path)!r} does not exist")
    from .errors import NotAModelFile
    from .registry import load_detector

    try:
        return load_detector(path, image_size=image_size, device=device)
    except NotAModelFile:
        raise CliError(f"{str(path)!r} is not a model file written by 'defectgen train' "
                       f"({', '.join(DETECTORS)})") from None
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
    detector = _load_model(args.model, args.image_size, device)
    from defectgen.io.labelled import detect_format

    try:
        fmt = detect_format(args.data) if args.format == "auto" else args.format
    except ValueError as error:
        raise library_error(error) from error
    anomaly = not hasattr(detector, "class_names")
    if args.stride is not None and getattr(detector, "level", None) != "patch":
        raise CliError("--stride only applies to patch-level models (trained with --level patch)")
    if not anomaly and (args.defects or args.no_pixel):
        raise CliError("--defect and --no-pixel apply to anomaly detectors (cutpaste), not to "
                       f"{detector.kind} models")
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


__all__ = ["DETECTORS", "DetectorKind", "add_train_arguments", "run_train", "add_eval_arguments", "run_eval",
           "resolve_device"]
