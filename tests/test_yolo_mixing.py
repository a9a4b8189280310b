"""The YOLO detector's runs counted in images seen, and batches mixed step by step (a MixedSource's plan).

ultralytics counts in epochs of ``len(train_loader)`` batches; the detector cuts a run of ``images_seen`` images
into epochs of a fixed number of batches and draws each batch itself (``detectors.yolo.dataset.StepBatches``).
These tests count what that sampler hands to ultralytics during real fits (64 px, a handful of images).
"""
import json
import math
from pathlib import Path

import pytest
import torch

from detectors.yolo.offline import import_ultralytics

try:  # offline first (see test_detectors_yolo.py)
    import_ultralytics()
except ImportError:
    pass
pytest.importorskip("ultralytics")

from defectgen.rng import index_seed  # noqa: E402
from detectors.data.sources import LabelledSource, MixedSource, SyntheticSource, steps_for  # noqa: E402
from detectors.yolo import RUN_STATE, YOLODetector  # noqa: E402
from detectors.yolo.dataset import StepBatches, StepPlan, choose_epochs  # noqa: E402
from test_detectors_yolo import SIZE, Interrupted, small, squares  # noqa: E402


@pytest.fixture
def recorded(monkeypatch):
    """Every batch a StepBatches sampler hands out during the test, as (step, dataset file names)."""
    seen = []
    original = StepBatches.batch

    def batch(self, step):
        indices = original(self, step)
        untagged = [i % self.size for i in indices] if self.size is not None else indices
        seen.append((step, [Path(self.files[i]).name for i in untagged]))
        return indices

    original_init = StepBatches.__init__

    def init(self, compose, *args, **kwargs):
        original_init(self, compose, *args, **kwargs)
        self.files = recorded_files[-1]

    recorded_files = []
    original_composer = StepPlan.composer

    def composer(self, im_files):
        recorded_files.append(list(im_files))
        return original_composer(self, im_files)

    monkeypatch.setattr(StepBatches, "batch", batch)
    monkeypatch.setattr(StepBatches, "__init__", init)
    monkeypatch.setattr(StepPlan, "composer", composer)
    return seen


# -- cutting a run into epochs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("total,per_pass", [(75, 19), (75, 2), (73, 19), (1875, 19), (5, 19), (38, 19), (1, 1),
                                            (97, 10), (1000, 7)])
