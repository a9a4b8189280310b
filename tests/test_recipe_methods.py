"""recipes/methods_bottle.yaml (the method comparison) and the two recipe features it uses: a detector's own
``families`` list, and ``--data-root``. Loads and expands only: nothing trains."""
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import write_dark_ok_images
from detectors.study import RecipeError, expand, load_study

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "methods_bottle.yaml"
BOTTLE = ROOT.parent / "shared" / "data" / "mvtec_bottle_256"
needs_bottle = pytest.mark.skipif(not BOTTLE.is_dir(), reason="needs ../shared/data/mvtec_bottle_256")

# operators akin to each method's training defects: a synthetic test set made by one would favour that method
KIN = {"draem": {"draem", "perlin", "memseg", "glass"},
       "cutpaste": {"cutpaste", "cutpaste_scar", "cutpaste_3way", "cutpaste_union", "scar", "nsa", "poisson_paste"}}
PRETEXT_OPS = {"cutpaste": {"cutpaste"}, "scar": {"cutpaste_scar"}, "union": {"cutpaste", "cutpaste_scar"},
               "3way": {"cutpaste", "cutpaste_scar"}}


# -- a detector's families list, on a toy folder (no shared data, no anomalib) -----------------------------------
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    rng = np.random.default_rng(0)
    write_dark_ok_images(root / "ok", rng, 6, size=32)
    return root


def toy_recipe(**detectors):
    return {"data": {"format": "folder", "ok": "ok", "holdout_ok": 2},
            "families": {"none": "none", "cut": {"op": "cutpaste"}, "scar": {"op": "scar"}},
            "detectors": detectors or {"a": {"kind": "cutpaste", "families": ["cut"]}, "b": {"kind": "cutpaste"}},
            "test_sets": {"synthetic": {"synthetic": {"op": "cutout"}, "images": 2}},
            "metrics": ["image_auroc"], "seeds": [0, 1]}


def test_families_restrict_a_detectors_cells(toy):
    cells = expand(load_study(toy_recipe(), base=toy))
    assert {(c.detector, c.family) for c in cells} == {("a", "cut"), ("b", "none"), ("b", "cut"), ("b", "scar")}
    assert len(cells) == 8  # (1 + 3) x 2 seeds


def test_families_are_not_part_of_a_cells_settings(toy):
    restricted = {c.label: c.id for c in expand(load_study(toy_recipe(), base=toy))}
    everything = {c.label: c.id for c in expand(load_study(toy_recipe(a={"kind": "cutpaste"}, b={"kind": "cutpaste"}),
                                                          base=toy))}
    assert restricted.items() <= everything.items()  # the same cells keep their ids; the list only leaves some out


@pytest.mark.parametrize("families, message", [
    (["cut", "scratch"], "detectors.a.families: unknown family 'scratch'; the study's families: none, cut, scar"),
    ([], "detectors.a.families must be a non-empty list of family names, got []"),
    (["cut", "cut"], "detectors.a.families lists a family twice: ['cut', 'cut']"),
])
def test_bad_families_are_one_line_errors(toy, families, message):
    with pytest.raises(RecipeError) as error:
        load_study(toy_recipe(a={"kind": "cutpaste", "families": families}), base=toy)
    assert str(error.value) == message and "\n" not in message


def test_data_root_needs_a_root(toy):
    with pytest.raises(RecipeError, match="--data-root replaces data.root"):
        load_study(toy_recipe(), base=toy, data_root="elsewhere")


# -- the committed recipe ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    """A stand-in for runs/ssl_r18/backbone.pt: loading checks that the file exists and hashes it, nothing more."""
    path = tmp_path_factory.mktemp("ssl") / "backbone.pt"
    path.write_bytes(b"not read when a recipe is loaded")
    return path


