"""The NG data set generator behind ``defectgen generate`` and :func:`defectgen.generate`.

How it stays exact however the work is split:

* Item ``i`` takes its source image from the seeded source order (:mod:`.sources`) and its defect from its
  own seed ``index_seed(seed, i)`` (:mod:`defectgen.itemwise`), so it depends only on ``(seed, i)`` and
  the settings.
* Items are grouped into fixed *units* of ``batch_size`` consecutive indices (unit ``j`` = items
  ``j*batch_size ...``), the batches the operator paints at once. Shards, worker processes and resumed runs
  all work in whole units, so even an iterative solver sees the same batches.
* A unit is done when its record (``.defectgen/units/*.json``) exists: it is written, atomically, after all
  of the unit's files. A killed run leaves at most some unfinished units, which the next ``resume`` redoes
  (:mod:`defectgen.run_folder`: the shards, records and settings check a study's folder uses too).
* The files that gather every item (``manifest.jsonl``, COCO JSON, ``data.yaml``, ``report.json``) are
  written from the records once every unit of the job is done, by whichever run completes it; they hold no
  time stamps, so the same job always gives the same bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..checks import check_channels, check_int, check_number, resolve_device
from ..rng import index_seed
from ..export.coco import SEGMENTATIONS, coco_annotation, coco_dataset, instance_masks
from ..export.layout import FORMATS, OutputLayout
from ..export.yolo import yolo_data_yaml, yolo_label_text
from ..io.atomic import encode_png, link_or_copy_atomic, remove_temp_files, write_bytes_atomic, write_text_atomic
from ..itemwise import apply_itemwise, slice_params
from ..ops.base import DefectOp
from ..progress import Progress, format_seconds
from ..recipe import OpSpec, build_op, jsonable
from ..recipe import class_names as derive_class_names
from ..registry import create_op
from ..run_folder import check_shard, contiguous_share, differing_keys, name_keys, read_json, write_record
from ..version import __version__
from .job import JOB_FORMAT, chosen_defect, compact_params, write_json_text
from .sources import OkSources, Source

PathLike = Union[str, Path]


@dataclass
class GenerateSummary:
    """What a call to :func:`generate` did.

    Attributes:
        output: the output folder.
        generated: items (NG images, plus OK copies for the MVTec layout) written by this call.
        total: items of the whole job; ``done`` of them exist now.
        complete: every unit of the job is done and the manifest, labels and report are written.
        skipped_files: unreadable input files (relative path -> reason), replaced by other sources.
        seconds: wall time of this call.
    """

    output: Path
    generated: int
    total: int
    done: int
    complete: bool
    skipped_files: Dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.generated / self.seconds if self.seconds > 0 else 0.0


class _Job:
    """Everything a process needs to make and write any unit of the job (pickled to worker processes)."""

    def __init__(self, op: DefectOp, names: Dict[int, str], sources: OkSources, layout: OutputLayout,
                 settings: Dict[str, Any], device: torch.device, write_threads: int = 1):
        self.op, self.names, self.sources, self.layout, self.settings = op, names, sources, layout, settings
        self.device, self.write_threads = device, write_threads
        self.count, self.batch_size = settings["count"], settings["batch_size"]
        self.formats = set(settings["formats"])
        self.n_val = _val_count(self.count, settings["val_fraction"])
        self.n_train = self.count - self.n_val
        self.width = max(6, len(str(self.count - 1)))
        self.yolo_index = {cid: k for k, cid in enumerate(sorted(names))}
        # the MVTec test split: the validation items when there are any, so an anomaly model trained on
        # train/good is tested on backgrounds it never saw; otherwise every item
        self.mvtec_test_split = "val" if self.n_val else "train"

    # -- units ----------------------------------------------------------------------------------------------
    def units(self) -> List[Tuple[str, int]]:
        ng = [("ng", j) for j in range(-(-self.count // self.batch_size))]
        ok = [("ok", j) for j in range(-(-len(self.sources.entries) // self.batch_size))] \
            if "mvtec" in self.formats else []
        return ng + ok

    def unit_size(self, kind: str, number: int) -> int:
        total = self.count if kind == "ng" else len(self.sources.entries)
        return min(self.batch_size, total - number * self.batch_size)

    def item_split(self, index: int) -> Tuple[str, int]:
        return ("train", index) if index < self.n_train else ("val", index - self.n_train)

    def item_name(self, index: int) -> str:
        return f"{index:0{self.width}d}"

    # -- synthesis --------------------------------------------------------------------------------------------
    def synthesise(self, number: int) -> List[Dict[str, Any]]:
        """Unit ``number``'s items: source, seed, image, mask, boxes, labels and params (nothing written)."""
        start = number * self.batch_size
        items = []
        for index in range(start, start + self.unit_size("ng", number)):
            split, position = self.item_split(index)
            source, image = self.sources.pick(split, position)
            items.append({"index": index, "split": split, "source": source, "ok": image,
                          "seed": index_seed(self.settings["seed"], index)})
        shapes: Dict[Tuple[int, ...], List[int]] = {}
        for k, item in enumerate(items):  # images of one size form one batch
            shapes.setdefault(item["ok"].shape, []).append(k)
        for members in shapes.values():
            batch = torch.from_numpy(np.stack([items[k]["ok"] for k in members])).permute(0, 3, 1, 2)
            out = apply_itemwise(self.op, batch.to(self.device), [items[k]["seed"] for k in members])
            images = out.image.permute(0, 2, 3, 1).cpu().numpy()
            masks = out.mask[:, 0].cpu().numpy()
            boxes, box_index, box_label = out.boxes.cpu().numpy(), out.box_index.cpu().numpy(), \
                out.box_label.cpu().numpy()
            labels = out.label.cpu().tolist()
            for j, k in enumerate(members):
                name, params = chosen_defect(self.op, slice_params(out.params, j))
                items[k].update(image=images[j], mask=masks[j], label=labels[j], boxes=boxes[box_index == j],
                                box_label=box_label[box_index == j].tolist(), op=name if labels[j] else None,
                                params=compact_params(params))
        return items

    # -- writing ----------------------------------------------------------------------------------------------
    def run_units(self, units: List[Tuple[str, int]], done: Callable[[str, int], None]) -> None:
        """Make and write ``units`` in order, calling ``done(kind, number)`` as each one's record is written.

        A pipeline: while threads encode and write unit ``j``'s files, this thread already synthesises unit
        ``j + 1`` (torch releases the GIL too), so the operator's time hides behind the file writes. A unit's
        record is written only after all of its files, and at most two units are in flight.
        """
        threads = max(1, self.write_threads)
        with ThreadPoolExecutor(threads) as pool:
            inflight: Deque[Tuple[str, int, List[Future]]] = deque()
            for kind, number in units:
                if kind == "ng":
                    work, items = self._write_item, self.synthesise(number)
                else:
                    work, items = self._write_ok_item, self._ok_sources(number)
                inflight.append((kind, number, [pool.submit(work, item) for item in items]))
                while len(inflight) > 1:
                    self._finish(*inflight.popleft(), done)
            while inflight:
                self._finish(*inflight.popleft(), done)

    def _finish(self, kind: str, number: int, futures: List[Future], done: Callable[[str, int], None]) -> None:
        items = [r for r in (f.result() for f in futures) if r is not None]
        self._write_record(kind, number, items)
        done(kind, number)

    def run_unit(self, kind: str, number: int) -> Dict[str, Any]:
        """Make and write one unit; returns its record (already written to the state folder)."""
        if kind == "ng":
            items = self._map(self._write_item, self.synthesise(number))
        else:
            items = [r for r in self._map(self._write_ok_item, self._ok_sources(number)) if r is not None]
        return self._write_record(kind, number, items)

    def _write_record(self, kind: str, number: int, items: List[Dict[str, Any]]) -> Dict[str, Any]:
        record = {"kind": kind, "unit": number, "items": items, "skipped": dict(self.sources.skipped)}
        write_record(self.layout.unit_record(kind, number), record)
        return record

    def _map(self, function, items: List[Any]) -> List[Any]:
        """``[function(item) ...]`` on ``write_threads`` threads (PNG encoding and file writes release the
        GIL); each item's files are independent, so the output is the same with any number of threads."""
        if self.write_threads <= 1 or len(items) <= 1:
            return [function(item) for item in items]
        with ThreadPoolExecutor(self.write_threads) as pool:
            return list(pool.map(function, items))

    def _write_item(self, item: Dict[str, Any]) -> Dict[str, Any]:
        layout = self.layout
        split, name, label = item["split"], self.item_name(item["index"]), item["label"]
        height, width = item["image"].shape[:2]
        image_bytes = encode_png(item["image"])
        mask_bytes = encode_png(item["mask"].astype(np.uint8) * 255)
        files = [layout.image(split, name), layout.mask(split, name)]
        write_bytes_atomic(files[0], image_bytes)
        write_bytes_atomic(files[1], mask_bytes)
        if "yolo" in self.formats:
            files.append(layout.yolo_label(split, name))
            write_text_atomic(files[-1], yolo_label_text(
                item["boxes"], [self.yolo_index[c] for c in item["box_label"]], width, height))
        if "mvtec" in self.formats and split == self.mvtec_test_split:
            if label:
                defect = self.names[label]
                links = [(files[0], layout.mvtec_test(defect, name)), (files[1], layout.mvtec_truth(defect, name))]
            else:
                links = [(files[0], layout.mvtec_good("val", name))]
            for target, link in links:
                link_or_copy_atomic(target, link)
                files.append(link)
        record = {
            "index": item["index"], "name": name, "split": split, "width": width, "height": height,
            "source": self.sources.describe(item["source"]), "seed": item["seed"], "op": item["op"],
            "label": label, "class": self.names.get(label) if label else None,
            "boxes": [[round(float(v), 3) for v in box] + [cls] for box, cls in
                      zip(item["boxes"], item["box_label"])],
            "params": item["params"],
            "sha256": hashlib.sha256(image_bytes).hexdigest(),
            "mask_sha256": hashlib.sha256(mask_bytes).hexdigest(),
            "files": [layout.relative(f) for f in files],
        }
        if "coco" in self.formats:
            instances = instance_masks(item["mask"], item["boxes"])
            record["coco"] = [dict(coco_annotation(m, box, self.settings["segmentation"]), category_id=cls)
                              for m, box, cls in zip(instances, item["boxes"], item["box_label"])]
        return record

    def _ok_sources(self, number: int) -> List[Source]:
        """Unit ``number`` of the OK copies for the MVTec layout (train/good for training sources, test/good
        for held-out ones)."""
        start = number * self.batch_size
        return self.sources.entries[start:start + self.unit_size("ok", number)]

    def _write_ok_item(self, source: Source) -> Optional[Dict[str, Any]]:
        if self.sources.relative[source.file] in self.sources.skipped:
            return None
        try:
            image = self.sources.load(source)
        except ValueError as error:
            self.sources.mark_bad(source.file, error)
            return None
        split = self.sources.splits[source.file]
        path = self.layout.mvtec_good(split, "ok_" + self.sources.name(source))
        data = encode_png(image)
        write_bytes_atomic(path, data)
        return {"name": path.stem, "split": split, "source": self.sources.describe(source),
                "sha256": hashlib.sha256(data).hexdigest(), "files": [self.layout.relative(path)]}

    # -- the files that gather every item ---------------------------------------------------------------------
    def finalise(self, records: List[Dict[str, Any]]) -> Dict[str, Any]:
        layout = self.layout
        ng = sorted((item for r in records if r["kind"] == "ng" for item in r["items"]), key=lambda i: i["index"])
        ok = sorted((item for r in records if r["kind"] == "ok" for item in r["items"]), key=lambda i: i["name"])
        skipped: Dict[str, str] = {}
        for r in records:
            skipped.update(r["skipped"])
        skipped.update(self.sources.skipped)
        lines = [_manifest_line("ng", item) for item in ng] + [_manifest_line("ok", item) for item in ok]
        write_text_atomic(layout.manifest, "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))
        splits = ["train"] + (["val"] if self.n_val else [])
        if "coco" in self.formats:
            for split in splits:
                entries = [{"id": item["index"] + 1, "file_name": f"{item['name']}.png", "width": item["width"],
                            "height": item["height"], "annotations": item["coco"]}
                           for item in ng if item["split"] == split]
                write_text_atomic(layout.coco(split), json.dumps(coco_dataset(entries, self.names)))
        if "yolo" in self.formats:
            names = [self.names[c] for c in sorted(self.names)]
            write_text_atomic(layout.yolo_data, yolo_data_yaml(
                names, "images/train", "images/val" if self.n_val else "images/train"))
        per_class: Dict[str, int] = {}
        for item in ng:
            key = item["class"] or "good"
            per_class[key] = per_class.get(key, 0) + 1
        report = {"images": len(ng), "ok_images": len(ok), "per_class": per_class,
                  "per_split": {s: sum(item["split"] == s for item in ng) for s in splits},
                  "boxes": sum(len(item["boxes"]) for item in ng), "skipped_files": skipped,
                  "class_names": {str(k): v for k, v in self.names.items()}}
        write_text_atomic(layout.report, write_json_text(report))
        remove_temp_files(layout.root)
        return report


def _manifest_line(kind: str, item: Dict[str, Any]) -> Dict[str, Any]:
    line = {"kind": kind, "image": item["files"][0], "split": item["split"], "source": item["source"],
            "sha256": item["sha256"]}
    if kind == "ng":
        line.update(index=item["index"], mask=item["files"][1], mask_sha256=item["mask_sha256"], seed=item["seed"],
                    op=item["op"], label=item["label"], **{"class": item["class"]}, boxes=item["boxes"],
                    params=item["params"])
    return line


def _val_count(count: int, val_fraction: float) -> int:
    if val_fraction == 0 or count < 2:
        return 0
    return min(count - 1, max(1, round(val_fraction * count)))


# -- worker processes -------------------------------------------------------------------------------------------
_WORKER_JOB: Optional[_Job] = None


def _init_worker(job: _Job, threads: int) -> None:
    global _WORKER_JOB
    torch.set_num_threads(threads)
    _WORKER_JOB = job


def _run_in_worker(kind: str, number: int) -> Dict[str, Any]:
    assert _WORKER_JOB is not None
    return _WORKER_JOB.run_unit(kind, number)


# -- the public entry point ---------------------------------------------------------------------------------------
def generate(input: PathLike, output: PathLike, ops: Union[OpSpec, Sequence[OpSpec], None] = None, *,
             recipe: Optional[PathLike] = None, count: int, formats: Sequence[str] = ("yolo",), seed: int = 0,
             size: Optional[int] = 256, tile: Optional[int] = None, channels: int = 3, val_fraction: float = 0.0,
             batch_size: int = 16, workers: int = 1, device: str = "auto", shard: Optional[Tuple[int, int]] = None,
             resume: bool = False, overwrite: bool = False, segmentation: str = "rle",
             class_names: Optional[Union[Sequence[str], Mapping[int, str]]] = None,
             progress: Optional[bool] = None, write_threads: Optional[int] = None) -> GenerateSummary:
    """Make a labelled NG data set of ``count`` images from a folder of OK images.

    Args:
        input: folder of OK images, read recursively (png, jpg, bmp, tif; 8/16-bit; gray, RGB, RGBA). Never
            written to.
        output: the data set folder (layout: :mod:`defectgen.export.layout`). Must be empty or missing,
            unless ``resume`` or ``overwrite``.
        ops: operator name(s), config dict(s) or object(s); several are one class each (1..K, in order) and
            each image gets one of them. Or give ``recipe`` instead.
        recipe: a YAML operator config (e.g. ``recipes/*.yaml``), optionally with ``class_names``.
        count: number of NG images.
        formats: any of ``"yolo"``, ``"coco"``, ``"mvtec"``; images and masks are always written.
        seed: item ``i`` depends only on ``(seed, i)`` and these settings.
        size: resize every OK image (or tile) to ``size x size``; None keeps native sizes.
        tile: cut OK images into ``tile x tile`` squares first (each tile is a source image).
        channels: 1 (gray) or 3 (RGB) output images.
        val_fraction: share of the OK *files* (and of the outputs) held out as the ``val`` split.
        batch_size: images per batch through the operator; part of the job (it fixes which images share a
            batch), so keep it when resuming.
        workers: processes that make batches in parallel (1: this process only).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        shard: ``(k, n)``: make only the k-th of n equal slices of the job (0-based), e.g. one per machine;
            shards may share the output folder, or their folders can be merged and finished with ``resume``.
        resume: continue the job found in ``output`` (same settings) where it stopped.
        overwrite: delete a previous defectgen output in ``output`` first (never a folder defectgen did not
            make).
        segmentation: COCO segmentation format, ``"rle"`` (exact) or ``"polygon"``.
        class_names: names for classes 1..K (list) or ``{id: name}``; default: the operators' names.
        progress: show a progress bar on stderr (default: when stderr is a terminal).
        write_threads: threads per process that encode and write files (default: the CPU count over
            ``workers``, at most 4); the output does not depend on it.

    Raises:
        ValueError: bad settings, no readable input image, output folder problems; the message says which.
    """
    started = time.perf_counter()
    workers = check_int(workers, "workers", 1)
    shard = check_shard(shard)
    torch_device = resolve_device(device)
    spec = open_job(input, output, ops, recipe=recipe, count=count, formats=formats, seed=seed, size=size, tile=tile,
                    channels=channels, val_fraction=val_fraction, batch_size=batch_size, segmentation=segmentation,
                    class_names=class_names, device_type=str(torch_device.type), resume=resume, overwrite=overwrite,
                    sharded=shard is not None)
    layout = spec.layout
    # threads per process: torch's and the file writers' share of the cores
    threads = max(1, (os.cpu_count() or 1) // workers)
    write_threads = min(4, threads) if write_threads is None else check_int(write_threads, "write_threads", 1)
    job = _Job(spec.op, spec.names, spec.sources, layout, spec.settings, torch_device, write_threads)

    units = job.units()
    mine = units if shard is None else [u for part in _shard_units(units, shard) for u in part]
    todo = [u for u in mine if _done_record(layout, *u) is None]
    mine_items = sum(job.unit_size(*u) for u in mine)
    bar = Progress(mine_items, mine_items - sum(job.unit_size(*u) for u in todo), enabled=progress)
    generated = 0

    def done(kind: str, number: int) -> None:
        nonlocal generated
        generated += job.unit_size(kind, number)
        bar.update(job.unit_size(kind, number))

    if workers == 1 or len(todo) <= 1:
        job.run_units(todo, done)
    else:
        _run_pool(job, todo, workers, threads, done)
    bar.close()

    summary = _gather(job)
    summary.generated, summary.seconds = generated, time.perf_counter() - started
    return summary


@dataclass
class JobSpec:
    """A job's checked settings and what they build (:func:`open_job`): the operator, the class names, the OK
    sources and the output layout."""

    op: DefectOp
    names: Dict[int, str]
    sources: OkSources
    layout: OutputLayout
    settings: Dict[str, Any]


def open_job(input: PathLike, output: PathLike, ops: Union[OpSpec, Sequence[OpSpec], None] = None, *,
             recipe: Optional[PathLike] = None, count: int, formats: Sequence[str] = ("yolo",), seed: int = 0,
             size: Optional[int] = 256, tile: Optional[int] = None, channels: int = 3, val_fraction: float = 0.0,
             batch_size: int = 16, segmentation: str = "rle",
             class_names: Optional[Union[Sequence[str], Mapping[int, str]]] = None, device_type: str = "cpu",
             resume: bool = False, overwrite: bool = False, sharded: bool = False) -> JobSpec:
    """Check a job's settings (the arguments of :func:`generate`) and prepare its output folder for a run on
    ``device_type`` (``"cpu"`` / ``"cuda"``): ``job.json`` written for a new job, a folder of another job refused,
    ``overwrite`` applied. Makes no image; ``sharded``: a job folder of the same settings is welcome without
    ``resume`` (shards share it). Raises ``ValueError`` naming the bad setting or the folder problem."""
    count = check_int(count, "count", 1)
    seed = check_int(seed, "seed")
    batch_size = check_int(batch_size, "batch_size", 1)
    size = None if size is None else check_int(size, "size", 1)
    tile = None if tile is None else check_int(tile, "tile", 1)
    channels = check_channels(channels)
    val_fraction = check_number(val_fraction, "val_fraction", 0.0, 0.9)
    formats = _check_formats(formats)
    if segmentation not in SEGMENTATIONS:
        raise ValueError(f"segmentation must be one of {SEGMENTATIONS}, got {segmentation!r}")
    input_dir, output_dir = Path(input), Path(output)
    _check_folders(input_dir, output_dir)

    op, recipe_names = build_op(ops, recipe)
    names = derive_class_names(op, class_names if class_names is not None else recipe_names)
    sources = OkSources(input_dir, size, tile, channels, seed, val_fraction)
    settings = {
        "format": JOB_FORMAT, "op": jsonable(op.to_config()), "class_names": {str(k): v for k, v in names.items()},
        "seed": seed, "count": count, "size": size, "tile": tile, "channels": channels,
        "val_fraction": val_fraction, "formats": formats, "batch_size": batch_size, "segmentation": segmentation,
        "input": {"files": len(sources.files), "fingerprint": sources.fingerprint()},
    }
    layout = OutputLayout(output_dir)
    _prepare_output(layout, settings, device_type, resume, overwrite, sharded, input_dir.resolve())
    return JobSpec(op, names, sources, layout, settings)


def _gather(job: _Job, finalise: bool = True) -> GenerateSummary:
    """The job's state from its unit records; when every unit is done, its gathered files (manifest, labels,
    report) written (unless ``finalise`` is False: they were). ``generated`` and ``seconds`` are the caller's."""
    units = job.units()
    records = {u: _done_record(job.layout, *u) for u in units}
    done_units = [u for u, record in records.items() if record is not None]
    complete = len(done_units) == len(units)
    skipped = dict(job.sources.skipped)
    if complete:
        report = job.finalise(list(records.values())) if finalise else json.loads(job.layout.report.read_text())
        skipped = report["skipped_files"]
    return GenerateSummary(output=job.layout.root, generated=0, total=sum(job.unit_size(*u) for u in units),
                           done=sum(job.unit_size(*u) for u in done_units), complete=complete, skipped_files=skipped)


def finish_job(output: PathLike) -> GenerateSummary:
    """The state of the job in ``output``; if every unit is done and the gathered files (manifest, labels,
    report) are not written yet, they are: what the last shard to finish does, here for shards that ran elsewhere
    (:mod:`.shard_tasks`). Makes no image."""
    job = _saved_job(output, device=torch.device("cpu"))  # gathering records uses no device
    return _gather(job, finalise=not job.layout.report.is_file())


def manifest_digest(output: PathLike) -> str:
    """The SHA-256 of a finished data set's ``manifest.jsonl``: one line per output with its sha256 and no time
    stamp, so two runs made the same data set exactly when their digests are equal (however they were split)."""
    path = OutputLayout(Path(output)).manifest
    if not path.is_file():
        raise ValueError(f"{str(output)!r} holds no finished data set (no {path.name})")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_pool(job: _Job, todo: List[Tuple[str, int]], workers: int, threads: int,
              done: Callable[[str, int], None]) -> None:
    """Units on ``workers`` spawned processes, each with ``threads`` torch threads; the skipped files they
    find are gathered here for the report."""
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(job, threads)) as pool:
        pending = {pool.submit(_run_in_worker, *unit): unit for unit in todo}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                kind, number = pending.pop(future)
                record = future.result()
                for rel, reason in record["skipped"].items():
                    job.sources.skipped.setdefault(rel, reason)
                done(kind, number)


def regenerate(output: PathLike, index: int, input: Optional[PathLike] = None,
               ops: Union[OpSpec, Sequence[OpSpec], None] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Make item ``index`` of a generated data set again, from its ``job.json``: ``(image HWC, mask HW)``.

    The result is byte for byte what was written (compare PNG encodings, or ``manifest.jsonl``'s sha256), so a
    data set can be audited or rebuilt from its manifest. ``input`` defaults to the folder the job was made
    from; ``ops`` is needed only when the job's operator was given as a Python object that has no config.
    """
    job = _saved_job(output, input, ops)
    index = check_int(index, "index", 0)
    if index >= job.count:
        raise ValueError(f"index must be below the job's count {job.count}, got {index}")
    item = job.synthesise(index // job.batch_size)[index % job.batch_size]
    return item["image"], item["mask"]


def _saved_job(output: PathLike, input: Optional[PathLike] = None, ops: Union[OpSpec, Sequence[OpSpec], None] = None,
               device: Optional[torch.device] = None) -> _Job:
    """The job in ``output`` rebuilt from its ``job.json`` (see :func:`regenerate` for ``input`` and ``ops``), on
    ``device`` (default: the one it was made on)."""
    layout = OutputLayout(Path(output))
    try:
        saved = json.loads(layout.job.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{str(output)!r} is not a defectgen output folder (cannot read {layout.job}): {error}") \
            from None
    settings = saved["settings"]
    if ops is None:
        try:
            op = create_op(settings["op"])
        except (ValueError, TypeError) as error:
            raise ValueError(f"cannot rebuild the job's operator from job.json ({error}); pass ops=") from None
    else:
        op, _ = build_op(ops, None)
        if jsonable(op.to_config()) != settings["op"]:
            raise ValueError("ops= is not the operator this job was made with")
    names = {int(k): v for k, v in settings["class_names"].items()}
    sources = OkSources(Path(input or saved["input_folder"]), settings["size"], settings["tile"],
                        settings["channels"], settings["seed"], settings["val_fraction"])
    if sources.fingerprint() != settings["input"]["fingerprint"]:
        raise ValueError("the input folder's files differ from the ones the job was made from")
    return _Job(op, names, sources, layout, settings, device or resolve_device(saved["device"]))


# -- checks and the output folder ----------------------------------------------------------------------------------
def _check_formats(formats: Sequence[str]) -> List[str]:
    if isinstance(formats, str):
        formats = [formats]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown format(s) {unknown}; choose from {list(FORMATS)}")
    return sorted(set(formats))


def _shard_units(units: List[Tuple[str, int]], shard: Tuple[int, int]) -> List[List[Tuple[str, int]]]:
    """The shard's contiguous slice of the NG units and of the OK units."""
    return [contiguous_share([u for u in units if u[0] == kind], shard) for kind in ("ng", "ok")]


def _check_folders(input_dir: Path, output_dir: Path) -> None:
    if not input_dir.is_dir():
        raise ValueError(f"input folder {str(input_dir)!r} does not exist or is not a directory")
    inp, out = input_dir.resolve(), output_dir.resolve()
    if out == inp or inp in out.parents:
        raise ValueError(f"output folder {str(output_dir)!r} is inside the input folder; defectgen never writes "
                         "into its input (choose an output folder elsewhere)")
    if out in inp.parents:
        raise ValueError(f"input folder {str(input_dir)!r} is inside the output folder; choose folders apart")
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {str(output_dir)!r} exists and is not a directory")


def _prepare_output(layout: OutputLayout, settings: Dict[str, Any], device: str, resume: bool, overwrite: bool,
                    sharded: bool, input_folder: Path) -> None:
    if resume and overwrite:
        raise ValueError("pass either resume or overwrite, not both")
    root = layout.root
    saved = None
    if root.is_dir() and any(root.iterdir()):
        if not layout.job.is_file():
            raise ValueError(f"output folder {str(root)!r} is not empty and is not a defectgen output; choose an "
                             "empty or new folder" + (" (overwrite only deletes defectgen outputs)" if overwrite
                                                      else ""))
        if overwrite:
            shutil.rmtree(root)
        else:
            try:
                saved = json.loads(layout.job.read_text())
            except ValueError:
                raise ValueError(f"{str(layout.job)!r} is damaged; use overwrite to start again") from None
            if not (resume or sharded):
                raise ValueError(f"output folder {str(root)!r} already holds a defectgen job; pass resume to "
                                 "continue it or overwrite to replace it")
            differ = differing_keys(saved["settings"], settings, nested=False)
            if differ:
                raise ValueError(f"output folder {str(root)!r} holds a different job (settings differ in: "
                                 f"{name_keys(differ)}); use another output folder, or overwrite")
            if saved["device"] != device:
                raise ValueError(f"this job was made on {saved['device']!r}; continue it on the same kind of "
                                 f"device (device={saved['device']!r}) so its images match")
    if saved is None:
        job = {"defectgen": __version__, "device": device, "input_folder": str(input_folder), "settings": settings}
        write_text_atomic(layout.job, write_json_text(job))


def _done_record(layout: OutputLayout, kind: str, number: int) -> Optional[Dict]:
    """The unit's record if the unit is done (its record exists and so do all the files it lists), else None."""
    # a damaged record cannot happen with atomic writes, but it would just mean "not done"
    record = read_json(layout.unit_record(kind, number))
    if record is None:
        return None
    files_exist = all((layout.root / f).is_file() for item in record["items"] for f in item["files"])
    return record if files_exist else None


def print_summary(summary: GenerateSummary, stream=None) -> None:
    stream = stream or sys.stdout
    rate = f"{summary.images_per_s:.1f} img/s" if summary.generated else "nothing left to make"
    state = "complete" if summary.complete else f"{summary.done}/{summary.total} done (other shards pending)"
    print(f"{summary.output}: {summary.generated} images in {format_seconds(summary.seconds)} ({rate}); "
          f"job {state}", file=stream)
    if summary.skipped_files:
        print(f"skipped {len(summary.skipped_files)} unreadable input file(s):", file=stream)
        for rel, reason in sorted(summary.skipped_files.items()):
            print(f"  {rel}: {reason}", file=stream)
