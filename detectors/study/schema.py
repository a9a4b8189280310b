"""What a study recipe may say: its keys, section by section, and the check of each section.

Every check raises :class:`RecipeError` naming the key and what it allows, before any data is read. The recipe
itself (what each key means) is described in :mod:`.recipe`, which reads a recipe file and resolves a budget;
:data:`SECTIONS` lists the top-level sections with their checkers in the order they are checked.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ..registry import ANOMALY, detector_class, list_detectors

TOP_KEYS = ("name", "description", "data", "families", "regimes", "detectors", "test_sets", "seeds", "metrics",
            "image_size", "synthetic", "mixing", "resources", "budgets")
REQUIRED = ("data", "families", "detectors", "test_sets")
"""The sections every recipe has."""
DATA_KEYS = ("root", "format", "test_every", "holdout_ok", "ok", "real_train", "real_test", "defect_split")
DEFECT_SPLIT_KEYS = ("shots", "seed")
DATA_FORMATS = ("deeppcb", "mvtec", "folder")
DETECTOR_KEYS = ("kind", "settings", "images_seen", "epochs", "steps", "agnostic", "backbone_weights", "families",
                 "resources")
PLACEMENT_KEYS = ("families", "resources")
"""Detector keys that choose which cells exist and where they run, not how one trains: not part of a cell's
settings (its id)."""
SYNTHETIC_KEYS = ("defects_per_image", "box_margin")
MIXING_KEYS = ("real_fraction", "schedule", "replay_fraction", "finetune_start")
FAMILY_KINDS = ("op", "recipe", "pretext", "transplant", "fit")
FIT_KEYS = ("transplant", "variety_prior")
FAMILY_FLAGS = ("allow_overlap",)
TRANSPLANT_KEYS = ("pairs", "groups", "blend", "match_brightness")
TEST_SET_KEYS = ("path", "format", "split", "synthetic", "images", "seed")
LABELLED_SET_KEYS = ("path", "format", "split")
PIXEL_METRICS = ("pixel_auroc", "pixel_ap", "aupro")
"""Metrics computed from anomaly maps."""
METRICS = ("map_50", "map_50_95", "image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "aupro")
"""Metrics a study can report: box metrics from object detectors, map metrics from anomaly detectors (on test
sets with masks), image AUROC / AP from both."""
BASELINE = "none"
REGIME_K = "k"
REGIME = re.compile(r"^(synthetic|real|synthetic\+(\d+))$")
DEFAULT_SEEDS = [0]


class RecipeError(ValueError):
    """A study recipe that cannot run: the message names the key and what it allows."""


def real_count(regime: str) -> Optional[int]:
    """The number of real training images of ``regime``: ``K`` for ``synthetic+K``, None for ``real`` (all),
    0 for ``synthetic``."""
    match = REGIME.match(regime)
    if match is None:
        raise ValueError(f"unknown regime {regime!r}")
    if match.group(2):
        return int(match.group(2))
    return None if regime == "real" else 0


def needs_real_k(spec: Any) -> bool:
    """Whether a family learns its defects from the cell's own K real images (a ``fit`` family, or a transplant
    of ``pairs: k``): it has no cell in a regime without K real images."""
    return isinstance(spec, Mapping) and ("fit" in spec or (
        "transplant" in spec and (spec["transplant"] or {}).get("pairs") == REGIME_K))


def k_reason(spec: Mapping[str, Any]) -> str:
    """Why a family needs the regime's K real images, as a refusal says it."""
    return "fit" if "fit" in spec else f"transplant pairs: {REGIME_K}"


# -- checks shared by the sections ----------------------------------------------------------------------------
def check_keys(section: Any, allowed, where: str) -> None:
    if not isinstance(section, Mapping):
        raise RecipeError(f"{where} must be a mapping with keys from: {', '.join(allowed)}; got {section!r}")
    unknown = [k for k in section if k not in allowed]
    if unknown:
        raise RecipeError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}")


def check_positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RecipeError(f"{what} must be a positive integer, got {value!r}")
    return value


