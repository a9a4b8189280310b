"""The parts: geometry, sources, colour jitter, blends."""
import dataclasses
import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from defectgen import CutPaste, CutPasteScar, PatchDefect, Scar
from defectgen.masks import RectangleMask, ScarMask
from defectgen.masks.geometry import rasterize_rotated_rectangles, rotated_extent_bound
from defectgen.sources import ColourJitter, ConstantFill, SelfPatch

from conftest import make_images


@pytest.mark.parametrize("h,w,angles", [(25, 16, (-45, 45)), (10, 2, (0, 0)), (30, 4, (10, 20)),
                                        (8, 8, (-180, 180)), (40, 3, (80, 100))])
def test_rotated_extent_bound_matches_brute_force(h, w, angles):
    ts = torch.linspace(math.radians(angles[0]), math.radians(angles[1]), 20001, dtype=torch.float64)
    brute_y = (h * ts.cos().abs() + w * ts.sin().abs()).max().item()
    brute_x = (w * ts.cos().abs() + h * ts.sin().abs()).max().item()
    bound_y, bound_x = rotated_extent_bound(h, w, angles)
    assert bound_y == pytest.approx(brute_y, abs=1e-6) and bound_x == pytest.approx(brute_x, abs=1e-6)


def test_cutpaste_copies_the_source_region_exactly():
    """Without jitter, the pasted rectangle is the source rectangle, pixel for pixel."""
    images = make_images(batch=16, dtype=torch.uint8, height=64, width=80)
    out = CutPaste(colour_jitter=0.0)(images, seed=3)
    p = out.params
    for i in range(16):
        top, left, h, w = (int(p[k][i]) for k in ("top", "left", "height_px", "width_px"))
        st, sl = int(p["src_top"][i]), int(p["src_left"][i])
        assert torch.equal(out.image[i, :, top:top + h, left:left + w], images[i, :, st:st + h, sl:sl + w])
        assert out.mask[i, 0, top:top + h, left:left + w].all() and int(out.mask[i].sum()) == h * w
        assert out.boxes_of(i).tolist() == [[left, top, left + w, top + h]]


def test_unrotated_scar_is_an_exact_rectangle_of_the_source():
    images = make_images(batch=8, dtype=torch.uint8, height=64, width=64)
    op = CutPasteScar(angle_deg_range=(0, 0), colour_jitter=0.0)
    out = op(images, seed=0)
    p = out.params
    for i in range(8):
        top, left, h, w = (int(p[k][i]) for k in ("top", "left", "height_px", "width_px"))
        st, sl = int(p["src_top"][i]), int(p["src_left"][i])
        assert torch.equal(out.image[i, :, top:top + h, left:left + w], images[i, :, st:st + h, sl:sl + w])
        assert int(out.mask[i].sum()) == h * w


def test_rotated_scar_content_comes_from_the_source_strip():
    """Every pasted pixel of a rotated scar holds a value of its (unrotated) source strip."""
    images = make_images(batch=8, dtype=torch.uint8, height=96, width=96)
    out = CutPasteScar(colour_jitter=0.0)(images, seed=5)
    p = out.params
    for i in range(8):
        h, w = int(p["height_px"][i]), int(p["width_px"][i])
        st, sl = int(p["src_top"][i]), int(p["src_left"][i])
        strip = {tuple(v) for v in images[i, :, st:st + h, sl:sl + w].reshape(3, -1).T.tolist()}
        pasted = out.image[i].permute(1, 2, 0)[out.mask[i, 0]].tolist()
        outside = sum(tuple(v) not in strip for v in pasted)
        assert outside <= (1 if w == 1 else 0)  # a forced centre pixel of a 1-px scar may read one step aside


def test_tiny_scar_never_leaves_an_empty_mask():
    """A 1-px scar at 45 degrees can miss every pixel centre; the centre pixel keeps it visible."""
    op = PatchDefect(mask=ScarMask((1, 1), (1, 1), (45, 45), reference_size=None), source=ConstantFill("gray"))
    out = op(torch.zeros(32, 1, 16, 16), seed=0)
    assert (out.mask.sum(dim=(1, 2, 3)) >= 1).all() and len(out.boxes) == 32


