"""Study recipes: the YAML a user writes, checked and resolved for one budget, before anything trains.

A recipe names what to compare (see ``recipes/ablation_*.yaml`` for two complete ones)::

    data:                      # where the OK images, the real training labels and the real test set come from
      root: ../data/deeppcb    # relative to the recipe file
      format: deeppcb          # deeppcb (aligned pairs, split by id) | mvtec (train/good + test) | folder
      test_every: 4            # deeppcb: sorted ids, every 4th (index % 4 == 3) is a test pair
      holdout_ok: 0            # OK images kept out of training, for the synthetic test sets
      # mvtec only: a fixed split of the defective test images (per type, seeded; the split of
      # DefectBank.from_mvtec(split=..., shots=..., split_seed=...) and `defectgen train inpaint --shots --seed`):
      # its training part is taken out of the real test set (images and masks), so families may learn from it
      # defect_split: {shots: 0.33, seed: 0}
    families:                  # the synthetic defects compared; "none" is the no-synthetic-defects baseline
      none: none
      cutpaste: {op: cutpaste}               # any registered operator name or config (a list: one class each)
      pcb: {recipe: pcb_defects.yaml}        # an operator recipe file
      three_way: {pretext: 3way}             # a CutPaste detector's named pretext
      transplant: {transplant: {pairs: 20}}  # real defects of k training pairs, moved onto OK images ("k":
                                             # the synthetic+K regime's K real images, the same ones)
      # any family may add allow_overlap: true (see below)
    regimes: [synthetic, synthetic+20, real]
    detectors:
      fasterrcnn: {kind: fasterrcnn, settings: {batch_size: 4}, images_seen: 900}
      cutpaste: {kind: cutpaste, settings: {batch_size: 32}, steps: 100}
      # families: the families a detector is crossed with (default: all); not part of a cell's settings
      cutpaste_3way: {kind: cutpaste, steps: 100, families: [three_way]}
    test_sets:
      real: real                              # the data's real test split
      other: {path: ../labelled, format: coco, split: val}
      synthetic_perlin: {synthetic: {op: perlin}, images: 40}   # made on the held-out OK images
    seeds: [0, 1, 2]
    metrics: [map_50, image_auroc]
    image_size: 320
    mixing: {real_fraction: 0.5, schedule: mixed}   # how synthetic+K mixes its K real images (the defaults)
    resources: {cpus: 1}       # what a cell asks --executor ray / slurm for: cpus, gpus, minutes, partition
    budgets:                   # named overrides: top-level keys, and per detector its own keys
      cpu: {image_size: 256, seeds: [0], detectors: {fasterrcnn: {images_seen: 600}}}
      gpu: {image_size: 640, resources: {gpus: 1, cpus: 4}}

Regimes: ``synthetic`` trains on the family's defects over the OK images only; ``synthetic+K`` adds ``K`` real
labelled training images (chosen by the seed); ``real`` trains on every real training image. The ``none``
family under ``synthetic+K`` is "K real images alone", and ``real`` is run for ``none`` only (it has no
synthetic part), so the real-only and K-real baselines are rows of the ``none`` family. ``mixing`` says how a
``synthetic+K`` cell mixes its ``K`` real images into the synthetic ones (:class:`~detectors.data.sources.MixedSource`:
``real_fraction`` of every batch, or ``schedule: finetune`` with ``replay_fraction`` and ``finetune_start``;
``real_fraction: null`` is the old proportional mix, every image once per epoch); only those cells record it.
Object detectors train for ``images_seen`` images (the fewest steps that show that many,
``ceil(images_seen / batch_size)`` when every batch is full, whatever the data's size) or for ``epochs``.

``resources`` (study-wide, per budget, or per detector, whose keys replace the study's) are what each cell asks an
executor for (:mod:`defectgen.executors`; ``--cpus-per-task`` / ``--gpus-per-task`` / ``--time`` / ``--partition``
override them); where a cell runs changes nothing it computes, so they are part of neither a cell's id nor the
recipe's fingerprint.

Object detectors (boxes) take every regime; anomaly detectors (the CutPaste detector) train on normal images
with the family as pretext, so they take ``synthetic`` only, and their ``none`` is the untrained network (the
density alone).

No test data in training: a family whose training data (a DefectBank its operators read from an MVTec or
aligned-pairs folder, an inpainting model folder's recorded training images, a transplant family's pairs)
holds files of a real test set it is scored on is refused when the recipe is loaded, naming the files
(:mod:`.overlap`), unless its spec says ``allow_overlap: true`` (``diffusion: {recipe: diffusion_bottle.yaml,
allow_overlap: true}``): then it runs and the report marks it (``†`` in ``table.md`` with a footnote, an
``overlap`` count in its ``results.jsonl`` rows). ``allow_overlap`` is not part of a cell's settings.

:func:`load_study` reads a recipe, resolves one budget and checks it (every error names the key and the allowed
values, before any data is read): each section by :mod:`.schema`, then what the sections say together (the
files they name exist, the regimes suit the detectors, no family learns from a test set it is scored on). The
result is a :class:`~detectors.study.plan.Study`; :func:`~detectors.study.plan.expand` turns it into cells.
"""
from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import yaml

