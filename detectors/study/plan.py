"""A study resolved for one budget (:class:`Study`) and its plan: the :class:`Cell` s it expands into.

A cell is a family, a regime, a detector and a seed with every setting resolved; it is a pure function of those
settings, whose hash names its folder (:mod:`.folder`). :func:`~detectors.study.recipe.load_study` makes a
:class:`Study` from a recipe; :func:`expand` lists its cells.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from ..registry import ANOMALY, detector_class
from .schema import BASELINE, PLACEMENT_KEYS, needs_real_k, real_count


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
    """A checked recipe resolved for one budget (see :mod:`.recipe`)."""

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
    # what every cell asks an executor for (a detector's own resources replace these key by key); not part of a
    # cell's settings or the fingerprint
    resources: Dict[str, Any] = field(default_factory=dict)

    def resolve_path(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else (self.root / path)

    def is_anomaly(self, detector: str) -> bool:
        """Whether ``detector``'s kind is an anomaly detector (its class's ``TASK``)."""
        return detector_class(self.detectors[detector]["kind"]).TASK == ANOMALY

    def fingerprint(self) -> Dict[str, Any]:
        """What a finished study folder records of the study, to refuse a changed recipe under ``--resume``.
        Resources are left out: a study may move between executors and machines (more GPUs, another cluster)."""
        raw = {k: v for k, v in self.raw.items() if k not in ("budgets", "description", "resources")}
        if isinstance(raw.get("detectors"), Mapping):
            raw["detectors"] = {name: {k: v for k, v in spec.items() if k != "resources"}
                                if isinstance(spec, Mapping) else spec for name, spec in raw["detectors"].items()}
        return {"budget": self.budget, **raw}

    def cell_resources(self, detector: str) -> Dict[str, Any]:
        """What a cell of ``detector`` asks an executor for: the study's resources, the detector's over them."""
        return {**self.resources, **self.detectors[detector].get("resources", {})}


def expand(study: Study) -> List[Cell]:
    """Every cell of the study, in a fixed order: seed, detector, regime, family.

    Skipped combinations (see :mod:`.recipe`): a family a detector's ``families`` list leaves out; ``real`` for
    any family but ``none``; ``none`` under ``synthetic`` for object detectors (nothing to learn boxes from);
    anything but ``synthetic`` for anomaly detectors.
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


def applies(study: Study, family: str, regime: str, detector: str) -> bool:
    """Whether ``(family, regime, detector)`` is a cell of the study (see :func:`expand`)."""
    if family not in study.detectors[detector].get("families", study.families):
        return False  # the detector's own families list leaves this family out
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
    # which cells exist and where they run, not how one trains
    spec = {k: v for k, v in study.detectors[detector].items() if k not in PLACEMENT_KEYS}
    settings = {"data": data, "family": {"name": family, "spec": study.family_records[family]}, "regime": regime,
                "detector": {"name": detector, **spec}, "image_size": study.image_size, "seed": seed}
    if family != BASELINE and not study.is_anomaly(detector):
        settings["synthetic"] = dict(study.synthetic)
        if real_count(regime):  # synthetic+K: how its K real images are mixed in (other cells keep their hash)
            settings["mixing"] = dict(study.mixing)
    return settings
