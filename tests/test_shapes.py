"""ShapeDefect / ShapeMask: published-default ranges, recognisable geometry of every kind, fills, placement."""
import math
import pickle

import pytest
import torch

from defectgen import ShapeDefect, create_op
from defectgen.masks.glyphs import fixed_templates
from defectgen.masks.shapes import KINDS, ShapeMask

N = 2000


def shape_params(kind, size=256, height_px=100.0, width_px=100.0, angle_deg=0.0, centre=(128.0, 128.0), **extra):
    """Params of one shape with the given geometry (the random fields from a fixed draw)."""
    params = ShapeMask().sample(1, size, size, torch.Generator().manual_seed(0))
    params.update(shape_kind=torch.tensor([KINDS.index(kind)]), height_px=torch.tensor([float(height_px)]),
                  width_px=torch.tensor([float(width_px)]), angle_deg=torch.tensor([float(angle_deg)]),
                  centre_yx=torch.tensor([centre], dtype=torch.float32))
    params.update({k: torch.as_tensor(v).unsqueeze(0) for k, v in extra.items()})
    return params


def draw(kind, size=256, **geometry):
    return ShapeMask(shapes=kind).draw(shape_params(kind, size, **geometry), size, size, torch.device("cpu"))[0, 0]


def bbox(mask):
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


# -- published defaults ---------------------------------------------------------------------------------------
def test_default_sizes_aspects_angles_and_kinds():
    params = ShapeMask().sample(N, 200, 300, torch.Generator().manual_seed(0))
    h, w = params["height_px"].double(), params["width_px"].double()
    side = (h * w).sqrt() / 200  # relative to the shorter image side
    assert side.min() >= 0.15 - 1e-6 and side.max() <= 0.4 + 1e-6
    assert side.min() < 0.16 and side.max() > 0.39
    area = side ** 2  # uniform in area, as CutPaste's patches
    assert abs(float(area.mean()) - (0.15 ** 2 + 0.4 ** 2) / 2) < 0.004
    log_aspect = (w / h).log()
    assert log_aspect.abs().max() <= math.log(2) + 1e-6 and log_aspect.abs().max() > 0.65
    angle = params["angle_deg"]
    assert -45 <= angle.min() < -44 and 44 < angle.max() <= 45
    counts = torch.bincount(params["shape_kind"], minlength=len(KINDS)).double() / N
    assert (counts - 1 / len(KINDS)).abs().max() < 0.04
    assert set(params["digit"].tolist()) == set(range(10))
    v = params["polygon_vertices"]
    assert v.min() == 3 and v.max() == 8


def test_shapes_restrict_the_kinds_and_centres_keep_the_box_inside():
    params = ShapeMask(shapes=("heart", "digit")).sample(N, 128, 128, torch.Generator().manual_seed(1))
    assert set(params["shape_kind"].tolist()) == {KINDS.index("heart"), KINDS.index("digit")}
    theta = torch.deg2rad(params["angle_deg"])
    h, w = params["height_px"], params["width_px"]
    half_y = (h * theta.cos().abs() + w * theta.sin().abs()) / 2
    half_x = (h * theta.sin().abs() + w * theta.cos().abs()) / 2
    cy, cx = params["centre_yx"].unbind(1)
    assert ((cy - half_y) >= -1e-3).all() and ((cy + half_y) <= 128 + 1e-3).all()
    assert ((cx - half_x) >= -1e-3).all() and ((cx + half_x) <= 128 + 1e-3).all()


# -- every kind looks like itself -----------------------------------------------------------------------------
def test_square_covers_its_area_with_antialiased_edges():
    cov = draw("square", height_px=60, width_px=100, centre=(128.3, 128.6))  # edges inside pixels
    assert abs(float(cov.sum()) - 6000) < 0.01 * 6000
    assert bbox(cov > 0) in ((60, 100), (61, 101), (62, 102), (60, 101), (61, 100))
    assert ((cov > 0) & (cov < 1)).any(), "edges should carry fractional coverage"
    assert (cov[100:150, 90:160] == 1).all()


def test_ellipse_area_is_pi_a_b():
    cov = draw("ellipse", height_px=60, width_px=120)
    assert abs(float(cov.sum()) - math.pi * 30 * 60) < 0.015 * math.pi * 30 * 60
    assert bbox(cov > 0)[1] > bbox(cov > 0)[0] * 1.8


def test_rotation_turns_the_shape():
    upright = draw("ellipse", height_px=40, width_px=100)
    turned = draw("ellipse", height_px=40, width_px=100, angle_deg=90)
    assert bbox(upright > 0)[1] > 2 * bbox(upright > 0)[0]
    assert bbox(turned > 0)[0] > 2 * bbox(turned > 0)[1]
    assert abs(float(upright.sum()) - float(turned.sum())) < 0.01 * float(upright.sum())


