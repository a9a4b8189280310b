"""``defectgen train inpaint``: its options and its run (registered beside the detectors' ``train`` kinds)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ...cli_support import (LIBRARY_ERRORS, CliError, add_batch_size_argument, add_device_argument,
                            add_image_size_argument, add_learning_rate_argument, add_progress_argument,
                            add_seed_argument, check_folder, library_error, non_negative_int, positive_int,
                            resolve_device)

HELP = ("defectgen's diffusion inpainting model: learns defects from a few NG images (MVTec layout) and OK "
        "images, for DiffusionInpaint / the 'diffusion' operator")


def _shots(text: str) -> float:
    from ...io.mvtec import check_shots  # the one rule for shots, shared with split_defects and DefectBank

    try:
        return check_shots(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1) or a whole count >= 1, got {text!r}") from None


def add_inpaint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", metavar="DIR", type=Path, required=True,
                        help="an MVTec-layout folder: defects from test/<type>/ with ground_truth/<type>/ masks, OK "
                             "images from train/good (or --ok)")
    parser.add_argument("--out", metavar="DIR", type=Path, required=True,
                        help="the model folder (rerun the same command to resume from its checkpoint)")
    parser.add_argument("--ok", metavar="DIR", type=Path, help="OK images (default: DATA/train/good)")
    parser.add_argument("--defect", metavar="TYPE", action="append", dest="defects",
                        help="defect type (folder under test/) to learn, repeatable (default: all)")
    parser.add_argument("--shots", metavar="X", type=_shots, default=1.0,
                        help="real defects to train on: a fraction of each type (0.33) or a count per type (5); "
                             "the rest are held out and listed in the model's info (default: all)")
    parser.add_argument("--kind", choices=("conditional", "unconditional"), default="conditional",
                        help="conditional: learns the defect types; unconditional: OK images only (RePaint; no NG "
                             "image needed) (default: %(default)s)")
    add_image_size_argument(parser, "the model's window side: windows around each mask are resampled to PX x PX "
                                    "(a power of two >= 16) (default: %(default)s)", 64)
    parser.add_argument("--steps", metavar="N", type=positive_int, default=20000,
                        help="training steps (default: %(default)s)")
    add_batch_size_argument(parser, "windows per step (default: %(default)s)", 16)
    add_learning_rate_argument(parser, "AdamW learning rate, after a linear warm-up (default: %(default)s)", 2e-4)
    parser.add_argument("--width", metavar="C", type=positive_int, default=64,
                        help="UNet channels at full resolution, a multiple of 8 (default: %(default)s)")
    parser.add_argument("--layers", metavar="N", type=positive_int, default=2,
                        help="ResNet layers per UNet level (default: %(default)s)")
    parser.add_argument("--no-attention", action="store_true", help="no self-attention (smaller, faster)")
    parser.add_argument("--context", metavar="F", type=float, default=0.5,
                        help="a window is the mask's box grown by F x its size on every side (default: %(default)s)")
    add_seed_argument(parser, "seeds the held-out split, the initial weights and the batches (default: %(default)s)",
                      non_negative_int)
    parser.add_argument("--checkpoint-every", metavar="N", type=positive_int, default=500,
                        help="steps between checkpoints (default: %(default)s)")
    add_device_argument(parser)
    add_progress_argument(parser)


def run_train_inpaint(args: argparse.Namespace) -> int:
    check_folder(args.data, "--data")
    ok_folder = args.ok if args.ok is not None else args.data / "train" / "good"
    check_folder(ok_folder, "--ok" if args.ok is not None else "--data's train/good")
    if args.out.exists() and not args.out.is_dir():
        raise CliError(f"--out {str(args.out)!r} is a file; give a folder")
    if args.out.is_dir() and any(args.out.iterdir()) and not (args.out / "train.json").is_file():
        raise CliError(f"--out {str(args.out)!r} is a non-empty folder that holds no inpainting training run")
    device = resolve_device(args.device)

    from ...bank import DefectBank
    from ...io.images import list_images, load_folder, read_image
    from .train import InpaintTraining, split_shots, subset_bank, train_inpaint

    try:
        settings = InpaintTraining(
            kind=args.kind, resolution=args.image_size, steps=args.steps, batch_size=args.batch_size,
            learning_rate=args.lr, width=args.width, layers_per_block=args.layers, attention=not args.no_attention,
            context=args.context, seed=args.seed)
        first = list_images(ok_folder)
        if not first:
            raise CliError(f"no images in {str(ok_folder)!r}")
        height, width = read_image(first[0]).shape[:2]  # the OK images are read at their own size
        ok_images = load_folder(ok_folder, size=max(height, width))
        # data_root: the data folder resolved, so a study can tell which files the recorded names are wherever it
        # runs (defectgen ablate refuses a family whose model learnt from a test set's images)
        bank, info = None, {"data": str(args.data), "data_root": str(args.data.resolve()), "ok": str(ok_folder),
                            "shots": args.shots}
        if args.kind == "conditional":
            # the whole source image is kept around each defect, so a window never runs out of real context
            # split_shots is split_defects' rule, so the training part is DefectBank.from_mvtec(args.data,
            # args.defects, split="train", shots=args.shots, split_seed=args.seed) (with no empty mask)
            full = DefectBank.from_mvtec(args.data, args.defects, margin_px=max(height, width))
            train, held_out = split_shots(full, args.shots, args.seed)
            bank = subset_bank(full, train)
            info.update(train_defects=[full.names[i] for i in train],
                        held_out_defects=[full.names[i] for i in held_out])
            counts = ", ".join(f"{k} {v}" for k, v in bank.counts().items())
            print(f"training on {len(train)} real defects ({counts}), "
                  f"{len(held_out)} held out, and {len(ok_images)} OK images")
        start = time.perf_counter()
        model = train_inpaint(args.out, ok_images, bank, settings, device=device, progress=args.progress, info=info,
                              checkpoint_every=args.checkpoint_every)
    except (*LIBRARY_ERRORS, OSError) as error:
        raise library_error(error) from error
    loss = model.info.get("final_loss")
    print(f"trained a {args.kind} inpainting model ({', '.join(model.class_names) or 'OK images only'}) for "
          f"{model.info['steps_done']} steps in {time.perf_counter() - start:.0f} s on {device}"
          + (f", final loss {loss:.4f}" if loss is not None else "") + f". Model saved to {args.out}.")
    return 0


__all__ = ["HELP", "add_inpaint_arguments", "run_train_inpaint"]
