"""Contact sheets of an operator's output, for checking by eye that defects look right and labels line up.

A preview shows, per sample, the input, the defective output, and the output with the mask tinted and the
boxes drawn, so a reviewer can see at a glance whether the mask covers the painted pixels and whether the boxes
are tight. Rendering is plain numpy / OpenCV on the CPU: it runs once per preview, not in a training loop.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import cv2
import numpy as np
import torch

from .checks import check_images, check_int
from .result import DefectBatch

ClassNames = Union[Sequence[str], Mapping[int, str]]

_ROW_TITLES = ("input", "defect", "mask + boxes")
_MASK_RGB = np.array([255, 0, 0], dtype=np.float32)
_MASK_ALPHA = 0.45
_BOX_RGB = (0, 255, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TITLE_SCALE = 0.45


def _to_rgb_uint8(images: torch.Tensor) -> np.ndarray:
    """``(B, C, H, W)`` uint8 or float in [0, 1], gray or RGB, any device -> ``(B, H, W, 3)`` uint8 numpy."""
    images = images.detach().cpu()
    if images.dtype != torch.uint8:
        images = (images.float().clamp(0, 1) * 255).round().to(torch.uint8)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return np.ascontiguousarray(images.permute(0, 2, 3, 1).numpy())


def _class_text(label: int, class_names: Optional[ClassNames]) -> str:
    """The corner caption of a sample: its label id, followed by the class name when one is known."""
    if class_names is None:
        return str(label)
    if isinstance(class_names, Mapping):
        name = class_names.get(label)
    else:
        name = class_names[label] if 0 <= label < len(class_names) else None
    return f"{label} {name}" if name else str(label)


def _put_caption(cell: np.ndarray, text: str) -> None:
    """Write ``text`` in the top-left corner on a dark backing so it reads on any texture."""
    scale = max(0.3, min(cell.shape[:2]) / 400)
    (width, height), baseline = cv2.getTextSize(text, _FONT, scale, 1)
    cv2.rectangle(cell, (0, 0), (width + 3, height + baseline + 3), (0, 0, 0), cv2.FILLED)
    cv2.putText(cell, text, (2, height + 2), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)


def _annotate(output: np.ndarray, mask: np.ndarray, boxes: np.ndarray, caption: str) -> np.ndarray:
    """Tint ``output`` inside ``mask``, draw ``boxes`` (pixel-edge xyxy) and write ``caption``."""
    cell = output.astype(np.float32)
    # tint the luminance, not the colour: red blended over a cyan or blue defect would come out grey and vanish
    luminance = cv2.cvtColor(output, cv2.COLOR_RGB2GRAY).astype(np.float32)[mask][:, None]
    cell[mask] = (1 - _MASK_ALPHA) * luminance + _MASK_ALPHA * _MASK_RGB
    cell = np.ascontiguousarray(cell.round().astype(np.uint8))
    thickness = 1 if min(cell.shape[:2]) < 128 else 2
    for x1, y1, x2, y2 in np.round(boxes).astype(int):
        # the innermost ring lies on the defect's outermost pixels (x2, y2 are exclusive edges); thicker
        # rings grow outwards so they never hide the defect itself
        for ring in range(thickness):
            cv2.rectangle(cell, (x1 - ring, y1 - ring), (x2 - 1 + ring, y2 - 1 + ring), _BOX_RGB, 1)
    _put_caption(cell, caption)
    return cell


def preview_grid(images: torch.Tensor, result: DefectBatch, class_names: Optional[ClassNames] = None,
                 gutter: int = 4) -> np.ndarray:
    """Render ``result`` (the output of an operator applied to ``images``) as an ``(H, W, 3)`` uint8 RGB grid.

    One column per sample and three rows: the inputs, the defective outputs, and the outputs with the mask
    tinted red (a 45 % blend over the pixels' luminance) and the boxes drawn in green, the sample's label (and
    its name from ``class_names``, a list or dict indexed by label id) in the top-left corner. Rows are titled
    on the left; cells are separated by ``gutter`` px of white. Float images are expected in [0, 1].

    The grid is ``3 * H + 4 * gutter`` pixels high and ``title + B * (W + gutter) + 2 * gutter`` wide,
    where ``title`` is the width of the widest row title.
    """
    batch, _, height, width = check_images(images)
    gutter = check_int(gutter, "gutter", 0)
    if tuple(result.image.shape) != tuple(images.shape):
        raise ValueError(f"result.image has shape {tuple(result.image.shape)}, but images has "
                         f"{tuple(images.shape)}; pass the images the operator was applied to")
    inputs, outputs = _to_rgb_uint8(images), _to_rgb_uint8(result.image)
    masks = result.mask[:, 0].detach().cpu().numpy()
    labels = result.label.detach().cpu().tolist()
    boxes = result.boxes.detach().cpu().numpy()
    box_index = result.box_index.detach().cpu().numpy()

    title_sizes = [cv2.getTextSize(t, _FONT, _TITLE_SCALE, 1)[0] for t in _ROW_TITLES]
    title_width = max(w for w, _ in title_sizes)
    left = title_width + 2 * gutter
    grid = np.full((3 * height + 4 * gutter, left + batch * (width + gutter), 3), 255, dtype=np.uint8)
    for row, (title, (_, text_height)) in enumerate(zip(_ROW_TITLES, title_sizes)):
        top = gutter + row * (height + gutter)
        cv2.putText(grid, title, (gutter, top + (height + text_height) // 2), _FONT, _TITLE_SCALE, (0, 0, 0), 1,
                    cv2.LINE_AA)
    for i in range(batch):
        x = left + i * (width + gutter)
        annotated = _annotate(outputs[i], masks[i], boxes[box_index == i], _class_text(labels[i], class_names))
        for row, cell in enumerate((inputs[i], outputs[i], annotated)):
            y = gutter + row * (height + gutter)
            grid[y:y + height, x:x + width] = cell
    return grid


def save_png(array: np.ndarray, path: Union[str, Path]) -> Path:
    """Write an ``(H, W, 3)`` RGB (or ``(H, W)`` gray) uint8 array as a PNG, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), array):
        raise OSError(f"could not write PNG {str(path)!r}")
    return path