def test_heart_is_symmetric_about_its_axis_and_has_its_notch_on_top():
    cov = draw("heart", height_px=120, width_px=120)  # centred on a pixel edge: the grid is symmetric
    assert (cov - cov.flip(-1)).abs().max() < 1e-3
    rows = (cov > 0.5).any(1).nonzero().squeeze(1)
    top, bottom = int(rows.min()), int(rows.max())
    # lobes on top: the upper rows are wider than the pointed lower rows, and the middle column dips
    width_at = lambda r: int((cov[r] > 0.5).sum())  # noqa: E731
    assert width_at(top + 25) > width_at(bottom - 10)
    assert cov[top + 3, 128] < 0.5 and cov[top + 3, 100] > 0.5


@pytest.mark.parametrize("digit", range(10))
def test_digits_render_their_glyph(digit):
    cov = draw("digit", height_px=120, width_px=120, digit=torch.tensor(digit))
    template = torch.from_numpy(fixed_templates()[digit])
    small = torch.nn.functional.interpolate(cov[68:188, 68:188][None, None], size=(128, 128), mode="area")[0, 0]
    # the rendered shape is its template, scaled: compare at the template's resolution
    assert (small - template).abs().mean() < 0.03
    h, w = bbox(cov > 0.5)
    assert h >= 110 and w < h


def test_digit_one_is_a_thin_stem():
    one = draw("digit", height_px=120, width_px=120, digit=torch.tensor(1))
    rows = (one > 0).any(1).nonzero().squeeze(1)
    top, height = int(rows.min()), int(rows.max() - rows.min() + 1)
    # between its flag and its foot (OpenCV 5's glyph has one) a "1" is a stem: narrow at mid-height
    for frac in (0.45, 0.55, 0.65, 0.75):
        assert (one[top + int(frac * height)] > 0.5).sum() < 0.3 * height
    assert one.sum() < 0.8 * draw("digit", height_px=120, width_px=120, digit=torch.tensor(8)).sum()


def holes(mask):
    """Background regions enclosed by the mask (4-connected background, 8-connected ink)."""
    from scipy import ndimage

    padded = torch.nn.functional.pad(~mask, (1, 1, 1, 1), value=True).numpy()
    return ndimage.label(padded)[1] - 1


@pytest.mark.parametrize("digit,expected", [(0, (1, 2)), (1, (0,)), (6, (1,)), (7, (0,)), (8, (2,)), (9, (1,))])
def test_digits_have_their_holes(digit, expected):
    cov = draw("digit", height_px=120, width_px=120, digit=torch.tensor(digit))
    assert holes(cov > 0.5) in expected  # a slashed zero (OpenCV 5) has two


def test_digits_are_distinct():
    t = torch.from_numpy(fixed_templates()[:10])
    diff = (t.unsqueeze(0) - t.unsqueeze(1)).abs().mean(dim=(2, 3))
    assert (diff + torch.eye(10)).min() > 0.05


def test_regular_polygon_and_round_blob_areas():
    radius = 50 * (1 - 1 / 128)  # the longest vertex sits just inside the box
    triangle = draw("polygon", height_px=100, width_px=100, polygon_vertices=torch.tensor(3),
                    polygon_radii=torch.ones(8))
    assert abs(float(triangle.sum()) - 3 * math.sqrt(3) / 4 * radius ** 2) < 0.02 * 3 * math.sqrt(3) / 4 * radius ** 2
    hexagon = draw("polygon", height_px=100, width_px=100, polygon_vertices=torch.tensor(6),
                   polygon_radii=torch.ones(8))
    assert abs(float(hexagon.sum()) - 3 * math.sqrt(3) / 2 * radius ** 2) < 0.02 * 3 * math.sqrt(3) / 2 * radius ** 2
    circle = draw("blob", height_px=100, width_px=100, blob_harmonics=torch.zeros(4, 2))
    assert abs(float(circle.sum()) - math.pi * radius ** 2) < 0.02 * math.pi * radius ** 2


def test_random_polygons_and_blobs_are_irregular_but_inside_their_box():
    mask = ShapeMask(shapes=("polygon", "blob"), angle_deg_range=(0, 0), aspect_ratio_range=(1, 1))
    params = mask.sample(64, 128, 128, torch.Generator().manual_seed(3))
    cov = mask.draw(params, 128, 128, torch.device("cpu"))
    area = cov.sum(dim=(1, 2, 3))
    box = params["height_px"] * params["width_px"]
    assert (area > 0.05 * box).all() and (area < 0.8 * box).all()
    assert area.std() / area.mean() > 0.1, "shapes should vary"
    for i in range(64):
        h, w = bbox(cov[i, 0] > 0)
        assert h <= params["height_px"][i] + 2 and w <= params["width_px"][i] + 2


def test_large_shapes_on_small_images_are_clipped_not_wrong():
    op = ShapeDefect(size_frac_range=(0.9, 1.0), aspect_ratio_range=(0.3, 3.0), angle_deg_range=(-180, 180))
    out = op(torch.rand(8, 3, 24, 40), seed=0)
    assert out.mask.any(dim=(1, 2, 3)).all()


