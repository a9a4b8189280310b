"""defectgen.generate / `defectgen generate`: determinism, shards, resume, corrupt inputs, errors, formats."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from defectgen import generate
from defectgen.cli import main
from defectgen.generation import regenerate
from defectgen.io import default_images, read_mvtec

REPO = Path(__file__).resolve().parents[1]


def write_ok_folder(folder: Path, count: int = 6, size: int = 48, gray_every: int = 0) -> Path:
    """A folder of OK PNGs (texture tiles), in a nested sub-folder too, some grayscale if asked."""
    folder.mkdir(parents=True, exist_ok=True)
    images = default_images(size, count)
    for i, image in enumerate(images):
        array = image.permute(1, 2, 0).numpy()[:, :, ::-1]
        if gray_every and i % gray_every == 0:
            array = cv2.cvtColor(array, cv2.COLOR_BGR2GRAY)
        path = folder / ("nested" if i % 3 == 2 else "") / f"ok_{i}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), array)
    return folder


def tree(root: Path, skip_state: bool = False) -> dict:
    """{relative path: bytes} of every file under root."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not (skip_state and rel.startswith(".defectgen")):
            out[rel] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def ok_dir(tmp_path_factory):
    return write_ok_folder(tmp_path_factory.mktemp("ok"))


BASE = dict(ops=["cutpaste", "scar"], count=22, formats=["yolo", "coco", "mvtec"], size=48, val_fraction=0.3,
            batch_size=4, seed=3, progress=False)


@pytest.fixture(scope="module")
def reference(ok_dir, tmp_path_factory):
    """One uninterrupted single-process run that the other runs must reproduce byte for byte."""
    out = tmp_path_factory.mktemp("ref") / "out"
    summary = generate(ok_dir, out, **BASE)
    assert summary.complete and summary.generated == summary.total == 22 + 6
    return out


# -- determinism ------------------------------------------------------------------------------------------------
def test_same_command_gives_identical_bytes(ok_dir, reference, tmp_path):
    generate(ok_dir, tmp_path / "again", **BASE)
    assert tree(tmp_path / "again") == tree(reference)


def test_item_depends_only_on_seed_and_index(ok_dir, reference, tmp_path):
    """A longer job with another batch size shares its first items' defects with the reference."""
    generate(ok_dir, tmp_path / "longer", **{**BASE, "count": 30, "batch_size": 3, "val_fraction": 0.0,
                                              "formats": ["yolo"]})
    ref = [json.loads(line) for line in (reference / "manifest.jsonl").read_text().splitlines()]
    longer = [json.loads(line) for line in (tmp_path / "longer" / "manifest.jsonl").read_text().splitlines()]
    # same (seed, index) -> same per-item seed; the source differs only through the split
    assert [r["seed"] for r in ref if r["kind"] == "ng"] == [r["seed"] for r in longer[:22]]
    generate(ok_dir, tmp_path / "other_seed", **{**BASE, "seed": 4})
    assert tree(tmp_path / "other_seed", True)["images/train/000000.png"] != tree(reference)["images/train/000000.png"]


def test_shards_in_separate_folders_merge_to_the_single_run(ok_dir, reference, tmp_path):
    merged = tmp_path / "merged"
    for k in range(3):
        part = tmp_path / f"shard{k}"
        summary = generate(ok_dir, part, **BASE, shard=(k, 3))
        assert not summary.complete and not (part / "manifest.jsonl").exists()
        shutil.copytree(part, merged, dirs_exist_ok=True)
    summary = generate(ok_dir, merged, **BASE, resume=True)  # finds every unit done: writes the gathered files
    assert summary.complete and summary.generated == 0
    assert tree(merged) == tree(reference)


def test_shards_sharing_a_folder(ok_dir, reference, tmp_path):
    out = tmp_path / "shared"
    assert not generate(ok_dir, out, **BASE, shard=(1, 2)).complete
    assert generate(ok_dir, out, **BASE, shard=(0, 2)).complete  # the last shard to finish completes the job
    assert tree(out) == tree(reference)


