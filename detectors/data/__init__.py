"""Data for the detectors: normal images and the training batches of object detectors.

- :mod:`~detectors.data.normal`: defect-free training images and MVTec-layout test sets (anomaly detectors).
- :mod:`~detectors.data.sources`: the training batches of object detectors, from on-the-fly defects, a
  generated folder, real labels, or a mix.
- labelled sets and their readers (:func:`read_labelled`, YOLO, COCO, MVTec, Pascal VOC, DeepPCB pairs) live in
  :mod:`defectgen.io.labelled` (the defect fitting reads them too); they are re-exported here.
"""
from defectgen.io.labelled import (FORMATS, LAYOUTS, ClassMap, LabelProblemWarning, choose_real, detect_format,
                                   parse_class_map, read_coco, read_deeppcb, read_labelled, read_mvtec_labelled,
                                   read_templates, read_voc, read_yolo)

from .normal import ImageSource, load_normal_images, load_test_set
from .sources import (DEFAULT_FINETUNE_START, DEFAULT_REAL_FRACTION, DEFAULT_REPLAY_FRACTION, DEFAULT_SCHEDULE,
                      SCHEDULES, LabelledSource, MixedSource, SyntheticSource, check_mixing, epoch_order, mix,
                      source_from_folder, steps_for, steps_per_epoch, steps_to_see, training_batches)

__all__ = ["ImageSource", "load_normal_images", "load_test_set",
           "FORMATS", "LAYOUTS", "read_labelled", "detect_format", "read_yolo", "read_coco", "read_mvtec_labelled",
           "read_voc", "read_deeppcb", "read_templates", "LabelProblemWarning", "ClassMap", "parse_class_map",
           "LabelledSource", "SyntheticSource", "MixedSource", "choose_real", "mix", "source_from_folder",
           "epoch_order", "training_batches", "steps_for", "steps_to_see", "steps_per_epoch", "check_mixing",
           "DEFAULT_REAL_FRACTION", "DEFAULT_SCHEDULE", "DEFAULT_REPLAY_FRACTION", "DEFAULT_FINETUNE_START",
           "SCHEDULES"]
