"""FasterRCNNDetector: training on the shared loop, predictions, persistence, resume, offline building, errors."""

import math

import pytest
import torch

from detectors.errors import NotAModelFile
from detectors.rcnn import FasterRCNNDetector, build_faster_rcnn
from detectors.types import LabelledSet, Prediction
from learned import check_limits, gain

TINY = dict(class_names=["square"], image_size=64, batch_size=4, warmup_steps=2, seed=0)


def squares(n, size=64, seed=0):
    """Dark noisy images; image i holds i % 3 bright squares (8-15 px), each boxed: a trivially learnable task."""
    g = torch.Generator().manual_seed(seed)
    images, boxes = [], []
    for i in range(n):
        image = (torch.rand(3, size, size, generator=g) * 40).to(torch.uint8)
        found = []
        for _ in range(i % 3):
            side = int(torch.randint(8, 16, (1,), generator=g))
            y, x = torch.randint(0, size - side, (2,), generator=g).tolist()
            image[:, y:y + side, x:x + side] = 220
            found.append([x, y, x + side, y + side])
        images.append(image)
        boxes.append(torch.tensor(found, dtype=torch.float32).view(-1, 4))
    return LabelledSet(images, boxes, [torch.ones(len(b), dtype=torch.int64) for b in boxes], ("square",))


@pytest.fixture(scope="module")
def data():
    return squares(12)


@pytest.fixture(scope="module")
def trained(data):
    return FasterRCNNDetector(**TINY).fit(data, epochs=2, progress=False)


def test_training_runs_on_the_shared_loop(trained, data):
    assert trained.epochs_trained == 2 and trained.steps_trained == 6 and len(trained.history) == 6
    record = trained.history[-1]
    assert {"step", "epoch", "loss", "loss_classifier", "loss_box_reg", "loss_objectness", "lr"} <= set(record)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in trained.history)


def test_predictions_are_boxes_with_the_top_score_as_image_score(trained, data):
    images = torch.stack(list(data.images[:5]))
    prediction = trained.predict(images)
    assert isinstance(prediction, Prediction) and prediction.maps is None and len(prediction) == 5
    for boxes, scores, labels, top in zip(prediction.boxes, prediction.box_scores, prediction.box_labels,
                                          prediction.scores):
        assert boxes.shape == (len(scores), 4) and labels.dtype == torch.int64
        assert ((labels >= 1) & (labels <= 1)).all()
        assert ((boxes >= 0) & (boxes <= 64)).all()
        assert float(top) == (float(scores.max()) if len(scores) else 0.0)
    assert torch.equal(trained.predict(images.float() / 255).scores, prediction.scores)


def test_same_seed_same_model_and_save_load(trained, data, tmp_path):
    again = FasterRCNNDetector(**TINY).fit(data, epochs=2, progress=False)
    assert again.history == trained.history
    images = torch.stack(list(data.images[:4]))
    loaded = FasterRCNNDetector.load(trained.save(tmp_path / "m.pt"))
    a, b = trained.predict(images), loaded.predict(images)
    assert torch.equal(a.scores, b.scores) and all(torch.equal(x, y) for x, y in zip(a.boxes, b.boxes))
    assert loaded.config() == trained.config() and loaded.history == trained.history

    from detectors.registry import load_detector

    assert isinstance(load_detector(tmp_path / "m.pt"), FasterRCNNDetector)
    (tmp_path / "junk.pt").write_text("no")
    with pytest.raises(NotAModelFile, match="not a defectgen Faster R-CNN model"):
        FasterRCNNDetector.load(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="made for 64 px images, not 32"):
        FasterRCNNDetector.load(tmp_path / "m.pt", image_size=32)


def test_interrupted_training_resumes_to_the_same_model(data, trained, tmp_path):
    class Interrupt(Exception):
        pass

    def stop(record):
        if record["step"] == 4:
            raise Interrupt

    checkpoint = tmp_path / "ckpt.pt"
    first = FasterRCNNDetector(**TINY)
    with pytest.raises(Interrupt):
        first.fit(data, epochs=2, progress=False, checkpoint=checkpoint, callback=stop)
    assert first.epochs_trained == 1  # the checkpoint holds the first finished epoch
    resumed = FasterRCNNDetector(**TINY).fit(data, epochs=2, progress=False, checkpoint=checkpoint, resume=True)
    assert resumed.epochs_trained == 2 and resumed.history == trained.history
    images = torch.stack(list(data.images[:4]))
    assert torch.equal(resumed.predict(images).scores, trained.predict(images).scores)


