"""The published Perlin recipes ``draem``, ``glass`` and ``memseg`` against their reference code, statistically.

Every number below is the reference's; each test says where it comes from. References (read for this file):
DRAEM  github.com/VitjanZ/DRAEM       data_loader.py   MVTecDRAEMTrainDataset.augment_image / randAugmenter
GLASS  github.com/cqylunlun/GLASS     perlin.py        perlin_mask / generate_thr
                                      datasets/mvtec.py MVTecDataset.__getitem__ / rand_augmenter; main.py defaults
MemSeg github.com/TooTouch/MemSeg     data/dataset.py  MemSegDataset.generate_anomaly / generate_perlin_noise_mask /
                                      anomaly_source / _structure_source / __getitem__; configs.yaml
Tolerances are about 4 standard errors of the sample statistic, so a correct implementation fails about once
in 10^4 runs (the seeds are fixed, so never in practice) and a wrong number fails every time.
"""
import math

import numpy as np
import pytest
import torch

from defectgen import RegionDefect, create_op, draem, glass, memseg
from defectgen.masks import PerlinMask, PerlinPairMask
from defectgen.masks.perlin import perlin_noise
from defectgen.sources import DraemAugment, EitherSource, GlassAugment, SelfShuffle, TextureSource
from defectgen.sources.draem_augment import OPS as DRAEM_OPS
from defectgen.sources.glass_augment import OPS as GLASS_OPS

from conftest import make_images

N = 2000
BANK = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def draw(op, n=N, size=256, seed=0):
    return op.sample_params(n, 3, size, size, torch.Generator().manual_seed(seed))


def check_exponents_0_to_5(scale, n_draws):
    """``scale`` holds 2^k with k uniform in 0..5 (``torch.randint(0, 6)`` / ``np.random.randint(0, 6)``)."""
    exponent = torch.log2(scale.double()).round().long().flatten()
    counts = torch.bincount(exponent, minlength=6)
    assert counts.numel() == 6, f"exponents beyond 5: {counts.tolist()}"
    freq = counts.double() / exponent.numel()
    se = math.sqrt(1 / 6 * 5 / 6 / n_draws)
    assert (freq - 1 / 6).abs().max() < 4 * se + 1e-3, f"exponents not uniform in 0..5: {freq.tolist()}"


def check_angle_pm90(angle):
    """``iaa.Affine(rotate=(-90, 90))``: uniform in [-90, 90]."""
    angle = angle.double().flatten()
    assert -90 <= angle.min() < -89 and 89 < angle.max() <= 90
    se = 90 / math.sqrt(3) / math.sqrt(angle.numel())
    assert abs(float(angle.mean())) < 4 * se
    # half of a uniform on [-90, 90] lies within +-45
    assert abs(float((angle.abs() < 45).double().mean()) - 0.5) < 4 * math.sqrt(0.25 / angle.numel())


def check_slots_uniform(slots, n_ops, count=3):
    """``np.random.choice(n_ops, 3, replace=False)``, run in that order: distinct ops, each op in each slot with
    probability 1 / n_ops (a fixed order would put the first-listed op in slot 0 whenever it is picked)."""
    n = slots.shape[0]
    assert slots.shape == (n, count)
    assert (slots.sort(1).values.diff(dim=1) > 0).all(), "an op picked twice"
    picked = torch.zeros(n, n_ops).scatter_(1, slots, 1.0).mean(0)
    assert (picked - count / n_ops).abs().max() < 4 * math.sqrt(count / n_ops * (1 - count / n_ops) / n)
    for slot in range(count):
        freq = torch.bincount(slots[:, slot], minlength=n_ops).double() / n
        assert (freq - 1 / n_ops).abs().max() < 4 * math.sqrt(1 / n_ops * (1 - 1 / n_ops) / n) + 1e-3


