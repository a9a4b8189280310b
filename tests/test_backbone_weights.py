"""Backbone files (detectors.backbone_file): a torchvision state dict without its head loads into every detector
with identical tensors, from the library, from `defectgen train` (--weights-backbone) and from a study recipe
(detectors.X.backbone_weights); a wrong architecture or a missing file is one line; nothing is downloaded."""
import json
import shutil

import cv2
import numpy as np
import pytest
import torch
import torchvision.models as tvm

from defectgen.cli import main
from detectors.backbone_file import ARCHITECTURES, architecture_of, file_digest
from detectors.cutpaste import CutPasteDetector
from detectors.rcnn.detector import FasterRCNNDetector
from detectors.rcnn.network import build_faster_rcnn
from detectors.study import RecipeError, expand, load_study
from detectors.study.cell import train as train_cell
from detectors.study.data import StudyData

HEADS = ("fc.", "classifier.")


def write_backbone(path, architecture, seed=1234):
    """A backbone file as the format says: the torchvision model's state dict (random init, fixed seed) minus its
    classification head. The seed is not 0: a detector seeded 0 draws the same random init."""
    torch.manual_seed(seed)
    state = {k: v for k, v in getattr(tvm, architecture)(weights=None).state_dict().items()
             if not k.startswith(HEADS)}
    torch.save(state, path)
    return state


def assert_same_tensors(loaded, expected):
    """Every tensor of ``expected`` (renamed to ``loaded``'s keys) is in ``loaded``, equal; every weight of
    ``loaded`` came from it."""
    assert expected, "nothing to compare"
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    assert {k for k in loaded if not k.endswith("num_batches_tracked")} <= set(expected)


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    assert err.startswith("defectgen: error: ") and err.strip().count("\n") == 0, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbones")
    states = {name: write_backbone(root / f"{name}.pt", name) for name in ARCHITECTURES}
    return root, states


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("ok")
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(root / f"ok{i}.png"), rng.integers(0, 60, (64, 64, 3), dtype=np.uint8))
    return root


# -- the format -------------------------------------------------------------------------------------------------
def test_a_file_is_identified_by_its_keys_and_shapes(files):
    root, states = files
    for name, state in states.items():
        assert architecture_of(state) == name
        assert architecture_of({**state, "fc.weight": torch.zeros(1000, 512)}) == name  # the head may stay
    damaged = dict(states["resnet18"])
    damaged["layer4.1.conv2.weight"] = torch.zeros(3, 3)
    assert architecture_of(damaged) is None
    assert file_digest(root / "resnet18.pt") != file_digest(root / "resnet50.pt")


# -- CutPaste ---------------------------------------------------------------------------------------------------
def test_cutpaste_encoder_holds_the_files_tensors_and_records_where_they_came_from(files, tmp_path, no_network):
    root, states = files
    detector = CutPasteDetector(image_size=32, head_layers=[16], batch_size=2, weights=root / "resnet18.pt")
    encoder = {k: v for k, v in detector.network.encoder.state_dict().items()}
    assert_same_tensors(encoder, states["resnet18"])
    start = detector.describe()["start"]
    assert start == {"init": "backbone file", "path": str(root / "resnet18.pt"),
                     "sha256": file_digest(root / "resnet18.pt"), "architecture": "resnet18"}
    assert CutPasteDetector(image_size=32, head_layers=[16]).describe()["start"] == {"init": "random"}
    # the hash is the content's: the same bytes elsewhere give it, other weights do not
    shutil.copy(root / "resnet18.pt", tmp_path / "copy.pt")
    write_backbone(tmp_path / "other.pt", "resnet18", seed=1)
    assert file_digest(tmp_path / "copy.pt") == start["sha256"] != file_digest(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="holds a torchvision mobilenet_v3_large backbone"):
        CutPasteDetector(image_size=32, head_layers=[16], weights=root / "mobilenet_v3_large.pt")
    assert no_network == []


