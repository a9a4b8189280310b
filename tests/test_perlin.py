"""PerlinDefect (DRAEM): published defaults, the noise itself against NumPy, the fills, errors, benchmark smoke."""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from defectgen import PerlinDefect, RegionDefect, create_op
from defectgen.masks import PerlinMask
from defectgen.masks.perlin import perlin_noise
from defectgen.sources import DraemAugment, SelfShuffle, TextureSource

from conftest import make_images

N = 2000


def draw(op, size=256, n=N, seed=0):
    return op.sample_params(n, 3, size, size, torch.Generator().manual_seed(seed))


# -- published defaults ---------------------------------------------------------------------------------
def test_defaults_are_draems():
    op = PerlinDefect()
    assert op.threshold == 0.5 and op.scale_exp_range == (0, 5) and op.angle_deg_range == (-90.0, 90.0)
    assert op.opacity_range == (0.2, 1.0) and op.p == 1.0 and op.augment is True and op.textures is None
    assert isinstance(op, RegionDefect) and op.mask.instances == "components"


def test_scales_are_powers_of_two_per_axis():
    scale = draw(PerlinDefect())["perlin_scale"]
    assert scale.shape == (N, 2) and scale.dtype == torch.long
    for axis in range(2):
        values, counts = scale[:, axis].unique(return_counts=True)
        assert values.tolist() == [1, 2, 4, 8, 16, 32]
        assert counts.min() > N / 6 * 0.8, "exponents are not uniform in 0..5"
    # independent per axis: the two exponents agree about 1/6 of the time, not always
    assert abs(float((scale[:, 0] == scale[:, 1]).double().mean()) - 1 / 6) < 0.04


def test_angle_and_opacity_distributions():
    params = draw(PerlinDefect())
    angle = params["angle_deg"]
    assert -90 <= angle.min() < -89 and 89 < angle.max() <= 90 and abs(float(angle.mean())) < 3
    # opacity = 1 - beta with DRAEM's beta ~ U[0, 0.8): uniform on (0.2, 1]
    beta = 1 - params["opacity"].double()
    assert beta.min() >= 0 and beta.max() < 0.8
    hist = torch.histc(beta.float(), bins=8, min=0.0, max=0.8)
    assert hist.min() > N / 8 * 0.8 and abs(float(beta.mean()) - 0.4) < 0.02


def test_mask_is_noise_above_threshold():
    images = torch.zeros(16, 1, 64, 80)
    for threshold in (0.5, 0.2):
        out = PerlinDefect(threshold=threshold)(images, seed=0)
        p = out.params
        noise = perlin_noise(p["perlin_scale"], p["angle_deg"], p["gradient_angle"], 64, 80)
        assert torch.equal(out.mask[:, 0], noise > threshold)


def test_threshold_half_gives_sparse_blobs_and_some_normal_samples():
    images = torch.zeros(200, 1, 128, 128, dtype=torch.uint8)
    out = PerlinDefect(seed=0)(images)
    area = out.mask.flatten(1).double().mean(1)
    empty = area == 0
    assert 0.01 < float(empty.double().mean()) < 0.5, "DRAEM's threshold leaves some masks empty"
    assert torch.equal(out.label == 0, empty)
    assert 0.01 < float(area[~empty].mean()) < 0.3
    # several blobs per image are common: one box per connected component
    assert len(out.boxes) > int((~empty).sum())


def test_p_half_leaves_half_normal_like_draem():
    params = draw(PerlinDefect(p=0.5))
    assert abs(float(params["applied"].double().mean()) - 0.5) < 0.04


# -- the noise ------------------------------------------------------------------------------------------
def numpy_perlin(shape, res, angles):
    """Straightforward Perlin noise (DRAEM's convention) on the unrotated pixel grid, in float64."""
    h, w = shape
    u = np.arange(h)[:, None] * (res[0] / h) + np.zeros((1, w))
    v = np.arange(w)[None, :] * (res[1] / w) + np.zeros((h, 1))
    r, c = np.floor(u).astype(int), np.floor(v).astype(int)
    fu, fv = u - r, v - c

    def dot(dr, dc):
        a = angles[r + dr, c + dc]
        return np.cos(a) * (fu - dr) + np.sin(a) * (fv - dc)

    def fade(t):
        return 6 * t ** 5 - 15 * t ** 4 + 10 * t ** 3

    def lerp(a, b, t):
        return a + t * (b - a)

    return math.sqrt(2) * lerp(lerp(dot(0, 0), dot(1, 0), fade(fu)), lerp(dot(0, 1), dot(1, 1), fade(fu)), fade(fv))


