"""Per-sample colour jitter as one linear colour transform.

Brightness, contrast, saturation and hue are each linear in RGB (hue as a rotation of the chroma plane in
YIQ space), so the four compose into one 3x3 matrix plus an offset per sample and the whole jitter is a
single batched ``einsum``. That makes it cheap enough to run on every CutPaste patch in a training loop.
Differences from ``torchvision.transforms.ColorJitter``: the order is fixed (brightness, contrast,
saturation, hue) instead of random, values are clamped once at the end instead of after every step, and
hue rotates chroma in YIQ rather than shifting H in HSV (same colours on the grey axis, close elsewhere).
"""
from __future__ import annotations

import math
from typing import Dict

import torch

from .._checks import check_number
from .._config import Configurable
from .._rng import uniform

# ITU-R 601 luma, as torchvision's rgb_to_grayscale
LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263],
                            [0.211456, -0.522591, 0.311135]], dtype=torch.float64)


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
    def apply(patch: torch.Tensor, weight: torch.Tensor, params: Dict[str, torch.Tensor],
              max_value: float) -> torch.Tensor:
        """Jitter ``(B, C, h, w)`` float patches; ``weight`` ``(B, 1, h, w)`` marks the pixels the mean uses."""
        b = params["brightness"].float().view(-1, 1, 1)
        c = params["contrast"].float().view(-1, 1, 1)
        weight = weight.to(patch.dtype)
        count = weight.sum(dim=(1, 2, 3)).clamp_min(1.0)
        if patch.shape[1] == 3:
            luma = torch.tensor(LUMA, dtype=patch.dtype, device=patch.device)
            grey = torch.einsum("c,bchw->bhw", luma, patch)
        else:
            grey = patch[:, 0]
        mean_grey = (grey * weight[:, 0]).sum(dim=(1, 2)) / count
        offset = ((1 - c) * b).view(-1) * mean_grey

        if patch.shape[1] == 1:
            out = patch * (b * c).view(-1, 1, 1, 1) + offset.view(-1, 1, 1, 1)
            return out.clamp_(0, max_value)
        matrix = _saturation_hue_matrix(params["saturation"], params["hue"]).to(patch.dtype) * (b * c)
        out = torch.einsum("bij,bjhw->bihw", matrix, patch) + offset.view(-1, 1, 1, 1)
        return out.clamp_(0, max_value)


def _saturation_hue_matrix(saturation: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)`` matrices: blend with grey by ``saturation``, then rotate chroma by ``hue`` turns."""
    device = saturation.device
    s = saturation.double().view(-1, 1, 1)
    luma = torch.tensor(LUMA, dtype=torch.float64, device=device)
    eye = torch.eye(3, dtype=torch.float64, device=device)
    sat = s * eye + (1 - s) * luma.view(1, 1, 3).expand(1, 3, 3)
    t = hue.double() * 2 * math.pi
    cos, sin = t.cos(), t.sin()
    rot = torch.zeros(len(t), 3, 3, dtype=torch.float64, device=device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = cos, -sin
    rot[:, 2, 1], rot[:, 2, 2] = sin, cos
    yiq = _RGB_TO_YIQ.to(device)
    hue_matrix = torch.linalg.inv(yiq) @ rot @ yiq
    return (hue_matrix @ sat).float()
