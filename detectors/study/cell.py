"""One cell of a study: build its training data and detector, train once, evaluate on every test set.

A cell is a pure function of its resolved settings (:func:`~detectors.study.recipe.cell_settings`) and the
study's data: the same settings give the same training batches and the same model, so a cell that finished
is never run again and a killed one is simply run again from the start.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from .data import StudyData, family_op
from .recipe import BASELINE, Cell, Study, real_count


def training_source(study: Study, data: StudyData, cell: Cell, device: str):
    """The object detector's training source of ``cell``: synthetic, synthetic + K real, or real only."""
    from defectgen.io.labelled import choose_real

    from ..data.sources import LabelledSource, SyntheticSource, mix

    detector = study.detectors[cell.detector]
    agnostic = detector["agnostic"]
    k = real_count(cell.regime)
    if cell.family == BASELINE:  # "K real alone" (synthetic+K) or "all real" (real)
        real = data.real_train if k is None else choose_real(data.real_train, k, cell.seed)
        return LabelledSource(real, study.image_size, device, cell.seed, agnostic=agnostic)
    synthetic = SyntheticSource(data.ok_train, op=family_op(study, study.families[cell.family], data, cell.seed),
                                image_size=study.image_size, device=device, seed=cell.seed, agnostic=agnostic,
                                defects_per_image=study.synthetic["defects_per_image"],
                                box_margin_px=study.synthetic["box_margin"] * study.image_size)
    if k:
        return mix(synthetic, data.real_train, k, seed=cell.seed)
    return synthetic


def _pretext(study: Study, data: StudyData, cell: Cell):
    spec = study.families[cell.family]
    if spec == BASELINE:
        return "3way"  # unused: the untrained control takes no step
    if "pretext" in spec:
        return spec["pretext"]
    return family_op(study, spec, data, cell.seed)


def train(study: Study, data: StudyData, cell: Cell, device: str, folder: Path,
          log: Callable[[str], None]) -> Dict[str, Any]:
    """Train ``cell``'s detector; returns ``{"detector", "record"}`` (the record: epochs / steps, images per
    epoch, training seconds)."""
    from ..registry import create_detector

    spec = study.detectors[cell.detector]
    settings = dict(spec["settings"], image_size=study.image_size, seed=cell.seed)
    last = {"time": 0.0}

    def callback(record: Dict[str, Any]) -> None:  # a line in the cell's log at most every 10 s, and the last
        now = time.perf_counter()
        if now - last["time"] >= 10:
            last["time"] = now
            log("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))

    start = time.perf_counter()
    if study.is_anomaly(cell.detector):
        steps = 0 if cell.family == BASELINE else spec["steps"]
        detector = create_detector(spec["kind"], pretext=_pretext(study, data, cell), **settings)
        log(f"train {spec['kind']} on {len(data.ok_train)} OK images, {steps} steps")
        detector.fit(data.ok_train, steps=steps, device=device, progress=False, callback=callback)
        record = {"steps": steps, "images_per_epoch": len(data.ok_train)}
    else:
        source = training_source(study, data, cell, device)
        epochs = spec["epochs"] if "epochs" in spec else max(1, math.ceil(spec["images_seen"] / len(source)))
        detector = create_detector(spec["kind"], class_names=list(source.class_names), **settings)
        log(f"train {spec['kind']} on {source!r}: {epochs} epochs of {len(source)} images")
        extra = {"out": folder / "run"} if spec["kind"] == "yolo" else {}
        detector.fit(source, epochs=epochs, device=device, progress=False, callback=callback, **extra)
        record = {"epochs": epochs, "images_per_epoch": len(source)}
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
