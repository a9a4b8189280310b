"""Two augmented views of a batch, made batched on the images' device (kornia), seeded per training step.

SimCLR's recipe (Chen et al. 2020, appendix A: random resized crop, horizontal flip, colour jitter with
probability 0.8, grayscale with probability 0.2, Gaussian blur) scaled for industrial images:

- **milder crops** (scale 0.35-1 of the area instead of 0.08-1): an inspection image is one object or texture
  at a fixed pose, and the detectors see whole images; an 8 % crop of a bottle is a patch of plain glass, and
  matching it to another crop teaches little that transfers;
- **milder colour jitter** (brightness / contrast 0.4, saturation 0.2, hue 0.02 instead of 0.8 / 0.8 / 0.8 /
  0.2): a colour change *is* a defect in many parts (stains, burns, oxidation), so the features should not be
  made blind to it;
- blur with a kernel ~10 % of the image side and sigma 0.1-2 px scaled to the image (SimCLR's is for 224 px).

Every draw comes from the step's seed (:func:`defectgen.rng.index_seed`) inside a forked RNG, so a resumed run
makes the same views as an uninterrupted one, and the global random stream is left untouched.
"""
from __future__ import annotations

from typing import Tuple

import kornia.augmentation as K
import torch
from torch import nn

CROP_SCALE = (0.35, 1.0)
JITTER = dict(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.02)


class TwoViews(nn.Module):
    """``views(images, seed) -> (view1, view2)``: two independent augmentations of each image.

    Args:
        image_size: the side of the (square) output views.
        crop_scale: the random resized crop's area range (fraction of the image).
    Input: ``(B, C, H, W)`` float in [0, 1] (C = 1 or 3); output: two ``(B, C, image_size, image_size)`` tensors
    in [0, 1] on the same device.
    """

    def __init__(self, image_size: int, crop_scale: Tuple[float, float] = CROP_SCALE):
        super().__init__()
        self.image_size = int(image_size)
        kernel = max(3, (self.image_size // 10) | 1)  # odd, ~10 % of the side (SimCLR: 23 px at 224 px)
        sigma = (0.1, max(0.2, 2.0 * self.image_size / 224))
        self.augment = nn.Sequential(
            K.RandomResizedCrop((self.image_size, self.image_size), scale=crop_scale),
            K.RandomHorizontalFlip(),
            K.ColorJitter(**JITTER, p=0.8),
            K.RandomGrayscale(p=0.2),
            K.RandomGaussianBlur(kernel, sigma, p=0.5),
        )

    @torch.no_grad()
    def forward(self, images: torch.Tensor, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
        devices = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            gray = images.shape[1] == 1
            rgb = images.expand(-1, 3, -1, -1) if gray else images  # colour jitter needs three channels
            first, second = self.augment(rgb), self.augment(rgb)
        if gray:
            first, second = first.mean(1, keepdim=True), second.mean(1, keepdim=True)
        return first.clamp(0, 1).contiguous(), second.clamp(0, 1).contiguous()


__all__ = ["TwoViews", "CROP_SCALE", "JITTER"]