def test_epochs_cover_the_run_with_the_fewest_extra_steps(total, per_pass):
    epochs, length = choose_epochs(total, per_pass)
    assert epochs >= 1 and length >= 1
    assert total <= epochs * length < total + epochs  # fewer than one extra step per epoch
    if total > per_pass:
        assert per_pass / 2 <= length <= 2 * per_pass  # about one pass each
        exact = [e for e in range(1, total + 1) if total % e == 0 and per_pass / 2 <= total // e <= 2 * per_pass]
        assert (epochs * length == total) == bool(exact)  # exact whenever such a split exists
    else:
        assert (epochs, length) == (1, total)


def test_choose_epochs_refuses_empty_runs():
    with pytest.raises(ValueError, match="total_steps"):
        choose_epochs(0, 3)


def test_the_stream_shows_every_image_once_per_pass():
    plan = StepPlan(epochs=5, per_epoch=3, batch_size=4, seed=3)
    files = [f"img_{i:06d}.png" for i in range(10)]
    compose = plan.composer(files)
    walked = [i for step in range(plan.total_steps) for i in compose(step)]
    assert len(walked) == plan.images == 60
    for start in range(0, 60, 10):  # each pass of 10 positions is a permutation
        assert sorted(walked[start:start + 10]) == list(range(10))
    assert walked[:10] != walked[10:20]  # reshuffled every pass
    assert compose(7) == plan.composer(files)(7)  # a pure function of the step (what a resume relies on)


# -- fits counted in images seen ---------------------------------------------------------------------------------------
def test_labelled_run_trains_on_exactly_the_images_it_states(tmp_path, recorded):
    data = squares(20)
    det = small(batch_size=8)
    det.fit(data, images_seen=96, out=tmp_path / "run", val=False, progress=False)
    steps = steps_for(96, 8)  # 12: 3 epochs of 4 batches (a pass is 3), exactly
    epochs, length = choose_epochs(steps, math.ceil(20 / 8))
    assert epochs * length == steps
    assert [s for s, _ in recorded] == list(range(steps))  # no more, no fewer batches than planned
    assert all(len(files) == 8 for _, files in recorded)
    assert det.images_seen == sum(len(f) for _, f in recorded) == 96
    assert det.steps_trained == steps and det.epochs_trained == epochs
    counts = torch.bincount(torch.tensor([int(f[4:10]) for _, files in recorded for f in files]), minlength=20)
    assert int(counts.max()) - int(counts.min()) <= 1  # every image equally often, to within one
    assert [r["images_seen"] for r in det.history] == [8 * length * (e + 1) for e in range(epochs)]
    state = json.loads((tmp_path / "run" / RUN_STATE).read_text())
    assert state["images_seen"] == 96 and state["length"]["steps"] == steps
    assert det.describe()["images_seen"] == 96


def test_a_run_that_does_not_split_into_epochs_records_the_images_it_trained(tmp_path, recorded):
    det = small(batch_size=8)
    det.fit(squares(20), images_seen=50, val=False, progress=False)  # 7 steps: 2 epochs of 4, one more
    assert len(recorded) == 8 and det.images_seen == 64 and det.steps_trained == 8


def test_epochs_and_images_seen_together_are_refused():
    with pytest.raises(ValueError, match="not both"):
        small().fit(squares(4), epochs=1, images_seen=8)
    with pytest.raises(ValueError, match="images_seen"):
        small().fit(squares(4), images_seen=0)


def test_epoch_runs_count_their_images_too(tmp_path):
    det = small(batch_size=4).fit(squares(6), epochs=2, val=False, progress=False)
    assert det.images_seen == 12 and det.steps_trained == 4  # 2 batches per epoch (4 + 2 images)
    path = det.save(tmp_path / "model.pt")
    loaded = YOLODetector.load(path)
    assert loaded.images_seen == 12 and loaded.steps_trained == 4
    state = torch.load(path, weights_only=True)
    del state["images_seen"], state["steps_trained"]  # a file saved before they were recorded
    torch.save(state, tmp_path / "old.pt")
    old = YOLODetector.load(tmp_path / "old.pt")
    assert old.images_seen == 0 and old.steps_trained == 0 and old.epochs_trained == 2


# -- step-based mixing -------------------------------------------------------------------------------------------------
def _mixed(real_fraction, schedule="mixed", n_ok=6, n_real=3):
    ok = torch.stack(list(squares(n_ok, seed=3).images))
    synthetic = SyntheticSource(ok, op="cutout", image_size=SIZE, seed=7)
    real = LabelledSource(squares(n_real, seed=4), SIZE, seed=7)
    return MixedSource(synthetic, real, real_fraction=real_fraction, schedule=schedule)


def _recorded_paint_seeds(monkeypatch):
    seeds = []
    original = SyntheticSource.make

    def make(self, indices, seed):
        seeds.append((indices.tolist(), seed))
        return original(self, indices, seed)

    monkeypatch.setattr(SyntheticSource, "make", make)
    return seeds


def test_each_batch_holds_the_plans_real_share(tmp_path, recorded, monkeypatch):
    source = _mixed(real_fraction=0.25)
    paints = _recorded_paint_seeds(monkeypatch)
    det = YOLODetector(image_size=SIZE, batch_size=8, warmup_epochs=0.0)
    det.fit(source, images_seen=48, out=tmp_path / "run", val=False, progress=False)
    total = steps_for(48, 8)
    assert len(recorded) == total and det.images_seen == 48
    real_files = [f"img_{k:06d}.png" for k in range(3)]  # the real images are written first, one file each
    ok_files = [f"ok_{k:06d}.png" for k in range(6)]
    for step, files in recorded:
        synthetic, real = source.plan(step, 8, total)
        assert sum(f.startswith("img_") for f in files) == source.real_per_batch(8) == 2
        assert files == [ok_files[i] for i in synthetic.tolist()] + [real_files[i] for i in real.tolist()]
    # one defect per draw of an OK image, seeded by the step (after the validation images' draw)
    drawn = [(step, f) for step, files in recorded for f in files if f.startswith("ok_")]
    expected = [([int(f[3:9])], index_seed(7, int(f[3:9]), f"yolo-step-{step}")) for step, f in drawn]
    assert paints[1:] == expected


def test_finetune_schedule_follows_the_plan_with_epochs_too(tmp_path, recorded):
    source = _mixed(real_fraction=None, schedule="finetune")
    det = YOLODetector(image_size=SIZE, batch_size=4, warmup_epochs=0.0)
    det.fit(source, epochs=2, val=False, progress=False)
    per_epoch = source.steps_per_epoch(4)
    assert len(recorded) == 2 * per_epoch and det.images_seen == 2 * per_epoch * 4
    first = source.finetune_step(2 * per_epoch)
    real_counts = [sum(f.startswith("img_") for f in files) for _, files in recorded]
    assert real_counts[:first] == [0] * first  # synthetic only, then real with a synthetic replay
    assert all(c == 4 - source.replay_per_batch(4) for c in real_counts[first:])


def test_proportional_mix_keeps_every_item_once_per_epoch(tmp_path, recorded):
    source = _mixed(real_fraction=None)
    det = YOLODetector(image_size=SIZE, batch_size=4, warmup_epochs=0.0)
    det.fit(source, epochs=1, val=False, progress=False)
    assert recorded == [] and det.images_seen == 9  # ultralytics' own sampler: the old behaviour


# -- resume ------------------------------------------------------------------------------------------------------------
def test_resume_of_a_run_counted_in_images_seen(tmp_path, recorded):
    data, run = squares(12), tmp_path / "run"

    def stop(record):
        raise Interrupted(record["epoch"])

    with pytest.raises(Interrupted):
        small(batch_size=4).fit(data, images_seen=36, out=run, callback=stop, val=False, progress=False)
    first = list(recorded)
    assert [s for s, _ in first] == [0, 1, 2]  # 9 steps: 3 epochs of 3
    with pytest.raises(ValueError, match="36 images seen, not 40 images seen"):
        small(batch_size=4).fit(data, images_seen=40, out=run, resume=True)
    with pytest.raises(ValueError, match="36 images seen, not 3"):
        small(batch_size=4).fit(data, epochs=3, out=run, resume=True)
    recorded.clear()
    resumed = small(batch_size=4).fit(data, images_seen=36, out=run, resume=True, val=False, progress=False)
    assert [s for s, _ in recorded] == list(range(3, 9))  # goes on at the checkpoint's step
    assert resumed.images_seen == 36 and resumed.steps_trained == 9 and resumed.epochs_trained == 3
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    fresh = []
    recorded.clear()
    small(batch_size=4).fit(data, images_seen=36, val=False, progress=False)
    fresh = list(recorded)
    assert first + [(s, f) for s, f in fresh if s >= 3] == fresh  # the same batches as an uninterrupted run


# -- the warm-up follows the run's length ------------------------------------------------------------------------------
def test_default_warmup_is_a_tenth_of_a_short_run_and_ultralytics_three_epochs_of_a_long_one(tmp_path):
    import yaml

    from detectors.yolo.detector import DEFAULT_WARMUP_EPOCHS, WARMUP_SHARE

    auto = YOLODetector(image_size=SIZE, batch_size=4)
    assert auto.warmup_epochs is None and auto.config()["warmup_epochs"] is None
    assert auto.run_settings(75, 15) == {"warmup_epochs": pytest.approx(WARMUP_SHARE * 75 / 15)}  # 7.5 steps
    assert auto.run_settings(100 * 19, 19) == {"warmup_epochs": DEFAULT_WARMUP_EPOCHS}
    assert small().run_settings(75, 15) == {}  # an explicit warm-up is taken as given
    auto.fit(squares(8), images_seen=48, out=tmp_path / "run", val=False, progress=False)  # 12 steps: 6 x 2
    args = yaml.safe_load((tmp_path / "run" / "ultralytics" / "args.yaml").read_text())
    assert args["warmup_epochs"] == pytest.approx(WARMUP_SHARE * 12 / 2)
    assert YOLODetector.load(auto.save(tmp_path / "model.pt")).warmup_epochs is None
