"""Adapters that run defectgen operators inside other augmentation libraries.

- :mod:`defectgen.compat.albumentations`: ``DefectTransform``, an ``A.DualTransform`` for ``A.Compose``
  (needs the optional extra: ``pip install 'defectgen[albumentations]'``).
- :mod:`defectgen.compat.torchvision`: ``DefectTransformV2``, a ``torchvision.transforms.v2.Transform``.
- :mod:`defectgen.compat.anomalib`: ``AnomalibGenerator``, anomalib's synthetic-anomaly generator call (DRAEM's
  ``augmenter``, GLASS's ``augmentor``, DSR's ``perlin_generator``), and ``synthetic_validation`` (a defectgen
  MVTec export as an anomalib datamodule's validation split; needs ``pip install 'defectgen[anomalib]'``).

Nothing is imported here, so ``import defectgen`` stays fast and works without the optional libraries;
import the submodule you use.
"""
from __future__ import annotations

from ..rng import index_seed


def _worker_seed(seed: int) -> int:
    """``seed`` made specific to the current DataLoader worker (``seed`` itself outside workers).

    DataLoader workers start as copies of the main process, so a generator created there runs the same
    stream in every worker, and again in every epoch when workers are restarted. PyTorch gives each worker
    a fresh ``seed`` per epoch (derived from ``torch.manual_seed`` or the DataLoader's ``generator``), so
    mixing it in makes workers and epochs differ while staying reproducible under a fixed torch seed.
    """
    import torch.utils.data

    info = torch.utils.data.get_worker_info()
    if info is None:
        return seed
    return index_seed(seed, info.seed % 2**63, stream="dataloader-worker")
