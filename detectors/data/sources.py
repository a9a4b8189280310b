"""Training batches for object detectors: one interface over synthetic defects, generated folders and real labels.

A detector's training loop asks a source for ``epoch(e, batch_size)`` and gets
:class:`~detectors.types.TrainingBatch` es (``(B, C, S, S)`` uint8 images on the source's device, per-image
boxes and class ids ``1..K``). What is behind it is the experiment:

- :class:`SyntheticSource`: defects made on the fly over OK images by a defectgen operator, fresh every epoch;
- :func:`source_from_folder`: a folder ``defectgen generate`` wrote, read back (a :class:`LabelledSource`);
- :class:`LabelledSource`: any real labelled set (:func:`~defectgen.io.labelled.read_labelled`);
- :class:`MixedSource` / :func:`mix`: synthetic defects plus ``k`` real images (:func:`choose_real`).

Everything a source yields depends only on its seed and the epoch (and the batch size): the shuffled order is
drawn from ``index_seed(seed, epoch)``, and the operator's generator for batch ``j`` of epoch ``e`` from
``index_seed(seed, j, "...epoch-e")`` (:func:`defectgen._rng.index_seed`), so a resumed run sees the same
batches and two runs with the same seed train on the same defects.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from defectgen._checks import check_channels, check_int, check_number
from defectgen._rng import index_seed
from defectgen.generation.job import OpSpec, build_op
from defectgen.generation.job import class_names as op_class_names

from defectgen.io.labelled import choose_real, detect_format, read_labelled

from ..types import AGNOSTIC_CLASS, LabelledSet, TrainingBatch
from .normal import ImageSource, load_normal_images

Device = Union[str, torch.device]


def epoch_order(count: int, seed: int, epoch: int, stream: str) -> torch.Tensor:
    """``(count,)`` int64 CPU permutation for ``epoch``: a function of ``(seed, epoch, stream)`` only."""
    epoch = check_int(epoch, "epoch", 0)
    generator = torch.Generator().manual_seed(index_seed(seed, epoch, stream))
    return torch.randperm(count, generator=generator)


def _batches(order: torch.Tensor, batch_size: int) -> Iterator[Tuple[int, torch.Tensor]]:
    batch_size = check_int(batch_size, "batch_size", 1)
    for j, start in enumerate(range(0, len(order), batch_size)):
        yield j, order[start:start + batch_size]


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

    def epoch(self, epoch: int, batch_size: int) -> Iterator[TrainingBatch]:
        """Epoch ``epoch``'s batches: every image once, in an order fixed by ``(seed, epoch)``."""
        for _, chunk in _batches(epoch_order(len(self), self.seed, epoch, "labelled-order"), batch_size):
            yield self.take(chunk)


