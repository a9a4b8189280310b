"""Writers for the label formats detectors read: YOLO, COCO and the MVTec AD folder layout.

The functions here turn one image's mask, boxes and classes into format-specific data; where each file goes
is :mod:`defectgen.export.layout`, and the generation engine (:mod:`defectgen.generation`) decides when.
Masks are written binary: an operator's graded target (``DefectBatch.target``, e.g. NSA's soft labels) is not
exported.
"""
from .coco import coco_dataset, instance_masks, mask_to_polygons, mask_to_rle
from .layout import FORMATS, OutputLayout
from .yolo import yolo_data_yaml, yolo_label_text

__all__ = ["FORMATS", "OutputLayout", "coco_dataset", "instance_masks", "mask_to_polygons", "mask_to_rle",
           "yolo_data_yaml", "yolo_label_text"]
