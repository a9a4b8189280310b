"""The training data of a YOLO run, written as a YOLO set inside the run folder (no ultralytics import here).

ultralytics trains from a ``data.yaml`` and image / label folders, and writes next to them (``labels/*.cache``).
So whatever :meth:`~detectors.yolo.YOLODetector.fit` is given — a :class:`~detectors.types.LabelledSet`, a
labelled source, on-the-fly synthetic defects over OK images, or a mix — is written here, at the detector's
image size and channels, into ``<run>/data``::

    <run>/data/data.yaml                 absolute paths, class names, channels: 3
    <run>/data/images/train/img_*.png    labelled images (real or generated), labels/train/img_*.txt
    <run>/data/images/train/ok_*.png     OK images the synthetic defects are painted on (empty label files:
                                         the defects are drawn per epoch in memory, see :mod:`.dataset`)
    <run>/data/images/val/*.png          the validation images, labels/val/*.txt

The user's data folders are never written to: only this copy is, and it is removed and rewritten by the next
fit into the same run folder (a marker file proves the folder is ours before anything is deleted).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import yaml

from defectgen.rng import index_seed
from defectgen.export.yolo import yolo_label_text
from defectgen.io.atomic import encode_png, write_bytes_atomic, write_text_atomic

from ..types import LabelledSet

MARKER = ".defectgen-yolo-data"
MONITOR_IMAGES = 8
"""Validation images taken from the training data when ``val`` is not given (see :func:`prepare_run_data`)."""

_LUMA = (0.299, 0.587, 0.114)


# -- the parts of a training source ------------------------------------------------------------------------------
@dataclass
class SyntheticPart:
    """OK images and what paints a fresh defect on them every epoch.

    A :class:`~detectors.data.sources.SyntheticSource` paints through its public ``make`` (so its
    ``defects_per_image``, ``box_margin_px`` and class ids apply, as in every other detector); any other object
    with ``ok_images`` and an operator ``op`` through the operator itself. ``class_map[source id]`` is the
    detector's YOLO index (0-based) of each class the source produces.
    """

    source: Any
    ok_images: torch.Tensor          # (N, C, S, S) uint8, CPU, the source's channels, at the detector's size
    class_map: Dict[int, int]
    channels: int                    # the detector's channels
    seed: int
    files: Dict[str, int] = field(default_factory=dict)  # file name in images/train -> OK image index

    def paint(self, indices: Sequence[int], seed: int) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
        """Defects on the OK images ``indices``, drawn from ``seed``: ``(images, boxes, classes)``.

        ``images`` are ``(n, channels, S, S)`` uint8 CPU in the detector's channels; ``boxes[i]`` ``(m, 4)`` xyxy
        pixels clipped to the image (empty ones dropped); ``classes[i]`` ``(m,)`` int64 YOLO indices.
        """
        index = torch.as_tensor(list(indices), dtype=torch.int64)
        size = self.ok_images.shape[-1]
        make = getattr(self.source, "make", None)
        with warnings.catch_warnings():
            if torch.device(getattr(self.source, "device", "cpu")).type == "cpu":
                # ultralytics trains with deterministic algorithms on; torch then warns about every scatter
                # (put_) in the operators, although on the CPU they run in order and are deterministic
                warnings.filterwarnings("ignore", message=".*does not have a deterministic implementation")
            if callable(make):
                batch = make(index, seed)
                images, per_boxes, per_labels = batch.images, list(batch.boxes), list(batch.labels)
            else:
                result = self.source.op(self.ok_images[index], generator=torch.Generator().manual_seed(seed))
                images = result.image
                counts = torch.bincount(result.box_index.cpu(), minlength=len(index)).tolist()
                per_boxes = list(result.boxes.detach().float().cpu().split(counts))
                per_labels = list(result.box_label.cpu().split(counts))
        boxes, classes = [], []
        for b, lab in zip(per_boxes, per_labels):
            b, lab = b.detach().float().cpu().clamp(0, size), lab.cpu()
            keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
            b, lab = b[keep], lab[keep]
            unknown = sorted(set(lab.tolist()) - set(self.class_map))
            if unknown:
                raise ValueError(f"the synthetic source produced class ids {unknown}, which its class names do not "
                                 f"name (named: {sorted(self.class_map)})")
            boxes.append(b)
            classes.append(torch.tensor([self.class_map[int(c)] for c in lab], dtype=torch.int64))
        return to_channels(images.detach().cpu(), self.channels), boxes, classes

    def paint_for_epoch(self, ok_index: int, epoch: int, unit: str = "epoch"):
        """The defect OK image ``ok_index`` gets in ``epoch`` (``unit="epoch"``) or at global step ``epoch``
        (``unit="step"``, runs counted in steps: every draw of an image gets its own defect): a function of
        (seed, unit, tag, index) only."""
        if unit not in ("epoch", "step"):
            raise ValueError(f"unit must be 'epoch' or 'step', got {unit!r}")
        images, boxes, classes = self.paint([ok_index], index_seed(self.seed, ok_index, f"yolo-{unit}-{epoch}"))
        return images[0], boxes[0], classes[0]


def split_sources(data: Any) -> Tuple[List[LabelledSet], List[Any]]:
    """``data`` as (labelled sets, synthetic sources).

    Accepted: a :class:`LabelledSet`; a labelled source (``.labelled``: a LabelledSet); a synthetic source
    (``.ok_images`` and ``.op``); a mixed source (``.synthetic`` and ``.real``, each one of these). A mixed
    source's real images come first (set 0, every image its own file), then its synthetic side: a labelled
    one is set 1, a synthetic one the synthetic source (see :func:`mixed_files`).
    """
    if isinstance(data, LabelledSet):
        return [data], []
    if hasattr(data, "synthetic") and hasattr(data, "real"):
        sets, synthetic = [], []
        for part in (data.real, data.synthetic):
            if part is None:
                continue
            s, y = split_sources(part)
            sets += s
            synthetic += y
        if len(synthetic) > 1:
            raise ValueError("a mixed source may hold one synthetic source")
        return sets, synthetic
    if hasattr(data, "ok_images") and hasattr(data, "op"):
        return [], [data]
    if all(hasattr(data, a) for a in ("images", "boxes", "labels", "class_names")):  # a LabelledSource
        images = data.images
        names = tuple(getattr(data, "names", ())) or ()
        return [LabelledSet(images=[im.cpu() for im in images], boxes=[b.cpu() for b in data.boxes],
                            labels=[lab.cpu() for lab in data.labels], class_names=tuple(data.class_names),
                            names=names)], []
    raise TypeError("the yolo detector trains on a LabelledSet or a training source from detectors.data.sources "
                    f"(LabelledSource, SyntheticSource, MixedSource), got {type(data).__name__}")


def mixed_files(data: Any, run_data: RunData) -> Tuple[List[str], List[str]]:
    """``(synthetic files, real files)`` of a mixed source written by :func:`prepare_run_data`: the file name
    of its synthetic item ``k`` (an OK image, or an image of a generated set) and of its real image ``k``, the
    indices :meth:`~detectors.data.sources.MixedSource.plan` gives."""
    if not (hasattr(data, "synthetic") and hasattr(data, "real")):
        raise TypeError(f"mixed_files needs a mixed source, got {type(data).__name__}")
    real = run_data.set_files[0] if data.real is not None else []
    if run_data.synthetic is not None:
        synthetic = run_data.synthetic_files()
    else:  # a labelled synthetic side (a generated folder read back) is the set after the real one
        synthetic = run_data.set_files[1 if data.real is not None else 0]
    return synthetic, real


def synthetic_class_names(source: Any) -> Dict[int, str]:
    """``{class id: name}`` of the ids a synthetic source paints: its ``class_names`` (a list, id k+1 =
    names[k], as a SyntheticSource's ``make`` numbers them, or a mapping), else the operator's own names."""
    names = getattr(source, "class_names", None)
    if names is None:
        from defectgen.recipe import class_names

        return dict(class_names(source.op))
    if isinstance(names, Mapping):
        return {int(k): str(v) for k, v in names.items()}
    return {i + 1: str(n) for i, n in enumerate(names)}


def source_class_names(sets: Sequence[LabelledSet], synthetic: Sequence[Any]) -> List[str]:
    """The class names of the data, in first-seen order (labelled sets first)."""
    names: List[str] = []
    for s in sets:
        names += [n for n in s.class_names if n not in names]
    for source in synthetic:
        names += [n for _, n in sorted(synthetic_class_names(source).items()) if n not in names]
    return names


# -- conversions --------------------------------------------------------------------------------------------------
def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """``(B, C, H, W)`` uint8 or float images with ``channels`` channels: gray repeated, colour to luminance
    (the same conversion at training and at prediction, so a gray model sees what it was trained on)."""
    c = images.shape[1]
    if c == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1)
    weights = torch.tensor(_LUMA, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    gray = (images.float() * weights).sum(1, keepdim=True)
    return gray.round().clamp(0, 255).to(torch.uint8) if images.dtype == torch.uint8 else gray.to(images.dtype)


def _resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-2:] == (size, size):
        return images
    resized = F.interpolate(images.float(), size=(size, size), mode="area")
    return resized.round().clamp(0, 255).to(torch.uint8)


def _png(image: torch.Tensor) -> bytes:
    array = image.permute(1, 2, 0).contiguous().numpy()
    return encode_png(array[..., 0] if array.shape[2] == 1 else array)


# -- the run's data folder ------------------------------------------------------------------------------------------
@dataclass
class RunData:
    """What :func:`prepare_run_data` wrote and what the trainer needs."""

    root: Path
    yaml_path: Path
    data: Dict[str, Any]                 # ultralytics' data dictionary (what check_det_dataset would return)
    synthetic: Optional[SyntheticPart]
    fingerprint: str
    counts: Dict[str, int]
    set_files: List[List[str]] = field(default_factory=list)
    """The file names (in ``images/train``) of each labelled set's images, in the set's order: item ``k`` of
    set ``i`` is ``set_files[i][k]`` (what lets a batch plan address single real images)."""

    def synthetic_files(self) -> List[str]:
        """The file names of the OK images, in the synthetic source's order (empty without one)."""
        if self.synthetic is None:
            return []
        return [name for name, _ in sorted(self.synthetic.files.items(), key=lambda item: item[1])]


class _Writer:
    def __init__(self, root: Path):
        self.root = root
        self.digest = hashlib.sha256()

    def image(self, split: str, stem: str, image: torch.Tensor, boxes: torch.Tensor, classes: Sequence[int]) -> None:
        size = image.shape[-1]
        png = _png(image)
        label = yolo_label_text(boxes.numpy(), [int(c) for c in classes], size, size)
        write_bytes_atomic(self.root / "images" / split / f"{stem}.png", png)
        write_text_atomic(self.root / "labels" / split / f"{stem}.txt", label)
        self.digest.update(f"{split}/{stem}".encode())
        self.digest.update(hashlib.sha256(png).digest())
        self.digest.update(label.encode())


def _labelled_items(labelled: LabelledSet, class_names: Sequence[str], image_size: int, channels: int):
    """(image (channels, S, S) uint8, boxes (n, 4) clipped, YOLO classes) of every image of ``labelled``."""
    unknown = [n for n in labelled.class_names if n not in class_names]
    if unknown:
        raise ValueError(f"the training data has classes {unknown} that the detector does not have "
                         f"(its classes: {list(class_names)}); create it with class_names= naming them all")
    lookup = torch.tensor([-1] + [list(class_names).index(n) for n in labelled.class_names])
    resized = labelled.resized(image_size)
    for image, boxes, labels in zip(resized.images, resized.boxes, resized.labels):
        image = to_channels(image[None].cpu(), channels)[0]
        boxes = boxes.detach().float().cpu().clamp(0, image_size)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        yield image, boxes[keep], lookup[labels.cpu()[keep]].tolist()


def _prepare_root(root: Path) -> None:
    if root.exists():
        if not (root / MARKER).is_file():
            raise ValueError(f"{str(root)!r} exists and was not written by the yolo detector; it will not be "
                             "replaced (choose another run folder)")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / MARKER).write_text("written by defectgen's yolo detector; removed and rewritten by each fit\n")


