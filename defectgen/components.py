"""Boxes of mask instances: connected components (8-connectivity) of a batch of masks, batched.

Whole-image masks (Perlin blobs, confetti) hold several separate defects per image; each connected region
gets its own box. On CPU it is one OpenCV call over the whole batch stacked into a tall image; on other devices
it runs on the device by iterated 3x3 minimum propagation with pointer jumping, which converges in a few
dozen steps for blob-like shapes, then one scatter-min/max over the labels. Neither loops over the batch or
the components.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F


def label_components(region: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` int64: for every foreground pixel a component id (unique within its image, in
    ``0..H*W-1``: the flat index of the component's smallest pixel), -1 on the background."""
    fg = region[:, 0]
    if fg.numel() == 0:
        return torch.full_like(fg, -1, dtype=torch.long)
    return _label_propagate(fg)


def _boxes_opencv(fg: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """CPU: the images stacked into one tall image with an empty row between neighbours, so one
    ``cv2.connectedComponentsWithStats`` call labels the whole batch and reports every box."""
    import cv2

    b, h, w = fg.shape
    tall = np.zeros((b, h + 1, w), dtype=np.uint8)
    tall[:, :h] = fg.numpy()
    _, _, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(tall.reshape(b * (h + 1), w), 8, cv2.CV_32S,
                                                                   cv2.CCL_DEFAULT)
    stats = torch.from_numpy(stats[1:, :4].astype(np.int64))  # row 0 is the background
    left, top, width, height = stats.unbind(1)
    index, y1 = top // (h + 1), top % (h + 1)
    return _canonical_order(torch.stack([left, y1, left + width, y1 + height], dim=1), index)


def _canonical_order(boxes: torch.Tensor, index: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sort by (image, y1, x1, y2, x2), so CPU and device labelling list the same boxes in the same order."""
    order = torch.arange(len(index), device=index.device)
    for key in (boxes[:, 2], boxes[:, 3], boxes[:, 0], boxes[:, 1], index):
        order = order[torch.argsort(key[order], stable=True)]
    return boxes[order].float().contiguous(), index[order]


def _label_propagate(fg: torch.Tensor) -> torch.Tensor:
    b, h, w = fg.shape
    n = h * w
    # float32 holds every id exactly up to 2**24 pixels per image
    big = float(n)
    own = torch.arange(n, device=fg.device, dtype=torch.float32).view(1, h, w).expand(b, h, w)
    lab = torch.where(fg, own, big).unsqueeze(1)
    fg4 = fg.unsqueeze(1)
    while True:
        m = -F.max_pool2d(-lab, 3, stride=1, padding=1)
        m = torch.where(fg4, m, big)
        # pointer jumping: take the label of the pixel our label points at, which halves chains each step
        idx = m.view(b, n).long().clamp_max(n - 1)
        jumped = torch.gather(m.view(b, n), 1, idx).view(b, 1, h, w)
        new = torch.where(fg4, torch.minimum(m, jumped), big)
        if torch.equal(new, lab):
            break
        lab = new
    return torch.where(fg, lab[:, 0].long(), -1)


def component_boxes(region: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Tight xyxy boxes (pixel edges, float32) of every connected component of a ``(B, 1, H, W)`` mask.

    Returns ``(boxes (N, 4), box_index (N,))``, sorted by image.
    """
    b, _, h, w = region.shape
    if region.numel() == 0:
        return torch.zeros(0, 4, device=region.device), torch.zeros(0, dtype=torch.long, device=region.device)
    if region.device.type == "cpu":
        return _boxes_opencv(region[:, 0])
    return _boxes_propagate(region)


def _boxes_propagate(region: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    b, _, h, w = region.shape
    labels = label_components(region)
    n = h * w
    flat = labels.view(b, n)
    fg = flat >= 0
    pixel = torch.arange(n, device=region.device).expand(b, n)
    slot = (torch.arange(b, device=region.device).view(b, 1) * n + flat.clamp_min(0))[fg]
    rows, cols = (pixel // w)[fg], (pixel % w)[fg]
    boxes = torch.empty(4, b * n, dtype=torch.long, device=region.device)
    boxes[0].fill_(w), boxes[1].fill_(h), boxes[2].fill_(-1), boxes[3].fill_(-1)
    boxes[0].scatter_reduce_(0, slot, cols, reduce="amin")
    boxes[1].scatter_reduce_(0, slot, rows, reduce="amin")
    boxes[2].scatter_reduce_(0, slot, cols + 1, reduce="amax")
    boxes[3].scatter_reduce_(0, slot, rows + 1, reduce="amax")
    roots = torch.nonzero(boxes[2] >= 0).squeeze(1)
    return _canonical_order(boxes[:, roots].t(), roots // n)


def mask_boxes(region: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """One tight box per image around all of its mask pixels: ``(boxes (B, 4), non_empty (B,))``."""
    b, _, h, w = region.shape
    rows = region[:, 0].any(2)
    cols = region[:, 0].any(1)
    non_empty = rows.any(1)
    r = torch.arange(h, device=region.device)
    c = torch.arange(w, device=region.device)
    y1 = torch.where(rows, r, h).amin(1) if h else torch.zeros(b, dtype=torch.long, device=region.device)
    y2 = torch.where(rows, r + 1, 0).amax(1) if h else y1
    x1 = torch.where(cols, c, w).amin(1) if w else y1
    x2 = torch.where(cols, c + 1, 0).amax(1) if w else y1
    boxes = torch.stack([x1, y1, x2, y2], dim=1).float()
    return torch.where(non_empty.unsqueeze(1), boxes, 0.0), non_empty
