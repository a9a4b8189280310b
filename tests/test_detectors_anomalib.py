"""The detector table's ``anomalib`` kind: anomalib models trained offline by anomalib's engine, predictions in
defectgen's one type, scored by the one evaluator; tiny sizes (32 px, a few images) so each test takes seconds.

Where ``no_network`` is used, every socket connect and name lookup raises and is recorded: an empty list means
timm, torchvision and anomalib fetched nothing.
"""
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import run_cli as run
from test_detector_table import make_mvtec, run_one_cell_study

from detectors.anomalib.convert import to_prediction

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32


def normal_images(count: int = 8, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(20, 60, (count, 3, SIZE, SIZE), generator=generator, dtype=torch.uint8)


# -- the conversion (no anomalib needed) -------------------------------------------------------------------------
def test_the_conversion_keeps_each_score_and_map_with_its_image():
    maps = torch.zeros(3, 16, 16)
    maps[1, 4:8, 10:14] = 5.0  # only image 1 has a hot region, at a known place
    out = to_prediction(SimpleNamespace(pred_score=torch.tensor([[0.1], [0.9], [0.2]]), anomaly_map=maps), 3, SIZE)
    assert out.scores.tolist() == pytest.approx([0.1, 0.9, 0.2]) and out.maps.shape == (3, 1, SIZE, SIZE)
    peak = divmod(int(out.maps[1, 0].argmax()), SIZE)
    assert 8 <= peak[0] < 16 and 20 <= peak[1] < 28  # the 16 px map's region, upsampled to 32 px
    assert out.maps[[0, 2]].abs().max() == 0
    image_only = to_prediction(SimpleNamespace(pred_score=torch.tensor([0.3, 0.4]), anomaly_map=None), 2, SIZE)
    assert image_only.maps is None and image_only.scores.tolist() == pytest.approx([0.3, 0.4])
    with pytest.raises(ValueError, match="anomaly_map has shape"):
        to_prediction(SimpleNamespace(pred_score=torch.zeros(2), anomaly_map=torch.zeros(3, 8, 8)), 2, SIZE)


# -- anomalib itself ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def anomalib():
    return pytest.importorskip("anomalib", reason="the optional extra 'anomalib' is not installed")


@pytest.fixture(scope="module")
def r18_file(tmp_path_factory):
    """A self-made torchvision resnet18 backbone file (random init, seeded, without fc.*)."""
    import torchvision

    torch.manual_seed(7)
    state = {k: v for k, v in torchvision.models.resnet18(weights=None).state_dict().items()
             if not k.startswith("fc.")}
    path = tmp_path_factory.mktemp("backbone") / "backbone.pt"
    torch.save(state, path)
    return path


def test_weights_load_from_the_file_with_no_network(anomalib, r18_file, no_network):
    from detectors.anomalib import AnomalibDetector
    from detectors.anomalib.backbone import same_tensors
    from detectors.backbone_file import file_digest

    detector = AnomalibDetector(model="Patchcore", backbone="resnet18", backbone_weights=r18_file,
                                image_size=SIZE).fit(normal_images())
    extractor = detector.network.model.feature_extractor.feature_extractor
    state = torch.load(r18_file, weights_only=True)
    assert all(torch.equal(v, state[k]) for k, v in extractor.state_dict().items() if "num_batches" not in k)
    assert same_tensors(extractor, r18_file)
    start = detector.describe()["start"]
    assert start["init"] == "backbone file" and start["sha256"] == file_digest(r18_file)
    prediction = detector.predict(normal_images(4, seed=1))
    assert prediction.scores.shape == (4,) and prediction.maps.shape == (4, 1, SIZE, SIZE)
    assert no_network == []


def test_a_planted_defect_is_found_on_its_image_at_its_place(anomalib, r18_file):
    from detectors.anomalib import AnomalibDetector

    detector = AnomalibDetector(model="Padim", backbone_weights=r18_file, image_size=SIZE,
                                init_args={"layers": ["layer1", "layer2"]}).fit(normal_images(16))
    batch = normal_images(4, seed=3)
    k = 2
    batch[k, :, 8:16, 18:26] = 250  # only image k has a bright square, right of the centre
    prediction = detector.predict(batch)
    assert int(prediction.scores.argmax()) == k
    assert prediction.scores[k] > 2 * prediction.scores[[0, 1, 3]].max()
    # PaDiM blurs its map (sigma 4 px: wide at 32 px), so compare regions rather than single pixels
    square = prediction.maps[:, 0, 8:16, 18:26].mean((1, 2))
    mirrored = prediction.maps[k, 0, 8:16, 6:14].mean()  # the same rows, mirrored to the left half
    assert square[k] > 1.3 * mirrored
    assert square[k] > 1.3 * square[[0, 1, 3]].max()
    peak_column = int(prediction.maps[k, 0].argmax()) % SIZE
    assert peak_column >= 16  # the hot side is the square's side, not mirrored or transposed
    # the same images in another order: each keeps its own score and map
    order = torch.tensor([3, 2, 0, 1])
    again = detector.predict(batch[order])
    assert torch.allclose(again.scores, prediction.scores[order], rtol=1e-4, atol=1e-4)
    assert torch.allclose(again.maps, prediction.maps[order], rtol=1e-4, atol=1e-4)


def test_a_saved_model_loads_back_through_the_registry(anomalib, tmp_path):
    from detectors.anomalib import AnomalibDetector
    from detectors.registry import create_detector, load_detector

    detector = AnomalibDetector(model="Padim", backbone_weights="random", image_size=SIZE,
                                init_args={"layers": ["layer1", "layer2"]}).fit(normal_images())
    path = detector.save(tmp_path / "padim.pt")
    loaded = load_detector(path)
    images = normal_images(3, seed=5)
    assert type(loaded) is AnomalibDetector and loaded.kind == "anomalib"
    assert torch.allclose(loaded.predict(images).scores, detector.predict(images).scores, rtol=1e-5, atol=1e-5)
    described = loaded.describe()
    assert described["model"] == "Padim" and described["init_args"] == {"layers": ["layer1", "layer2"]}
    assert described["start"]["init"] == "random" and "backbone_weights: random" in described["start"]["opt_in"]
    assert create_detector("anomalib", **loaded.config()).config() == loaded.config()  # rebuilt untrained


def test_a_defectgen_operator_is_draems_generator(anomalib, no_network):
    from defectgen.compat.anomalib import AnomalibGenerator
    from detectors.anomalib import AnomalibDetector

    detector = AnomalibDetector(model="Draem", generator="cutpaste", image_size=SIZE, batch_size=2)
    assert isinstance(detector.network.augmenter, AnomalibGenerator)
    calls = []
    detector.network.augmenter.register_forward_hook(lambda module, args, out: calls.append(out[1].shape))
    detector.fit(normal_images(4), steps=1)
    assert calls == [(2, 1, SIZE, SIZE)] and detector.steps_trained == 1 and len(detector.history) == 1
    assert detector.predict(normal_images(2)).maps.shape == (2, 1, SIZE, SIZE)
    assert detector.describe()["generator"] == "cutpaste"
    assert no_network == []


@pytest.mark.parametrize("settings, message", [
    ({"model": "Padimm"}, "model: unknown anomalib image model 'Padimm'; did you mean 'Padim'?"),
    ({"model": "Padim"}, "backbone_weights: Padim starts from pretrained backbone weights"),
    ({"model": "Stfpm"}, "backbone_weights: Stfpm starts from pretrained backbone weights"),
    ({"model": "EfficientAd"}, "backbone_weights .* cannot give"),
    ({"model": "Cfa"}, "model 'Cfa' needs torchvision's ImageNet weights"),
    ({"model": "Padim", "backbone_weights": "random", "generator": "draem"}, "generator: anomalib's Padim makes no"),
    ({"model": "Draem"}, "generator: Draem learns from synthetic anomalies"),
    ({"model": "Padim", "backbone_weights": "random", "init_args": {"pre_trained": True}}, "init_args.pre_trained"),
    ({"model": "Padim", "backbone_weights": "random", "init_args": {"layerz": []}}, "init_args.layerz: not an arg"),
])
def test_bad_settings_are_a_clear_value_error(anomalib, settings, message, no_network):
    from detectors.anomalib import AnomalibDetector

    with pytest.raises(ValueError, match=message):
        AnomalibDetector(image_size=SIZE, **settings)
    assert no_network == []


def test_a_backbone_file_that_does_not_fit_names_the_missing_keys(anomalib, tmp_path):
    from detectors.anomalib import AnomalibDetector

    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"partial.pt.*lacks \d+ of its tensors \(e.g. bn1.weight"):
        AnomalibDetector(model="Padim", backbone_weights=tmp_path / "partial.pt", image_size=SIZE)
    with pytest.raises(ValueError, match="backbone_weights: anomalib's Ganomaly asks for no pretrained backbone"):
        AnomalibDetector(model="Ganomaly", backbone_weights=tmp_path / "partial.pt", image_size=SIZE)


