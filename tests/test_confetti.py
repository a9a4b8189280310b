"""Confetti (FCDD's confetti noise): published defaults, the analytic blurred squares, colours, compositing."""
import math
import pickle

import numpy as np
import pytest
import torch
from scipy import ndimage

from defectgen import Confetti, RegionDefect, create_op
from defectgen.masks.confetti import MIN_COVERAGE, ConfettiMask
from defectgen.sources.confetti import ConfettiColour

N = 2000
CPU = torch.device("cpu")


def blobs(centres, sides, angles, sigma=0.0, colours=None, size=64):
    """Params for hand-placed blobs in one image."""
    k = len(sides)
    params = {"applied": torch.tensor([True]), "blob_count": torch.tensor([k]),
              "blob_centre_yx": torch.tensor([centres], dtype=torch.float32),
              "blob_side_px": torch.tensor([sides], dtype=torch.float32),
              "blob_angle_deg": torch.tensor([angles], dtype=torch.float32),
              "blob_sigma_px": torch.tensor([float(sigma)])}
    if colours is not None:
        params["blob_colour"] = torch.tensor([colours], dtype=torch.float32)
    return params


# -- published defaults ---------------------------------------------------------------------------------------
def test_fcdd_defaults_at_240():
    params = Confetti().sample_params(N, 3, 240, 240, torch.Generator().manual_seed(0))
    count = params["blob_count"]
    assert set(count.tolist()) == {2, 3, 4} and abs(float(count.double().mean()) - 3.0) < 0.1
    present = torch.arange(4) < count.unsqueeze(1)
    side, angle = params["blob_side_px"][present], params["blob_angle_deg"][present]
    assert 8 <= side.min() < 8.2 and 53.8 < side.max() <= 54
    assert -45 <= angle.min() < -44.5 and 44.5 < angle.max() <= 45
    assert (params["blob_sigma_px"] == 5.0).all()
    centre = params["blob_centre_yx"]
    assert centre.min() >= 0 and centre.max() <= 240
    colour = params["blob_colour"]
    white = (colour == 1).all(-1)[present]
    assert abs(float(white.double().mean()) - 0.46) < 0.03


def test_pixel_ranges_scale_with_the_image():
    big = Confetti().sample_params(N, 3, 480, 960, torch.Generator().manual_seed(0))
    assert 16 <= big["blob_side_px"].min() < 16.5 and 107.5 < big["blob_side_px"].max() <= 108
    assert (big["blob_sigma_px"] == 10.0).all()
    at_256 = Confetti().sample_params(N, 3, 256, 256, torch.Generator().manual_seed(0))
    assert at_256["blob_side_px"].max() <= 54 * 256 / 240 + 1e-4
    absolute = Confetti(reference_size=None).sample_params(N, 3, 480, 480, torch.Generator().manual_seed(0))
    assert absolute["blob_side_px"].max() <= 54 and (absolute["blob_sigma_px"] == 5.0).all()


# -- geometry -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("angle", [0.0, 17.0, 45.0])
def test_hard_square_covers_pixel_centres_inside_it(angle):
    cov = ConfettiMask().draw(blobs([(32.3, 30.8)], [20.0], [angle]), 64, 64, CPU)[0, 0]
    assert set(cov.unique().tolist()) == {0.0, 1.0}
    rows, cols = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    t = math.radians(angle)
    dy, dx = rows - 32.3, cols - 30.8
    u, v = math.cos(t) * dx + math.sin(t) * dy, math.cos(t) * dy - math.sin(t) * dx
    reference = (u.abs() <= 10) & (v.abs() <= 10)
    assert torch.equal(cov > 0, reference)


