"""NSA (defectgen/ops/nsa.py) pinned to its reference, github.com/hmsch/natural-synthetic-anomalies:
``self_sup_data/self_sup_tasks.py`` (``patch_ex``, ``_patch_ex``) and ``train_mvtec.py`` (MVTec settings)."""
import math

import cv2
import numpy as np
import pytest
import torch

from defectgen import NSA, CutPaste, DefectBatch, OneOf, create_op
from defectgen.dataset import DefectDataset, collate
from defectgen.ops.nsa import MVTEC_SETTINGS, RIM_PX, nsa_intensity_target

from conftest import make_images


def square_change(delta, size=48, dtype=torch.uint8, channels=3):
    """A flat image and a copy whose centre 24 x 24 square is brighter by ``delta`` grey levels."""
    before = torch.full((1, channels, size, size), 100, dtype=torch.uint8)
    after = before.clone()
    after[..., 12:36, 12:36] += delta
    region = torch.zeros(1, 1, size, size, dtype=torch.bool)
    region[..., 12:36, 12:36] = True
    if dtype != torch.uint8:
        before, after = before.to(dtype) / 255, after.to(dtype) / 255
    return before, after, region


def reference_label(before, after, region, k, x0, tol=1.0):
    """NSA's label_mode='logistic-intensity' on uint8 HWC arrays, written from the reference's steps:
    mean |change| > tol, cv2.medianBlur 5, masked mean |change|, skimage median over disk(5), logistic."""
    pytest.importorskip("skimage")
    from skimage.filters import median
    from skimage.morphology import disk

    d = np.abs(after.astype(np.float64) - before.astype(np.float64)) * region[..., None]
    label_mask = np.uint8(d.mean(-1) > tol)
    label_mask = cv2.medianBlur(label_mask, 5)
    intensity = np.abs(label_mask[..., None] * before * 1.0 - label_mask[..., None] * after * 1.0).mean(-1)
    intensity = median(intensity, disk(5))
    return label_mask / (1 + np.exp(-k * (intensity - x0)))


def hwc(x):
    return x.permute(1, 2, 0).numpy()


# -- the soft label -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_label_of_a_known_intensity_change_is_the_logistic(dtype):
    """Inside a square brightened by 26 grey levels, NSA's default (k, x0) = (1/6, 20) gives
    1 / (1 + exp(-(26 - 20) / 6)) = 1 / (1 + e^-1) = 0.7310586."""
    before, after, region = square_change(26, dtype=dtype)
    target = nsa_intensity_target(before, after, region, (1 / 6, 20.0))
    expected = 1 / (1 + math.exp(-1.0))
    assert abs(expected - 0.7310586) < 1e-7
    centre = target[0, 0, 17:31, 17:31]  # at least 5 px from the square's edge: the disk sees only the change
    torch.testing.assert_close(centre, torch.full_like(centre, expected), atol=1e-5, rtol=0)
    # MVTec screw's (k, x0) = (1, 3): 1 / (1 + e^-23)
    screw = nsa_intensity_target(before, after, region, (1.0, 3.0))[0, 0, 24, 24]
    assert abs(float(screw) - 1 / (1 + math.exp(-23.0))) < 1e-6


def test_label_zero_outside_region_in_unit_interval_and_monotone():
    values = []
    for delta in (2, 5, 10, 20, 40, 80, 150):
        before, after, region = square_change(delta)
        target = nsa_intensity_target(before, after, region, (1 / 6, 20.0))
        assert target.dtype == torch.float32 and target.shape == (1, 1, 48, 48)
        assert not target[~region].any() and float(target.min()) >= 0 and float(target.max()) <= 1
        values.append(float(target[0, 0, 24, 24]))
    assert all(a < b for a, b in zip(values, values[1:])), values
    # a change of at most tol (1 grey level) is no anomaly at all
    before, after, region = square_change(1)
    assert not nsa_intensity_target(before, after, region).any()


