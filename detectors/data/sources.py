"""Training batches for object detectors: one interface over synthetic defects, generated folders and real labels.

A detector's training loop asks a source for ``epoch(e, batch_size)`` and gets
:class:`~detectors.types.TrainingBatch` es (``(B, C, S, S)`` uint8 images on the source's device, per-image
boxes and class ids ``1..K``). What is behind it is the experiment:

- :class:`SyntheticSource`: defects made on the fly over OK images by a defectgen operator, fresh every epoch;
- :func:`source_from_folder`: a folder ``defectgen generate`` wrote, read back (a :class:`LabelledSource`);
- :class:`LabelledSource`: any real labelled set (:func:`~defectgen.io.labelled.read_labelled`);
- :class:`MixedSource` / :func:`mix`: synthetic defects plus ``k`` real images (:func:`choose_real`), by default
  with a fixed real share of every batch (:data:`DEFAULT_REAL_FRACTION`), so a few real images are not drowned.

A detector's step loop walks any source with :func:`training_batches` (and :func:`steps_for` turns a training
length counted in images seen into steps). Everything a source yields depends only on its seed and the epoch or
step (and the batch size): the shuffled order is drawn from ``index_seed(seed, epoch)``, and the operator's
generator for batch ``j`` of epoch ``e`` from ``index_seed(seed, j, "...epoch-e")`` (step ``i`` of a step-based
mix: ``index_seed(seed, i, "mixed-step")``; :func:`defectgen.rng.index_seed`), so a resumed run sees the same
batches and two runs with the same seed train on the same defects.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from defectgen.checks import check_channels, check_int, check_number
from defectgen.rng import index_seed
from defectgen.recipe import OpSpec, build_op
from defectgen.recipe import class_names as op_class_names
from defectgen.recipe import recipe_defects_per_image

from defectgen.io.labelled import choose_real, detect_format, read_labelled

from ..types import AGNOSTIC_CLASS, LabelledSet, TrainingBatch
from .normal import ImageSource, load_normal_images

Device = Union[str, torch.device]


def epoch_order(count: int, seed: int, epoch: int, stream: str) -> torch.Tensor:
    """``(count,)`` int64 CPU permutation for ``epoch``: a function of ``(seed, epoch, stream)`` only."""
    epoch = check_int(epoch, "epoch", 0)
    generator = torch.Generator().manual_seed(index_seed(seed, epoch, stream))
    return torch.randperm(count, generator=generator)


def _batches(order: torch.Tensor, batch_size: int, start: int = 0) -> Iterator[Tuple[int, torch.Tensor]]:
    """``(j, chunk)`` for batches ``start, start + 1, ...`` of ``order`` (a resumed run skips the first ones
    without making them)."""
    batch_size = check_int(batch_size, "batch_size", 1)
    start = check_int(start, "start", 0)
    for j in range(start, math.ceil(len(order) / batch_size)):
        yield j, order[j * batch_size:(j + 1) * batch_size]


class LabelledSource:
    """Batches of a labelled set (real data, or a generated folder read back), resized once to ``image_size``.

    Args:
        labelled: the set; images of any size (each is resized to ``image_size x image_size``, boxes with it).
        image_size: side ``S`` of the batch images.
        device: where the images, boxes and labels are kept and yielded.
        seed: fixes the shuffled order of each epoch.
        agnostic: train class-agnostic: every box is class 1, :data:`~detectors.types.AGNOSTIC_CLASS`.

    ``len(source)`` is the number of images per epoch; every image comes once per epoch, the last batch may be
    smaller.
    """

    def __init__(self, labelled: LabelledSet, image_size: int, device: Device = "cpu", seed: int = 0,
                 agnostic: bool = False):
        if not isinstance(labelled, LabelledSet):
            raise TypeError(f"labelled must be a LabelledSet, got {type(labelled).__name__}")
        if len(labelled) == 0:
            raise ValueError("labelled is empty: a training source needs at least one image")
        self.image_size = check_int(image_size, "image_size", 1)
        self.seed = check_int(seed, "seed")
        self.device = torch.device(device)
        self.agnostic = bool(agnostic)
        labelled = (labelled.agnostic() if agnostic else labelled).resized(self.image_size)
        self.class_names: Tuple[str, ...] = labelled.class_names
        self.channels = labelled.channels
        self.images = torch.stack(list(labelled.images)).to(self.device)
        self.boxes = [b.to(self.device, torch.float32) for b in labelled.boxes]
        self.labels = [lab.to(self.device, torch.int64) for lab in labelled.labels]
        self.names = labelled.names

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return (f"LabelledSource({len(self)} images, {self.image_size}px, classes {list(self.class_names)}, "
                f"device={self.device})")

    def take(self, indices: torch.Tensor) -> TrainingBatch:
        """The images at ``indices`` (a CPU int64 tensor) as one batch."""
        rows = indices.tolist()
        return TrainingBatch(self.images[indices.to(self.device)], [self.boxes[i] for i in rows],
                             [self.labels[i] for i in rows])

    def epoch(self, epoch: int, batch_size: int, start: int = 0) -> Iterator[TrainingBatch]:
        """Epoch ``epoch``'s batches (from batch ``start`` on): every image once, in an order fixed by
        ``(seed, epoch)``."""
        for _, chunk in _batches(epoch_order(len(self), self.seed, epoch, "labelled-order"), batch_size, start):
            yield self.take(chunk)


class SyntheticSource:
    """Batches of OK images with defects made on the fly by a defectgen operator: new defects every epoch.

    Args:
        ok_images: the defect-free images: a folder (read recursively; an MVTec root gives its ``train/good``)
            or a ``(N, channels, image_size, image_size)`` uint8 tensor.
        op: operator name(s), config(s) or object(s) (several: one class each, 1..K in order), or give
            ``recipe`` (a YAML operator config); built by :func:`defectgen.recipe.build_op`, as
            ``defectgen generate`` builds it.
        image_size: side ``S`` of the batch images (folder images are resized to it).
        channels: 1 (gray) or 3 (RGB).
        device: where the OK images are kept and the operator runs.
        seed: fixes each epoch's order and defects.
        class_names: names of the operator's classes (a list for ids 1..K, or ``{id: name}``); default: the
            recipe's, else the operators' (:func:`defectgen.recipe.class_names`, as ``generate``).
        agnostic: every box is class 1, :data:`~detectors.types.AGNOSTIC_CLASS`.
        defects_per_image: how many times each batch goes through the operator (each pass adds a defect per
            image, with its own seed): real NG images often hold several defects (DeepPCB: 2-13), one per
            image teaches a detector that there is one. Default (None): the recipe's top-level
            ``defects_per_image`` (``defectgen fit`` writes the real median count there), else 1.
        box_margin_px: grow every box by this many pixels on each side (clipped to the image), to follow a test
            set's labelling convention: DeepPCB's boxes are the defect's bounding box plus 10 px at 640 px, and a
            detector trained on tight boxes is then scored at IoU ~0.3 on correct detections.

    Each batch goes through the operator once per defect, batched, the first time with
    ``torch.Generator().manual_seed(index_seed(seed, j, "synthetic-epoch-<e>"))``. Images the operator leaves
    untouched (``p < 1``) are defect-free samples with no boxes. ``make`` is public so a trainer with its own data
    pipeline (ultralytics) paints defects the same way.
    """

    def __init__(self, ok_images: ImageSource, op: Union[OpSpec, Sequence[OpSpec], None] = None,
                 recipe: Optional[Union[str, Path]] = None, image_size: int = 256, channels: int = 3,
                 device: Device = "cpu", seed: int = 0,
                 class_names: Optional[Union[Sequence[str], Mapping[int, str]]] = None, agnostic: bool = False,
                 defects_per_image: Optional[int] = None, box_margin_px: float = 0.0):
        self.image_size = check_int(image_size, "image_size", 1)
        self.channels = check_channels(channels)
        if defects_per_image is None:
            defects_per_image = (recipe_defects_per_image(recipe) if recipe is not None else None) or 1
        self.defects_per_image = check_int(defects_per_image, "defects_per_image", 1)
        self.box_margin_px = check_number(box_margin_px, "box_margin_px", 0.0)
        self.seed = check_int(seed, "seed")
        self.device = torch.device(device)
        self.agnostic = bool(agnostic)
        self.op, recipe_names = build_op(op, recipe)
        names = op_class_names(self.op, class_names if class_names is not None else recipe_names)
        self.op_class_names = names  # the operator's own {id: name}
        lookup = torch.zeros(max(names) + 1, dtype=torch.int64)
        for k, cid in enumerate(sorted(names)):
            lookup[cid] = 1 if agnostic else k + 1  # operator ids -> 1..K in id order, as generate's YOLO index
        self._lookup = lookup.to(self.device)
        self.class_names: Tuple[str, ...] = (AGNOSTIC_CLASS,) if agnostic else \
            tuple(names[c] for c in sorted(names))
        self.ok_images = self._load(ok_images).to(self.device)

    def _load(self, ok_images: ImageSource) -> torch.Tensor:
        if isinstance(ok_images, torch.Tensor):
            if ok_images.dtype != torch.uint8:
                raise TypeError(f"ok_images must be a uint8 tensor, got {ok_images.dtype}")
            if ok_images.ndim == 4 and ok_images.shape[1] != self.channels:
                raise ValueError(f"ok_images has {ok_images.shape[1]} channels but channels={self.channels}")
        images = load_normal_images(ok_images, self.image_size, self.channels)
        if len(images) == 0:
            raise ValueError("ok_images holds no image")
        return images

    def __len__(self) -> int:
        return len(self.ok_images)

    def __repr__(self) -> str:
        return (f"SyntheticSource({len(self)} OK images, {self.image_size}px, op={type(self.op).__name__}, "
                f"classes {list(self.class_names)}, device={self.device})")

    def make(self, indices: torch.Tensor, seed: int) -> TrainingBatch:
        """Defects over the OK images at ``indices`` (CPU int64): ``defects_per_image`` operator calls, the first
        seeded by ``seed`` (so one defect per image is one call seeded by ``seed``)."""
        images = self.ok_images[indices.to(self.device)]
        boxes: List[List[torch.Tensor]] = [[] for _ in range(len(indices))]
        labels: List[List[torch.Tensor]] = [[] for _ in range(len(indices))]
        for k in range(self.defects_per_image):
            generator = torch.Generator().manual_seed(seed if k == 0 else index_seed(seed, k, "more-defects"))
            out = self.op(images, generator=generator)
            images = out.image
            # box_index is sorted, so splitting by per-image counts gives each image its boxes
            counts = torch.bincount(out.box_index, minlength=len(indices)).tolist()
            for i, (b, lab) in enumerate(zip(out.boxes.to(torch.float32).split(counts),
                                             self._lookup[out.box_label].split(counts))):
                boxes[i].append(b)
                labels[i].append(lab)
        joined = [torch.cat(b) for b in boxes]
        if self.box_margin_px:
            m = self.box_margin_px
            joined = [(b + b.new_tensor([-m, -m, m, m])).clamp_(0, self.image_size) for b in joined]
        return TrainingBatch(images, joined, [torch.cat(lab) for lab in labels])

    def epoch(self, epoch: int, batch_size: int, start: int = 0) -> Iterator[TrainingBatch]:
        """Epoch ``epoch``'s batches (from batch ``start`` on): every OK image once, in an order and with
        defects fixed by ``(seed, epoch)``."""
        order = epoch_order(len(self), self.seed, epoch, "synthetic-order")
        for j, chunk in _batches(order, batch_size, start):
            yield self.make(chunk, index_seed(self.seed, j, f"synthetic-epoch-{epoch}"))


DEFAULT_REAL_FRACTION: Optional[float] = 0.5
"""The real share of each batch when synthetic defects are mixed with real images (``mix``, ``TrainingData``, the
``train`` command's ``--real-fraction`` and a study's ``mixing``): the one place these defaults live."""
DEFAULT_SCHEDULE = "mixed"
"""How the real images come in: ``"mixed"`` (every batch holds the real share) or ``"finetune"``."""
DEFAULT_REPLAY_FRACTION = 0.25
"""Under ``"finetune"``: the synthetic share of each batch of the second (real) stage."""
DEFAULT_FINETUNE_START = 0.5
"""Under ``"finetune"``: the fraction of the run's steps that are synthetic only."""
SCHEDULES = ("mixed", "finetune")


