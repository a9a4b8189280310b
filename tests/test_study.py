"""`defectgen ablate`: recipe checks, plan and hashing, resume, shards, failures, the report, rank correlation,
and one tiny study end to end with real detectors."""
import copy
import hashlib
import json
import math
import shutil

import cv2
import numpy as np
import pytest
from conftest import write_dark_ok_images, write_yolo_squares

from defectgen.cli import main
from defectgen.run_folder import differing_keys
from detectors.study import RecipeError, expand, load_study, run_study
from detectors.study.folder import CELLS, RESULT, STUDY_FILE, parse_shard
from detectors.study.ranks import average_ranks, spearman, spearman_interval
from detectors.study.report import render_report


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """OK images (dark noise) and a small real YOLO set (bright squares), with train and test splits."""
    root = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(0)
    ok = root / "ok"
    write_dark_ok_images(ok, rng, 10)
    real = root / "real"
    write_yolo_squares(real, rng, {"train": 6, "test": 4})
    return root


def recipe(toy, **changes):
    raw = {
        "name": "toy",
        "data": {"format": "folder", "ok": "ok", "holdout_ok": 3,
                 "real_train": {"path": "real", "format": "yolo", "split": "train"},
                 "real_test": {"path": "real", "format": "yolo", "split": "test"}},
        "families": {"none": "none", "cutout": {"op": "cutout"}, "shape": {"op": "shape"}},
        "regimes": ["synthetic", "synthetic+2", "real"],
        "detectors": {"fasterrcnn": {"kind": "fasterrcnn", "settings": {"batch_size": 2}, "images_seen": 4},
                      "cutpaste": {"kind": "cutpaste", "settings": {"batch_size": 2, "head_layers": [16]},
                                   "steps": 1}},
        "test_sets": {"real": "real", "synth": {"synthetic": "shape", "images": 3}},
        "seeds": [0, 1],
        "metrics": ["map_50", "image_auroc"],
        "image_size": 64,
        "budgets": {"small": {"seeds": [0], "detectors": {"fasterrcnn": {"images_seen": 2}}}},
    }
    for key, value in changes.items():
        raw[key] = value
    return raw


def study_of(toy, budget=None, **changes):
    return load_study(recipe(toy, **changes), budget, base=toy)


# -- plan expansion and hashing ------------------------------------------------------------------------------
def test_plan_expands_families_regimes_detectors_and_seeds(toy):
    cells = expand(study_of(toy))
    combos = {(c.family, c.regime, c.detector) for c in cells}
    # object detector: 2 families synthetic, 3 synthetic+2 (none = 2 real alone), none/real
    assert {(f, r) for f, r, d in combos if d == "fasterrcnn"} == {
        ("cutout", "synthetic"), ("shape", "synthetic"), ("none", "synthetic+2"), ("cutout", "synthetic+2"),
        ("shape", "synthetic+2"), ("none", "real")}
    # anomaly detector: synthetic only, none = the untrained control
    assert {(f, r) for f, r, d in combos if d == "cutpaste"} == {
        ("none", "synthetic"), ("cutout", "synthetic"), ("shape", "synthetic")}
    assert len(cells) == 2 * (6 + 3)
    assert [c.seed for c in cells] == [0] * 9 + [1] * 9  # seed first, so a partial study covers every row
    assert len({c.id for c in cells}) == len(cells)


def test_cell_ids_are_hashes_of_the_resolved_settings(toy):
    base = {c.label: c.id for c in expand(study_of(toy))}
    assert base == {c.label: c.id for c in expand(study_of(toy))}  # stable
    cell = expand(study_of(toy))[0]
    text = json.dumps(cell.settings, sort_keys=True, separators=(",", ":"), default=str)
    assert cell.id == hashlib.sha256(text.encode()).hexdigest()[:12]
    # a detector setting changes that detector's cells only
    changed = recipe(toy)
    changed["detectors"]["fasterrcnn"]["settings"]["batch_size"] = 4
    other = {c.label: c.id for c in expand(load_study(changed, base=toy))}
    assert all((other[k] != v) == ("fasterrcnn" in k) for k, v in base.items())
    # adding a seed or a test set leaves the existing cells' ids alone
    more = {c.label: c.id for c in expand(study_of(toy, seeds=[0, 1, 2]))}
    assert all(more[k] == v for k, v in base.items()) and len(more) == 27
    tests = recipe(toy)["test_sets"] | {"synth2": {"synthetic": {"op": "cutout"}, "images": 2}}
    assert {c.label: c.id for c in expand(study_of(toy, test_sets=tests))} == base


