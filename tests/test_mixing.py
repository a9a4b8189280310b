"""Mixing synthetic defects with K real images by steps, and training lengths counted in images seen.

MixedSource's plan (real share per batch, fine-tune schedule, closed-form streams), the one step walk
(training_batches / steps_for), Faster R-CNN's images_seen, TrainingData / build_source, the train commands'
mixing and length options, the study's mixing key and transplant pairs: k, and a learned test: synthetic squares
plus 4 real ones beat the 4 real alone at equal images seen.
"""
import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import write_dark_ok_images, write_yolo_squares

from defectgen import PatchDefect
from defectgen.cli import main
from defectgen.masks.rectangle import RectangleMask
from defectgen.values import value_scale
from defectgen.sources.constant import ConstantFill
from detectors.data.sources import (DEFAULT_REAL_FRACTION, DEFAULT_SCHEDULE, LabelledSource, MixedSource,
                                    SyntheticSource, mix, steps_for, steps_per_epoch, steps_to_see,
                                    training_batches)
from detectors.data.training_data import TrainingData, build_source
from detectors.rcnn import FasterRCNNDetector
from detectors.types import LabelledSet, TrainingBatch
from learned import check_limits, gain


# -- helpers --------------------------------------------------------------------------------------------------
def numbered_set(n, size=16, first=100, names=("square",)):
    """Image i is filled with the value ``first + i`` and has one box: real images can be traced in a batch."""
    images = [torch.full((3, size, size), first + i, dtype=torch.uint8) for i in range(n)]
    boxes = [torch.tensor([[1.0, 1.0, 5.0, 5.0]]) for _ in range(n)]
    labels = [torch.ones(1, dtype=torch.int64) for _ in range(n)]
    return LabelledSet(images, boxes, labels, names, names=tuple(f"real{i}" for i in range(n)))


def ok_images(n, size=16):
    """Dark OK images whose value is their index (< 100): synthetic items can be traced too."""
    return torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, size, size).contiguous()


class Untouched(SyntheticSource):
    """A synthetic source whose "defect" leaves the image as it is, with one box: batches stay traceable."""

    def make(self, indices, seed):
        images = self.ok_images[indices]
        return TrainingBatch(images, [torch.tensor([[2.0, 2.0, 6.0, 6.0]]) for _ in indices],
                             [torch.ones(1, dtype=torch.int64) for _ in indices])


def sources(n_ok=10, k=4, seed=3, **mixing):
    synthetic = Untouched(ok_images(n_ok), "cutout", image_size=16, seed=seed, class_names=["square"])
    return mix(synthetic, numbered_set(k), seed=seed, **mixing)


def traced(batch):
    values = batch.images[:, 0, 0, 0].tolist()
    return [v for v in values if v < 100], [v - 100 for v in values if v >= 100]


def same_batches(a, b):
    return len(a) == len(b) and all(torch.equal(x.images, y.images) and len(x.boxes) == len(y.boxes)
                                    and all(torch.equal(p, q) for p, q in zip(x.boxes, y.boxes))
                                    for x, y in zip(a, b))


# -- the plan -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75, 1.0])
@pytest.mark.parametrize("batch_size", [1, 2, 3, 5, 8])
def test_every_mixed_batch_holds_the_real_share(fraction, batch_size):
    source = sources(real_fraction=fraction)
    r = max(1, math.floor(fraction * batch_size + 0.5))
    assert source.real_per_batch(batch_size) == r
    for step in range(12):
        synthetic, real = source.plan(step, batch_size, 12)
        assert len(real) == r and len(synthetic) == batch_size - r
        assert synthetic.dtype == real.dtype == torch.int64
        batch = source.batch(step, batch_size, 12)
        fake, genuine = traced(batch)
        assert genuine == real.tolist() and fake == synthetic.tolist()   # synthetic first, then real
        assert len(batch.images) == len(batch.boxes) == len(batch.labels) == batch_size


@pytest.mark.parametrize("batch_size, replay, start, total", [(4, 0.25, 0.5, 10), (5, 0.4, 0.3, 7), (2, 0.0, 0.0, 5),
                                                              (3, 0.9, 1.0, 6), (1, 0.5, 0.5, 4)])
