"""The YOLO detector (ultralytics): training, prediction, saves, seeding, resume, fresh synthetic defects, offline.

Tiny on purpose: 64 px images, a handful of them, one or two epochs of ``yolov8n.yaml`` from random weights.
"""
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detectors.yolo.offline import MISSING, import_ultralytics

try:  # import it offline first: importorskip would import it the ordinary way (a DNS lookup at import)
    import_ultralytics()
except ImportError:
    pass
pytest.importorskip("ultralytics")

from defectgen.rng import index_seed  # noqa: E402
from detectors.errors import NotAModelFile  # noqa: E402
from detectors.registry import create_detector, list_detectors, load_detector  # noqa: E402
from detectors.types import LabelledSet, Prediction  # noqa: E402
from learned import check_limits, gain  # noqa: E402
from detectors.yolo import RUN_STATE, YOLODetector  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIZE = 64


def squares(n, seed=0, channels=3, size=SIZE):
    """Dark noisy images, each with one bright square (12-27 px): trivially learnable boxes."""
    g = torch.Generator().manual_seed(seed)
    images, boxes, labels = [], [], []
    for _ in range(n):
        image = torch.randint(0, 40, (channels, size, size), generator=g, dtype=torch.uint8)
        s = int(torch.randint(12, 28, (1,), generator=g))
        x, y = (int(v) for v in torch.randint(0, size - s, (2,), generator=g))
        image[:, y:y + s, x:x + s] = 220
        images.append(image)
        boxes.append(torch.tensor([[x, y, x + s, y + s]], dtype=torch.float32))
        labels.append(torch.tensor([1]))
    return LabelledSet(images, boxes, labels, ("square",))


def small(**settings):
    kw = dict(image_size=SIZE, batch_size=8, warmup_epochs=0.0, seed=0)
    kw.update(settings)
    return YOLODetector(**kw)


def batch_of(labelled):
    return torch.stack(list(labelled.images))


def same_weights(a, b):
    sa, sb = a.network.state_dict(), b.network.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def iou(a, b):
    lt, rb = torch.max(a[:, None, :2], b[None, :, :2]), torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return small().fit(squares(16), epochs=1, out=tmp_path_factory.mktemp("yolo") / "run", progress=False)