def test_train_and_eval_through_the_cli(anomalib, r18_file, tmp_path, no_network):
    data = make_mvtec(tmp_path / "tile")
    model = tmp_path / "padim.pt"
    code, _, err = run(["train", "anomalib", "--model", "Padimm", "--data", data, "--out", model])
    assert code == 2 and err.count("\n") == 1 and "--model" in err and "did you mean 'Padim'" in err
    code, _, err = run(["train", "anomalib", "--model", "Padim", "--data", data, "--out", model])
    assert code == 2 and err.count("\n") == 1 and "--backbone-weights" in err and "Traceback" not in err
    code, out, err = run(["train", "anomalib", "--model", "Padim", "--backbone", "resnet18", "--backbone-weights",
                          r18_file, "--data", data, "--out", model, "--image-size", SIZE, "--device", "cpu"])
    assert code == 0, err
    assert "Trained anomalib Padim" in out and model.is_file()
    code, _, err = run(["eval", "--model", model, "--data", data, "--device", "cpu"])
    assert code == 0, err
    report = json.loads((tmp_path / "padim_eval.json").read_text())
    assert report["model"]["model"] == "Padim" and report["model"]["start"]["path"] == str(r18_file)
    assert report["overall"]["image_auroc"] == 1.0 and report["overall"]["pixel_auroc"] > 0.9
    assert no_network == []