def test_finetune_is_synthetic_then_real_with_replay(batch_size, replay, start, total):
    source = sources(schedule="finetune", replay_fraction=replay, finetune_start=start)
    first = math.floor(start * total + 0.5)
    replayed = min(math.floor(replay * batch_size + 0.5), batch_size - 1)
    assert source.finetune_step(total) == first and source.replay_per_batch(batch_size) == replayed
    for step in range(total):
        fake, genuine = traced(source.batch(step, batch_size, total))
        if step < first:
            assert genuine == [] and len(fake) == batch_size
        else:
            assert len(fake) == replayed and len(genuine) == batch_size - replayed
    with pytest.raises(ValueError, match="no epochs"):
        next(source.epoch(0, batch_size))


def test_plan_is_a_pure_function_and_a_resumed_walk_is_the_tail_of_the_full_one():
    for mixing in ({"real_fraction": 0.5}, {"real_fraction": 0.25}, {"schedule": "finetune"},
                   {"real_fraction": None}):
        a, b = sources(**mixing), sources(**mixing)
        for step in (0, 5, 17):
            x, y = a.plan(step, 4, 20), b.plan(step, 4, 20)
            assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])
        full = list(training_batches(a, 4, 20))
        assert len(full) == 20
        for start in (1, 7, 19):
            assert same_batches(list(training_batches(b, 4, 20, start_step=start)), full[start:])
        if mixing.get("real_fraction", 0.5) is not None:  # another seed, another plan
            other = sources(seed=4, **mixing)
            assert any(not torch.equal(a.plan(s, 4, 20)[1], other.plan(s, 4, 20)[1]) for s in range(20))


def test_epoch_sources_resume_mid_epoch_without_making_the_skipped_batches():
    labelled = LabelledSource(numbered_set(7), 16, seed=1)
    full = list(training_batches(labelled, 3, 8))        # epochs of 3 steps (3, 3, 1 images)
    assert [len(b.images) for b in full] == [3, 3, 1, 3, 3, 1, 3, 3]
    assert same_batches(list(training_batches(labelled, 3, 8, start_step=4)), full[4:])
    assert same_batches(full[:3], list(labelled.epoch(0, 3))) and same_batches(full[3:6], list(labelled.epoch(1, 3)))
    assert same_batches(list(training_batches(labelled, 3, 3, first_epoch=2)), list(labelled.epoch(2, 3)))

    calls = []

    class Counting(Untouched):
        def make(self, indices, seed):
            calls.append(seed)
            return super().make(indices, seed)

    synthetic = Counting(ok_images(6), "cutout", image_size=16, seed=0, class_names=["square"])
    assert len(list(training_batches(synthetic, 2, 5, start_step=4))) == 1 and len(calls) == 1


def test_each_image_comes_equally_often():
    source = sources(n_ok=10, k=4, real_fraction=0.25)   # batches of 6: 2 real (1.5 rounds up), 4 synthetic
    real, synthetic = Counter(), Counter()
    for step in range(23):
        s, r = source.plan(step, 6, 23)
        real.update(r.tolist())
        synthetic.update(s.tolist())
    assert set(real) == set(range(4)) and max(real.values()) - min(real.values()) <= 1
    assert set(synthetic) == set(range(10)) and max(synthetic.values()) - min(synthetic.values()) <= 1
    assert sum(real.values()) == 46      # the 4 real images are 1/3 of what is seen, not 4 / 14
    finetune = sources(n_ok=10, k=4, schedule="finetune", replay_fraction=0.25, finetune_start=0.4)
    real = Counter(i for step in range(30) for i in finetune.plan(step, 4, 30)[1].tolist())
    assert sum(real.values()) == 18 * 3 and max(real.values()) - min(real.values()) <= 1