def test_budget_overrides_top_level_and_detector_keys(toy):
    study = study_of(toy, "small")
    assert study.seeds == [0] and study.detectors["fasterrcnn"]["images_seen"] == 2
    assert study.detectors["fasterrcnn"]["settings"] == {"batch_size": 2}  # merged, not replaced
    assert differing_keys(study_of(toy).fingerprint(), study.fingerprint()) == [
        "budget", "detectors.fasterrcnn.images_seen", "seeds"]


@pytest.mark.parametrize("change, message", [
    ({"families": {"none": "none", "x": {"op": "nope"}}}, "families.x.op"),
    ({"detectors": {"d": {"kind": "resnet"}}}, "detectors.d.kind: unknown detector 'resnet'; known:"),
    ({"metrics": ["f1"]}, "unknown metric 'f1'; allowed: map_50"),
    ({"regimes": ["synthetic+0"]}, "unknown regime 'synthetic+0'"),
    ({"test_sets": {"t": {"pth": "x"}}}, "test_sets.t: unknown key 'pth'; allowed: path"),
    ({"test_sets": {"t": {"path": "missing"}}}, "test_sets.t.path:"),
    ({"colour": 1}, "the recipe: unknown key 'colour'"),
    ({"families": {"none": "none", "shape": {"op": "shape"}, "x": {"recipe": "absent.yaml"}}}, "families.x.recipe:"),
])
def test_bad_recipes_name_the_key_and_the_allowed_values(toy, change, message):
    with pytest.raises(RecipeError, match=None) as info:
        study_of(toy, **change)
    assert message in str(info.value)


def test_unknown_budget_names_the_budgets(toy):
    with pytest.raises(RecipeError, match="unknown budget 'gpu'; this recipe's budgets: small"):
        study_of(toy, "gpu")


def test_parse_shard():
    assert parse_shard("3/8") == (3, 8)
    for bad in ("8/8", "-1/2", "1", "a/b", "1/0"):
        with pytest.raises(RecipeError, match="k/N"):
            parse_shard(bad)


# -- running: a fake cell, so resume, shards and failures are checked on the runner alone ------------------------
def fake_runner(fail=(), interrupt_at=None):
    calls = []

    def run(study, data, cell, device, folder, log):
        calls.append(cell.id)
        if interrupt_at is not None and len(calls) == interrupt_at:
            raise KeyboardInterrupt  # the process is killed mid-cell
        if cell.family in fail:
            raise ValueError(f"{cell.family} breaks")
        log("training")
        value = int(cell.id[:6], 16) / 0xFFFFFF
        return {"record": {"train_seconds": 0.0},
                "tests": {name: {"overall": {"map_50": value, "image_auroc": 1 - value}} for name in study.test_sets}}

    run.calls = calls
    return run


def stripped(folder):
    """results.jsonl without what differs between two runs of one study (timings)."""
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("timings", None)
    return rows


def test_resume_after_a_killed_run_ends_as_an_uninterrupted_run(toy, tmp_path):
    study = study_of(toy)
    whole = tmp_path / "whole"
    run_study(study, whole, runner=fake_runner(), progress=False)
    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        run_study(study, killed, runner=fake_runner(interrupt_at=5), progress=False)
    cells = expand(study)
    assert (killed / CELLS / cells[4].id).is_dir() and not (killed / CELLS / cells[4].id / RESULT).exists()
    with pytest.raises(RecipeError, match="pass --resume"):
        run_study(study, killed, runner=fake_runner(), progress=False)
    again = fake_runner()
    counts = run_study(study, killed, runner=again, resume=True, progress=False)
    assert counts == {"cells": 18, "skipped": 4, "done": 14, "failed": 0}
    assert again.calls == [c.id for c in cells[4:]]  # the killed cell again, from the start; no finished one
    assert stripped(killed) == stripped(whole)
    assert (killed / "table.md").read_text() == (whole / "table.md").read_text()


