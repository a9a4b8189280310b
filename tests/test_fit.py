"""defectgen fit: measuring real defects, the fitted recipe, the labelled bank layout, the CLI.

The data are drawn here with known statistics: dark squares (contrast -80, sides 10/12/14 px, two per image) and
bright bars (contrast +40, 15 x 3 px, on some images) on a noisy grey 96 px surface, written as a YOLO set whose
boxes have 2 px of margin, so every measured number has a true value to be compared with.
"""
import json
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml

from defectgen.bank import DefectBank, as_bank
from defectgen.cli import main
from defectgen.fit import (DefectStatistics, RealSpec, choose_fill, estimate_box_mask, fit_defects, fit_recipe,
                           measure_defects, recipe_text)
from defectgen.fit.report import write_plots
from defectgen.recipe import build_op, load_recipe, recipe_defects_per_image
from defectgen.io.labelled import choose_real, read_labelled
from defectgen.registry import create_op

from conftest import make_images
from test_contract import check_boxes, check_contract

SIZE = 96
BACKGROUND, DENT, SCRATCH = 180, 100, 220
SIDES = (10, 12, 14)
MARGIN = 2
IMAGES = 10
SCRATCH_IMAGES = (1, 4, 7, 8)  # images with a bar: 6 images hold 2 defects, 4 hold 3


def _write_set(root, images=IMAGES, boxes=True):
    """The YOLO set of the module docstring (``boxes=False``: the same images with empty label files)."""
    rng = np.random.default_rng(0)
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    truth = []
    for i in range(images):
        image = BACKGROUND + rng.normal(0, 4, (SIZE, SIZE))
        cells = rng.permutation(9)
        lines = []
        defects = [("dent", SIDES[(i + k) % 3], SIDES[(i + k) % 3]) for k in range(2)]
        if i in SCRATCH_IMAGES:
            defects.append(("scratch", 15, 3))
        for (kind, w, h), cell in zip(defects, cells):
            cy, cx = divmod(int(cell), 3)
            x = cx * 32 + int(rng.integers(4, 32 - w - 3))
            y = cy * 32 + int(rng.integers(4, 32 - h - 3))
            image[y:y + h, x:x + w] = (DENT if kind == "dent" else SCRATCH) + rng.normal(0, 4, (h, w))
            x1, y1, x2, y2 = x - MARGIN, y - MARGIN, x + w + MARGIN, y + h + MARGIN
            lines.append(f"{0 if kind == 'dent' else 1} {(x1 + x2) / 2 / SIZE:.6f} {(y1 + y2) / 2 / SIZE:.6f} "
                         f"{(x2 - x1) / SIZE:.6f} {(y2 - y1) / SIZE:.6f}")
            truth.append((i, kind, w, h))
        cv2.imwrite(str(root / "images" / "train" / f"{i:03d}.png"), np.clip(image, 0, 255).astype(np.uint8))
        (root / "labels" / "train" / f"{i:03d}.txt").write_text("\n".join(lines) + "\n" if boxes else "")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/train\nnames: [dent, scratch]\n")
    return truth


def _write_ok(folder, count=6):
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i}.png"), np.clip(BACKGROUND + rng.normal(0, 4, (SIZE, SIZE)), 0, 255)
                    .astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    truth = _write_set(root / "real")
    ok = _write_ok(root / "ok")
    return root, truth, ok


@pytest.fixture(scope="module")
def fitted(data):
    root, _, ok = data
    return fit_defects(RealSpec(root / "real"), root / "fit", ok=ok, samples=32, image_size=SIZE)


