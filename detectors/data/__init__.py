"""Data for the detectors: normal images, labelled sets in every supported format, and training batches.

- :mod:`~detectors.data.normal`: defect-free training images and MVTec-layout test sets (anomaly detectors).
- :func:`read_labelled` (:mod:`~detectors.data.readers`): YOLO, COCO, MVTec, Pascal VOC and DeepPCB pairs into
  one :class:`~detectors.types.LabelledSet`; one module per format, :mod:`~detectors.data.problems` for the
  label problems they report, :func:`parse_class_map` to rename classes between sets.
- :mod:`~detectors.data.sources`: the training batches of object detectors, from on-the-fly defects, a
  generated folder, real labels, or a mix.
"""
from .classmap import ClassMap, parse_class_map
from .coco import read_coco
from .mvtec import read_mvtec_labelled
from .normal import ImageSource, load_normal_images, load_test_set
from .pairs import read_deeppcb, read_templates
from .problems import LabelProblemWarning
from .readers import FORMATS, LAYOUTS, detect_format, read_labelled
from .sources import (LabelledSource, MixedSource, SyntheticSource, choose_real, epoch_order, mix,
                      source_from_folder)
from .voc import read_voc
from .yolo import read_yolo

__all__ = ["ImageSource", "load_normal_images", "load_test_set",
           "FORMATS", "LAYOUTS", "read_labelled", "detect_format", "read_yolo", "read_coco", "read_mvtec_labelled",
           "read_voc", "read_deeppcb", "read_templates", "LabelProblemWarning", "ClassMap", "parse_class_map",
           "LabelledSource", "SyntheticSource", "MixedSource", "choose_real", "mix", "source_from_folder",
           "epoch_order"]