def test_blurred_square_matches_a_numerical_gaussian_blur():
    sigma, side, angle, centre = 3.0, 18.0, 30.0, (40.2, 33.7)
    cov = ConfettiMask().draw(blobs([centre], [side], [angle], sigma=sigma), 80, 80, CPU)[0, 0]
    # reference: the hard square supersampled 8x, blurred with a Gaussian, read at the pixel centres
    fine = 8
    t = (np.arange(80 * fine) + 0.5) / fine
    rows, cols = np.meshgrid(t, t, indexing="ij")
    a = math.radians(angle)
    dy, dx = rows - centre[0], cols - centre[1]
    u, v = math.cos(a) * dx + math.sin(a) * dy, math.cos(a) * dy - math.sin(a) * dx
    square = ((np.abs(u) <= side / 2) & (np.abs(v) <= side / 2)).astype(np.float64)
    blurred = ndimage.gaussian_filter(square, sigma * fine, mode="constant", truncate=6)
    reference = blurred.reshape(80, fine, 80, fine).mean(axis=(1, 3))  # box average over each pixel
    # the box average adds a pixel-wide blur (variance 1/12 px^2) that the point samples do not have
    assert np.abs(cov.numpy() - reference).max() < 0.02
    assert abs(float(cov.sum()) - side * side) < 0.01 * side * side  # a blur keeps the mass (tails cut)
    assert cov.max() > 0.95 and ((cov > 0) & (cov < MIN_COVERAGE)).sum() == 0


def test_blur_spreads_the_mask_beyond_the_square():
    sharp = ConfettiMask().draw(blobs([(32.0, 32.0)], [16.0], [0.0]), 64, 64, CPU)[0, 0] > 0
    soft = ConfettiMask().draw(blobs([(32.0, 32.0)], [16.0], [0.0], sigma=2.0), 64, 64, CPU)[0, 0] > 0
    assert (soft & sharp).sum() == sharp.sum()
    width = int(soft.any(0).sum())
    assert 16 + 2 * 2 * 2.5 <= width <= 16 + 2 * 2 * 3 + 2  # the tail is cut about 2.9 sigma out