def _half_up(value: float) -> int:
    """``value`` rounded with halves up (Python's ``round`` sends 2.5 to 2 and 3.5 to 4, which would make a
    batch's real share jump unevenly with the batch size)."""
    return int(math.floor(value + 0.5 + 1e-9))


def check_mixing(real_fraction: Optional[float], schedule: str, replay_fraction: float, finetune_start: float
                 ) -> Dict[str, Any]:
    """The mixing settings checked (``ValueError`` / ``TypeError`` naming the argument), as a plain dict."""
    if real_fraction is not None:
        real_fraction = check_number(real_fraction, "real_fraction", 0.0, 1.0, low_open=True)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {schedule!r}")
    replay_fraction = check_number(replay_fraction, "replay_fraction", 0.0)
    if replay_fraction >= 1.0:
        raise ValueError(f"replay_fraction must be in [0, 1) (the fine-tune stage needs real images), got "
                         f"{replay_fraction}")
    finetune_start = check_number(finetune_start, "finetune_start", 0.0, 1.0)
    return {"real_fraction": real_fraction, "schedule": schedule, "replay_fraction": replay_fraction,
            "finetune_start": finetune_start}


def _stream(count: int, start: int, length: int, seed: int, stream: str) -> torch.Tensor:
    """Positions ``start .. start + length - 1`` of an endless stream that walks seeded permutations of
    ``range(count)``, one after the other (permutation ``e`` is :func:`epoch_order` ``(count, seed, e, stream)``):
    each item comes once per ``count`` positions, and any stretch is computed without walking the ones before."""
    if length == 0:
        return torch.zeros(0, dtype=torch.int64)
    first, last = start // count, (start + length - 1) // count
    walked = torch.cat([epoch_order(count, seed, e, stream) for e in range(first, last + 1)])
    offset = start - first * count
    return walked[offset:offset + length]