def test_train_cutpaste_takes_weights_backbone_and_weights_as_one_option(files, images, tmp_path, capsys,
                                                                         no_network):
    root, states = files
    common = ["train", "cutpaste", "--data", images, "--image-size", "32", "--batch-size", "2", "--head-layers",
              "16", "--steps", "2", "--pretext", "cutout", "--no-progress", "--device", "cpu"]
    code, out, err = run([*common, "--weights-backbone", root / "resnet18.pt", "--out", tmp_path / "a.pt"], capsys)
    assert code == 0, err
    assert f"from backbone {root / 'resnet18.pt'}" in out
    saved = torch.load(tmp_path / "a.pt", map_location="cpu", weights_only=True)
    assert saved["start"]["sha256"] == file_digest(root / "resnet18.pt")
    assert saved["config"]["weights"] == str(root / "resnet18.pt")
    # --weights is the same option: the same run gives the same model
    code, _, err = run([*common, "--weights", root / "resnet18.pt", "--out", tmp_path / "b.pt"], capsys)
    assert code == 0, err
    other = torch.load(tmp_path / "b.pt", map_location="cpu", weights_only=True)
    assert all(torch.equal(saved["network"][k], other["network"][k]) for k in saved["network"])
    # trained from the file, not from random weights
    code, out, err = run([*common, "--out", tmp_path / "c.pt"], capsys)
    assert code == 0 and "random init" in out
    random = torch.load(tmp_path / "c.pt", map_location="cpu", weights_only=True)
    assert random["start"] == {"init": "random"}
    key = "encoder.conv1.weight"
    assert not torch.equal(saved["network"][key], random["network"][key])
    code, _, err = run([*common, "--weights-backbone", root / "mobilenet_v3_large.pt", "--out", tmp_path / "d.pt"],
                       capsys)
    assert_one_line_error(code, err, "mobilenet_v3_large.pt", "is not a torchvision resnet18 backbone",
                          "a torchvision mobilenet_v3_large backbone")
    code, _, err = run([*common, "--weights-backbone", tmp_path / "missing.pt", "--out", tmp_path / "e.pt"], capsys)
    assert_one_line_error(code, err, "--weights-backbone", "missing.pt", "does not exist")
    assert not (tmp_path / "d.pt").exists() and not (tmp_path / "e.pt").exists()
    assert no_network == []


# -- Faster R-CNN -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone,architecture,prefix", [("mobilenet_v3", "mobilenet_v3_large", "features."),
                                                          ("resnet50", "resnet50", "")])
def test_faster_rcnn_body_holds_the_files_tensors(files, backbone, architecture, prefix, no_network):
    root, states = files
    net = build_faster_rcnn(1, 64, backbone, weights_backbone=root / f"{architecture}.pt")
    body = net.backbone.body.state_dict()
    # the FPN body holds the classification model's modules under shorter names; its frozen batch norm has no
    # step counter
    expected = {k[len(prefix):]: v for k, v in states[architecture].items()
                if k.startswith(prefix) and k[len(prefix):] in body}
    assert len(expected) == len(body)
    assert_same_tensors(body, expected)
    assert no_network == []


IMAGENET_MEAN, IMAGENET_STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])


def trained_looking_backbone(architecture, image, seed=7):
    """A classification model whose weights moved from their init and whose batch-norm statistics are the ones
    its weights give on ``image`` (normalised as the detector's transform does), as a saved ``defectgen
    pretrain`` backbone's are."""
    from detectors.pretrain.backbones import recalibrate_batch_norm

    torch.manual_seed(seed)
    model = getattr(tvm, architecture)(weights=None)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    # copies of one image: batch norm's unbiased variance over copies x pixels is its biased one to < 0.1 %
    images = image.repeat(32, 1, 1, 1) if len(image) == 1 else image
    recalibrate_batch_norm(model, (images - IMAGENET_MEAN.view(3, 1, 1)) / IMAGENET_STD.view(3, 1, 1))
    return model.eval()