def test_worker_processes_give_the_same_output(ok_dir, reference, tmp_path):
    summary = generate(ok_dir, tmp_path / "workers", **BASE, workers=2)
    assert summary.complete
    assert tree(tmp_path / "workers") == tree(reference)


def test_resume_redoes_unfinished_units(ok_dir, reference, tmp_path):
    """A run that stopped between units, and one killed while writing: resume ends identical."""
    out = tmp_path / "resumed"
    shutil.copytree(reference, out)
    for path in [out / "manifest.jsonl", out / "annotations" / "instances_val.json",
                 out / ".defectgen" / "units" / "ng-000002.json", out / "images" / "train" / "000013.png"]:
        path.unlink()  # unit 3 lost an image: its record alone does not make it done
    (out / "images" / "train" / ".000009.png.123.defectgen-tmp").write_bytes(b"half a png")
    (out / "masks" / "train" / "000009.png").write_bytes(b"truncated")
    summary = generate(ok_dir, out, **BASE, resume=True)
    assert summary.complete and summary.generated == 8  # units 2 and 3 redone
    assert tree(out) == tree(reference)


def test_resume_after_killed_process(ok_dir, tmp_path):
    """Kill a real `defectgen generate` process mid-run; --resume then ends identical to an uninterrupted run."""
    args = ["--input", str(ok_dir), "--op", "cutpaste", "--count", "600", "--size", "48", "--batch-size", "2",
            "--format", "yolo", "--format", "coco", "--no-progress"]
    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen([sys.executable, "-m", "defectgen", "generate", "--output", str(killed), *args],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    units = killed / ".defectgen" / "units"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and len(list(units.glob("*.json"))) < 5:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if process.returncode != -signal.SIGKILL:
        pytest.fail(f"the run ended before it could be killed: {process.stderr.read().decode()[-500:]}")
    assert not (killed / "manifest.jsonl").exists()
    assert main(["generate", "--output", str(killed), *args, "--resume"]) == 0
    assert main(["generate", "--output", str(tmp_path / "whole"), *args]) == 0
    assert tree(killed) == tree(tmp_path / "whole")


def test_regenerate_reproduces_manifest_hashes(ok_dir, reference):
    import hashlib

    from defectgen.io.atomic import encode_png

    lines = [json.loads(line) for line in (reference / "manifest.jsonl").read_text().splitlines()]
    for line in [lines[0], lines[7], lines[21]]:
        image, mask = regenerate(reference, line["index"])
        assert hashlib.sha256(encode_png(image)).hexdigest() == line["sha256"]
        assert hashlib.sha256(encode_png(mask.astype(np.uint8) * 255)).hexdigest() == line["mask_sha256"]
    with pytest.raises(ValueError, match="below the job's count"):
        regenerate(reference, 22)


def test_poisson_paste_job_regenerates_exactly(ok_dir, tmp_path):
    import hashlib

    from defectgen.io.atomic import encode_png

    out = tmp_path / "nsa"
    generate(ok_dir, out, ops="poisson_paste", count=6, size=48, batch_size=3, progress=False)
    line = json.loads((out / "manifest.jsonl").read_text().splitlines()[4])
    image, _ = regenerate(out, 4)
    assert hashlib.sha256(encode_png(image)).hexdigest() == line["sha256"]


# -- what is written ----------------------------------------------------------------------------------------------
def test_manifest_records_every_output(ok_dir, reference):
    import hashlib

    lines = [json.loads(line) for line in (reference / "manifest.jsonl").read_text().splitlines()]
    ng = [line for line in lines if line["kind"] == "ng"]
    assert [line["index"] for line in ng] == list(range(22))
    assert len([line for line in lines if line["kind"] == "ok"]) == 6
    for line in lines:
        assert hashlib.sha256((reference / line["image"]).read_bytes()).hexdigest() == line["sha256"]
        assert (ok_dir / line["source"]["file"]).is_file()
    for line in ng:
        mask = cv2.imread(str(reference / line["mask"]), cv2.IMREAD_UNCHANGED)
        assert set(np.unique(mask)) <= {0, 255}
        assert line["op"] in ("cutpaste", "scar") and line["class"] == line["op"]
        assert isinstance(line["seed"], int) and line["params"]
        for x1, y1, x2, y2, cls in line["boxes"]:
            assert cls == line["label"] and mask[int(y1):int(y2), int(x1):int(x2)].any()


def test_outside_mask_pixels_are_the_ok_image(ok_dir, reference):
    """The written image differs from its (resized) source only inside the written mask."""
    from defectgen.io.images import resize_square, read_image

    for line in (reference / "manifest.jsonl").read_text().splitlines()[:22]:
        line = json.loads(line)
        ok = resize_square(_to3(read_image(ok_dir / line["source"]["file"])), 48)
        image = cv2.cvtColor(cv2.imread(str(reference / line["image"])), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(str(reference / line["mask"]), cv2.IMREAD_GRAYSCALE) > 0
        assert np.array_equal(image[~mask], ok[~mask])
        assert mask.any()


def _to3(image):
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def test_splits_hold_out_whole_source_files(reference):
    lines = [json.loads(line) for line in (reference / "manifest.jsonl").read_text().splitlines()]
    train = {line["source"]["file"] for line in lines if line["split"] == "train"}
    val = {line["source"]["file"] for line in lines if line["split"] == "val"}
    assert train and val and not train & val
    report = json.loads((reference / "report.json").read_text())
    assert report["per_split"] == {"train": 15, "val": 7} and report["images"] == 22


def test_yolo_labels_match_manifest_boxes(reference):
    data = (reference / "data.yaml").read_text()
    assert "train: images/train" in data and "val: images/val" in data and '0: "cutpaste"' in data
    for line in (reference / "manifest.jsonl").read_text().splitlines()[:22]:
        line = json.loads(line)
        label = reference / line["image"].replace("images/", "labels/").replace(".png", ".txt")
        rows = [list(map(float, row.split())) for row in label.read_text().splitlines()]
        assert len(rows) == len(line["boxes"])
        for (cls, cx, cy, w, h), (x1, y1, x2, y2, cid) in zip(rows, line["boxes"]):
            assert cls == cid - 1
            np.testing.assert_allclose([cx * 48, cy * 48, w * 48, h * 48],
                                       [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], atol=1e-3)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools 2.0 vs NumPy 2 copy keyword
def test_coco_export_evaluates_to_ap_1_with_pycocotools(reference):
    """pycocotools loads the export; GT scored against itself gives AP = 1 for boxes and segmentations."""
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    from pycocotools import mask as mask_utils

    for split in ("train", "val"):
        gt = COCO(str(reference / "annotations" / f"instances_{split}.json"))
        assert sorted(c["name"] for c in gt.loadCats(gt.getCatIds())) == ["cutpaste", "scar"]
        detections = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                       "segmentation": mask_utils.frPyObjects(a["segmentation"], *a["segmentation"]["size"]),
                       "score": 1.0} for a in gt.loadAnns(gt.getAnnIds())]
        for iou_type in ("bbox", "segm"):
            evaluation = COCOeval(gt, gt.loadRes(detections), iou_type)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
            assert evaluation.stats[0] == pytest.approx(1.0)  # AP@[.5:.95]
        for image_id in gt.getImgIds():  # the instances' union is the written mask
            info = gt.loadImgs(image_id)[0]
            mask = cv2.imread(str(reference / "masks" / split / info["file_name"]), cv2.IMREAD_GRAYSCALE) > 0
            union = np.zeros_like(mask)
            for annotation in gt.loadAnns(gt.getAnnIds(imgIds=image_id)):
                instance = gt.annToMask(annotation).astype(bool)
                assert instance.sum() == annotation["area"]
                union |= instance
            assert np.array_equal(union, mask)


