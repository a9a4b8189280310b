"""The shared detector types (LabelledSet, Prediction), the registry and the training-data description."""
import pytest
import torch

from detectors.types import AGNOSTIC_CLASS, LabelledSet, Prediction


def small_set():
    images = [torch.full((3, 40, 60), 10, dtype=torch.uint8), torch.full((3, 40, 60), 200, dtype=torch.uint8)]
    boxes = [torch.tensor([[6.0, 4, 30, 20], [40, 10, 50, 30]]), torch.zeros(0, 4)]
    labels = [torch.tensor([1, 2]), torch.zeros(0, dtype=torch.int64)]
    masks = [torch.zeros(1, 40, 60, dtype=torch.bool), torch.zeros(1, 40, 60, dtype=torch.bool)]
    masks[0][0, 4:20, 6:30] = True
    return LabelledSet(images, boxes, labels, ("scratch", "dent"), ("a.png", "b.png"), masks)


def test_labelled_set_views():
    s = small_set()
    assert len(s) == 2 and s.channels == 3 and s.defective.tolist() == [True, False]
    assert s.counts() == {"images": 2, "defect-free images": 1, "scratch": 1, "dent": 1}
    r = s.resized(20)
    assert r.images[0].shape == (3, 20, 20) and r.masks[0].shape == (1, 20, 20)
    torch.testing.assert_close(r.boxes[0], torch.tensor([[2.0, 2, 10, 10], [40 / 3, 5, 50 / 3, 15]]))
    assert r.masks[0][0, 2:10, 2:10].all() and not r.masks[0][0, 12:, 12:].any()
    assert s.subset([1]).names == ("b.png",) and len(s.subset([1]).boxes[0]) == 0
    assert s.agnostic().class_names == (AGNOSTIC_CLASS,) and s.agnostic().labels[0].tolist() == [1, 1]
    m = s.mapped({"scratch": None, "dent": "bump"})
    assert m.class_names == ("bump",) and m.labels[0].tolist() == [1] and m.boxes[0].tolist() == [[40, 10, 50, 30]]
    j = s.concat(s.mapped({"dent": "hole"}, class_names=["hole", "scratch"]))
    assert j.class_names == ("scratch", "dent", "hole") and j.labels[2].tolist() == [1, 3]


def test_labelled_set_errors():
    s = small_set()
    with pytest.raises(ValueError, match="2 images but 1 boxes"):
        LabelledSet(s.images, s.boxes[:1], s.labels, s.class_names)
    with pytest.raises(ValueError, match="outside 1..2"):
        LabelledSet(s.images, s.boxes, [torch.tensor([1, 3]), s.labels[1]], s.class_names)
    with pytest.raises(ValueError, match="same channel count"):
        LabelledSet([s.images[0], s.images[1][:1]], s.boxes, s.labels, s.class_names)
    with pytest.raises(ValueError, match="unknown classes"):
        s.mapped({"crack": "x"})
    with pytest.raises(ValueError, match=r"\(n, 4\) boxes"):
        LabelledSet(s.images[:1], [torch.zeros(3)], [torch.zeros(0, dtype=torch.int64)], s.class_names)


def test_prediction_checks_and_joins():
    p = Prediction(torch.tensor([0.2, 0.9]), boxes=[torch.zeros(0, 4), torch.tensor([[1.0, 1, 5, 5]])],
                   box_scores=[torch.zeros(0), torch.tensor([0.9])], box_labels=[torch.zeros(0, dtype=torch.int64),
                                                                                  torch.tensor([1])])
    both = Prediction.cat([p, p])
    assert len(both) == 4 and both.has_boxes and not both.has_maps and len(both.boxes) == 4
    maps = Prediction(torch.zeros(2), maps=torch.zeros(2, 1, 8, 8))
    assert Prediction.cat([maps, maps]).maps.shape == (4, 1, 8, 8)
    with pytest.raises(ValueError, match="come together"):
        Prediction(torch.zeros(1), boxes=[torch.zeros(0, 4)])
    with pytest.raises(ValueError, match=r"\(B,\)"):
        Prediction(torch.zeros(1, 1))
    with pytest.raises(ValueError, match="maps must be"):
        Prediction(torch.zeros(2), maps=torch.zeros(3, 1, 4, 4))