from .overlap import check_overlaps
from .plan import Study
from .schema import (BASELINE, REQUIRED, TOP_KEYS, RecipeError, backbone_records, check_detector_families,
                     check_keys, check_maps, check_sections, check_test_sets, k_reason, needs_real_k, real_count)


def load_study(recipe: Union[str, Path, Mapping[str, Any]], budget: Optional[str] = None,
               base: Optional[Union[str, Path]] = None, data_root: Optional[Union[str, Path]] = None) -> Study:
    """Read and check a study recipe (a YAML file or a dict) and resolve ``budget`` (a key of its ``budgets``).

    ``base`` is the folder relative paths are taken from when ``recipe`` is a dict (default: the current one).
    ``data_root`` replaces ``data.root`` (``defectgen ablate --data-root``: the same recipe on another data set of
    its format, e.g. another MVTec category); a relative one is taken from the current directory and recorded
    relative to the recipe's folder, as a root written in the recipe would be.
    Raises :class:`~detectors.study.schema.RecipeError` naming the bad key.
    """
    path: Optional[Path] = None
    if isinstance(recipe, Mapping):
        raw = copy.deepcopy(dict(recipe))
    else:
        path = Path(recipe)
        if not path.is_file():
            raise RecipeError(f"study recipe {str(path)!r} does not exist")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise RecipeError(f"{str(path)!r} is not valid YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise RecipeError(f"{str(path)!r} must hold a mapping of study keys ({', '.join(TOP_KEYS)})")
    check_keys(raw, TOP_KEYS, "the recipe")
    for required in REQUIRED:
        if required not in raw:
            raise RecipeError(f"the recipe needs a {required!r} section")
    raw = _apply_budget(raw, budget)
    name = str(raw.get("name") or (path.stem if path is not None else "study"))
    root = path.parent if path is not None else Path(base) if base is not None else Path.cwd()
    if data_root is not None:
        raw["data"] = _replace_root(raw["data"], data_root, root)
    sections = check_sections(raw)
    families, allow_overlap = sections.pop("families")
    study = Study(path=path, root=root, budget=budget, raw=raw, name=name, families=families,
                  test_sets=check_test_sets(raw["test_sets"], families, sections["data"]), **sections)
    _check_combinations(study)
    check_detector_families(study.detectors, study.families)
    check_maps(study.detectors, study.metrics)
    backbone_records(study.detectors, study.resolve_path)  # each backbone file exists; its content hash
    study.family_records = {name: _family_record(study, spec) for name, spec in study.families.items()}
    study.allow_overlap = allow_overlap
    study.overlaps = check_overlaps(study)
    return study


def _replace_root(data: Any, data_root: Union[str, Path], root: Path) -> Dict[str, Any]:
    """``data`` with ``root`` replaced by ``data_root`` (see :func:`load_study`)."""
    if not isinstance(data, Mapping) or "root" not in data:
        raise RecipeError("--data-root replaces data.root, which this recipe does not have (data.format folder "
                          "reads data.ok)")
    path = Path(data_root).expanduser()
    if not path.is_absolute():
        # abspath, not resolve: a root reached through a symlink is recorded as the recipe would write it
        path = Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root)))
    return dict(data, root=path.as_posix())