# -- DRAEM ------------------------------------------------------------------------------------------------------
def test_draem_is_the_reference_recipe():
    op = draem(textures=BANK)
    assert isinstance(op, RegionDefect) and type(op.mask) is PerlinMask
    # data_loader.py augment_image: perlin_scale = 6, min_perlin_scale = 0, threshold = 0.5, rot (-90, 90)
    assert op.mask.scale_exp_range == (0, 5) and op.mask.threshold == 0.5
    assert op.mask.angle_deg_range == (-90.0, 90.0)
    # iaa.Affine's rotation fills with zeros (cval=0) where the rotated noise image does not reach: no blob there
    assert op.mask.fill_corners is False
    # randAugmenter: 3 of the 10 augmenters, drawn without replacement, in the drawn order
    assert isinstance(op.source, DraemAugment) and op.source.ops == DRAEM_OPS and len(DRAEM_OPS) == 10
    assert op.source.count == 3 and op.source.random_order
    # the texture is cv2.resize'd and used as is: no flips
    assert isinstance(op.source.source, TextureSource) and op.source.source.flip is False
    # beta = torch.rand(1) * 0.8, texture weight 1 - beta; no_anomaly > 0.5 -> normal
    assert op.blend.opacity_range == (0.2, 1.0) and op.blend.opacity_std is None and op.p == 0.5
    assert isinstance(draem().source.source, SelfShuffle)  # no textures: the documented self-shuffled fill
    assert create_op("draem").to_config() == draem().to_config()


def test_draem_scales_angles_opacity_and_normal_half():
    params = draw(draem())
    check_exponents_0_to_5(params["perlin_scale"], N)
    # rows and columns draw their exponents independently (two torch.randint calls): equal 1/6 of the time
    same = float((params["perlin_scale"][:, 0] == params["perlin_scale"][:, 1]).double().mean())
    assert abs(same - 1 / 6) < 4 * math.sqrt(1 / 6 * 5 / 6 / N)
    check_angle_pm90(params["angle_deg"])
    # augment_image: beta = torch.rand(1).numpy()[0] * 0.8, so beta ~ U[0, 0.8) and opacity = 1 - beta
    beta = 1 - params["opacity"].double()
    assert beta.min() >= -1e-7 and beta.max() < 0.8
    assert abs(float(beta.mean()) - 0.4) < 4 * 0.8 / math.sqrt(12 * N)
    hist = torch.histc(beta.float(), bins=8, min=0.0, max=0.8)
    assert hist.min() > N / 8 * 0.75, "beta is not uniform on [0, 0.8)"
    # augment_image: no_anomaly = torch.rand(1); no_anomaly > 0.5 returns the image unchanged
    assert abs(float(params["applied"].double().mean()) - 0.5) < 4 * math.sqrt(0.25 / N)


def test_draem_rotates_the_image_sized_noise_with_zeros_outside():
    # augment_image: perlin_noise = self.rot(image=perlin_noise), iaa.Affine(rotate=(-90, 90)), bilinear, cval=0:
    # the noise image rotated about its centre, 0 where it does not reach, then thresholded
    size, n = 48, 64
    mask = draem().mask
    params = mask.sample(n, size, size, torch.Generator().manual_seed(4))
    flat = perlin_noise(params["perlin_scale"], torch.zeros(n), params["gradient_angle"], size, size)
    theta = torch.deg2rad(params["angle_deg"]).view(n, 1, 1)
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    grid = torch.stack([theta.cos() * x + theta.sin() * y, -theta.sin() * x + theta.cos() * y], dim=-1)
    rotated = torch.nn.functional.grid_sample(flat.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros",
                                              align_corners=True)
    expected = rotated > 0.5
    drawn = mask.draw(params, size, size, "cpu").bool()
    assert float((drawn != expected).double().mean()) < 1e-4  # a pixel may sit on the threshold
    # the corner pixels lie outside the rotated noise image unless the angle is near 0 or +-90 degrees
    tilted = (params["angle_deg"].abs() - 45).abs() < 35
    assert int(tilted.sum()) > 20
    assert not drawn[tilted][:, 0, [0, 0, -1, -1], [0, -1, 0, -1]].any()
    # the general PerlinMask's larger canvas does reach them; the unrotated noise is the same either way
    fill = PerlinMask(fill_corners=True)
    assert fill.draw(params, size, size, "cpu")[tilted][:, 0, [0, 0, -1, -1], [0, -1, 0, -1]].any()
    flat_params = {**params, "angle_deg": torch.zeros(n)}
    assert torch.equal(mask.draw(flat_params, size, size, "cpu"), fill.draw(flat_params, size, size, "cpu"))


