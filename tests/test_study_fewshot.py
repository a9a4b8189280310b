"""Label-efficiency studies: a `fit` family learns from each cell's own K real images, transplants of `pairs: k`
take the same images, families that need K real images skip the synthetic-only regime, budgets can leave a
family out."""
import cv2
import numpy as np
import pytest

from defectgen.fit import RealSpec
from defectgen.io.labelled.real import read_chosen
from detectors.study import RecipeError, expand, load_study
from detectors.study.cell import family_spec, training_source
from detectors.study.data import StudyData, fitted_recipe
from detectors.study.overlap import find_overlaps


def write_pairs(root, count=8, size=64):
    """``count`` aligned pairs: copper (black) bars on white; each tested image has an open cut in a bar and
    ``1 + i % 3`` black blobs (spurious copper) on the substrate, labelled in DeepPCB's layout."""
    for folder in ("images", "templates", "labels"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        template = np.full((size, size), 255, np.uint8)
        template[10:18, 4:60] = 0
        template[40:48, 4:60] = 0
        image = template.copy()
        x = int(rng.integers(8, 50))
        image[10:18, x:x + 4] = 255
        lines = [f"{x - 2} 8 {x + 6} 20 1"]
        for b in range(1 + i % 3):
            bx = 6 + 18 * b
            image[24:30, bx:bx + 6] = 0
            lines.append(f"{bx - 2} 22 {bx + 8} 32 5")
        name = f"{i:04d}"
        cv2.imwrite(str(root / "templates" / f"{name}.png"), template)
        cv2.imwrite(str(root / "images" / f"{name}.png"), image)
        (root / "labels" / f"{name}.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def pcb(tmp_path_factory):
    root = tmp_path_factory.mktemp("fewshot") / "pcb"
    write_pairs(root)
    return root


def recipe(pcb, **changes):
    raw = {"name": "fewshot", "data": {"root": str(pcb), "format": "deeppcb", "test_every": 4},
           "families": {"none": "none", "fit": {"fit": {}}, "shape": {"op": "shape"},
                        "transplant": {"transplant": {"pairs": "k"}}},
           "regimes": ["synthetic", "synthetic+2", "synthetic+3"],
           "detectors": {"fasterrcnn": {"kind": "fasterrcnn", "settings": {"batch_size": 2}, "images_seen": 4}},
           "test_sets": {"real": "real"}, "metrics": ["map_50"], "image_size": 64, "seeds": [0, 1],
           "budgets": {"small": {"families": {"shape": None, "transplant": None}, "seeds": [0]}}}
    raw.update(changes)
    return raw


def test_families_that_need_k_real_images_skip_the_synthetic_regime(pcb):
    cells = expand(load_study(recipe(pcb)))
    plan = {(c.family, c.regime) for c in cells if c.seed == 0}
    assert ("shape", "synthetic") in plan and ("fit", "synthetic+2") in plan and ("transplant", "synthetic+3") in plan
    assert ("fit", "synthetic") not in plan and ("transplant", "synthetic") not in plan
    fit_cell = next(c for c in cells if c.family == "fit")
    assert fit_cell.settings["family"]["spec"] == {"fit": {}} and "mixing" in fit_cell.settings


def test_a_budget_leaves_out_the_families_and_detectors_it_sets_to_null(pcb):
    study = load_study(recipe(pcb), "small")
    assert list(study.families) == ["none", "fit"] and study.seeds == [0]
    assert {c.family for c in expand(study)} == {"none", "fit"}
    detectors = {"a": {"kind": "fasterrcnn", "images_seen": 4}, "b": {"kind": "fasterrcnn", "images_seen": 8}}
    study = load_study(recipe(pcb, detectors=detectors, budgets={"one": {"detectors": {"a": None}}}), "one")
    assert list(study.detectors) == ["b"] and {c.detector for c in expand(study)} == {"b"}


@pytest.mark.parametrize("change, message", [
    ({"regimes": ["synthetic"]}, "families.fit learns from the regime's K real images (fit) but no regime has any"),
    ({"families": {"none": "none", "fit": {"fit": {"colour": 1}}}}, "families.fit.fit: unknown key 'colour'"),
    ({"families": {"none": "none", "fit": {"fit": {"transplant": "yes"}}}}, "fit.transplant must be true or false"),
    ("folder data", "a fit family reads its K real training images from aligned pairs"),
])
def test_bad_fit_families_name_the_key(pcb, change, message):
    if change == "folder data":
        real = {"path": str(pcb), "format": "deeppcb"}
        change = {"data": {"format": "folder", "ok": str(pcb / "templates"), "real_train": real, "real_test": real}}
    with pytest.raises(RecipeError) as info:
        load_study(recipe(pcb, **change))
    assert message in str(info.value)


def test_a_fit_cell_fits_and_trains_on_the_same_k_real_images(pcb):
    study = load_study(recipe(pcb))
    data = StudyData(study)
    for cell in (c for c in expand(study) if c.family == "fit"):
        k = int(cell.regime.split("+")[1])
        source = training_source(study, data, cell, "cpu")
        fitted, _, _ = read_chosen(RealSpec(str(pcb), "deeppcb", count=k, seed=cell.seed, test_every=4), 64, 1)
        assert list(source.real.names) == list(fitted.names) and len(source.real) == k
        op, per_image, recipe_ = fitted_recipe(study, family_spec(study, cell)["fit"], cell.seed)
        # the recipe's transplant bank is those same K images, and the source paints the measured count
        banks = [b["bank"] for b in _branches(recipe_) if b.get("op") == "transplant"]
        assert banks and all(b["count"] == k and b["seed"] == cell.seed and b["test_every"] == 4 for b in banks)
        assert source.synthetic.defects_per_image == per_image == recipe_["defects_per_image"]
        counts = sorted(len(b) for b in fitted.boxes)
        median = float(np.median(counts))  # the rounded median count (a half rounds either way)
        assert np.floor(median) <= per_image <= np.ceil(median)
        batch = source.batch(0, 4, 10)
        assert len(batch.images) == 4 and all(len(b) for b in batch.boxes)


def test_fit_and_transplant_k_families_learn_only_from_training_pairs(pcb):
    assert find_overlaps(load_study(recipe(pcb))) == {}


def _branches(config):
    if isinstance(config, dict):
        yield config
        for value in config.values():
            yield from _branches(value)
    elif isinstance(config, list):
        for value in config:
            yield from _branches(value)