def _family_record(study: Study, spec: Any) -> Any:
    if isinstance(spec, Mapping) and "recipe" in spec:  # the file exists: _check_paths said so
        text = study.resolve_path(spec["recipe"]).read_bytes()
        return dict(spec, recipe_sha256=hashlib.sha256(text).hexdigest()[:16])
    return spec


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        out = dict(base)
        for key, value in override.items():
            out[key] = _merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(override)


def _apply_budget(raw: Dict[str, Any], budget: Optional[str]) -> Dict[str, Any]:
    budgets = raw.get("budgets") or {}
    if not isinstance(budgets, Mapping):
        raise RecipeError("budgets must map budget names (cpu, gpu, ...) to their overrides")
    if budget is None:
        return raw
    if budget not in budgets:
        known = ", ".join(budgets) or "none (the recipe has no budgets section)"
        raise RecipeError(f"unknown budget {budget!r}; this recipe's budgets: {known}")
    override = budgets[budget] or {}
    check_keys(override, [k for k in TOP_KEYS if k not in ("budgets", "name")], f"budgets.{budget}")
    detectors = override.get("detectors", {})
    check_keys(detectors, list(raw["detectors"]), f"budgets.{budget}.detectors")
    merged = _merge({k: v for k, v in raw.items() if k != "budgets"}, override)
    for section in ("families", "detectors"):  # set to null in a budget: left out at that budget (budgets merge,
        dropped = [name for name, spec in (override.get(section) or {}).items() if spec is None]  # never remove)
        if dropped:
            merged[section] = {k: v for k, v in merged[section].items() if k not in dropped}
    merged["budgets"] = budgets
    return merged


def _check_paths(study: Study) -> None:
    """Every file and folder the recipe names exists (relative paths from the recipe's folder)."""
    named = [(f"data.{k}", study.data[k]) for k in ("root", "ok") if k in study.data]
    named += [(f"data.{k}.path", study.data[k]["path"]) for k in ("real_train", "real_test") if k in study.data]
    named += [(f"families.{name}.recipe", spec["recipe"]) for name, spec in study.families.items()
              if isinstance(spec, Mapping) and "recipe" in spec]
    named += [(f"test_sets.{name}.path", spec["path"]) for name, spec in study.test_sets.items() if "path" in spec]
    named += [(f"test_sets.{name}.synthetic.recipe", spec["synthetic"]["recipe"])
              for name, spec in study.test_sets.items()
              if isinstance(spec.get("synthetic"), Mapping) and "recipe" in spec["synthetic"]]
    for key, text in named:
        if not study.resolve_path(str(text)).exists():
            raise RecipeError(f"{key}: {str(study.resolve_path(str(text)))!r} does not exist")


def _check_combinations(study: Study) -> None:
    _check_paths(study)
    anomaly = [d for d in study.detectors if study.is_anomaly(d)]
    objects = [d for d in study.detectors if not study.is_anomaly(d)]
    if anomaly and not objects and any(r != "synthetic" for r in study.regimes):
        raise RecipeError(f"regimes {study.regimes}: anomaly detectors ({', '.join(anomaly)}) train on normal "
                          "images only; use regimes: [synthetic]")
    for name, spec in study.families.items():
        if isinstance(spec, Mapping) and "fit" in spec and study.data["format"] != "deeppcb":
            raise RecipeError(f"families.{name}: a fit family reads its K real training images from aligned pairs "
                              f"(data.format deeppcb), not {study.data['format']!r}; for other data run `defectgen "
                              "fit` once and name its recipe.yaml in a {recipe: ...} family")
    if not any(real_count(r) for r in study.regimes):
        for name, spec in study.families.items():
            if needs_real_k(spec):
                raise RecipeError(f"families.{name} learns from the regime's K real images ({k_reason(spec)}) but "
                                  f"no regime has any (regimes {study.regimes}): add a synthetic+K regime")
    if objects and not any(f != BASELINE for f in study.families) and "synthetic" in study.regimes:
        raise RecipeError("regime synthetic needs a family with defects (not only 'none')")
    if any(r != "synthetic" for r in study.regimes) and objects and study.data["format"] == "mvtec" \
            and "real_train" not in study.data:
        raise RecipeError(f"regimes {[r for r in study.regimes if r != 'synthetic']} need real training labels: "
                          "MVTec data has none outside its test split; set data.real_train or use regimes: "
                          "[synthetic]")
