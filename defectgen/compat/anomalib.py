"""defectgen inside anomalib: an operator as anomalib's synthetic-anomaly generator, and a defectgen export as
an anomalib validation split.

anomalib's models that learn from synthetic anomalies call one generator object, ``(image) -> (image, mask)``
(``anomalib.data.utils.generators.PerlinAnomalyGenerator``). :class:`AnomalibGenerator` keeps that call and
runs any defectgen operator behind it, batched::

    from anomalib.models import Draem
    from defectgen.compat.anomalib import AnomalibGenerator

    model = Draem(dtd_dir="textures/")                    # an existing folder: anomalib downloads nothing
    model.augmenter = AnomalibGenerator("cutpaste_3way")  # any defectgen op, name, config dict or recipe file

Where each model calls its generator (anomalib 2.x):

- DRAEM: ``model.augmenter`` (every training step).
- GLASS: ``model.model.augmentor``; GLASS un-normalises the batch to ``[0, 1]`` before the call and
  normalises the result again, so the generator sees ``[0, 1]`` images.
- DSR: ``model.perlin_generator``, used in its last training phase (the upsampling module). Its first
  phase draws masks in the quantised feature space (``quantized_anomaly_generator``), which no image
  generator replaces.
- SuperSimpleNet adds Gaussian noise to *features* inside Perlin masks; it calls no image generator, so
  there is nothing for this class to replace.

:func:`synthetic_validation` makes a ``defectgen generate --format mvtec --val-fraction F`` export the
validation split of an anomalib datamodule (instead of ``val_split_mode="synthetic"``), so anomalib's
post-processor picks its thresholds on defectgen's defects.

anomalib itself is imported only by :func:`synthetic_validation` (``pip install 'defectgen[anomalib]'``);
:class:`AnomalibGenerator` needs only torch.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import torch

from ..checks import check_int
from ..rng import index_seed
from ..registry import resolve_op
from ..result import DefectBatch
from ..values import space_arguments
from . import _worker_seed

__all__ = ["AnomalibGenerator", "synthetic_validation"]

#: separates the adapter's stream from other uses of the same training seed
_STREAM = "anomalib-generator"


class AnomalibGenerator(torch.nn.Module):
    """A defectgen operator with the call of anomalib's ``PerlinAnomalyGenerator``.

    ``generator(images)`` takes a ``(B, C, H, W)`` batch or one ``(C, H, W)`` image (float, as anomalib hands
    them over; uint8 works too) and returns ``(image, mask)``: the defective image(s), same shape, dtype and
    device as the input, and the anomaly mask, ``(B, 1, H, W)`` (``(1, H, W)`` for one image), 1.0 on the
    defect and 0.0 elsewhere, in the image's float dtype (float32 for integer images), on the same device.
    The whole batch goes through the operator in one call. Which samples stay normal is the operator's ``p``
    (DRAEM leaves half of them normal: the ``draem`` preset has ``p=0.5``; ``perlin`` and ``cutpaste`` default
    to ``p=1``).

    The full result of the last call (boxes, per-sample class labels, replayable ``params``) is kept in
    :attr:`last`, e.g. for a model trained with defect classes.

    Seeding: with ``seed`` the sequence of defects repeats for that seed. Without it (and without
    ``generator``) the stream is seeded, at the first call, from the training seed: ``torch.initial_seed()``,
    which ``lightning.seed_everything(s)`` / ``torch.manual_seed(s)`` set, so a seeded anomalib run gets the
    same defects again. In a DataLoader worker the seed is mixed with the worker's. The stream's state is not
    part of a checkpoint: a resumed run draws defects anew.

    Args:
        op: a defectgen operator, a registered name (``"draem"``, ``"perlin"``, ``"cutpaste_3way"``, ...), a
            config dict (``{"op": name, ...}``) or the path of a YAML operator recipe.
        seed: seed of the generator's own stream.
        generator: an explicit CPU ``torch.Generator`` to draw from instead (used as is).
        soft_labels: return the operator's graded target (``DefectBatch.target``, e.g. NSA's intensity
            labels, in [0, 1]) instead of the binary mask where the operator gives one.
        value_range, mean, std: the value space of float images outside ``[0, 1]`` (see
            :mod:`defectgen.values`); anomalib's models pass ``[0, 1]`` images to their generators, so
            these are for other callers.
    """

    def __init__(self, op: Any, seed: Optional[int] = None, generator: Optional[torch.Generator] = None,
                 soft_labels: bool = False, value_range=None, mean=None, std=None):
        super().__init__()
        self.op = _resolve(op)
        if seed is not None and generator is not None:
            raise ValueError("pass either seed= or generator=, not both")
        self.seed = None if seed is None else check_int(seed, "seed")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if not isinstance(soft_labels, bool):
            raise TypeError(f"soft_labels must be True or False, got {soft_labels!r}")
        self.soft_labels = soft_labels
        self.space = space_arguments(value_range, mean, std)
        self.generator = generator
        self.last: Optional[DefectBatch] = None
        self._stream: Optional[torch.Generator] = None
        self._stream_pid: Optional[int] = None

    def extra_repr(self) -> str:
        return f"op={self.op!r}, seed={self.seed}, soft_labels={self.soft_labels}"

    def _generator(self) -> torch.Generator:
        if self.generator is not None:
            return self.generator
        if self._stream is None or self._stream_pid != os.getpid():
            # torch.initial_seed() is 64-bit; index_seed takes it whole and returns a 63-bit seed
            base = self.seed if self.seed is not None else index_seed(torch.initial_seed() >> 1, 0, stream=_STREAM)
            self._stream = torch.Generator().manual_seed(_worker_seed(base))
            self._stream_pid = os.getpid()
        return self._stream

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a tensor, (B, C, H, W) or (C, H, W), got {type(images).__name__}")
        if images.ndim not in (3, 4):
            raise ValueError(f"images must be (B, C, H, W) or (C, H, W), got shape {tuple(images.shape)}")
        batched = images.ndim == 4
        plain = images.as_subclass(torch.Tensor)  # anomalib may hand over tv_tensors.Image
        result = self.op(plain if batched else plain.unsqueeze(0), generator=self._generator(), **self.space)
        self.last = result
        mask_dtype = images.dtype if images.is_floating_point() else torch.float32
        mask = (result.soft_target() if self.soft_labels else result.mask).to(mask_dtype)
        image = result.image
        if not batched:
            image, mask = image[0], mask[0]
        return image, mask


def _resolve(op: Any):
    """An operator from an instance, name, config dict or recipe path (``*.yaml`` / ``*.yml`` or a file)."""
    if isinstance(op, Path) or (isinstance(op, str) and (op.endswith((".yaml", ".yml")) or os.path.isfile(op))):
        from ..recipe import build_op

        built, _ = build_op(None, op)
        return built
    return resolve_op(op)


def synthetic_validation(datamodule: Any, export: Union[str, Path]) -> Any:
    """Make the test split of a defectgen MVTec export the validation split of an anomalib datamodule.

    ``export`` is the ``--output`` folder of ``defectgen generate ... --format mvtec --val-fraction F`` (or
    its ``mvtec/`` subfolder). Its ``mvtec/test/good/`` holds the OK images of the held-out sources and
    ``mvtec/test/<defect>/`` + ``mvtec/ground_truth/<defect>/`` the synthetic defects made from them; that set
    becomes ``datamodule.val_data`` whenever the datamodule is set up, in place of anomalib's own validation
    split (its ``val_split_mode`` is ignored). anomalib's post-processor then picks its image and pixel
    thresholds (F1-adaptive) on these defects, and validation metrics are measured on them.

    Train on ``mvtec/train/good/`` of the same export (or any OK images that do not include the held-out
    sources), so no validation background was seen in training.

    Returns the datamodule, changed in place.
    """
    from anomalib.data.datasets import MVTecADDataset

    if not callable(getattr(datamodule, "_create_val_split", None)):
        # the hook anomalib's setup() calls to build its validation split (anomalib 2.x); without it the split
        # below would be ignored silently
        raise TypeError(f"{type(datamodule).__name__} is not an anomalib 2.x datamodule (no _create_val_split to "
                        "replace); synthetic_validation needs anomalib >= 2.0's AnomalibDataModule")
    root = Path(export)
    if (root / "mvtec").is_dir():
        root = root / "mvtec"
    test = root / "test"
    if not test.is_dir():
        raise ValueError(f"{str(export)!r} is not a defectgen MVTec export (no {test}); write one with "
                         "`defectgen generate --format mvtec --val-fraction F`")
    kinds = sorted(p.name for p in test.iterdir() if p.is_dir())
    if "good" not in kinds or len(kinds) < 2:
        raise ValueError(f"{test} needs good/ and at least one defect folder (found {kinds}): generate with "
                         "--val-fraction so the held-out OK images and their defects form the split")
    dataset = MVTecADDataset(root=root.parent, category=root.name, split="test")

    def create_val_split() -> None:
        # anomalib builds its splits in setup(); this runs in place of its own validation split there
        datamodule.val_data = dataset

    datamodule._create_val_split = create_val_split
    return datamodule
