"""COCO detection / instance segmentation annotations.

One JSON per split: ``images`` (id, file_name, size), ``categories`` (the defect classes, ids as the
operators label them, so class 1 is category 1), ``annotations`` (one per defect instance: ``bbox`` as
``[x, y, w, h]`` pixels, ``area`` = the instance's pixel count, ``iscrowd`` 0 and a segmentation).

Segmentations are uncompressed RLE by default: exact, holes and all, and read by pycocotools, torchvision,
detectron2 and mmdetection. Polygons are offered for tools that read nothing else; they trace each
connected part's outer boundary through pixel centres, so they lose holes and about half a pixel of edge.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import cv2
import numpy as np

SEGMENTATIONS = ("rle", "polygon")


def mask_to_rle(mask: np.ndarray) -> Dict[str, Any]:
    """COCO's uncompressed RLE of an ``(H, W)`` bool mask: run lengths in column-major order, zeros first."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    flat = mask.ravel(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1                  # where a run starts, after the first
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:                                   # the first run counted must be zeros
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    """Outer boundaries of the mask's connected parts as COCO polygons ``[x1, y1, x2, y2, ...]``.

    Points are pixel centres (``+0.5``: COCO coordinates put pixel ``x`` on ``[x, x + 1]``). A part too
    small for a polygon (one pixel, or one row or column of pixels traced as a line) becomes its box.
    """
    mask = np.ascontiguousarray(np.asarray(mask, dtype=np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        points = contour.reshape(-1, 2).astype(np.float64)
        if len(points) < 3 or cv2.contourArea(contour) == 0:
            x, y, w, h = cv2.boundingRect(contour)
            points = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)
        else:
            points = points + 0.5
        polygons.append([round(float(v), 2) for v in points.ravel()])
    return polygons


def instance_masks(mask: np.ndarray, boxes: np.ndarray) -> List[np.ndarray]:
    """One ``(H, W)`` bool mask per box: the connected parts of ``mask`` lying inside that box.

    Operators report one box per defect instance, and an instance is one or several connected parts (a
    pasted patch, a Perlin blob, a transplanted crack with splinters). A part belongs to the boxes that
    contain its bounding box; where instances overlap and their parts merge, so that no part fits inside a
    box, the instance is the mask cropped to its box.
    """
    mask = np.asarray(mask, dtype=bool)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 1:  # boxes enclose the mask's instances, so a single instance is the whole mask
        return [mask]
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    x1, y1 = stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_TOP]
    x2, y2 = x1 + stats[1:, cv2.CC_STAT_WIDTH], y1 + stats[1:, cv2.CC_STAT_HEIGHT]
    out = []
    for box in boxes:
        bx1, by1, bx2, by2 = np.floor(box[:2]).astype(int).tolist() + np.ceil(box[2:]).astype(int).tolist()
        inside = np.flatnonzero((x1 >= bx1) & (y1 >= by1) & (x2 <= bx2) & (y2 <= by2)) + 1
        if inside.size:
            out.append(np.isin(labels, inside))
        else:
            cropped = np.zeros_like(mask)
            cropped[max(by1, 0):by2, max(bx1, 0):bx2] = mask[max(by1, 0):by2, max(bx1, 0):bx2]
            out.append(cropped)
    return out


def coco_annotation(instance: np.ndarray, box: Sequence[float], segmentation: str) -> Dict[str, Any]:
    """The image-independent part of one annotation (``id``, ``image_id`` and ``category_id`` are added by
    :func:`coco_dataset`)."""
    if segmentation not in SEGMENTATIONS:
        raise ValueError(f"segmentation must be one of {SEGMENTATIONS}, got {segmentation!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    return {"bbox": [x1, y1, x2 - x1, y2 - y1], "area": int(instance.sum()), "iscrowd": 0,
            "segmentation": mask_to_rle(instance) if segmentation == "rle" else mask_to_polygons(instance)}


def coco_dataset(images: Sequence[Dict[str, Any]], categories: Dict[int, str]) -> Dict[str, Any]:
    """A COCO dataset dict from per-image entries.

    Args:
        images: in id order, each ``{"id", "file_name", "width", "height", "annotations": [...]}`` where
            every annotation is :func:`coco_annotation` plus ``"category_id"``.
        categories: ``{category id: name}``.

    Annotation ids are numbered 1, 2, ... in image order, so the file is the same on every run.
    """
    out_images, annotations = [], []
    for entry in images:
        out_images.append({k: entry[k] for k in ("id", "file_name", "width", "height")})
        for annotation in entry["annotations"]:
            annotations.append({"id": len(annotations) + 1, "image_id": entry["id"], **annotation})
    return {
        "info": {"description": "synthetic defects made by defectgen", "version": "1.0"},
        "licenses": [],
        "categories": [{"id": int(k), "name": v, "supercategory": "defect"} for k, v in sorted(categories.items())],
        "images": out_images,
        "annotations": annotations,
    }