def test_mvtec_export_reads_back_with_our_reader(ok_dir, reference):
    layout = read_mvtec(reference / "mvtec")
    lines = [json.loads(line) for line in (reference / "manifest.jsonl").read_text().splitlines()]
    val_ng = [line for line in lines if line["kind"] == "ng" and line["split"] == "val"]
    assert layout.defect_types == sorted({line["class"] for line in val_ng})
    counts = layout.counts()
    for defect in layout.defect_types:
        assert counts[defect] == sum(line["class"] == defect for line in val_ng)
    train_sources = {line["source"]["file"] for line in lines if line["kind"] == "ng" and line["split"] == "train"}
    assert len(layout.train) == len(train_sources)
    assert counts["good"] == 6 - len(train_sources)  # the held-out OK files
    batch = layout.load_test()
    for item, mask in zip(layout.test, batch.masks):
        if item.is_anomalous:
            written = cv2.imread(str(reference / "masks" / "val" / item.image.name), cv2.IMREAD_GRAYSCALE) > 0
            assert np.array_equal(mask[0].numpy(), written)


def test_yolo_export_trains_one_epoch_with_ultralytics(reference, tmp_path, monkeypatch):
    """ultralytics reads the export as it is (labels, class names, splits) and trains one epoch on it."""
    pytest.importorskip("ultralytics")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    data = tmp_path / "yolo"
    shutil.copytree(reference, data)
    model = YOLO("yolov8n.yaml")  # random init: nothing is downloaded
    model.train(data=str(data / "data.yaml"), epochs=1, imgsz=64, batch=8, device="cpu", workers=0, plots=False,
                amp=False, project=str(tmp_path / "runs"), name="run", exist_ok=True, verbose=False, seed=0)
    dataset = model.trainer.train_loader.dataset
    assert dataset.data["names"] == {0: "cutpaste", 1: "scar"}
    assert len(dataset.labels) == 15
    manifest = {json.loads(line)["image"]: json.loads(line) for line in
                (reference / "manifest.jsonl").read_text().splitlines()}
    for label in dataset.labels:
        line = manifest["images/train/" + Path(label["im_file"]).name]
        assert label["cls"].ravel().tolist() == [b[4] - 1 for b in line["boxes"]]
    assert (tmp_path / "runs" / "run" / "weights" / "last.pt").is_file()