def test_proportional_mixing_is_the_old_epoch():
    source = sources(n_ok=6, k=3, real_fraction=None)
    assert not source.step_based and source.steps_per_epoch(4) == 3 and len(source) == 9
    epochs = list(source.epoch(0, 4)) + list(source.epoch(1, 4))
    assert same_batches([source.batch(step, 4, 6) for step in range(6)], epochs)
    for e in range(2):   # every item once per epoch
        seen = [traced(b) for b in epochs[3 * e:3 * e + 3]]
        assert sorted(v for f, _ in seen for v in f) == list(range(6))
        assert sorted(v for _, g in seen for v in g) == list(range(3))
    # MixedSource's own default is proportional: results made before step-based mixing reproduce
    assert not MixedSource(source.synthetic, source.real).step_based
    assert DEFAULT_REAL_FRACTION == 0.5 and DEFAULT_SCHEDULE == "mixed"
    assert mix(source.synthetic, numbered_set(3)).step_based


def test_step_based_epochs_are_passes_over_the_synthetic_items():
    source = sources(n_ok=10, k=4, real_fraction=0.5)
    assert source.steps_per_epoch(4) == 5 and steps_per_epoch(source, 4) == 5
    assert same_batches(list(source.epoch(1, 4)), [source.batch(s, 4, 10) for s in range(5, 10)])
    assert sources(real_fraction=1.0).steps_per_epoch(2) == 2   # all real: one pass over the 4 real images
    assert steps_per_epoch(LabelledSource(numbered_set(7), 16), 3) == 3


def test_a_generated_set_as_the_synthetic_side_with_classes_matched_by_name():
    generated = LabelledSet([torch.full((3, 16, 16), i, dtype=torch.uint8) for i in range(5)],
                            [torch.tensor([[0.0, 0, 4, 4]])] * 5, [torch.tensor([1 + i % 2]) for i in range(5)],
                            ("open", "short"))
    real = numbered_set(3, names=("short",))
    mixed = MixedSource(LabelledSource(generated, 16, seed=0), LabelledSource(real, 16, seed=0), seed=0,
                        real_fraction=0.5)
    assert mixed.class_names == ("open", "short")
    batch = mixed.batch(2, 4, 10)
    synthetic, genuine = mixed.plan(2, 4, 10)
    assert traced(batch) == (synthetic.tolist(), genuine.tolist())
    assert [lab.tolist() for lab in batch.labels] == [[1 + i % 2] for i in synthetic.tolist()] + [[2], [2]]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"real_fraction": 0.0}, ValueError, "real_fraction"), ({"real_fraction": 1.5}, ValueError, "real_fraction"),
    ({"real_fraction": "half"}, TypeError, "real_fraction"), ({"schedule": "warm"}, ValueError, "schedule"),
    ({"replay_fraction": 1.0}, ValueError, "replay_fraction"), ({"replay_fraction": -0.1}, ValueError, "replay"),
    ({"finetune_start": 1.5}, ValueError, "finetune_start"),
])
def test_bad_mixing_settings_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        sources(**kwargs)
    with pytest.raises(error, match=match):
        TrainingData(real="r", data="d", **kwargs)


def test_plan_and_walk_input_errors():
    source = sources(real_fraction=0.5)
    with pytest.raises(ValueError, match="step must be < total_steps"):
        source.plan(5, 4, 5)
    with pytest.raises(ValueError, match="batch_size"):
        source.plan(0, 0, 5)
    with pytest.raises(TypeError, match="MixedSource needs"):
        MixedSource(source, source.real)
    assert steps_for(10, 4) == 3 and steps_for(8, 4) == 2 and steps_for(1, 16) == 1
    assert steps_to_see(source, 10, 4) == 3                   # every batch full: steps_for
    labelled = LabelledSource(numbered_set(7), 16)            # epochs of 3 + 3 + 1 images
    for wanted in range(1, 30):
        batches = list(training_batches(labelled, 3, steps_to_see(labelled, wanted, 3)))
        seen = sum(len(b.images) for b in batches)
        assert wanted <= seen <= wanted + 2 and seen - len(batches[-1].images) < wanted   # the fewest steps
    with pytest.raises(ValueError, match="images_seen"):
        steps_for(0, 4)


# -- Faster R-CNN: images seen --------------------------------------------------------------------------------
TINY = dict(class_names=["square"], image_size=32, batch_size=3, warmup_steps=1, seed=0)