@pytest.mark.parametrize("k,x0", [(1 / 6, 20.0), (1 / 3, 7.0), (1 / 12, 24.0)])
def test_label_equals_the_reference_pipeline_on_random_changes(k, x0):
    """Speckled changes, two overlapping rectangles: the 5 x 5 de-speckling, the disk median and the logistic
    agree with the reference's cv2 / skimage steps pixel for pixel (inside the region, where ours is defined)."""
    g = torch.Generator().manual_seed(0)
    before = torch.randint(0, 256, (2, 3, 40, 56), generator=g, dtype=torch.uint8)
    region = torch.zeros(2, 1, 40, 56, dtype=torch.bool)
    region[0, :, 5:25, 8:40] = True
    region[0, :, 15:35, 30:50] = True
    region[1, :, 2:38, 3:20] = True
    noise = torch.randint(-60, 61, before.shape, generator=g) * (torch.rand(before.shape, generator=g) < 0.8)
    after = torch.where(region, (before.int() + noise).clamp(0, 255), before.int()).to(torch.uint8)
    ours = nsa_intensity_target(before, after, region, (k, x0))
    for i in range(2):
        ref = reference_label(hwc(before[i]), hwc(after[i]), region[i, 0].numpy(), k, x0)
        ref = torch.from_numpy(ref).float() * region[i, 0]
        torch.testing.assert_close(ours[i, 0], ref, atol=1e-5, rtol=0)


def test_operator_target_is_the_reference_label_of_its_own_output():
    images = make_images(batch=4, height=64, width=64, dtype=torch.uint8, seed=3)
    op = NSA(intensity_logistic=(1 / 3, 7.0))
    out = op(images, seed=5)
    assert out.mask.any()
    for i in range(4):
        ref = reference_label(hwc(images[i]), hwc(out.image[i]), out.mask[i, 0].numpy(), 1 / 3, 7.0)
        torch.testing.assert_close(out.target[i, 0], torch.from_numpy(ref).float() * out.mask[i, 0], atol=1e-5,
                                   rtol=0)


# -- sampling ---------------------------------------------------------------------------------------------
def test_patch_count_is_one_plus_binomial():
    """The first patch always, each further one on a coin flip: 1 + Binomial(max_patches - 1, 1/2)."""
    params = NSA(max_patches=4).sample_params(8000, 3, 256, 256, torch.Generator().manual_seed(0))
    assert params["patch_on"][:, 0].all()
    counts = torch.bincount(params["patch_on"].sum(1), minlength=5)[1:].double() / 8000
    expected = torch.tensor([1, 3, 3, 1], dtype=torch.float64) / 8
    assert (counts - expected).abs().max() < 0.02, counts
    assert not NSA(max_patches=3, extra_patch_prob=0.0).sample_params(
        50, 3, 64, 64, torch.Generator().manual_seed(0))["patch_on"][:, 1:].any()