def test_draem_augments_three_of_ten_in_random_order():
    source = draem(textures=BANK).source
    params = source.sample(N, 3, 32, 32, {}, torch.Generator().manual_seed(1))
    check_slots_uniform(source.slots(params), 10)
    # the slots are the order the ops really run in: gamma then invert differs from invert then gamma
    two = DraemAugment(None, ops=["gamma", "invert"], count=2, random_order=True)
    images = make_images(batch=64, height=8, width=8, seed=3)
    params = two.sample(64, 3, 8, 8, {}, torch.Generator().manual_seed(2))
    out = two.render_region(images, params, None)
    gamma = params["aug_gamma"].view(64, 3, 1, 1)
    gamma_first, invert_first = 1 - images ** gamma, (1 - images) ** gamma
    first = two.slots(params)[:, 0]  # 0 = gamma, 1 = invert (the table's order)
    expected = torch.where((first == 0).view(64, 1, 1, 1), gamma_first, invert_first)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    assert 0 < int((first == 0).sum()) < 64, "both orders must occur"


def test_draem_leaves_half_the_batch_normal():
    images = make_images(batch=400, channels=1, height=48, width=48, dtype=torch.uint8)
    out = draem()(images, seed=0)
    defective = float((out.label > 0).double().mean())
    # half applied (no_anomaly > 0.5), minus the few empty masks DRAEM also labels normal (has_anomaly = 0)
    assert 0.40 < defective < 0.54
    assert torch.equal(out.label > 0, out.mask.flatten(1).any(1))


# -- GLASS ------------------------------------------------------------------------------------------------------
def test_glass_is_the_reference_recipe():
    op = glass(textures=BANK)
    assert isinstance(op, RegionDefect) and isinstance(op.mask, PerlinPairMask)
    # datasets/mvtec.py: perlin_mask(image.shape, imgsize // 8, 0, 6, mask_fg, 1) -> generate_thr(min=0, max=6):
    # 2 ** np.random.randint(0, 6) cells per axis, threshold = 0.5, iaa.Affine(rotate=(-90, 90))
    assert op.mask.scale_exp_range == (0, 5) and op.mask.threshold == 0.5
    assert op.mask.angle_deg_range == (-90.0, 90.0)
    # perlin.py perlin_mask: temp > 2/3 union, temp > 1/3 intersection, else the first mask
    assert op.mask.union_prob == pytest.approx(1 / 3) and op.mask.intersection_prob == pytest.approx(1 / 3)
    # rand_augmenter: 3 of 9 torchvision transforms, np.random.choice(9, 3, replace=False), in that order
    assert isinstance(op.source, GlassAugment) and op.source.ops == GLASS_OPS and len(GLASS_OPS) == 9
    assert op.source.count == 3
    assert isinstance(op.source.source, TextureSource) and op.source.source.flip is False
    # __getitem__: beta = np.clip(np.random.normal(mean, std), .2, .8), main.py --mean 0.5 --std 0.1
    assert op.blend.opacity_range == (0.2, 0.8) and op.blend.opacity_mean == 0.5 and op.blend.opacity_std == 0.1
    assert op.p == 1.0  # every training image gets an augmented copy
    assert create_op(op.to_config()).to_config() == op.to_config()


def test_glass_combination_rule_scales_and_angles():
    n = 500  # x 8 tries x 2 masks
    params = draw(glass(), n=n)
    tries = n * 8
    combine = params["perlin_combine"]
    assert combine.shape == (n, 8)
    freq = torch.bincount(combine.flatten(), minlength=3).double() / tries
    # perlin.py perlin_mask: one torch.rand(1) splits at 1/3 and 2/3: each rule a third of the time
    assert (freq - 1 / 3).abs().max() < 4 * math.sqrt(2 / 9 / tries), freq.tolist()
    scale = params["perlin_scale"]
    assert scale.shape == (n, 8, 2, 2)
    check_exponents_0_to_5(scale, 4 * tries)
    # the two masks of a try are independent: their scales agree on an axis 1/6 of the time
    same = float((scale[:, :, 0] == scale[:, :, 1]).double().mean())
    assert abs(same - 1 / 6) < 4 * math.sqrt(1 / 6 * 5 / 6 / (2 * tries))
    check_angle_pm90(params["angle_deg"])


