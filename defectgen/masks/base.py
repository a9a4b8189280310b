"""The "where" part of a defect: samplers of patch shapes."""
from __future__ import annotations

from typing import Dict, Tuple

import torch

from .._config import Configurable


class MaskSampler(Configurable):
    """Samples one rotated-rectangle shape per sample.

    ``sample`` returns ``(B,)`` tensors on the generator's device: ``height_px`` and ``width_px`` (int64, the
    shape's own unrotated size) and ``angle_deg`` (float). ``extent_bound`` gives, from the configured ranges
    alone, the largest bounding box a sample can have on an ``height x width`` image (``size_bound``: the
    largest unrotated size); operators size their
    static rasterisation window from it and reject images that are too small.
    """

    #: True when every sampled angle is 0: operators then take the rasteriser's unrotated fast path
    axis_aligned: bool = False

    def sample(self, n: int, height: int, width: int, generator: torch.Generator) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def extent_bound(self, height: int, width: int) -> Tuple[float, float]:
        raise NotImplementedError

    def size_bound(self, height: int, width: int) -> Tuple[float, float]:
        """Largest unrotated ``(height_px, width_px)`` a sample can have."""
        return self.extent_bound(height, width)