def bright_squares(n, seed=0, size=48):
    """Dark noisy images (0-40), each with one bright (220) square of 14-20 px, boxed: the learned test's task, made
    easy on purpose (one class, one large high-contrast object per small image) so that a from-scratch Faster
    R-CNN finds the squares on new images within a unit test's budget."""
    g = torch.Generator().manual_seed(seed)
    images, boxes = [], []
    for _ in range(n):
        image = (torch.rand(3, size, size, generator=g) * 40).to(torch.uint8)
        side = int(torch.randint(14, 21, (1,), generator=g))
        y, x = torch.randint(0, size - side + 1, (2,), generator=g).tolist()
        image[:, y:y + side, x:x + side] = 220
        images.append(image)
        boxes.append(torch.tensor([[x, y, x + side, y + side]], dtype=torch.float32))
    return LabelledSet(images, boxes, [torch.ones(1, dtype=torch.int64) for _ in boxes], ("square",))


def top_box_hits(detector, test):
    """Images of ``test`` whose top-scoring predicted box overlaps the planted box at IoU >= 0.5."""
    from torchvision.ops import box_iou

    prediction = detector.predict(torch.stack(list(test.images)))
    return sum(len(scores) > 0 and float(box_iou(boxes[scores.argmax()][None], truth).max()) >= 0.5
               for boxes, scores, truth in zip(prediction.boxes, prediction.box_scores, test.boxes))


RCNN_LIMITS = {  # seeds 0-4, 1 thread, torch 2.14.1 and 2.9.1: benchmarks/learned_margins.py (docs/results/)
    "hits": (">", 9.5),         # of 16 new images, those whose top box is on the square (IoU >= 0.5)
    "hits_gain": (">", 8.5),    # hits minus those of the same network untrained (which finds 0-1)
    "loss_ratio": ("<", 0.5),   # mean loss of the last 4 steps / the first 4; catches frozen only (hits catch
                                # the box breakages, whose loss falls too)
}
RCNN_BREAKAGES = ("untrained", "frozen", "shuffled_boxes", "random_boxes")
RCNN_SETTINGS = dict(class_names=["square"], image_size=48, batch_size=2, learning_rate=3e-4, warmup_steps=2)