def test_glass_opacity_is_the_clipped_normal():
    opacity = draw(glass(), n=500, size=32, seed=1)["opacity"]
    opacity = torch.cat([opacity, glass().blend.sample(20000, torch.Generator().manual_seed(2))["opacity"]]).double()
    n = opacity.numel()
    # datasets/mvtec.py: beta = clip(N(0.5, 0.1), 0.2, 0.8); opacity = 1 - beta has the same law
    assert opacity.min() >= 0.2 - 1e-6 and opacity.max() <= 0.8 + 1e-6
    # clipped, not truncated: the tails beyond 3 sigma (2 x 0.135 %) sit on the bounds
    at_bounds = float(((opacity - 0.5).abs() > 0.3 - 1e-6).double().mean())
    assert abs(at_bounds - 0.0027) < 4 * math.sqrt(0.0027 / n)
    assert abs(float(opacity.mean()) - 0.5) < 4 * 0.1 / math.sqrt(n)
    assert abs(float(opacity.std()) - 0.1) < 0.005, "not a normal of std 0.1 (uniform on [0.2, 0.8] has 0.17)"
    within = float(((opacity - 0.5).abs() < 0.1).double().mean())
    assert abs(within - 0.6827) < 4 * math.sqrt(0.683 * 0.317 / n)  # one sigma of a normal


def joined_try(params, i, k, height, width):
    """Try ``k`` of sample ``i`` recomputed from its params, as perlin.py perlin_mask joins the two masks (its
    noise rotated DRAEM's way: zeros where the rotated noise does not reach)."""
    masks = perlin_noise(params["perlin_scale"][i, k], params["angle_deg"][i, k], params["gradient_angle"][i, k],
                         height, width, zero_outside=True) > 0.5
    rule = int(params["perlin_combine"][i, k])
    return [masks[0], masks[0] & masks[1], masks[0] | masks[1]][rule]


def test_glass_mask_is_the_first_non_empty_joined_try():
    images = make_images(batch=64, channels=1, height=40, width=56)
    out = glass()(images, seed=0)
    params = out.params
    redrawn = 0
    for i in range(64):
        k = 0
        while True:
            mask = joined_try(params, i, k, 40, 56)
            if mask.any() or k == 7:
                break
            k += 1
        redrawn += k > 0
        assert torch.equal(out.mask[i, 0], mask), f"sample {i}: not try {k}"
    # perlin.py perlin_mask: `while np.max(mask) == 0` redraws, so no sample is left without a defect
    assert (out.label > 0).all()
    assert redrawn > 0, "some first tries are empty (about 8 %): the redraw was not exercised"


def test_glass_redraws_inside_the_foreground():
    images = torch.zeros(200, 1, 48, 64)
    foreground = torch.zeros(200, 1, 48, 64, dtype=torch.bool)
    foreground[:, :, 18:30, 26:38] = True  # a small object: most tries miss it
    out = glass(foreground="given")(images, seed=0, foreground=foreground)
    assert not (out.mask & ~foreground).any()
    # perlin_mask multiplies by mask_fg before testing for emptiness, so the redraws aim at the object
    assert float(out.mask.flatten(1).any(1).double().mean()) > 0.97
    first_hits = sum(bool((joined_try(out.params, i, 0, 48, 64) & foreground[i, 0]).any()) for i in range(200))
    assert first_hits < 0.7 * 200, "the first try alone would leave many samples normal"