# -- options --------------------------------------------------------------------------------------------------------
def test_tiles_native_size_and_gray(tmp_path):
    folder = tmp_path / "ok"
    folder.mkdir()
    big = default_images(64, 2)
    cv2.imwrite(str(folder / "a.png"), big[0].permute(1, 2, 0).numpy()[:, :40])  # 64 x 40: two 32 px tiles (one column)
    cv2.imwrite(str(folder / "b.tif"), (big[1, 0].numpy().astype(np.uint16) * 257))  # 16-bit gray
    out = tmp_path / "tiles"
    summary = generate(folder, out, ops="cutout", count=5, tile=32, size=None, channels=1, formats=["mvtec"],
                       progress=False)
    assert summary.complete
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    tiles = {tuple(line["source"]["tile"]) for line in lines if line["kind"] == "ng"}
    assert all(t[2] == 32 for t in tiles)
    image = cv2.imread(str(out / lines[0]["image"]), cv2.IMREAD_UNCHANGED)
    assert image.shape == (32, 32)  # gray, tile size
    ok = [line for line in lines if line["kind"] == "ok"]
    assert len(ok) == 2 * 1 + 2 * 2  # a.png: 2x1 tiles of 32, b.tif: 2x2

    native = tmp_path / "native"
    generate(folder, native, ops="cutout", count=4, size=None, progress=False)
    shapes = {cv2.imread(str(p)).shape[:2] for p in (native / "images" / "train").iterdir()}
    assert shapes == {(64, 40), (64, 64)}


