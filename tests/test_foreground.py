"""Foreground-aware placement: the estimate, the point sampler, and every operator family honouring it."""
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.filters import threshold_otsu

from defectgen import CutPaste, Cutout, OneOf, Scar, create_op, cutpaste_3way
from defectgen.foreground import (estimate_foreground, grey_levels, otsu_thresholds, sample_foreground_points)

from conftest import make_images

BOTTLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_bottle_256" / "train" / "good"


def centred_disc(batch=4, size=64, radius=20, bright=True):
    """Dark background with a bright disc in the middle (or the inverse)."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = ((yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2) < radius ** 2
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 20, (batch, 3, size, size), generator=g, dtype=torch.uint8)
    base = torch.where(disc == bright, 200, 30).to(torch.uint8)
    return base + noise, disc


def within_disc(boxes, size, radius):
    """Box centres lie on the disc, up to the half pixel of rounding a box position to whole pixels."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    return bool((((centres - size / 2) ** 2).sum(1).sqrt() <= radius + 1).all())


def test_otsu_matches_skimage():
    images = make_images(batch=5, channels=1, dtype=torch.uint8)
    images[2] = images[2] // 3  # a different histogram per image
    thresholds = otsu_thresholds(grey_levels(images))
    for i in range(5):
        expected = threshold_otsu(images[i, 0].numpy(), nbins=256)
        # skimage returns the upper edge of the lower class: our classes are <= t and > t
        lower = images[i, 0].numpy() <= thresholds[i].item()
        assert np.array_equal(lower, images[i, 0].numpy() <= expected)


@pytest.mark.parametrize("bright", [True, False])
def test_otsu_modes_find_the_object(bright):
    images, disc = centred_disc(bright=bright)
    fg = estimate_foreground(images, "otsu")
    assert fg.shape == (4, 1, 64, 64) and fg.dtype == torch.bool
    assert torch.equal(fg[:, 0], disc.expand(4, -1, -1)), "otsu must pick the class away from the border"
    side = "otsu_bright" if bright else "otsu_dark"
    assert torch.equal(estimate_foreground(images, side), fg)


def test_float_images_give_the_same_estimate():
    images, _ = centred_disc()
    assert torch.equal(estimate_foreground(images, "otsu"), estimate_foreground(images.float() / 255, "otsu"))


def test_points_land_on_the_foreground_and_cover_it():
    fg = torch.zeros(3, 1, 20, 30, dtype=torch.bool)
    fg[0, 0, 5:8, 10:12] = True
    fg[1, 0, 0, 0] = True
    points = sample_foreground_points(fg, 500, torch.Generator().manual_seed(0))
    assert points.shape == (3, 500, 2)
    rows, cols = points[..., 0].long(), points[..., 1].long()
    assert fg[0, 0, rows[0], cols[0]].all() and fg[1, 0, rows[1], cols[1]].all()
    assert len(set(zip(rows[0].tolist(), cols[0].tolist()))) == 6, "every foreground pixel can be drawn"
    # an empty foreground falls back to the whole image
    assert rows[2].min() >= 0 and rows[2].max() < 20 and len(set(rows[2].tolist())) > 10


@pytest.mark.parametrize("op", [CutPaste(), Cutout(), Scar(), cutpaste_3way()], ids=lambda op: type(op).__name__)
def test_patch_defects_are_centred_on_the_foreground(op):
    images = make_images(batch=16, height=96, width=96, dtype=torch.uint8)
    fg = torch.zeros(16, 1, 96, 96, dtype=torch.bool)
    fg[:, :, 60:70, 10:25] = True
    out = op(images, seed=0, foreground=fg)
    for x1, y1, x2, y2 in out.boxes.tolist():
        cy, cx = int((y1 + y2) / 2), int((x1 + x2) / 2)
        # centred on a foreground pixel unless pushed inward by the image border (not the case here)
        assert 55 <= cy <= 75 and 5 <= cx <= 30, (x1, y1, x2, y2)
    replay = op(images, params=out.params)
    assert torch.equal(replay.image, out.image) and torch.equal(replay.boxes, out.boxes)


def test_otsu_mode_on_construction_and_config_round_trip():
    images, disc = centred_disc(batch=8, size=96, radius=30)
    op = Cutout(foreground="otsu", area_frac_range=(0.01, 0.02))
    out = op(images, seed=1)
    assert within_disc(out.boxes, 96, 30)
    again = create_op(op.to_config())(images, seed=1)
    assert torch.equal(again.image, out.image)


def test_one_of_passes_its_branches_own_modes():
    images, disc = centred_disc(batch=8, size=96, radius=30)
    op = OneOf([Cutout(foreground="otsu", area_frac_range=(0.01, 0.02)), Scar(foreground="otsu")])
    out = op(images, seed=2)
    assert within_disc(out.boxes, 96, 30)


def test_foreground_errors():
    images = make_images(batch=2)
    with pytest.raises(ValueError, match="foreground must be None or one of"):
        Cutout(foreground="bright")
    with pytest.raises(ValueError, match="foreground='given'"):
        Cutout(foreground="given")(images)
    with pytest.raises(ValueError, match=r"foreground must have shape \(2, 1, 48, 64\)"):
        Cutout()(images, foreground=torch.ones(2, 1, 10, 10))
    with pytest.raises(TypeError, match="foreground must be a"):
        Cutout()(images, foreground=np.ones((2, 1, 48, 64)))
    out = Cutout()(images, seed=0)
    with pytest.raises(ValueError, match="do not also pass"):
        Cutout()(images, params=out.params, foreground=torch.ones(2, 1, 48, 64))


@pytest.mark.skipif(not BOTTLE.is_dir(), reason="needs ../shared/data/mvtec_bottle_256")
def test_otsu_finds_the_bottle():
    from defectgen.io.images import load_folder

    images = load_folder(BOTTLE, 256, limit=8)
    fg = estimate_foreground(images, "otsu")
    # the bottle fills the middle of the frame and the white background the corners
    assert fg[:, 0, 118:138, 118:138].float().mean() > 0.95
    assert not fg[:, 0, :8, :8].any()
    assert 0.3 < fg.float().mean() < 0.8