@pytest.mark.parametrize("backbone,architecture", [("mobilenet_v3", "mobilenet_v3_large"), ("resnet50", "resnet50")])
def test_group_norm_conversion_computes_what_the_batch_norms_did(backbone, architecture, tmp_path, no_network):
    # batch-norm statistics taken on one image equal that image's own statistics at every layer, so there the
    # converted group norms must give the batch-norm network's features exactly, through the whole body (to the
    # 2-3 % that batch norm's unbiased variance makes over 40-50 layers; 160 px leaves 25 pixels at stride 32)
    image = torch.rand(1, 3, 160, 160)
    model = trained_looking_backbone(architecture, image)
    torch.save({k: v for k, v in model.state_dict().items() if not k.startswith(HEADS)}, tmp_path / "b.pt")
    x = (image - IMAGENET_MEAN.view(1, 3, 1, 1)) / IMAGENET_STD.view(1, 3, 1, 1)
    with torch.no_grad():
        if backbone == "mobilenet_v3":
            expected = model.features(x)
        else:
            expected = model.layer4(model.layer3(model.layer2(model.layer1(model.maxpool(model.relu(
                model.bn1(model.conv1(x))))))))

        def deepest(net):
            return list(net.backbone.body(x).values())[-1]

        converted = deepest(build_faster_rcnn(1, 160, backbone, weights_backbone=tmp_path / "b.pt",
                                              backbone_norm="group").eval())
        untouched = deepest(build_faster_rcnn(1, 160, backbone).eval())  # the same network, random init
    scale = expected.abs().mean()
    assert (converted - expected).abs().mean() / scale < 0.05  # broken conversions measured: 0.7-1.0
    assert (untouched - expected).abs().mean() / scale > 0.5  # the check can fail
    assert no_network == []


def test_group_norm_conversion_keeps_features_over_many_images(tmp_path):
    # statistics over many images: each image's group statistics differ from the data's, which group norm removes;
    # on images like a product's OK images (one scene, varying a little) the features stay close to the batch-norm
    # network's, far closer than with the file's weights copied without conversion
    from detectors.rcnn.network import batch_norm_to_group_norm, conv_norm_pairs

    torch.manual_seed(0)
    scene = torch.rand(1, 3, 64, 64)
    images = (scene * (0.9 + 0.2 * torch.rand(16, 1, 1, 1)) + 0.05 * torch.randn(16, 3, 64, 64)).clamp(0, 1)
    model = trained_looking_backbone("mobilenet_v3_large", images)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(HEADS)}
    torch.save(state, tmp_path / "b.pt")
    x = (images - IMAGENET_MEAN.view(1, 3, 1, 1)) / IMAGENET_STD.view(1, 3, 1, 1)
    net = build_faster_rcnn(1, 64, weights_backbone=tmp_path / "b.pt", backbone_norm="group").eval()
    copied = build_faster_rcnn(1, 64).eval()
    body = copied.backbone.body
    plain = {k[len("features."):]: v for k, v in state.items() if k[len("features."):] in body.state_dict()}
    body.load_state_dict(plain)  # conv weights and batch norm's affine, no conversion
    with torch.no_grad():
        expected = model.features[:7](x).flatten()
    got, naive = _run_to(net.backbone.body, x, 7), _run_to(body, x, 7)

    def correlation(a):
        return torch.corrcoef(torch.stack([a.flatten(), expected]))[0, 1].item()

    # seeds 0-4: 0.94-0.96 converted, 0.27-0.30 copied
    assert correlation(got) > 0.85
    assert correlation(got) > correlation(naive) + 0.4
    assert correlation(got) > correlation(naive) + 0.1
    renamed = {k[len("features."):]: v for k, v in state.items()}
    converted = batch_norm_to_group_norm(renamed, body)
    assert set(converted) == set(body.state_dict())  # buffers dropped, none added
    # every convolution keeps its weight norm (Adam's fixed-size steps then move it as fast as from the file)
    for conv, _ in conv_norm_pairs(body):
        key = f"{conv}.weight"
        assert converted[key].norm() == pytest.approx(float(renamed[key].norm()), rel=1e-5)
        assert not torch.allclose(converted[key], renamed[key])  # its channels were rebalanced


def _run_to(body, x, stop):
    """The output of the first ``stop`` feature blocks of a MobileNet FPN body."""
    with torch.no_grad():
        for k in range(stop):
            x = body[str(k)](x)
    return x


