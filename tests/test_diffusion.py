"""Diffusion-inpainting defects (defectgen.sources.diffusion): noise, windows, the model, training, the source
and ``defectgen train inpaint``. Models here are tiny and random-init (or trained for a few steps)."""
import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from defectgen import DefectBank, DiffusionDefect, DiffusionInpaint, InpaintModel, RegionDefect  # noqa: E402
from defectgen.cli import main  # noqa: E402
from defectgen.io.atomic import encode_png  # noqa: E402
from defectgen.sources.diffusion.crops import crop, square_boxes, uncrop  # noqa: E402
from defectgen.sources.diffusion.noise import seeded_normal  # noqa: E402
from defectgen.sources.diffusion.sampling import ddim_timesteps  # noqa: E402
from defectgen.sources.diffusion.train import InpaintTraining, split_shots, subset_bank, train_inpaint  # noqa: E402

TINY = dict(resolution=16, width=8, layers_per_block=1, attention=False)


def tiny_model(classes=("crack", "stain"), seed=0, **kwargs):
    return InpaintModel.create(list(classes), seed=seed, **{**TINY, **kwargs})


def write_mvtec(root, size=48, good=6, per_type=3, types=("crack", "spot")):
    """A tiny MVTec-layout category: noisy grey OK images; defects are bright bars (crack) or dark discs (spot)."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:size, :size]

    def save(path, pixels):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_png(pixels))

    def ok():
        return np.clip(rng.normal(120, 12, (size, size, 3)), 0, 255).astype(np.uint8)

    for i in range(good):
        save(root / "train" / "good" / f"{i:03d}.png", ok())
    for t, kind in enumerate(types):
        for i in range(per_type):
            pixels = ok()
            cy, cx = 14 + 6 * i, 16 + 5 * i
            if t == 0:
                mask = (abs(rows - cy) < 2) & (abs(cols - cx) < 9)
                pixels[mask] = 230
            else:
                mask = (rows - cy) ** 2 + (cols - cx) ** 2 <= 25
                pixels[mask] = 25
            save(root / "test" / kind / f"{i:03d}.png", pixels)
            save(root / "ground_truth" / kind / f"{i:03d}_mask.png", (mask * 255).astype(np.uint8)[..., None])
    return root


# -- noise, windows, schedule -------------------------------------------------------------------------------------
def test_seeded_noise_is_standard_normal_and_depends_only_on_its_seed():
    seeds = torch.tensor([3, 4, 5, 2 ** 40 + 3])
    noise = seeded_normal(seeds, 7, (3, 32, 32))
    assert noise.shape == (4, 3, 32, 32)
    assert abs(float(noise.mean())) < 0.03 and abs(float(noise.std()) - 1) < 0.03
    assert torch.equal(seeded_normal(seeds[2:3], 7, (3, 32, 32))[0], noise[2])  # alone = in a batch
    assert not torch.equal(noise[0], noise[3])  # high bits of a seed count
    other = seeded_normal(seeds, 8, (3, 32, 32))
    assert abs(float(torch.corrcoef(torch.stack([noise.flatten(), other.flatten()]))[0, 1])) < 0.05
    with pytest.raises(ValueError, match="seeds"):
        seeded_normal(torch.rand(3), 0, (2,))


def test_windows_crop_and_paste_back_the_same_pixels():
    images = torch.rand(2, 3, 40, 50)
    boxes = torch.tensor([[10.0, 5, 26, 21], [0, 0, 50, 40]])
    crops = crop(images, boxes, 16)
    torch.testing.assert_close(crops[0], images[0, :, 5:21, 10:26], atol=1e-5, rtol=0)
    back = uncrop(crops, boxes, 40, 50)
    torch.testing.assert_close(back[0, :, 6:20, 11:25], images[0, :, 6:20, 11:25], atol=1e-5, rtol=0)
    assert float(back[0, :, :4].abs().max()) == 0.0
    squares = square_boxes(torch.tensor([[10.0, 10, 20, 14], [5, 5, 6, 6]]), context=0.5, min_side=8)
    assert squares.tolist() == [[5.0, 2.0, 25.0, 22.0], [1.5, 1.5, 9.5, 9.5]]


def test_ddim_timesteps():
    assert ddim_timesteps(1000, 4) == [999, 749, 499, 249]
    assert ddim_timesteps(1000, 4, strength=0.5) == [499, 249]
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))
    for bad in (dict(steps=0), dict(steps=11), dict(steps=2, strength=0.0), dict(steps=2, strength=1.5)):
        with pytest.raises(ValueError):
            ddim_timesteps(10, **bad)


# -- the model ------------------------------------------------------------------------------------------------------
def test_model_save_load_round_trip_gives_identical_defects(tmp_path):
    model = tiny_model()
    images = torch.rand(3, 3, 40, 40)
    before = DiffusionDefect(model, steps=3, guidance=2.0)(images, seed=5)
    model.save(tmp_path / "m")
    loaded = InpaintModel.load(tmp_path / "m")
    assert loaded.class_names == ["normal", "crack", "stain"] and loaded.resolution == 16
    again = DiffusionDefect(tmp_path / "m", steps=3, guidance=2.0)(images, seed=5)
    assert torch.equal(before.image, again.image) and torch.equal(before.label, again.label)
    assert DiffusionDefect(loaded, steps=3, guidance=2.0)(images, params=before.params).image.equal(before.image)


def test_the_class_changes_the_defect():
    model = tiny_model()
    crops = (torch.rand(1, 3, 16, 16) * 2 - 1).expand(2, -1, -1, -1)  # one window twice, one seed
    masks = torch.zeros(2, 1, 16, 16)
    masks[..., 4:12, 4:12] = 1
    seeds = torch.tensor([1, 1])
    crack, stain = model.class_id("crack"), model.class_id("stain")
    out = model.inpaint(crops, masks, torch.tensor([crack, stain]), seeds, steps=3, guidance=1.0)
    assert float((out[0] - out[1]).abs().max()) > 1e-3
    same = model.inpaint(crops, masks, torch.tensor([crack, crack]), seeds, steps=3, guidance=1.0)
    torch.testing.assert_close(same[0], same[1])
    guided = model.inpaint(crops, masks, torch.tensor([crack, stain]), seeds, steps=3, guidance=3.0)
    assert not torch.allclose(guided, out)


def test_operator_labels_each_sample_with_its_class():
    op = DiffusionDefect(tiny_model(), steps=2, label=3, seed=0)
    assert op.class_ids == {3: "crack", 4: "stain"}
    out = op(torch.rand(8, 3, 32, 32), seed=1)
    assert set(out.label.tolist()) <= {3, 4} and len(set(out.label.tolist())) == 2
    classes = out.params["diffusion_class"]
    assert torch.equal(out.label, classes + 3)
    only = DiffusionDefect(tiny_model(), steps=2, classes="stain")(torch.rand(4, 3, 32, 32), seed=1)
    assert (only.label == 1).all()


def test_region_defect_with_a_diffusion_source_as_in_the_readme():
    source = DiffusionInpaint(tiny_model(), steps=2, guidance=3.0)
    op = RegionDefect(mask={"type": "shape"}, source=source, blend="feather")
    images = torch.rand(4, 3, 48, 48)
    out = op(images, seed=0)
    outside = ~out.mask.expand_as(images)
    assert out.mask.any() and torch.equal(out.image[outside], images[outside])
    assert (out.image != images).any()


def test_sampler_recovers_the_clean_window_from_an_exact_noise_estimate():
    """With the true noise as the estimate, DDIM lands on the clean sample from any start, with or without
    RePaint's known pixels and resampling: the sampling maths, without a trained network."""
    from defectgen.sources.diffusion.sampling import add_noise, denoise

    alphas = InpaintModel.create(conditional=False, **TINY).alphas_cumprod
    clean = torch.rand(3, 3, 8, 8) * 1.6 - 0.8
    seeds = torch.tensor([1, 2, 3])

    def exact(x, t):
        a = alphas[t]
        return (x - a.sqrt() * clean) / (1 - a).sqrt()

    for steps, strength, resample in ((10, 1.0, 1), (7, 0.4, 1), (5, 1.0, 3)):
        timesteps = ddim_timesteps(1000, steps, strength)
        start = add_noise(clean, seeded_normal(seeds, 0, (3, 8, 8)), alphas, timesteps[0])
        mask = (torch.rand(3, 1, 8, 8) > 0.5).float()
        for known in (None, clean):
            out = denoise(exact, start, alphas, timesteps, seeds, known=known,
                          mask=None if known is None else mask, resample=resample)
            torch.testing.assert_close(out, clean, atol=1e-4, rtol=0)


