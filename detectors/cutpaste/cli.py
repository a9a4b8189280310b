"""``defectgen train cutpaste``: its options and its run (what :class:`~.detector.CutPasteDetector` declares)."""
from __future__ import annotations

import argparse
import difflib
import time
from pathlib import Path
from typing import List, Optional

from defectgen.cli_support import (LIBRARY_ERRORS, CliError, add_batch_size_argument, add_device_argument,
                                   add_gray_argument, add_image_size_argument, add_learning_rate_argument,
                                   add_progress_argument, add_seed_argument, check_folder, library_error,
                                   non_negative_int, positive_int, resolve_device)

from .pretext import NAMED as NAMED_PRETEXTS

CUTPASTE_STEPS = 256  # train cutpaste's default length


def add_cutpaste_arguments(parser: argparse.ArgumentParser) -> None:
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
    add_image_size_argument(parser, "images are resized to PX x PX (default: %(default)s)", 256)
    add_gray_argument(parser)
    parser.add_argument("--level", choices=("image", "patch"), default="image",
                        help="image: whole images, Grad-CAM maps; patch: the paper's patch-level variant "
                             "(default: %(default)s)")
    parser.add_argument("--patch-size", metavar="PX", type=positive_int,
                        help="patch side for --level patch (default: image size / 4)")
    parser.add_argument("--patch-stride", metavar="S", type=positive_int, default=4,
                        help="stride of the dense patch grid for --level patch (default: %(default)s)")
    add_batch_size_argument(parser, "normal images per step; each step trains on N x classes images (default: "
                                    "%(default)s)", 32)
    add_learning_rate_argument(parser, "SGD learning rate, cosine-decayed to 0 over the steps (default: %(default)s)",
                               0.03)
    add_seed_argument(parser, "seeds the initialisation, the batches and the defects (default: %(default)s)",
                      non_negative_int)
    parser.add_argument("--head-layers", metavar="W", type=positive_int, nargs="+",
                        help="widths of the MLP projection head (default: the reference code's eight 512s and a 128)")
    parser.add_argument("--weights-backbone", "--weights", metavar="FILE", type=Path, dest="weights",
                        help="local backbone file to start the ResNet-18 encoder from: a torchvision resnet18 "
                             "state_dict with or without fc.* (the backbone.pt of 'defectgen pretrain --backbone "
                             "resnet18', or ImageNet weights you saved); --weights is the same option; never "
                             "downloaded (default: random init)")
    add_device_argument(parser)
    add_progress_argument(parser, "progress bar with loss and accuracy on stderr (default: on when stderr is a "
                                  "terminal)")


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
    return -(-args.images_seen // args.batch_size)  # ceil, as detectors.data.sources.steps_for


def run_train_cutpaste(args: argparse.Namespace, cls: type) -> int:
    """``defectgen train cutpaste``: train a ``cls`` (the CutPaste detector class) and save it to ``--out``."""
    check_folder(args.data, "--data")
    if args.weights is not None and not args.weights.is_file():
        raise CliError(f"--weights-backbone file {str(args.weights)!r} does not exist")
    if args.out.is_dir():
        raise CliError(f"--out {str(args.out)!r} is a folder; give the model file's path (e.g. model.pt)")
    if args.patch_size is not None and args.level != "patch":
        raise CliError("--patch-size only applies to --level patch")
    pretext = _pretext_spec(args.pretexts)
    device = resolve_device(args.device)
    try:
        detector = cls(
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
            f"{detector.image_size} px {'gray' if detector.channels == 1 else 'RGB'}, "
            f"{'random init' if args.weights is None else f'from backbone {args.weights}'}) on {args.data} "
            f"for {detector.steps_trained} step{'' if detector.steps_trained == 1 else 's'} "
            f"({detector.steps_trained * args.batch_size} normal images seen) on {device} in {seconds:.1f} s")
    if last:
        loss = sum(r["loss"] for r in last) / len(last)
        accuracy = sum(r["accuracy"] for r in last) / len(last)
        what += f": final loss {loss:.4f}, accuracy {accuracy:.3f} (mean of the last {len(last)} steps)"
    else:
        what += " (no training steps: random network, density only)"
    return f"{what}. Model saved to {args.out}."


__all__ = ["add_cutpaste_arguments", "run_train_cutpaste", "NAMED_PRETEXTS", "CUTPASTE_STEPS"]