def test_registry_names_errors_and_format_dispatch(tmp_path):
    from detectors.errors import NotAModelFile
    from detectors.registry import create_detector, list_detectors, load_detector, read_state, register_detector

    assert {"cutpaste", "fasterrcnn", "yolo"} <= set(list_detectors())
    assert list_detectors("f*") == ["fasterrcnn"]
    with pytest.raises(ValueError, match="unknown detector 'ssd'"):
        create_detector("ssd")
    torch.save({"format": "someone.else/1"}, tmp_path / "other.pt")
    with pytest.raises(NotAModelFile, match="no registered detector reads"):
        load_detector(tmp_path / "other.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(NotAModelFile, match="format 'list'"):
        read_state(tmp_path / "list.pt")
    (tmp_path / "run").mkdir()
    with pytest.raises(ValueError, match="without a model.pt"):
        load_detector(tmp_path / "run")
    with pytest.raises(TypeError, match="needs a FORMAT"):
        register_detector("broken")(type("Broken", (), {}))


def test_training_data_description_errors():
    from detectors.data.training_data import TrainingData

    with pytest.raises(ValueError, match="no training data"):
        TrainingData()
    with pytest.raises(ValueError, match="give ok="):
        TrainingData(ops=["cutpaste"])
    with pytest.raises(ValueError, match="needs the defects"):
        TrainingData(ok="ok/")
    with pytest.raises(ValueError, match="real_count needs real="):
        TrainingData(data="d/", real_count=3)
    with pytest.raises(ValueError, match="not both"):
        TrainingData(data="d/", class_map="a=b", agnostic=True)
    assert TrainingData(ok="ok/", ops=["scar"]).to_dict()["ops"] == ["scar"]


def test_build_source_kinds(tmp_path):
    """Synthetic, labelled and mixed sources from one description; real classes must map onto synthetic ones."""
    import cv2
    import numpy as np

    from detectors.data.sources import LabelledSource, MixedSource, SyntheticSource
    from detectors.data.training_data import TrainingData, build_source

    ok = tmp_path / "ok"
    ok.mkdir()
    for i in range(4):
        cv2.imwrite(str(ok / f"{i}.png"), np.full((32, 32, 3), 60 * i, np.uint8))
    real = tmp_path / "real"
    (real / "images" / "train").mkdir(parents=True)
    (real / "labels" / "train").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(real / "images" / "train" / f"{i}.png"), np.zeros((32, 32, 3), np.uint8))
        (real / "labels" / "train" / f"{i}.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (real / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/train\nnames: [crack]\n")

    source, described = build_source(TrainingData(ok=str(ok), ops=["cutout"]), 32)
    assert isinstance(source, SyntheticSource) and described["classes"] == ["cutout"]
    source, described = build_source(TrainingData(data=str(real)), 32)
    assert isinstance(source, LabelledSource) and described["data"]["split"] == "train"
    source, described = build_source(TrainingData(ok=str(ok), ops=["cutout"], real=str(real), real_count=2,
                                                  class_map="crack=cutout"), 32, seed=1)
    assert isinstance(source, MixedSource) and len(source) == 6 and len(described["real_chosen"]) == 2
    with pytest.raises(ValueError, match=r"labelled classes \['crack'\] are not among"):
        build_source(TrainingData(ok=str(ok), ops=["cutout"], real=str(real)), 32)
    source, _ = build_source(TrainingData(ok=str(ok), ops=["cutout"], real=str(real), agnostic=True,
                                          defects_per_image=2, box_margin_px=2), 32)
    batch = next(iter(source.epoch(0, 8)))  # the default mix: half of each batch real (3 real images, oversampled)
    assert source.class_names == (AGNOSTIC_CLASS,) and len(batch.images) == 8
    assert [len(b) for b in batch.boxes] == [2] * 4 + [1] * 4  # 2 synthetic defects per image, then the real ones