def test_low_strength_keeps_what_was_there():
    """An OK-only model at low strength starts close to the input: with a network that predicts no noise, the
    change is the little noise the start had, far below a full-strength run's."""
    model = InpaintModel.create(conditional=False, seed=3, **TINY)
    torch.nn.init.zeros_(model.unet.conv_out.weight)
    torch.nn.init.zeros_(model.unet.conv_out.bias)
    # smooth images: resampling the window to the model's 16 px and back then loses nothing that matters here
    images = torch.nn.functional.interpolate(torch.rand(4, 3, 6, 6), size=48, mode="bilinear")
    changes = []
    for strength in (0.1, 1.0):
        out = DiffusionDefect(model, steps=10, strength=strength, resample=2, blend="replace")(images, seed=0)
        inside = out.mask.expand_as(images)
        changes.append(float((out.image - images)[inside].abs().mean()))
    assert changes[0] < 0.4 * changes[1], changes


def test_bad_arguments_are_named(tmp_path):
    model = tiny_model()
    for kwargs, match in ((dict(steps=0), "steps"), (dict(guidance=-1), "guidance"), (dict(strength=0), "strength"),
                          (dict(resample=0), "resample"), (dict(classes=["dent"]), "dent"),
                          (dict(batch_size=0), "batch_size")):
        with pytest.raises(ValueError, match=match):
            DiffusionInpaint(model, **kwargs)
    with pytest.raises(ValueError, match="does not exist"):
        DiffusionInpaint(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.json").write_text("{}")
    with pytest.raises(ValueError, match="not an inpainting model folder"):
        DiffusionInpaint(tmp_path / "other")
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "model_index.json").write_text("{}")
    with pytest.raises(ValueError, match="prompts"):
        DiffusionInpaint(tmp_path / "sd")
    with pytest.raises(ValueError, match="diffusers pipeline folder"):
        InpaintModel.load(tmp_path / "sd")
    with pytest.raises(TypeError, match="backend"):
        DiffusionInpaint(object())
    op = DiffusionDefect(model, steps=2)
    out = op(torch.rand(2, 3, 32, 32), seed=0)
    with pytest.raises(ValueError, match="diffusion_class"):
        op(torch.rand(2, 3, 32, 32), params={**out.params, "diffusion_class": torch.tensor([0, 5])})


