"""``defectgen features``: separability of frozen embeddings, the ROC curves against the evaluator, the backbone
file, the report's keys and every user-error path. Tiny images (32 px), a few dozen of them, CPU, no network."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from defectgen.registry import create_op
from detectors.features.backbone import backbone_embedder, embed, load_backbone_state
from detectors.features.groups import Group, make_family
from detectors.features.roc import detector_scores, roc_curves
from detectors.features.separability import separability

from conftest import run_cli as run
from conftest import write_yolo_squares

SIZE = 32


def textures(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(60, 120, (n, 3, SIZE, SIZE), generator=g, dtype=torch.uint8)


def with_squares(images, seed):
    """Each image with a bright square (a quarter of the side) at a random place: a trivially separable family."""
    g = torch.Generator().manual_seed(seed + 1000)
    out, side = images.clone(), SIZE // 4
    for i in range(len(out)):
        y, x = torch.randint(0, SIZE - side + 1, (2,), generator=g).tolist()
        out[i, :, y:y + side, x:x + side] = 250
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_square_separates_and_an_unchanged_family_sits_at_chance(seed):
    images = textures(24, seed)
    normal = Group("normal", "normal", images, "textures")
    embedder = backbone_embedder("resnet18", None, seed)  # random init: a planted square needs no training
    base = embed(embedder, images)
    square = separability(base, embed(embedder, with_squares(images, seed)), torch.arange(24), seed=seed)
    assert square["knn_accuracy"] >= 0.75 and square["probe_accuracy"] >= 0.85 and square["probe_auroc"] >= 0.95

    identity = make_family("identity", create_op("cutout", p=0.0), normal, seed)  # changes nothing
    assert identity.info["defective_fraction"] == 0.0 and torch.equal(identity.images, images)
    same = embed(embedder, identity.images)
    chance = separability(base, same, identity.pairs, seed=seed)
    for key in ("knn_accuracy", "probe_accuracy", "probe_auroc"):
        assert abs(chance[key] - 0.5) <= 0.1, (key, chance)
    # the control: without the pairs sharing a fold, a classifier meets each test image's clean twin with the
    # other label and lands far below chance, so the grouping above is what makes "chance" mean "no signal"
    leaky = separability(base, same, None, seed=seed)
    assert leaky["knn_accuracy"] < 0.4


def test_families_and_embeddings_are_deterministic_for_a_seed():
    images = textures(10, 3)
    normal = Group("normal", "normal", images, "textures")
    a = make_family("cp", create_op("cutpaste"), normal, seed=5, batch_size=4)
    b = make_family("cp", create_op("cutpaste"), normal, seed=5, batch_size=4)
    c = make_family("cp", create_op("cutpaste"), normal, seed=6, batch_size=4)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.info["defective_fraction"] == 1.0
    assert torch.equal(embed(backbone_embedder("resnet18", None, 1), a.images, batch_size=3),
                       embed(backbone_embedder("resnet18", None, 1), a.images, batch_size=3))


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_a_backbone_file_loads_with_identical_weights(tmp_path, arch):
    import torchvision

    torch.manual_seed(7)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    head = "fc." if arch.startswith("resnet") else "classifier."
    torch.save({k: v for k, v in model.state_dict().items() if not k.startswith(head)}, tmp_path / "b.pt")
    embedder = backbone_embedder(arch, tmp_path / "b.pt", seed=0)
    x = textures(3, 0)
    with torch.no_grad():
        unit = x.float() / 255
        scaled = (unit - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / \
            torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        trunk = model.features(scaled) if head == "classifier." else torch.nn.Sequential(
            *list(model.children())[:-2])(scaled)
        expected = trunk.mean(dim=(2, 3))
    torch.testing.assert_close(embed(embedder, x), expected, rtol=1e-5, atol=1e-5)
    assert "b.pt" in embedder.description


def test_a_backbone_file_of_another_architecture_is_refused_naming_it(tmp_path):
    import torchvision

    torch.save({k: v for k, v in torchvision.models.resnet18(weights=None).state_dict().items()
                if not k.startswith("fc.")}, tmp_path / "r18.pt")
    with pytest.raises(ValueError, match="is not a torchvision resnet50 backbone: it holds a torchvision resnet18 "
                                         "backbone; use --arch resnet18"):
        load_backbone_state(tmp_path / "r18.pt", "resnet50")


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array), path


def make_mvtec(root: Path, train=12, good=8, defects=(("crack", 6), ("hole", 6)), seed=0) -> Path:
    """A tiny MVTec-layout category: noise textures; a defect is a bright square of a type-dependent size."""
    rng = np.random.default_rng(seed)
    for i in range(train):
        _write(root / "train" / "good" / f"{i:03d}.png", rng.integers(60, 120, (SIZE, SIZE, 3), dtype=np.uint8))
    for i in range(good):
        _write(root / "test" / "good" / f"{i:03d}.png", rng.integers(60, 120, (SIZE, SIZE, 3), dtype=np.uint8))
    for t, (defect, count) in enumerate(defects):
        for i in range(count):
            image = rng.integers(60, 120, (SIZE, SIZE, 3), dtype=np.uint8)
            y, x, side = int(rng.integers(0, 20)), int(rng.integers(0, 20)), 4 + 4 * t
            image[y:y + side, x:x + side] = 250
            mask = np.zeros((SIZE, SIZE), np.uint8)
            mask[y:y + side, x:x + side] = 255
            _write(root / "test" / defect / f"{i:03d}.png", image)
            _write(root / "ground_truth" / defect / f"{i:03d}_mask.png", mask)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny MVTec category and a CutPaste model trained on it for a few steps (saved)."""
    from detectors.cutpaste import CutPasteDetector

    base = tmp_path_factory.mktemp("features")
    data = make_mvtec(base / "cat")
    detector = CutPasteDetector(pretext="cutpaste", image_size=SIZE, batch_size=4, seed=0)
    detector.fit(data, steps=3, device="cpu", progress=False)
    model = detector.save(base / "model.pt")
    return data, model, detector