def test_sizes_follow_the_reference_arithmetic():
    """Half sides 0.03 + Gamma(2, 0.05) of the side in [8, 102] px at 256 px; resize factor clip(N(1, 0.5),
    0.7, 1.3); pasted sides recomputed exactly by the reference's clip / int() sequence; box 1 px clear."""
    op = NSA()
    g = torch.Generator().manual_seed(1)
    half, lo, hi = op._half_sides(20000, 256, op.half_height_frac_range, g)
    assert (lo, hi) == (8, 102)  # round(0.03 * 256), round(0.4 * 256)
    assert int(half.min()) >= 8 and int(half.max()) <= 102
    # E[0.03 + Gamma(2, 0.05)] = 0.13 of the side; int() truncation takes half a pixel on average
    assert abs(float(half.double().mean()) - (0.13 * 256 - 0.5)) < 0.5

    params = op.sample_params(3000, 3, 256, 256, torch.Generator().manual_seed(2))
    scale = params["scale"]
    assert float(scale.min()) >= 0.7 and float(scale.max()) <= 1.3
    clipped = ((scale == 0.7) | (scale == 1.3)).double().mean()
    assert abs(float(clipped) - 2 * 0.2743) < 0.02  # P(|N(0, 0.5)| > 0.3)
    h, w = params["height_px"], params["width_px"]
    src_h, src_w = params["src_height_px"], params["src_width_px"]
    for b in range(0, 3000, 7):
        for k in range(3):
            s, ch, cw = float(scale[b, k]), int(src_h[b, k]), int(src_w[b, k])
            new_h = float(np.clip(s * ch, 8, 102))
            new_w = int(np.clip(int(new_h / ch * cw), 8, 102))
            new_h = int(np.clip(int(new_w / cw * ch), 8, 102))
            assert (int(h[b, k]), int(w[b, k])) == (new_h, new_w)
    assert int(h.max()) <= 102 and int(h.min()) >= 8
    top = params["top"]
    assert int(top.min()) >= 1 and bool((top <= 256 - 2 * (h // 2) - 2).all())
    assert bool((params["src_top"] + src_h <= 256).all()) and int(src_h.max()) <= 2 * 102
    partner = params["partner"]
    assert not (partner == torch.arange(3000)).any()


def test_blended_pixels_are_the_box_less_its_rim_and_small_patches_are_dropped():
    images = make_images(batch=3, height=64, width=64, dtype=torch.uint8)
    op = NSA(max_patches=1, soft_labels=False)
    params = op.sample_params(3, 3, 64, 64, torch.Generator().manual_seed(0))
    params["height_px"][:] = torch.tensor([[20], [9], [12]])
    params["width_px"][:] = torch.tensor([[14], [8], [9]])  # (9-2)(8-2) = 42 < 50: dropped; (12-2)(9-2) = 70
    params["top"][:], params["left"][:] = 5, 7
    out = op(images, params=params)
    for i, (h, w) in enumerate([(20, 14), (9, 8), (12, 9)]):
        expected = torch.zeros(64, 64, dtype=torch.bool)
        if i != 1:
            expected[5 + RIM_PX:5 + h - RIM_PX, 7 + RIM_PX:7 + w - RIM_PX] = True
        assert torch.equal(out.mask[i, 0], expected)
    assert out.label.tolist() == [1, 0, 1] and out.box_index.tolist() == [0, 2]
    assert out.boxes[0].tolist() == [7 + RIM_PX, 5 + RIM_PX, 7 + 14 - RIM_PX, 5 + 20 - RIM_PX]


def test_several_patches_one_box_each():
    images = make_images(batch=6, height=96, width=96, seed=4)
    out = NSA(max_patches=4)(images, seed=0)
    drawn = out.params["patch_on"].sum(1)
    per_sample = torch.bincount(out.box_index, minlength=6)
    assert bool((per_sample <= drawn).all()) and int(per_sample.max()) > 1
    assert out.box_label.eq(1).all()


# -- the contract with a target -------------------------------------------------------------------------------
def test_target_replays_and_soft_labels_off():
    images = make_images(batch=5)
    op = NSA()
    out = op(images, seed=3)
    assert out.target is not None and out.target.dtype == torch.float32
    assert not out.target[~out.mask].any() and float(out.target.max()) <= 1 and float(out.target.max()) > 0
    again = op(images, params=out.params)
    assert torch.equal(again.target, out.target) and torch.equal(again.image, out.image)
    plain = NSA(soft_labels=False)(images, params=out.params)
    assert plain.target is None and torch.equal(plain.image, out.image)
    assert torch.equal(plain.soft_target(), out.mask.float())
    assert torch.equal(out.soft_target(), out.target)


def test_value_space_gives_the_unit_target():
    unit = make_images(batch=4)
    op = NSA()
    reference = op(unit, seed=1)
    spaced = op(unit * 2 - 1, seed=1, value_range=(-1, 1))
    torch.testing.assert_close(spaced.target, reference.target, atol=1e-4, rtol=0)


def test_one_of_carries_the_target():
    images = make_images(batch=8)
    nsa, cutpaste = NSA(), CutPaste()
    mixed = OneOf([nsa, cutpaste])
    out = mixed(images, seed=2)
    choice = out.params["choice"]
    assert set(choice.tolist()) == {0, 1}
    assert out.target is not None
    for i in torch.nonzero(choice == 1).flatten().tolist():  # a branch without grades: its mask as 1.0
        assert torch.equal(out.target[i], out.mask[i].float())
    alone = nsa(images, params=out.params["branches"][0])  # NSA paints first, on the untouched batch
    for i in torch.nonzero(choice == 0).flatten().tolist():
        assert torch.equal(out.target[i], alone.target[i]) and torch.equal(out.image[i], alone.image[i])
    assert torch.equal(mixed(images, params=out.params).target, out.target)
    # no graded branch, no target: nothing changes for the other operators
    assert create_op("cutpaste_3way")(images, seed=0).target is None
    assert create_op({"op": "one_of", "ops": ["nsa", "cutpaste"]})(images, seed=0).target is not None


def test_dataset_items_and_collate_carry_the_target():
    images = make_images(batch=3, height=40, width=40, dtype=torch.uint8)
    data = DefectDataset(images, NSA(), seed=0)
    items = [data[i] for i in range(3)]
    assert all(item.target is not None and item.target.shape == (1, 40, 40) for item in items)
    batch = collate(items)
    assert isinstance(batch, DefectBatch) and batch.target.shape == (3, 1, 40, 40)
    assert collate([DefectDataset(images, "cutout", seed=0)[0]]).target is None


# -- presets and validation ----------------------------------------------------------------------------------
def test_mvtec_presets_are_the_reference_tables():
    screw = NSA.mvtec("screw")
    assert screw.max_patches == 4 and screw.intensity_logistic == (1.0, 3.0)
    assert screw.half_height_frac_range == (0.03, 0.12) and screw.half_width_frac_range == (0.03, 0.12)
    capsule = NSA.mvtec("capsule")
    assert capsule.half_height_frac_range == (0.03, 0.15) and capsule.intensity_logistic == (0.5, 4.0)
    bottle = NSA.mvtec("bottle")
    assert bottle.max_patches == 3 and bottle.intensity_logistic == (1 / 12, 24.0) and bottle.mode == "normal"
    assert bottle.scale_range == (0.7, 1.3)
    wood = NSA.mvtec("wood", p=0.5)
    assert wood.max_patches == 4 and wood.scale_range == (0.5, 2.0) and wood.mode == "mixed" and wood.p == 0.5
    assert len(MVTEC_SETTINGS) == 15
    assert create_op(bottle.to_config()).to_config() == bottle.to_config()
    with pytest.raises(ValueError, match="category"):
        NSA.mvtec("bottles")


def test_bad_arguments_and_images():
    with pytest.raises(ValueError, match="max_patches"):
        NSA(max_patches=0)
    with pytest.raises(TypeError, match="half_side_gamma"):
        NSA(half_side_gamma=(2, 0.05))
    with pytest.raises(TypeError, match="shape"):
        NSA(half_side_gamma=(2.5, 0.05, 0.03))
    with pytest.raises(ValueError, match="k"):
        NSA(intensity_logistic=(0.0, 20))
    with pytest.raises(ValueError, match="mode"):
        NSA(mode="seamless")
    with pytest.raises(TypeError, match="soft_labels"):
        NSA(soft_labels="yes")
    with pytest.raises(ValueError, match="at least 7x7"):
        NSA()(make_images(batch=2, height=6, width=30), seed=0)
    out = NSA()(make_images(batch=2, height=48, width=64), seed=0)
    with pytest.raises(ValueError, match="do not fit"):
        NSA()(make_images(batch=2, height=24, width=24), params=out.params)
