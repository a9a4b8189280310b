"""No test data in training: the fixed split of an MVTec category's defective images (split_defects, the bank's
split=, split_shots), a study's data.defect_split, and the refusal of a family that learns from a test set it is
scored on (allow_overlap marks it instead). Tiny MVTec-like trees; nothing trains."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from defectgen import DefectBank
from defectgen.cli import main
from defectgen.io.atomic import encode_png
from defectgen.io.mvtec import read_mvtec, split_by_type, split_defects
from defectgen.sources.diffusion.train import split_shots
from detectors.study import RecipeError, expand, load_study, run_study
from detectors.study.data import StudyData
from detectors.study.folder import CELLS

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TYPES = {"crack": 5, "hole": 4, "stain": 3}


def write_category(root: Path, good_train: int = 8, good_test: int = 2, types=TYPES) -> Path:
    """An MVTec-like category of 32 px images: noise, with a bright disc where the mask is."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:32, :32]

    def save(path, pixels):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_png(pixels))

    def noise():
        return rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)

    for i in range(good_train):
        save(root / "train" / "good" / f"{i:03d}.png", noise())
    for i in range(good_test):
        save(root / "test" / "good" / f"{i:03d}.png", noise())
    for t, (kind, count) in enumerate(sorted(types.items())):
        for i in range(count):
            mask = (rows - 8 - 2 * i) ** 2 + (cols - 10 - 3 * t) ** 2 <= 9 + i
            pixels = noise()
            pixels[mask] = 220
            save(root / "test" / kind / f"{i:03d}.png", pixels)
            save(root / "ground_truth" / kind / f"{i:03d}_mask.png", (mask * 255).astype(np.uint8)[..., None])
    return root


@pytest.fixture(scope="module")
def category(tmp_path_factory):
    return write_category(tmp_path_factory.mktemp("split") / "cat")


# -- the split --------------------------------------------------------------------------------------------------
def test_split_is_fixed_disjoint_and_covers_every_defective_image(category):
    split = split_defects(category, 0.33, seed=0)
    assert split == split_defects(category, 0.33, seed=0)  # deterministic
    train, held = {it.image for it in split.train}, {it.image for it in split.held_out}
    everything = {it.image for it in read_mvtec(category).test if it.is_anomalous}
    assert not train & held and train | held == everything
    # ceil(0.33 * n) per type, at least one: crack 5 -> 2, hole 4 -> 2, stain 3 -> 1
    assert [it.defect for it in split.train] == ["crack", "crack", "hole", "hole", "stain"]
    assert len(split_defects(category, 2, seed=0).train) == 6  # a count per type
    assert len(split_defects(category, 9, seed=0).held_out) == 0
    others = {tuple(it.image for it in split_defects(category, 0.33, seed=s).train) for s in range(4)}
    assert len(others) > 1  # the seed chooses
    for bad in (0, -1, 1.5, True, float("nan")):
        with pytest.raises(ValueError, match="shots"):
            split_defects(category, bad)


def test_the_split_is_split_shots_and_the_banks_split(category):
    """split_shots (what defectgen train inpaint trains on), split_defects and DefectBank.from_mvtec(split=) make
    the same choice for the same (shots, seed)."""
    whole = DefectBank.from_mvtec(category)
    for shots, seed in ((0.33, 0), (0.5, 3), (2, 1)):
        train, held = split_shots(whole, shots, seed)
        parts = split_defects(category, shots, seed)
        assert [whole.names[i] for i in train] == [str(it.image) for it in parts.train]
        assert [whole.names[i] for i in held] == [str(it.image) for it in parts.held_out]
        bank = DefectBank.from_mvtec(category, split="train", shots=shots, split_seed=seed)
        assert bank.names == [str(it.image) for it in parts.train]
        assert bank.class_names == whole.class_names
        rest = DefectBank.from_mvtec(category, split="held_out", shots=shots, split_seed=seed)
        assert rest.names == [str(it.image) for it in parts.held_out]
    assert split_by_type(whole.types.tolist(), 0.33, 0) == split_shots(whole, 0.33, 0)
    # max_per_type applies within the part; a type subset is split on its own
    capped = DefectBank.from_mvtec(category, split="held_out", shots=0.33, split_seed=0, max_per_type=1)
    held = split_defects(category, 0.33, 0).held_out
    assert capped.names == [str(next(it.image for it in held if it.defect == kind)) for kind in sorted(TYPES)]
    only = DefectBank.from_mvtec(category, defects=["hole"], split="train", shots=0.5, split_seed=0)
    assert only.names == [str(it.image) for it in split_defects(category, 0.5, 0, defects=["hole"]).train]
    with pytest.raises(ValueError, match="needs shots"):
        DefectBank.from_mvtec(category, split="train")
    with pytest.raises(ValueError, match="needs split"):
        DefectBank.from_mvtec(category, shots=0.5)
    with pytest.raises(ValueError, match="split must be one of"):
        DefectBank.from_mvtec(category, split="test", shots=0.5)
    with pytest.raises(ValueError, match="holds no image"):
        DefectBank.from_mvtec(category, split="held_out", shots=9)