def test_glass_augment_parameters():
    source = glass(textures=BANK).source
    params = source.sample(N, 3, 32, 32, {}, torch.Generator().manual_seed(3))
    check_slots_uniform(source.slots(params), 9)
    # rand_augmenter: ColorJitter(contrast=(0.8, 1.2)), (brightness=(0.8, 1.2)), (saturation=(0.8, 1.2),
    # hue=(-0.2, 0.2)), RandomAffine(degrees=(-45, 45))
    for key, lo, hi in (("glass_contrast", 0.8, 1.2), ("glass_brightness", 0.8, 1.2), ("glass_saturation", 0.8, 1.2),
                        ("glass_hue", -0.2, 0.2), ("glass_rotate_deg", -45.0, 45.0)):
        values = params[key].double()
        span = hi - lo
        assert lo <= values.min() < lo + 0.01 * span and hi - 0.01 * span < values.max() <= hi, key
        assert abs(float(values.mean()) - (lo + hi) / 2) < 4 * span / math.sqrt(12 * N), key
    assert abs(float(params["glass_hue_first"].double().mean()) - 0.5) < 4 * math.sqrt(0.25 / N)


@pytest.mark.parametrize("name", GLASS_OPS)
def test_glass_augment_ops_match_torchvision(name):
    from PIL import Image
    import torchvision.transforms.functional as TF

    from defectgen.sources.glass_augment import _APPLY

    g = torch.Generator().manual_seed(4)
    images = (torch.rand(4, 3, 24, 40, generator=g) ** 2 * 200 + 20).round().to(torch.uint8)
    params = {k: v for k, v in GlassAugment("shuffle").sample(4, 3, 24, 40, {}, g).items() if k.startswith("glass_")}
    out = (_APPLY[name](images.float() / 255, params).clamp(0, 1) * 255).round().to(torch.uint8)
    for i in range(4):
        pil = Image.fromarray(images[i].permute(1, 2, 0).numpy())
        factor = {key[len("glass_"):]: float(v[i]) for key, v in params.items() if key != "glass_augment_key"}
        if name == "saturation_hue":  # ColorJitter applies its two in a random order
            if factor["hue_first"]:
                expected = TF.adjust_saturation(TF.adjust_hue(pil, factor["hue"]), factor["saturation"])
            else:
                expected = TF.adjust_hue(TF.adjust_saturation(pil, factor["saturation"]), factor["hue"])
        elif name == "rotate":
            expected = TF.rotate(pil, factor["rotate_deg"], interpolation=TF.InterpolationMode.BILINEAR)
        elif name == "grayscale":
            expected = TF.rgb_to_grayscale(pil, num_output_channels=3)
        else:
            call = {"contrast": lambda im: TF.adjust_contrast(im, factor["contrast"]),
                    "brightness": lambda im: TF.adjust_brightness(im, factor["brightness"]),
                    "hflip": TF.hflip, "vflip": TF.vflip, "autocontrast": TF.autocontrast, "equalize": TF.equalize}
            expected = call[name](pil)
        diff = np.abs(out[i].permute(1, 2, 0).numpy().astype(int) - np.asarray(expected).astype(int))
        if name in ("saturation_hue", "rotate"):
            # PIL's hue has 8 bits; the rotation here is bilinear with a sub-pixel different edge
            assert diff.mean() < 3, f"{name}: mean difference {diff.mean():.2f} levels"
        else:
            assert diff.max() <= 1, f"{name}: differs from torchvision by {diff.max()}"


# -- MemSeg -----------------------------------------------------------------------------------------------------
def test_memseg_is_the_reference_recipe():
    op = memseg(textures=BANK)
    assert isinstance(op, RegionDefect) and type(op.mask) is PerlinMask
    # configs.yaml: perlin_scale 6, min_perlin_scale 0 (torch.randint(0, 6)), perlin_noise_threshold 0.5;
    # dataset.py generate_perlin_noise_mask: iaa.Affine(rotate=(-90, 90))
    assert op.mask.scale_exp_range == (0, 5) and op.mask.threshold == 0.5
    assert op.mask.angle_deg_range == (-90.0, 90.0)
    # generate_anomaly: mask = perlin_noise_mask * target_foreground_mask (binarised grey image)
    assert op.foreground == "otsu"
    # configs.yaml transparency_range [0.15, 1.]: factor * source + (1 - factor) * image
    assert op.blend.opacity_range == (0.15, 1.0) and op.blend.opacity_std is None
    # __getitem__: anomaly_switch alternates, so every other training image is anomalous
    assert op.p == 0.5
    # anomaly_source: np.random.uniform() < 0.5 -> _texture_source (resized DTD, no augmentation), else
    # _structure_source: rand_augment (DRAEM's 3 of 10) on the image, then an 8 x 8 grid shuffled
    assert isinstance(op.source, EitherSource) and op.source.first_prob == 0.5
    texture, structure = op.source.first, op.source.second
    assert isinstance(texture, TextureSource) and texture.flip is False
    assert isinstance(structure, SelfShuffle) and structure.grid_range == (8, 8)
    assert isinstance(structure.source, DraemAugment) and structure.source.source is None
    assert structure.source.ops == DRAEM_OPS and structure.source.count == 3 and structure.source.random_order
    # no texture folder: anomaly_source takes the structure branch every time
    alone = memseg().source
    assert isinstance(alone, SelfShuffle) and alone.grid_range == (8, 8)
    assert create_op(op.to_config()).to_config() == op.to_config()