def check_count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RecipeError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def check_flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise RecipeError(f"{what} must be true or false, got {value!r}")
    return value


# -- the sections -----------------------------------------------------------------------------------------------
def check_data(data: Any) -> Dict[str, Any]:
    check_keys(data, DATA_KEYS, "data")
    fmt = data.get("format", "folder")
    if fmt not in DATA_FORMATS:
        raise RecipeError(f"data.format must be one of {', '.join(DATA_FORMATS)}, got {fmt!r}")
    if fmt in ("deeppcb", "mvtec") and "root" not in data:
        raise RecipeError(f"data.format {fmt} needs data.root, the data set's folder")
    if fmt == "folder" and "ok" not in data:
        raise RecipeError("data.format folder needs data.ok, a folder of OK images")
    out = dict(data, format=fmt)
    out["test_every"] = check_positive(data.get("test_every", 4), "data.test_every") if fmt == "deeppcb" else None
    out["holdout_ok"] = check_count(data.get("holdout_ok", 0), "data.holdout_ok")
    for key in ("real_train", "real_test"):
        if key in data:
            check_keys(data[key], LABELLED_SET_KEYS, f"data.{key}")
            if "path" not in data[key]:
                raise RecipeError(f"data.{key} needs a path")
    if "defect_split" in data:
        out["defect_split"] = _check_defect_split(data["defect_split"], data)
    return out


def _check_defect_split(spec: Any, data: Mapping[str, Any]) -> Dict[str, Any]:
    from defectgen.io.mvtec import check_shots

    where = "data.defect_split"
    check_keys(spec, DEFECT_SPLIT_KEYS, where)
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
    seed = check_count(spec.get("seed", 0), f"{where}.seed")
    return {"shots": shots, "seed": seed}


def check_families(families: Any) -> Tuple[Dict[str, Any], Dict[str, bool]]:
    """``(families, allow_overlap)``: each family's spec without its flags, and the families allowed to overlap."""
    if not isinstance(families, Mapping) or not families:
        raise RecipeError("families must map family names to operator specs, e.g. {none: none, cutpaste: "
                          "{op: cutpaste}}")
    out: Dict[str, Any] = {}
    allow: Dict[str, bool] = {}
    for name, spec in families.items():
        where = f"families.{name}"
        if isinstance(spec, Mapping) and "allow_overlap" in spec:
            if check_flag(spec["allow_overlap"], f"{where}.allow_overlap"):
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
            check_keys(value if value is not None else {}, FIT_KEYS, f"{where}.fit")
            value = dict(value or {})
            check_flag(value.get("transplant", True), f"{where}.fit.transplant")
            prior = value.get("variety_prior", 10.0)
            if isinstance(prior, bool) or not isinstance(prior, (int, float)) or prior < 0:
                raise RecipeError(f"{where}.fit.variety_prior must be a number >= 0, got {prior!r}")
        elif kind == "transplant":
            check_keys(value, TRANSPLANT_KEYS, f"{where}.transplant")
            if value.get("pairs") != REGIME_K:
                try:
                    check_positive(value.get("pairs"), f"{where}.transplant.pairs")
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


def check_regimes(regimes: Any) -> List[str]:
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


