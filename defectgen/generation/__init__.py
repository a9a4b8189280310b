"""NG data set generation: OK folder in, labelled YOLO / COCO / MVTec data set out (see :mod:`.engine`)."""
from .engine import GenerateSummary, generate, parse_shard, print_summary, regenerate
from .job import build_op, class_names

__all__ = ["GenerateSummary", "generate", "regenerate", "parse_shard", "print_summary", "build_op", "class_names"]