# -- without ultralytics -----------------------------------------------------------------------------------------------
def test_module_imports_without_ultralytics_and_the_detector_says_what_to_install():
    code = textwrap.dedent("""
        import sys
        sys.modules["ultralytics"] = None  # as if it were not installed
        import detectors.yolo
        from detectors.registry import detector_class, list_detectors
        assert "yolo" in list_detectors() and detector_class("yolo") is detectors.yolo.YOLODetector
        try:
            detectors.yolo.YOLODetector()
        except ImportError as error:
            print("ImportError:", error)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"ImportError: {MISSING}" in out.stdout


# -- training ----------------------------------------------------------------------------------------------------------
YOLO_LIMITS = {  # spread over seeds, releases and the breakages: benchmarks/learned_margins.py
    "box_loss_ratio": ("<", 0.75),  # last epoch / peak of the first 4 (YOLO's box loss can rise first)
    "cls_loss_ratio": ("<", 0.75),
    # of 16 new images, those whose top box is on the square (IoU > 0.5): 16 on seeds 0-4 (torch 2.9.1 and 2.14.1,
    # docs/results/learned_margins*.json; 15-16 on seeds 0-9 in earlier runs); with shuffled boxes 0-8 (8 on
    # seed 0: its loss ratios are what catch it at the old limit of 7.5)
    "hits": (">", 11.5),
    "hits_gain": (">", 10.5),       # hits minus those of the same network untrained (0 on seeds 0-4)
}
YOLO_BREAKAGES = ("untrained", "shuffled_boxes", "no_boxes")
EPOCHS = 24


def _top_box_hits(det, test):
    prediction = det.predict(batch_of(test))
    return sum(len(b) > 0 and float(iou(b[:1], truth).max()) > 0.5 for b, truth in zip(prediction.boxes, test.boxes))


def measure_yolo_training(seed=0, breakage=None, out=None):
    """Train 24 epochs on 32 images of one bright square each, predict 16 new ones, with the trained network and
    (the control) the same network before training.

    (At 16 epochs the boxes were on the squares but loose on some seeds, IoU 0.2-0.4: 8 hits of 16 for seed 0
    on torch 2.9.1, half a hit from the limit; 24 epochs give IoU 0.7-0.9.)

    A trainer that lost the boxes (``no_boxes``) has no box loss to fall; one whose boxes were shuffled between
    images (``shuffled_boxes``) cannot put boxes on squares it was never shown; ``untrained`` skips training.
    """
    data = squares(32, seed=seed)
    if breakage == "shuffled_boxes":
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 1)).tolist()
        data = LabelledSet(data.images, [data.boxes[i] for i in order], data.labels, data.class_names)
    elif breakage == "no_boxes":
        data = LabelledSet(data.images, [torch.zeros(0, 4)] * len(data),
                           [torch.zeros(0, dtype=torch.int64)] * len(data), data.class_names)
    det = small(optimizer="AdamW", learning_rate=0.004, seed=seed, train_args={"mosaic": 0.0, "save": False})
    test = squares(16, seed=100 + seed)
    control = _top_box_hits(det, test)  # the same network, untrained
    records = []
    if breakage != "untrained":
        with tempfile.TemporaryDirectory() as tmp:
            det.fit(data, epochs=EPOCHS, out=Path(out or tmp) / "run", val=False, callback=records.append,
                    progress=False)
    ratio = {key: records[-1][key] / max(max(r[key] for r in records[:4]), 1e-12) if records else float("nan")
             for key in ("box_loss", "cls_loss")}
    measured = {"box_loss_ratio": ratio["box_loss"], "cls_loss_ratio": ratio["cls_loss"],
                "hits": float(_top_box_hits(det, test)), "hits_control": float(control),
                "_detector": det, "_records": records}
    return gain(measured, "hits")


def test_training_learns_bright_squares(tmp_path):
    """Losses finite and falling, and the boxes found on new images are the squares (see YOLO_LIMITS)."""
    measured = measure_yolo_training(seed=0, out=tmp_path)
    records, det = measured["_records"], measured["_detector"]
    assert [r["epoch"] for r in records] == list(range(1, EPOCHS + 1)) and det.history == records
    assert det.epochs_trained == EPOCHS
    for key in ("loss", "box_loss", "cls_loss", "dfl_loss", "seconds"):
        assert all(np.isfinite(r[key]) for r in records), key
    assert check_limits(measured, YOLO_LIMITS) == []


LEARNED = {"yolo_training": (measure_yolo_training, YOLO_LIMITS, YOLO_BREAKAGES)}


def test_predict_shapes_dtypes_ranges_and_image_score(trained):
    images = batch_of(squares(3, seed=5))
    p = trained.predict(images)
    assert isinstance(p, Prediction) and p.has_boxes and not p.has_maps and len(p) == 3
    assert p.scores.shape == (3,) and p.scores.dtype == torch.float32
    for boxes, scores, labels, image_score in zip(p.boxes, p.box_scores, p.box_labels, p.scores):
        n = len(boxes)
        assert boxes.shape == (n, 4) and boxes.dtype == torch.float32
        assert scores.shape == (n,) and scores.dtype == torch.float32 and labels.shape == (n,)
        assert labels.dtype == torch.int64 and bool(((labels >= 1) & (labels <= trained.num_classes)).all())
        assert bool((boxes >= 0).all() and (boxes <= SIZE).all() and (boxes[:, 2:] >= boxes[:, :2]).all())
        assert bool(((scores >= trained.conf_threshold) & (scores <= 1)).all()) and n <= trained.max_det
        assert float(image_score) == (float(scores.max()) if n else 0.0)
    as_float = trained.predict(images.float() / 255)
    assert torch.allclose(as_float.scores, p.scores, atol=1e-5)
    assert trained.predict(images[:0]).scores.shape == (0,)
    strict = small()
    strict.conf_threshold = 1.0  # nothing passes: every image scores 0
    q = strict.predict(images)
    assert q.scores.tolist() == [0.0, 0.0, 0.0] and all(len(b) == 0 for b in q.boxes)
    with pytest.raises(ValueError, match="made for 64x64"):
        trained.predict(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8 or float"):
        trained.predict(torch.zeros(1, 3, SIZE, SIZE, dtype=torch.int32))


# -- saves -------------------------------------------------------------------------------------------------------------
def test_save_and_load_give_identical_predictions(trained, tmp_path):
    images = batch_of(squares(4, seed=9))
    path = trained.save(tmp_path / "run" / "model.pt")
    state = torch.load(path, weights_only=True)  # tensors and plain data, not ultralytics' pickled model
    assert state["format"] == YOLODetector.FORMAT and state["class_names"] == ["square"]
    assert state["epochs_trained"] == 1 and state["model_yaml"]["scale"] == "n"
    for loaded in (YOLODetector.load(path), load_detector(tmp_path / "run"), load_detector(path, image_size=SIZE)):
        assert isinstance(loaded, YOLODetector) and same_weights(loaded, trained)
        a, b = trained.predict(images), loaded.predict(images)
        assert torch.equal(a.scores, b.scores)
        assert all(torch.equal(x, y) for x, y in zip(a.boxes, b.boxes))
        assert all(torch.equal(x, y) for x, y in zip(a.box_labels, b.box_labels))
        assert loaded.history == trained.history and loaded.config() == trained.config()
    with pytest.raises(ValueError, match="made for 64 px"):
        YOLODetector.load(path, image_size=128)
    described = json.loads(json.dumps(trained.describe()))
    assert described["detector"] == "yolo" and described["model"] == "yolov8n.yaml" and described["epochs_trained"] == 1
    rebuilt = create_detector("yolo", **trained.config())  # the settings rebuild an untrained twin
    assert rebuilt.config() == trained.config() and rebuilt.epochs_trained == 0
    assert "yolo" in list_detectors()


def test_loading_another_kind_of_file_is_refused(tmp_path):
    from detectors.cutpaste import CutPasteDetector

    cutpaste = CutPasteDetector(pretext="cutpaste", image_size=32, head_layers=(16,), batch_size=4)
    cutpaste.fit(torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8), steps=0)
    cutpaste.save(tmp_path / "cutpaste.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    for path in (tmp_path / "cutpaste.pt", tmp_path / "junk.pt"):
        with pytest.raises(NotAModelFile, match="not a defectgen"):
            YOLODetector.load(path)
    with pytest.raises(ValueError, match="does not exist"):
        YOLODetector.load(tmp_path / "missing.pt")


def test_weights_start_from_a_local_file_and_are_never_downloaded(tmp_path):
    source = small(seed=1)
    source.save(tmp_path / "start.pt")
    started = small(seed=2, weights=str(tmp_path / "start.pt"))
    assert same_weights(started, source) and started.config()["weights"] == str(tmp_path / "start.pt")
    with pytest.raises(ValueError, match="never downloads"):
        small(weights="yolov8n.pt")


# -- seeding and resume ------------------------------------------------------------------------------------------------
def test_same_seed_same_model(tmp_path):
    data = squares(8)
    a = small().fit(data, epochs=1, out=tmp_path / "a", progress=False)
    b = small().fit(data, epochs=1, out=tmp_path / "b", progress=False)
    c = small(seed=1).fit(data, epochs=1, out=tmp_path / "c", progress=False)
    assert same_weights(a, b) and not same_weights(a, c)
    images = batch_of(data)
    assert torch.equal(a.predict(images).scores, b.predict(images).scores)
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]


class Interrupted(Exception):
    pass


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    data, run = squares(8), tmp_path / "run"

    def stop_after_first_epoch(record):
        raise Interrupted(record["epoch"])

    first = small()
    with pytest.raises(Interrupted):
        first.fit(data, epochs=2, out=run, callback=stop_after_first_epoch, progress=False)
    assert first.epochs_trained == 0 and first.history == []  # an interrupted fit changes nothing
    assert (run / "ultralytics" / "weights" / "last.pt").is_file()
    assert [r["epoch"] for r in json.loads((run / RUN_STATE).read_text())["records"]] == [1]
    with pytest.raises(ValueError, match="2 epochs, not 3"):
        small().fit(data, epochs=3, out=run, resume=True)
    with pytest.raises(ValueError, match="settings of the interrupted fit"):
        small(batch_size=4).fit(data, epochs=2, out=run, resume=True)

    seen = []
    resumed = small().fit(data, epochs=2, out=run, resume=True, callback=seen.append, progress=False)
    assert [r["epoch"] for r in seen] == [2]  # epoch 1 came from the checkpoint, not trained again
    assert [r["epoch"] for r in resumed.history] == [1, 2] and resumed.epochs_trained == 2
    assert not same_weights(resumed, small())
    assert len((run / "ultralytics" / "results.csv").read_text().strip().splitlines()) == 1 + 2
    with pytest.raises(ValueError, match="nothing to resume"):
        small().fit(data, epochs=2, out=run, resume=True)
    with pytest.raises(ValueError, match="needs out="):
        small().fit(data, epochs=2, resume=True)


# -- on-the-fly synthetic defects --------------------------------------------------------------------------------------
def _snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


def _write_yolo_set(root, labelled):
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for i, (image, boxes) in enumerate(zip(labelled.images, labelled.boxes)):
        cv2.imwrite(str(root / "images" / "train" / f"{i}.png"), image.permute(1, 2, 0).numpy()[..., ::-1])
        x1, y1, x2, y2 = (float(v) / SIZE for v in boxes[0])
        (root / "labels" / "train" / f"{i}.txt").write_text(
            f"0 {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}\n")
    (root / "data.yaml").write_text("train: images/train\nval: images/train\nnames:\n  0: square\n")


def test_synthetic_defects_are_fresh_every_epoch_and_nothing_is_written_outside_the_run(tmp_path, monkeypatch):
    from defectgen.io.labelled import read_labelled
    from detectors.data.sources import LabelledSource, MixedSource, SyntheticSource

    ok_folder, real_folder, cwd = tmp_path / "ok", tmp_path / "real", tmp_path / "cwd"
    ok_folder.mkdir()
    for i, image in enumerate(squares(5, seed=3).images):  # OK images: the squares are part of the product
        cv2.imwrite(str(ok_folder / f"ok{i}.png"), image.permute(1, 2, 0).numpy())
    _write_yolo_set(real_folder, squares(3, seed=4))
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = {folder: _snapshot(folder) for folder in (ok_folder, real_folder)}

    class Recording(SyntheticSource):
        def make(self, indices, seed):
            batch = super().make(indices, seed)
            self.calls.append((indices.tolist(), seed, [b.tolist() for b in batch.boxes]))
            return batch

    synthetic = Recording(ok_folder, op="cutout", image_size=SIZE, seed=7)
    synthetic.calls = []
    real = LabelledSource(read_labelled(real_folder, "yolo", split="train", size=SIZE), SIZE)
    det = YOLODetector(image_size=SIZE, batch_size=4, warmup_epochs=0.0)  # classes from the data
    det.fit(MixedSource(synthetic, real), epochs=2, out=tmp_path / "run", progress=False)
    assert det.class_names == ["cutout", "square"] and det.num_classes == 2

    # one call for the validation images, then each OK image once per epoch (mosaic is closed in short runs)
    assert synthetic.calls[0][1] == index_seed(7, 0, "yolo-val")
    per_epoch = [synthetic.calls[1:6], synthetic.calls[6:11]]
    assert len(synthetic.calls) == 11
    drawn = [{c[0][0]: (c[1], c[2]) for c in calls} for calls in per_epoch]
    for epoch, defects in enumerate(drawn):
        assert sorted(defects) == list(range(5))
        assert all(seed == index_seed(7, i, f"yolo-epoch-{epoch}") for i, (seed, _) in defects.items())
    assert sum(drawn[0][i][1] != drawn[1][i][1] for i in range(5)) >= 4  # new defects at epoch 1

    assert {folder: _snapshot(folder) for folder in (ok_folder, real_folder)} == before
    assert list(cwd.iterdir()) == []  # no runs/ folder, no caches
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["data", "ultralytics", RUN_STATE]
    assert (run / "data" / "labels" / "train.cache").is_file()  # ultralytics' cache went into the run folder


def test_mosaic_partners_are_painted_with_the_epoch_of_the_item_that_pulls_them_in(tmp_path):
    from detectors.data.sources import SyntheticSource

    class Recording(SyntheticSource):
        def make(self, indices, seed):
            self.seeds.append(seed)
            return super().make(indices, seed)

    source = Recording(torch.stack(list(squares(4, seed=3).images)), op="cutout", image_size=SIZE, seed=7)
    source.seeds = []
    small(batch_size=2, train_args={"close_mosaic": 0}).fit(source, epochs=2, val=False, progress=False)
    stream = {index_seed(7, i, f"yolo-epoch-{e}"): e for e in (0, 1) for i in range(4)}
    epochs = [stream[seed] for seed in source.seeds[1:]]  # [0] drew the validation images
    assert len(epochs) > 2 * 4  # mosaic: each item pulls in three partners
    assert epochs == sorted(epochs) and set(epochs) == {0, 1}


def test_epoch_tags_survive_dataloader_workers_and_prefetching():
    """The epoch travels in the sampler's indices (the sampler runs in the main process), so workers that
    prefetch the next epoch's first batches still tag them with the next epoch."""
    from ultralytics.data.build import build_dataloader

    from detectors.yolo.dataset import EpochBatches

    class Tagged(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, index):
            return torch.tensor(divmod(int(index), 6))

    loader = build_dataloader(Tagged(), batch=2, workers=2, shuffle=True, rank=-1, device="cpu")
    assert loader.num_workers == 2
    loader.batch_sampler.sampler = EpochBatches(loader.batch_sampler.sampler, 6, lambda: 0)
    try:
        for epoch in range(3):
            seen = torch.cat(list(loader))
            assert seen[:, 0].tolist() == [epoch] * 6 and sorted(seen[:, 1].tolist()) == list(range(6))
    finally:
        loader.close()


def test_resume_refuses_other_data(tmp_path):
    data = squares(8)

    def stop(record):
        raise Interrupted()

    with pytest.raises(Interrupted):
        small().fit(data, epochs=2, out=tmp_path / "run", callback=stop, val=False, progress=False)
    with pytest.raises(ValueError, match="data of the interrupted fit"):
        small().fit(squares(8, seed=1), epochs=2, out=tmp_path / "run", resume=True, val=False)


# -- offline -----------------------------------------------------------------------------------------------------------
def test_training_saving_loading_and_predicting_make_no_network_call(tmp_path, no_network):
    det = small().fit(squares(8), epochs=1, out=tmp_path / "run", progress=False)
    loaded = YOLODetector.load(det.save(tmp_path / "model.pt"))
    loaded.predict(batch_of(squares(2)))
    assert no_network == []


def test_a_fresh_process_imports_and_trains_offline_and_leaves_no_settings_behind(tmp_path):
    """Outside pytest (ultralytics turns its analytics off under pytest), with sockets blocked before the
    first import: no lookup at import, no settings file in the user's config folder, no runs/ folder."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    code = textwrap.dedent(f"""
        import socket
        calls = []
        def refuse(name):
            def call(*args, **kwargs):
                calls.append(name)
                raise OSError("blocked")
            return call
        socket.socket.connect = refuse("connect")
        socket.create_connection = refuse("create_connection")
        socket.getaddrinfo = refuse("getaddrinfo")
        import torch
        from detectors.types import LabelledSet
        from detectors.yolo import YOLODetector
        images = [torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8) for _ in range(4)]
        boxes = [torch.tensor([[8.0, 8.0, 30.0, 30.0]]) for _ in range(4)]
        data = LabelledSet(images, boxes, [torch.tensor([1])] * 4, ("dent",))
        det = YOLODetector(image_size=64, batch_size=4, warmup_epochs=0.0)
        det.fit(data, epochs=1, out={str(tmp_path / "run")!r})
        YOLODetector.load(det.save({str(tmp_path / "model.pt")!r})).predict(torch.stack(images))
        import ultralytics.utils
        print("ONLINE", ultralytics.utils.ONLINE, "CALLS", calls)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "YOLO_", "XDG_"))}
    env.update(HOME=str(home), PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ONLINE False CALLS []" in out.stdout
    assert list(home.rglob("*")) == [] and list(cwd.iterdir()) == []


# -- gray, classes, settings -------------------------------------------------------------------------------------------
def test_gray_images(tmp_path):
    det = small(channels=1)
    det.fit(squares(8, channels=1), epochs=1, out=tmp_path / "run", progress=False, device="cpu")
    written = cv2.imread(str(tmp_path / "run" / "data" / "images" / "train" / "img_000000.png"), cv2.IMREAD_UNCHANGED)
    assert written.shape == (SIZE, SIZE)  # gray on disk; ultralytics reads it as three equal channels
    gray = batch_of(squares(2, seed=3, channels=1))
    p = det.predict(gray)
    assert len(p) == 2 and p.scores.dtype == torch.float32
    colour = det.predict(gray.expand(-1, 3, -1, -1))  # colour input to a gray model: its luminance
    assert torch.allclose(colour.scores, p.scores, atol=1e-5)


def test_class_names_from_the_data_or_given(tmp_path):
    two = squares(4).concat(LabelledSet(list(squares(2, seed=1).images), list(squares(2, seed=1).boxes),
                                        [torch.tensor([1])] * 2, ("round",)))
    with pytest.raises(ValueError, match="num_classes=1"):
        small(num_classes=1).fit(two, epochs=1)
    with pytest.raises(ValueError, match="does not have"):
        small(class_names=["square"]).fit(two, epochs=1)
    named = small(num_classes=2)
    named._adopt_class_names(["square", "round"])
    assert named.class_names == ["square", "round"]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="stride 32"):
        small(image_size=48)
    with pytest.raises(ValueError, match="not found"):
        small(model="yolov99z.yaml")
    with pytest.raises(ValueError, match="model yaml"):
        small(model="yolov8n.pt")
    with pytest.raises(ValueError, match="learning_rate"):
        small(train_args={"lr0": 0.1})
    with pytest.raises(ValueError, match="set by the detector"):
        small(train_args={"device": "cuda"})
    with pytest.raises(ValueError, match="unknown ultralytics"):
        small(train_args={"mosaik": 0.0})
    with pytest.raises(ValueError, match="num_classes=3"):
        small(class_names=["a", "b"], num_classes=3)
    with pytest.raises(ValueError, match="channels"):
        small(channels=2)
    with pytest.raises(TypeError, match="LabelledSet or a training source"):
        small().fit(torch.zeros(2, 3, SIZE, SIZE, dtype=torch.uint8))


def test_a_fit_never_replaces_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "run" / "data").mkdir(parents=True)
    (tmp_path / "run" / "data" / "mine.txt").write_text("user data")
    with pytest.raises(ValueError, match="not written by the yolo detector"):
        small().fit(squares(4), epochs=1, out=tmp_path / "run")
    assert (tmp_path / "run" / "data" / "mine.txt").read_text() == "user data"


def test_fit_leaves_global_random_state_alone(tmp_path):
    import random

    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(6)
    expected = (torch.rand(1), random.random(), np.random.rand())
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(6)
    threads = torch.get_num_threads()
    small().fit(squares(4), epochs=1, progress=False)  # a temporary run folder, removed afterwards
    assert (torch.rand(1), random.random(), np.random.rand()) == expected
    assert torch.get_num_threads() == threads and not torch.are_deterministic_algorithms_enabled()