# -- training -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_makes_the_loss_fall_on_a_fixed_batch(seed):
    """Overfitting one fixed batch (fixed noise and timesteps) must cut the noise-prediction error well down; a
    network that cannot learn (or a loss wired to the wrong target) stays near 1."""
    torch.manual_seed(seed)
    model = tiny_model(seed=seed, width=16)
    crops = torch.rand(8, 3, 16, 16) * 2 - 1
    masks = (torch.rand(8, 1, 16, 16) > 0.5).float()
    classes = torch.tensor([1, 2, 3, 1, 2, 3, 0, 1])
    t = torch.randint(0, 1000, (8,))
    noise = torch.randn(8, 3, 16, 16)
    a = model.alphas_cumprod[t].view(-1, 1, 1, 1)
    noisy = a.sqrt() * crops + (1 - a).sqrt() * noise
    optimiser = torch.optim.Adam(model.unet.parameters(), lr=3e-3)
    losses = []
    model.unet.train()
    for _ in range(60):
        loss = torch.nn.functional.mse_loss(model.predict_noise(noisy, t, crops * (1 - masks), masks, classes), noise)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    # measured over seeds 0-5: first loss 1.10-1.15, last 0.001-0.002; the bound keeps a margin of 50x
    assert losses[0] > 0.5 and min(losses[-5:]) < 0.1 * losses[0], (losses[0], losses[-5:])