def test_memseg_params():
    params = draw(memseg(textures=BANK))
    check_exponents_0_to_5(params["perlin_scale"], 2 * N)
    check_angle_pm90(params["angle_deg"])
    opacity = params["opacity"].double()
    # factor = np.random.uniform(0.15, 1.0)
    assert opacity.min() >= 0.15 and opacity.max() <= 1.0
    assert abs(float(opacity.mean()) - 0.575) < 4 * 0.85 / math.sqrt(12 * N)
    hist = torch.histc(opacity.float(), bins=5, min=0.15, max=1.0)
    assert hist.min() > N / 5 * 0.8, "the factor is not uniform on [0.15, 1]"
    se = 4 * math.sqrt(0.25 / N)
    assert abs(float(params["either_first"].double().mean()) - 0.5) < se  # texture vs structure, 1/2 each
    assert abs(float(params["applied"].double().mean()) - 0.5) < se  # every other image
    assert (params["shuffle_grid"] == 8).all()


def test_memseg_structure_fill_is_the_augmented_image_block_shuffled():
    structure = memseg().source
    images = make_images(batch=8, height=64, width=64, seed=1)
    params = structure.sample(8, 3, 64, 64, {}, torch.Generator().manual_seed(0))
    fill = structure.render_region(images, params, None)
    # _structure_source: rand_augment first, then rearrange into (8 x 8) blocks and permute them
    augmented = structure.source.render_region(images, params, None)
    for i in range(8):
        blocks = [augmented[i, :, r:r + 8, c:c + 8] for r in range(0, 64, 8) for c in range(0, 64, 8)]
        used = []
        for r in range(0, 64, 8):
            for c in range(0, 64, 8):
                out_block = fill[i, :, r:r + 8, c:c + 8]
                used.append(next(k for k, block in enumerate(blocks) if torch.equal(block, out_block)))
        assert sorted(used) == list(range(64)), "not a permutation of the augmented image's 8 x 8 blocks"
    assert not torch.equal(augmented, images.float()), "the image was not augmented"


def test_memseg_texture_branch_is_the_plain_texture():
    images = make_images(batch=32, height=32, width=32, seed=2)
    op = create_op("memseg", textures=BANK, foreground=None, p=1.0)
    out = op(images, seed=0)
    textures = TextureSource(BANK).bank_for(3, 32, 32, torch.device("cpu")).float() / 255
    checked = 0
    for i in range(32):
        m = out.mask[i, 0]
        if not (bool(out.params["either_first"][i]) and m.any()):
            continue
        # _texture_source: cv2.resize of a DTD image, no augmentation and no flip; factor-weighted blend
        tex = textures[int(out.params["texture_index"][i])]
        expected = torch.lerp(images[i], tex, float(out.params["opacity"][i]))
        torch.testing.assert_close(out.image[i][:, m], expected[:, m], atol=1e-5, rtol=0)
        checked += 1
    assert checked >= 5


def test_memseg_defects_stay_on_the_object():
    images = torch.full((16, 3, 64, 64), 0.1)
    rows, cols = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    disc = (rows - 32) ** 2 + (cols - 32) ** 2 < 20 ** 2
    images[:, :, disc] = 0.8
    out = memseg(p=1.0)(images, seed=0)
    # generate_target_foreground_mask binarises the grey image; Otsu here splits the disc from the background
    assert out.mask.any() and not (out.mask[:, 0] & ~disc).any()


