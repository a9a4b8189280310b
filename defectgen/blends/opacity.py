"""Opacity and feathered blends for whole-image regions (DRAEM-style texture blending, soft transplants)."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ..checks import check_number, check_range
from ..rng import uniform
from ..registry import register_part
from .base import Blend


@register_part("blend", "opacity")
class Opacity(Blend):
    """Mix the fill over the image with a random per-sample opacity: ``image + opacity * (fill - image)``.

    DRAEM (Zavrtanik et al., ICCV 2021) blends its texture as ``beta * image + (1 - beta) * texture`` with
    ``beta ~ U[0, 0.8)``; here the defect's weight is named, so its default is ``opacity ~ U(0.2, 1]``.

    Args:
        opacity_range: the opacity's range; uniform over it unless ``opacity_std`` is given.
        opacity_mean: with ``opacity_std``, the mean of the normal the opacity is drawn from (default: the
            middle of ``opacity_range``).
        opacity_std: draw the opacity from a normal of this standard deviation, clipped to ``opacity_range``
            (GLASS: ``beta`` from N(0.5, 0.1) clipped to [0.2, 0.8], so the opacity ``1 - beta`` too).
    """

    def __init__(self, opacity_range: Tuple[float, float] = (0.2, 1.0), opacity_mean: Optional[float] = None,
                 opacity_std: Optional[float] = None):
        self.opacity_range = check_range(opacity_range, "opacity_range", 0.0, 1.0)
        if self.opacity_range[1] <= 0:
            raise ValueError("opacity_range must allow a visible defect (max > 0)")
        self.opacity_std = None if opacity_std is None else check_number(opacity_std, "opacity_std", 0.0)
        if opacity_mean is not None and opacity_std is None:
            raise ValueError("opacity_mean needs opacity_std (without it the opacity is uniform over opacity_range)")
        self.opacity_mean = None if opacity_mean is None else check_number(opacity_mean, "opacity_mean", 0.0, 1.0)

    def sample(self, n, generator):
        lo, hi = self.opacity_range
        if self.opacity_std is not None:
            mean = (lo + hi) / 2 if self.opacity_mean is None else self.opacity_mean
            normal = torch.randn(n, generator=generator, device=generator.device)
            return {"opacity": (normal * self.opacity_std + mean).clamp_(lo, hi)}
        # drawn as 1 - U[1 - hi, 1 - lo) so the default is exactly DRAEM's 1 - beta, beta ~ U[0, 0.8)
        return {"opacity": 1.0 - uniform(n, (1.0 - hi, 1.0 - lo), generator)}

    def blend_region(self, images, fill, coverage, params, max_value):
        weight = coverage * params["opacity"].view(-1, 1, 1, 1).to(coverage)
        return torch.lerp(images, fill, weight), weight > 0


@register_part("blend", "feather")
class Feather(Blend):
    """Replace with a soft edge: the coverage is Gaussian-blurred (``sigma_px``) before mixing.

    The blur spreads the edge outward by up to ``3 * sigma_px``; those pixels are part of the defect's mask,
    so the mask still marks every changed pixel. Used to paste real defects without a visible cut line.
    """

    def __init__(self, sigma_px: float = 1.5):
        self.sigma_px = check_number(sigma_px, "sigma_px", 0.0)

    def blend_region(self, images, fill, coverage, params, max_value):
        if self.sigma_px == 0:
            return torch.lerp(images, fill, coverage), coverage > 0
        soft = gaussian_blur(coverage, self.sigma_px)
        # keep the original coverage where it was full, so the defect's core is not washed out
        soft = torch.maximum(soft, coverage)
        # below half a grey level out of 255 the tail changes nothing visible: cut it, keep the mask tight
        soft = torch.where(soft >= 0.5 / 255, soft, 0.0)
        return torch.lerp(images, fill, soft), soft > 0


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a ``(B, C, H, W)`` float tensor, radius ``3 * sigma``, zero padding.

    A plain sum of shifted taps rather than ``conv2d``: on CPU the oneDNN convolution gives batch-size
    dependent rounding, and an operator's output for an image must not depend on what else is in the batch.
    """
    radius = max(1, int(round(3 * sigma)))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = (kernel / kernel.sum()).tolist()
    height, width = x.shape[-2:]
    padded = F.pad(x, (radius, radius, 0, 0))
    rows = sum(k * padded[..., :, i:i + width] for i, k in enumerate(kernel))
    padded = F.pad(rows, (0, 0, radius, radius))
    return sum(k * padded[..., i:i + height, :] for i, k in enumerate(kernel))