def prepare_run_data(sets: Sequence[LabelledSet], synthetic: Sequence[Any], class_names: Sequence[str],
                     image_size: int, channels: int, seed: int, root: Path, val: Any = None) -> RunData:
    """Write the training and validation images of a run into ``root`` (see the module docstring).

    ``val``: ``None`` or ``False`` -> up to :data:`MONITOR_IMAGES` training images (labelled ones as they are,
    OK images with a defect drawn once from the seed) serve as a monitor of the fit (they are also trained on;
    nothing is selected on them); a :class:`LabelledSet` -> that set.
    """
    root = Path(root).resolve()
    _prepare_root(root)
    writer = _Writer(root)
    counts = {"labelled": 0, "ok": 0, "val": 0}
    generator = torch.Generator().manual_seed(seed)
    monitor: List[Tuple[torch.Tensor, torch.Tensor, List[int]]] = []
    set_files: List[List[str]] = []

    for labelled in sets:
        items = list(_labelled_items(labelled, class_names, image_size, channels))
        chosen = set(torch.randperm(len(items), generator=generator)[:MONITOR_IMAGES].tolist())
        set_files.append([])
        for i, (image, boxes, classes) in enumerate(items):
            stem = f"img_{counts['labelled']:06d}"
            writer.image("train", stem, image, boxes, classes)
            set_files[-1].append(f"{stem}.png")
            counts["labelled"] += 1
            if i in chosen and len(monitor) < MONITOR_IMAGES:
                monitor.append((image, boxes, classes))

    part = None
    if synthetic:
        source = synthetic[0]
        ok = source.ok_images
        if not isinstance(ok, torch.Tensor) or ok.ndim != 4 or ok.dtype != torch.uint8 or ok.shape[1] not in (1, 3):
            raise ValueError("a synthetic source's ok_images must be a (N, 1 or 3, S, S) uint8 tensor, got "
                             f"{getattr(ok, 'shape', type(ok).__name__)}")
        if len(ok) == 0:
            raise ValueError("the synthetic source has no OK images")
        if callable(getattr(source, "make", None)) and int(getattr(source, "image_size", ok.shape[-1])) != image_size:
            raise ValueError(f"the synthetic source makes {source.image_size} px images but the detector takes "
                             f"{image_size} px; build the source with image_size={image_size}")
        ok = _resize_uint8(ok.detach().cpu(), image_size)
        names = synthetic_class_names(source)
        unknown = [n for n in names.values() if n not in class_names]
        if unknown:
            raise ValueError(f"the synthetic source has classes {unknown} that the detector does not have "
                             f"(its classes: {list(class_names)}); create it with class_names= naming them all")
        own_seed = getattr(source, "seed", None)  # the source's seed decides its defects, as in its epoch()
        if not isinstance(own_seed, int) or isinstance(own_seed, bool):
            own_seed = seed
        part = SyntheticPart(source, ok, {cid: list(class_names).index(n) for cid, n in names.items()}, channels,
                             own_seed)
        empty = torch.zeros(0, 4)
        for i in range(len(ok)):
            stem = f"ok_{i:06d}"
            writer.image("train", stem, to_channels(ok[i:i + 1], channels)[0], empty, [])
            part.files[f"{stem}.png"] = i
            counts["ok"] += 1
        if val is None or val is False:
            picked = torch.randperm(len(ok), generator=generator)[:MONITOR_IMAGES].tolist()
            images, boxes, classes = part.paint(picked, index_seed(part.seed, 0, "yolo-val"))
            monitor += list(zip(images, boxes, [c.tolist() for c in classes]))
        writer.digest.update(_describe_op(source).encode())

    if counts["labelled"] + counts["ok"] == 0:
        raise ValueError("the training data holds no images")
    if isinstance(val, LabelledSet):
        if len(val) == 0:
            raise ValueError("val holds no images")
        val_items = list(_labelled_items(val, class_names, image_size, channels))
    elif val is None or val is False:
        val_items = monitor
    else:
        raise TypeError(f"val must be None, False or a LabelledSet, got {type(val).__name__}")
    for i, (image, boxes, classes) in enumerate(val_items):
        writer.image("val", f"val_{i:06d}", image, boxes, classes)
    counts["val"] = len(val_items)

    names = {i: n for i, n in enumerate(class_names)}
    data = {"path": root, "train": str(root / "images" / "train"), "val": str(root / "images" / "val"),
            "nc": len(class_names), "names": names, "channels": 3, "yaml_file": str(root / "data.yaml")}
    text = ("# written by defectgen's yolo detector for one training run (absolute paths)\n"
            + yaml.safe_dump({"path": str(root), "train": data["train"], "val": data["val"], "nc": data["nc"],
                              "names": names, "channels": 3}, sort_keys=False))
    write_text_atomic(root / "data.yaml", text)
    return RunData(root, root / "data.yaml", data, part, writer.digest.hexdigest(), counts, set_files)


def _describe_op(source: Any) -> str:
    """What identifies a synthetic source's defects for a resume check: its seed, settings and operator."""
    op = getattr(source, "op", None)
    try:
        described = op.to_config()
    except Exception:  # an operator without a plain description: its class is what we can tell (not its repr,
        described = type(op).__qualname__  # which may hold memory addresses that change between processes)
    settings = {k: getattr(source, k, None) for k in ("seed", "defects_per_image", "box_margin_px", "agnostic")}
    return json.dumps({"op": described, **settings}, sort_keys=True, default=str)


__all__ = ["SyntheticPart", "RunData", "prepare_run_data", "split_sources", "mixed_files", "source_class_names",
           "synthetic_class_names", "to_channels", "MONITOR_IMAGES"]