def test_shard_union_equals_the_single_run(toy, tmp_path):
    study = study_of(toy)
    single = tmp_path / "single"
    run_study(study, single, runner=fake_runner(), progress=False)
    merged = tmp_path / "merged"
    runs = []
    for k in range(3):  # three machines, three folders, copied together afterwards
        part = tmp_path / f"shard{k}"
        runner = fake_runner()
        run_study(study, part, shard=(k, 3), runner=runner, progress=False)
        runs.append(set(runner.calls))
        shutil.copytree(part, merged, dirs_exist_ok=True)
    assert set.union(*runs) == {c.id for c in expand(study)} and sum(map(len, runs)) == 18
    render_report(merged)
    assert stripped(merged) == stripped(single)
    # the same with the shards writing into one folder, and --resume over it finding nothing left to do
    shared = tmp_path / "shared"
    for k in range(3):
        run_study(study, shared, shard=(k, 3), runner=fake_runner(), progress=False)
    idle = fake_runner()
    assert run_study(study, shared, resume=True, runner=idle, progress=False)["skipped"] == 18
    assert idle.calls == [] and stripped(shared) == stripped(single)


def test_a_failing_cell_is_recorded_and_the_study_goes_on(toy, tmp_path):
    study = study_of(toy)
    out = tmp_path / "out"
    counts = run_study(study, out, runner=fake_runner(fail=("shape",)), progress=False)
    assert counts["failed"] == 6 and counts["done"] == 12
    failed = [json.loads(p.read_text()) for p in (out / CELLS).glob(f"*/{RESULT}")]
    assert {r["error"] for r in failed if r["status"] == "failed"} == {"ValueError: shape breaks"}
    log = next((out / CELLS / r["id"] / "log.txt").read_text() for r in failed if r["status"] == "failed")
    assert "Traceback" in log and "shape breaks" in log
    table = (out / "table.md").read_text()
    assert "(failed 2/2)" in table and "## Failed cells" in table
    # failures are final unless asked: --retry-failed runs them again
    retry = fake_runner()
    assert run_study(study, out, resume=True, runner=retry, progress=False)["skipped"] == 18
    counts = run_study(study, out, resume=True, retry_failed=True, runner=retry, progress=False)
    assert counts["done"] == 6 and len(retry.calls) == 6


def test_a_changed_recipe_is_refused_naming_the_keys(toy, tmp_path):
    out = tmp_path / "out"
    run_study(study_of(toy), out, runner=fake_runner(), progress=False)
    changed = recipe(toy)
    changed["detectors"]["cutpaste"]["steps"] = 5
    with pytest.raises(RecipeError, match=r"differs in: detectors\.cutpaste\.steps, seeds"):
        run_study(load_study(changed | {"seeds": [3]}, base=toy), out, resume=True, runner=fake_runner(),
                  progress=False)


# -- the report ------------------------------------------------------------------------------------------------
def write_study(folder, cells, results, test_sets, metrics, families, regimes, detectors):
    folder.mkdir(parents=True)
    record = {"name": "hand", "budget": None, "fingerprint": {}, "families": families, "regimes": regimes,
              "metrics": metrics, "detectors": detectors, "test_sets": test_sets, "seeds": [0, 1], "cells": cells}
    (folder / STUDY_FILE).write_text(json.dumps(record))
    for cell in cells:
        if cell["id"] in results:
            (folder / CELLS / cell["id"]).mkdir(parents=True)
            (folder / CELLS / cell["id"] / RESULT).write_text(json.dumps(results[cell["id"]]))