@pytest.mark.skipif(not (SHARED / "mvtec_bottle_256").is_dir(), reason="needs ../shared/data/mvtec_bottle_256")
def test_bottle_split_is_the_one_the_diffusion_recipe_and_model_use():
    bottle = SHARED / "mvtec_bottle_256"
    parts = split_defects(bottle, 0.33, 0)
    assert len(parts.train) == 22 and len(parts.held_out) == 41
    assert [it.defect for it in parts.train].count("broken_small") == 8
    whole = DefectBank.from_mvtec(bottle)
    train, _ = split_shots(whole, 0.33, 0)
    assert [whole.names[i] for i in train] == [str(it.image) for it in parts.train]
    recipe = yaml.safe_load((ROOT / "recipes" / "diffusion_bottle.yaml").read_text())
    bank = recipe["mask"]["bank"]
    assert (bank["split"], bank["shots"], bank["split_seed"]) == ("train", 0.33, 0)
    study = yaml.safe_load((ROOT / "recipes" / "ablation_bottle_diffusion.yaml").read_text())
    assert study["data"]["defect_split"] == {"shots": 0.33, "seed": 0}


# -- studies ----------------------------------------------------------------------------------------------------
def study_recipe(category: Path, family=None, defect_split=None, **changes):
    data = {"root": str(category), "format": "mvtec", "holdout_ok": 0}
    if defect_split is not None:
        data["defect_split"] = defect_split
    raw = {"name": "split", "data": data,
           "families": {"none": "none", "learnt": family or {"op": "cutout"}},
           "regimes": ["synthetic"],
           "detectors": {"cutpaste": {"kind": "cutpaste", "settings": {"batch_size": 2, "head_layers": [8]},
                                      "steps": 1}},
           "test_sets": {"real": "real"}, "seeds": [0], "metrics": ["image_auroc"], "image_size": 32}
    raw.update(changes)
    return raw


def transplant(category, **bank):
    return {"op": {"op": "transplant", "bank": {"root": str(category), **bank}}}


def write(tmp_path, raw, name="study.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def test_defect_split_takes_exactly_the_training_part_out_of_the_real_test_set(category):
    whole = StudyData(load_study(study_recipe(category))).real_test
    study = load_study(study_recipe(category, defect_split={"shots": 0.33, "seed": 0}))
    test = StudyData(study).real_test
    train = {it.image.relative_to(category).as_posix() for it in split_defects(category, 0.33, 0).train}
    assert len(train) == 5 and train <= set(whole.names)
    assert test.names == tuple(n for n in whole.names if n not in train)  # the order kept
    kept = [whole.names.index(n) for n in test.names]
    for i, k in enumerate(kept):  # images, masks and boxes stay together
        assert (test.images[i] == whole.images[k]).all() and (test.masks[i] == whole.masks[k]).all()
        assert test.boxes[i].tolist() == whole.boxes[k].tolist()
    assert study.data["defect_split"] == {"shots": 0.33, "seed": 0}
    for bad, message in (({"shots": 0}, "shots must be"), ({"seed": 1}, "needs shots"),
                         ({"shots": 0.5, "size": 2}, "unknown key 'size'")):
        with pytest.raises(RecipeError, match=message):
            load_study(study_recipe(category, defect_split=bad))


def test_a_family_learning_from_the_test_set_is_refused_in_one_line(category, tmp_path, capsys):
    path = write(tmp_path, study_recipe(category, family=transplant(category, split="train", shots=0.33,
                                                                    split_seed=0)))
    first = sorted(str(it.image.resolve()) for it in split_defects(category, 0.33, 0).train)[0]
    for extra in (["--plan"], ["--out", str(tmp_path / "out")]):
        code = main(["ablate", str(path), *extra])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "families.learnt learns from 5 files of test set 'real'" in err
        assert Path(first).name in err and "and 2 more" in err and "allow_overlap: true" in err
    assert not (tmp_path / "out").exists()
    # the whole bank overlaps too; with the split taken out of the test set, the training part does not
    with pytest.raises(RecipeError, match="learns from 12 files"):
        load_study(study_recipe(category, family=transplant(category)))
    ok = load_study(study_recipe(category, family=transplant(category, split="train", shots=0.33, split_seed=0),
                                 defect_split={"shots": 0.33, "seed": 0}))
    assert ok.overlaps == {}
    # ... but not one of another seed, nor the held-out part, nor the bank of another test set's folder
    for family in (transplant(category, split="train", shots=0.33, split_seed=1),
                   transplant(category, split="held_out", shots=0.33, split_seed=0)):
        with pytest.raises(RecipeError, match="families.learnt learns from"):
            load_study(study_recipe(category, family=family, defect_split={"shots": 0.33, "seed": 0}))
    with pytest.raises(RecipeError, match="test set 'copy'"):
        load_study(study_recipe(category, family=transplant(category, split="train", shots=0.33, split_seed=0),
                                defect_split={"shots": 0.33, "seed": 0},
                                test_sets={"real": "real", "copy": {"path": str(category), "format": "mvtec"}}))


def test_allow_overlap_runs_and_the_report_marks_it(category, tmp_path):
    family = dict(transplant(category), allow_overlap=True)
    study = load_study(study_recipe(category, family=family))
    assert study.overlaps["learnt"]["real"]["count"] == 12
    # the flag changes no training: it is not part of the cells' settings (nor of their ids)
    assert study.family_records["learnt"] == transplant(category)
    assert "allow_overlap" not in json.dumps([c.settings for c in expand(study)])

    def runner(study, data, cell, device, folder, log):
        return {"record": {"train_seconds": 0.0}, "tests": {"real": {"overall": {"image_auroc": 0.9}}}}

    out = tmp_path / "out"
    run_study(study, out, runner=runner, progress=False)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["family"]: r.get("overlap") for r in rows} == {"none": None, "learnt": 12}
    table = (out / "table.md").read_text()
    assert "| learnt † | synthetic |" in table and "† Trained on files of a test set it is scored on" in table
    assert "- `learnt`: 12 files of `real`" in table
    assert len(list((out / CELLS).iterdir())) == 2
    with pytest.raises(RecipeError, match="allow_overlap must be true or false"):
        load_study(study_recipe(category, family=dict(transplant(category), allow_overlap="yes")))


