"""The detector table: a detector class declares its kind, and one registration line adds it to ``defectgen train``,
``eval`` and ``ablate``.

A toy anomaly detector is defined here and registered here only (the one line in :func:`brightness`), then
trained through ``defectgen train``, evaluated through ``defectgen eval`` on a tiny MVTec-layout folder and run
as a one-cell study; nothing else in the repository names it. Also: the CLI finds ``train`` / ``eval`` /
``ablate`` through the ``defectgen.commands`` entry points and building its parser imports no detector kind.
"""
import argparse
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import run_cli as run
from conftest import write_dark_ok_images, write_yolo_squares

from defectgen.cli_support import add_image_size_argument, add_seed_argument
from detectors import registry
from detectors.base import AnomalyDetector
from detectors.data import load_normal_images
from detectors.registry import save_state
from detectors.types import Prediction

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32


class BrightnessDetector(AnomalyDetector):
    """Scores an image by how far its brightness is from the normal images' (a mean and a spread, learned)."""

    FORMAT = "tests.brightness/1"
    HELP = "toy: how far an image's brightness is from the normal images'"
    MODEL_NAME = "brightness"

    def __init__(self, image_size: int = 32, channels: int = 3, seed: int = 0):
        self.image_size, self.channels, self.seed = image_size, channels, seed
        self.network = torch.nn.ParameterDict({"mean": torch.nn.Parameter(torch.zeros(())),
                                               "spread": torch.nn.Parameter(torch.ones(()))})
        self.history = []

    @classmethod
    def add_train_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--data", type=Path, required=True, help="normal images")
        parser.add_argument("--out", type=Path, required=True, help="the model file")
        add_image_size_argument(parser, "images are resized to PX x PX (default: %(default)s)", SIZE)
        add_seed_argument(parser, "unused: the fit has no randomness")

    @classmethod
    def train_command(cls, args: argparse.Namespace) -> int:
        detector = cls(image_size=args.image_size, seed=args.seed).fit(args.data)
        print(f"Trained brightness on {len(detector.history)} steps. Model saved to {detector.save(args.out)}.")
        return 0

    def fit(self, data, steps: int = 10, device=None, progress=None, callback=None) -> "BrightnessDetector":
        images = load_normal_images(data, self.image_size, self.channels).float().div(255).mean(1)
        optimiser = torch.optim.Adam(self.network.parameters(), lr=0.1)
        for step in range(max(steps, 1)):  # Gaussian negative log-likelihood of every normal pixel
            spread = self.network["spread"].abs() + 1e-3
            loss = (((images - self.network["mean"]) / spread) ** 2 / 2 + spread.log()).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            self.history.append({"step": step, "loss": loss.item()})
            if callback is not None:
                callback(self.history[-1])
        return self

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        x = images.float().div(255) if images.dtype == torch.uint8 else images.float()
        maps = ((x.mean(1, keepdim=True) - self.network["mean"]) / (self.network["spread"].abs() + 1e-3)).abs()
        return Prediction(maps.flatten(1).amax(1), maps)

    def config(self):
        return {"image_size": self.image_size, "channels": self.channels, "seed": self.seed}

    def describe(self):
        return {"detector": self.kind, "config": self.config(), "steps_trained": len(self.history)}

    def save(self, path):
        return save_state({"format": self.FORMAT, "config": self.config(), "history": self.history,
                           "network": {k: v.detach().clone() for k, v in self.network.state_dict().items()}}, path)

    def _restore(self, state, config):
        BrightnessDetector.__init__(self, **config)
        self.network.load_state_dict(state["network"])


@pytest.fixture
def brightness(monkeypatch):
    """The toy kind registered for one test (the registry's tables are restored afterwards)."""
    registry.list_detectors()  # the built-ins first, so they stay registered when the tables are restored
    monkeypatch.setattr(registry, "_BY_NAME", dict(registry._BY_NAME))
    monkeypatch.setattr(registry, "_BY_FORMAT", dict(registry._BY_FORMAT))
    registry.register_detector("toy_brightness")(BrightnessDetector)  # the one line that adds a detector kind
    return "toy_brightness"


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array), path


def make_mvtec(root: Path, train: int = 6) -> Path:
    """Dark noise as normal images; the defect type ``spot`` is a bright square, with its mask (32 px)."""
    rng = np.random.default_rng(0)
    for split, count in (("train/good", train), ("test/good", 3), ("test/spot", 3)):
        for i in range(count):
            image = rng.integers(20, 60, (SIZE, SIZE, 3), dtype=np.uint8)
            if "spot" in split:
                image[8:16, 8:16] = 250
                mask = np.zeros((SIZE, SIZE), np.uint8)
                mask[8:16, 8:16] = 255
                _write(root / "ground_truth" / "spot" / f"{i:03d}_mask.png", mask)
            _write(root / split / f"{i:03d}.png", image)
    return root


def test_a_registered_kind_is_trained_and_evaluated_through_the_cli(brightness, tmp_path):
    data = make_mvtec(tmp_path / "tile")
    code, out, _ = run(["train", "--help"])
    assert code == 0 and brightness in out and "toy: how far an image's brightness" in out
    model = tmp_path / "brightness.pt"
    code, out, err = run(["train", brightness, "--data", data, "--out", model])
    assert code == 0, err
    assert "Trained brightness on 10 steps" in out and model.is_file()
    loaded = registry.load_detector(model)
    assert type(loaded) is BrightnessDetector and loaded.kind == brightness and len(loaded.history) == 10
    code, out, err = run(["eval", "--model", model, "--data", data, "--device", "cpu"])
    assert code == 0, err
    report = json.loads((tmp_path / "brightness_eval.json").read_text())
    assert report["model"]["detector"] == brightness
    assert report["overall"]["image_auroc"] == 1.0  # bright squares on dark noise: every defect scores higher
    assert report["overall"]["pixel_auroc"] > 0.9
    code, _, err = run(["eval", "--model", model, "--data", data, "--agnostic"])
    assert code == 2 and "an anomaly detector has no classes" in err  # eval read the class's task