def test_backbone_norm_group_is_the_random_init_network_and_trains_every_layer(files, tmp_path, no_network):
    root, _ = files
    detector = FasterRCNNDetector(num_classes=1, image_size=64, backbone_norm="group",
                                  weights_backbone=root / "mobilenet_v3_large.pt")
    random_init = FasterRCNNDetector(num_classes=1, image_size=64)
    assert detector.network.state_dict().keys() == random_init.network.state_dict().keys()
    assert all(p.requires_grad for p in detector.network.backbone.body.parameters())
    assert detector.config()["backbone_norm"] == "group"
    detector.save(tmp_path / "m.pt")
    loaded = FasterRCNNDetector.load(tmp_path / "m.pt")
    assert loaded.backbone_norm == "group"
    for key, value in detector.network.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[key], value), key
    with pytest.raises(ValueError, match="backbone_norm must be one of"):
        FasterRCNNDetector(num_classes=1, image_size=64, backbone_norm="batch")
    assert no_network == []


def test_faster_rcnn_refuses_a_resnet18_file_naming_the_backbones_it_takes(files):
    root, _ = files
    with pytest.raises(ValueError) as error:
        FasterRCNNDetector(num_classes=1, image_size=64, weights_backbone=root / "resnet18.pt")
    text = str(error.value)
    assert "\n" not in text and "resnet18.pt" in text and "a torchvision resnet18 backbone" in text
    assert "mobilenet_v3_large (--backbone mobilenet_v3) or resnet50 (--backbone resnet50)" in text
    with pytest.raises(ValueError, match="use --backbone resnet50"):
        FasterRCNNDetector(num_classes=1, image_size=64, weights_backbone=root / "resnet50.pt")


def test_train_fasterrcnn_with_weights_backbone(files, images, tmp_path, capsys, no_network):
    root, states = files
    common = ["train", "fasterrcnn", "--ok", images, "--op", "cutout", "--epochs", "1", "--image-size", "64",
              "--batch-size", "2", "--no-progress", "--device", "cpu"]
    code, _, err = run([*common, "--weights-backbone", root / "mobilenet_v3_large.pt", "--out", tmp_path / "a"],
                       capsys)
    assert code == 0, err
    saved = torch.load(tmp_path / "a" / "model.pt", map_location="cpu", weights_only=True)
    assert saved["start"]["sha256"] == file_digest(root / "mobilenet_v3_large.pt")
    record = json.loads((tmp_path / "a" / "run.json").read_text())
    assert record["settings"]["weights_backbone"] == str(root / "mobilenet_v3_large.pt")
    # the first blocks are frozen with a pretrained backbone (torchvision's rule): still the file's after training
    first = "backbone.body.0.0.weight"
    assert torch.equal(saved["network"][first], states["mobilenet_v3_large"]["features.0.0.weight"])
    # --backbone-norm group: the random-init network from the file's weights; its first block trains
    code, _, err = run([*common, "--weights-backbone", root / "mobilenet_v3_large.pt", "--backbone-norm", "group",
                        "--out", tmp_path / "g"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "g" / "run.json").read_text())["settings"]["backbone_norm"] == "group"
    grouped = torch.load(tmp_path / "g" / "model.pt", map_location="cpu", weights_only=True)
    assert "backbone.body.0.1.running_mean" not in grouped["network"]  # group norm, no batch statistics
    assert grouped["config"]["backbone_norm"] == "group"
    code, _, err = run([*common, "--weights-backbone", root / "resnet18.pt", "--out", tmp_path / "b"], capsys)
    assert_one_line_error(code, err, "resnet18.pt", "mobilenet_v3_large (--backbone mobilenet_v3) or resnet50")
    code, _, err = run([*common, "--weights-backbone", tmp_path / "none.pt", "--out", tmp_path / "c"], capsys)
    assert_one_line_error(code, err, "--weights-backbone", "none.pt", "does not exist")
    assert no_network == []


# -- YOLO (ultralytics' TorchVision block) ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def yolo():
    from detectors.yolo.offline import import_ultralytics

    try:  # offline first: importorskip would import it the ordinary way (a DNS lookup at import)
        import_ultralytics()
    except ImportError:
        pass
    pytest.importorskip("ultralytics")
    from detectors.yolo import YOLODetector
    return YOLODetector