# -- measuring ----------------------------------------------------------------------------------------------------
def test_measure_recovers_the_drawn_statistics(data):
    root, truth, _ = data
    stats = measure_defects(read_labelled(root / "real", "yolo", split="train"))
    dent, scratch = stats.classes["dent"], stats.classes["scratch"]
    assert dent["defects"] == 2 * IMAGES and scratch["defects"] == len(SCRATCH_IMAGES)
    assert stats.counts_per_image("dent") == [2] * IMAGES
    assert stats.overall["count_per_defective_image"]["p50"] == 2
    assert dent["mask_sources"] == {"estimated": 2 * IMAGES} and scratch["mask_sources"] == {"estimated": 4}
    # sizes: the estimated masks are the squares themselves, not the boxes with their margin
    sizes = sorted(round(d["size"] * SIZE, 3) for d in stats.defects if d["class"] == "dent")
    assert sizes == sorted(float(w) for i, kind, w, h in truth if kind == "dent")
    assert scratch["aspect"]["p50"] == pytest.approx(5.0)
    assert scratch["area"]["p50"] == pytest.approx(45 / SIZE ** 2, rel=1e-4)  # 5 significant digits kept
    assert dent["contrast"]["p50"] == pytest.approx(DENT - BACKGROUND, abs=3)
    assert scratch["contrast"]["p50"] == pytest.approx(SCRATCH - BACKGROUND, abs=3)
    assert dent["polarity"] == "dark" and scratch["polarity"] == "bright"
    assert dent["label_margin"]["p50"] == pytest.approx(MARGIN / SIZE, rel=1e-4)
    assert scratch["axis_aligned"] and scratch["wide_share"] == 1.0
    # one noisy surface: Otsu's split is noise, so no foreground is recommended
    assert not stats.images["two_levels"] and dent["foreground"] is None
    round_trip = DefectStatistics.from_dict(json.loads(stats.to_json()))
    assert round_trip.to_dict() == stats.to_dict()


def test_box_mask_estimate_and_its_fallback():
    grey = np.full((40, 40), 120.0, dtype=np.float32)
    grey[10:20, 12:18] = 40.0
    found = estimate_box_mask(grey, (9, 8, 21, 23))
    assert found.source == "estimated" and found.box == (12, 10, 18, 20) and found.area == 60
    flat = np.full((40, 40), 120.0, dtype=np.float32)
    whole = estimate_box_mask(flat, (9, 8, 21, 23))
    assert whole.source == "box" and whole.box == (9, 8, 21, 23)
    with pytest.raises(ValueError, match="outside"):
        estimate_box_mask(flat, (50, 50, 60, 60))


def test_measure_errors_name_the_argument(data):
    root = data[0]
    labelled = read_labelled(root / "real", "yolo", split="train")
    with pytest.raises(ValueError, match="templates"):
        measure_defects(labelled, templates=[torch.zeros(1, 8, 8, dtype=torch.uint8)])
    with pytest.raises(TypeError, match="LabelledSet"):
        measure_defects([1, 2])
    empty = type(labelled)(images=labelled.images[:1], boxes=[torch.zeros(0, 4)],
                           labels=[torch.zeros(0, dtype=torch.int64)], class_names=labelled.class_names)
    with pytest.raises(ValueError, match="no defect box"):
        measure_defects(empty)


# -- the fitted recipe --------------------------------------------------------------------------------------------
def test_fitted_recipe_makes_defects_like_the_real_ones(fitted):
    real, synthetic = fitted.real.classes["dent"], fitted.synthetic.classes["dent"]
    assert fitted.recipe["defects_per_image"] == 2
    assert synthetic["size"]["p50"] == pytest.approx(real["size"]["p50"], rel=0.2)
    assert synthetic["aspect"]["p50"] == pytest.approx(real["aspect"]["p50"], rel=0.2)
    assert synthetic["contrast"]["p50"] == pytest.approx(real["contrast"]["p50"], abs=12)
    assert fitted.synthetic.overall["count_per_image"]["p50"] == 2
    assert fitted.synthetic.classes["scratch"]["contrast"]["p50"] > 20  # bright bars stay bright


