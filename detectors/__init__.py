"""Built-in detectors that measure how well synthetic defects generalise to real ones.

- :mod:`detectors.cutpaste`: the CutPaste self-supervised anomaly detector (Li et al., CVPR 2021), trained on
  any defectgen operator as its pretext task.
- :mod:`detectors.metrics`: image / pixel AUROC, AP, F1-max and AUPRO, overall and per defect type.
- :mod:`detectors.data`, :mod:`detectors.evaluation`: reading MVTec-layout data, evaluating a detector and
  writing the JSON + Markdown report (also behind ``defectgen train`` / ``defectgen eval``).

Dependencies flow one way: detectors import defectgen, never the reverse.
"""
