"""Faster R-CNN (torchvision) trained on synthetic or real defect boxes: :class:`FasterRCNNDetector`."""
from .detector import FORMAT, FasterRCNNDetector
from .network import BACKBONES, build_faster_rcnn

__all__ = ["FasterRCNNDetector", "FORMAT", "BACKBONES", "build_faster_rcnn"]
