"""Per-sample colour jitter as one linear colour transform.

Brightness, contrast, saturation and hue are each linear in RGB (hue as a rotation about the grey diagonal
of the RGB cube), so the four compose into one 3x3 matrix plus an offset per sample, applied to each pixel
with three multiply-adds per channel. That keeps it cheap enough for every CutPaste patch in a training loop:
on 64 windows of 182x182 px (2 CPU cores) the whole jitter takes 19 ms where kornia's exact HSV hue shift
alone takes 68 ms (``python benchmarks/bench_kernels.py``).

Differences from ``torchvision.transforms.ColorJitter``: the order is fixed (brightness, contrast,
saturation, hue) instead of random; values are clamped once at the end instead of after every step (so
brightness, contrast and saturation alone match torchvision to float precision); and hue turns colours
about the grey axis instead of shifting H in HSV. Both keep greys fixed and move hues the same way round
(the two colour changes have a cosine of 0.80-0.89, printed by the same script), but HSV keeps each pixel's
max and min channel while the rotation keeps its mean, so per pixel they differ by about as much as the
shift itself.
"""
from __future__ import annotations

import math
from typing import Dict

import torch

from ..checks import check_number
from .._config import Configurable
from ..rng import uniform
from ..grey import LUMA
from ..patch_pixels import PatchPixels

# ITU-R 601 luma, as torchvision's rgb_to_grayscale


class ColourJitter(Configurable):
    """Random brightness, contrast, saturation and hue, each of the given strength.

    Factors are drawn uniformly from ``[1 - s, 1 + s]`` (hue: a shift in ``[-hue, hue]`` of a full turn),
    matching ``ColorJitter(brightness, contrast, saturation, hue)``. Contrast pulls towards the mean grey of
    the patch's own pixels, as jittering a cropped patch does.
    """

    def __init__(self, brightness: float = 0.1, contrast: float = 0.1, saturation: float = 0.1,
                 hue: float = 0.1):
        self.brightness = check_number(brightness, "brightness", 0.0, 1.0)
        self.contrast = check_number(contrast, "contrast", 0.0, 1.0)
        self.saturation = check_number(saturation, "saturation", 0.0, 1.0)
        self.hue = check_number(hue, "hue", 0.0, 0.5)

    def sample(self, n: int, generator: torch.Generator) -> Dict[str, torch.Tensor]:
        return {
            "brightness": uniform(n, (1 - self.brightness, 1 + self.brightness), generator),
            "contrast": uniform(n, (1 - self.contrast, 1 + self.contrast), generator),
            "saturation": uniform(n, (1 - self.saturation, 1 + self.saturation), generator),
            "hue": uniform(n, (-self.hue, self.hue), generator),
        }

    @staticmethod
    def apply(values: torch.Tensor, pixels: PatchPixels, params: Dict[str, torch.Tensor],
              max_value: float) -> torch.Tensor:
        """Jitter the ``(C, N)`` float values of a ragged pixel list (in place where it can) and return them.

        Each pixel takes its sample's factors from ``params`` (``(B,)`` each). Contrast pulls towards the mean
        grey of the sample's defect pixels (``pixels.inside``).
        """
        b = params["brightness"].float()
        c = params["contrast"].float()
        channels = values.shape[0]
        if channels == 3:
            grey = torch.tensor(LUMA, dtype=values.dtype, device=values.device) @ values
        else:
            grey = values[0]
        if pixels.inside is None:
            sums = pixels.segment_sum(grey)
            counts = (pixels.start[1:] - pixels.start[:-1]).to(values.dtype)
        else:
            weight = pixels.inside.to(values.dtype)
            sums, counts = pixels.segment_sum(grey * weight), pixels.segment_sum(weight)
        offset = pixels.per_pixel((1 - c) * b * sums / counts.clamp_min(1.0))
        if channels == 1:
            return values.mul_(pixels.per_pixel(b * c)).add_(offset).clamp_(0, max_value)
        matrix = _saturation_hue_matrix(params["saturation"], params["hue"]) * (b * c).view(-1, 1, 1)
        m = pixels.per_pixel_channels(matrix.reshape(-1, 9))  # (9, N): row 3 * i + j is m[i, j] per pixel
        out = torch.empty_like(values)
        for i in range(3):  # out[i] = sum_j m[i, j] * v[j], on contiguous rows
            torch.mul(m[3 * i], values[0], out=out[i])
            out[i].addcmul_(m[3 * i + 1], values[1]).addcmul_(m[3 * i + 2], values[2])
        return out.add_(offset).clamp_(0, max_value)


def _saturation_hue_matrix(saturation: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)`` matrices: blend with grey by ``saturation``, then turn by ``hue`` turns about grey."""
    device = saturation.device
    s = saturation.double().view(-1, 1, 1)
    luma = torch.tensor(LUMA, dtype=torch.float64, device=device)
    eye = torch.eye(3, dtype=torch.float64, device=device)
    sat = s * eye + (1 - s) * luma.view(1, 1, 3).expand(1, 3, 3)
    # Rodrigues' rotation about the unit grey axis k = (1, 1, 1) / sqrt(3)
    t = (hue.double() * 2 * math.pi).view(-1, 1, 1)
    k = torch.full((3,), 1 / math.sqrt(3), dtype=torch.float64, device=device)
    cross = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]], dtype=torch.float64,
                         device=device) / math.sqrt(3)
    rotation = t.cos() * eye + t.sin() * cross + (1 - t.cos()) * torch.outer(k, k)
    return (rotation @ sat).float()