def test_shots_split_each_type_and_hold_out_the_rest(tmp_path):
    root = write_mvtec(tmp_path / "cat", per_type=4)
    bank = DefectBank.from_mvtec(root, margin_px=48)
    train, held_out = split_shots(bank, 0.5, seed=0)
    assert len(train) == 4 and len(held_out) == 4 and not set(train) & set(held_out)
    assert sorted(int(bank.types[i]) for i in train) == [1, 1, 2, 2]
    assert len(split_shots(bank, 1, seed=0)[0]) == 2 and len(split_shots(bank, 0.01, seed=0)[0]) == 2
    assert split_shots(bank, 0.5, seed=0) == (train, held_out) != split_shots(bank, 0.5, seed=1)
    sub = subset_bank(bank, train)
    assert len(sub) == 4 and sub.class_names == bank.class_names
    with pytest.raises(ValueError, match="shots"):
        split_shots(bank, 0)


def test_resumed_training_ends_with_the_model_an_uninterrupted_run_gives(tmp_path):
    root = write_mvtec(tmp_path / "cat")
    bank = DefectBank.from_mvtec(root, margin_px=48)
    noise = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    ok = (120 + 10 * noise).clamp(0, 255).byte()
    settings = InpaintTraining(resolution=16, steps=4, batch_size=4, width=8, layers_per_block=1, attention=False,
                               warmup=2, min_side=8)
    whole = train_inpaint(tmp_path / "whole", ok, bank, settings, progress=False)
    train_inpaint(tmp_path / "parts", ok, bank, InpaintTraining(**{**settings.__dict__, "steps": 2}), progress=False)
    resumed = train_inpaint(tmp_path / "parts", ok, bank, settings, progress=False)
    assert resumed.info["steps_done"] == 4
    for (name, a), b in zip(whole.unet.state_dict().items(), resumed.unet.state_dict().values()):
        assert torch.equal(a, b), name
    info = json.loads((tmp_path / "whole" / "defectgen_inpaint.json").read_text())["info"]
    assert info["training"]["steps"] == 4 and len(info["defects"]) == len(bank)
    with pytest.raises(ValueError, match="other settings.*learning_rate"):
        train_inpaint(tmp_path / "whole", ok, bank, InpaintTraining(**{**settings.__dict__, "learning_rate": 1e-3}),
                      progress=False)
    unconditional = train_inpaint(tmp_path / "ok_only", ok, None,
                                  InpaintTraining(**{**settings.__dict__, "kind": "unconditional"}), progress=False)
    assert unconditional.class_names == [] and not unconditional.conditional