def jitter_image(image, params, weight=None):
    """Run ColourJitter.apply on one (1, C, h, w) image laid out as a pixel list."""
    c, h, w = image.shape[1:]
    one = torch.ones(1, dtype=torch.long)
    pixels = rasterize_rotated_rectangles(one * h, one * w, torch.zeros(1), 0 * one, 0 * one,
                                          torch.ones(1, dtype=torch.bool), (h, w), axis_aligned=True)
    if weight is not None:
        pixels = dataclasses.replace(pixels, inside=weight.reshape(-1))
    values = image[0].reshape(c, h * w).clone()  # the list runs row by row, as reshape does
    return ColourJitter.apply(values, pixels, params, 1.0).reshape(1, c, h, w)


@pytest.mark.parametrize("key,fn", [("brightness", TF.adjust_brightness), ("contrast", TF.adjust_contrast),
                                    ("saturation", TF.adjust_saturation)])
@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_jitter_matches_torchvision(key, fn, factor):
    patch = make_images(batch=1, height=32, width=32)
    params = {k: torch.ones(1) for k in ("brightness", "contrast", "saturation")}
    params["hue"] = torch.zeros(1)
    params[key] = torch.tensor([factor])
    ours = jitter_image(patch, params)
    assert torch.allclose(ours, fn(patch, factor), atol=1e-5)


def test_hue_rotation_keeps_grey_and_follows_torchvision_direction():
    patch = make_images(batch=1, height=32, width=32)
    ones = torch.ones(1)
    for hue in (-0.1, 0.05, 0.1):
        params = {"brightness": ones, "contrast": ones, "saturation": ones, "hue": torch.tensor([hue])}
        ours = jitter_image(patch, params)
        reference = TF.adjust_hue(patch, hue)
        cos = torch.nn.functional.cosine_similarity((ours - patch).flatten(), (reference - patch).flatten(), dim=0)
        assert cos > 0.7, f"hue {hue}: the rotation moves colours another way than torchvision ({cos:.2f})"
        grey = torch.full((1, 3, 4, 4), 0.4)
        assert torch.allclose(jitter_image(grey, params), grey, atol=1e-6)


def test_jitter_contrast_uses_only_the_patch_pixels():
    patch = torch.zeros(1, 1, 4, 4)
    patch[..., :2, :] = 1.0  # the masked half is white, the rest (padding) black
    weight = torch.zeros(4, 4, dtype=torch.bool)
    weight[:2] = True
    params = {"brightness": torch.ones(1), "contrast": torch.tensor([0.5]), "saturation": torch.ones(1),
              "hue": torch.zeros(1)}
    out = jitter_image(patch, params, weight)
    assert torch.allclose(out[..., :2, :], torch.ones(1, 1, 2, 4))  # mean of the patch is 1: unchanged


def test_parts_round_trip_through_config():
    op = PatchDefect(mask=RectangleMask((0.05, 0.1)), source=SelfPatch(ColourJitter(0.2, 0.0, 0.0, 0.05)), p=0.7)
    config = op.to_config()
    assert config["mask"]["type"] == "rectangle" and config["source"]["type"] == "self_patch"
    assert config["source"]["colour_jitter"]["brightness"] == 0.2
    images = make_images()
    from defectgen import create_op
    assert torch.equal(create_op(config)(images, seed=1).image, op(images, seed=1).image)