def _trapezoid(curve):
    return float(np.trapezoid(curve["tpr"], curve["fpr"]) if hasattr(np, "trapezoid")
                 else np.trapz(curve["tpr"], curve["fpr"]))


def test_roc_auroc_equals_the_evaluators(trained, tmp_path):
    from detectors.evaluation import evaluate_detector, evaluate_labelled
    from defectgen.io.labelled import read_labelled

    data, _, detector = trained
    report = evaluate_detector(detector, data)
    curves = roc_curves(*detector_scores(detector, data))
    assert set(curves) == {"overall", "crack", "hole"}
    assert curves["overall"]["auroc"] == report["overall"]["image_auroc"]
    for name in ("crack", "hole"):
        assert curves[name]["auroc"] == report["per_defect"][name]["image_auroc"]
        assert curves[name]["count"] == {"good": 8, "defective": 6}
    for curve in curves.values():  # the points are the curve whose area is the AUROC (ties count one half)
        assert abs(_trapezoid(curve) - curve["auroc"]) < 1e-6
        assert curve["fpr"][0] == 0 and curve["tpr"][-1] == 1
    # a non-MVTec labelled set goes through evaluate_labelled's path
    write_yolo_squares(tmp_path / "yolo", np.random.default_rng(0), {"test": 10})
    yolo = read_labelled(tmp_path / "yolo", "yolo", channels=3)
    labelled = evaluate_labelled(detector, yolo)
    curves = roc_curves(*detector_scores(detector, tmp_path / "yolo"))
    assert curves["overall"]["auroc"] == labelled["overall"]["image_auroc"]


def test_cli_report_has_what_the_docs_say_and_matches_eval(trained, tmp_path, no_network):
    data, model, _ = trained
    out = tmp_path / "feats"
    code, stdout, err = run(["features", "--normal", data, "--real", data, "--family", "cutpaste=cutpaste",
                             "--family", "scar", "--arch", "resnet18", "--image-size", SIZE, "--model", model,
                             "--data", data] +
                            ["--out", out, "--seed", 3, "--device", "cpu"])
    assert code == 0, err
    report = json.loads((out / "features.json").read_text())
    assert set(report) >= {"settings", "environment", "groups", "separability", "closeness", "projection", "roc"}
    settings = report["settings"]
    assert settings["seed"] == 3 and settings["image_size"] == SIZE and settings["families"] == {
        "cutpaste": "cutpaste", "scar": "scar"}
    assert settings["backbone"] == "resnet18 random init (seed 3)" and settings["arch"] == "resnet18"
    assert report["groups"]["normal"]["count"] == 12 and report["groups"]["real"]["count"] == 12
    assert report["groups"]["real"]["types"] == {"crack": 6, "hole": 6}
    assert report["groups"]["cutpaste"]["defective_fraction"] == 1.0
    assert set(report["separability"]) == {"cutpaste", "scar", "real", "real:crack", "real:hole"}
    for row in report["separability"].values():
        assert set(row) == {"knn_accuracy", "probe_accuracy", "probe_auroc", "count", "folds", "k"}
        assert all(0 <= row[key] <= 1 for key in ("knn_accuracy", "probe_accuracy", "probe_auroc"))
    assert set(report["closeness"]) == {"cutpaste", "scar", "normal"}
    assert set(report["closeness"]["scar"]) == {"nearest_real_cosine", "real_vs_synthetic_knn_accuracy"}
    projection = report["projection"]
    assert projection["method"] == "tsne" and len(projection["points"]) == len(projection["group"]) == 48
    assert projection["group"].count("real") == 12 and "crack" in projection["type"]
    assert (out / "tsne.png").stat().st_size > 1000 and (out / "roc.png").stat().st_size > 1000
    # the ROC's AUROC is what `defectgen eval` reports for the same model and data
    code, _, err = run(["eval", "--model", model, "--data", data, "--out", tmp_path / "eval", "--device", "cpu"])
    assert code == 0, err
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert report["roc"]["curves"]["overall"]["auroc"] == evaluated["overall"]["image_auroc"]
    assert report["roc"]["curves"]["hole"]["auroc"] == evaluated["per_defect"]["hole"]["image_auroc"]
    assert "real:crack" in stdout and "overall" in stdout
    assert no_network == []
    # the same seed gives the same numbers
    code, _, err = run(["features", "--normal", data, "--real", data, "--family", "cutpaste=cutpaste", "--family",
                        "scar", "--image-size", SIZE, "--out", tmp_path / "again", "--seed", 3, "--device", "cpu"])
    again = json.loads((tmp_path / "again" / "features.json").read_text())
    assert code == 0 and again["separability"] == report["separability"]
    assert again["projection"]["points"] == projection["points"]


