"""``defectgen train fasterrcnn``, ``defectgen train yolo``: the one training command of every object detector.

Each :class:`~detectors.base.ObjectDetector` kind takes the same training data options — on-the-fly defects
over OK images (``--ok`` with ``--op`` or ``--recipe``), a labelled folder (``--data``: a ``defectgen generate``
output or real labels), real images mixed into either (``--real``, ``--real-count``; how: ``--real-fraction``,
``--schedule``, ...), or real images alone (``--real`` only) — and a training length (``--epochs`` or
``--images-seen``), and write one run folder::

    out/
      run.json          the command's settings and what was read (classes, counts, the real images chosen, the
                        mixing), and once trained the images seen and steps
      checkpoint.pt     Faster R-CNN: the last finished epoch (``--resume`` continues from it; an epoch of
                        a mix per batch is one pass over the synthetic items)
      data/, ultralytics/, yolo-run.json   YOLO: the training set written for ultralytics, its run (last.pt
                        for ``--resume``) and the fit's settings (see :mod:`detectors.yolo.detector`)
      model.pt          the trained model (written atomically at the end; ``defectgen eval --model out/``)

Every input is read and checked before the folder is made, so a mistake leaves nothing behind. A kind's own
options, settings and run-folder state come from its class (``add_model_arguments``, ``model_settings``,
``cli_fit_options``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict

from defectgen.cli_support import (LIBRARY_ERRORS, CliError, add_batch_size_argument, add_device_argument,
                                   add_gray_argument, add_image_size_argument, add_learning_rate_argument,
                                   add_progress_argument, add_seed_argument, library_error, positive_int,
                                   resolve_device)
from defectgen.io.atomic import write_text_atomic

FORMAT_CHOICES = ("auto", "yolo", "coco", "mvtec", "voc", "deeppcb")
SCHEDULE_CHOICES = ("mixed", "finetune")  # detectors.data.sources.SCHEDULES, without importing torch for --help
DEFAULT_EPOCHS = 30
_MIXING_FLAGS = (("real_fraction", "--real-fraction"), ("schedule", "--schedule"),
                 ("replay_fraction", "--replay-fraction"), ("finetune_start", "--finetune-start"))


def add_object_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """The options of ``defectgen train <kind>`` for the object detector class ``cls`` (its own options last)."""
    data = parser.add_argument_group("training data (synthetic, labelled, or both)")
    data.add_argument("--ok", metavar="DIR", type=Path,
                      help="OK images: defects are made on them on the fly, a fresh draw every epoch "
                           "(needs --op or --recipe)")
    data.add_argument("--op", metavar="NAME", action="append", dest="ops",
                      help="defectgen operator for --ok (repeatable: one class each)")
    data.add_argument("--recipe", metavar="FILE", type=Path, help="YAML operator recipe for --ok (instead of --op)")
    data.add_argument("--defects-per-image", metavar="N", type=positive_int,
                      help="synthetic defects painted on each OK image (default: the recipe's defects_per_image, "
                           "which defectgen fit writes, else 1)")
    data.add_argument("--box-margin", metavar="PX", type=float, default=0.0,
                      help="grow synthetic boxes by PX on each side, to match a test set's labels (DeepPCB: 10 px "
                           "at 640 px) (default: %(default)s)")
    data.add_argument("--data", metavar="DIR", type=Path,
                      help="a labelled folder: what 'defectgen generate' wrote, or real labels")
    data.add_argument("--format", choices=FORMAT_CHOICES, default="auto", help="--data's format (default: auto)")
    data.add_argument("--split", help="--data's split (default: train; MVTec: test)")
    data.add_argument("--real", metavar="DIR", type=Path,
                      help="real labelled images, mixed into the synthetic data (--ok or --data) or, alone, the "
                           "whole training set (--real DIR --real-count K: train on K real images only)")
    data.add_argument("--real-format", choices=FORMAT_CHOICES, default="auto",
                      help="--real's format (default: auto)")
    data.add_argument("--real-split", help="--real's split (default: train; MVTec: test)")
    data.add_argument("--real-count", metavar="K", type=positive_int,
                      help="use only K of --real's images, chosen by --seed")
    mixing = parser.add_argument_group(
        "mixing synthetic and real images (needs --real and --ok or --data)",
        "A few real images among hundreds of synthetic ones would be a few percent of what the detector sees; "
        "instead each batch holds a fixed real share (real images repeat, each equally often), or training "
        "starts on synthetic defects and fine-tunes on the real images.")
    mixing.add_argument("--real-fraction", metavar="F", type=_fraction,
                        help="real share of every batch, in (0, 1]; 'proportional': every image once per epoch, "
                             "the old mix (default: the library's, 0.5)")
    mixing.add_argument("--schedule", choices=SCHEDULE_CHOICES,
                        help="mixed: every batch holds the real share; finetune: synthetic only for the first "
                             "--finetune-start of the steps, then real with --replay-fraction synthetic "
                             "(default: mixed)")
    mixing.add_argument("--replay-fraction", metavar="F", type=float,
                        help="finetune: synthetic share of the real stage's batches, in [0, 1) (default: 0.25)")
    mixing.add_argument("--finetune-start", metavar="F", type=float,
                        help="finetune: fraction of the steps before the real stage, in [0, 1] (default: 0.5)")
    data.add_argument("--class-map", metavar="MAP",
                      help="rename labelled classes onto the synthetic ones: 'real=synthetic,...' or a YAML/JSON file")
    data.add_argument("--agnostic", action="store_true", help="train every defect as one class")
    parser.add_argument("--out", metavar="DIR", type=Path, required=True, help="the run folder (see above)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", metavar="N", type=positive_int,
                        help=f"passes over the training data (default: {DEFAULT_EPOCHS} unless --images-seen)")
    length.add_argument("--images-seen", metavar="N", type=positive_int,
                        help="train for N images (ceil(N / batch size) steps) whatever the data's size, to "
                             "compare runs at equal cost")
    add_image_size_argument(parser, "images are resized to PX x PX (default: %(default)s)", 320)
    add_gray_argument(parser)
    add_batch_size_argument(parser, "images per step (default: 4 for fasterrcnn, 16 for yolo)")
    add_learning_rate_argument(parser, "learning rate (default: the detector's)")
    add_seed_argument(parser, "seeds the initialisation, the order, the defects and the real images chosen")
    parser.add_argument("--weights", metavar="FILE", type=Path,
                        help="local model file to start from (never downloaded)")
    cls.add_model_arguments(parser)
    add_device_argument(parser)
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    add_progress_argument(parser)


def _fraction(text: str):
    """``--real-fraction``: a number in (0, 1], or ``proportional`` (kept as the string until it becomes None)."""
    if text == "proportional":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] or 'proportional', got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] or 'proportional', got {value}")
    return value


def _training_data(args: argparse.Namespace):
    from .data.training_data import TrainingData

    for flag, path in (("--ok", args.ok), ("--data", args.data), ("--real", args.real), ("--recipe", args.recipe),
                       ("--weights", args.weights), ("--weights-backbone", getattr(args, "weights_backbone", None))):
        if path is not None and not path.exists():
            raise CliError(f"{flag} {str(path)!r} does not exist")
    given = [flag for name, flag in _MIXING_FLAGS if getattr(args, name) is not None]
    if given and (args.real is None or (args.ok is None and args.data is None)):
        raise CliError(f"{given[0]} mixes synthetic and real images: it needs --real and synthetic data (--ok with "
                       "--op or --recipe, or --data)")
    if args.schedule != "finetune":
        wrong = [flag for name, flag in _MIXING_FLAGS[2:] if getattr(args, name) is not None]
        if wrong:
            raise CliError(f"{wrong[0]} sets the finetune schedule: add --schedule finetune")
    elif args.real_fraction is not None:
        raise CliError("--real-fraction is the real share of --schedule mixed; --schedule finetune's real stage is "
                       "set by --replay-fraction and --finetune-start")
    from .data.sources import DEFAULT_FINETUNE_START, DEFAULT_REAL_FRACTION, DEFAULT_REPLAY_FRACTION, DEFAULT_SCHEDULE

    mixing = {"real_fraction": DEFAULT_REAL_FRACTION if args.real_fraction is None else args.real_fraction,
              "schedule": args.schedule or DEFAULT_SCHEDULE,
              "replay_fraction": DEFAULT_REPLAY_FRACTION if args.replay_fraction is None else args.replay_fraction,
              "finetune_start": DEFAULT_FINETUNE_START if args.finetune_start is None else args.finetune_start}
    if mixing["real_fraction"] == "proportional":
        mixing["real_fraction"] = None
    step_based = mixing["real_fraction"] is not None or mixing["schedule"] == "finetune"
    if args.ok is not None and args.data is not None and args.real is not None and step_based:
        raise CliError("a mix per batch takes one synthetic side: give --ok (with --op or --recipe) or --data with "
                       "--real, not both; or --real-fraction proportional to concatenate them all in epochs")
    try:
        return TrainingData(**mixing, ok=None if args.ok is None else str(args.ok), ops=list(args.ops or []),
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
                           ("box_margin_px", "--box-margin"), *_MIXING_FLAGS):
            text = text.replace(name, flag)
        raise CliError(text) from None


def _settings(args: argparse.Namespace, cls: type, class_names) -> Dict[str, Any]:
    settings: Dict[str, Any] = {"class_names": list(class_names), "image_size": args.image_size,
                                "channels": 1 if args.gray else 3, "seed": args.seed,
                                "weights": None if args.weights is None else str(args.weights)}
    if args.batch_size is not None:
        settings["batch_size"] = args.batch_size
    if args.lr is not None:
        settings["learning_rate"] = args.lr
    settings.update(cls.model_settings(args))
    return settings


def _check_run_folder(out: Path, resume: bool, record: Dict[str, Any]) -> None:
    run = out / "run.json"
    if resume:
        if not run.is_file():
            raise CliError(f"--resume: {str(out)!r} holds no interrupted run (no run.json)")
        previous = json.loads(run.read_text())
        differ = sorted(k for k in ("detector", "settings", "epochs", "images_seen", "training_data")
                        if previous.get(k) != record.get(k))
        if differ:
            raise CliError(f"--resume: the run in {str(out)!r} was started with other {', '.join(differ)}; "
                           "resume it with the same options, or train into a new --out")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CliError(f"--out {str(out)!r} exists and is not empty; use --resume to continue its run, or another "
                       "--out")


def _length(args: argparse.Namespace) -> Dict[str, int]:
    """The training length the fit gets: exactly one of ``epochs`` and ``images_seen``."""
    if args.images_seen is not None:
        return {"images_seen": args.images_seen}
    return {"epochs": DEFAULT_EPOCHS if args.epochs is None else args.epochs}


def _source_text(source, batch_size: int) -> str:
    """What one epoch of ``source`` is, for the summary line."""
    from .data.sources import MixedSource, steps_per_epoch

    if isinstance(source, MixedSource) and source.step_based:
        what = f"{len(source.synthetic)} synthetic + {len(source.real)} real images"
        if source.schedule == "mixed":
            return f"{what} ({source.real_per_batch(batch_size)} real per batch of {batch_size})"
        return f"{what} ({source.describe_mixing()})"
    return f"{len(source)} images per epoch ({steps_per_epoch(source, batch_size)} steps of {batch_size})"


def run_train_object(args: argparse.Namespace, cls: type) -> int:
    """``defectgen train <kind>`` for the object detector class ``cls``: read the data, train into the run folder."""
    kind = cls.kind
    spec = _training_data(args)
    device = resolve_device(args.device)
    from .data.training_data import build_source
    from .registry import MODEL_FILE

    try:
        source, described = build_source(spec, args.image_size, channels=1 if args.gray else 3, device=device,
                                         seed=args.seed)
        settings = _settings(args, cls, source.class_names)
        detector = cls(**settings)
    except LIBRARY_ERRORS as error:
        raise _flag_error(error) from error
    length = _length(args)
    record = {"detector": kind, "settings": settings, "epochs": length.get("epochs"),
              "images_seen": length.get("images_seen"), "training_data": spec.to_dict(), "data": described,
              "command": sys.argv[1:]}
    _check_run_folder(args.out, args.resume, record)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.resume:
        write_text_atomic(args.out / "run.json", json.dumps(record, indent=2, default=str) + "\n")
    start = time.perf_counter()
    try:
        detector.fit(source, **length, device=device, progress=args.progress, **cls.cli_fit_options(args))
        path = detector.save(args.out / MODEL_FILE)
    except LIBRARY_ERRORS as error:
        raise library_error(error) from error
    seconds = time.perf_counter() - start
    trained = {"images_seen": getattr(detector, "images_seen", None),
               "steps": getattr(detector, "steps_trained", None), "seconds": round(seconds, 2)}
    saved = json.loads((args.out / "run.json").read_text())
    write_text_atomic(args.out / "run.json", json.dumps(dict(saved, trained=trained), indent=2, default=str) + "\n")
    last = detector.history[-1] if detector.history else {}
    loss = f", final loss {last['loss']:.4f}" if "loss" in last else ""
    if "epochs" in length:
        done = f"{length['epochs']} epoch{'' if length['epochs'] == 1 else 's'}"
    else:
        done = f"{length['images_seen']} images seen"
    if trained["images_seen"] is not None and trained["steps"] is not None:
        done += f" ({trained['steps']} steps, {trained['images_seen']} images seen)"
    batch_size = getattr(detector, "batch_size", args.batch_size or 1)
    print(f"Trained {kind} ({', '.join(source.class_names)}) on {_source_text(source, batch_size)} for {done} on "
          f"{device} in {seconds:.1f} s{loss}. Model saved to {path}.")
    return 0


def _flag_error(error: BaseException) -> CliError:
    """A library error about the training data, with its argument names said as this command's flags."""
    text = str(error)
    for name, flag in (("real_count", "--real-count"), *_MIXING_FLAGS):
        text = text.replace(name, flag)
    return library_error(ValueError(text)) if isinstance(error, (ValueError, TypeError)) else library_error(error)


__all__ = ["add_object_arguments", "run_train_object", "FORMAT_CHOICES", "SCHEDULE_CHOICES", "DEFAULT_EPOCHS"]