def test_last_blob_wins_where_hard_blobs_overlap():
    params = blobs([(30.0, 30.0), (36.0, 36.0)], [20.0, 20.0], [0.0, 0.0],
                   colours=[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    images = torch.zeros(1, 3, 64, 64)
    out = RegionDefect(mask={"type": "confetti", "count_range": [2, 2]},
                       source={"type": "confetti_colour", "mode": "replace"})(images, params=params)
    assert torch.equal(out.image[0, :, 33, 33], torch.tensor([0.0, 0.0, 1.0]))  # in both: the later one
    assert torch.equal(out.image[0, :, 22, 22], torch.tensor([1.0, 0.0, 0.0]))  # in the first only
    assert len(out.boxes) == 1  # overlapping blobs make one component


def test_separate_blobs_get_separate_boxes():
    params = blobs([(10.0, 10.0), (50.0, 50.0)], [8.0, 10.0], [0.0, 30.0], colours=[[1.0] * 3, [0.5] * 3])
    out = Confetti(count_range=(2, 2))(torch.zeros(1, 3, 64, 64), params=params)
    assert len(out.boxes) == 2 and (out.label == 1).all()


def test_absent_blobs_draw_nothing():
    params = blobs([(10.0, 10.0), (50.0, 50.0)], [8.0, 10.0], [0.0, 0.0])
    params["blob_count"] = torch.tensor([1])
    cov = ConfettiMask().draw(params, 64, 64, CPU)[0, 0]
    assert cov[:20, :20].any() and not cov[40:, 40:].any()


def test_blobs_cut_by_the_border_keep_their_inside_part():
    cov = ConfettiMask().draw(blobs([(2.0, 61.0)], [12.0], [0.0]), 64, 64, CPU)[0, 0]
    assert int((cov > 0).sum()) == 8 * 9  # rows 0..7, columns 55..63


# -- colours --------------------------------------------------------------------------------------------------
def test_add_mode_adds_the_colour_and_clips():
    images = torch.full((1, 3, 64, 64), 0.25)
    params = blobs([(32.0, 32.0)], [20.0], [0.0], colours=[[0.5, 1.0, 0.0]])
    out = Confetti(count_range=(1, 1))(images, params=params)
    assert torch.equal(out.image[0, :, 32, 32], torch.tensor([0.75, 1.0, 0.25]))
    uint8 = Confetti(count_range=(1, 1))(torch.full((1, 3, 64, 64), 200, dtype=torch.uint8), params=params)
    assert uint8.image[0, :, 32, 32].tolist() == [255, 255, 200]


def test_blurred_colour_fades_into_the_image():
    images = torch.zeros(1, 1, 64, 64)
    params = blobs([(32.0, 32.0)], [16.0], [0.0], sigma=2.0, colours=[[1.0]])
    out = Confetti(count_range=(1, 1))(images, params=params)
    cov = ConfettiMask().draw(params, 64, 64, CPU)
    assert torch.allclose(out.image, cov, atol=1e-6)  # adding white to black leaves the coverage
    row = out.image[0, 0, 32]
    assert row[32] == 1.0 and 0 < row[22] < 0.5 and row[2] == 0


def test_white_and_random_colours_and_grey_images():
    params = Confetti(white_prob=1.0).sample_params(50, 3, 64, 64, torch.Generator().manual_seed(0))
    assert (params["blob_colour"] == 1).all()
    params = Confetti(white_prob=0.0).sample_params(50, 1, 64, 64, torch.Generator().manual_seed(0))
    assert params["blob_colour"].shape == (50, 4, 1) and (params["blob_colour"] < 1).all()
    images = torch.randint(0, 256, (6, 1, 48, 64), dtype=torch.uint8)
    out = Confetti(mode="replace", sigma_px=0)(images, seed=0)
    assert out.mask.any() and torch.equal(out.image[~out.mask], images[~out.mask])


def test_preset_equals_the_composition_and_keeps_no_state():
    images = torch.rand(5, 3, 48, 64)
    op = Confetti(count_range=(3, 6))
    composed = RegionDefect(mask={"type": "confetti", "count_range": [3, 6]}, source="confetti_colour")
    a, b = op(images, seed=4), composed(images, seed=4)
    assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask) and torch.equal(a.boxes, b.boxes)
    assert op.mask._shared._slot is None, "the preset must not keep a batch's colours after the call"
    replay = op(images, params=a.params)
    assert torch.equal(replay.image, a.image)


def test_foreground_placement():
    foreground = torch.zeros(16, 1, 64, 64, dtype=torch.bool)
    foreground[:, :, 20:40, 5:30] = True
    out = Confetti()(torch.rand(16, 3, 64, 64), seed=0, foreground=foreground)
    centre = out.params["blob_centre_yx"]
    assert (centre[..., 0] >= 20).all() and (centre[..., 0] <= 40).all()
    assert (centre[..., 1] >= 5).all() and (centre[..., 1] <= 30).all()
    assert not (out.mask & ~foreground).any() and out.mask.any()


def test_config_round_trip_and_pickle():
    op = Confetti(size_px_range=(4, 20), count_range=(1, 3), sigma_px=2, mode="replace", white_prob=0.2, seed=5)
    config = op.to_config()
    assert config["size_px_range"] == [4.0, 20.0] and config["mode"] == "replace"
    images = torch.rand(3, 3, 48, 64)
    assert torch.equal(op(images, seed=1).image, create_op(config)(images, seed=1).image)
    clone = pickle.loads(pickle.dumps(op))
    assert torch.equal(op(images, seed=1).image, clone(images, seed=1).image)
    assert clone.mask._shared is clone.source._shared is not None


@pytest.mark.parametrize("kwargs,error,match", [
    ({"size_px_range": (0, 10)}, ValueError, "size_px_range"),
    ({"count_range": (1.5, 3)}, ValueError, "count_range"),
    ({"count_range": (0, 0)}, ValueError, "count_range"),
    ({"count_range": (1, 100)}, ValueError, "count_range"),
    ({"sigma_px": -1}, ValueError, "sigma_px"),
    ({"reference_size": 0}, ValueError, "reference_size"),
    ({"angle_deg_range": (10, -10)}, ValueError, "angle_deg_range"),
    ({"mode": "multiply"}, ValueError, "mode"),
    ({"white_prob": 1.5}, ValueError, "white_prob"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        Confetti(**kwargs)


def test_colour_source_needs_the_confetti_mask():
    op = RegionDefect(mask="perlin", source=ConfettiColour())
    with pytest.raises(TypeError, match="confetti"):
        op(torch.rand(2, 3, 32, 32), seed=0)