def tiny_source(real_fraction=0.5, seed=0, n_ok=8):
    g = torch.Generator().manual_seed(seed)
    ok = (torch.rand(n_ok, 3, 32, 32, generator=g) * 40).to(torch.uint8)
    synthetic = SyntheticSource(ok, "cutout", image_size=32, seed=seed, class_names=["square"])
    return mix(synthetic, numbered_set(3, size=32), seed=seed, real_fraction=real_fraction)


def test_fasterrcnn_trains_for_the_images_seen(tmp_path):
    batches = []
    detector = FasterRCNNDetector(**TINY).fit(tiny_source(), images_seen=7, progress=False,
                                              callback=lambda r: batches.append(r["images_seen"]))
    assert detector.steps_trained == 3 == len(batches) == steps_for(7, 3)   # ceil(7 / 3)
    assert batches == [3, 6, 9] and 7 <= detector.images_seen <= 7 + 3 - 1
    assert detector.describe()["images_seen"] == 9 and [r["images_seen"] for r in detector.history] == batches
    loaded = FasterRCNNDetector.load(detector.save(tmp_path / "m.pt"))
    assert loaded.images_seen == 9
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    del state["images_seen"]      # a file saved before images were counted
    assert FasterRCNNDetector.from_state(state).images_seen == 0
    # an epoch source's last batch is smaller: the count is of images, not steps x batch size
    labelled = FasterRCNNDetector(**TINY).fit(numbered_set(4, size=32), epochs=1, progress=False)
    assert labelled.steps_trained == 2 and labelled.images_seen == 4
    with pytest.raises(ValueError, match="not both"):
        FasterRCNNDetector(**TINY).fit(tiny_source(), epochs=1, images_seen=3)
    with pytest.raises(ValueError, match="images_seen"):
        FasterRCNNDetector(**TINY).fit(tiny_source(), images_seen=0)


def test_fasterrcnn_resumes_a_mixed_run_and_refuses_another_length(tmp_path):
    class Interrupt(Exception):
        pass

    def stop(record):
        if record["step"] == 4:
            raise Interrupt

    settings = dict(TINY, batch_size=2)
    data = tiny_source(n_ok=2)   # an epoch: 2 synthetic items, 1 per batch = 2 steps, a checkpoint each
    whole = FasterRCNNDetector(**settings).fit(data, images_seen=12, progress=False)
    checkpoint = tmp_path / "ckpt.pt"
    with pytest.raises(Interrupt):
        FasterRCNNDetector(**settings).fit(data, images_seen=12, progress=False, checkpoint=checkpoint, callback=stop)
    with pytest.raises(ValueError, match="12-images-seen run"):
        FasterRCNNDetector(**settings).fit(data, images_seen=14, progress=False, checkpoint=checkpoint, resume=True)
    with pytest.raises(ValueError, match="not a 1-epoch run"):
        FasterRCNNDetector(**settings).fit(data, epochs=1, progress=False, checkpoint=checkpoint, resume=True)
    resumed = FasterRCNNDetector(**settings).fit(data, images_seen=12, progress=False, checkpoint=checkpoint,
                                                 resume=True)
    assert resumed.history == whole.history and resumed.images_seen == whole.images_seen == 12


# -- TrainingData and build_source ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """OK images, a real YOLO set (bright squares, one image defect-free) and a YOLO set with no box at all."""
    root = tmp_path_factory.mktemp("mixing")
    rng = np.random.default_rng(0)
    ok = root / "ok"
    write_dark_ok_images(ok, rng, 4)
    real = root / "real"
    write_yolo_squares(real, rng, {"train": 4, "test": 2})
    empty = root / "empty"
    write_yolo_squares(empty, rng, {"train": 1, "test": 1})   # only the defect-free first image per split
    return root, ok, real, empty


