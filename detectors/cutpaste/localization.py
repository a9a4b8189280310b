"""Turning a detector's scores into pixel anomaly maps.

- :func:`patch_grid` / :func:`gaussian_upsample`: the patch-level variant. Every ``P x P`` patch on a grid of
  stride ``s`` gets a score; each pixel's value is the average of the scores of the patches covering it,
  weighted by a Gaussian centred on each patch (sigma = P / 4), so a patch's score counts most at its centre
  and the map is smooth instead of blocky. Both sums are one transposed convolution each.
- :func:`grad_cam`: Grad-CAM (Selvaraju et al. 2017) of the image-level anomaly score. The last conv block's
  channels are weighted by the spatial mean of the score's gradient; the positive part of the weighted sum,
  upsampled, is the map. Values are not normalised per image, so maps stay comparable across images (pixel
  AUROC compares pixels of different images).
"""
from __future__ import annotations

from typing import Callable, Tuple

import torch
import torch.nn.functional as F


def grid_size(size: int, patch: int, stride: int) -> int:
    """Patches per side on an image of side ``size``; the grid must tile it exactly."""
    if patch > size:
        raise ValueError(f"patch size {patch} is larger than the image ({size} px)")
    if (size - patch) % stride:
        raise ValueError(f"patches of {patch} px with stride {stride} do not tile {size} px images exactly: "
                         f"(size - patch) must be a multiple of the stride")
    return (size - patch) // stride + 1


def patch_grid(images: torch.Tensor, patch: int, stride: int) -> torch.Tensor:
    """All ``patch x patch`` crops on a grid of ``stride``: ``(B * G * G, C, patch, patch)``, row-major per image."""
    b, c, h, w = images.shape
    if h != w:
        raise ValueError(f"patch-level scoring needs square images, got {h}x{w}")
    g = grid_size(h, patch, stride)
    crops = images.unfold(2, patch, stride).unfold(3, patch, stride)  # (B, C, G, G, P, P)
    return crops.permute(0, 2, 3, 1, 4, 5).reshape(b * g * g, c, patch, patch)


def _gaussian_kernel(patch: int, sigma: float, device, dtype) -> torch.Tensor:
    centre = (patch - 1) / 2
    axis = torch.exp(-0.5 * ((torch.arange(patch, device=device, dtype=dtype) - centre) / sigma) ** 2)
    return (axis[:, None] * axis[None, :])[None, None]


def gaussian_upsample(scores: torch.Tensor, patch: int, stride: int, sigma: float = None) -> torch.Tensor:
    """Patch scores ``(B, 1, G, G)`` -> pixel map ``(B, 1, S, S)`` with ``S = (G - 1) * stride + patch``.

    Each pixel is ``sum_k w_k(p) s_k / sum_k w_k(p)`` over the patches ``k`` covering it, ``w_k`` a Gaussian
    of ``sigma`` (default ``patch / 4``) centred on patch ``k``.
    """
    sigma = patch / 4 if sigma is None else sigma
    kernel = _gaussian_kernel(patch, sigma, scores.device, scores.dtype)
    weighted = F.conv_transpose2d(scores, kernel, stride=stride)
    weights = F.conv_transpose2d(torch.ones_like(scores), kernel, stride=stride)
    return weighted / weights


def grad_cam(feature_map_fn: Callable[[torch.Tensor], torch.Tensor], score_fn: Callable[[torch.Tensor], torch.Tensor],
             images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM maps ``(B, 1, H, W)`` of ``score_fn(feature_map_fn(images))`` (one score per image), and the
    scores ``(B,)`` themselves (detached), which the forward pass computes anyway.

    Each image's score depends only on its own features (the network must be in eval mode), so the gradient
    of the summed scores gives every image its own gradient in one backward pass.
    """
    with torch.enable_grad():
        features = feature_map_fn(images).detach().requires_grad_(True)
        scores = score_fn(features)
        (grads,) = torch.autograd.grad(scores.sum(), features)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * features.detach()).sum(1, keepdim=True))
    return F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False), scores.detach()
