"""Labelled sets: one in-memory type (:class:`LabelledSet`) and readers for every supported format.

- :func:`read_labelled` (:mod:`.readers`): YOLO, COCO, MVTec, Pascal VOC and DeepPCB pairs into one
  :class:`LabelledSet`; one module per format, :mod:`.problems` for the label problems they report,
  :func:`parse_class_map` to rename classes between sets.
- :func:`choose_real`: the one rule that picks K images of a set by seed (``defectgen fit``,
  ``defectgen train --real-count`` and studies all call it, so they pick the same images).

The detectors import these from here; nothing here imports ``detectors``.
"""
from .classmap import ClassMap, parse_class_map
from .coco import read_coco
from .labelled_set import AGNOSTIC_CLASS, LabelledSet, choose_real
from .mvtec import read_mvtec_labelled
from .pairs import read_deeppcb, read_templates
from .problems import LabelProblemWarning
from .readers import FORMATS, LAYOUTS, detect_format, read_labelled
from .voc import read_voc
from .yolo import read_yolo

__all__ = ["LabelledSet", "AGNOSTIC_CLASS", "choose_real", "FORMATS", "LAYOUTS", "read_labelled", "detect_format",
           "read_yolo", "read_coco", "read_mvtec_labelled", "read_voc", "read_deeppcb", "read_templates",
           "LabelProblemWarning", "ClassMap", "parse_class_map"]