def test_rasterised_scars_match_a_brute_force_reference():
    """Mask pixels are exactly the pixel centres inside the rotated rectangle (plus the forced centre pixel),
    checked against a straightforward NumPy computation over the whole image."""
    import numpy as np
    images = torch.zeros(40, 1, 64, 64, dtype=torch.uint8)
    out = Scar(fill="gray", width_px_range=(1, 12), length_px_range=(3, 30), angle_deg_range=(-180, 180),
               reference_size=None)(images, seed=11)
    p = {k: v.numpy() for k, v in out.params.items()}
    ys, xs = np.mgrid[0:64, 0:64] + 0.5
    for i in range(40):
        h, w, a = float(p["height_px"][i]), float(p["width_px"][i]), np.deg2rad(float(p["angle_deg"][i]))
        box_h = int(np.ceil(h * abs(np.cos(a)) + w * abs(np.sin(a)) - 1e-3))
        box_w = int(np.ceil(w * abs(np.cos(a)) + h * abs(np.sin(a)) - 1e-3))
        cy, cx = p["top"][i] + box_h / 2, p["left"][i] + box_w / 2
        dy, dx = ys - cy, xs - cx
        qy, qx = np.cos(a) * dy + np.sin(a) * dx, np.cos(a) * dx - np.sin(a) * dy
        expected = (qy >= -h / 2) & (qy < h / 2) & (qx >= -w / 2) & (qx < w / 2)
        expected |= (dy >= -0.5) & (dy < 0.5) & (dx >= -0.5) & (dx < 0.5)
        got = out.mask[i, 0].numpy()
        # float32 vs float64 may disagree on centres lying exactly on an edge: allow a handful
        assert (got != expected).sum() <= 2, f"sample {i}: {(got != expected).sum()} pixels differ"


def test_segment_sum_matches_index_add():
    from defectgen.masks.geometry import rasterize_rotated_rectangles
    g = torch.Generator().manual_seed(0)
    h, w = torch.randint(1, 20, (9,), generator=g), torch.randint(1, 20, (9,), generator=g)
    applied = torch.rand(9, generator=g) > 0.3
    pixels = rasterize_rotated_rectangles(h, w, torch.zeros(9), torch.zeros(9, dtype=torch.long),
                                          torch.zeros(9, dtype=torch.long), applied, (32, 32), axis_aligned=True)
    values = torch.rand(pixels.count, generator=g)
    expected = torch.zeros(9).index_add_(0, pixels.sample, values)
    assert torch.allclose(pixels.segment_sum(values), expected, atol=1e-5)
    assert torch.equal(pixels.start[1:] - pixels.start[:-1], h * w * applied)


def test_pickled_ops_start_their_own_stream_unless_seeded():
    """DataLoader workers get pickled copies: unseeded copies must not repeat each other's defects."""
    import pickle
    images = make_images(batch=4)
    unseeded = CutPaste()
    a, b = pickle.loads(pickle.dumps(unseeded)), pickle.loads(pickle.dumps(unseeded))
    assert not torch.equal(a(images).image, b(images).image)
    seeded = CutPaste(seed=5)
    c, d = pickle.loads(pickle.dumps(seeded)), pickle.loads(pickle.dumps(seeded))
    assert torch.equal(c(images).image, d(images).image)


@pytest.mark.parametrize("random_order", [False, True])
def test_augmenting_sources_skip_samples_whose_fill_never_shows(random_order):
    """DraemAugment / GlassAugment augment only samples with coverage: the others' fill is never blended in
    (left normal, or an empty mask), and the shown samples' fill is what a full batch gives."""
    from defectgen.sources import DraemAugment, GlassAugment, SelfShuffle

    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    shown = torch.tensor([True, False, True, False, False, True])
    coverage = shown.float().view(-1, 1, 1, 1).expand(6, 1, 32, 32).contiguous()
    for source in (DraemAugment(SelfShuffle(), random_order=random_order), GlassAugment(SelfShuffle())):
        params = source.sample(6, 3, 32, 32, None, torch.Generator().manual_seed(1))
        full = source.render_region(images, params, torch.ones_like(coverage))
        part = source.render_region(images, params, coverage)
        plain = source.source.render_region(images, params, coverage)
        assert torch.equal(part[shown], full[shown])
        assert torch.equal(part[~shown], plain[~shown])
        assert not torch.equal(full[~shown], plain[~shown])  # the skipped work is real work
