"""Where every file of a generated data set goes.

::

    out/
      images/<split>/<name>.png          defective (or, with p < 1, untouched) images      (always)
      masks/<split>/<name>.png           binary defect mask, 0 / 255                        (always)
      labels/<split>/<name>.txt          YOLO boxes                                         (yolo)
      data.yaml                          YOLO data set file with the class names            (yolo)
      annotations/instances_<split>.json COCO boxes + segmentations                         (coco)
      mvtec/train/good/ok_<source>.png   OK images of the training sources                  (mvtec)
      mvtec/test/<defect>/<name>.png     defective images, by class (hard links, no copy)   (mvtec)
      mvtec/ground_truth/<defect>/<name>_mask.png                                           (mvtec)
      manifest.jsonl                     one line per output: source, operator, params, seed, sha256
      report.json                        counts, skipped input files, timing of the last run
      .defectgen/                        the job's settings and per-batch records (resume state)

YOLO and COCO share ``images/``; ultralytics finds ``labels/<split>`` next to ``images/<split>``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FORMATS = ("yolo", "coco", "mvtec")
SPLITS = ("train", "val")


@dataclass(frozen=True)
class OutputLayout:
    root: Path

    def image(self, split: str, name: str) -> Path:
        return self.root / "images" / split / f"{name}.png"

    def mask(self, split: str, name: str) -> Path:
        return self.root / "masks" / split / f"{name}.png"

    def yolo_label(self, split: str, name: str) -> Path:
        return self.root / "labels" / split / f"{name}.txt"

    @property
    def yolo_data(self) -> Path:
        return self.root / "data.yaml"

    def coco(self, split: str) -> Path:
        return self.root / "annotations" / f"instances_{split}.json"

    def mvtec_good(self, split: str, name: str) -> Path:
        """A normal image: ``train/good`` for training sources, ``test/good`` otherwise."""
        return self.root / "mvtec" / ("train" if split == "train" else "test") / "good" / f"{name}.png"

    def mvtec_test(self, defect: str, name: str) -> Path:
        return self.root / "mvtec" / "test" / defect / f"{name}.png"

    def mvtec_truth(self, defect: str, name: str) -> Path:
        return self.root / "mvtec" / "ground_truth" / defect / f"{name}_mask.png"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.jsonl"

    @property
    def report(self) -> Path:
        return self.root / "report.json"

    @property
    def state(self) -> Path:
        return self.root / ".defectgen"

    @property
    def job(self) -> Path:
        return self.state / "job.json"

    def unit_record(self, kind: str, number: int) -> Path:
        return self.state / "units" / f"{kind}-{number:06d}.json"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()