def test_recipe_structure_and_reasons(fitted):
    recipe = load_recipe(fitted.recipe_path)
    assert recipe["class_names"] == ["dent", "scratch"] and recipe["op"] == "one_of"
    assert recipe["weights"] == [pytest.approx(20 / 24, abs=1e-4), pytest.approx(4 / 24, abs=1e-4)]
    dent, scratch = recipe["ops"]
    assert [b["op"] for b in dent["ops"]] == ["transplant", "region"]
    assert dent["weights"][0] == pytest.approx(20 / 30, abs=1e-4)  # n / (n + 10)
    bank = dent["ops"][0]["bank"]
    assert bank["layout"] == "labelled" and bank["classes"] == ["dent"] and bank["format"] == "yolo"
    region = dent["ops"][1]
    assert region["label"] == 1 and region["blend"]["type"] == "opacity"
    lo, hi = region["mask"]["size_frac_range"]
    assert 10 / SIZE * 0.95 <= lo < hi <= 14 / SIZE * 1.05
    # bright bars on a bright surface: no built-in fill brightens towards white, the transplant carries them
    assert scratch["op"] == "transplant" and scratch["bank"]["classes"] == ["scratch"]
    text = fitted.recipe_path.read_text()
    assert "no calibrated shapes: the defects are brighter" in text and "# transplant:" in text
    assert "every image of" in text  # no --real-count: all ten images


def test_fitted_recipe_builds_and_meets_the_operator_contract(fitted):
    op, names = build_op(None, fitted.recipe_path)
    assert names == ["dent", "scratch"]
    for dtype in (torch.uint8, torch.float32):
        for channels in (1, 3):
            images = make_images(batch=6, channels=channels, dtype=dtype)
            out = op(images, generator=torch.Generator().manual_seed(1))
            check_contract(out, images)
            check_boxes(out, single_instance=False)
            assert out.mask.any() and set(out.label.tolist()) <= {1, 2}
    images = make_images(batch=5, dtype=torch.uint8)
    a = op(images, seed=7)
    again = create_op(op.to_config())(images, seed=7)
    replay = op(images, params=a.params)
    for other in (again, replay):
        assert torch.equal(a.image, other.image) and torch.equal(a.mask, other.mask)
        assert torch.equal(a.boxes, other.boxes) and torch.equal(a.box_label, other.box_label)
    config = {k: v for k, v in load_recipe(fitted.recipe_path).items() if k not in ("class_names",
                                                                                     "defects_per_image")}
    none = create_op({**config, "p": 0.0})(images, seed=0)
    assert torch.equal(none.image, images) and not none.mask.any()


def test_recipe_defects_per_image(fitted, tmp_path):
    assert recipe_defects_per_image(fitted.recipe_path) == 2
    plain = tmp_path / "plain.yaml"
    plain.write_text("op: cutout\n")
    assert recipe_defects_per_image(plain) is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("op: cutout\ndefects_per_image: 0\n")
    with pytest.raises(ValueError, match="defects_per_image"):
        recipe_defects_per_image(bad)
    build_op(None, bad)  # build_op ignores the key, whatever its value


def test_training_sources_paint_the_fitted_count_per_image(fitted, data):
    """`train --recipe fit/recipe.yaml` paints the count `fit` measured, unless --defects-per-image says otherwise."""
    from detectors.data.sources import SyntheticSource
    from detectors.data.training_data import TrainingData, build_source

    _, _, ok = data
    assert SyntheticSource(ok, recipe=fitted.recipe_path, image_size=SIZE).defects_per_image == 2
    assert SyntheticSource(ok, recipe=fitted.recipe_path, image_size=SIZE, defects_per_image=3).defects_per_image == 3
    assert SyntheticSource(ok, op="cutout", image_size=SIZE).defects_per_image == 1
    source, _ = build_source(TrainingData(ok=str(ok), recipe=str(fitted.recipe_path)), SIZE)
    assert source.defects_per_image == 2


