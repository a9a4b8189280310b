"""``defectgen train anomalib``: its options and its run (what :class:`~.detector.AnomalibDetector` declares).

Imports nothing of anomalib: building the parser (``defectgen train anomalib --help``) stays light; the model
is built, and anomalib imported, when the command runs.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from defectgen.cli_support import (LIBRARY_ERRORS, CliError, add_batch_size_argument, add_device_argument,
                                   add_gray_argument, add_image_size_argument, add_seed_argument, check_folder,
                                   library_error, non_negative_int, resolve_device)

ANOMALIB_STEPS = 100  # train anomalib's default length for models trained by gradient


def add_anomalib_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", metavar="DIR", type=Path, required=True,
                        help="normal training images: an MVTec-layout folder (its train/good) or any folder of "
                             "images, read recursively and resized to --image-size")
    parser.add_argument("--out", metavar="MODEL.pt", type=Path, required=True, help="where the model is written")
    parser.add_argument("--model", metavar="NAME", required=True,
                        help="anomalib image model class name: Padim, Patchcore, Stfpm, Fastflow, "
                             "ReverseDistillation, Draem, ... (see docs/anomalib_methods.md)")
    parser.add_argument("--init-arg", metavar="KEY=VALUE", action="append", dest="init_args", default=[],
                        help="an argument of the model's constructor, VALUE read as YAML (e.g. --init-arg "
                             "'layers=[layer1, layer2]' --init-arg coreset_sampling_ratio=0.1); repeatable")
    parser.add_argument("--backbone", metavar="NAME", help="the model's backbone argument (e.g. resnet18)")
    parser.add_argument("--backbone-weights", metavar="FILE", dest="backbone_weights",
                        help="local torchvision-layout backbone file for the networks the model wants pretrained "
                             "(ImageNet weights you saved, or the backbone.pt of 'defectgen pretrain'); never "
                             "downloaded; 'random' accepts random features")
    parser.add_argument("--generator", metavar="OP",
                        help="defectgen operator name or recipe file as the model's synthetic-anomaly generator "
                             "(Draem, Glass)")
    parser.add_argument("--steps", metavar="N", type=non_negative_int, default=ANOMALIB_STEPS,
                        help="optimiser steps for models trained by gradient; memory-bank models (Padim, "
                             "Patchcore) make one pass over the data (default: %(default)s)")
    add_image_size_argument(parser, "images are resized to PX x PX (default: %(default)s)", 256)
    add_gray_argument(parser)
    add_batch_size_argument(parser, "training images per step (default: %(default)s)", 32)
    add_seed_argument(parser, "seeds the initialisation, the batch order and the generator (default: %(default)s)",
                      non_negative_int)
    add_device_argument(parser)


def parse_init_args(items: List[str]) -> Dict[str, Any]:
    """``KEY=VALUE`` items as a dict, each value read as YAML; a :class:`CliError` for a malformed one."""
    out: Dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise CliError(f"--init-arg {item!r}: write KEY=VALUE (e.g. coreset_sampling_ratio=0.1)")
        try:
            out[key] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise CliError(f"--init-arg {item!r}: the value is not valid YAML") from None
    return out


def run_train_anomalib(args: argparse.Namespace, cls: type) -> int:
    """``defectgen train anomalib``: build, train and save a ``cls`` (the anomalib detector class)."""
    check_folder(args.data, "--data")
    if args.out.is_dir():
        raise CliError(f"--out {str(args.out)!r} is a folder; give the model file's path (e.g. model.pt)")
    weights: Optional[str] = args.backbone_weights
    if weights is not None and weights != "random" and not Path(weights).is_file():
        raise CliError(f"--backbone-weights file {weights!r} does not exist")
    device = resolve_device(args.device)
    try:
        detector = cls(model=args.model, init_args=parse_init_args(args.init_args), backbone=args.backbone,
                       backbone_weights=weights, generator=args.generator, image_size=args.image_size,
                       channels=1 if args.gray else 3, batch_size=args.batch_size, seed=args.seed)
        start = time.perf_counter()
        detector.fit(args.data, steps=args.steps, device=device)
        seconds = time.perf_counter() - start
    except LIBRARY_ERRORS as error:
        raise library_error(_flagged(error)) from error
    try:
        detector.save(args.out)
    except OSError as error:
        raise library_error(error) from error
    start_record = detector.start
    init = {"random": "random features (backbone_weights random)", "backbone file":
            f"backbone {start_record.get('path')}"}.get(start_record["init"], "no pretrained backbone")
    print(f"Trained anomalib {detector.model} ({detector.image_size} px, {init}) on {args.data}: "
          f"{detector.steps_trained} optimiser steps on {device} in {seconds:.1f} s. Model saved to {args.out}.")
    return 0


_FLAGS = {"model:": "--model", "backbone_weights:": "--backbone-weights", "generator:": "--generator",
          "backbone:": "--backbone", "init_args.": "--init-arg "}


def _flagged(error: BaseException) -> BaseException:
    """The library's message with its argument named as the command-line option."""
    text = str(error)
    for name, flag in _FLAGS.items():
        if text.startswith(name):
            return type(error)(flag + text[len(name) - (0 if name.endswith(".") else 1):])
    return error


__all__ = ["add_anomalib_arguments", "run_train_anomalib", "parse_init_args", "ANOMALIB_STEPS"]