# -- the command ------------------------------------------------------------------------------------------------------
def test_train_inpaint_command_trains_resumes_and_feeds_generate(tmp_path, capsys, no_network):
    root = write_mvtec(tmp_path / "cat")
    out = tmp_path / "model"
    common = ["train", "inpaint", "--data", str(root), "--out", str(out), "--shots", "0.5", "--image-size", "16",
              "--width", "8", "--layers", "1", "--no-attention", "--batch-size", "4", "--no-progress"]
    assert main(common + ["--steps", "2"]) == 0
    assert main(common + ["--steps", "3"]) == 0
    text = capsys.readouterr().out
    assert "training on 4 real defects (crack 2, spot 2), 2 held out, and 6 OK images" in text
    assert "for 3 steps" in text
    model = InpaintModel.load(out)
    assert model.class_names == ["normal", "crack", "spot"] and len(model.info["held_out_defects"]) == 2
    # the training part is split_defects' (DefectBank.from_mvtec(split="train")) for the same shots and seed, and the
    # data folder is recorded resolved: a study tells which test images the model saw (detectors/study/overlap.py)
    from defectgen.io.mvtec import split_defects
    assert model.info["train_defects"] == [str(it.image) for it in split_defects(root, 0.5, 0).train]
    assert model.info["data_root"] == str(root.resolve())
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"op: diffusion\nmodel: {out}\nsteps: 2\nmask: {{type: shape}}\n"
                      "class_names: [crack, spot]\n")
    ng = tmp_path / "ng"
    assert main(["generate", "--input", str(root / "train" / "good"), "--output", str(ng), "--recipe", str(recipe),
                 "--count", "4", "--format", "mvtec"]) == 0
    assert len(list((ng / "mvtec" / "ground_truth").rglob("*.png"))) == 4  # every sample defective, by class
    assert main(["preview", "--recipe", str(recipe), "--input", str(root / "train" / "good"), "--count", "2",
                 "--size", "48", "--out-dir", str(tmp_path / "previews")]) == 0
    assert (tmp_path / "previews" / "recipe.png").is_file()
    assert no_network == []


@pytest.mark.parametrize("case, message", [
    ("no_defects", "no defect folders"), ("mask_size", "is 20x20 px"), ("small", "smaller than the model's 64 px"),
    ("other_run", "non-empty folder that holds no inpainting training run"), ("missing", "does not exist")])
def test_train_inpaint_command_refuses_bad_input_in_one_line(tmp_path, capsys, case, message):
    root = write_mvtec(tmp_path / "cat")
    out = tmp_path / "model"
    size = "16"
    if case == "no_defects":
        for kind in ("crack", "spot"):
            for f in (root / "test" / kind).iterdir():
                f.unlink()
            (root / "test" / kind).rmdir()
    elif case == "mask_size":
        (root / "ground_truth" / "crack" / "000_mask.png").write_bytes(encode_png(np.zeros((20, 20, 1), np.uint8)))
    elif case == "small":
        size = "64"
    elif case == "other_run":
        out.mkdir()
        (out / "model.pt").write_text("x")
    elif case == "missing":
        root = tmp_path / "nowhere"
    code = main(["train", "inpaint", "--data", str(root), "--out", str(out), "--image-size", size, "--steps", "1",
                 "--width", "8", "--layers", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_loading_and_sampling_never_touch_the_network(tmp_path, no_network):
    tiny_model().save(tmp_path / "m")
    out = DiffusionDefect(str(tmp_path / "m"), steps=2)(torch.rand(2, 3, 32, 32), seed=0)
    assert out.mask.any() and no_network == []


def test_shipped_diffusion_recipe_runs_with_a_model_in_its_place(tmp_path, monkeypatch):
    from pathlib import Path

    import yaml
    from defectgen.recipe import build_op

    root = Path(__file__).resolve().parents[1]
    if not (root.parent / "shared" / "data" / "mvtec_bottle_256").is_dir():
        pytest.skip("the recipe's masks come from ../shared/data/mvtec_bottle_256")
    config = yaml.safe_load((root / "recipes" / "diffusion_bottle.yaml").read_text())
    model = tiny_model(["broken_large", "broken_small", "contamination"])
    model.save(tmp_path / "m")
    config.update(model=str(tmp_path / "m"), steps=2)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(config))
    monkeypatch.chdir(root)  # the recipe names its data relative to the repository
    op, names = build_op(None, recipe)
    out = op(torch.rand(4, 3, 128, 128), seed=0)
    assert out.mask.any() and names == ["broken_large", "broken_small", "contamination"]
    assert math.isfinite(float(out.image.sum()))