def test_recipe_builds_from_another_working_directory(fitted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    op, _ = build_op(None, fitted.recipe_path)
    assert op(make_images(batch=2, dtype=torch.uint8), seed=0).mask.any()


def test_fit_chooses_the_images_train_real_count_chooses(data, tmp_path):
    root, _, ok = data
    result = fit_defects(RealSpec(root / "real", count=6, seed=3), tmp_path / "k6", ok=ok, samples=8,
                         image_size=SIZE)
    recorded = json.loads(result.statistics_path.read_text())["chosen"]
    expected = choose_real(read_labelled(root / "real", "yolo", split="train"), 6, 3).names
    assert recorded == list(expected) == result.real.image_names
    from detectors.data.training_data import read_training_set

    assert list(choose_real(read_training_set(root / "real", "auto", None, 64, 3), 6, 3).names) == recorded
    assert load_recipe(result.recipe_path)["ops"][0]["ops"][0]["bank"]["count"] == 6


def test_two_fits_write_the_same_recipe_bytes(data, fitted, tmp_path, capsys):
    root, _, ok = data
    code = main(["fit", "--real", str(root / "real"), "--ok", str(ok), "--out", str(tmp_path / "again"),
                 "--samples", "4", "--image-size", str(SIZE)])
    assert code == 0
    assert (tmp_path / "again" / "recipe.yaml").read_bytes() == fitted.recipe_path.read_bytes()
    printed = capsys.readouterr().out
    assert "recipe.yaml" in printed and "report.md" in printed


def test_report_files(fitted):
    names = {p.relative_to(fitted.out).as_posix() for p in fitted.files}
    assert {"recipe.yaml", "statistics.json", "report.md", "preview.png", "preview_recipe.png", "plots/all.png",
            "plots/dent.png", "plots/scratch.png"} <= names
    report = fitted.report_path.read_text()
    assert "| dent | 1 | transplant |" in report and "## Class `scratch`" in report
    preview = cv2.imread(str(fitted.out / "preview.png"))
    assert preview is not None and preview.shape[0] > 2 * 96


def test_report_without_matplotlib(fitted, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    files, note = write_plots(tmp_path / "plots", fitted.real, fitted.synthetic)
    assert files == [] and "matplotlib" in note


def test_choose_fill():
    def stats(ring, p10, p50, p90):
        return {"ring_mean": {"n": 5, "p50": ring}, "contrast": {"n": 5, "p10": p10, "p50": p50, "p90": p90}}

    source, blend, _ = choose_fill(stats(180, -50, -40, -30), binary=False)
    assert source == {"type": "constant", "fill": "gray"}  # 40 of the 52 grey levels to mid-grey
    assert blend["opacity_range"] == [pytest.approx(30 / 52, abs=1e-3), pytest.approx(50 / 52, abs=1e-3)]
    source, blend, note = choose_fill(stats(180, -90, -80, -70), binary=False)
    assert source["type"] == "draem_augment" and blend["opacity_range"][1] == pytest.approx(90 / 105, abs=1e-3)
    source, blend, note = choose_fill(stats(180, -130, -120, -110), binary=False)
    assert blend["opacity_range"] == [1.0, 1.0] and "reaches only 88 %" in note
    assert choose_fill(stats(40, -30, -20, -10), binary=False) is None  # dark on dark
    source, blend, _ = choose_fill(stats(40, -30, -20, -10), binary=True)
    assert source["ops"] == ["invert"] and blend == "replace"


def test_fit_recipe_without_transplant(fitted):
    recipe = fit_recipe(fitted.real, transplant=False)
    assert recipe["op"] == "region" and recipe["label"] == 1  # one branch left: the dents' shapes
    assert any(line.startswith("Not made: scratch") for line in recipe.header)
    text = recipe_text(recipe)
    assert yaml.safe_load(text)["class_names"] == ["dent", "scratch"]
    assert "# class 1 'dent': 20 of the 24 real defects" in text and "# calibrated shapes, along" in text
    with pytest.raises(ValueError, match="real_spec"):
        fit_recipe(fitted.real)


# -- the labelled bank layout -------------------------------------------------------------------------------------
def test_labelled_bank_from_yolo_boxes(data):
    root = data[0]
    bank = as_bank({"layout": "labelled", "root": str(root / "real"), "format": "yolo", "count": 4, "seed": 1,
                    "classes": ["dent"]})
    chosen = choose_real(read_labelled(root / "real", "yolo", split="train"), 4, 1)
    assert bank.class_names == ["dent", "scratch"] and len(bank) == 8 and set(bank.types.tolist()) == {1}
    # cut along the estimated squares, not along the boxes and their margin: 100, 144 or 196 px each
    areas = [int(a) for a in bank.masks.flatten(1).sum(1)]
    assert set(areas) <= {s * s for s in SIDES}
    assert all(name.split(" ")[0] in chosen.names for name in bank.names)
    with pytest.raises(ValueError, match="classes"):
        as_bank({"layout": "labelled", "root": str(root / "real"), "classes": ["nope"]})
    with pytest.raises(TypeError, match="unknown keys"):
        as_bank({"layout": "labelled", "root": str(root / "real"), "shots": 3})
    with pytest.raises(ValueError, match="only 10 images"):
        as_bank({"layout": "labelled", "root": str(root / "real"), "count": 11})


def _write_mvtec(root):
    rng = np.random.default_rng(2)
    for folder in ("train/good", "test/good", "test/crack", "ground_truth/crack"):
        (root / folder).mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(root / "train" / "good" / f"{i:03d}.png"), rng.integers(90, 110, (64, 64, 3), np.uint8))
    cv2.imwrite(str(root / "test" / "good" / "000.png"), rng.integers(90, 110, (64, 64, 3), np.uint8))
    areas = []
    for i in range(3):
        image = rng.integers(90, 110, (64, 64, 3), np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        cv2.circle(mask, (20 + 8 * i, 30), 4 + i, 255, -1)
        image[mask > 0] = 30
        areas.append(int((mask > 0).sum()))
        cv2.imwrite(str(root / "test" / "crack" / f"{i:03d}.png"), image)
        cv2.imwrite(str(root / "ground_truth" / "crack" / f"{i:03d}_mask.png"), mask)
    return areas


def test_labelled_bank_from_mvtec_masks(tmp_path):
    areas = _write_mvtec(tmp_path / "bottle")
    bank = as_bank({"layout": "labelled", "root": str(tmp_path / "bottle"), "format": "mvtec"})
    assert bank.class_names == ["crack"] and sorted(int(a) for a in bank.masks.flatten(1).sum(1)) == sorted(areas)
    labelled = read_labelled(tmp_path / "bottle", "mvtec")
    stats = measure_defects(labelled)
    assert stats.classes["crack"]["mask_sources"] == {"mask": 3}
    assert sorted(round(d["area"] * 64 * 64) for d in stats.defects) == sorted(areas)
    direct = DefectBank.from_labelled(labelled)
    assert torch.equal(direct.masks, bank.masks)


def _write_pairs(root):
    """Two aligned pairs: copper (black) bars on white; the tested images have a cut in a bar (open, id 1) and a
    black blob on the substrate (spurious copper, id 5)."""
    for folder in ("images", "templates", "labels"):
        (root / folder).mkdir(parents=True)
    for k, name in enumerate(("0001", "0002")):
        template = np.full((96, 96), 255, np.uint8)
        template[20:32, 8:88] = 0
        template[60:72, 8:88] = 0
        image = template.copy()
        image[20:32, 30 + 10 * k:36 + 10 * k] = 255     # open: 6 x 12 px
        image[42:50, 50:58] = 0                          # spurious copper: 8 x 8 px
        cv2.imwrite(str(root / "templates" / f"{name}.png"), template)
        cv2.imwrite(str(root / "images" / f"{name}.png"), image)
        (root / "labels" / f"{name}.txt").write_text(f"{26 + 10 * k} 16 {39 + 10 * k} 35 1\n46 38 61 53 5\n")


def test_labelled_bank_and_measures_of_aligned_pairs(tmp_path):
    _write_pairs(tmp_path / "pcb")
    spec = {"layout": "labelled", "root": str(tmp_path / "pcb"), "format": "deeppcb", "count": 1, "seed": 0,
            "classes": ["open"]}
    bank = as_bank(spec)
    chosen = choose_real(read_labelled(tmp_path / "pcb", "deeppcb"), 1, 0).names
    reference = DefectBank.from_deeppcb(tmp_path / "pcb", ids=list(chosen), types=["open"])
    assert len(bank) == 1 and torch.equal(bank.masks, reference.masks) and int(bank.masks.sum()) == 72
    from defectgen.fit import read_real

    labelled, templates, pool, _ = read_real(RealSpec(tmp_path / "pcb"))
    stats = measure_defects(labelled, templates=templates)
    assert pool == 2 and stats.overall["mask_sources"] == {"template": 4} and stats.images["binary"]
    assert stats.classes["open"]["foreground"] == "otsu_dark"  # cut out of copper
    assert stats.classes["spurious_copper"]["foreground"] == "otsu_bright"
    assert stats.classes["open"]["change"]["p50"] == pytest.approx(255, abs=1)
    recipe = fit_recipe(stats, RealSpec(tmp_path / "pcb"))
    region = recipe["ops"][0]["ops"][1]
    assert region["source"]["ops"] == ["invert"] and region["blend"] == "replace"
    assert region["foreground"] == "otsu_dark"
    assert recipe["ops"][0]["ops"][0]["match_brightness"] is False


def test_test_every_holds_images_out(data):
    from defectgen.io.labelled.real import held_out

    labelled = read_labelled(data[0] / "real", "yolo", split="train")
    kept = held_out(labelled, 4).names
    assert kept == tuple(n for k, n in enumerate(sorted(labelled.names)) if k % 4 != 3)


# -- the CLI ------------------------------------------------------------------------------------------------------
def _error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("defectgen: error: ") and err.count("\n") == 1, err
    return err


def test_cli_errors_are_one_line(data, tmp_path, capsys):
    root, _, ok = data
    real = str(root / "real")
    out = str(tmp_path / "out")
    assert "--real-count 11" in _error(capsys, ["fit", "--real", real, "--real-count", "11", "--out", out])
    assert "does not exist" in _error(capsys, ["fit", "--real", str(tmp_path / "nope"), "--out", out])
    assert "--ok" in _error(capsys, ["fit", "--real", real, "--ok", str(tmp_path / "nope"), "--out", out])
    assert "--real-format" in _error(capsys, ["fit", "--real", str(ok), "--out", out])
    (tmp_path / "empty").mkdir()
    assert "empty" in _error(capsys, ["fit", "--real", str(tmp_path / "empty"), "--out", out])
    _write_set(tmp_path / "nobox", images=2, boxes=False)
    assert "no defect box" in _error(capsys, ["fit", "--real", str(tmp_path / "nobox"), "--out", out])
    _write_mvtec(tmp_path / "mvtec")
    assert "no defect box" in _error(capsys, ["fit", "--real", str(tmp_path / "mvtec"), "--real-split", "train",
                                              "--out", out])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert "--force" in _error(capsys, ["fit", "--real", real, "--out", str(tmp_path / "full")])
    assert "--real-test-every" in _error(capsys, ["fit", "--real", real, "--real-test-every", "1", "--out", out])
    assert not (tmp_path / "out").exists()


def test_deeppcb_choice_is_the_studys(tmp_path):
    """On the shared DeepPCB pairs, ``--real-test-every 4`` chooses the K pairs a DeepPCB study's transplant family
    and ``synthetic+K`` regime use (ids sorted, every 4th a test pair, ``choose_real`` on the other 300)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "deeppcb_400"
    if not root.is_dir():
        pytest.skip(f"the shared DeepPCB data is not at {root}")
    from defectgen.io.labelled.real import read_chosen
    from detectors.study.splits import split_pair_ids

    everything = read_labelled(root, "deeppcb", size=16, channels=1)
    train, test = split_pair_ids(sorted(everything.names), 4)
    order = {name: k for k, name in enumerate(everything.names)}
    study = choose_real(everything.subset([order[i] for i in train]), 20, 0).names
    chosen, pool, _ = read_chosen(RealSpec(root, "deeppcb", count=20, seed=0, test_every=4), 16, 1)
    assert chosen.names == study and pool == 300 and not set(chosen.names) & set(test)