def test_build_source_mixes_each_side_as_the_spec_says(folders):
    _, ok, real, _ = folders
    common = dict(real=str(real), real_count=2, class_map="blob=cutout")
    source, described = build_source(TrainingData(ok=str(ok), ops=["cutout"], **common), 32)
    assert isinstance(source, MixedSource) and source.real_fraction == DEFAULT_REAL_FRACTION
    assert described["mixing"]["step_based"] and len(described["real_chosen"]) == 2
    source, described = build_source(TrainingData(ok=str(ok), ops=["cutout"], schedule="finetune",
                                                  replay_fraction=0.5, **common), 32)
    assert source.schedule == "finetune" and source.replay_fraction == 0.5
    source, _ = build_source(TrainingData(ok=str(ok), ops=["cutout"], real_fraction=None, **common), 32)
    assert not source.step_based and len(source) == 6
    # a labelled folder as the synthetic side: mixed per batch, or concatenated as before
    source, _ = build_source(TrainingData(data=str(real), real=str(real), real_count=1), 32)
    assert isinstance(source, MixedSource) and isinstance(source.synthetic, LabelledSource)
    assert len(source.synthetic) == 4 and len(source.real) == 1
    source, _ = build_source(TrainingData(data=str(real), real=str(real), real_count=1, real_fraction=None), 32)
    assert isinstance(source, LabelledSource) and len(source) == 5
    # the K real images alone
    source, described = build_source(TrainingData(real=str(real), real_count=3), 32)
    assert isinstance(source, LabelledSource) and len(source) == 3 and "mixing" not in described
    with pytest.raises(ValueError, match="real_count is 5 but"):
        build_source(TrainingData(real=str(real), real_count=5), 32)
    with pytest.raises(ValueError, match="one synthetic side"):
        TrainingData(ok=str(ok), ops=["cutout"], data=str(real), real=str(real))


# -- the commands ---------------------------------------------------------------------------------------------
def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, message", [
    (["--ok", "{ok}", "--op", "cutout", "--epochs", "2", "--images-seen", "8"], "not allowed with argument --epochs"),
    (["--ok", "{ok}", "--op", "cutout", "--real-fraction", "0.5"], "--real-fraction mixes synthetic and real images"),
    (["--real", "{real}", "--schedule", "finetune"], "--schedule mixes synthetic and real images: it needs --real "
                                                      "and synthetic data"),
    (["--ok", "{ok}", "--op", "cutout", "--real", "{real}", "--replay-fraction", "0.2"], "add --schedule finetune"),
    (["--ok", "{ok}", "--op", "cutout", "--real", "{real}", "--schedule", "finetune", "--real-fraction", "0.5"],
     "--real-fraction is the real share of --schedule mixed"),
    (["--ok", "{ok}", "--op", "cutout", "--real", "{real}", "--real-fraction", "0"], "expected a number in (0, 1]"),
    (["--ok", "{ok}", "--op", "cutout", "--real", "{real}", "--schedule", "finetune", "--finetune-start", "2"],
     "--finetune-start must be <= 1.0"),
    (["--ok", "{ok}", "--op", "cutout", "--real", "{real}", "--real-count", "9", "--class-map", "blob=cutout"],
     "--real-count is 9 but the real set"),
    (["--ok", "{ok}", "--op", "cutout", "--real", "{empty}"], "holds no defect box at all"),
    (["--ok", "{ok}", "--op", "cutout", "--data", "{real}", "--real", "{real}"], "takes one synthetic side"),
])
def test_mixing_and_length_user_errors_exit_2_with_one_line(folders, tmp_path, capsys, argv, message):
    _, ok, real, empty = folders
    argv = ["train", "fasterrcnn", *[a.format(ok=ok, real=real, empty=empty) for a in argv], "--image-size", "32",
            "--out", tmp_path / "r", "--device", "cpu"]
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("defectgen: error: ") and message in lines[0], err
    assert not (tmp_path / "r").exists()


def test_train_mixed_for_images_seen_records_them(folders, tmp_path, capsys):
    _, ok, real, _ = folders
    code, out, err = run(["train", "fasterrcnn", "--ok", ok, "--op", "cutout", "--real", real, "--real-count", "2",
                          "--class-map", "blob=cutout", "--images-seen", "7", "--real-fraction", "0.25",
                          "--image-size", "32", "--batch-size", "4", "--out", tmp_path / "m", "--no-progress",
                          "--device", "cpu"], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "m" / "run.json").read_text())
    assert record["images_seen"] == 7 and record["epochs"] is None
    assert record["training_data"]["real_fraction"] == 0.25 and record["data"]["mixing"]["schedule"] == "mixed"
    assert record["trained"] == {"images_seen": 8, "steps": 2, "seconds": record["trained"]["seconds"]}
    assert "(1 real per batch of 4)" in out and "for 7 images seen (2 steps, 8 images seen)" in out
    # resuming with another length is refused by the run folder
    code, _, err = run(["train", "fasterrcnn", "--ok", ok, "--op", "cutout", "--real", real, "--real-count", "2",
                        "--class-map", "blob=cutout", "--images-seen", "9", "--real-fraction", "0.25",
                        "--image-size", "32", "--batch-size", "4", "--out", tmp_path / "m", "--resume"], capsys)
    assert code == 2 and "other images_seen" in err


