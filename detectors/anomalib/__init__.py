"""The detector table's ``anomalib`` kind: any anomalib image model, offline, scored by defectgen's evaluator.

``AnomalibDetector(model="Padim", backbone="resnet18", backbone_weights="backbone.pt").fit(folder)``; see
:mod:`.detector`. anomalib (``pip install 'defectgen[anomalib]'``) is imported only when a model is built.
"""
from .detector import FORMAT, AnomalibDetector

__all__ = ["AnomalibDetector", "FORMAT"]