# -- the parts the presets added, and their errors ----------------------------------------------------------------
def test_pair_mask_rules_follow_the_probabilities():
    mask = PerlinPairMask(union_prob=0.0, intersection_prob=1.0, attempts=2)
    params = mask.sample(300, 32, 32, torch.Generator().manual_seed(0))
    assert (params["perlin_combine"] == 1).all()
    first_only = PerlinPairMask(union_prob=0.0, intersection_prob=0.0).sample(300, 32, 32,
                                                                              torch.Generator().manual_seed(0))
    assert (first_only["perlin_combine"] == 0).all()


def test_either_source_renders_each_sample_from_its_choice():
    first, second = TextureSource(BANK, flip=False), SelfShuffle(grid_range=(2, 2))
    source = EitherSource(first, second, first_prob=0.5)
    images = make_images(batch=12, height=16, width=16)
    params = source.sample(12, 3, 16, 16, {}, torch.Generator().manual_seed(0))
    fill = source.render_region(images, params, None)
    alone_first, alone_second = first.render_region(images, params, None), second.render_region(images, params, None)
    choice = params["either_first"].view(12, 1, 1, 1)
    assert 0 < int(params["either_first"].sum()) < 12
    assert torch.equal(fill, torch.where(choice, alone_first, alone_second))
    assert create_op({"op": "region", "mask": "perlin", "source": source.to_config(), "blend": "opacity"}) is not None


@pytest.mark.parametrize("build,error,match", [
    (lambda: PerlinPairMask(union_prob=0.7, intersection_prob=0.5), ValueError, "union_prob"),
    (lambda: PerlinPairMask(attempts=0), ValueError, "attempts"),
    (lambda: PerlinPairMask(union_prob=-0.1), ValueError, "union_prob"),
    (lambda: EitherSource(TextureSource(BANK), TextureSource(BANK)), ValueError, "different names"),
    (lambda: EitherSource("shuffle", "self_patch"), TypeError, "whole-image"),
    (lambda: EitherSource("shuffle", "other_image"), TypeError, "other samples"),
    (lambda: EitherSource("shuffle", "texture_nope"), ValueError, "unknown source"),
    (lambda: EitherSource(TextureSource(BANK), "shuffle", first_prob=1.5), ValueError, "first_prob"),
    (lambda: SelfShuffle(source="self_patch"), TypeError, "whole-image"),
    (lambda: SelfShuffle(source=SelfShuffle()), ValueError, "clash"),
    (lambda: TextureSource(BANK, flip=1), TypeError, "flip"),
    (lambda: DraemAugment(random_order="yes"), TypeError, "random_order"),
    (lambda: GlassAugment(ops=["contrast", "blur"]), ValueError, "ops"),
    (lambda: GlassAugment(ops=["contrast"], count=2), ValueError, "count"),
    (lambda: GlassAugment(source=None), TypeError, "source"),
])
def test_bad_part_arguments(build, error, match):
    with pytest.raises(error, match=match):
        op = build()
        op.sample(2, 3, 8, 8, {}, torch.Generator())  # a clash of nested params shows when sampling


@pytest.mark.parametrize("kwargs,error,match", [
    ({"opacity_mean": 0.5}, ValueError, "opacity_std"),
    ({"opacity_std": -0.1}, ValueError, "opacity_std"),
    ({"opacity_std": 0.1, "opacity_mean": 1.5}, ValueError, "opacity_mean"),
])
def test_bad_opacity_arguments(kwargs, error, match):
    from defectgen.blends.opacity import Opacity

    with pytest.raises(error, match=match):
        Opacity(**kwargs)


@pytest.mark.parametrize("name", ["draem", "glass", "memseg"])
def test_presets_reject_bad_arguments(name):
    with pytest.raises(TypeError, match=f"op '{name}'"):
        create_op(name, threshold=0.3)  # a preset's numbers are changed on its parts, not by keyword
    with pytest.raises(ValueError, match="p"):
        create_op(name, p=1.5)
    with pytest.raises(ValueError, match="textures"):
        create_op(name, textures=torch.rand(2, 4, 8, 8))
