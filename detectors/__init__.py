"""Built-in detectors that measure how well synthetic defects generalise to real ones.

- :mod:`detectors.cutpaste`: the CutPaste self-supervised anomaly detector (Li et al., CVPR 2021), trained on
  any defectgen operator as its pretext task.
- :mod:`detectors.rcnn` (Faster R-CNN, torchvision) and :mod:`detectors.yolo` (YOLO, ultralytics, an optional
  extra): object detectors trained on synthetic defects, real labels or both; :mod:`detectors.object` imports
  both with their box metrics.
- :mod:`detectors.types`: the shared data types, :class:`~detectors.types.LabelledSet` and
  :class:`~detectors.types.Prediction`; :mod:`detectors.registry`: ``create_detector`` / ``load_detector``;
  :mod:`defectgen.training`: the training loop the torch detectors share.
- :mod:`detectors.data`: normal images, labelled sets in every supported format, training sources.
- :mod:`detectors.metrics` and :mod:`detectors.evaluation`: image / pixel AUROC, AUPRO, COCO mAP, and the one
  evaluator and report format behind ``defectgen eval``.

Dependencies flow one way: detectors import defectgen, never the reverse.
"""
