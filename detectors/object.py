"""The object detectors and their box metrics under one import:
``from detectors.object import FasterRCNNDetector, YOLODetector, evaluate_boxes``.

YOLODetector imports without ultralytics and asks for it when created (``pip install 'defectgen[yolo]'``).
"""
from .metrics import evaluate_boxes, format_box_markdown, rescale_boxes
from .rcnn import FasterRCNNDetector
from .yolo import YOLODetector

__all__ = ["FasterRCNNDetector", "YOLODetector", "evaluate_boxes", "format_box_markdown", "rescale_boxes"]