def test_train_on_k_real_images_alone(folders, tmp_path, capsys):
    _, _, real, _ = folders
    code, out, err = run(["train", "fasterrcnn", "--real", real, "--real-count", "3", "--images-seen", "4",
                          "--image-size", "32", "--batch-size", "2", "--out", tmp_path / "k", "--no-progress",
                          "--device", "cpu"], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "k" / "run.json").read_text())
    assert len(record["data"]["real_chosen"]) == 3 and record["data"]["images_per_epoch"] == 3
    assert "synthetic" not in record["data"] and "mixing" not in record["data"]
    # an epoch of 3 images in batches of 2 ends in a batch of 1: one epoch and one more step show 5 >= 4 images
    assert record["trained"]["images_seen"] == 5 and record["trained"]["steps"] == 3
    assert "on 3 images per epoch (2 steps of 2)" in out


def test_train_cutpaste_for_images_seen(folders, tmp_path, capsys):
    root, ok, _, _ = folders
    common = ["train", "cutpaste", "--data", ok, "--image-size", "32", "--batch-size", "2", "--head-layers", "8",
              "--device", "cpu", "--no-progress"]
    code, out, err = run(common + ["--images-seen", "5", "--out", tmp_path / "c.pt"], capsys)
    assert code == 0, err
    assert "for 3 steps (6 normal images seen)" in out   # ceil(5 / 2) steps
    from detectors.registry import load_detector

    assert load_detector(tmp_path / "c.pt").steps_trained == 3
    code, _, err = run(common + ["--images-seen", "5", "--steps", "2", "--out", tmp_path / "d.pt"], capsys)
    assert code == 2 and "not allowed with argument" in err and len(err.splitlines()) == 1


# -- studies: mixing and pairs: k -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(0)
    write_dark_ok_images(root / "ok", rng, 6)
    write_yolo_squares(root / "real", rng, {"train": 4, "test": 2})
    return root


def study_recipe(**changes):
    raw = {"data": {"format": "folder", "ok": "ok", "real_train": {"path": "real", "format": "yolo", "split": "train"},
                    "real_test": {"path": "real", "format": "yolo", "split": "test"}},
           "families": {"none": "none", "cutout": {"op": "cutout"}},
           "regimes": ["synthetic", "synthetic+2", "real"],
           "detectors": {"fasterrcnn": {"kind": "fasterrcnn", "settings": {"batch_size": 2}, "images_seen": 4}},
           "test_sets": {"real": "real"}, "image_size": 32,
           "budgets": {"ft": {"mixing": {"schedule": "finetune"}}}}
    raw.update(changes)
    return raw


