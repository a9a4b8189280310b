"""One cell of a study: build its training data and detector, train once, evaluate on every test set.

A cell is a pure function of its resolved settings (:func:`~detectors.study.recipe.cell_settings`) and the
study's data: the same settings give the same training batches and the same model, so a cell that finished
is never run again and a killed one is simply run again from the start.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

from .data import StudyData, family_op, fitted_recipe
from .plan import Cell, Study
from .schema import BASELINE, REGIME_K, backbone_argument, real_count, study_arguments


def family_spec(study: Study, cell: Cell) -> Any:
    """``cell``'s family spec with a transplant's ``pairs: k`` made the regime's ``K``: the transplanted defects
    then come from the cell's own real images (``choose_real(real_train, K, seed)``, the rule both use)."""
    spec = study.families[cell.family]
    if isinstance(spec, Mapping) and "fit" in spec:  # fitted to the cell's own K real images
        return {"fit": dict(spec["fit"], k=real_count(cell.regime))}
    if isinstance(spec, Mapping) and "transplant" in spec and spec["transplant"].get("pairs") == REGIME_K:
        k = real_count(cell.regime)
        if not k:  # load_study refuses this; a hand-made Cell could still ask
            raise ValueError(f"family {cell.family!r} transplants the regime's K real images (pairs: k), but regime "
                             f"{cell.regime!r} has no K")
        return {"transplant": dict(spec["transplant"], pairs=k)}
    return spec


def training_source(study: Study, data: StudyData, cell: Cell, device: str):
    """The object detector's training source of ``cell``: synthetic, synthetic + K real (mixed as the study's
    ``mixing`` says), or real only ("K real alone" or "all real" for the ``none`` family), made as
    ``defectgen train`` makes its own (:func:`~detectors.data.training_data.compose_source`)."""
    from defectgen.io.labelled import choose_real

    from ..data.sources import SyntheticSource
    from ..data.training_data import compose_source

    agnostic = study.detectors[cell.detector]["agnostic"]
    k = real_count(cell.regime)
    synthetic = None
    if cell.family != BASELINE:
        spec = family_spec(study, cell)
        if isinstance(spec, Mapping) and "fit" in spec:  # a fitted recipe paints the count per image it measured
            op, defects_per_image, _ = fitted_recipe(study, spec["fit"], cell.seed)
        else:
            op, defects_per_image = family_op(study, spec, data, cell.seed), study.synthetic["defects_per_image"]
        synthetic = SyntheticSource(data.ok_train, op=op,
                                    image_size=study.image_size, device=device, seed=cell.seed, agnostic=agnostic,
                                    defects_per_image=defects_per_image,
                                    box_margin_px=study.synthetic["box_margin"] * study.image_size)
    real = None
    if cell.family == BASELINE or k:  # the regime's K real images, or all of them (regime real)
        real = data.real_train if k is None else choose_real(data.real_train, k, cell.seed)
    return compose_source(synthetic, real, study.image_size, device, cell.seed, agnostic, study.mixing)


def _family_defects(study: Study, data: StudyData, cell: Cell):
    """What an anomaly detector of ``cell`` learns from (:meth:`~detectors.base.AnomalyDetector.for_study`): the
    family's pretext or operator."""
    spec = study.families[cell.family]
    if spec == BASELINE:
        return "3way"  # unused: the untrained control takes no step
    if "pretext" in spec:
        return spec["pretext"]
    return family_op(study, family_spec(study, cell), data, cell.seed)


def train(study: Study, data: StudyData, cell: Cell, device: str, folder: Path,
          log: Callable[[str], None]) -> Dict[str, Any]:
    """Train ``cell``'s detector; returns ``{"detector", "record"}`` (the record: epochs or steps, the images seen
    and steps an object detector trained, images per epoch, training seconds)."""
    from ..registry import ANOMALY, detector_class

    spec = study.detectors[cell.detector]
    cls = detector_class(spec["kind"])
    settings = dict(spec["settings"], image_size=study.image_size, seed=cell.seed,
                    **study_arguments(spec["kind"], spec), **backbone_argument(spec["kind"], spec, study.resolve_path))
    last = {"time": 0.0}

    def callback(record: Dict[str, Any]) -> None:  # a line in the cell's log at most every 10 s, and the last
        now = time.perf_counter()
        if now - last["time"] >= 10:
            last["time"] = now
            log("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))

    start = time.perf_counter()
    if cls.TASK == ANOMALY:
        steps = 0 if cell.family == BASELINE else spec["steps"]
        detector = cls.for_study(_family_defects(study, data, cell), **settings)
        log(f"train {spec['kind']} on {len(data.ok_train)} OK images, {steps} steps")
        detector.fit(data.ok_train, steps=steps, device=device, progress=False, callback=callback)
        record = {"steps": steps, "images_per_epoch": len(data.ok_train)}
    else:
        source = training_source(study, data, cell, device)
        # exactly images_seen images (steps of the batch size), whatever the data's size: equal cost per cell
        length = {"epochs": spec["epochs"]} if "epochs" in spec else {"images_seen": spec["images_seen"]}
        detector = cls(class_names=list(source.class_names), **settings)
        log(f"train {spec['kind']} on {source!r}: " + ", ".join(f"{k} {v}" for k, v in length.items()))
        detector.fit(source, **length, device=device, progress=False, callback=callback,
                     **cls.study_fit_options(folder))
        record = {**({"epochs": spec["epochs"]} if "epochs" in spec else {}),
                  "images_seen": getattr(detector, "images_seen", None),
                  "steps": getattr(detector, "steps_trained", None), "images_per_epoch": len(source)}
    record["train_seconds"] = round(time.perf_counter() - start, 2)
    return {"detector": detector, "record": record}


def evaluate(study: Study, data: StudyData, cell: Cell, detector, log: Callable[[str], None]) -> Dict[str, Any]:
    """Every test set's report for the trained ``detector``: ``{test set: {"overall", "per_true_class"?,
    "counts"?, "seconds"}}``."""
    from ..evaluation import evaluate_labelled

    agnostic = study.detectors[cell.detector].get("agnostic", False)
    results = {}
    for name in study.test_sets:
        test = data.test_set(name)
        report = evaluate_labelled(detector, test, agnostic=agnostic)
        kept = {key: report[key] for key in ("overall", "per_true_class", "per_defect", "counts")
                if key in report}
        kept["seconds"] = report.get("seconds")
        results[name] = kept
        shown = ", ".join(f"{k} {100 * v:.1f}" for k, v in report["overall"].items()
                          if k in study.metrics and isinstance(v, float))
        log(f"test set {name} ({len(test)} images): {shown}")
    return results


def run_cell(study: Study, data: StudyData, cell: Cell, device: str, folder: Path,
             log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Train and evaluate ``cell`` (raises whatever the detector raises); returns its result record."""
    log = log or (lambda _: None)
    trained = train(study, data, cell, device, folder, log)
    start = time.perf_counter()
    tests = evaluate(study, data, cell, trained["detector"], log)
    record = dict(trained["record"], eval_seconds=round(time.perf_counter() - start, 2))
    return {"record": record, "tests": tests}
