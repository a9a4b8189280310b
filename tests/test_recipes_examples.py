"""Recipes are data the registry must understand; examples are code a newcomer copies and must run."""
import importlib.util
import math
from pathlib import Path

import pytest
import torch
import yaml

from defectgen import create_op

ROOT = Path(__file__).resolve().parents[1]


STUDY_RECIPES = sorted(set((ROOT / "recipes").glob("ablation_*.yaml")) | set((ROOT / "recipes").glob("fewshot_*.yaml")))
# diffusion recipes name a model folder the user trains first: tests/test_diffusion.py runs them with a tiny one
MODEL_RECIPES = sorted((ROOT / "recipes").glob("diffusion_*.yaml"))
# method-comparison studies start from a pretrained backbone file: tests/test_recipe_methods.py loads them
METHOD_RECIPES = sorted((ROOT / "recipes").glob("methods_*.yaml"))
OPERATOR_RECIPES = sorted(set((ROOT / "recipes").glob("*.yaml")) - set(STUDY_RECIPES) - set(MODEL_RECIPES)
                          - set(METHOD_RECIPES))


@pytest.mark.parametrize("path", OPERATOR_RECIPES, ids=lambda p: p.name)
def test_recipe_builds_and_runs(path):
    from defectgen.recipe import build_op, class_names

    # the generator's own loader: a recipe may carry class_names beside the operator config
    op, names = build_op(None, path)
    out = op(torch.rand(8, 3, 128, 128), seed=0)
    assert out.mask.any()
    class_names(op, names)  # the names, if any, fit the classes the recipe produces


@pytest.mark.parametrize("path, cells", [(p, {"ablation_deeppcb.yaml": {"cpu": 32, "gpu": 96},
                                                "ablation_bottle.yaml": {"cpu": 18, "gpu": 45},
                                                "ablation_bottle_diffusion.yaml": {"cpu": 6, "gpu": 15},
                                                "fewshot_deeppcb.yaml": {"cpu": 18, "cpu_fasterrcnn": 4,
                                                                         "gpu": 132}}[p.name])
                                         for p in STUDY_RECIPES], ids=lambda v: getattr(v, "name", ""))
def test_study_recipes_load_and_expand_for_every_budget(path, cells):
    """The shipped study recipes (defectgen ablate) are valid for each budget; they name ../shared/data."""
    from detectors.study import expand, load_study

    if not (ROOT.parent / "shared" / "data").is_dir():
        pytest.skip("the study recipes' data (../shared/data) is not on this machine")
    assert {budget: len(expand(load_study(path, budget))) for budget in cells} == cells


DEEPPCB_TEMPLATES = ROOT.parent / "shared" / "data" / "deeppcb_400" / "templates"


def pcb_boards(count: int, size: int) -> torch.Tensor:
    """DeepPCB templates when present, else drawn boards like them: dark copper traces and pads on a bright
    substrate, binarised."""
    if DEEPPCB_TEMPLATES.is_dir():
        from defectgen.io.images import load_folder

        return load_folder(DEEPPCB_TEMPLATES, size, limit=count, channels=1)
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    boards = []
    for _ in range(count):
        board = np.full((size, size), 255, np.uint8)
        for _ in range(12):
            x1, y1, x2, y2 = (int(v) for v in rng.integers(0, size, 4))
            cv2.line(board, (x1, y1), (x2, y2), 0, max(2, size // 40))
            cv2.circle(board, (x2, y2), max(3, size // 30), 0, -1)
        boards.append(board)
    return torch.from_numpy(np.stack(boards))[:, None]


@pytest.mark.parametrize("size", [320, 640])
def test_pcb_recipe_on_boards(size):
    """Every class of the PCB recipe appears over a batch, inside the image, changing copper <-> substrate."""
    config = yaml.safe_load((ROOT / "recipes" / "pcb_defects.yaml").read_text())
    names = config.pop("class_names")
    assert names == ["open", "short", "spurious_copper", "pin_hole"]
    op = create_op(config)
    boards = pcb_boards(24, size)
    out = op(boards, seed=0)
    assert set(out.label.tolist()) >= {1, 2, 3, 4}
    assert out.boxes.numel() and out.boxes.min() >= 0 and out.boxes.max() <= size
    # the defects swap copper and substrate: dark pixels turn bright and bright ones dark
    before, after = boards[out.mask].float(), out.image[out.mask].float()
    assert ((before - 127.5) * (after - 127.5) < 0).float().mean() > 0.9
    from defectgen.foreground import estimate_foreground

    copper = estimate_foreground(boards, "otsu_dark")[out.mask]
    kind = out.label.view(-1, 1, 1, 1).expand_as(out.mask)[out.mask]
    # opens and pin holes land on copper (dark), shorts and spurious copper on the substrate
    assert copper[(kind == 1) | (kind == 4)].all() and not copper[(kind == 2) | (kind == 3)].any()


def test_3way_recipe_is_the_preset():
    from defectgen import cutpaste_3way
    recipe = create_op(yaml.safe_load((ROOT / "recipes" / "cutpaste_3way.yaml").read_text()))
    images = torch.rand(6, 3, 64, 64)
    assert torch.equal(recipe(images, seed=1).image, cutpaste_3way()(images, seed=1).image)


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_loop_example_runs():
    loss = _load("training_loop").main(["--steps", "2", "--batch", "6", "--size", "64"])
    assert math.isfinite(loss)


def test_compose_example_runs(tmp_path):
    result = _load("compose_a_defect").main(["--out", str(tmp_path / "c.png")])
    assert (tmp_path / "c.png").exists() and result.mask.any()


def test_readme_yaml_example_builds():
    """The README's recipe example must stay a working config."""
    text = (ROOT / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    assert blocks, "the README lost its YAML example"
    for block in blocks:
        op = create_op(yaml.safe_load(block))
        assert op(torch.rand(4, 3, 128, 128), seed=0).mask.any()


def test_every_named_operator_is_in_the_readme_gallery():
    """One gallery line (and committed previews on the default images and on bottle) per named operator."""
    from defectgen import list_ops

    spec = importlib.util.spec_from_file_location("make_previews", ROOT / "docs" / "make_previews.py")
    make_previews = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_previews)
    gallery = {name for name, _ in make_previews.GALLERY}
    # generic compositions have no defaults to show; cutpaste_union is the 3-way preset with merged labels;
    # diffusion needs a model trained first (its previews are the benchmark's, see docs/diffusion.md)
    assert gallery == set(list_ops()) - {"patch", "region", "one_of", "cutpaste_union", "diffusion"}
    readme = (ROOT / "README.md").read_text()
    operators = (ROOT / "docs" / "operators.md").read_text()  # the bottle gallery moved there from the README
    for name in gallery:
        assert f"(docs/previews/{name}.png)" in readme and f"(previews/bottle/{name}.png)" in operators
        assert (ROOT / "docs" / "previews" / f"{name}.png").is_file()
        assert (ROOT / "docs" / "previews" / "bottle" / f"{name}.png").is_file()


def test_anomaly_maps_example_runs(tmp_path):
    from test_io_mvtec import make_mvtec

    root = make_mvtec(tmp_path / "cat", train=4)
    scores = _load("anomaly_maps").main(["--data", str(root), "--steps", "1", "--image-size", "32",
                                         "--per-type", "1", "--device", "cpu", "--out", str(tmp_path / "m.png")])
    assert (tmp_path / "m.png").exists() and scores.shape == (3,)  # good, crack, hole