def yolo_tensors(network, architecture, state):
    """The backbone file's tensors under the names the YOLO network's torchvision row (row 0) gives them."""
    from detectors.yolo.torchvision_backbone import stage_names

    names = stage_names(architecture)
    out = {}
    for key, value in state.items():
        stage = next(i for i, name in enumerate(names) if key.startswith(name + "."))
        out[f"model.0.m.{stage}.{key[len(names[stage]) + 1:]}"] = value
    return out


@pytest.mark.parametrize("architecture", ["resnet18", "mobilenet_v3_large"])
def test_yolo_torchvision_backbone_holds_the_files_tensors(yolo, files, architecture, no_network):
    root, states = files
    det = yolo(image_size=64, batch_size=4, weights_backbone=root / f"{architecture}.pt")
    assert det.backbone == architecture and det.network.stride.tolist() == [8.0, 16.0, 32.0]
    row = {k: v for k, v in det.network.state_dict().items() if k.startswith("model.0.")}
    assert_same_tensors(row, yolo_tensors(det.network, architecture, states[architecture]))
    # ultralytics' own batch-norm settings (eps 1e-3) are put back to torchvision's for the torchvision row
    reference = getattr(tvm, architecture)(weights=None)
    eps = {m.eps for m in reference.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert {m.eps for m in det.network.model[0].modules() if isinstance(m, torch.nn.BatchNorm2d)} == eps
    assert det.describe()["start"]["sha256"] == file_digest(root / f"{architecture}.pt")
    assert no_network == []


def test_yolo_trains_from_a_backbone_file_offline_saves_and_loads(yolo, files, tmp_path, no_network):
    from test_detectors_yolo import squares

    root, states = files
    det = yolo(image_size=64, batch_size=8, warmup_epochs=0.0, weights_backbone=root / "resnet18.pt",
               model="yolo11n.yaml")
    det.fit(squares(16), epochs=1, out=tmp_path / "run", progress=False)
    assert det.steps_trained == 2 and np.isfinite(det.history[-1]["loss"])
    trained = det.network.state_dict()["model.0.m.0.weight"]
    assert not torch.equal(trained, states["resnet18"]["conv1.weight"])  # the backbone trains
    loaded = yolo.load(det.save(tmp_path / "m.pt"))
    assert loaded.describe()["start"] == det.describe()["start"] and loaded.backbone == "resnet18"
    images = torch.stack(list(squares(2, seed=3).images))
    torch.testing.assert_close(loaded.predict(images).scores, det.predict(images).scores)
    assert no_network == []


def test_train_yolo_with_weights_backbone(yolo, files, images, tmp_path, capsys, no_network):
    root, _ = files
    code, _, err = run(["train", "yolo", "--ok", images, "--op", "cutout", "--images-seen", "8", "--batch-size", "4",
                        "--image-size", "64", "--weights-backbone", root / "mobilenet_v3_small.pt", "--out",
                        tmp_path / "y", "--no-progress", "--device", "cpu"], capsys)
    assert code == 0, err
    settings = json.loads((tmp_path / "y" / "run.json").read_text())["settings"]
    assert settings["weights_backbone"] == str(root / "mobilenet_v3_small.pt")
    saved = torch.load(tmp_path / "y" / "model.pt", map_location="cpu", weights_only=True)
    assert saved["config"]["backbone"] == "mobilenet_v3_small"
    assert saved["start"]["sha256"] == file_digest(root / "mobilenet_v3_small.pt")
    assert no_network == []


def test_yolo_refusals(yolo, files, tmp_path, capsys):
    root, _ = files
    with pytest.raises(ValueError, match="holds a torchvision resnet18 backbone"):
        yolo(image_size=64, backbone="resnet50", weights_backbone=root / "resnet18.pt")
    with pytest.raises(ValueError, match="backbone must be one of"):
        yolo(image_size=64, backbone="vgg16")
    (tmp_path / "download.yaml").write_text(
        "nc: 1\nbackbone:\n  - [-1, 1, TorchVision, [512, resnet18, DEFAULT, True, 2, True]]\n"
        "head:\n  - [[0], 1, Detect, [nc]]\n")
    with pytest.raises(ValueError, match="would download weights"):
        yolo(image_size=64, model=str(tmp_path / "download.yaml"))
    code, _, err = run(["train", "yolo", "--ok", root, "--op", "cutout", "--out", tmp_path / "y",
                        "--weights-backbone", tmp_path / "none.pt"], capsys)
    assert_one_line_error(code, err, "--weights-backbone", "none.pt", "does not exist")


# -- study recipes -----------------------------------------------------------------------------------------------
def study_recipe(**detector):
    return {"name": "bb", "data": {"format": "folder", "ok": "ok", "holdout_ok": 2},
            "families": {"none": "none", "cutout": {"op": "cutout"}}, "regimes": ["synthetic"],
            "detectors": {"cutpaste": {"kind": "cutpaste", "settings": {"batch_size": 2, "head_layers": [16]},
                                       "steps": 1, **detector}},
            "test_sets": {"synth": {"synthetic": "cutout", "images": 2}}, "image_size": 32}


@pytest.fixture()
def study_root(tmp_path):
    ok = tmp_path / "ok"
    ok.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        cv2.imwrite(str(ok / f"ok{i}.png"), rng.integers(0, 60, (32, 32, 3), dtype=np.uint8))
    (tmp_path / "weights").mkdir()
    write_backbone(tmp_path / "weights" / "r18.pt", "resnet18")
    return tmp_path


def test_a_recipe_names_a_backbone_file_relative_to_itself(study_root, tmp_path_factory, monkeypatch, no_network):
    import yaml

    recipe = study_root / "study.yaml"
    recipe.write_text(yaml.safe_dump(study_recipe(backbone_weights="weights/r18.pt")))
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # paths are the recipe's, not the working folder's
    study = load_study(recipe)
    spec = study.detectors["cutpaste"]
    assert spec["backbone_weights"] == "weights/r18.pt"
    assert spec["backbone_sha256"] == file_digest(study_root / "weights" / "r18.pt")
    cells = expand(study)
    cell = next(c for c in cells if c.family == "cutout")
    # the cell's detector is built from the file: its encoder holds the file's tensors
    trained = train_cell(study, StudyData(study), cell, "cpu", study_root / "cell", lambda _: None)["detector"]
    assert trained.describe()["start"]["path"] == str(study_root / "weights" / "r18.pt")
    untrained = train_cell(study, StudyData(study), next(c for c in cells if c.family == "none"), "cpu",
                           study_root / "cell0", lambda _: None)["detector"]  # the none control takes no step
    state = torch.load(study_root / "weights" / "r18.pt", weights_only=True)
    assert_same_tensors(untrained.network.encoder.state_dict(), state)
    assert no_network == []


def test_a_changed_backbone_file_changes_the_cell_ids(study_root):
    ids = [c.id for c in expand(load_study(study_recipe(backbone_weights="weights/r18.pt"), base=study_root))]
    again = [c.id for c in expand(load_study(study_recipe(backbone_weights="weights/r18.pt"), base=study_root))]
    random = [c.id for c in expand(load_study(study_recipe(), base=study_root))]
    write_backbone(study_root / "weights" / "r18.pt", "resnet18", seed=7)
    changed = [c.id for c in expand(load_study(study_recipe(backbone_weights="weights/r18.pt"), base=study_root))]
    assert ids == again
    assert not set(ids) & set(changed) and not set(ids) & set(random)


def test_recipe_refusals_are_one_line(study_root):
    cases = {
        "missing file": ({"backbone_weights": "weights/none.pt"}, r"detectors\.cutpaste\.backbone_weights: .*none\.pt"
                                                                   r".* does not exist"),
        "not a name": ({"backbone_weights": 3}, r"detectors\.cutpaste\.backbone_weights must be a file name"),
        "both": ({"backbone_weights": "weights/r18.pt",
                  "settings": {"batch_size": 2, "weights": "weights/r18.pt"}}, "settings.weights both name"),
    }
    for name, (detector, message) in cases.items():
        with pytest.raises(RecipeError, match=message) as error:
            load_study(study_recipe(**detector), base=study_root)
        assert "\n" not in str(error.value), name