class MixedSource:
    """Synthetic defects and real labelled images in one training source, mixed by steps or by epochs.

    Args:
        synthetic: the synthetic side: a :class:`SyntheticSource` (defects made on the fly) or a
            :class:`LabelledSource` (a generated folder read back; :func:`source_from_folder`).
        real: the real labelled images (a :class:`LabelledSource`).
        seed: fixes the order and the defects (default: the synthetic source's seed).
        real_fraction: the real share of every batch under ``schedule="mixed"``: each batch holds
            ``r = max(1, round(real_fraction * batch_size))`` real images (halves round up) and
            ``batch_size - r`` synthetic ones, so ``K`` real images are oversampled rather than drowned among
            hundreds of synthetic ones. ``None`` is the old *proportional* mix: every item of both sides once per
            epoch, shuffled together (20 real among 300 synthetic are then 6 % of what the detector sees, which
            made synthetic + 20 real score below the 20 real alone).
        schedule: ``"mixed"`` (above) or ``"finetune"``: the first ``round(finetune_start * total_steps)`` steps
            are synthetic only, the rest hold ``round(replay_fraction * batch_size)`` synthetic images (at most
            ``batch_size - 1``) and real ones for the rest; ``real_fraction`` plays no part in it.
        replay_fraction: the synthetic share of the fine-tune stage's batches, in ``[0, 1)``; the replay keeps
            the detector from forgetting what the synthetic stage taught.
        finetune_start: the fraction of the run's steps before the fine-tune stage, in ``[0, 1]``.

    Step-based mixing (a ``real_fraction``, or ``"finetune"``) draws both sides from endless streams that walk
    seeded permutations of their items, one after the other, so every real image comes equally often (to
    within one) and every synthetic item too; :meth:`plan` gives step ``i``'s indices in closed form, so a
    resumed run sees what an uninterrupted one saw. An *epoch* of a step-based mix is :meth:`steps_per_epoch`
    steps: ``ceil(len(synthetic) / (batch_size - r))`` under ``"mixed"`` (one pass over the synthetic items;
    ``ceil(K / r)`` when batches are all real), ``ceil((len(synthetic) + K) / batch_size)`` under
    ``"finetune"``, which needs the run's length and so has no :meth:`epoch`.

    Classes are matched by name: the real set's classes that the synthetic ones share get their ids, the others
    are appended (as :meth:`LabelledSet.concat` does). To train real classes as synthetic ones, rename them
    first (:func:`~defectgen.io.labelled.parse_class_map` + :meth:`LabelledSet.mapped`), or build both sources
    with ``agnostic=True``; one agnostic source with one that is not is an error, since their names could
    only be matched by accident. Each batch holds its synthetic items first (one operator call), then its real
    ones. Both sources must share image size, channels and device.
    """

    def __init__(self, synthetic: Union[SyntheticSource, LabelledSource], real: LabelledSource,
                 seed: Optional[int] = None, real_fraction: Optional[float] = None, schedule: str = "mixed",
                 replay_fraction: float = DEFAULT_REPLAY_FRACTION, finetune_start: float = DEFAULT_FINETUNE_START):
        if not isinstance(synthetic, (SyntheticSource, LabelledSource)) or not isinstance(real, LabelledSource):
            raise TypeError("MixedSource needs a SyntheticSource or LabelledSource (synthetic=) and a LabelledSource "
                            f"(real=), got {type(synthetic).__name__} and {type(real).__name__}")
        for what in ("image_size", "channels", "device"):
            if getattr(synthetic, what) != getattr(real, what):
                raise ValueError(f"MixedSource: the synthetic and real sources differ in {what} "
                                 f"({getattr(synthetic, what)} vs {getattr(real, what)})")
        if synthetic.agnostic != real.agnostic:
            raise ValueError("MixedSource: build both sources with agnostic=True, or neither")
        settings = check_mixing(real_fraction, schedule, replay_fraction, finetune_start)
        self.real_fraction: Optional[float] = settings["real_fraction"]
        self.schedule: str = settings["schedule"]
        self.replay_fraction: float = settings["replay_fraction"]
        self.finetune_start: float = settings["finetune_start"]
        self.synthetic, self.real = synthetic, real
        self.seed = synthetic.seed if seed is None else check_int(seed, "seed")
        self.agnostic = synthetic.agnostic
        self.image_size, self.channels, self.device = synthetic.image_size, synthetic.channels, synthetic.device
        names = list(synthetic.class_names) + [c for c in real.class_names if c not in synthetic.class_names]
        self.class_names: Tuple[str, ...] = tuple(names)
        self._real_ids = torch.tensor([0] + [names.index(c) + 1 for c in real.class_names],
                                      dtype=torch.int64, device=self.device)

    @property
    def step_based(self) -> bool:
        """Whether batches are planned per step (a ``real_fraction``, or ``"finetune"``) rather than per epoch."""
        return self.real_fraction is not None or self.schedule == "finetune"

    def __len__(self) -> int:
        """Items of both sides (synthetic OK images or generated images, plus real images)."""
        return len(self.synthetic) + len(self.real)

    def __repr__(self) -> str:
        return f"MixedSource({self.synthetic!r} + {self.real!r}, {self.describe_mixing()})"

    def mixing(self) -> Dict[str, Any]:
        """The mixing settings, as a run or study records them."""
        return {"real_fraction": self.real_fraction, "schedule": self.schedule,
                "replay_fraction": self.replay_fraction, "finetune_start": self.finetune_start}

    def describe_mixing(self) -> str:
        if not self.step_based:
            return "proportional: every item once per epoch"
        if self.schedule == "mixed":
            return f"real_fraction {self.real_fraction:g} of every batch"
        return (f"finetune: synthetic only for {self.finetune_start:g} of the steps, then real with "
                f"{self.replay_fraction:g} synthetic replay")

    # -- counts per batch ---------------------------------------------------------------------------------------
    def real_per_batch(self, batch_size: int) -> int:
        """``r``: real images in each batch of a ``"mixed"`` step-based run."""
        batch_size = check_int(batch_size, "batch_size", 1)
        if self.real_fraction is None:
            raise ValueError("real_per_batch: a proportional MixedSource (real_fraction=None) has no fixed real share")
        return max(1, _half_up(self.real_fraction * batch_size))

    def replay_per_batch(self, batch_size: int) -> int:
        """Synthetic images in each batch of the fine-tune stage (at most ``batch_size - 1``: the stage is real)."""
        batch_size = check_int(batch_size, "batch_size", 1)
        return min(_half_up(self.replay_fraction * batch_size), batch_size - 1)

    def finetune_step(self, total_steps: int) -> int:
        """The first step of the fine-tune stage of a ``total_steps`` run."""
        return _half_up(self.finetune_start * check_int(total_steps, "total_steps", 1))

    def steps_per_epoch(self, batch_size: int) -> int:
        """Steps of one epoch (see the class docstring); ``fit(epochs=E)`` trains ``E`` times as many."""
        batch_size = check_int(batch_size, "batch_size", 1)
        if self.step_based and self.schedule == "mixed":
            r = self.real_per_batch(batch_size)
            if r < batch_size:
                return math.ceil(len(self.synthetic) / (batch_size - r))
            return math.ceil(len(self.real) / r)
        return math.ceil(len(self) / batch_size)

    # -- the plan -----------------------------------------------------------------------------------------------
    def plan(self, step: int, batch_size: int, total_steps: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(synthetic_indices, real_indices)`` of step ``step`` of a ``total_steps`` run with batches of
        ``batch_size``: CPU int64 tensors indexing the synthetic source's items (its OK images, or the generated
        set's images) and ``self.real``'s images. A pure function of ``(seed, step, batch_size, total_steps)``
        and the settings, computed in closed form (nothing before ``step`` is walked).

        Proportional mixing (``real_fraction=None``) plans epochs of ``ceil(len(self) / batch_size)`` steps:
        the items of batch ``step % spe`` of epoch ``step // spe``, as :meth:`epoch` yields them.
        """
        step = check_int(step, "step", 0)
        batch_size = check_int(batch_size, "batch_size", 1)
        total_steps = check_int(total_steps, "total_steps", 1)
        if step >= total_steps:
            raise ValueError(f"step must be < total_steps ({total_steps}), got {step}")
        n_synthetic, n_real = len(self.synthetic), len(self.real)
        if not self.step_based:
            epoch, j = divmod(step, self.steps_per_epoch(batch_size))
            chunk = epoch_order(len(self), self.seed, epoch, "mixed-order")[j * batch_size:(j + 1) * batch_size]
            is_real = chunk >= n_synthetic
            return chunk[~is_real], chunk[is_real] - n_synthetic
        if self.schedule == "mixed":
            r = self.real_per_batch(batch_size)
            s = batch_size - r
            return (_stream(n_synthetic, step * s, s, self.seed, "mixed-synthetic"),
                    _stream(n_real, step * r, r, self.seed, "mixed-real"))
        first = self.finetune_step(total_steps)
        if step < first:
            return (_stream(n_synthetic, step * batch_size, batch_size, self.seed, "mixed-synthetic"),
                    torch.zeros(0, dtype=torch.int64))
        s = self.replay_per_batch(batch_size)
        later = step - first
        return (_stream(n_synthetic, first * batch_size + later * s, s, self.seed, "mixed-synthetic"),
                _stream(n_real, later * (batch_size - s), batch_size - s, self.seed, "mixed-real"))

    def _synthetic_part(self, indices: torch.Tensor, seed: int) -> TrainingBatch:
        if isinstance(self.synthetic, SyntheticSource):
            return self.synthetic.make(indices, seed)
        return self.synthetic.take(indices)

    def _assemble(self, synthetic: torch.Tensor, real: torch.Tensor, seed: int) -> TrainingBatch:
        parts: List[TrainingBatch] = []
        if len(synthetic):
            parts.append(self._synthetic_part(synthetic, seed))
        if len(real):
            taken = self.real.take(real)
            parts.append(TrainingBatch(taken.images, taken.boxes, [self._real_ids[lab] for lab in taken.labels]))
        return TrainingBatch(torch.cat([p.images for p in parts]), [b for p in parts for b in p.boxes],
                             [lab for p in parts for lab in p.labels])

    def batch(self, step: int, batch_size: int, total_steps: int) -> TrainingBatch:
        """Step ``step``'s batch (:meth:`plan`'s items): synthetic first, its defects drawn with
        ``index_seed(seed, step, "mixed-step")``, then real, with the real class ids mapped by name."""
        synthetic, real = self.plan(step, batch_size, total_steps)
        if not self.step_based:  # the batch epoch() yields, defects seeded as it seeds them
            epoch, j = divmod(step, self.steps_per_epoch(batch_size))
            return self._assemble(synthetic, real, index_seed(self.seed, j, f"mixed-epoch-{epoch}"))
        return self._assemble(synthetic, real, index_seed(self.seed, step, "mixed-step"))

    def epoch(self, epoch: int, batch_size: int, start: int = 0) -> Iterator[TrainingBatch]:
        """Epoch ``epoch``'s batches from batch ``start`` on. Proportional: every synthetic and every real item
        once, shuffled together by ``(seed, epoch)``; ``"mixed"`` with a fraction: steps
        ``epoch * spe .. (epoch + 1) * spe - 1`` of the plan; ``"finetune"`` has no epochs (its stages need
        the run's length: use :func:`training_batches`)."""
        epoch = check_int(epoch, "epoch", 0)
        if not self.step_based:
            n_synthetic = len(self.synthetic)
            order = epoch_order(len(self), self.seed, epoch, "mixed-order")
            for j, chunk in _batches(order, batch_size, start):
                is_real = chunk >= n_synthetic
                yield self._assemble(chunk[~is_real], chunk[is_real] - n_synthetic,
                                     index_seed(self.seed, j, f"mixed-epoch-{epoch}"))
            return
        if self.schedule == "finetune":
            raise ValueError("a finetune MixedSource has no epochs: its stages need the run's length; walk it with "
                             "training_batches(source, batch_size, total_steps) or batch(step, ...)")
        spe = self.steps_per_epoch(batch_size)
        for step in range(epoch * spe + check_int(start, "start", 0), (epoch + 1) * spe):
            yield self.batch(step, batch_size, (epoch + 1) * spe)


def mix(synthetic: Union[SyntheticSource, LabelledSource], labelled: LabelledSet, k: Optional[int] = None,
        seed: Optional[int] = None, real_fraction: Optional[float] = DEFAULT_REAL_FRACTION,
        schedule: str = DEFAULT_SCHEDULE, replay_fraction: float = DEFAULT_REPLAY_FRACTION,
        finetune_start: float = DEFAULT_FINETUNE_START) -> MixedSource:
    """``synthetic`` plus ``k`` real images of ``labelled`` (all when None) chosen by ``seed`` (default: the
    synthetic source's) with :func:`~defectgen.io.labelled.choose_real`, as one :class:`MixedSource` with the
    synthetic source's size, device and agnosticism, mixed step by step (``real_fraction`` of every batch, the
    library default :data:`DEFAULT_REAL_FRACTION`; ``real_fraction=None`` for the proportional epoch mix)."""
    seed = synthetic.seed if seed is None else seed
    if k is not None:
        labelled = choose_real(labelled, k, seed)
    real = LabelledSource(labelled, synthetic.image_size, synthetic.device, seed, agnostic=synthetic.agnostic)
    return MixedSource(synthetic, real, seed, real_fraction=real_fraction, schedule=schedule,
                       replay_fraction=replay_fraction, finetune_start=finetune_start)


# -- one step-based walk for every source -------------------------------------------------------------------------
def training_length(epochs: Optional[int], images_seen: Optional[int], default_epochs: int
                    ) -> Tuple[Optional[int], Optional[int]]:
    """A detector's ``fit`` length, checked: ``(epochs, None)`` or ``(None, images_seen)``; neither given means
    ``default_epochs`` epochs. Both given is a ``ValueError`` (one length, counted one way)."""
    if epochs is not None and images_seen is not None:
        raise ValueError("give epochs or images_seen, not both")
    if images_seen is not None:
        return None, check_int(images_seen, "images_seen", 1)
    return check_int(default_epochs if epochs is None else epochs, "epochs", 1), None


def steps_for(images_seen: int, batch_size: int) -> int:
    """Steps that show at least ``images_seen`` images in batches of ``batch_size``: ``ceil(images_seen /
    batch_size)`` (a training length counted in images seen is the same cost for any data and batch size)."""
    images_seen = check_int(images_seen, "images_seen", 1)
    return math.ceil(images_seen / check_int(batch_size, "batch_size", 1))


def steps_to_see(source, images_seen: int, batch_size: int) -> int:
    """The fewest steps of :func:`training_batches` over ``source`` that show at least ``images_seen`` images,
    so a run sees ``images_seen .. images_seen + batch_size - 1`` of them: :func:`steps_for` where every batch
    is full (a step-based mix), and where an epoch ends in a smaller batch, whole epochs plus the steps of the
    rest (``ceil(images_seen / batch_size)`` steps would then show fewer images than asked)."""
    images_seen = check_int(images_seen, "images_seen", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    if isinstance(source, MixedSource) and source.step_based:
        return steps_for(images_seen, batch_size)
    epochs, rest = divmod(images_seen, len(source))
    return epochs * steps_per_epoch(source, batch_size) + math.ceil(rest / batch_size)


def steps_per_epoch(source, batch_size: int) -> int:
    """Steps of one epoch of ``source``: its own count for a :class:`MixedSource`, else
    ``ceil(len(source) / batch_size)`` (every item once, the last batch possibly smaller)."""
    if isinstance(source, MixedSource):
        return source.steps_per_epoch(batch_size)
    return math.ceil(len(source) / check_int(batch_size, "batch_size", 1))


def training_batches(source, batch_size: int, total_steps: int, start_step: int = 0, first_epoch: int = 0
                     ) -> Iterator[TrainingBatch]:
    """The batches of steps ``start_step .. total_steps - 1`` of a run over ``source``: the one walk a
    detector's step loop takes, whatever the source.

    A step-based :class:`MixedSource` gives :meth:`MixedSource.batch` of each step (its plan knows the run's
    length, which the fine-tune schedule needs). Any other source is walked epoch after epoch (step ``i`` is
    batch ``i % spe`` of epoch ``first_epoch + i // spe``, ``spe`` = :func:`steps_per_epoch`), starting mid-epoch
    without making the batches before ``start_step``; ``first_epoch`` lets a second ``fit`` go on with new
    epochs (a step-based mix plans the steps of one run and ignores it).
    """
    batch_size = check_int(batch_size, "batch_size", 1)
    total_steps = check_int(total_steps, "total_steps", 1)
    start_step = check_int(start_step, "start_step", 0)
    first_epoch = check_int(first_epoch, "first_epoch", 0)
    if isinstance(source, MixedSource) and source.step_based:
        for step in range(start_step, total_steps):
            yield source.batch(step, batch_size, total_steps)
        return
    spe = steps_per_epoch(source, batch_size)
    step = start_step
    while step < total_steps:
        epoch, index = divmod(step, spe)
        for batch in source.epoch(first_epoch + epoch, batch_size, start=index):
            yield batch
            step += 1
            if step >= total_steps:
                return


GENERATED_FORMATS = ("yolo", "coco")


def source_from_folder(path: Union[str, Path], image_size: int, split: str = "train", format: str = "auto",
                       channels: int = 3, device: Device = "cpu", seed: int = 0, agnostic: bool = False,
                       class_names: Optional[Sequence[str]] = None) -> LabelledSource:
    """A folder ``defectgen generate`` wrote (YOLO or COCO labels) as a :class:`LabelledSource`.

    ``split`` defaults to ``train`` (the generated training images; ``val`` is the held-out part). ``format``
    ``"auto"`` takes YOLO when the folder has both. Images are read at ``image_size`` (boxes scaled).
    """
    if format == "auto":
        format = detect_format(path)
        if format not in GENERATED_FORMATS:
            raise ValueError(f"{str(path)!r} looks like a {format} set; a generated training folder needs YOLO or "
                             "COCO labels (defectgen generate --format yolo or coco), or read it with read_labelled "
                             "and use LabelledSource")
    elif format not in GENERATED_FORMATS:
        raise ValueError(f"source_from_folder reads the YOLO or COCO labels defectgen generate writes: format must "
                         f"be 'auto' or one of {list(GENERATED_FORMATS)}, got {format!r}")
    labelled = read_labelled(path, format, split=split, size=image_size, channels=channels, class_names=class_names)
    return LabelledSource(labelled, image_size, device, seed, agnostic)
