"""`defectgen train fasterrcnn|yolo` and `defectgen eval` on labelled sets: run folders, reports, user errors."""
import json

import numpy as np
import pytest
from conftest import write_dark_ok_images, write_yolo_squares

from defectgen.cli import main


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """OK images, and a small real YOLO set (bright squares on dark images; one image defect-free)."""
    root = tmp_path_factory.mktemp("object")
    ok = root / "ok"
    rng = np.random.default_rng(0)
    write_dark_ok_images(ok, rng, 4)
    real = root / "real"
    write_yolo_squares(real, rng, {"train": 3, "test": 3})
    return root, ok, real


@pytest.fixture(scope="module")
def trained_run(folders, tmp_path_factory):
    _, ok, _ = folders
    out = tmp_path_factory.mktemp("runs") / "frcnn"
    code = main(["train", "fasterrcnn", "--ok", str(ok), "--op", "cutout", "--epochs", "1", "--image-size", "64",
                 "--batch-size", "2", "--out", str(out), "--no-progress", "--device", "cpu"])
    assert code == 0
    return out


def test_train_writes_the_run_folder(trained_run):
    assert {p.name for p in trained_run.iterdir()} == {"run.json", "checkpoint.pt", "model.pt"}
    record = json.loads((trained_run / "run.json").read_text())
    assert record["detector"] == "fasterrcnn" and record["settings"]["class_names"] == ["cutout"]
    assert record["data"]["synthetic"]["ok_images"] == 4 and record["epochs"] == 1


def test_eval_on_a_labelled_set_writes_the_box_report(trained_run, folders, capsys):
    _, _, real = folders
    code, out, err = run(["eval", "--model", trained_run, "--data", real, "--agnostic"], capsys)
    assert code == 0, err
    report = json.loads((trained_run / "eval.json").read_text())
    assert report["kind"] == "boxes" and report["format"] == "yolo" and report["split"] == "test"
    assert 0 <= report["overall"]["map_50"] <= 1 and "image_auroc" in report["overall"]
    assert report["model"]["detector"] == "fasterrcnn" and report["counts"]["images"] == 3
    assert "AP@50" in out and (trained_run / "eval.md").is_file()
    # the detector's class "cutout" is not the set's "blob": without --agnostic or a map that is an error
    code, _, err = run(["eval", "--model", trained_run, "--data", real], capsys)
    assert code == 2 and "agnostic" in err
    code, _, err = run(["eval", "--model", trained_run, "--data", real, "--class-map", "cutout=blob",
                        "--out", trained_run / "mapped"], capsys)
    assert code == 0, err and (trained_run / "mapped.json").is_file()


def test_train_from_real_labels_mixed_with_synthetic(folders, tmp_path, capsys):
    _, ok, real = folders
    code, out, err = run(["train", "fasterrcnn", "--ok", ok, "--op", "cutout", "--real", real, "--real-count", "2",
                          "--class-map", "blob=cutout", "--epochs", "1", "--image-size", "64", "--batch-size", "3",
                          "--out", tmp_path / "mixed", "--no-progress", "--device", "cpu"], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "mixed" / "run.json").read_text())
    assert len(record["data"]["real_chosen"]) == 2 and record["data"]["images_per_epoch"] == 6
    # mixed per batch by default (detectors.data.sources.DEFAULT_REAL_FRACTION = 0.5): 2 of each 3 real (halves
    # round up), an epoch one pass over the 4 synthetic items
    assert record["data"]["mixing"]["real_fraction"] == 0.5 and record["trained"]["images_seen"] == 12
    assert "on 4 synthetic + 2 real images (2 real per batch of 3)" in out and "(4 steps, 12 images seen)" in out


def test_resume_checks_the_settings(trained_run, folders, tmp_path, capsys):
    _, ok, _ = folders
    base = ["train", "fasterrcnn", "--ok", ok, "--op", "cutout", "--image-size", "64", "--batch-size", "2",
            "--no-progress", "--device", "cpu"]
    code, _, err = run(base + ["--epochs", "1", "--out", trained_run], capsys)
    assert code == 2 and "exists and is not empty" in err
    code, _, err = run(base + ["--epochs", "2", "--out", trained_run, "--resume"], capsys)
    assert code == 2 and "other epochs" in err
    code, _, err = run(base + ["--epochs", "1", "--out", tmp_path / "fresh", "--resume"], capsys)
    assert code == 2 and "no interrupted run" in err


@pytest.mark.parametrize("argv, message", [
    (["train", "fasterrcnn", "--out", "{tmp}/r"], "no training data"),
    (["train", "fasterrcnn", "--op", "cutout", "--data", "{real}", "--out", "{tmp}/r"], "give --ok"),
    (["train", "fasterrcnn", "--ok", "{ok}", "--out", "{tmp}/r"], "needs the defects to make"),
    (["train", "fasterrcnn", "--ok", "{tmp}/nowhere", "--op", "cutout", "--out", "{tmp}/r"], "does not exist"),
    (["train", "fasterrcnn", "--ok", "{ok}", "--op", "no_such_op", "--out", "{tmp}/r"], "no_such_op"),
    (["train", "fasterrcnn", "--data", "{real}", "--real-count", "2", "--out", "{tmp}/r"], "--real-count needs"),
    (["train", "fasterrcnn", "--data", "{real}", "--format", "coco", "--out", "{tmp}/r"], "not a COCO set"),
    (["train", "yolo", "--data", "{real}", "--epochs", "0", "--out", "{tmp}/r"], "positive integer"),
    (["eval", "--model", "{tmp}/none", "--data", "{real}"], "does not exist"),
    (["eval", "--model", "{real}/data.yaml", "--data", "{real}"], "is not a model file"),
])
def test_user_errors_exit_2_with_one_line(folders, tmp_path, capsys, argv, message):
    _, ok, real = folders
    argv = [a.format(tmp=tmp_path, ok=ok, real=real) for a in argv]
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("defectgen: error: ") and message in lines[0], err
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_eval_object_model_rejects_anomaly_options(trained_run, folders, capsys):
    _, _, real = folders
    code, _, err = run(["eval", "--model", trained_run, "--data", real, "--no-pixel"], capsys)
    assert code == 2 and "anomaly detectors" in err
