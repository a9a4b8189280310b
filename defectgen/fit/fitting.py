"""``defectgen fit`` as one library call: :func:`fit_defects` measures, writes the recipe, checks it, reports.

Steps: read the K real images :class:`~defectgen.fit.RealSpec` chooses; measure their defects; write the fitted
recipe; build it back from the written file (so a recipe that does not build never leaves this function); paint
``samples`` synthetic images with it on OK images and measure them the same way; write ``statistics.json`` (both
sides, the chosen image names, the settings) and the report.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

import torch

from ..checks import check_int
from ..io.labelled import LabelledSet
from ..io.labelled.real import RealSpec, read_real
from .measure import DefectStatistics, measure_defects
from .recipe import FittedRecipe, fit_recipe, write_recipe
from .synthetic import load_ok_images, optional_ok_source, synthetic_set

PathLike = Union[str, Path]

#: OK images shown in ``preview_recipe.png``
PREVIEW_IMAGES = 6


@dataclass
class FitResult:
    """What :func:`fit_defects` wrote and measured."""

    out: Path
    recipe_path: Path
    statistics_path: Path
    report_path: Path
    files: List[Path]
    recipe: FittedRecipe
    real: DefectStatistics
    synthetic: Optional[DefectStatistics]
    chosen: List[str]


def fit_defects(real: RealSpec, out: PathLike, ok: Optional[PathLike] = None, samples: int = 64,
                image_size: int = 256, device: Union[str, torch.device] = "cpu", force: bool = False,
                transplant: bool = True) -> FitResult:
    """Fit a recipe to the real defects ``real`` names and write it, its statistics and a report into ``out``.

    Args:
        real: the real labelled images (K chosen by ``real.seed``; see :class:`~defectgen.fit.RealSpec`).
        out: the output folder; it must be new or empty unless ``force``.
        ok: OK images for the synthetic side (a folder; an MVTec category's ``train/good`` or an aligned-pairs
            set's ``templates`` are found under its root); default: the real set's own (templates, ``train/good``),
            else no synthetic side.
        samples: synthetic images made and measured for the report (seeded by ``real.seed``).
        image_size: real images (other than aligned pairs, read at their own size) and OK images are read at
            ``image_size x image_size``; every measure is relative to the image, so this sets precision only.
        device: where the recipe's operator runs for the synthetic side.
        force: write into a non-empty ``out`` (files of the same names are replaced).
        transplant: include the transplant branches (see :func:`~defectgen.fit.fit_recipe`).

    Raises:
        ValueError: naming the problem: a non-empty ``out``, K larger than the set, no defect box in the set or
            among the chosen images, an unreadable set or OK folder (and the readers' own errors).
    """
    from ..recipe import build_op
    from ..io.atomic import write_text_atomic

    samples = check_int(samples, "samples", 1)
    image_size = check_int(image_size, "image_size", 8)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ValueError(f"out folder {str(out)!r} is not empty (pass force=True / --force to write into it)")
    spec = real.resolved()
    chosen, templates, pool, pool_boxes = read_real(spec, image_size)
    if pool_boxes == 0:
        raise ValueError(f"the real set {spec.root!r} (format {spec.format}, split {spec.split or '-'}) has no defect "
                         f"box in its {pool} images: nothing to fit")
    if sum(len(b) for b in chosen.boxes) == 0:
        raise ValueError(f"none of the {len(chosen)} images chosen with seed {spec.seed} has a defect box (the set "
                         f"has {pool_boxes} boxes in {pool} images): choose more images or another seed")
    statistics = measure_defects(chosen, templates=templates)
    recipe = fit_recipe(statistics, RealSpec(spec.root, spec.format, spec.split, spec.count, spec.seed,
                                             spec.test_every), transplant=transplant)
    out.mkdir(parents=True, exist_ok=True)
    recipe_path = out / "recipe.yaml"
    write_recipe(recipe, recipe_path)
    op, class_names = build_op(None, recipe_path)
    source = optional_ok_source(spec.format, spec.root, ok)
    synthetic, synthetic_labelled, preview = None, None, None
    if source is not None:
        ok_images, ok_names = load_ok_images(source, samples, image_size, chosen.channels, spec.seed)
        synthetic_labelled, used = synthetic_set(op, ok_images, samples, spec.seed, statistics.class_names,
                                                 recipe["defects_per_image"], device=device)
        measured, references = measured_like(statistics, synthetic_labelled, used, templates is not None)
        synthetic = measure_defects(measured, templates=references)
        preview = _recipe_preview(op, ok_images[:PREVIEW_IMAGES], spec.seed, recipe, device)
    data = {"chosen": list(chosen.names), "pool": pool, "real_spec": spec.to_config(),
            "settings": {"samples": samples, "image_size": image_size, "ok": None if source is None else str(source)},
            "recipe": "recipe.yaml", "real": statistics.to_dict(),
            "synthetic": None if synthetic is None else synthetic.to_dict()}
    statistics_path = out / "statistics.json"
    write_text_atomic(statistics_path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    from .report import write_report

    settings = {"real set": f"`{spec.root}` (format {spec.format}, split {spec.split or '-'})",
                "images chosen": f"{len(chosen)} of {pool} (seed {spec.seed}"
                                 + (f", every {spec.test_every}th held out first)" if spec.test_every else ")"),
                "measured at": "each scan's own size (aligned pairs: masks by template difference)"
                               if spec.format == "deeppcb" else f"{image_size} px",
                "OK images": "none" if source is None else f"`{source}` ({samples} synthetic images at "
                                                           f"{image_size} px)"}
    files = write_report(out, statistics, synthetic, recipe, chosen, synthetic_labelled, settings, preview)
    return FitResult(out=out, recipe_path=recipe_path, statistics_path=statistics_path, report_path=out / "report.md",
                     files=[recipe_path, statistics_path] + files, recipe=recipe, real=statistics,
                     synthetic=synthetic, chosen=list(chosen.names))


def measured_like(real: DefectStatistics, synthetic: LabelledSet, ok: torch.Tensor, templates: bool):
    """``(labelled, templates)`` to measure ``synthetic`` the way ``real`` was measured: the operator's exact
    masks only when the real defects had masks of their own; by difference with the OK images they were painted
    on when the real ones were cut by template difference; else estimated inside the boxes, as the real ones were.
    A soft blend edge (the transplant's feather) is in the operator's mask down to changes of a grey level or
    less, which an estimated real mask never holds: the comparison would show sizes and contrasts the two sides
    only differ in by how they were measured."""
    sources = real.overall["mask_sources"]
    if sources.get("mask", 0) >= sum(sources.values()) / 2:
        return synthetic, None
    without = dataclasses.replace(synthetic, masks=None)
    return without, (ok if templates else None)


def _recipe_preview(op, images: torch.Tensor, seed: int, recipe, device):
    from ..rng import index_seed
    from ..recipe import class_names
    from ..preview import preview_grid

    result = op(images.to(device), generator=torch.Generator().manual_seed(index_seed(seed, 0, "fit-preview")))
    names = class_names(op, recipe.get("class_names"))
    return preview_grid(images, result, names)  # the grid reads every tensor back to the CPU itself