def measure_rcnn_training(seed=0, breakage=None):
    """Train 3 epochs (48 steps of 2) on 32 images of one bright square each; count the new images (16) whose
    top-scoring box is on their square, trained and (the control) with the same network before training.

    A learning rate of 3e-4: in trials of 24-32 steps (batch 2 or 4) at 1e-3 (the detector's default) and above,
    the box classifier stayed unsure and the top box was loose, or on a sliver at the image border, on most new
    images; 3e-4 and 2e-4 did far better, and 48 steps rather than 24 made every seed tried find most.
    Breakages: ``untrained`` (no step), ``frozen`` (a learning rate of 0), ``shuffled_boxes`` (each image trained
    with another image's box) and ``random_boxes`` (each box moved to a random place, its size kept): hits are
    counted against the true squares, so none of them can find them.
    """
    data = bright_squares(32, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    if breakage == "shuffled_boxes":
        order = torch.randperm(len(data), generator=g).tolist()
        data = LabelledSet(data.images, [data.boxes[i] for i in order], data.labels, data.class_names)
    elif breakage == "random_boxes":
        moved = []
        for box in data.boxes:
            side = box[0, 2:] - box[0, :2]
            corner = torch.rand(2, generator=g) * (48 - side)
            moved.append(torch.cat([corner, corner + side]).floor()[None])
        data = LabelledSet(data.images, moved, data.labels, data.class_names)
    lr = 0.0 if breakage == "frozen" else RCNN_SETTINGS["learning_rate"]
    det = FasterRCNNDetector(**{**RCNN_SETTINGS, "seed": seed, "learning_rate": lr})
    test = bright_squares(16, seed=1000 + seed)
    control = top_box_hits(det, test)  # the same network, untrained
    if breakage != "untrained":
        det.fit(data, epochs=3, progress=False)
    losses = [r["loss"] for r in det.history]
    measured = {"hits": float(top_box_hits(det, test)), "hits_control": float(control),
                "loss_ratio": sum(losses[-4:]) / sum(losses[:4]) if losses else math.nan, "_detector": det}
    return gain(measured, "hits")


def test_training_finds_the_planted_squares_on_new_images():
    """A from-scratch Faster R-CNN trained for 48 steps puts its top box on the square of most new images, where
    the same network untrained finds almost none (RCNN_LIMITS; its cost: about 32 s at 1 thread)."""
    measured = measure_rcnn_training(seed=0)
    assert check_limits(measured, RCNN_LIMITS) == []
    assert measured["_detector"].steps_trained == 48


LEARNED = {"fasterrcnn_training": (measure_rcnn_training, RCNN_LIMITS, RCNN_BREAKAGES)}


def test_gray_model_and_channel_handling(data):
    gray = LabelledSet([im[:1].contiguous() for im in data.images], data.boxes, data.labels, data.class_names)
    det = FasterRCNNDetector(**{**TINY, "channels": 1}).fit(gray, epochs=1, progress=False)
    out = det.predict(torch.stack(list(gray.images[:2])))
    assert len(out) == 2
    assert len(det.predict(torch.stack(list(data.images[:2])))) == 2  # colour input seen as luminance


def test_builds_offline_and_loads_a_local_backbone(tmp_path, no_network):
    from torchvision.models import mobilenet_v3_large

    torch.manual_seed(0)
    reference = mobilenet_v3_large(weights=None)
    torch.save(reference.state_dict(), tmp_path / "mnv3.pth")
    net = build_faster_rcnn(1, 64, weights_backbone=tmp_path / "mnv3.pth")
    first = net.backbone.body["0"][0].weight
    torch.testing.assert_close(first, reference.features[0][0].weight)
    with pytest.raises(ValueError, match="does not exist"):
        build_faster_rcnn(1, 64, weights_backbone=tmp_path / "none.pth")
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a torchvision mobilenet_v3_large backbone"):
        build_faster_rcnn(1, 64, weights_backbone=tmp_path / "other.pth")
    det = FasterRCNNDetector(**TINY, weights_backbone=tmp_path / "mnv3.pth")
    loaded = FasterRCNNDetector.load(det.save(tmp_path / "m.pt"))  # the backbone file is not needed to load
    assert loaded.config()["weights_backbone"] == str(tmp_path / "mnv3.pth")
    assert no_network == []


def test_input_and_setting_errors(trained, data):
    with pytest.raises(ValueError, match="class_names"):
        FasterRCNNDetector(image_size=64)
    with pytest.raises(ValueError, match="backbone must be one of"):
        FasterRCNNDetector(class_names=["a"], backbone="vgg")
    with pytest.raises(ValueError, match=r"classes \['defect'\] are not this detector's"):
        FasterRCNNDetector(**TINY).fit(data.agnostic(), epochs=1)
    with pytest.raises(TypeError, match="LabelledSet or a training source"):
        FasterRCNNDetector(**TINY).fit("folder", epochs=1)
    with pytest.raises(ValueError, match="made for 64x64"):
        trained.predict(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8 or float"):
        trained.predict(torch.zeros(1, 3, 64, 64, dtype=torch.int32))
    with pytest.raises(ValueError, match="resume needs the checkpoint"):
        FasterRCNNDetector(**TINY).fit(data, epochs=1, resume=True)


def test_training_and_evaluation_make_no_network_call(no_network, tmp_path):
    """Sockets refuse everything while a detector is built, trained, saved, loaded and evaluated."""
    from detectors.evaluation import evaluate_labelled
    from detectors.registry import load_detector

    data = squares(4)
    det = FasterRCNNDetector(**TINY).fit(data, epochs=1, progress=False)
    loaded = load_detector(det.save(tmp_path / "m.pt"))
    report = evaluate_labelled(loaded, data)
    assert report["kind"] == "boxes" and 0 <= report["overall"]["map_50"] <= 1
    assert no_network == []