def test_report_from_a_hand_written_results_folder(tmp_path):
    cells, results = [], {}
    values = {("pcb", "synthetic"): [0.40, 0.50], ("none", "synthetic+20"): [0.30, 0.32],
              ("pcb", "synthetic+20"): [0.45, 0.47], ("none", "real"): [0.60, 0.60]}
    for (family, regime), per_seed in values.items():
        for seed, value in enumerate(per_seed):
            cid = f"{family}-{regime}-{seed}"
            cells.append({"id": cid, "family": family, "regime": regime, "detector": "frcnn", "seed": seed})
            results[cid] = {"status": "done", "record": {"train_seconds": 1.0},
                            "tests": {"real": {"overall": {"map_50": value}, "seconds": 0.5,
                                               "per_true_class": {"open": {"ap_50": value / 2},
                                                                  "short": {"ap_50": value}}}}}
    cells.append({"id": "broken", "family": "scar", "regime": "synthetic", "detector": "frcnn", "seed": 0})
    results["broken"] = {"status": "failed", "error": "RuntimeError: out of memory"}
    cells.append({"id": "later", "family": "scar", "regime": "synthetic", "detector": "frcnn", "seed": 1})
    write_study(tmp_path / "s", cells, results, {"real": "real"}, ["map_50"], ["none", "pcb", "scar"],
                ["synthetic", "synthetic+20", "real"], {"frcnn": {"kind": "fasterrcnn", "anomaly": False}})
    paths = render_report(tmp_path / "s", heatmaps=False)
    table = paths["table"].read_text()
    assert "10 cells: 8 done, 1 failed, 1 pending" in table
    assert "| pcb | synthetic | 45.0 ± 7.1 | 75 % | - |" in table  # no none/synthetic cell: no Δ
    assert "| pcb | synthetic+20 | 46.0 ± 1.4 | 77 % | +15.0 |" in table  # 46 - 31
    assert "| none | real | 60.0 ± 0.0 | 100 % | - |" in table
    assert "| scar | synthetic | (failed 1/2) | - | - |" in table
    assert "- frcnn, synthetic+20 (map_50): pcb 46.0 > none 31.0" in table
    assert "| family | regime | open | short |" in table and "| pcb | synthetic+20 | 23.0 ± 0.7 | 46.0 ± 1.4 |" in table
    assert "`broken` scar / synthetic / frcnn / seed 0: RuntimeError: out of memory" in table
    rows = [json.loads(line) for line in paths["jsonl"].read_text().splitlines()]
    assert len(rows) == 9 and rows[-1]["status"] == "failed" and rows[0]["metrics"] == {"map_50": 0.40}
    csv_lines = paths["csv"].read_text().splitlines()
    assert csv_lines[0].startswith("cell,family,regime,detector,seed,test_set,test_kind,status,map_50")
    assert csv_lines[1].startswith("pcb-synthetic-0,pcb,synthetic,frcnn,0,real,real,done,0.4")


def test_report_synthetic_validation_and_heatmaps(tmp_path):
    pytest.importorskip("matplotlib")
    real = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6, "e": 0.5}
    synth = {"a": 0.95, "b": 0.70, "c": 0.80, "d": 0.65, "e": 0.60}  # b and c swapped: rho 0.9
    cells, results = [], {}
    for family in real:
        cells.append({"id": family, "family": family, "regime": "synthetic", "detector": "cp", "seed": 0})
        results[family] = {"status": "done", "record": {},
                           "tests": {"real": {"overall": {"image_auroc": real[family]}},
                                     "syn": {"overall": {"image_auroc": synth[family]}}}}
    write_study(tmp_path / "s", cells, results, {"real": "real", "syn": "synthetic"}, ["image_auroc"],
                list(real), ["synthetic"], {"cp": {"kind": "cutpaste", "anomaly": True}})
    paths = render_report(tmp_path / "s")
    (item,) = paths["validation"]
    assert item["ranked"] == "families" and item["n"] == 5 and item["rho"] == pytest.approx(0.9)
    low, high = spearman_interval(0.9, 5)
    assert item["ci95"] == [pytest.approx(low), pytest.approx(high)]
    assert "| real | syn | image_auroc | families | cp | synthetic | 5 | +0.90 |" in paths["table"].read_text()
    assert [p.name for p in paths["heatmaps"]] == ["real__image_auroc.png", "syn__image_auroc.png"]
    image = cv2.imread(str(paths["heatmaps"][0]))
    assert image is not None and image.shape[0] > 100 and image.std() > 10


