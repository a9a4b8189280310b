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


class RegionMask(Configurable):
    """Samples whole-image defect masks: Perlin blobs, shapes, confetti, transplanted real defects.

    ``sample`` draws ``(B, ...)`` parameter tensors on the generator's device; ``draw`` turns them into a
    ``(B, 1, H, W)`` float32 coverage in [0, 1] on ``device`` (0 = untouched; fractional values are soft
    edges, e.g. anti-aliased shapes); ``place`` moves positioned shapes onto a foreground (operators also
    clip the coverage to it). ``instances`` says how boxes are made: ``"components"`` gives one box per
    connected region (Perlin blobs, confetti), ``"one"`` one box per image around the whole defect.
    """

    instances: str = "components"

    def sample(self, n: int, height: int, width: int, generator: torch.Generator) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def draw(self, params: Dict[str, torch.Tensor], height: int, width: int, device: torch.device) -> torch.Tensor:
        raise NotImplementedError

    def place(self, params: Dict[str, torch.Tensor], foreground: torch.Tensor,
              generator: torch.Generator) -> Dict[str, torch.Tensor]:
        """Positioned masks move their shapes onto foreground pixels here; the default keeps the params."""
        return params

    def check_replay(self, params: Dict[str, torch.Tensor], batch: int, height: int, width: int) -> None:
        """Raise ValueError if replayed params cannot describe this mask on ``height x width`` images."""
