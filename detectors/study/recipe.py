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
    test_sets:
      real: real                              # the data's real test split
      other: {path: ../labelled, format: coco, split: val}
      synthetic_perlin: {synthetic: {op: perlin}, images: 40}   # made on the held-out OK images
    seeds: [0, 1, 2]
    metrics: [map_50, image_auroc]
    image_size: 320
    mixing: {real_fraction: 0.5, schedule: mixed}   # how synthetic+K mixes its K real images (the defaults)
    budgets:                   # named overrides: top-level keys, and per detector its own keys
      cpu: {image_size: 256, seeds: [0], detectors: {fasterrcnn: {images_seen: 600}}}
      gpu: {image_size: 640}

Regimes: ``synthetic`` trains on the family's defects over the OK images only; ``synthetic+K`` adds ``K`` real
labelled training images (chosen by the seed); ``real`` trains on every real training image. The ``none``
family under ``synthetic+K`` is "K real images alone", and ``real`` is run for ``none`` only (it has no
synthetic part), so the real-only and K-real baselines are rows of the ``none`` family. ``mixing`` says how a
``synthetic+K`` cell mixes its ``K`` real images into the synthetic ones (:class:`~detectors.data.sources.MixedSource`:
``real_fraction`` of every batch, or ``schedule: finetune`` with ``replay_fraction`` and ``finetune_start``;
``real_fraction: null`` is the old proportional mix, every image once per epoch); only those cells record it.
Object detectors train for ``images_seen`` images (the fewest steps that show that many,
``ceil(images_seen / batch_size)`` when every batch is full, whatever the data's size) or for ``epochs``.

Object detectors (boxes) take every regime; anomaly detectors (the CutPaste detector) train on normal images
with the family as pretext, so they take ``synthetic`` only, and their ``none`` is the untrained network (the
density alone).

No test data in training: a family whose training data (a DefectBank its operators read from an MVTec or
aligned-pairs folder, an inpainting model folder's recorded training images, a transplant family's pairs)
holds files of a real test set it is scored on is refused when the recipe is loaded, naming the files
(:mod:`.overlap`), unless its spec says ``allow_overlap: true`` (``diffusion: {recipe: diffusion_bottle.yaml,
allow_overlap: true}``): then it runs and the report marks it (``†`` in ``table.md`` with a footnote, an
``overlap`` count in its ``results.jsonl`` rows). ``allow_overlap`` is not part of a cell's settings.

:func:`load_study` reads and checks a recipe (every error names the key and the allowed values, before any
data is read) and resolves one budget; :func:`expand` turns it into :class:`Cell` s.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import yaml

from ..registry import detector_class, list_detectors

TOP_KEYS = ("name", "description", "data", "families", "regimes", "detectors", "test_sets", "seeds", "metrics",
            "image_size", "synthetic", "mixing", "budgets")
DATA_KEYS = ("root", "format", "test_every", "holdout_ok", "ok", "real_train", "real_test", "defect_split")
DEFECT_SPLIT_KEYS = ("shots", "seed")
DATA_FORMATS = ("deeppcb", "mvtec", "folder")
DETECTOR_KEYS = ("kind", "settings", "images_seen", "epochs", "steps", "agnostic")
SYNTHETIC_KEYS = ("defects_per_image", "box_margin")
MIXING_KEYS = ("real_fraction", "schedule", "replay_fraction", "finetune_start")
FAMILY_KINDS = ("op", "recipe", "pretext", "transplant", "fit")
FIT_KEYS = ("transplant", "variety_prior")
FAMILY_FLAGS = ("allow_overlap",)
TRANSPLANT_KEYS = ("pairs", "groups", "blend", "match_brightness")
TEST_SET_KEYS = ("path", "format", "split", "synthetic", "images", "seed")
LABELLED_SET_KEYS = ("path", "format", "split")
METRICS = ("map_50", "map_50_95", "image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "aupro")
"""Metrics a study can report: box metrics from object detectors, map metrics from anomaly detectors (on test
sets with masks), image AUROC / AP from both."""
ANOMALY_KINDS = ("cutpaste",)
"""Detector kinds that train on normal images with a pretext (synthetic defects only, no boxes)."""
BASELINE = "none"
REGIME_K = "k"
REGIME = re.compile(r"^(synthetic|real|synthetic\+(\d+))$")
DEFAULT_SEEDS = [0]


class RecipeError(ValueError):
    """A study recipe that cannot run: the message names the key and what it allows."""


@dataclass(frozen=True)
class Cell:
    """One training run of a study: a family, a regime, a detector and a seed, with every setting resolved.

    ``settings`` is everything the run depends on (JSON-able); ``id`` is a hash of it, the name of the cell's
    folder, so a finished cell is recognised whatever order or shard runs it.
    """

    family: str
    regime: str
    detector: str
    seed: int
    settings: Dict[str, Any] = field(compare=False, hash=False)

    @property
    def id(self) -> str:
        return settings_hash(self.settings)

    @property
    def label(self) -> str:
        return f"{self.family} / {self.regime} / {self.detector} / seed {self.seed}"


def settings_hash(settings: Mapping[str, Any]) -> str:
    """12 hex digits of the SHA-256 of ``settings`` as canonical JSON (sorted keys)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Study:
    """A checked recipe resolved for one budget (see the module docstring)."""

    path: Optional[Path]          # the recipe file, None for a recipe given as a dict
    root: Path                    # the folder relative paths in the recipe are taken from
    budget: Optional[str]
    raw: Dict[str, Any]           # the recipe as written, with the budget's overrides merged in
    name: str
    data: Dict[str, Any]
    families: Dict[str, Any]
    regimes: List[str]
    detectors: Dict[str, Dict[str, Any]]
    test_sets: Dict[str, Any]
    seeds: List[int]
    metrics: List[str]
    image_size: int
    synthetic: Dict[str, Any]
    # how synthetic+K cells mix their K real images (detectors.data.sources.MixedSource's settings)
    mixing: Dict[str, Any] = field(default_factory=dict)
    # each family's spec as a cell records it: an operator recipe file's spec also holds a hash of the file's
    # text (read once, at load), so editing the file makes new cells
    family_records: Dict[str, Any] = field(default_factory=dict)
    # families whose spec says allow_overlap: true (not part of a cell's settings: it changes no training)
    allow_overlap: Dict[str, bool] = field(default_factory=dict)
    # {family: {test set: {"count", "files", "source"}}}: training files a family shares with a test set it is
    # scored on, allowed by allow_overlap (any other overlap is refused at load; see .overlap)
    overlaps: Dict[str, Dict[str, Dict[str, Any]]] = field(default_factory=dict)

    def resolve_path(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else (self.root / path)

    def is_anomaly(self, detector: str) -> bool:
        return self.detectors[detector]["kind"] in ANOMALY_KINDS

    def fingerprint(self) -> Dict[str, Any]:
        """What a finished study folder records of the study, to refuse a changed recipe under ``--resume``."""
        return {"budget": self.budget, **{k: v for k, v in self.raw.items() if k not in ("budgets", "description")}}


def load_study(recipe: Union[str, Path, Mapping[str, Any]], budget: Optional[str] = None,
               base: Optional[Union[str, Path]] = None) -> Study:
    """Read and check a study recipe (a YAML file or a dict) and resolve ``budget`` (a key of its ``budgets``).

    ``base`` is the folder relative paths are taken from when ``recipe`` is a dict (default: the current one).
    Raises :class:`RecipeError` naming the bad key.
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
    _check_keys(raw, TOP_KEYS, "the recipe")
    for required in ("data", "families", "detectors", "test_sets"):
        if required not in raw:
            raise RecipeError(f"the recipe needs a {required!r} section")
    raw = _apply_budget(raw, budget)
    name = str(raw.get("name") or (path.stem if path is not None else "study"))
    root = path.parent if path is not None else Path(base) if base is not None else Path.cwd()
    families, allow_overlap = _check_families(raw["families"])
    study = Study(path=path, root=root, budget=budget, raw=raw, name=name,
                  data=_check_data(raw["data"]), families=families,
                  regimes=_check_regimes(raw.get("regimes", ["synthetic"])),
                  detectors=_check_detectors(raw["detectors"]), test_sets=raw["test_sets"],
                  seeds=_check_seeds(raw.get("seeds", DEFAULT_SEEDS)), metrics=_check_metrics(raw.get("metrics")),
                  image_size=_check_positive(raw.get("image_size", 256), "image_size"),
                  synthetic=_check_synthetic(raw.get("synthetic", {})), mixing=_check_mixing(raw.get("mixing", {})))
    study.test_sets = _check_test_sets(raw["test_sets"], study)
    _check_combinations(study)
    study.family_records = {name: _family_record(study, spec) for name, spec in study.families.items()}
    study.allow_overlap = allow_overlap
    from .overlap import check_overlaps

    study.overlaps = check_overlaps(study)
    return study


def _family_record(study: Study, spec: Any) -> Any:
    if isinstance(spec, Mapping) and "recipe" in spec:  # the file exists: _check_paths said so
        text = study.resolve_path(spec["recipe"]).read_bytes()
        return dict(spec, recipe_sha256=hashlib.sha256(text).hexdigest()[:16])
    return spec


def _check_keys(section: Any, allowed, where: str) -> None:
    if not isinstance(section, Mapping):
        raise RecipeError(f"{where} must be a mapping with keys from: {', '.join(allowed)}; got {section!r}")
    unknown = [k for k in section if k not in allowed]
    if unknown:
        raise RecipeError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}")


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
    _check_keys(override, [k for k in TOP_KEYS if k not in ("budgets", "name")], f"budgets.{budget}")
    detectors = override.get("detectors", {})
    _check_keys(detectors, list(raw["detectors"]), f"budgets.{budget}.detectors")
    merged = _merge({k: v for k, v in raw.items() if k != "budgets"}, override)
    for section in ("families", "detectors"):  # set to null in a budget: left out at that budget (budgets merge,
        dropped = [name for name, spec in (override.get(section) or {}).items() if spec is None]  # never remove)
        if dropped:
            merged[section] = {k: v for k, v in merged[section].items() if k not in dropped}
    merged["budgets"] = budgets
    return merged


def _check_positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RecipeError(f"{what} must be a positive integer, got {value!r}")
    return value


def _check_data(data: Any) -> Dict[str, Any]:
    _check_keys(data, DATA_KEYS, "data")
    fmt = data.get("format", "folder")
    if fmt not in DATA_FORMATS:
        raise RecipeError(f"data.format must be one of {', '.join(DATA_FORMATS)}, got {fmt!r}")
    if fmt in ("deeppcb", "mvtec") and "root" not in data:
        raise RecipeError(f"data.format {fmt} needs data.root, the data set's folder")
    if fmt == "folder" and "ok" not in data:
        raise RecipeError("data.format folder needs data.ok, a folder of OK images")
    out = dict(data, format=fmt)
    out["test_every"] = _check_positive(data.get("test_every", 4), "data.test_every") if fmt == "deeppcb" else None
    holdout = data.get("holdout_ok", 0)
    if isinstance(holdout, bool) or not isinstance(holdout, int) or holdout < 0:
        raise RecipeError(f"data.holdout_ok must be a non-negative integer, got {holdout!r}")
    out["holdout_ok"] = holdout
    for key in ("real_train", "real_test"):
        if key in data:
            _check_keys(data[key], LABELLED_SET_KEYS, f"data.{key}")
            if "path" not in data[key]:
                raise RecipeError(f"data.{key} needs a path")
    if "defect_split" in data:
        out["defect_split"] = _check_defect_split(data["defect_split"], data)
    return out


def _check_defect_split(spec: Any, data: Mapping[str, Any]) -> Dict[str, Any]:
    from defectgen.io.mvtec import check_shots

    where = "data.defect_split"
    _check_keys(spec, DEFECT_SPLIT_KEYS, where)
    if data.get("format") != "mvtec":
        raise RecipeError(f"{where} splits the defective test images of an MVTec folder: it needs data.format mvtec")
    if "real_test" in data:
        raise RecipeError(f"{where} takes its training part out of data.root's test split, but data.real_test "
                          "replaces that test set: use one of them")
    if "shots" not in spec:
        raise RecipeError(f"{where} needs shots: the training part, a fraction of each defect type (0.33) or a "
                          "count per type (5)")
    try:
        shots = check_shots(spec["shots"], f"{where}.shots")
    except ValueError as error:
        raise RecipeError(str(error)) from None
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RecipeError(f"{where}.seed must be a non-negative integer, got {seed!r}")
    return {"shots": shots, "seed": seed}


def _check_families(families: Any) -> Tuple[Dict[str, Any], Dict[str, bool]]:
    if not isinstance(families, Mapping) or not families:
        raise RecipeError("families must map family names to operator specs, e.g. {none: none, cutpaste: "
                          "{op: cutpaste}}")
    out: Dict[str, Any] = {}
    allow: Dict[str, bool] = {}
    for name, spec in families.items():
        where = f"families.{name}"
        if isinstance(spec, Mapping) and "allow_overlap" in spec:
            flag = spec["allow_overlap"]
            if not isinstance(flag, bool):
                raise RecipeError(f"{where}.allow_overlap must be true or false, got {flag!r}")
            if flag:
                allow[name] = True
            spec = {k: v for k, v in spec.items() if k not in FAMILY_FLAGS}
        if spec == BASELINE or spec is None:
            if name != BASELINE:
                raise RecipeError(f"{where}: only the family named {BASELINE!r} may be empty (the baseline)")
            out[name] = BASELINE
            continue
        if name == BASELINE:
            raise RecipeError(f"{where} is the no-synthetic-defects baseline: write '{BASELINE}: {BASELINE}'")
        if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in FAMILY_KINDS:
            raise RecipeError(f"{where} must be one of {{op: name or config}}, {{recipe: file}}, {{pretext: "
                              f"name}}, {{transplant: {{pairs: K}}}}, {{fit: {{}}}} (plus allow_overlap: true, "
                              f"optionally); got {spec!r}")
        kind, value = next(iter(spec.items()))
        if kind == "op":
            _check_op(value, where)
        elif kind == "pretext":
            from ..cutpaste.pretext import NAMED

            if value not in NAMED:
                raise RecipeError(f"{where}.pretext must be one of {', '.join(NAMED)}, got {value!r}")
        elif kind == "recipe" and not isinstance(value, str):
            raise RecipeError(f"{where}.recipe must be a file name, got {value!r}")
        elif kind == "fit":
            _check_keys(value if value is not None else {}, FIT_KEYS, f"{where}.fit")
            value = dict(value or {})
            if not isinstance(value.get("transplant", True), bool):
                raise RecipeError(f"{where}.fit.transplant must be true or false, got {value['transplant']!r}")
            prior = value.get("variety_prior", 10.0)
            if isinstance(prior, bool) or not isinstance(prior, (int, float)) or prior < 0:
                raise RecipeError(f"{where}.fit.variety_prior must be a number >= 0, got {prior!r}")
        elif kind == "transplant":
            _check_keys(value, TRANSPLANT_KEYS, f"{where}.transplant")
            if value.get("pairs") != REGIME_K:
                try:
                    _check_positive(value.get("pairs"), f"{where}.transplant.pairs")
                except RecipeError as error:
                    raise RecipeError(f"{error} (or '{REGIME_K}': the regime's K real images)") from None
        out[name] = {kind: value}
    return out, allow


def _check_op(value: Any, where: str) -> None:
    from defectgen.registry import resolve_op

    items = value if isinstance(value, list) else [value]
    if not items:
        raise RecipeError(f"{where}.op is an empty list")
    for item in items:
        try:
            resolve_op(item, "family")
        except (ValueError, TypeError) as error:
            raise RecipeError(f"{where}.op: {error}") from None


def _check_regimes(regimes: Any) -> List[str]:
    if isinstance(regimes, str):
        regimes = [regimes]
    if not isinstance(regimes, list) or not regimes:
        raise RecipeError("regimes must be a list of: synthetic, synthetic+K (K real images), real")
    for regime in regimes:
        if not isinstance(regime, str) or not REGIME.match(regime) or regime == "synthetic+0":
            raise RecipeError(f"unknown regime {regime!r}; allowed: synthetic, synthetic+K (K >= 1 real images), "
                              "real")
    if len(set(regimes)) != len(regimes):
        raise RecipeError(f"regimes lists a regime twice: {regimes}")
    return list(regimes)


def real_count(regime: str) -> Optional[int]:
    """The number of real training images of ``regime``: ``K`` for ``synthetic+K``, None for ``real`` (all),
    0 for ``synthetic``."""
    match = REGIME.match(regime)
    if match is None:
        raise ValueError(f"unknown regime {regime!r}")
    if match.group(2):
        return int(match.group(2))
    return None if regime == "real" else 0


def _check_detectors(detectors: Any) -> Dict[str, Dict[str, Any]]:
    if not isinstance(detectors, Mapping) or not detectors:
        raise RecipeError(f"detectors must map names to {{kind: one of {', '.join(list_detectors())}, settings: "
                          "{...}}")
    out = {}
    for name, spec in detectors.items():
        where = f"detectors.{name}"
        _check_keys(spec, DETECTOR_KEYS, where)
        kind = spec.get("kind", name)
        try:
            detector_class(kind)
        except ValueError as error:
            raise RecipeError(f"{where}.kind: {error}") from None
        settings = spec.get("settings", {}) or {}
        if not isinstance(settings, Mapping):
            raise RecipeError(f"{where}.settings must be a mapping of the detector's constructor arguments")
        for banned in ("image_size", "seed", "class_names", "num_classes", "pretext"):
            if banned in settings:
                raise RecipeError(f"{where}.settings.{banned} is set by the study (image_size, seeds, families), "
                                  "not per detector")
        resolved = {"kind": kind, "settings": dict(settings)}
        if kind in ANOMALY_KINDS:
            resolved["steps"] = _check_count(spec.get("steps", 100), f"{where}.steps")
            for key in ("images_seen", "epochs", "agnostic"):
                if key in spec:
                    raise RecipeError(f"{where}.{key}: an anomaly detector trains for steps, with no boxes")
        else:
            if "steps" in spec:
                raise RecipeError(f"{where}.steps: object detectors train for images_seen (or epochs)")
            if ("images_seen" in spec) == ("epochs" in spec):
                raise RecipeError(f"{where} needs images_seen (training images per run, whatever the data's "
                                  "size) or epochs, one of them")
            key = "images_seen" if "images_seen" in spec else "epochs"
            resolved[key] = _check_positive(spec[key], f"{where}.{key}")
            resolved["agnostic"] = bool(spec.get("agnostic", True))
        out[name] = resolved
    return out


def _check_count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RecipeError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def _check_seeds(seeds: Any) -> List[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise RecipeError(f"seeds must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise RecipeError(f"seeds lists a seed twice: {seeds}")
    return list(seeds)


def _check_metrics(metrics: Any) -> List[str]:
    if metrics is None:
        return ["map_50", "image_auroc"]
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, list) or not metrics:
        raise RecipeError(f"metrics must be a list of: {', '.join(METRICS)}")
    for metric in metrics:
        if metric not in METRICS:
            raise RecipeError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
    return list(metrics)


def _check_synthetic(synthetic: Any) -> Dict[str, Any]:
    _check_keys(synthetic, SYNTHETIC_KEYS, "synthetic")
    out = {"defects_per_image": _check_positive(synthetic.get("defects_per_image", 1), "synthetic.defects_per_image")}
    margin = synthetic.get("box_margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 0.5:
        raise RecipeError(f"synthetic.box_margin is a fraction of the image side in [0, 0.5), got {margin!r}")
    out["box_margin"] = float(margin)
    return out


def _check_mixing(mixing: Any) -> Dict[str, Any]:
    """``mixing`` resolved over the library defaults (:mod:`detectors.data.sources`), checked."""
    from ..data.sources import (DEFAULT_FINETUNE_START, DEFAULT_REAL_FRACTION, DEFAULT_REPLAY_FRACTION,
                                DEFAULT_SCHEDULE, check_mixing)

    _check_keys(mixing if mixing is not None else {}, MIXING_KEYS, "mixing")
    given = dict(mixing or {})
    resolved = {"real_fraction": given.get("real_fraction", DEFAULT_REAL_FRACTION),
                "schedule": given.get("schedule", DEFAULT_SCHEDULE),
                "replay_fraction": given.get("replay_fraction", DEFAULT_REPLAY_FRACTION),
                "finetune_start": given.get("finetune_start", DEFAULT_FINETUNE_START)}
    try:
        return check_mixing(**resolved)
    except (TypeError, ValueError) as error:
        raise RecipeError(f"mixing.{error}") from None


def _check_test_sets(test_sets: Any, study: Study) -> Dict[str, Any]:
    if not isinstance(test_sets, Mapping) or not test_sets:
        raise RecipeError("test_sets must map names to: real, {path: ..., format: ...}, or {synthetic: family or "
                          "op, images: N}")
    out: Dict[str, Any] = {}
    for name, spec in test_sets.items():
        where = f"test_sets.{name}"
        if spec == "real":
            out[name] = {"real": True}
            continue
        _check_keys(spec, TEST_SET_KEYS, where)
        if ("path" in spec) == ("synthetic" in spec):
            raise RecipeError(f"{where} needs either path (a real labelled set) or synthetic (a family name or "
                              "operator spec made on the held-out OK images)")
        if "path" in spec:
            out[name] = {k: spec[k] for k in LABELLED_SET_KEYS if k in spec}
            continue
        made_by = spec["synthetic"]
        if isinstance(made_by, str) and made_by in study.families:
            made_by = study.families[made_by]
            if made_by == BASELINE:
                raise RecipeError(f"{where}.synthetic: the {BASELINE!r} family makes no defects")
        elif isinstance(made_by, Mapping) and len(made_by) == 1 and next(iter(made_by)) in ("op", "recipe"):
            if "op" in made_by:
                _check_op(made_by["op"], f"{where}.synthetic")
        else:
            raise RecipeError(f"{where}.synthetic must name a family ({', '.join(study.families)}) or be "
                              f"{{op: ...}} / {{recipe: file}}; got {made_by!r}")
        if "transplant" in made_by:
            raise RecipeError(f"{where}.synthetic: a transplant family uses real training defects; make synthetic "
                              "test sets with an op, recipe or pretext family")
        images = _check_positive(spec.get("images", study.data["holdout_ok"] or 1), f"{where}.images")
        if study.data["holdout_ok"] < 1:
            raise RecipeError(f"{where} is made on held-out OK images: set data.holdout_ok (how many OK images to "
                              "keep out of training)")
        if images > study.data["holdout_ok"]:
            raise RecipeError(f"{where}.images is {images} but data.holdout_ok is {study.data['holdout_ok']}")
        out[name] = {"synthetic": made_by, "images": images, "seed": int(spec.get("seed", 0))}
    return out


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
                raise RecipeError(f"families.{name} learns from the regime's K real images ({_k_reason(spec)}) but "
                                  f"no regime has any (regimes {study.regimes}): add a synthetic+K regime")
    if objects and not any(f != BASELINE for f in study.families) and "synthetic" in study.regimes:
        raise RecipeError("regime synthetic needs a family with defects (not only 'none')")
    if any(r != "synthetic" for r in study.regimes) and objects and study.data["format"] == "mvtec" \
            and "real_train" not in study.data:
        raise RecipeError(f"regimes {[r for r in study.regimes if r != 'synthetic']} need real training labels: "
                          "MVTec data has none outside its test split; set data.real_train or use regimes: "
                          "[synthetic]")


def expand(study: Study) -> List[Cell]:
    """Every cell of the study, in a fixed order: seed, detector, regime, family.

    Skipped combinations (see the module docstring): ``real`` for any family but ``none``; ``none`` under
    ``synthetic`` for object detectors (nothing to learn boxes from); anything but ``synthetic`` for anomaly
    detectors.
    """
    cells = []
    for seed in study.seeds:
        for detector in study.detectors:
            for regime in study.regimes:
                for family in study.families:
                    if not applies(study, family, regime, detector):
                        continue
                    cells.append(Cell(family, regime, detector, seed, cell_settings(study, family, regime, detector,
                                                                                   seed)))
    return cells


def needs_real_k(spec: Any) -> bool:
    """Whether a family learns its defects from the cell's own K real images (a ``fit`` family, or a transplant
    of ``pairs: k``): it has no cell in a regime without K real images."""
    return isinstance(spec, Mapping) and ("fit" in spec or (
        "transplant" in spec and (spec["transplant"] or {}).get("pairs") == REGIME_K))


def _k_reason(spec: Mapping[str, Any]) -> str:
    return "fit" if "fit" in spec else f"transplant pairs: {REGIME_K}"


def applies(study: Study, family: str, regime: str, detector: str) -> bool:
    """Whether ``(family, regime, detector)`` is a cell of the study (see :func:`expand`)."""
    if study.is_anomaly(detector):
        return regime == "synthetic" and not needs_real_k(study.families[family])
    if regime == "real":
        return family == BASELINE
    if regime == "synthetic" and needs_real_k(study.families[family]):
        return False  # it learns from the K real images, and there are none
    return not (regime == "synthetic" and family == BASELINE)


def cell_settings(study: Study, family: str, regime: str, detector: str, seed: int) -> Dict[str, Any]:
    """Everything a cell's training depends on, as plain data (its hash is the cell id). Test sets are not part
    of it: a cell is trained once and evaluated on all of them."""
    data = {k: v for k, v in study.data.items() if v is not None}
    spec = study.detectors[detector]
    settings = {"data": data, "family": {"name": family, "spec": study.family_records[family]}, "regime": regime,
                "detector": {"name": detector, **spec}, "image_size": study.image_size, "seed": seed}
    if family != BASELINE and not study.is_anomaly(detector):
        settings["synthetic"] = dict(study.synthetic)
        if real_count(regime):  # synthetic+K: how its K real images are mixed in (other cells keep their hash)
            settings["mixing"] = dict(study.mixing)
    return settings


def flatten(value: Any, prefix: str = "") -> Dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values), for naming the keys two recipes differ in."""
    if isinstance(value, Mapping) and value:
        out: Dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def differing_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> List[str]:
    """The flattened keys whose values differ between two fingerprints (added and removed keys included)."""
    a, b = flatten(json.loads(json.dumps(old, default=str))), flatten(json.loads(json.dumps(new, default=str)))
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def parse_shard(text: str) -> Tuple[int, int]:
    """``"k/N"`` (``0 <= k < N``) -> ``(k, N)``: this process runs the cells whose index ``% N == k``."""
    try:
        k, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise RecipeError(f"--shard takes k/N with 0 <= k < N (e.g. 3/8), got {text!r}") from None
    if n < 1 or not 0 <= k < n:
        raise RecipeError(f"--shard takes k/N with 0 <= k < N, got {text!r}")
    return k, n