def test_recipe_with_class_names(ok_dir, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((REPO / "recipes" / "scratches_and_stains.yaml").read_text()
                      + "class_names: [scratch, stain]\n")
    out = tmp_path / "recipe_out"
    generate(ok_dir, out, recipe=recipe, count=8, formats=["yolo", "coco", "mvtec"], size=48, progress=False)
    assert '0: "scratch"' in (out / "data.yaml").read_text()
    coco = json.loads((out / "annotations" / "instances_train.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["scratch", "stain"]
    assert set(read_mvtec(out / "mvtec").defect_types) <= {"scratch", "stain"}


def test_class_names():
    from defectgen import create_op
    from defectgen.recipe import class_names

    assert class_names(create_op("cutpaste_3way")) == {1: "cutpaste", 2: "cutpaste_scar"}
    assert class_names(create_op("cutpaste_union")) == {1: "cutpaste+cutpaste_scar"}
    assert class_names(create_op({"op": "one_of", "ops": ["cutout", "cutout"]})) == {1: "cutout"}
    two = create_op({"op": "one_of", "ops": ["cutout", "scar"], "labels": [1, 2]})
    assert class_names(two, ["dent", "good"]) == {1: "dent", 2: "good_defect"}
    with pytest.raises(ValueError, match="does not produce"):
        class_names(two, {3: "x"})
    patch = {"op": "patch", "mask": "scar", "source": "constant"}
    patches = create_op({"op": "one_of", "ops": [patch, patch],
                         "labels": [1, 2]})
    assert class_names(patches) == {1: "patch_1", 2: "patch_2"}


def test_normal_samples_are_background_images(ok_dir, tmp_path):
    out = tmp_path / "some_normal"
    generate(ok_dir, out, ops={"op": "cutout", "p": 0.5}, count=12, size=48, formats=["yolo", "coco", "mvtec"],
             progress=False)
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if '"ng"' in line]
    normal = [line for line in lines if line["label"] == 0]
    assert normal and all(line["boxes"] == [] and line["op"] is None for line in normal)
    label = out / normal[0]["image"].replace("images/", "labels/").replace(".png", ".txt")
    assert label.read_text() == ""
    assert (out / "mvtec" / "test" / "good" / Path(normal[0]["image"]).name).is_file()


# -- bad input files and errors ----------------------------------------------------------------------------------------
def test_corrupt_inputs_are_skipped_and_reported(tmp_path, capsys):
    folder = write_ok_folder(tmp_path / "ok", count=4)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = (folder / "ok_0.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 3])
    (folder / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    code = main(["generate", "--input", str(folder), "--output", str(out), "--op", "cutout", "--count", "14",
                 "--size", "32", "--format", "mvtec", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["skipped_files"]) == ["broken.png", "empty.jpg", "truncated.png"]
    assert report["images"] == 14
    assert "skipped 3 unreadable input file(s)" in captured.out and "defectgen: warning:" in captured.err
    sources = {json.loads(line)["source"]["file"] for line in (out / "manifest.jsonl").read_text().splitlines()}
    assert sources == {"ok_0.png", "ok_1.png", "nested/ok_2.png", "ok_3.png"}


@pytest.mark.parametrize("make_args,message", [
    (lambda d: ["--input", str(d / "empty"), "--op", "cutout"], "holds no images"),
    (lambda d: ["--input", str(d / "ok"), "--op", "cutpast"], "unknown op 'cutpast'; did you mean 'cutpaste'"),
    (lambda d: ["--input", str(d / "ok"), "--recipe", str(d / "bad.yaml")], "is not valid YAML"),
    (lambda d: ["--input", str(d / "ok"), "--recipe", str(d / "no_op.yaml")], "must be a mapping with an 'op'"),
    (lambda d: ["--input", str(d / "ok"), "--recipe", str(d / "bad_arg.yaml")], "unexpected keyword"),
    (lambda d: ["--input", str(d / "ok"), "--recipe", str(d / "missing.yaml")], "cannot read recipe"),
    (lambda d: ["--input", str(d / "ok")], "either as ops"),
    (lambda d: ["--input", str(d / "ok"), "--op", "cutout", "--recipe", str(d / "bad.yaml")], "not both"),
    (lambda d: ["--input", str(d / "ok"), "--op", "transplant"], "bank"),
    (lambda d: ["--input", str(d / "ok"), "--op", "cutout", "--shard", "2/2"], "0 <= k < n"),
    (lambda d: ["--input", str(d / "ok"), "--op", "cutout", "--shard", "x"], "k/N"),
    (lambda d: ["--input", str(d / "ok"), "--op", "cutout", "--val-fraction", "0.95"], "val_fraction"),
    (lambda d: ["--input", str(d / "ok"), "--op", "cutout", "--device", "tpu"], "device"),
    (lambda d: ["--input", str(d / "ok"), "--op", "cutout", "--format", "voc"], "invalid choice"),
    (lambda d: ["--input", str(d / "one"), "--op", "cutout", "--val-fraction", "0.5"], "at least 2 OK images"),
])
def test_errors_are_one_line(tmp_path, capsys, make_args, message):
    (tmp_path / "empty").mkdir()
    write_ok_folder(tmp_path / "ok", count=3)
    write_ok_folder(tmp_path / "one", count=1)
    (tmp_path / "bad.yaml").write_text("op: [unclosed\n")
    (tmp_path / "no_op.yaml").write_text("- cutout\n")
    (tmp_path / "bad_arg.yaml").write_text("op: cutout\nsize_frac: 3\n")
    code = main(["generate", *make_args(tmp_path), "--output", str(tmp_path / "out"), "--count", "4", "--size", "32"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("defectgen: error:") and message in err, err
    assert not (tmp_path / "out" / "images").exists()


def test_output_folder_rules(ok_dir, tmp_path, capsys):
    args = ["generate", "--input", str(ok_dir), "--op", "cutout", "--count", "3", "--size", "32", "--no-progress"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main([*args, "--output", str(foreign)]) == 2
    assert main([*args, "--output", str(foreign), "--overwrite"]) == 2
    assert (foreign / "notes.txt").read_text() == "mine"  # never deleted
    assert "not a defectgen output" in capsys.readouterr().err

    out = tmp_path / "out"
    assert main([*args, "--output", str(out)]) == 0
    assert main([*args, "--output", str(out)]) == 2
    assert "pass resume" in capsys.readouterr().err
    assert main([*args, "--output", str(out), "--seed", "1", "--resume"]) == 2
    assert "settings differ in: seed" in capsys.readouterr().err
    assert main([*args, "--output", str(out), "--seed", "1", "--overwrite"]) == 0
    assert json.loads((out / ".defectgen" / "job.json").read_text())["settings"]["seed"] == 1
    assert main([*args, "--output", str(ok_dir / "sub")]) == 2
    assert "never writes into its input" in capsys.readouterr().err
    before = tree(ok_dir)
    assert main([*args, "--output", str(ok_dir)]) == 2
    assert tree(ok_dir) == before


def test_progress_line():
    import io

    from defectgen.progress import Progress

    stream = io.StringIO()
    bar = Progress(total=10, already=4, enabled=True, stream=stream, interval=0)
    bar.update(3)
    bar.close()
    text = stream.getvalue()
    assert "7/10" in text and "img/s" in text and "ETA" in text and text.endswith("\n")
    quiet = io.StringIO()
    Progress(total=5, enabled=False, stream=quiet).update(5)
    assert quiet.getvalue() == ""


def test_python_api_is_exported():
    import defectgen

    assert defectgen.generate is generate
    with pytest.raises(ValueError, match="count"):
        generate(".", "/tmp/x", ops="cutout", count=0)


@pytest.mark.cuda
def test_cuda_generation_matches_cpu_masks(ok_dir, tmp_path):
    """Params are drawn on the CPU, so a CUDA run places the same defects (pixels may differ by rounding)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    for device in ("cpu", "cuda"):
        generate(ok_dir, tmp_path / device, ops=["cutpaste", "scar"], count=12, size=48, device=device,
                 progress=False)
    cpu, cuda = tree(tmp_path / "cpu"), tree(tmp_path / "cuda")
    assert {k: v for k, v in cpu.items() if k.startswith(("masks/", "labels/"))} == \
        {k: v for k, v in cuda.items() if k.startswith(("masks/", "labels/"))}