@pytest.mark.parametrize("shape", [(256, 256), (48, 64), (50, 70)])
def test_noise_matches_numpy_for_the_same_gradients(shape):
    h, w = shape
    params = PerlinMask().sample(12, h, w, torch.Generator().manual_seed(1))
    zero = torch.zeros(12)
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 2e-5)):
        noise = perlin_noise(params["perlin_scale"], zero, params["gradient_angle"], h, w, dtype=dtype)
        for i in range(12):
            res = params["perlin_scale"][i].tolist()
            expected = numpy_perlin((h, w), res, params["gradient_angle"][i].double().numpy())
            np.testing.assert_allclose(noise[i].double().numpy(), expected, atol=tol, rtol=0)


def test_noise_range_zero_at_lattice_points_and_mean():
    params = PerlinMask().sample(256, 128, 128, torch.Generator().manual_seed(2))
    noise = perlin_noise(params["perlin_scale"], params["angle_deg"], params["gradient_angle"], 128, 128)
    # |noise| <= sqrt(2) * sqrt(1/2) = 1 (unit gradients, fade weights summing to one)
    assert noise.abs().max() <= 1.0 + 1e-5 and noise.abs().max() > 0.8
    assert abs(float(noise.mean())) < 0.02 and 0.15 < float(noise.std()) < 0.45
    flat = perlin_noise(params["perlin_scale"], torch.zeros(256), params["gradient_angle"], 128, 128)
    for i in range(0, 256, 17):
        sy, sx = params["perlin_scale"][i].tolist()
        lattice = flat[i, ::128 // sy, ::128 // sx]
        assert lattice.abs().max() < 1e-5, "Perlin noise must vanish at the lattice points"


def test_rotation_turns_the_pattern_and_fills_the_corners():
    params = PerlinMask().sample(8, 64, 64, torch.Generator().manual_seed(3))
    scale, grads = params["perlin_scale"], params["gradient_angle"]
    flat = perlin_noise(scale, torch.zeros(8), grads, 64, 64)
    quarter = perlin_noise(scale, torch.full((8,), 90.0), grads, 64, 64)
    # a quarter turn of a square image maps pixels onto pixels: the same noise, turned
    turned = [torch.rot90(flat[i], k, dims=(0, 1)) for i in range(8) for k in (1, -1)]
    for i in range(8):
        assert min(float((quarter[i] - t).abs().max()) for t in turned[2 * i:2 * i + 2]) < 1e-4
    # at 45 degrees DRAEM's rotated noise image has empty (zero) corners; here the pattern continues
    diagonal = perlin_noise(scale, torch.full((8,), 45.0), grads, 64, 64)
    assert (diagonal[:, :4, :4].abs().flatten(1).amax(1) > 0).all()


def test_noise_on_device_follows_the_gradients_device():
    params = PerlinMask().sample(2, 32, 32, torch.Generator().manual_seed(0))
    noise = perlin_noise(params["perlin_scale"], params["angle_deg"], params["gradient_angle"], 32, 32)
    assert noise.shape == (2, 32, 32) and noise.dtype == torch.float32


# -- the fills ------------------------------------------------------------------------------------------
def test_shuffle_is_a_permutation_of_blocks():
    images = make_images(batch=12, channels=3, height=48, width=64, dtype=torch.uint8, seed=5)
    source = SelfShuffle(grid_range=(2, 4))
    params = source.sample(12, 3, 48, 64, {}, torch.Generator().manual_seed(0))
    params["shuffle_grid"] = torch.tensor([[2, 2], [4, 4], [3, 2], [2, 4]] * 3)  # 48 and 64 are multiples
    fill = source.render_region(images, params, None)
    assert fill.dtype == torch.float32 and fill.shape == images.shape
    for i in range(12):
        rows, cols = params["shuffle_grid"][i].tolist()
        bh, bw = 48 // rows, 64 // cols
        # the same multiset of pixels ...
        assert torch.equal(fill[i].flatten(1).sort(1).values, images[i].float().flatten(1).sort(1).values)
        # ... made of whole blocks of the input, each used once
        blocks = [images[i, :, r * bh:(r + 1) * bh, c * bw:(c + 1) * bw].float()
                  for r in range(rows) for c in range(cols)]
        used = []
        for r in range(rows):
            for c in range(cols):
                out_block = fill[i, :, r * bh:(r + 1) * bh, c * bw:(c + 1) * bw]
                used.append(next(k for k, block in enumerate(blocks) if torch.equal(block, out_block)))
        assert sorted(used) == list(range(rows * cols))
    assert not torch.equal(fill, images.float()), "nothing moved"


def test_shuffle_with_uneven_blocks_only_copies_image_pixels():
    images = torch.arange(37 * 53, dtype=torch.float32).view(1, 1, 37, 53).expand(6, 1, 37, 53)
    source = SelfShuffle()
    params = source.sample(6, 1, 37, 53, {}, torch.Generator().manual_seed(1))
    fill = source.render_region(images, params, None)
    assert ((fill >= 0) & (fill < 37 * 53)).all() and torch.equal(fill, fill.round())
    # almost a permutation: blocks differ in size by one pixel at most
    for i in range(6):
        assert fill[i].unique().numel() > 0.9 * 37 * 53


def test_texture_bank_fill_and_config_round_trip():
    bank = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    op = PerlinDefect(textures=bank, augment=False, seed=0)
    assert isinstance(op.source, TextureSource)
    images = make_images(batch=6, height=48, width=64)
    out = op(images)
    again = create_op(op.to_config())(images, seed=0)
    assert torch.equal(op(images, seed=0).image, again.image)
    # inside the mask the image moved toward a texture; with full opacity it is the texture
    full = PerlinDefect(textures=bank, augment=False, opacity_range=(1.0, 1.0))(images, seed=1)
    textures = TextureSource(bank).bank_for(3, 48, 64, torch.device("cpu")).float() / 255
    for i in range(6):
        m = full.mask[i, 0]
        if m.any():
            k = int(full.params["texture_index"][i])
            candidates = [textures[k], textures[k].flip(-1), textures[k].flip(-2), textures[k].flip(-1).flip(-2)]
            assert any(torch.allclose(full.image[i][:, m], t[:, m], atol=1e-6) for t in candidates)
    assert out.mask.any()


def test_foreground_clips_the_blobs():
    images = make_images(batch=8, height=48, width=64)
    foreground = torch.zeros(8, 1, 48, 64, dtype=torch.bool)
    foreground[:, :, 10:40, 20:50] = True
    op = PerlinDefect(foreground="given", threshold=0.2)
    out = op(images, seed=0, foreground=foreground)
    assert out.mask.any() and not (out.mask & ~foreground).any()
    boxes = out.boxes
    assert (boxes[:, 0] >= 20).all() and (boxes[:, 2] <= 50).all() and (boxes[:, 1] >= 10).all()
    replay = op(images, params=out.params)
    assert torch.equal(replay.image, out.image)


def test_augment_picks_three_distinct_ops_per_sample():
    source = DraemAugment("shuffle")
    params = source.sample(500, 3, 32, 32, {}, torch.Generator().manual_seed(0))
    chosen = source.chosen(params)
    assert chosen.shape == (500, 10) and (chosen.sum(1) == 3).all()
    assert (chosen.double().mean(0) - 0.3).abs().max() < 0.08, "every op should be picked about 3 times in 10"


@pytest.mark.parametrize("name", ["invert", "posterize", "equalize", "autocontrast", "solarize"])
def test_augment_ops_match_pil(name):
    from PIL import Image, ImageOps

    from defectgen.sources.draem_augment import _APPLY

    g = torch.Generator().manual_seed(4)
    images = (torch.rand(4, 3, 24, 40, generator=g) ** 2 * 200 + 20).round().to(torch.uint8)
    params = DraemAugment("shuffle").sample(4, 3, 24, 40, {}, g)
    params = {k: v for k, v in params.items() if k.startswith("aug_")}
    params["aug_solarize"] = torch.ones(4, dtype=torch.bool)
    out = (_APPLY[name](images.float() / 255, params) * 255).round().to(torch.uint8)
    for i in range(4):
        pil = Image.fromarray(images[i].permute(1, 2, 0).numpy())
        if name == "invert":
            expected = ImageOps.invert(pil)
        elif name == "posterize":
            expected = ImageOps.posterize(pil, int(params["aug_posterize_bits"][i]))
        elif name == "equalize":
            expected = ImageOps.equalize(pil)
        elif name == "autocontrast":
            expected = ImageOps.autocontrast(pil, cutoff=int(params["aug_autocontrast_cutoff"][i]))
        else:
            threshold = float(params["aug_solarize_threshold"][i]) * 255
            expected = Image.fromarray(np.where(np.asarray(pil) >= threshold, 255 - np.asarray(pil), np.asarray(pil))
                                       .astype(np.uint8))
        diff = np.abs(out[i].permute(1, 2, 0).numpy().astype(int) - np.asarray(expected).astype(int))
        assert diff.max() <= 1, f"{name}: differs from PIL by {diff.max()}"


def test_augmented_fill_stays_in_range_for_every_dtype():
    for dtype in (torch.uint8, torch.float16, torch.float32):
        images = make_images(batch=10, dtype=dtype)
        out = PerlinDefect(threshold=0.1)(images, seed=0)
        assert out.image.dtype == dtype and out.mask.any()
        if dtype != torch.uint8:
            assert out.image.min() >= 0 and out.image.max() <= 1


def test_parts_compose_by_name_and_round_trip():
    from defectgen.registry import create_part

    op = RegionDefect(mask={"type": "perlin", "scale_exp_range": [1, 3]},
                      source={"type": "draem_augment", "source": {"type": "shuffle", "grid_range": [4, 4]},
                              "ops": ["invert", "gamma"], "count": 1},
                      blend="opacity")
    for kind, part in (("mask", op.mask), ("source", op.source), ("source", op.source.source)):
        assert create_part(kind, part.to_config()).to_config() == part.to_config()
    images = make_images(batch=6)
    out = op(images, seed=0)
    assert out.mask.any() and torch.equal(create_op(op.to_config())(images, seed=0).image, out.image)
    assert set(out.params["perlin_scale"].unique().tolist()) <= {2, 4, 8}
    assert out.params["gradient_angle"].shape == (6, 9, 9)


# -- errors ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,error,match", [
    ({"scale_exp_range": (0, 2.5)}, ValueError, "integer exponents"),
    ({"scale_exp_range": (-1, 3)}, ValueError, "scale_exp_range"),
    ({"scale_exp_range": (0, 9)}, ValueError, "scale_exp_range"),
    ({"scale_exp_range": (3, 1)}, ValueError, "min <= max"),
    ({"scale_exp_range": 5}, TypeError, "scale_exp_range"),
    ({"threshold": 1.5}, ValueError, "threshold"),
    ({"threshold": float("nan")}, ValueError, "threshold"),
    ({"threshold": "0.5"}, TypeError, "threshold"),
    ({"angle_deg_range": (90, -90)}, ValueError, "angle_deg_range"),
    ({"opacity_range": (0.2, 1.5)}, ValueError, "opacity_range"),
    ({"augment": 1}, TypeError, "augment"),
    ({"textures": torch.rand(2, 4, 8, 8)}, ValueError, "textures"),
    ({"textures": [1, 2]}, TypeError, "textures"),
    ({"p": 2.0}, ValueError, "p"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        PerlinDefect(**kwargs)


def test_bad_part_arguments():
    with pytest.raises(ValueError, match="grid_range"):
        SelfShuffle(grid_range=(2, 3.5))
    with pytest.raises(ValueError, match="grid_range"):
        SelfShuffle(grid_range=(0, 4))
    with pytest.raises(ValueError, match="ops"):
        DraemAugment(ops=["gamma", "blur"])
    with pytest.raises(TypeError, match="ops"):
        DraemAugment(ops="gamma")
    with pytest.raises(ValueError, match="count"):
        DraemAugment(ops=["gamma", "invert"], count=3)
    with pytest.raises(ValueError, match="unknown source"):
        DraemAugment(source="nope")
    from defectgen import PatchDefect

    for source in ("shuffle", "draem_augment"):
        with pytest.raises(TypeError, match="whole-image regions only"):
            PatchDefect(mask="rectangle", source=source)(make_images(batch=2), seed=0)


# -- benchmark smoke ------------------------------------------------------------------------------------
def test_benchmark_script_runs(capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_perlin.py"
    spec = importlib.util.spec_from_file_location("bench_perlin", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--batch", "2", "--size", "64", "--repeats", "1", "--warmup", "0"])
    printed = capsys.readouterr().out
    assert set(result["median"]) == {"clone", "reference", "perlin (textures)", "perlin (default)"}
    assert all(value > 0 for value in result["median"].values())
    assert "ms/image" in printed and "speed-up" in printed and printed.strip().splitlines()[-1].startswith("SUMMARY")
    # the reference does what the operator does: masks, boxes and labels agree with each other
    images, bank, np_images, np_textures = module.make_inputs(3, 64)
    for image, (out, mask, boxes, label) in zip(np_images, module.reference_batch(np_images, np_textures, 0)):
        assert out.shape == (64, 64, 3) and mask.shape == (64, 64, 1) and label == int(mask.any())
        outside = mask[..., 0] == 0
        assert np.array_equal(out[outside], image[outside])
        assert len(boxes) == 0 or ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
