"""YOLO (ultralytics / darknet) labels: one text file per image, one ``class cx cy w h`` line per box.

Coordinates are box centre and size as fractions of the image size; classes are 0-based indices into the
``names`` of ``data.yaml``. An image without defects gets an empty label file, which YOLO trainers read as a
background image.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np


def yolo_label_text(boxes: np.ndarray, classes: Sequence[int], width: int, height: int) -> str:
    """The label file of one image: ``boxes`` ``(n, 4)`` xyxy pixels, ``classes`` 0-based YOLO indices."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(classes) != len(boxes):
        raise ValueError(f"need one class per box: {len(classes)} classes for {len(boxes)} boxes")
    lines = []
    for (x1, y1, x2, y2), cls in zip(boxes, classes):
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        w, h = (x2 - x1) / width, (y2 - y1) / height
        lines.append(f"{int(cls)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines)


def yolo_data_yaml(names: List[str], train: str, val: str) -> str:
    """``data.yaml`` for ultralytics. It has no ``path:`` key, so ultralytics takes the folder holding the
    file as the data set root and the data set can be moved or copied as a whole."""
    lines = ["# YOLO data set written by defectgen; paths are relative to this file's folder",
             f"train: {train}", f"val: {val}", f"nc: {len(names)}", "names:"]
    lines += [f"  {i}: {_quote(name)}" for i, name in enumerate(names)]
    return "\n".join(lines) + "\n"


def _quote(name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