def test_study_mixing_is_checked_and_only_synthetic_plus_k_cells_carry_it(toy):
    from detectors.study import expand, load_study
    from detectors.study.cell import training_source
    from detectors.study.data import StudyData

    study = load_study(study_recipe(), base=toy)
    assert study.mixing == {"real_fraction": DEFAULT_REAL_FRACTION, "schedule": DEFAULT_SCHEDULE,
                            "replay_fraction": 0.25, "finetune_start": 0.5}
    cells = {(c.family, c.regime): c for c in expand(study)}
    assert "mixing" in cells[("cutout", "synthetic+2")].settings
    assert all("mixing" not in c.settings for key, c in cells.items() if key != ("cutout", "synthetic+2"))
    # other cells' ids do not depend on the mixing
    other = {(c.family, c.regime): c.id for c in expand(load_study(study_recipe(mixing={"real_fraction": 0.25}),
                                                                   base=toy))}
    assert other[("cutout", "synthetic+2")] != cells[("cutout", "synthetic+2")].id
    assert all(other[key] == c.id for key, c in cells.items() if key != ("cutout", "synthetic+2"))
    finetune = load_study(study_recipe(), "ft", base=toy)
    assert finetune.mixing["schedule"] == "finetune" and finetune.mixing["real_fraction"] == DEFAULT_REAL_FRACTION
    data = StudyData(study)
    source = training_source(study, data, cells[("cutout", "synthetic+2")], "cpu")
    assert isinstance(source, MixedSource) and source.real_fraction == DEFAULT_REAL_FRACTION and len(source.real) == 2
    assert isinstance(training_source(study, data, cells[("none", "synthetic+2")], "cpu"), LabelledSource)
    proportional = load_study(study_recipe(mixing={"real_fraction": None}), base=toy)
    cell = next(c for c in expand(proportional) if (c.family, c.regime) == ("cutout", "synthetic+2"))
    assert not training_source(proportional, StudyData(proportional), cell, "cpu").step_based


@pytest.mark.parametrize("mixing, message", [
    ({"real_fraction": 0}, "mixing.real_fraction must be > 0.0"), ({"schedule": "x"}, "mixing.schedule must be"),
    ({"replay_fraction": 1}, "mixing.replay_fraction"), ({"finetune_start": -1}, "mixing.finetune_start"),
    ({"fraction": 0.5}, "mixing: unknown key 'fraction'"), ("half", "mixing must be a mapping"),
])
def test_bad_study_mixing_names_the_key(toy, mixing, message):
    from detectors.study import RecipeError, load_study

    with pytest.raises(RecipeError, match=message):
        load_study(study_recipe(mixing=mixing), base=toy)


def test_transplant_pairs_k_takes_the_regimes_real_images(toy):
    from detectors.study import RecipeError, expand, load_study
    from detectors.study.cell import family_spec

    families = {"none": "none", "moved": {"transplant": {"pairs": "k"}}}
    with pytest.raises(RecipeError, match="families.moved learns from the regime's K real images .* no regime has"):
        load_study(study_recipe(families=families, regimes=["synthetic"]), base=toy)
    with pytest.raises(RecipeError, match=r"pairs must be a positive integer, got 'all' \(or 'k'"):
        load_study(study_recipe(families={"none": "none", "moved": {"transplant": {"pairs": "all"}}}), base=toy)
    study = load_study(study_recipe(families=families, regimes=["synthetic", "synthetic+2", "synthetic+3"]), base=toy)
    specs = {c.regime: family_spec(study, c) for c in expand(study) if c.family == "moved"}
    # no cell under regime synthetic (no K real images to transplant from); K = the regime's K elsewhere
    assert specs == {"synthetic+2": {"transplant": {"pairs": 2}}, "synthetic+3": {"transplant": {"pairs": 3}}}


def test_the_published_deeppcb_recipe_keeps_proportional_mixing():
    from pathlib import Path

    import yaml

    recipe = yaml.safe_load((Path(__file__).parents[1] / "recipes" / "ablation_deeppcb.yaml").read_text())
    assert recipe["mixing"] == {"real_fraction": None}


# -- learned: synthetic squares + 4 real ones beat the 4 real alone -------------------------------------------
class BrightFill(ConstantFill):
    """The real squares' fill: one constant bright grey (220 of 255), where ConstantFill draws a random colour."""

    def __init__(self):
        super().__init__("gray")

    def constant_colour(self, images, params):
        return torch.full(images.shape[:2], 220 / 255 * value_scale(images.dtype), device=images.device)


def square_op():
    """Synthetic defects made like the real ones (bright_squares): a 14-20 px square of value 220."""
    area = LEARN_SIZE * LEARN_SIZE
    return PatchDefect(mask=RectangleMask(area_frac_range=(14 * 14 / area, 20 * 20 / area), aspect_ratio_range=(1, 1)),
                       source=BrightFill())


class OtherBoxes(SyntheticSource):
    """Breakage: each synthetic square is labelled with the box of another draw (a square elsewhere)."""

    def make(self, indices, seed):
        made, other = super().make(indices, seed), super().make(indices, seed + 1)
        return TrainingBatch(made.images, other.boxes, other.labels)