def test_a_model_without_maps_refuses_pixel_metrics(anomalib, tmp_path):
    data = make_mvtec(tmp_path / "tile", train=16)
    model = tmp_path / "dfkde.pt"
    code, _, err = run(["train", "anomalib", "--model", "Dfkde", "--backbone-weights", "random", "--data", data,
                        "--out", model, "--image-size", SIZE, "--device", "cpu"])
    assert code == 0, err
    code, _, err = run(["eval", "--model", model, "--data", data, "--device", "cpu"])
    assert code == 2 and err.count("\n") == 1 and "anomalib Dfkde makes no anomaly maps" in err
    code, _, err = run(["eval", "--model", model, "--data", data, "--device", "cpu", "--no-pixel"])
    assert code == 0, err


def _study(tmp_path: Path, detector: dict, metrics=("image_auroc", "pixel_auroc")) -> dict:
    make_mvtec(tmp_path / "tile")
    return {"name": "anomalib table", "image_size": SIZE, "seeds": [0], "regimes": ["synthetic"],
            "data": {"format": "mvtec", "root": "tile"}, "families": {"cutout": {"op": "cutout"}},
            "detectors": {"padim": detector}, "test_sets": {"real": "real"}, "metrics": list(metrics)}


def test_a_one_cell_study_trains_padim_through_ablate(anomalib, r18_file, tmp_path, no_network):
    recipe = _study(tmp_path, {"kind": "anomalib", "model": "Padim", "backbone": "resnet18",
                               "backbone_weights": str(r18_file), "init_args": {"layers": ["layer1", "layer2"]}})
    row = run_one_cell_study(recipe, tmp_path)
    assert row["detector"] == "padim"
    assert row["metrics"]["image_auroc"] == 1.0 and row["metrics"]["pixel_auroc"] > 0.9
    assert no_network == []


