"""The ``defectgen features`` command: diagnostics of a backbone's embeddings and of a detector's scores.

``defectgen`` finds :data:`FEATURES` through the ``defectgen.commands`` entry points (``pyproject.toml``).
This module stays light (torch and the optional libraries are imported when the command runs). Two parts, in
one call or apart:

- embeddings (``--normal`` / ``--real`` / ``--family``): embed the groups with ``--backbone`` (and ``--arch``),
  a CutPaste ``--model``'s encoder, or a random-init ``--arch``; separability per group, closeness of each
  synthetic family to the real defects, and a t-SNE / UMAP map (``tsne.png`` / ``umap.png``);
- ROC (``--model`` and ``--data``): the detector's image-level ROC curves, overall and per defect type
  (``roc.png``), with the AUROC ``defectgen eval`` reports.

Everything goes to ``--out``/features.json; a short table is printed. User errors are one
``defectgen: error: ...`` line, exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

from defectgen.cli_support import (LIBRARY_ERRORS, CliError, Command, add_batch_size_argument, add_device_argument,
                                   add_image_size_argument, add_seed_argument, check_folder, int_at_least,
                                   library_error, positive_int, resolve_device)

DEFAULT_ARCH = "resnet18"
DEFAULT_SIZE = 224
REPORT = "features.json"


def add_features_arguments(parser: argparse.ArgumentParser) -> None:
    from ..object_cli import FORMAT_CHOICES
    from .backbone import ARCHITECTURES
    from .plots import METHODS

    groups = parser.add_argument_group("embeddings (any of --normal, --real, --family)")
    groups.add_argument("--normal", metavar="DIR", type=Path,
                        help="normal images: an MVTec-layout root (its train/good) or any folder of images "
                             "(default: --real's defect-free images)")
    groups.add_argument("--real", metavar="PATH", type=Path,
                        help="real defects: a labelled set (MVTec-layout test/<type>/, YOLO, COCO, VOC, DeepPCB); "
                             "its defective images, each with its defect type")
    groups.add_argument("--real-format", choices=FORMAT_CHOICES, default="auto",
                        help="--real's format (default: auto-detected)")
    groups.add_argument("--real-split", help="--real's split (default: test, else val, else train)")
    groups.add_argument("--family", metavar="NAME=OP", action="append", default=[],
                        help="a synthetic-defect group: a defectgen operator name or recipe file applied with p=1 "
                             "to the normal images (repeatable; NAME alone uses NAME as the operator)")
    groups.add_argument("--backbone", metavar="FILE", type=Path,
                        help="backbone file (a torchvision state_dict without its head, e.g. 'defectgen pretrain' "
                             "output) to embed with (default: --arch at random init if --arch is given, else "
                             "--model's encoder, else resnet18 at random init)")
    groups.add_argument("--arch", choices=ARCHITECTURES,
                        help=f"the backbone's architecture (default: {DEFAULT_ARCH})")
    groups.add_argument("--limit", metavar="N", type=positive_int,
                        help="at most N images per group (a seeded random choice; default: all)")
    groups.add_argument("--method", choices=METHODS, default="tsne",
                        help="the 2-D map: scikit-learn t-SNE, or UMAP (needs umap-learn) (default: %(default)s)")
    groups.add_argument("--no-plot", action="store_true", help="numbers only: no 2-D map and no roc.png")
    groups.add_argument("--k", metavar="K", type=positive_int, default=5,
                        help="neighbours of the kNN classifier (default: %(default)s)")
    groups.add_argument("--folds", metavar="F", type=int_at_least(2, "at least 2 folds"), default=5,
                        help="cross-validation folds (fewer when a group is smaller) (default: %(default)s)")
    roc = parser.add_argument_group("ROC curves (--model and --data)")
    roc.add_argument("--model", metavar="MODEL", type=Path,
                     help="a model file or run folder written by 'defectgen train': its scores give the ROC "
                          "curves; a CutPaste model's encoder also embeds the groups unless --backbone or --arch "
                          "is given")
    roc.add_argument("--data", metavar="DIR", type=Path,
                     help="the labelled test set scored for the ROC curves (as 'defectgen eval --data')")
    roc.add_argument("--format", choices=FORMAT_CHOICES, default="auto",
                     help="--data's format (default: auto-detected)")
    roc.add_argument("--split", help="--data's split (default: test, else val, else train)")
    roc.add_argument("--defect", metavar="TYPE", action="append", dest="defects",
                     help="MVTec --data: defect type to include, repeatable (default: all)")
    roc.add_argument("--stride", metavar="S", type=positive_int,
                     help="patch-grid stride of a patch-level model's scores (default: the model's)")
    parser.add_argument("--out", metavar="DIR", type=Path, required=True,
                        help=f"output folder: {REPORT}, tsne.png / umap.png, roc.png")
    add_image_size_argument(parser, f"side images are embedded at (default: --model's, else {DEFAULT_SIZE}); the "
                                    "ROC curves always use the model's own size, as eval does")
    add_batch_size_argument(parser, "images per forward pass (default: %(default)s)", 32)
    add_seed_argument(parser, "seeds the random-init backbone, the synthetic defects, the --limit choice, the "
                              "folds and the 2-D map (default: %(default)s)")
    add_device_argument(parser)


def _family_specs(items: List[str]) -> List[Tuple[str, str]]:
    from .groups import NORMAL, REAL

    specs: List[Tuple[str, str]] = []
    for item in items:
        name, _, spec = item.partition("=") if "=" in item else (item, "=", item)
        name, spec = name.strip(), spec.strip()
        if not name or not spec:
            raise CliError(f"--family expects NAME=OPERATOR_OR_RECIPE, got {item!r}")
        if name in (NORMAL, REAL) or name.startswith(f"{REAL}:") or name in dict(specs):
            raise CliError(f"--family name {name!r} is reserved or used twice")
        specs.append((name, spec))
    return specs


def _load_groups(args: argparse.Namespace, size: int, device: str) -> list:
    from .groups import family_op, make_family, normal_group, real_groups

    real = normal = None
    if args.real is not None:
        if not args.real.exists():
            raise CliError(f"--real {str(args.real)!r} does not exist")
        real, normal = real_groups(args.real, size, args.real_format, args.real_split, args.limit, args.seed)
    if args.normal is not None:
        check_folder(args.normal, "--normal")
        normal = normal_group(args.normal, size, args.limit, args.seed)
    if normal is None:
        raise CliError("no normal images: give --normal (--real " +
                       ("has no defect-free images)" if args.real is not None else "or --normal)"))
    families = []
    for name, spec in _family_specs(args.family):
        family = make_family(name, family_op(spec), normal, args.seed, args.batch_size, device)
        family.info["spec"] = spec
        families.append(family)
    return [normal, *families] + ([real] if real is not None else [])


def _embedder(args: argparse.Namespace, detector):
    """--backbone (with --arch), else an explicit --arch at random init, else --model's encoder, else the default
    architecture at random init."""
    from .backbone import backbone_embedder, detector_embedder

    if args.backbone is None and args.arch is None and detector is not None:
        return detector_embedder(detector, args.model)
    return backbone_embedder(args.arch or DEFAULT_ARCH, args.backbone, args.seed)


def _embeddings_part(args: argparse.Namespace, detector, device: str, report: Dict[str, Any]) -> str:
    from .diagnostics import embedding_report, format_table
    from .plots import plot_map, project

    embedder = _embedder(args, detector)
    size = args.image_size or (detector.image_size if embedder.network is getattr(detector, "network", None)
                               else DEFAULT_SIZE)
    groups = _load_groups(args, size, device)
    part, embeddings = embedding_report(groups, embedder, args.batch_size, device, args.seed, args.k, args.folds)
    report["settings"].update({"backbone": embedder.description, "image_size": size, "k": args.k,
                               "folds": args.folds, "limit": args.limit,
                               "backbone_file": None if args.backbone is None else str(args.backbone),
                               "arch": None if embedder.network is getattr(detector, "network", None)
                               else args.arch or DEFAULT_ARCH})
    report.update(part)
    if not args.no_plot:
        import torch

        points = project(torch.cat(list(embeddings.values())), args.method, args.seed)
        names = [g.name for g in groups for _ in range(len(g))]
        types = [t for g in groups for t in (g.types or [g.name] * len(g))]
        label = "t-SNE" if args.method == "tsne" else "UMAP"
        path = plot_map(points, names, {g.name: g.kind for g in groups},
                        f"{label} of pooled embeddings - {embedder.description}", args.out / f"{args.method}.png")
        report["projection"] = {"method": args.method, "file": path.name,
                                "points": [[round(float(x), 4), round(float(y), 4)] for x, y in points],
                                "group": names, "type": types}
    return format_table(part)


def _roc_part(args: argparse.Namespace, detector, report: Dict[str, Any]) -> str:
    from .plots import plot_roc
    from .roc import detector_scores, roc_curves

    check_folder(args.data, "--data")
    if args.stride is not None and getattr(detector, "level", None) != "patch":
        raise CliError("--stride only applies to patch-level models (trained with --level patch)")
    kwargs = {} if args.stride is None else {"stride": args.stride}
    scores, defective, types = detector_scores(detector, args.data, args.format, args.split, args.defects,
                                               args.batch_size, **kwargs)
    curves = roc_curves(scores, defective, types)
    title = f"ROC of {detector.kind} ({Path(args.model).name}) on {args.data.resolve().name}"
    path = plot_roc(curves, title, args.out / "roc.png") if not args.no_plot else None
    report["roc"] = {"model": str(args.model), "data": str(args.data), "image_size": detector.image_size,
                     "file": None if path is None else path.name, "curves": curves}
    rows = [f"{'ROC':<24} {'good':>5} {'defective':>9} {'AUROC':>6}"]
    rows += [f"{name:<24} {c['count']['good']:>5} {c['count']['defective']:>9} {100 * c['auroc']:>6.1f}"
             for name, c in curves.items()]
    return "\n".join(rows) + "\n"


def run_features(args: argparse.Namespace) -> int:
    embeddings = args.normal is not None or args.real is not None or bool(args.family)
    if args.data is not None and args.model is None:
        raise CliError("--data (ROC curves) needs --model, the detector whose scores are plotted")
    if not embeddings and args.data is None:
        raise CliError("nothing to do: give --normal / --real / --family (embeddings) and/or --model with --data "
                       "(ROC curves)")
    if not embeddings and (args.backbone is not None or args.arch is not None):
        raise CliError("--backbone and --arch apply to the embeddings: give --normal, --real or --family too")
    if args.stride is not None and args.data is None:
        raise CliError("--stride applies to the ROC curves (--data)")
    _family_specs(args.family)  # name errors before anything is loaded
    from .separability import MissingExtra, require

    try:  # a missing optional library before minutes of embedding, not after
        if embeddings:
            require("sklearn", "scikit-learn", "the separability numbers and the t-SNE map")
        if not args.no_plot:
            require("matplotlib", "matplotlib", "the plots (or --no-plot)")
            if embeddings and args.method == "umap":
                require("umap", "umap-learn", "--method umap", in_extra=False)
    except MissingExtra as error:
        raise CliError(str(error)) from None
    device = resolve_device(args.device)
    detector = None
    if args.model is not None:
        from ..cli import load_model  # eval's loader: the same checks and messages

        detector = load_model(args.model, None, device)
    from defectgen.environment import describe

    report: Dict[str, Any] = {"settings": {"seed": args.seed, "device": device, "batch_size": args.batch_size,
                                           "model": None if args.model is None else str(args.model),
                                           "method": None if args.no_plot else args.method,
                                           "families": dict(_family_specs(args.family))},
                              "environment": describe()}
    tables = []
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        if embeddings:
            tables.append(_embeddings_part(args, detector, device, report))
        if args.data is not None:
            tables.append(_roc_part(args, detector, report))
        from defectgen.io.atomic import write_text_atomic

        write_text_atomic(args.out / REPORT, json.dumps(report, indent=1) + "\n")
    except MissingExtra as error:
        raise CliError(str(error)) from None
    except LIBRARY_ERRORS + (OSError,) as error:
        raise library_error(error) from error
    if "backbone" in report["settings"]:
        print(f"backbone: {report['settings']['backbone']}")
    sys.stdout.write("\n".join(tables))
    sys.stdout.flush()
    print(f"written to {args.out / REPORT}", file=sys.stderr)
    return 0


FEATURES = Command("features", "diagnostics: t-SNE / UMAP map and kNN / linear-probe separability of normal, "
                               "synthetic-defect and real-defect embeddings under a backbone; ROC curves of a "
                               "detector's scores", add_features_arguments, run_features, order=55)

__all__ = ["FEATURES", "add_features_arguments", "run_features"]