class SyntheticSource:
    """Batches of OK images with defects made on the fly by a defectgen operator: new defects every epoch.

    Args:
        ok_images: the defect-free images: a folder (read recursively; an MVTec root gives its ``train/good``)
            or a ``(N, channels, image_size, image_size)`` uint8 tensor.
        op: operator name(s), config(s) or object(s) (several: one class each, 1..K in order), or give
            ``recipe`` (a YAML operator config); built by :func:`defectgen.generation.job.build_op`, as
            ``defectgen generate`` builds it.
        image_size: side ``S`` of the batch images (folder images are resized to it).
        channels: 1 (gray) or 3 (RGB).
        device: where the OK images are kept and the operator runs.
        seed: fixes each epoch's order and defects.
        class_names: names of the operator's classes (a list for ids 1..K, or ``{id: name}``); default: the
            recipe's, else the operators' (:func:`defectgen.generation.job.class_names`, as ``generate``).
        agnostic: every box is class 1, :data:`~detectors.types.AGNOSTIC_CLASS`.
        defects_per_image: how many times each batch goes through the operator (each pass adds a defect per
            image, with its own seed): real NG images often hold several defects (DeepPCB: 2-13), one per
            image teaches a detector that there is one.
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
                 defects_per_image: int = 1, box_margin_px: float = 0.0):
        self.image_size = check_int(image_size, "image_size", 1)
        self.channels = check_channels(channels)
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

    def epoch(self, epoch: int, batch_size: int) -> Iterator[TrainingBatch]:
        """Epoch ``epoch``'s batches: every OK image once, in an order and with defects fixed by
        ``(seed, epoch)``."""
        order = epoch_order(len(self), self.seed, epoch, "synthetic-order")
        for j, chunk in _batches(order, batch_size):
            yield self.make(chunk, index_seed(self.seed, j, f"synthetic-epoch-{epoch}"))


class MixedSource:
    """Synthetic defects and real labelled images in one epoch: every item of both, shuffled together.

    Classes are matched by name: the real set's classes that the synthetic ones share get their ids, the others
    are appended (as :meth:`LabelledSet.concat` does). To train real classes as synthetic ones, rename them
    first (:func:`~defectgen.io.labelled.parse_class_map` + :meth:`LabelledSet.mapped`), or build both sources
    with ``agnostic=True``; one agnostic source with one that is not is an error, since their names could
    only be matched by accident.

    Each batch holds its synthetic items first (one operator call, seeded by ``(seed, epoch, batch)``), then
    its real ones. Both sources must share image size, channels and device.
    """

    def __init__(self, synthetic: SyntheticSource, real: LabelledSource, seed: Optional[int] = None):
        if not isinstance(synthetic, SyntheticSource) or not isinstance(real, LabelledSource):
            raise TypeError("MixedSource needs a SyntheticSource and a LabelledSource")
        for what in ("image_size", "channels", "device"):
            if getattr(synthetic, what) != getattr(real, what):
                raise ValueError(f"MixedSource: the synthetic and real sources differ in {what} "
                                 f"({getattr(synthetic, what)} vs {getattr(real, what)})")
        if synthetic.agnostic != real.agnostic:
            raise ValueError("MixedSource: build both sources with agnostic=True, or neither")
        self.synthetic, self.real = synthetic, real
        self.seed = synthetic.seed if seed is None else check_int(seed, "seed")
        self.image_size, self.channels, self.device = synthetic.image_size, synthetic.channels, synthetic.device
        names = list(synthetic.class_names) + [c for c in real.class_names if c not in synthetic.class_names]
        self.class_names: Tuple[str, ...] = tuple(names)
        self._real_ids = torch.tensor([0] + [names.index(c) + 1 for c in real.class_names],
                                      dtype=torch.int64, device=self.device)

    def __len__(self) -> int:
        return len(self.synthetic) + len(self.real)

    def __repr__(self) -> str:
        return f"MixedSource({self.synthetic!r} + {self.real!r})"

    def epoch(self, epoch: int, batch_size: int) -> Iterator[TrainingBatch]:
        """Epoch ``epoch``'s batches: every synthetic and every real item once, shuffled together by
        ``(seed, epoch)``."""
        n_synthetic = len(self.synthetic)
        order = epoch_order(len(self), self.seed, epoch, "mixed-order")
        for j, chunk in _batches(order, batch_size):
            is_real = chunk >= n_synthetic
            parts: List[TrainingBatch] = []
            if not bool(is_real.all()):
                parts.append(self.synthetic.make(chunk[~is_real], index_seed(self.seed, j, f"mixed-epoch-{epoch}")))
            if bool(is_real.any()):
                real = self.real.take(chunk[is_real] - n_synthetic)
                parts.append(TrainingBatch(real.images, real.boxes, [self._real_ids[lab] for lab in real.labels]))
            yield TrainingBatch(torch.cat([p.images for p in parts]), [b for p in parts for b in p.boxes],
                                [lab for p in parts for lab in p.labels])


def mix(synthetic: SyntheticSource, labelled: LabelledSet, k: Optional[int] = None, seed: Optional[int] = None
        ) -> MixedSource:
    """``synthetic`` plus ``k`` real images of ``labelled`` (all when None) chosen by ``seed`` (default: the
    synthetic source's), as one :class:`MixedSource` with the synthetic source's size, device and agnosticism."""
    seed = synthetic.seed if seed is None else seed
    if k is not None:
        labelled = choose_real(labelled, k, seed)
    real = LabelledSource(labelled, synthetic.image_size, synthetic.device, seed, agnostic=synthetic.agnostic)
    return MixedSource(synthetic, real, seed)


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