def test_the_cell_id_follows_the_model_its_arguments_and_the_backbone_file(anomalib, r18_file, tmp_path):
    from detectors.study.plan import expand
    from detectors.study.recipe import load_study

    def cell_id(**changes):
        spec = dict({"kind": "anomalib", "model": "Padim", "backbone_weights": str(r18_file)}, **changes)
        return expand(load_study(_study(tmp_path, spec), base=tmp_path))[0].id

    first = cell_id()
    assert first == cell_id()
    assert len({first, cell_id(model="Patchcore"), cell_id(init_args={"n_features": 50}),
                cell_id(backbone_weights="random")}) == 4
    other = tmp_path / "other.pt"
    state = torch.load(r18_file, weights_only=True)
    state["conv1.weight"] = state["conv1.weight"] + 1
    torch.save(state, other)
    assert cell_id(backbone_weights=str(other)) != first  # same settings, another file content


@pytest.mark.parametrize("detector, message", [
    ({"kind": "anomalib", "model": "Padimm"}, "detectors.padim.model: unknown anomalib image model"),
    ({"kind": "anomalib"}, "detectors.padim.model: name the anomalib image model"),
    ({"kind": "anomalib", "model": "Padim", "generator": "draem"}, "detectors.padim.generator: anomalib's Padim"),
    ({"kind": "anomalib", "model": "Padim", "init_args": {"pre_processor": False}}, "init_args.pre_processor"),
    ({"kind": "anomalib", "model": "Padim", "settings": {"model": "Padim"}}, "write it as detectors.padim.model"),
    ({"kind": "anomalib", "model": "Dfkde", "backbone_weights": "random"}, "makes no anomaly maps"),
    ({"kind": "cutpaste", "model": "Padim"}, "detectors.padim: unknown key 'model'"),
])
def test_bad_study_entries_are_recipe_errors(anomalib, tmp_path, detector, message):
    from detectors.study.recipe import load_study
    from detectors.study.schema import RecipeError

    with pytest.raises(RecipeError, match=message):
        load_study(_study(tmp_path, detector), base=tmp_path)


def test_the_cli_and_the_core_import_without_anomalib():
    script = ("import sys\nfrom defectgen.cli import build_parser\nbuild_parser()\nimport detectors.anomalib\n"
              "from detectors.registry import list_detectors\nassert 'anomalib' in list_detectors()\n"
              "print([m for m in sys.modules if m.split('.')[0] in ('anomalib', 'lightning', 'timm')])")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_model_check_script_writes_a_raw_file_and_its_table(anomalib, tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_anomalib_models",
                                                  ROOT / "benchmarks" / "check_anomalib_models.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "models.json"
    script.main(["--models", "Padim", "Ganomaly", "Cfa", "--count", "8", "--size", str(SIZE), "--json", str(out)])
    raw = json.loads(out.read_text())
    assert raw["benchmark"] == "check_anomalib_models" and "--models Padim Ganomaly Cfa" in raw["command"]
    rows = {r["model"]: r for r in raw["results"]["models"]}
    assert list(rows) == ["Padim", "Ganomaly", "Cfa"]
    padim, ganomaly, cfa = rows["Padim"], rows["Ganomaly"], rows["Cfa"]
    assert padim["status"] == "trains offline" and padim["maps"] is True and padim["steps_trained"] == 0
    assert padim["start"]["init"] == "backbone file" and padim["start"]["backbone"] == "resnet18"
    assert ganomaly["status"] == "trains offline" and ganomaly["maps"] is False and ganomaly["steps_trained"] == 10
    assert ganomaly["start"]["init"] == "no pretrained backbone asked by the model"
    assert cfa["status"] == "refused by defectgen" and cfa["stage"] == "build" and "model 'Cfa' needs" in cfa["message"]
    assert all(r["connection_attempts"] == [] for r in rows.values())
    tables = script.render_tables(raw)
    lines = tables["models"].splitlines()
    assert lines[0].startswith("| model | result |") and len(lines) == 2 + 3
    assert lines[2].startswith("| Padim | trains offline |") and lines[3].startswith("| Ganomaly | trains offline |")
    assert lines[4].startswith("| Cfa | refused by defectgen at build |")
    assert "| Cfa | build | ValueError: model 'Cfa' needs" in tables["messages"]
    assert tables["models"] in capsys.readouterr().out