def test_report_refuses_a_folder_that_is_not_a_study(tmp_path, capsys):
    assert main(["ablate", "--report", str(tmp_path)]) == 2
    assert "is not a study folder" in capsys.readouterr().err


# -- rank correlation ------------------------------------------------------------------------------------------
def test_spearman_against_hand_computed_cases():
    # no ties: d = (-1, 1, -1, 1, 0), rho = 1 - 6 * 4 / (5 * 24) = 0.8
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    # ties take the mean rank: x ranks (1, 2.5, 2.5, 4); Pearson of the ranks = 4.5 / sqrt(4.5 * 5)
    assert average_ranks([1, 2, 2, 3]) == [1, 2.5, 2.5, 4]
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    # interval: z = atanh(0.5) = 0.5493, se = sqrt(1.06 / 5) = 0.4604 -> tanh(0.5493 -+ 1.96 * 0.4604)
    low, high = spearman_interval(0.5, 8)
    assert low == pytest.approx(-0.3394, abs=1e-3) and high == pytest.approx(0.8960, abs=1e-3)
    assert all(math.isnan(v) for v in spearman_interval(0.5, 3))


# -- the command line ------------------------------------------------------------------------------------------
def write_recipe(toy, raw, name="study.yaml"):
    import yaml

    path = toy / name
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("change, message", [
    ({"regimes": ["synthetic", "synthetic+9"]}, "synthetic+9 needs 9 real training images but the data has 6"),
    ({"families": {"none": "none", "x": {"op": "cutot"}}}, "families.x.op"),
    ({"data": {"format": "folder", "ok": "absent", "holdout_ok": 3}}, "data.ok:"),
])
def test_cli_usage_errors_exit_2_before_training(toy, tmp_path, capsys, change, message):
    raw = recipe(toy, **change)
    out = tmp_path / "out"
    code = main(["ablate", str(write_recipe(toy, raw, "bad.yaml")), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (out / CELLS).exists()


def test_cli_plan_lists_the_cells(toy, capsys):
    path = write_recipe(toy, recipe(toy))
    assert main(["ablate", str(path), "--budget", "small", "--plan", "--shard", "1/2"]) == 0
    out, err = capsys.readouterr()
    ids = [c.id for c in expand(load_study(path, "small"))][1::2]
    assert [line.split()[0] for line in out.splitlines()] == ids and "4 cells" in err


def test_tiny_study_end_to_end_with_real_detectors(toy, tmp_path, capsys):
    """Faster R-CNN and the CutPaste detector on toy data, through the CLI, resumed, in well under a minute."""
    raw = recipe(toy, families={"none": "none", "cutout": {"op": "cutout"}}, regimes=["synthetic", "synthetic+2"],
                 test_sets={"real": "real", "synth": {"synthetic": {"op": "shape"}, "images": 3}})
    path = write_recipe(toy, raw, "tiny.yaml")
    out = tmp_path / "out"
    code = main(["ablate", str(path), "--out", str(out), "--budget", "small", "--device", "cpu", "--quiet"])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    # fasterrcnn: cutout/synthetic, none/synthetic+2, cutout/synthetic+2; cutpaste: none, cutout; x 2 test sets
    assert len(rows) == 10 and {r["status"] for r in rows} == {"done"}
    frcnn = [r for r in rows if r["detector"] == "fasterrcnn"]
    assert all({"map_50", "map_50_95", "image_auroc"} <= set(r["metrics"]) for r in frcnn)
    cutpaste = [r for r in rows if r["detector"] == "cutpaste"]
    assert all("image_auroc" in r["metrics"] for r in cutpaste)
    # pixel metrics where the test set has masks: the synthetic one (the YOLO set has boxes only)
    assert {r["test_set"] for r in cutpaste if "pixel_auroc" in r["metrics"]} == {"synth"}
    assert all(0 <= v <= 1 for r in rows for v in r["metrics"].values() if isinstance(v, float))
    assert rows[0]["versions"].startswith("python ")
    table = (out / "table.md").read_text()
    assert "## real (real test set): map_50" in table and "## synth (synthetic test set): image_auroc" in table
    assert {p.name for p in (out / "heatmaps").iterdir()} >= {"real__map_50.png", "synth__image_auroc.png"}
    # a second run of the same study is refused without --resume, and does nothing with it
    assert main(["ablate", str(path), "--out", str(out), "--quiet"]) == 2
    assert "pass --resume" in capsys.readouterr().err
    before = (out / "results.jsonl").read_text()
    assert main(["ablate", str(path), "--out", str(out), "--resume", "--quiet"]) == 0  # budget from the folder
    assert "0 cells done, 0 failed, 5 already finished" in capsys.readouterr().out
    assert (out / "results.jsonl").read_text() == before
    # a changed recipe is refused, naming the key
    changed = copy.deepcopy(raw)
    changed["image_size"] = 32
    code = main(["ablate", str(write_recipe(toy, changed, "tiny2.yaml")), "--out", str(out), "--resume"])
    assert code == 2 and "differs in: image_size" in capsys.readouterr().err


def test_anomaly_reports_break_down_by_real_defect_type():
    """evaluate_labelled gives an anomaly detector's metrics per type (good images plus that type's), as the
    study's per-type tables read them; the score here is the mean brightness, so bright 'blob's are found."""
    import torch

    from detectors.evaluation import evaluate_labelled
    from detectors.types import LabelledSet, Prediction

    class Brightness:
        image_size = 8

        def predict(self, images):
            return Prediction(scores=images.float().mean((1, 2, 3)))

    def image(value):
        return torch.full((3, 8, 8), value, dtype=torch.uint8)

    box = torch.tensor([[0.0, 0.0, 8.0, 8.0]])
    images = [image(10), image(20), image(200), image(210), image(15), image(5)]  # good, good, blob x2, dent x2
    boxes = [torch.zeros(0, 4)] * 2 + [box] * 4
    labels = [torch.zeros(0, dtype=torch.int64)] * 2 + [torch.tensor([1])] * 2 + [torch.tensor([2])] * 2
    test = LabelledSet(images, boxes, labels, ("blob", "dent"))
    report = evaluate_labelled(Brightness(), test)
    assert report["per_defect"]["blob"]["image_auroc"] == pytest.approx(1.0)
    assert report["per_defect"]["dent"]["image_auroc"] == pytest.approx(0.25)  # 15 > 10 only
    assert report["counts"] == {"good": 2, "blob": 2, "dent": 2}
    one_class = LabelledSet(images[:4], boxes[:4], [torch.ones(len(b), dtype=torch.int64) for b in boxes[:4]],
                            ("blob",))
    assert "per_defect" not in evaluate_labelled(Brightness(), one_class)


def test_a_changed_operator_recipe_file_is_refused(toy, tmp_path):
    (toy / "blobs.yaml").write_text("op: shape\nshapes: [ellipse]\n")
    families = {"none": "none", "blobs": {"recipe": "blobs.yaml"}}
    common = {"detectors": {"cutpaste": recipe(toy)["detectors"]["cutpaste"]}, "regimes": ["synthetic"],
              "test_sets": {"real": "real"}}
    study = study_of(toy, families=families, **common)
    out = tmp_path / "out"
    run_study(study, out, runner=fake_runner(), progress=False)
    (toy / "blobs.yaml").write_text("op: shape\nshapes: [square]\n")
    changed = study_of(toy, families=families, **common)
    with pytest.raises(RecipeError, match=r"differs in: families\.blobs\.recipe \(the file's content\)"):
        run_study(changed, out, resume=True, runner=fake_runner(), progress=False)