# -- fills and the operator -----------------------------------------------------------------------------------
def test_random_colour_fills_the_interior_and_mixes_at_the_edges():
    images = torch.zeros(16, 3, 64, 64)
    out = ShapeDefect(shapes="square", angle_deg_range=(0, 0))(images, seed=0)
    interior = -torch.nn.functional.max_pool2d(-out.mask.float(), 3, 1, 1) > 0  # mask eroded by one pixel
    colours = out.image.permute(0, 2, 3, 1)[interior[:, 0]]
    sample = interior[:, 0].nonzero()[:, 0]
    assert torch.equal(colours, out.params["colour"][sample])
    edge = out.mask & ~interior
    assert (edge.any(dim=(1, 2, 3)) == out.mask.any(dim=(1, 2, 3))).all()


def test_texture_fill_uses_bank_pixels():
    bank = torch.zeros(2, 3, 8, 8)
    bank[0, 0] = 1.0  # red
    bank[1, 2] = 1.0  # blue
    op = ShapeDefect(textures=bank, shapes=("square", "ellipse"))
    out = op(torch.full((12, 3, 48, 64), 0.5), seed=0)
    interior = (-torch.nn.functional.max_pool2d(-out.mask.float(), 3, 1, 1) > 0)[:, 0]
    pixels = out.image.permute(0, 2, 3, 1)[interior]
    red, blue = torch.tensor([1.0, 0, 0]), torch.tensor([0, 0, 1.0])
    assert ((pixels == red).all(1) | (pixels == blue).all(1)).all()
    assert set(out.params["texture_index"].tolist()) == {0, 1}


def test_texture_fill_from_a_folder(tmp_path):
    import cv2
    import numpy as np

    for i in range(2):
        cv2.imwrite(str(tmp_path / f"t{i}.png"), np.full((16, 16, 3), 40 + 100 * i, dtype=np.uint8))
    op = ShapeDefect(textures=str(tmp_path), fill="texture")
    out = op(torch.zeros(4, 1, 32, 32, dtype=torch.uint8), seed=0)
    assert out.mask.any() and set(out.image[out.mask].tolist()) <= set(range(0, 141))
    assert create_op(op.to_config()).textures == str(tmp_path)


def test_foreground_placement_keeps_centres_on_the_foreground():
    foreground = torch.zeros(32, 1, 64, 64, dtype=torch.bool)
    foreground[:, :, 10:20, 40:60] = True
    out = ShapeDefect()(torch.rand(32, 3, 64, 64), seed=0, foreground=foreground)
    cy, cx = out.params["centre_yx"].unbind(1)
    assert ((cy >= 10) & (cy <= 20) & (cx >= 40) & (cx <= 60)).all()
    assert not (out.mask & ~foreground).any()
    assert (out.label == 1).any()


def test_uint8_and_grey_images():
    images = torch.randint(0, 256, (6, 1, 40, 50), dtype=torch.uint8)
    out = ShapeDefect(fill="gray")(images, seed=0)
    interior = (-torch.nn.functional.max_pool2d(-out.mask.float(), 3, 1, 1) > 0)
    assert interior.any() and (out.image[interior] == 128).all()
    assert out.image.dtype == torch.uint8 and torch.equal(out.image[~out.mask], images[~out.mask])


def test_config_round_trip_and_pickle():
    op = ShapeDefect(shapes=["digit", "blob"], size_frac_range=(0.2, 0.3), fill="random_gray", p=0.7, seed=2)
    config = op.to_config()
    assert config["shapes"] == ["digit", "blob"] and config["fill"] == "random_gray"
    images = torch.rand(4, 3, 48, 64)
    again = create_op(config)
    assert torch.equal(op(images, seed=1).image, again(images, seed=1).image)
    clone = pickle.loads(pickle.dumps(op))
    assert torch.equal(op(images, seed=1).image, clone(images, seed=1).image)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"shapes": ("digit", "star")}, ValueError, "shapes"),
    ({"shapes": ()}, TypeError, "shapes"),
    ({"shapes": 3}, TypeError, "shapes"),
    ({"size_frac_range": (0.0, 0.5)}, ValueError, "size_frac_range"),
    ({"size_frac_range": (0.5, 0.2)}, ValueError, "size_frac_range"),
    ({"aspect_ratio_range": (-1, 2)}, ValueError, "aspect_ratio_range"),
    ({"vertices_range": (2, 5)}, ValueError, "vertices_range"),
    ({"vertices_range": (3.5, 5)}, ValueError, "vertices_range"),
    ({"fill": "texture"}, ValueError, "textures"),
    ({"fill": "plaid"}, ValueError, "fill"),
    ({"fill": "gray", "textures": torch.rand(1, 3, 4, 4)}, ValueError, "textures"),
    ({"textures": torch.rand(1, 2, 4, 4)}, ValueError, "textures"),
    ({"textures": 5}, TypeError, "textures"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        ShapeDefect(**kwargs)