def check_detectors(detectors: Any) -> Dict[str, Dict[str, Any]]:
    if not isinstance(detectors, Mapping) or not detectors:
        raise RecipeError(f"detectors must map names to {{kind: one of {', '.join(list_detectors())}, settings: "
                          "{...}}")
    out = {}
    for name, spec in detectors.items():
        where = f"detectors.{name}"
        if not isinstance(spec, Mapping):
            check_keys(spec, DETECTOR_KEYS, where)  # raises: a detector entry is a mapping
        kind = spec.get("kind", name)
        try:
            cls = detector_class(kind)
        except ValueError as error:
            raise RecipeError(f"{where}.kind: {error}") from None
        own_keys = tuple(getattr(cls, "STUDY_KEYS", ()))  # keys a kind adds (e.g. anomalib's model)
        check_keys(spec, DETECTOR_KEYS + own_keys, where)
        settings = spec.get("settings", {}) or {}
        if not isinstance(settings, Mapping):
            raise RecipeError(f"{where}.settings must be a mapping of the detector's constructor arguments")
        for banned in ("image_size", "seed", "class_names", "num_classes", "pretext"):
            if banned in settings:
                raise RecipeError(f"{where}.settings.{banned} is set by the study (image_size, seeds, families), "
                                  "not per detector")
        resolved = {"kind": kind, "settings": dict(settings)}
        if own_keys:
            clash = [key for key in own_keys if key in settings]
            if clash:
                raise RecipeError(f"{where}.settings.{clash[0]}: write it as {where}.{clash[0]}")
            try:
                resolved.update(cls.check_study_keys({k: spec[k] for k in own_keys if k in spec}))
            except (ValueError, TypeError) as error:
                raise RecipeError(f"{where}.{error}") from None
        if "families" in spec:  # the families it is crossed with (checked against the families section later)
            resolved["families"] = _check_name_list(spec["families"], f"{where}.families")
        if "resources" in spec:  # what each of its cells asks an executor for (checked like the study's)
            resolved["resources"] = check_resources(spec["resources"], f"{where}.resources")
        if "backbone_weights" in spec:
            resolved["backbone_weights"] = _check_backbone_weights(spec["backbone_weights"], cls, settings, where)
        if cls.TASK == ANOMALY:  # trains on normal images, its family as pretext: synthetic defects only, no boxes
            resolved["steps"] = check_count(spec.get("steps", 100), f"{where}.steps")
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
            resolved[key] = check_positive(spec[key], f"{where}.{key}")
            resolved["agnostic"] = bool(spec.get("agnostic", True))
        out[name] = resolved
    return out