def test_cli_errors_are_one_line(trained, tmp_path, monkeypatch):
    import sys

    data, model, _ = trained
    import torchvision

    torch.save({k: v for k, v in torchvision.models.resnet18(weights=None).state_dict().items()
                if not k.startswith("fc.")}, tmp_path / "r18.pt")
    out = ["--out", tmp_path / "o", "--device", "cpu", "--image-size", SIZE]
    cases = {
        "missing normal": (["--normal", tmp_path / "nowhere"], "does not exist"),
        "missing real": (["--real", tmp_path / "nowhere"], "does not exist"),
        "unknown operator": (["--normal", data, "--family", "x=cutpastee"], "did you mean 'cutpaste'"),
        "missing recipe": (["--normal", data, "--family", "x=nothere.yaml"], "does not exist"),
        "arch mismatch": (["--normal", data, "--backbone", tmp_path / "r18.pt", "--arch", "resnet50"],
                          "holds a torchvision resnet18 backbone; use --arch resnet18"),
        "model as backbone": (["--normal", data, "--backbone", model], "pass it as --model"),
        "data without model": (["--data", data], "needs --model"),
        "nothing to do": ([], "nothing to do"),
        "reserved family": (["--normal", data, "--family", "real=scar"], "reserved"),
        "not a model": (["--model", tmp_path / "r18.pt", "--data", data], "not a model file"),
        "no normal": (["--family", "scar"], "no normal images"),
    }
    for name, (argv, expected) in cases.items():
        code, stdout, err = run(["features", *argv, *out])
        assert code == 2, (name, err)
        assert err.startswith("defectgen: error: ") and err.count("\n") == 1, (name, err)
        assert expected in err, (name, err)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as if scikit-learn were not installed
    code, _, err = run(["features", "--normal", data, "--family", "scar", *out])
    assert code == 2 and err.count("\n") == 1 and "scikit-learn" in err and "defectgen[features]" in err, err
    monkeypatch.setitem(sys.modules, "umap", None)
    monkeypatch.delitem(sys.modules, "sklearn")
    code, _, err = run(["features", "--normal", data, "--family", "scar", "--method", "umap", *out])
    assert code == 2 and "umap-learn" in err and err.count("\n") == 1, err
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run(["features", "--normal", data, "--family", "scar", *out])
    assert code == 2 and "matplotlib" in err and "--no-plot" in err and err.count("\n") == 1, err


def test_a_cutpaste_models_encoder_embeds_as_the_detector_does(trained):
    from detectors.features.backbone import detector_embedder

    data, model, detector = trained
    images = textures(5, 1)
    embedder = detector_embedder(detector, model)
    torch.testing.assert_close(embed(embedder, images), detector.embed(images).cpu(), rtol=1e-5, atol=1e-5)
    assert embedder.description.startswith("cutpaste encoder (cutpaste)")


def test_real_defects_of_a_labelled_set(tmp_path):
    from detectors.features.groups import real_groups

    write_yolo_squares(tmp_path / "yolo", np.random.default_rng(0), {"test": 10})
    real, good = real_groups(tmp_path / "yolo", SIZE)
    assert len(real) == 9 and real.images.shape[1:] == (3, SIZE, SIZE) and real.info["format"] == "yolo"
    assert real.types == ["defect"] * 9 and len(good) == 1
    real, good = real_groups(tmp_path / "yolo", SIZE, limit=4, seed=1)
    assert len(real) == 4 and len(good) == 1
