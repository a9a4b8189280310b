"""The YOLO object detector (ultralytics, AGPL-3.0, an optional extra: ``pip install 'defectgen[yolo]'``).

``YOLODetector(class_names=["scratch"], image_size=320).fit(source, epochs=50, out="run").predict(images)``;
see ``docs/yolo.md`` for what the wrapper decides (data in the run folder, fresh synthetic defects every epoch,
offline, seeded, resumable). This package imports without ultralytics; creating a detector needs it.
"""
from .detector import DEFAULT_MODEL, FORMAT, YOLODetector
from .offline import MISSING
from .run_folder import RUN_STATE

__all__ = ["YOLODetector", "FORMAT", "DEFAULT_MODEL", "MISSING", "RUN_STATE"]