def _check_name_list(value: Any, where: str) -> List[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise RecipeError(f"{where} must be a non-empty list of family names, got {value!r}")
    if len(set(value)) != len(value):
        raise RecipeError(f"{where} lists a family twice: {value}")
    return list(value)


def check_detector_families(detectors: Mapping[str, Dict[str, Any]], families: Mapping[str, Any]) -> None:
    """Each detector's ``families`` (the families it is crossed with; all when absent) names families of the
    study. Not part of a cell's settings: it chooses which cells exist, not how one trains."""
    for name, spec in detectors.items():
        unknown = [f for f in spec.get("families", ()) if f not in families]
        if unknown:
            raise RecipeError(f"detectors.{name}.families: unknown family {unknown[0]!r}; the study's families: "
                              f"{', '.join(families)}")


def _check_backbone_weights(value: Any, cls: type, settings: Mapping[str, Any], where: str) -> str:
    """``detectors.X.backbone_weights``: a file name (relative to the recipe's folder), for a detector that starts
    from a backbone file (its class's ``BACKBONE_ARGUMENT``), not also set in its settings."""
    argument = getattr(cls, "BACKBONE_ARGUMENT", None)
    if argument is None:
        raise RecipeError(f"{where}.backbone_weights: the {cls.kind} detector does not start from a backbone file")
    if isinstance(value, str) and value in getattr(cls, "BACKBONE_KEYWORDS", ()):
        return value  # e.g. anomalib's "random": an explicit choice, not a file
    if not isinstance(value, str) or not value:
        raise RecipeError(f"{where}.backbone_weights must be a file name (a backbone.pt, relative to the recipe's "
                          f"folder), got {value!r}")
    if argument in settings:
        raise RecipeError(f"{where}: backbone_weights and settings.{argument} both name the starting weights; keep "
                          "backbone_weights")
    return value


def backbone_records(detectors: Mapping[str, Dict[str, Any]], resolve: Callable[[str], Any]) -> None:
    """Check that each detector's ``backbone_weights`` file exists (``resolve``: a recipe path to a ``Path``) and
    add ``backbone_sha256``, a hash of the file's content, to its spec: part of its cells' settings, so a changed
    file makes new cells (as an operator recipe file does)."""
    from ..backbone_file import file_digest

    for name, spec in detectors.items():
        if "backbone_weights" in spec and not _keyword(spec):
            path = resolve(spec["backbone_weights"])
            if not path.is_file():
                raise RecipeError(f"detectors.{name}.backbone_weights: {str(path)!r} does not exist")
            spec["backbone_sha256"] = file_digest(path)


def backbone_argument(kind: str, spec: Mapping[str, Any], resolve: Callable[[str], Any]) -> Dict[str, str]:
    """The constructor argument a detector spec's ``backbone_weights`` becomes (the resolved path), or ``{}``."""
    if "backbone_weights" not in spec:
        return {}
    value = spec["backbone_weights"] if _keyword(spec) else str(resolve(spec["backbone_weights"]))
    return {detector_class(kind).BACKBONE_ARGUMENT: value}


def _keyword(spec: Mapping[str, Any]) -> bool:
    """Whether a detector spec's ``backbone_weights`` is a keyword of its kind (``random``), not a file."""
    return spec["backbone_weights"] in getattr(detector_class(spec["kind"]), "BACKBONE_KEYWORDS", ())


def study_arguments(kind: str, spec: Mapping[str, Any]) -> Dict[str, Any]:
    """The constructor arguments a detector spec gives through its kind's own keys (``STUDY_KEYS``)."""
    return {key: spec[key] for key in getattr(detector_class(kind), "STUDY_KEYS", ()) if key in spec}


def check_maps(detectors: Mapping[str, Dict[str, Any]], metrics: List[str]) -> None:
    """Refuse pixel metrics for a detector whose kind says it makes no anomaly maps with its settings."""
    pixel = [m for m in metrics if m in PIXEL_METRICS]
    for name, spec in detectors.items():
        cls = detector_class(spec["kind"])
        makes_maps = getattr(cls, "makes_maps", None)
        if pixel and makes_maps is not None and not makes_maps({**spec["settings"], **study_arguments(
                spec["kind"], spec)}):
            what = " ".join(str(part) for part in (spec["kind"], spec.get("model")) if part)
            raise RecipeError(f"detectors.{name} ({what}) makes no anomaly maps, so it cannot report metrics "
                              f"{', '.join(pixel)}; remove them from metrics or pick a model with maps")


def check_seeds(seeds: Any) -> List[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise RecipeError(f"seeds must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise RecipeError(f"seeds lists a seed twice: {seeds}")
    return list(seeds)


def check_metrics(metrics: Any) -> List[str]:
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


def check_image_size(value: Any) -> int:
    return check_positive(value, "image_size")


def check_synthetic(synthetic: Any) -> Dict[str, Any]:
    check_keys(synthetic, SYNTHETIC_KEYS, "synthetic")
    out = {"defects_per_image": check_positive(synthetic.get("defects_per_image", 1), "synthetic.defects_per_image")}
    margin = synthetic.get("box_margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 0.5:
        raise RecipeError(f"synthetic.box_margin is a fraction of the image side in [0, 0.5), got {margin!r}")
    out["box_margin"] = float(margin)
    return out


def check_mixing(mixing: Any) -> Dict[str, Any]:
    """``mixing`` resolved over the library defaults (:mod:`detectors.data.sources`), checked."""
    from ..data.sources import (DEFAULT_FINETUNE_START, DEFAULT_REAL_FRACTION, DEFAULT_REPLAY_FRACTION,
                                DEFAULT_SCHEDULE, check_mixing)

    check_keys(mixing if mixing is not None else {}, MIXING_KEYS, "mixing")
    given = dict(mixing or {})
    resolved = {"real_fraction": given.get("real_fraction", DEFAULT_REAL_FRACTION),
                "schedule": given.get("schedule", DEFAULT_SCHEDULE),
                "replay_fraction": given.get("replay_fraction", DEFAULT_REPLAY_FRACTION),
                "finetune_start": given.get("finetune_start", DEFAULT_FINETUNE_START)}
    try:
        return check_mixing(**resolved)
    except (TypeError, ValueError) as error:
        raise RecipeError(f"mixing.{error}") from None


def check_resources(resources: Any, where: str = "resources") -> Dict[str, Any]:
    """What a cell asks an executor for (``--executor ray`` / ``slurm``): ``cpus``, ``gpus`` (fractions share on
    Ray), ``minutes`` and ``partition`` (SLURM); study-wide, per budget or per detector. Not part of a cell's
    settings: where a cell runs changes nothing it computes."""
    from defectgen.executors.base import RESOURCE_KEYS, ExecutorError, Resources

    check_keys(resources if resources is not None else {}, RESOURCE_KEYS, where)
    given = dict(resources or {})
    try:
        Resources().updated(given)
    except ExecutorError as error:
        raise RecipeError(f"{where}.{error}") from None
    return given


SECTIONS: Tuple[Tuple[str, Callable[[Any], Any], Any], ...] = (
    ("families", check_families, None),
    ("data", check_data, None),
    ("regimes", check_regimes, ["synthetic"]),
    ("detectors", check_detectors, None),
    ("seeds", check_seeds, DEFAULT_SEEDS),
    ("metrics", check_metrics, None),
    ("image_size", check_image_size, 256),
    ("synthetic", check_synthetic, {}),
    ("mixing", check_mixing, {}),
    ("resources", check_resources, {}),
)
"""The sections checked on their own, in this order: ``(key, checker, value when the recipe leaves it out)``
(:data:`REQUIRED` sections are never left out). ``test_sets`` comes after them: :func:`check_test_sets` reads
the families and the data."""


def check_sections(raw: Mapping[str, Any]) -> Dict[str, Any]:
    """Every section of :data:`SECTIONS`, checked and resolved."""
    return {key: check(raw.get(key, default)) for key, check, default in SECTIONS}


def check_test_sets(test_sets: Any, families: Mapping[str, Any], data: Mapping[str, Any]) -> Dict[str, Any]:
    """The test sets, given the checked ``families`` (a synthetic test set may name one) and ``data`` (synthetic
    test sets are made on its held-out OK images)."""
    if not isinstance(test_sets, Mapping) or not test_sets:
        raise RecipeError("test_sets must map names to: real, {path: ..., format: ...}, or {synthetic: family or "
                          "op, images: N}")
    out: Dict[str, Any] = {}
    for name, spec in test_sets.items():
        where = f"test_sets.{name}"
        if spec == "real":
            out[name] = {"real": True}
            continue
        check_keys(spec, TEST_SET_KEYS, where)
        if ("path" in spec) == ("synthetic" in spec):
            raise RecipeError(f"{where} needs either path (a real labelled set) or synthetic (a family name or "
                              "operator spec made on the held-out OK images)")
        if "path" in spec:
            out[name] = {k: spec[k] for k in LABELLED_SET_KEYS if k in spec}
            continue
        made_by = spec["synthetic"]
        if isinstance(made_by, str) and made_by in families:
            made_by = families[made_by]
            if made_by == BASELINE:
                raise RecipeError(f"{where}.synthetic: the {BASELINE!r} family makes no defects")
        elif isinstance(made_by, Mapping) and len(made_by) == 1 and next(iter(made_by)) in ("op", "recipe"):
            if "op" in made_by:
                _check_op(made_by["op"], f"{where}.synthetic")
        else:
            raise RecipeError(f"{where}.synthetic must name a family ({', '.join(families)}) or be "
                              f"{{op: ...}} / {{recipe: file}}; got {made_by!r}")
        if "transplant" in made_by:
            raise RecipeError(f"{where}.synthetic: a transplant family uses real training defects; make synthetic "
                              "test sets with an op, recipe or pretext family")
        images = check_positive(spec.get("images", data["holdout_ok"] or 1), f"{where}.images")
        if data["holdout_ok"] < 1:
            raise RecipeError(f"{where} is made on held-out OK images: set data.holdout_ok (how many OK images to "
                              "keep out of training)")
        if images > data["holdout_ok"]:
            raise RecipeError(f"{where}.images is {images} but data.holdout_ok is {data['holdout_ok']}")
        out[name] = {"synthetic": made_by, "images": images, "seed": int(spec.get("seed", 0))}
    return out
