"""``defectgen train fasterrcnn`` and ``defectgen train yolo``: the object detectors' training command.

Both take the same training data options — on-the-fly defects over OK images (``--ok`` with ``--op`` or
``--recipe``), a labelled folder (``--data``: a ``defectgen generate`` output or real labels), real images
added to either (``--real``, ``--real-count``) — and write one run folder::

    out/
      run.json          the command's settings and what was read (classes, counts, the real images chosen)
      checkpoint.pt     Faster R-CNN: the last finished epoch (``--resume`` continues from it)
      data/, ultralytics/, yolo-run.json   YOLO: the training set written for ultralytics, its run (last.pt
                        for ``--resume``) and the fit's settings (see :mod:`detectors.yolo.detector`)
      model.pt          the trained model (written atomically at the end; ``defectgen eval --model out/``)

Every input is read and checked before the folder is made, so a mistake leaves nothing behind.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict

from defectgen.cli_support import (LIBRARY_ERRORS, CliError, add_device_argument, library_error, positive_int,
                                   resolve_device)
from defectgen.io.atomic import write_text_atomic

FORMAT_CHOICES = ("auto", "yolo", "coco", "mvtec", "voc", "deeppcb")
_SETTINGS = {  # run.json keys that must match for --resume
    "fasterrcnn": ("backbone", "weights_backbone", "weights"),
    "yolo": ("model", "weights"),
}


def add_object_arguments(parser: argparse.ArgumentParser, kind: str) -> None:
    data = parser.add_argument_group("training data (synthetic, labelled, or both)")
    data.add_argument("--ok", metavar="DIR", type=Path,
                      help="OK images: defects are made on them on the fly, a fresh draw every epoch "
                           "(needs --op or --recipe)")
    data.add_argument("--op", metavar="NAME", action="append", dest="ops",
                      help="defectgen operator for --ok (repeatable: one class each)")
    data.add_argument("--recipe", metavar="FILE", type=Path, help="YAML operator recipe for --ok (instead of --op)")
    data.add_argument("--defects-per-image", metavar="N", type=positive_int, default=1,
                      help="synthetic defects painted on each OK image (default: %(default)s)")
    data.add_argument("--box-margin", metavar="PX", type=float, default=0.0,
                      help="grow synthetic boxes by PX on each side, to match a test set's labels (DeepPCB: 10 px "
                           "at 640 px) (default: %(default)s)")
    data.add_argument("--data", metavar="DIR", type=Path,
                      help="a labelled folder: what 'defectgen generate' wrote, or real labels")
    data.add_argument("--format", choices=FORMAT_CHOICES, default="auto", help="--data's format (default: auto)")
    data.add_argument("--split", help="--data's split (default: train; MVTec: test)")
    data.add_argument("--real", metavar="DIR", type=Path, help="real labelled images added to the training data")
    data.add_argument("--real-format", choices=FORMAT_CHOICES, default="auto",
                      help="--real's format (default: auto)")
    data.add_argument("--real-split", help="--real's split (default: train; MVTec: test)")
    data.add_argument("--real-count", metavar="K", type=positive_int,
                      help="use only K of --real's images, chosen by --seed")
    data.add_argument("--class-map", metavar="MAP",
                      help="rename labelled classes onto the synthetic ones: 'real=synthetic,...' or a YAML/JSON file")
    data.add_argument("--agnostic", action="store_true", help="train every defect as one class")
    parser.add_argument("--out", metavar="DIR", type=Path, required=True, help="the run folder (see above)")
    parser.add_argument("--epochs", metavar="N", type=positive_int, default=30, help="(default: %(default)s)")
    parser.add_argument("--image-size", metavar="PX", type=positive_int, default=320,
                        help="images are resized to PX x PX (default: %(default)s)")
    parser.add_argument("--gray", action="store_true", help="train on grayscale images (default: RGB)")
    parser.add_argument("--batch-size", metavar="N", type=positive_int,
                        help="images per step (default: 4 for fasterrcnn, 16 for yolo)")
    parser.add_argument("--lr", metavar="X", type=float, help="learning rate (default: the detector's)")
    parser.add_argument("--seed", metavar="S", type=int, default=0,
                        help="seeds the initialisation, the order, the defects and the real images chosen")
    parser.add_argument("--weights", metavar="FILE", type=Path,
                        help="local model file to start from (never downloaded)")
    if kind == "fasterrcnn":
        parser.add_argument("--backbone", choices=("mobilenet_v3", "resnet50"), default="mobilenet_v3",
                            help="(default: %(default)s)")
        parser.add_argument("--weights-backbone", metavar="FILE", type=Path,
                            help="local torchvision classification weights for the backbone (e.g. ImageNet)")
    else:
        parser.add_argument("--model", metavar="YAML", default="yolov8n.yaml",
                            help="ultralytics model yaml, random init (default: %(default)s)")
        parser.add_argument("--workers", metavar="N", type=int, default=0,
                            help="data loader processes (default: %(default)s: same seed, same model)")
    add_device_argument(parser)
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar with loss and ETA on stderr (default: on when stderr is a terminal)")


def _training_data(args: argparse.Namespace):
    from .data.training_data import TrainingData

    for flag, path in (("--ok", args.ok), ("--data", args.data), ("--real", args.real), ("--recipe", args.recipe),
                       ("--weights", args.weights), ("--weights-backbone", getattr(args, "weights_backbone", None))):
        if path is not None and not path.exists():
            raise CliError(f"{flag} {str(path)!r} does not exist")
    try:
        return TrainingData(ok=None if args.ok is None else str(args.ok), ops=list(args.ops or []),
                            recipe=None if args.recipe is None else str(args.recipe),
                            data=None if args.data is None else str(args.data), data_format=args.format,
                            data_split=args.split, real=None if args.real is None else str(args.real),
                            real_format=args.real_format, real_split=args.real_split, real_count=args.real_count,
                            class_map=args.class_map, agnostic=args.agnostic,
                            defects_per_image=args.defects_per_image, box_margin_px=args.box_margin)
    except ValueError as error:  # the library names its arguments; say them as flags
        text = str(error)
        for name, flag in (("real_count", "--real-count"), ("ok=", "--ok"), ("ops=", "--op"), ("recipe=", "--recipe"),
                           ("data=", "--data"), ("real=", "--real"), ("agnostic=True", "--agnostic"),
                           ("a class map", "--class-map"), ("defects_per_image", "--defects-per-image"),
                           ("box_margin_px", "--box-margin")):
            text = text.replace(name, flag)
        raise CliError(text) from None


def _settings(args: argparse.Namespace, kind: str, class_names) -> Dict[str, Any]:
    settings: Dict[str, Any] = {"class_names": list(class_names), "image_size": args.image_size,
                                "channels": 1 if args.gray else 3, "seed": args.seed,
                                "weights": None if args.weights is None else str(args.weights)}
    if args.batch_size is not None:
        settings["batch_size"] = args.batch_size
    if args.lr is not None:
        settings["learning_rate"] = args.lr
    if kind == "fasterrcnn":
        settings["backbone"] = args.backbone
        settings["weights_backbone"] = None if args.weights_backbone is None else str(args.weights_backbone)
    else:
        settings["model"] = args.model
    return settings


def _check_run_folder(out: Path, resume: bool, record: Dict[str, Any]) -> None:
    run = out / "run.json"
    if resume:
        if not run.is_file():
            raise CliError(f"--resume: {str(out)!r} holds no interrupted run (no run.json)")
        previous = json.loads(run.read_text())
        differ = sorted(k for k in ("detector", "settings", "epochs", "training_data")
                        if previous.get(k) != record.get(k))
        if differ:
            raise CliError(f"--resume: the run in {str(out)!r} was started with other {', '.join(differ)}; "
                           "resume it with the same options, or train into a new --out")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CliError(f"--out {str(out)!r} exists and is not empty; use --resume to continue its run, or another "
                       "--out")


def run_train_object(args: argparse.Namespace) -> int:
    kind = args.detector
    spec = _training_data(args)
    device = resolve_device(args.device)
    from .data.training_data import build_source
    from .registry import MODEL_FILE, create_detector

    try:
        source, described = build_source(spec, args.image_size, channels=1 if args.gray else 3, device=device,
                                         seed=args.seed)
        settings = _settings(args, kind, source.class_names)
        detector = create_detector(kind, **settings)
    except LIBRARY_ERRORS as error:
        raise library_error(error) from error
    record = {"detector": kind, "settings": settings, "epochs": args.epochs, "training_data": spec.to_dict(),
              "data": described, "command": sys.argv[1:]}
    _check_run_folder(args.out, args.resume, record)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.resume:
        write_text_atomic(args.out / "run.json", json.dumps(record, indent=2, default=str) + "\n")
    start = time.perf_counter()
    try:
        if kind == "fasterrcnn":
            detector.fit(source, epochs=args.epochs, device=device, progress=args.progress,
                         checkpoint=args.out / "checkpoint.pt", resume=args.resume)
        else:
            detector.fit(source, epochs=args.epochs, out=args.out, resume=args.resume,
                         progress=args.progress, workers=args.workers, device=device)
        path = detector.save(args.out / MODEL_FILE)
    except LIBRARY_ERRORS as error:
        raise library_error(error) from error
    seconds = time.perf_counter() - start
    last = detector.history[-1] if detector.history else {}
    loss = f", final loss {last['loss']:.4f}" if "loss" in last else ""
    print(f"Trained {kind} ({', '.join(source.class_names)}) on {len(source)} images per epoch for {args.epochs} "
          f"epochs on {device} in {seconds:.1f} s{loss}. Model saved to {path}.")
    return 0


__all__ = ["add_object_arguments", "run_train_object", "FORMAT_CHOICES"]