def test_a_registered_kind_runs_in_a_one_cell_study(brightness, tmp_path):
    rng = np.random.default_rng(0)
    write_dark_ok_images(tmp_path / "ok", rng, 8)
    write_yolo_squares(tmp_path / "real", rng, {"test": 4})
    recipe = {"name": "toy table", "image_size": SIZE, "seeds": [0], "regimes": ["synthetic"],
              "data": {"format": "folder", "ok": "ok", "holdout_ok": 2,
                       "real_test": {"path": "real", "format": "yolo", "split": "test"}},
              "families": {"cutout": {"op": "cutout"}},
              "detectors": {"bright": {"kind": brightness, "steps": 3}},
              "test_sets": {"real": "real"}, "metrics": ["image_auroc"]}
    row = run_one_cell_study(recipe, tmp_path)
    assert row["detector"] == "bright"
    assert row["metrics"]["image_auroc"] == 1.0  # the real test set's defects are bright squares


def run_one_cell_study(recipe: dict, folder: Path) -> dict:
    """``defectgen ablate`` on a one-cell ``recipe`` written into ``folder``; the cell's results row."""
    (folder / "study.yaml").write_text(json.dumps(recipe))  # JSON is YAML
    code, out, err = run(["ablate", folder / "study.yaml", "--out", folder / "study", "--device", "cpu", "--quiet"])
    assert code == 0, err
    assert "1 cells done, 0 failed" in out
    rows = [json.loads(line) for line in (folder / "study" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    return rows[0]


def test_the_registration_is_the_only_line(brightness):
    assert brightness in registry.list_detectors() and registry.detector_class(brightness) is BrightnessDetector
    # nothing in the packages names the toy kind: train, eval and the study found it in the registry
    for path in list((ROOT / "defectgen").rglob("*.py")) + list((ROOT / "detectors").rglob("*.py")):
        text = path.read_text()
        assert f'"{brightness}"' not in text and "BrightnessDetector" not in text, path


def test_a_kind_declares_what_the_table_needs():
    class Incomplete(AnomalyDetector):
        FORMAT = "tests.incomplete/1"

    with pytest.raises(TypeError, match="needs a HELP"):
        registry.register_detector("incomplete")(Incomplete)
    for name, cls in registry.detector_classes().items():
        assert cls.TASK in registry.TASKS and cls.HELP and cls.kind == name


def test_the_commands_come_from_the_entry_points():
    group = {entry.name: entry.value for entry in entry_points(group="defectgen.commands")}
    assert {name: group.get(name) for name in ("train", "eval", "ablate")} == {
        "train": "detectors.cli:TRAIN", "eval": "detectors.cli:EVAL", "ablate": "detectors.study.cli:ABLATE"}
    assert all(value.startswith("detectors.") for value in group.values())  # defectgen's own are built in
    code, out, _ = run(["--help"])
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("    ") and not line.startswith("     ")]
    assert code == 0 and listed[:4] == ["preview", "generate", "fit", "train"]
    assert listed.index("train") < listed.index("eval") < listed.index("ablate")
    assert sorted(listed) == sorted(["preview", "generate", "fit", *group])


def test_building_the_parser_imports_no_detector_kind():
    """``defectgen --help`` imports what the entry points name and nothing more of ``detectors``: no detector
    kind, no data source, no metric (they load when their command is chosen)."""
    def detector_modules(code: str):
        script = f"import sys\n{code}\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'detectors'))"
        return json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                         cwd=ROOT).stdout.splitlines()[-1].replace("'", '"'))

    modules = sorted({entry.value.split(":")[0] for entry in entry_points(group="defectgen.commands")})
    entry_points_only = detector_modules(f"import {', '.join(modules)}")
    parser = detector_modules("from defectgen.cli import build_parser\nbuild_parser()")
    assert parser == entry_points_only
    heavy = ("detectors.cutpaste", "detectors.rcnn", "detectors.yolo", "detectors.data", "detectors.metrics",
             "detectors.evaluation")
    assert not [m for m in parser if m.startswith(heavy)]
    assert "detectors.cutpaste.detector" in detector_modules(
        "from defectgen.cli import main\nmain(['train', 'cutpaste', '--help'])")  # the class declares its options


def test_a_broken_entry_point_is_one_error_line(monkeypatch, capsys):
    from importlib.metadata import EntryPoint

    import defectgen.cli as cli

    broken = EntryPoint("train", "detectors.no_such_module:TRAIN", "defectgen.commands")
    monkeypatch.setattr(cli, "entry_points", lambda group: [broken])
    assert cli.main(["--help"]) == 0
    assert "train" in capsys.readouterr().out
    assert cli.main(["train", "cutpaste"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'train'" in err and "detectors.no_such_module:TRAIN" in err
    assert "ModuleNotFoundError" in err and "Traceback" not in err
    assert cli.main(["preview", "--help"]) == 0  # the other commands are unaffected