def fake_model(folder: Path, info: dict) -> Path:
    """A model folder's defectgen_inpaint.json only: the check reads the record, never the weights."""
    from defectgen.sources.diffusion.model import CONFIG_FILE, FORMAT

    folder.mkdir(parents=True)
    (folder / CONFIG_FILE).write_text(json.dumps({"format": FORMAT, "info": info}))
    return folder


def test_a_model_that_learnt_from_test_images_is_refused(category, tmp_path, monkeypatch):
    parts = split_defects(category, 0.5, 0)
    names = [str(it.image) for it in parts.train]
    recipe = tmp_path / "diffusion.yaml"

    def family(model):
        recipe.write_text(yaml.safe_dump({"op": "diffusion", "model": str(model), "mask": {"type": "shape"}}))
        return {"recipe": str(recipe)}

    model = fake_model(tmp_path / "m", {"train_defects": names, "held_out_defects": []})
    with pytest.raises(RecipeError, match=f"learns from {len(names)} files of test set 'real'.*from model "):
        load_study(study_recipe(category, family=family(model)))
    assert load_study(study_recipe(category, family=family(model), defect_split={"shots": 0.5, "seed": 0})).overlaps \
        == {}
    with pytest.raises(RecipeError, match=r"learns from \d+ files? of"):  # another seed's split: some overlap
        load_study(study_recipe(category, family=family(model), defect_split={"shots": 0.5, "seed": 2}))
    # names recorded relative to where training ran: rebased on the recorded data_root
    monkeypatch.chdir(category.parent)
    relative = [str(it.image.relative_to(category.parent)) for it in parts.train]
    elsewhere = fake_model(tmp_path / "m2", {"train_defects": relative, "data": "cat", "data_root": str(category)})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecipeError, match="from model "):
        load_study(study_recipe(category, family=family(elsewhere)))
    # a model still to train, or a folder with no record, holds nothing to compare
    assert load_study(study_recipe(category, family=family(tmp_path / "absent"))).overlaps == {}


def test_a_saved_inpaint_model_is_checked_from_its_info(category, tmp_path):
    pytest.importorskip("diffusers")
    from defectgen import InpaintModel

    model = InpaintModel.create(["crack", "hole", "stain"], resolution=16, width=8, layers_per_block=1,
                                attention=False)
    model.info = {"train_defects": [str(it.image) for it in split_defects(category, 1, 0).train]}
    model.save(tmp_path / "tiny")
    recipe = write(tmp_path, {"op": "diffusion", "model": str(tmp_path / "tiny"), "mask": {"type": "shape"}},
                   "diffusion.yaml")
    with pytest.raises(RecipeError, match="learns from 3 files"):
        load_study(study_recipe(category, family={"recipe": str(recipe)}))


@pytest.mark.skipif(not (SHARED / "deeppcb_400").is_dir(), reason="needs ../shared/data/deeppcb_400")
def test_a_pairs_transplant_family_is_checked_against_every_test_set():
    root = SHARED / "deeppcb_400"
    raw = {"data": {"root": str(root), "format": "deeppcb", "test_every": 4},
           "families": {"none": "none", "transplant": {"transplant": {"pairs": 2}}},
           "regimes": ["synthetic+2"],
           "detectors": {"fasterrcnn": {"kind": "fasterrcnn", "images_seen": 4}},
           "test_sets": {"real": "real"}, "metrics": ["map_50"], "image_size": 64}
    assert load_study(raw).overlaps == {}  # training pairs only: disjoint from the test pairs
    raw["test_sets"]["all"] = {"path": str(root), "format": "deeppcb"}
    with pytest.raises(RecipeError, match="families.transplant learns from 300 files of test set 'all'"):
        load_study(raw)
