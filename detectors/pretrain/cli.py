"""``defectgen pretrain``: self-supervised pretraining of a backbone on OK images (see docs/pretrain.md).

    defectgen pretrain --ok bottle/ --method simsiam --backbone resnet18 --image-size 224 --steps 5000 --out ssl/
    defectgen pretrain --ok bottle/ --method simclr --negatives cutpaste scar --out ssl_hard/
    defectgen pretrain --ok bottle/ --method byol --pretext cutpaste scar --pretext-weight 0.5 --out ssl_aux/
    defectgen pretrain --ok bottle/ --method simsiam --out ssl/ --resume

``defectgen`` finds :data:`PRETRAIN` through the ``defectgen.commands`` entry points. This module stays light
(torch is imported when the command runs); every user error is one ``defectgen: error: ...`` line, exit code 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from defectgen.cli_support import (LIBRARY_ERRORS, CliError, Command, add_batch_size_argument, add_device_argument,
                                   add_gray_argument, add_image_size_argument, add_learning_rate_argument,
                                   add_progress_argument, add_seed_argument, check_folder, library_error,
                                   non_negative_int, positive_int, resolve_device)

METHOD_NAMES = ("simclr", "byol", "simsiam", "moco")  # detectors.pretrain.methods.METHODS, without importing torch
BACKBONE_NAMES = ("resnet18", "resnet50", "mobilenet_v3_large", "mobilenet_v3_small")


def add_pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ok", metavar="DIR", type=Path, required=True,
                        help="OK (defect-free) images: an MVTec category (its train/good) or any folder of images")
    parser.add_argument("--method", default="simsiam",
                        help=f"{', '.join(METHOD_NAMES)} (moco = MoCo v3) (default: %(default)s)")
    parser.add_argument("--backbone", default="resnet18",
                        help=f"{', '.join(BACKBONE_NAMES)} (default: %(default)s)")
    add_image_size_argument(parser, "side images are resized to (default: %(default)s)", 224)
    parser.add_argument("--steps", metavar="N", type=positive_int, default=5000,
                        help="training steps (default: %(default)s)")
    add_batch_size_argument(parser, "images per step, two views each (default: %(default)s)", 64)
    add_learning_rate_argument(parser, "AdamW's peak learning rate (default: 1e-3)")
    add_seed_argument(parser, "seeds the initial weights, the images drawn, their views and defects",
                      non_negative_int)
    parser.add_argument("--out", metavar="DIR", type=Path, required=True,
                        help="new or empty folder: backbone.pt, pretrain.json, report.md, curves.png, checkpoint.pt")
    parser.add_argument("--weights", metavar="FILE", type=Path,
                        help="start from this local backbone file (default: random initialisation)")
    add_gray_argument(parser, "read the images as grayscale (default: RGB)")
    parser.add_argument("--negatives", metavar="OP", nargs="+",
                        help="defect-aware hard negatives (simclr, moco): each image's defective copy made by these "
                             "operators is a negative of its clean views")
    parser.add_argument("--negatives-recipe", metavar="FILE", type=Path,
                        help="the hard negatives' operator from a recipe file instead")
    parser.add_argument("--negative-weight", metavar="W", type=float, default=1.0,
                        help="weight of each hard negative in the softmax denominator (default: %(default)s)")
    parser.add_argument("--pretext", metavar="OP", nargs="+",
                        help="auxiliary pretext head (any method): classify normal vs each of these operators")
    parser.add_argument("--pretext-recipe", metavar="FILE", type=Path,
                        help="the pretext's one defect class from a recipe file instead")
    parser.add_argument("--pretext-weight", metavar="W", type=float, default=1.0,
                        help="factor of the pretext's cross-entropy in the loss (default: %(default)s)")
    parser.add_argument("--checkpoint-every", metavar="N", type=non_negative_int, default=100,
                        help="write checkpoint.pt every N steps and after the last (default: %(default)s)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in --out (same settings): ends as an uninterrupted run")
    add_progress_argument(parser)
    add_device_argument(parser)


def run_pretrain(args: argparse.Namespace) -> int:
    if args.method not in METHOD_NAMES:
        raise CliError(f"--method: unknown method {args.method!r} (known: {', '.join(METHOD_NAMES)})")
    if args.backbone not in BACKBONE_NAMES:
        raise CliError(f"--backbone: unknown backbone {args.backbone!r} (known: {', '.join(BACKBONE_NAMES)})")
    if args.negatives and args.negatives_recipe:
        raise CliError("give --negatives or --negatives-recipe, not both")
    if args.pretext and args.pretext_recipe:
        raise CliError("give --pretext or --pretext-recipe, not both")
    if (args.negatives or args.negatives_recipe) and args.method not in ("simclr", "moco"):
        raise CliError(f"--negatives applies only to contrastive methods (simclr, moco); {args.method} has no "
                       "negatives (use --pretext to make it defect-aware)")
    for option, weight in (("--negative-weight", args.negative_weight), ("--pretext-weight", args.pretext_weight)):
        if not weight > 0:
            raise CliError(f"{option} must be > 0, got {weight}")
    for option, path in (("--negatives-recipe", args.negatives_recipe), ("--pretext-recipe", args.pretext_recipe),
                         ("--weights", args.weights)):
        if path is not None and not path.is_file():
            raise CliError(f"{option} {str(path)!r} does not exist")
    check_folder(args.ok, "--ok")
    if not args.resume and args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise CliError(f"--out {str(args.out)!r} is not empty (add --resume to continue the run it holds)")
    device = resolve_device(args.device)
    from .trainer import pretrain

    try:
        record = pretrain(args.ok, method=args.method, backbone=args.backbone, image_size=args.image_size,
                          steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, out=args.out,
                          negatives=args.negatives, negatives_recipe=args.negatives_recipe,
                          negative_weight=args.negative_weight, pretext=args.pretext,
                          pretext_recipe=args.pretext_recipe, pretext_weight=args.pretext_weight,
                          weights=args.weights, channels=1 if args.gray else 3,
                          checkpoint_every=args.checkpoint_every, resume=args.resume, progress=args.progress,
                          device=device)
    except LIBRARY_ERRORS as error:
        raise library_error(error) from error
    except OSError as error:
        raise library_error(error) from error
    last = record["history"][-1]
    print(f"pretrained {args.method} / {args.backbone}: {record['images_seen']} images seen, last loss "
          f"{last['loss']:.4f}, collapse guard {last['output_std']:.4f} (spread: {record['healthy_output_std']:.4f}); "
          f"backbone: {args.out / record['backbone']}", file=sys.stderr)
    return 0


PRETRAIN = Command("pretrain", "self-supervised pretraining of a detector backbone on OK images (SimCLR, BYOL, "
                               "SimSiam, MoCo v3; optionally defect-aware), saved as a torchvision state dict",
                   add_pretrain_arguments, run_pretrain, order=45)

__all__ = ["PRETRAIN", "add_pretrain_arguments", "run_pretrain"]
