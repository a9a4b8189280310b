"""Statistical tests pinning the published defaults (Li et al. 2021) over thousands of samples."""
import math

import pytest
import torch

from defectgen import Cutout, CutPaste, CutPasteScar, Scar, cutpaste_3way, cutpaste_union

N = 2000


def draw(op, size=256, n=N, seed=0):
    return op.sample_params(n, 3, size, size, torch.Generator().manual_seed(seed))


def test_cutpaste_patch_area_and_aspect():
    params = draw(CutPaste())
    h, w = params["height_px"].double(), params["width_px"].double()
    area = h * w / 256 ** 2
    # whole-pixel rounding moves each side by <= 0.5 px: at 256 px that is < 0.4 % of the image in area
    assert area.min() >= 0.02 - 0.004 and area.max() <= 0.15 + 0.004
    assert area.min() < 0.025 and area.max() > 0.145, "the area range is not covered"
    log_aspect = torch.log(w / h)
    bound = math.log(1 / 0.3)
    assert log_aspect.abs().max() <= bound + 0.1
    # log-uniform: symmetric around 1 and flat in log space
    assert abs(float((log_aspect > 0).double().mean()) - 0.5) < 0.04
    hist = torch.histc(log_aspect.float(), bins=4, min=-bound, max=bound)
    assert hist.min() > 0.8 * N / 4 * 0.9


def test_cutpaste_patches_inside_and_jitter_range():
    params = draw(CutPaste())
    for top, length in (("top", "height_px"), ("left", "width_px"), ("src_top", "height_px"),
                        ("src_left", "width_px")):
        assert params[top].min() >= 0 and (params[top] + params[length]).max() <= 256
    for key in ("brightness", "contrast", "saturation"):
        assert 0.9 <= params[key].min() < 0.91 and 1.09 < params[key].max() <= 1.1
    assert -0.1 <= params["hue"].min() < -0.09 and 0.09 < params["hue"].max() <= 0.1


def test_cutpaste_mask_area_is_the_patch():
    images = torch.zeros(200, 1, 256, 256, dtype=torch.uint8)
    out = CutPaste()(images, seed=1)
    area = out.mask.sum(dim=(1, 2, 3))
    assert torch.equal(area, out.params["height_px"] * out.params["width_px"])


@pytest.mark.parametrize("op_class", [CutPasteScar, Scar])
def test_scar_geometry_at_256(op_class):
    params = draw(op_class())
    width, length, angle = params["width_px"], params["height_px"], params["angle_deg"]
    assert width.min() == 2 and width.max() == 16
    assert length.min() == 10 and length.max() == 25
    assert -45 <= angle.min() < -44 and 44 < angle.max() <= 45
    assert abs(float(angle.mean())) < 2.0


def test_scar_scales_with_image_size():
    big = draw(CutPasteScar(), size=512)
    assert big["width_px"].min() == 4 and big["width_px"].max() == 32
    assert big["height_px"].min() == 20 and big["height_px"].max() == 50
    absolute = draw(CutPasteScar(reference_size=None), size=512)
    assert absolute["width_px"].max() == 16 and absolute["height_px"].max() == 25


def test_scar_mask_is_thin_and_rotated():
    images = torch.zeros(300, 1, 128, 128, dtype=torch.uint8)
    out = Scar(fill="gray")(images, seed=0)
    params = out.params
    area = out.mask.sum(dim=(1, 2, 3)).double()
    expected = (params["width_px"] * params["height_px"]).double()
    # a rasterised rotated rectangle covers its area up to a border of about its perimeter in half pixels
    perimeter = 2 * (params["width_px"] + params["height_px"]).double()
    assert ((area - expected).abs() <= perimeter / 2 + 1).all()
    # the boxes follow the rotation: a rotated w x l rectangle spans w|cos a| + l|sin a| columns, and
    # sampling at pixel centres loses less than one pixel on each side
    a = torch.deg2rad(params["angle_deg"]).double()
    w, length = params["width_px"].double(), params["height_px"].double()
    extent_x = w * a.cos().abs() + length * a.sin().abs()
    extent_y = length * a.cos().abs() + w * a.sin().abs()
    box_w = (out.boxes[:, 2] - out.boxes[:, 0]).double()
    box_h = (out.boxes[:, 3] - out.boxes[:, 1]).double()
    assert (box_w <= torch.ceil(extent_x)).all() and (box_w >= extent_x - 2).all()
    assert (box_h <= torch.ceil(extent_y)).all() and (box_h >= extent_y - 2).all()


@pytest.mark.parametrize("op", [CutPaste(p=0.5), Scar(p=0.3), Cutout(p=0.8)])
def test_p_is_the_defect_probability(op):
    label = op(torch.zeros(N, 1, 32, 32, dtype=torch.uint8), seed=0).label
    assert abs(float((label > 0).double().mean()) - op.p) < 0.04


def test_3way_and_union_are_balanced():
    images = torch.zeros(96, 3, 64, 64, dtype=torch.uint8)
    label = cutpaste_3way()(images, seed=0).label
    assert torch.bincount(label, minlength=3).tolist() == [32, 32, 32]
    label = cutpaste_union()(images, seed=0).label
    assert torch.bincount(label, minlength=2).tolist() == [48, 48]
    # stratified, then shuffled: the classes are not in blocks
    assert not torch.equal(label, label.sort().values)


def test_cutout_fills():
    images = torch.randint(0, 256, (64, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    gray = Cutout(fill="gray")(images, seed=0)
    assert (gray.image.permute(0, 2, 3, 1)[gray.mask[:, 0]] == 128).all()
    mean = Cutout(fill="mean")(images, seed=0)
    expected = images.float().mean(dim=(2, 3)).round().to(torch.uint8)
    for i in range(4):
        inside = mean.image[i].permute(1, 2, 0)[mean.mask[i, 0]]
        assert (inside == expected[i]).all()
    random = Cutout(fill="random")(images, seed=0)
    colours = torch.stack([random.image[i].permute(1, 2, 0)[random.mask[i, 0]][0] for i in range(64)]).float()
    assert colours.std(dim=0).min() > 50, "random colours should spread over 0..255"
    grey = Cutout(fill="random_gray")(images, seed=0)
    levels = torch.stack([grey.image[i].permute(1, 2, 0)[grey.mask[i, 0]][0] for i in range(64)]).float()
    assert (levels[:, 0] == levels[:, 1]).all() and (levels[:, 1] == levels[:, 2]).all()
    assert levels[:, 0].std() > 50
