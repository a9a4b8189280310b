"""Reading data for the detectors: normal training images and labelled MVTec-layout test sets.

Both build on :mod:`defectgen.io`, so anything ``defectgen generate --format mvtec`` writes is read the same
way as MVTec AD itself (``train/good``, ``test/<type>``, ``ground_truth/<type>/<stem>_mask.png``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from defectgen.io import load_folder, read_mvtec
from defectgen.io.mvtec import GOOD, MVTecBatch

ImageSource = Union[str, Path, torch.Tensor]


def load_normal_images(source: ImageSource, size: int, channels: int, limit: Optional[int] = None) -> torch.Tensor:
    """Normal (defect-free) training images as a ``(N, channels, size, size)`` uint8 batch.

    ``source`` is an MVTec-layout root (its ``train/good`` is used), any folder of images (searched
    recursively), or a ``(N, C, H, W)`` tensor (uint8, or float in [0, 1]) already at ``size x size``.
    """
    if isinstance(source, torch.Tensor):
        if source.ndim != 4 or source.shape[-1] != size or source.shape[-2] != size:
            raise ValueError(f"training images must be a (N, C, {size}, {size}) tensor, got {tuple(source.shape)}")
        return source[:limit] if limit else source
    root = Path(source)
    if not root.is_dir():
        raise ValueError(f"training data {str(root)!r} is not a directory")
    folder = root / "train" / GOOD if (root / "train" / GOOD).is_dir() else root
    images = load_folder(folder, size, limit=limit, channels=channels)
    if len(images) == 0:
        raise ValueError(f"no images found under {str(folder)!r}")
    return images


def load_test_set(root: Union[str, Path], size: int, channels: int,
                  defects: Optional[Sequence[str]] = None) -> MVTecBatch:
    """The ``test/`` split of an MVTec-layout folder, resized to ``size``: images, masks, labels, defect types.

    Raises ``ValueError`` when the folder has no ``test/`` or a defective image has no mask.
    """
    layout = read_mvtec(root, defects, require_test=True)
    return layout.load_test(size=size, channels=channels)