class Invisible(SyntheticSource):
    """Breakage: the synthetic boxes on the OK images as they were, without the squares."""

    def make(self, indices, seed):
        made = super().make(indices, seed)
        return TrainingBatch(self.ok_images[indices], made.boxes, made.labels)


LEARN_SIZE = 48
MIXING_K = 1
MIXING_IMAGES_SEEN = 96
MIXING_LIMITS = {  # seeds 0-4 and breakages on 0-2, 1 thread, torch 2.14.1 (the measure's docstring)
    "hits": (">", 9.5),         # of 16 new real images, those whose top box is on the square (IoU >= 0.5)
    "hits_gain": (">", 2.5),    # hits minus those of the same network trained on the K real images alone
}
MIXING_BREAKAGES = ("other_boxes", "invisible")


def measure_mixing(seed=0, breakage=None):
    """Faster R-CNN from scratch, 96 images seen, on K = 1 real image of a bright square mixed with synthetic
    squares made the same way on 32 OK images (32 steps of 3: 1 real, 2 synthetic), against the same network
    (same seed and initial weights) trained on the real image alone for as many images (96 steps of 1); both
    counted on 16 new real images (test_detectors_rcnn's task: dark noise, one 14-20 px square of 220).

    The real image alone is one square size and place, seen 96 times: the network learns that image; the
    synthetic part shows the same kind of defect at every size and place. Measured (seeds 0-4): mixed 14, 14,
    13, 11, 15 hits, alone 2, 2, 0, 7, 6. Settings tried first, within a unit test's budget: K = 2 and 4 (the
    real images alone already found 9-16 and 4-15 of 16 on some seeds, the mix 13-16: too close to assert per
    seed), and batches of 2 (half real): the mix found only 5 on seed 2, where 1 real in 3 finds 13.
    Breakages: ``other_boxes`` (each synthetic image trained with the box of another draw: 3-4 hits) and
    ``invisible`` (the synthetic boxes on OK images without their squares: 3-5 hits): the synthetic part then
    teaches wrong boxes, and neither reaches the hits limit.
    """
    from test_detectors_rcnn import bright_squares, top_box_hits

    real = bright_squares(MIXING_K, seed=seed)
    test = bright_squares(16, seed=1000 + seed)
    ok = (torch.rand(32, 3, LEARN_SIZE, LEARN_SIZE, generator=torch.Generator().manual_seed(seed + 7)) * 40
          ).to(torch.uint8)
    kind = {"other_boxes": OtherBoxes, "invisible": Invisible}.get(breakage, SyntheticSource)
    synthetic = kind(ok, square_op(), image_size=LEARN_SIZE, seed=seed, class_names=["square"])
    settings = dict(class_names=["square"], image_size=LEARN_SIZE, batch_size=3, learning_rate=3e-4, warmup_steps=2,
                    seed=seed)
    alone = FasterRCNNDetector(**settings).fit(LabelledSource(real, LEARN_SIZE, seed=seed),
                                               images_seen=MIXING_IMAGES_SEEN, progress=False)
    mixed = FasterRCNNDetector(**settings).fit(mix(synthetic, real, seed=seed, real_fraction=1 / 3),
                                               images_seen=MIXING_IMAGES_SEEN, progress=False)
    measured = {"hits": float(top_box_hits(mixed, test)), "hits_control": float(top_box_hits(alone, test)),
                "_mixed": mixed, "_alone": alone}
    return gain(measured, "hits")


def test_synthetic_plus_k_real_beats_the_k_real_alone_at_equal_images_seen():
    """Synthetic squares mixed with one real one find more real squares than the real one alone, at equal cost
    (MIXING_LIMITS; about 75 s at 1 thread)."""
    measured = measure_mixing(seed=0)
    assert check_limits(measured, MIXING_LIMITS) == []
    assert measured["_mixed"].images_seen == measured["_alone"].images_seen == MIXING_IMAGES_SEEN
    assert measured["_mixed"].steps_trained == 32 and measured["_alone"].steps_trained == 96


LEARNED = {"mixing_synthetic_plus_k": (measure_mixing, MIXING_LIMITS, MIXING_BREAKAGES)}