def methods_study(budget, backbone, **kwargs):
    """The committed recipe with its backbone file replaced by ``backbone`` (relative paths: from recipes/)."""
    raw = yaml.safe_load(RECIPE.read_text())
    for spec in raw["detectors"].values():
        if spec.get("backbone_weights", "").endswith("backbone.pt"):
            spec["backbone_weights"] = str(backbone)
    return load_study(raw, budget, base=RECIPE.parent, **kwargs)


def ops_of(spec, base):
    """Every operator name a family or test set spec uses (an operator recipe file read and walked)."""
    if isinstance(spec, dict) and "recipe" in spec and len(spec) == 1:
        return ops_of(yaml.safe_load((base / spec["recipe"]).read_text()), base)
    if isinstance(spec, dict) and "pretext" in spec and len(spec) == 1:
        return set(PRETEXT_OPS[spec["pretext"]])
    if isinstance(spec, dict):
        found = {spec["op"]} if isinstance(spec.get("op"), str) else set()
        return found.union(*(ops_of(v, base) for k, v in spec.items()))
    if isinstance(spec, list):
        return set().union(*(ops_of(v, base) for v in spec))
    return set()


@needs_bottle
@pytest.mark.parametrize("budget, cells, size", [("cpu", 24, 64), ("gpu", 24, 256), ("smoke", 7, 64)])
def test_methods_recipe_loads_and_expands(budget, cells, size, backbone):
    pytest.importorskip("anomalib")
    study = methods_study(budget, backbone)
    plan = expand(study)
    assert len(plan) == cells and study.image_size == size
    detectors = {c.detector for c in plan}
    assert len(detectors) >= (6 if budget == "smoke" else 8)
    assert study.seeds == ([0] if budget == "smoke" else [0, 1, 2])
    for detector in detectors:  # one family per method: trained once per seed
        assert len({c.family for c in plan if c.detector == detector}) == 1
        assert len([c for c in plan if c.detector == detector]) == len(study.seeds)
    synthetic = [name for name, spec in study.test_sets.items() if "synthetic" in spec]
    assert "real" in study.test_sets and len(synthetic) >= 4
    assert not study.overlaps  # no family learns from real test files


@needs_bottle
def test_no_method_is_scored_on_its_own_training_defects(backbone):
    pytest.importorskip("anomalib")
    from detectors.anomalib.models import takes_generator

    study = methods_study("cpu", backbone)
    base = RECIPE.parent
    own = set()  # what any detector of the study learns from
    for name, spec in study.detectors.items():
        families = spec.get("families", list(study.families))
        if spec["kind"] == "cutpaste" or (spec["kind"] == "anomalib" and takes_generator(spec["model"])):
            if spec.get("generator"):
                own |= ops_of({"op": spec["generator"]}, base)
            else:
                own |= set().union(*(ops_of(study.families[f], base) for f in families))
    assert own == {"draem", "cutpaste"}
    kin = set().union(*(KIN.get(op, {op}) for op in own))
    for name, spec in study.test_sets.items():
        if "synthetic" in spec:
            made_by = ops_of(spec["synthetic"], base)
            assert made_by and not made_by & kin, (name, made_by & kin)
            assert spec["synthetic"] not in study.families.values(), name


@needs_bottle
def test_data_root_override(backbone, monkeypatch):
    """--data-root as given from the current directory: recorded relative to the recipe's folder, so the same
    root gives the same cells; another root gives other cells."""
    pytest.importorskip("anomalib")
    monkeypatch.chdir(ROOT)
    written = {c.label: c.id for c in expand(methods_study("smoke", backbone))}
    same = methods_study("smoke", backbone, data_root="../shared/data/mvtec_bottle_256")
    assert same.data["root"] == "../../shared/data/mvtec_bottle_256"
    assert {c.label: c.id for c in expand(same)} == written
    moved = methods_study("smoke", backbone, data_root=BOTTLE)
    assert moved.data["root"] == BOTTLE.as_posix()
    assert set(written.values()).isdisjoint(c.id for c in expand(moved))
    with pytest.raises(RecipeError, match="data.root"):
        methods_study("smoke", backbone, data_root="no/such/category")
