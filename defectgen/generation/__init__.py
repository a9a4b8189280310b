"""NG data set generation: OK folder in, labelled YOLO / COCO / MVTec data set out (see :mod:`.engine`); its shards
as tasks of an executor: :mod:`.shard_tasks`."""
from .engine import GenerateSummary, finish_job, generate, manifest_digest, print_summary, regenerate

__all__ = ["GenerateSummary", "generate", "regenerate", "print_summary", "finish_job", "manifest_digest"]
