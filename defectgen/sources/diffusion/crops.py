"""Square windows around masks, resampled to a model's resolution and back, for a whole batch at once.

Training and generation cut their crops with the same functions, so the model sees defects at the scale and
with the context it will be asked to fill. Boxes are ``(x0, y0, x1, y1)`` in pixel-edge coordinates (a box over
columns 3..5 is ``x0 = 3, x1 = 6``); resampling is one ``grid_sample`` per direction.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def square_boxes(boxes: torch.Tensor, context: float, min_side: float) -> torch.Tensor:
    """Squares centred on ``boxes`` ``(N, 4)``, side ``max(w, h) * (1 + 2 * context)``, at least ``min_side``."""
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    side = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * (1 + 2 * context)
    half = side.clamp_min(min_side) / 2
    return torch.stack([centre_x - half, centre_y - half, centre_x + half, centre_y + half], dim=1)


def crop(images: torch.Tensor, boxes: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """``(N, C, size, size)`` windows ``boxes`` of ``images`` ``(N, C, H, W)`` (float); parts of a window past
    the image repeat its border."""
    n, _, height, width = images.shape
    side_x, side_y = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    theta = torch.zeros(n, 2, 3, device=images.device, dtype=torch.float32)
    # crop-normalised -> image-normalised (align_corners=False: pixel centres at (2i + 1) / size - 1)
    theta[:, 0, 0] = side_x / width
    theta[:, 0, 2] = (2 * boxes[:, 0] + side_x) / width - 1
    theta[:, 1, 1] = side_y / height
    theta[:, 1, 2] = (2 * boxes[:, 1] + side_y) / height - 1
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    return F.grid_sample(images.float(), grid, mode=mode, padding_mode="border", align_corners=False)


def uncrop(crops: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Put ``crops`` ``(N, C, R, R)`` back at ``boxes`` on an ``height x width`` canvas (zero outside the boxes)."""
    n = crops.shape[0]
    side_x, side_y = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    theta = torch.zeros(n, 2, 3, device=crops.device, dtype=torch.float32)
    # image-normalised -> crop-normalised: the inverse of crop()'s map
    theta[:, 0, 0] = width / side_x
    theta[:, 0, 2] = (width - 2 * boxes[:, 0]) / side_x - 1
    theta[:, 1, 1] = height / side_y
    theta[:, 1, 2] = (height - 2 * boxes[:, 1]) / side_y - 1
    grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
    return F.grid_sample(crops.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
