"""One description of an object detector's training data, turned into a training source.

The four ways an experiment trains a detector — (a) defects made on the fly over OK images, (b) a folder
``defectgen generate`` wrote, (c) real labelled images, (d) synthetic plus ``k`` real images — are one
:class:`TrainingData` (what the CLI's ``--ok/--op/--recipe``, ``--data`` and ``--real/--real-count`` fill in,
and what a study recipe will name), and :func:`build_source` makes the matching source of
:mod:`~detectors.data.sources`. Classes: synthetic classes come from the operators (or the recipe's
``class_names``); real classes are renamed onto them with a class map, or everything is one class
(``agnostic``), because a recipe's names rarely match a data set's.

Mixing: the synthetic side (``ok`` with ``ops``/``recipe``, or a generated folder ``data``) and the real side
(``real``) are mixed by :class:`~detectors.data.sources.MixedSource` with ``real_fraction`` of every batch real
(``schedule="mixed"``) or a synthetic stage then a real one (``"finetune"``); the defaults are
:mod:`~detectors.data.sources`' ``DEFAULT_*``. ``real_fraction=None`` is the old proportional mix (every item
once per epoch; ``data`` + ``real`` are then one concatenated set, as before).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch

# TRAINING_SPLITS: the split a training set is read from, by format; the one table defectgen fit reads too, so
# fit and train --real-count choose their K images from the same images
from defectgen.io.labelled.real import TRAINING_SPLITS
from defectgen.io.labelled import choose_real, detect_format, parse_class_map, read_labelled

from ..types import LabelledSet
from .sources import (DEFAULT_FINETUNE_START, DEFAULT_REAL_FRACTION, DEFAULT_REPLAY_FRACTION, DEFAULT_SCHEDULE,
                      LabelledSource, MixedSource, SyntheticSource, check_mixing, mix)


@dataclass
class TrainingData:
    """What a detector trains on (see the module docstring); every path is a folder or file on disk.

    Attributes:
        ok: folder of OK images for on-the-fly defects (with ``ops`` or ``recipe``).
        ops: operator names (several: one class each); ``recipe``: a YAML operator recipe instead.
        data: a labelled folder (a ``defectgen generate`` output, or any set :func:`read_labelled` reads).
        real: a real labelled folder added to the rest; ``real_count``: use only ``k`` of its images,
            chosen by ``seed`` (0 < k).
        data_format / real_format: the formats (``"auto"`` detects them); ``data_split`` / ``real_split``: the
            splits (default: the format's training split).
        class_map: renames classes of the labelled sets (``"real=synthetic,..."``, a mapping, or a file).
        agnostic: every defect is one class.
        defects_per_image, box_margin_px: for the synthetic defects (see
            :class:`~detectors.data.sources.SyntheticSource`).
        real_fraction, schedule, replay_fraction, finetune_start: how the synthetic side and ``real`` are
            mixed (:class:`~detectors.data.sources.MixedSource`); unused without both sides.
    """

    ok: Optional[str] = None
    ops: List[str] = field(default_factory=list)
    recipe: Optional[str] = None
    data: Optional[str] = None
    data_format: str = "auto"
    data_split: Optional[str] = None
    real: Optional[str] = None
    real_format: str = "auto"
    real_split: Optional[str] = None
    real_count: Optional[int] = None
    class_map: Optional[Union[str, Dict[str, Optional[str]]]] = None
    agnostic: bool = False
    defects_per_image: Optional[int] = None
    box_margin_px: float = 0.0
    real_fraction: Optional[float] = DEFAULT_REAL_FRACTION
    schedule: str = DEFAULT_SCHEDULE
    replay_fraction: float = DEFAULT_REPLAY_FRACTION
    finetune_start: float = DEFAULT_FINETUNE_START

    def __post_init__(self):
        check_mixing(self.real_fraction, self.schedule, self.replay_fraction, self.finetune_start)
        if self.ok is None and (self.ops or self.recipe):
            raise ValueError("ops / recipe make defects over OK images: give ok= (the OK image folder) too")
        if self.ok is not None and not self.ops and not self.recipe:
            raise ValueError("ok= needs the defects to make: ops= (operator names) or recipe= (a YAML recipe)")
        if self.ops and self.recipe:
            raise ValueError("give either ops= or recipe=, not both")
        if self.ok is None and self.data is None and self.real is None:
            raise ValueError("no training data: give ok= with ops= or recipe= (synthetic defects), data= (a "
                             "labelled folder) and/or real= (real labelled images)")
        if self.real_count is not None:
            if self.real is None:
                raise ValueError("real_count needs real= (the folder the k real images are chosen from)")
            if int(self.real_count) < 1:
                raise ValueError(f"real_count must be >= 1, got {self.real_count}")
        if self.ok is None and (self.defects_per_image is not None or self.box_margin_px):
            raise ValueError("defects_per_image and box_margin_px shape the synthetic defects: give ok= too")
        if self.class_map is not None and self.agnostic:
            raise ValueError("give either a class map or agnostic=True, not both")
        if self.ok is not None and self.data is not None and self.real is not None and self.step_based:
            raise ValueError("a step-based mix has one synthetic side and one real side: give ok= (with ops= or "
                             "recipe=) or data=, not both, with real=; or real_fraction=None to concatenate them "
                             "all in proportional epochs")

    @property
    def mixed(self) -> bool:
        """Whether there is a synthetic side and a real side to mix."""
        return (self.ok is not None or self.data is not None) and self.real is not None

    @property
    def step_based(self) -> bool:
        """Whether the mix (if any) is planned per step rather than proportional."""
        return self.real_fraction is not None or self.schedule == "finetune"

    def mixing(self) -> Dict[str, Any]:
        return {"real_fraction": self.real_fraction, "schedule": self.schedule,
                "replay_fraction": self.replay_fraction, "finetune_start": self.finetune_start}

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def read_training_set(path: Union[str, Path], format: str, split: Optional[str], image_size: int,
                      channels: int) -> LabelledSet:
    """A labelled set for training, read at ``image_size``, from its format's training split by default."""
    fmt = detect_format(path) if format == "auto" else format
    return read_labelled(path, fmt, split=split if split is not None else TRAINING_SPLITS.get(fmt),
                         size=image_size, channels=channels)


def compose_source(synthetic, real: Optional[LabelledSet], image_size: int, device: Union[str, torch.device],
                   seed: int, agnostic: bool, mixing: Mapping[str, Any]):
    """The training source of a synthetic side (a source, or None) and real labelled images (or None): the real
    images alone, the synthetic source alone, or both mixed as ``mixing`` says (:func:`~.sources.mix`, the mixed
    source taking the synthetic side's size, device and agnosticism). :func:`build_source` and a study cell both
    end here."""
    if synthetic is None:
        return LabelledSource(real, image_size, device, seed, agnostic=agnostic)
    if real is None:
        return synthetic
    return mix(synthetic, real, seed=seed, **mixing)


def build_source(spec: TrainingData, image_size: int, channels: int = 3,
                 device: Union[str, torch.device] = "cpu", seed: int = 0):
    """The training source ``spec`` describes (synthetic, labelled or mixed), at ``image_size``.

    Returns ``(source, description)`` where the description records what was read (counts per class, the
    real images chosen, the mixing) for the run's summary.
    """
    parts: Dict[str, LabelledSet] = {}
    described: Dict[str, Any] = {"spec": spec.to_dict()}
    for path, fmt, split, what in ((spec.data, spec.data_format, spec.data_split, "data"),
                                   (spec.real, spec.real_format, spec.real_split, "real")):
        if path is None:
            continue
        part = read_training_set(path, fmt, split, image_size, channels)
        if what == "real":
            if sum(len(b) for b in part.boxes) == 0:
                raise ValueError(f"the real set {str(path)!r} ({part.info.get('format')} labels, split "
                                 f"{part.info.get('split')}) holds no defect box at all: real images teach a "
                                 "detector defects through their boxes; check its labels, format and split")
            if spec.real_count is not None:
                if int(spec.real_count) > len(part):
                    raise ValueError(f"real_count is {spec.real_count} but the real set {str(path)!r} has only "
                                     f"{len(part)} images")
                part = choose_real(part, int(spec.real_count), seed)
                described["real_chosen"] = list(part.names)
        described[what] = {"format": part.info.get("format"), "split": part.info.get("split"),
                           "counts": part.counts(), "problems": len(part.info.get("problems", []))}
        if spec.class_map is not None:
            part = part.mapped(parse_class_map(spec.class_map))
        parts[what] = part
    step_mix = spec.mixed and spec.step_based  # a synthetic side and a real side, mixed per step
    mixing = spec.mixing()
    if spec.ok is None:
        if step_mix:  # a generated folder (or any labelled set) as the synthetic side
            synthetic = LabelledSource(parts["data"], image_size, device, seed, agnostic=spec.agnostic)
            real = LabelledSource(parts["real"], image_size, device, seed, agnostic=spec.agnostic)
            source = MixedSource(synthetic, real, seed, **mixing)
        else:  # one labelled set, or data + real concatenated (the proportional mix, as before)
            labelled = parts.get("data")
            if "real" in parts:
                labelled = parts["real"] if labelled is None else labelled.concat(parts["real"])
            source = compose_source(None, labelled, image_size, device, seed, spec.agnostic, mixing)
    else:
        synthetic = SyntheticSource(spec.ok, op=spec.ops or None, recipe=spec.recipe, image_size=image_size,
                                    channels=channels, device=device, seed=seed, agnostic=spec.agnostic,
                                    defects_per_image=spec.defects_per_image, box_margin_px=spec.box_margin_px)
        described["synthetic"] = {"ok_images": len(synthetic), "classes": list(synthetic.class_names)}
        labelled = None
        for what in ("data", "real"):
            if what in parts:
                labelled = parts[what] if labelled is None else labelled.concat(parts[what])
        unknown = [] if labelled is None or spec.agnostic else sorted(set(labelled.class_names)
                                                                      - set(synthetic.class_names))
        if unknown:
            raise ValueError(f"the labelled classes {unknown} are not among the synthetic classes "
                             f"{list(synthetic.class_names)}: map them (class_map 'real=synthetic,...') or "
                             "train class-agnostic")
        # without real= (ok + data) the labelled set joins proportionally, as before: mixing is between
        # the synthetic side and the real images
        source = compose_source(synthetic, labelled, image_size, device, seed, spec.agnostic,
                                mixing if step_mix else dict(mixing, real_fraction=None, schedule="mixed"))
    if isinstance(source, MixedSource):
        described["mixing"] = dict(source.mixing(), step_based=source.step_based)
    described["classes"] = list(source.class_names)
    described["images_per_epoch"] = len(source)
    return source, described


__all__ = ["TrainingData", "build_source", "compose_source", "read_training_set"]
