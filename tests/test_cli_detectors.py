"""``defectgen train`` and ``defectgen eval`` end to end on a tiny MVTec-like tree, and every user-error path."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import run_cli as run

SIZE = 32
BOX = (slice(8, 16), slice(16, 24))  # the defect (and mask) of every defective test image
FAST = ["--image-size", str(SIZE), "--steps", "2", "--batch-size", "4", "--device", "cpu"]


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array), path


def make_mvtec(root: Path, train: int = 6, good: int = 3, defects=(("crack", 2), ("hole", 2)), seed: int = 0) -> Path:
    """A tiny MVTec-layout category (as tests/test_io_mvtec.py's helper): noise textures, defects as a bright
    square with its mask."""
    rng = np.random.default_rng(seed)

    def texture() -> np.ndarray:
        return rng.integers(60, 120, (SIZE, SIZE, 3), dtype=np.uint8)

    for i in range(train):
        _write(root / "train" / "good" / f"{i:03d}.png", texture())
    for i in range(good):
        _write(root / "test" / "good" / f"{i:03d}.png", texture())
    for defect, count in defects:
        for i in range(count):
            image = texture()
            image[BOX] = 250
            _write(root / "test" / defect / f"{i:03d}.png", image)
            mask = np.zeros((SIZE, SIZE), np.uint8)
            mask[BOX] = 255
            _write(root / "ground_truth" / defect / f"{i:03d}_mask.png", mask)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One model trained through the CLI (with the progress bar forced on), shared by the eval tests."""
    base = tmp_path_factory.mktemp("cli_detectors")
    data = make_mvtec(base / "bottle")
    model = base / "models" / "bottle.pt"
    result = run(["train", "cutpaste", "--data", data, "--out", model, "--progress", *FAST])
    return data, model, result


def test_train_writes_model_summary_and_progress(trained):
    data, model, (code, out, err) = trained
    assert code == 0, err
    assert model.is_file()
    # the progress bar: its final state, with the loss and accuracy of the last step
    assert "train 2/2" in err and "loss " in err and "acc " in err
    # one summary paragraph on stdout
    assert len(out.strip().splitlines()) == 1
    assert "2 steps" in out and "3way" in out and "final loss" in out and "accuracy" in out
    assert "last 2 steps" in out and f"saved to {model}" in out

    from detectors.cutpaste import CutPasteDetector

    detector = CutPasteDetector.load(model)
    assert detector.steps_trained == 2 and detector.image_size == SIZE and detector.pretext_record["name"] == "3way"


def test_train_plain_folder_multiclass_pretext_quiet(tmp_path):
    folder = tmp_path / "ok"
    for i in range(4):
        _write(folder / "sub" / f"{i}.png", np.full((40, 50), 40 * i, np.uint8))
    model = tmp_path / "m.pt"
    code, out, err = run(["train", "cutpaste", "--data", folder, "--out", model, "--pretext", "cutout",
                          "--pretext", "scar", "--gray", "--no-progress", "--lr", "0.01", "--seed", "3",
                          "--image-size", SIZE, "--steps", "1", "--batch-size", "2", "--device", "cpu",
                          "--head-layers", "24", "16"])
    assert code == 0, err
    assert err == ""  # --no-progress: nothing on stderr
    assert "cutout+scar" in out and "1 step " in out and "gray" in out
    state = torch.load(model, map_location="cpu", weights_only=True)
    assert state["num_classes"] == 3 and state["config"]["channels"] == 1 and state["config"]["seed"] == 3
    assert state["config"]["learning_rate"] == 0.01 and state["config"]["head_layers"] == [24, 16]


def test_eval_default_prefix_json_markdown_and_stdout(trained):
    data, model, _ = trained
    code, out, err = run(["eval", "--model", model, "--data", data, "--device", "cpu"])
    assert code == 0, err
    json_path, md_path = model.with_name("bottle_eval.json"), model.with_name("bottle_eval.md")
    assert json_path.is_file() and md_path.is_file()
    report = json.loads(json_path.read_text())
    assert set(report["per_defect"]) == {"crack", "hole"}
    for metrics in (report["overall"], *report["per_defect"].values()):
        assert {"image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "aupro"} <= set(metrics)
        assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert report["counts"] == {"good": 3, "crack": 2, "hole": 2}
    assert report["model"]["pretext"] == "3way" and report["model"]["steps_trained"] == 2
    assert report["model"]["config"]["image_size"] == SIZE and report["model"]["path"] == str(model)
    # stdout is the Markdown table, the same as the file
    assert out == md_path.read_text()
    assert "| overall | 7 | 4 |" in out and "| crack |" in out and "| hole |" in out
    assert str(json_path) in err


def test_eval_out_prefix_defect_subset_no_pixel(trained, tmp_path):
    data, model, _ = trained
    prefix = tmp_path / "reports" / "run1"
    code, out, err = run(["eval", "--model", model, "--data", data, "--out", prefix, "--defect", "hole",
                          "--no-pixel", "--image-size", SIZE, "--fpr-limit", "0.2", "--device", "cpu"])
    assert code == 0, err
    report = json.loads(prefix.with_name("run1.json").read_text())
    assert prefix.with_name("run1.md").is_file()
    assert list(report["per_defect"]) == ["hole"] and "pixel_auroc" not in report["overall"]
    assert report["counts"] == {"good": 3, "hole": 2} and report["fpr_limit"] == 0.2
    assert "| hole |" in out and "crack" not in out


def _error_cases(tmp: Path, data: Path, model: Path):
    not_model = tmp / "notes.pt"
    not_model.write_text("not a model")
    no_test = tmp / "train_only"
    _write(no_test / "train" / "good" / "0.png", np.zeros((8, 8), np.uint8))
    train = ["train", "cutpaste", "--out", tmp / "x.pt", *FAST]
    cases = {
        "eval non-model file": (["eval", "--model", not_model, "--data", data],
                                "is not a model file written by 'defectgen train'"),
        "eval missing model": (["eval", "--model", tmp / "nope.pt", "--data", data], "does not exist"),
        "eval missing data": (["eval", "--model", model, "--data", tmp / "nowhere"], "does not exist"),
        "eval data without test/": (["eval", "--model", model, "--data", no_test], "no test/ folder"),
        "eval other image size": (["eval", "--model", model, "--data", data, "--image-size", "64"],
                                  f"made for {SIZE} px images, not 64 px"),
        "eval unknown defect": (["eval", "--model", model, "--data", data, "--defect", "scratch"], "scratch"),
        "eval stride on image level": (["eval", "--model", model, "--data", data, "--stride", "2"], "--stride"),
        "eval bad fpr limit": (["eval", "--model", model, "--data", data, "--fpr-limit", "2"],
                               "--fpr-limit must be in (0, 1]"),
        "train missing data": (["train", "cutpaste", "--data", tmp / "nowhere", "--out", tmp / "x.pt"],
                               "does not exist"),
        "train unknown pretext": ([*train, "--data", data, "--pretext", "cutpastee"], "did you mean 'cutpaste'"),
        "train whole task in a list": ([*train, "--data", data, "--pretext", "3way", "--pretext", "scar"],
                                       "cannot be combined"),
        "train unknown detector": (["train", "padim", "--data", data, "--out", tmp / "x.pt"], "invalid choice"),
        "train bad lr": ([*train, "--data", data, "--lr", "fast"], "--lr"),
        "train negative lr": ([*train, "--data", data, "--lr", "-1"], "--lr must be >= 0"),
        "train negative steps": ([*train, "--data", data, "--steps", "-1"], "--steps"),
        "train tiny image size": ([*train, "--data", data, "--image-size", "4"], "--image-size must be >= 8"),
        "train patch grid does not tile": ([*train, "--data", data, "--level", "patch", "--patch-stride", "5"],
                                           "stride"),
        "train missing weights": ([*train, "--data", data, "--weights", tmp / "r18.pth"], "--weights"),
        "train bad device": ([*train, "--data", data, "--device", "tpu"], "--device"),
    }
    if not torch.cuda.is_available():
        cases["train cuda without cuda"] = ([*train, "--data", data, "--device", "cuda"], "CUDA is not available")
    return cases


def test_user_errors_exit_2_with_one_line(trained, tmp_path):
    data, model, _ = trained
    for name, (argv, message) in _error_cases(tmp_path, data, model).items():
        code, out, err = run(argv)
        assert code == 2, (name, err)
        assert out == "", name
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("defectgen: error: "), (name, err)
        assert message in lines[0], (name, lines[0])
    assert not (tmp_path / "x.pt").exists()


def test_help_lists_train_and_eval():
    code, out, _ = run(["--help"])
    assert code == 0 and "train" in out and "eval" in out
    code, out, _ = run(["train", "cutpaste", "--help"])
    assert code == 0 and "--pretext" in out and "--no-progress" in out


def test_cli_pretext_names_are_the_library_ones():
    """detectors.cli keeps its own copy of the names (to stay torch-free at parse time): it must not drift."""
    from detectors.cutpaste.cli import NAMED_PRETEXTS
    from detectors.cutpaste.pretext import NAMED

    assert tuple(NAMED_PRETEXTS) == tuple(NAMED)
