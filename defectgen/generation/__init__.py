"""NG data set generation: OK folder in, labelled YOLO / COCO / MVTec data set out (see :mod:`.engine`)."""
from .engine import GenerateSummary, generate, print_summary, regenerate

__all__ = ["GenerateSummary", "generate", "regenerate", "print_summary"]
