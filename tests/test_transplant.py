"""DefectTransplant and its DefectBank: real defects cut from NG images, pasted onto OK images."""
import pickle
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from defectgen import DefectBank, DefectTransplant, create_op
from defectgen.foreground import estimate_foreground
from defectgen.registry import create_part

BOTTLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_bottle_256"
needs_bottle = pytest.mark.skipif(not (BOTTLE / "test").is_dir(), reason="needs ../shared/data/mvtec_bottle_256")

# a paste at its real size, unrotated, unflipped, colours untouched, written without blending
EXACT = {"flip": False, "angle_deg_range": (0, 0), "scale_range": (1, 1), "match_brightness": False,
         "blend": "replace"}


@pytest.fixture(scope="module")
def bottle_bank():
    if not (BOTTLE / "test").is_dir():
        pytest.skip("needs ../shared/data/mvtec_bottle_256")
    return DefectBank.from_mvtec(BOTTLE, foreground="otsu")


@pytest.fixture(scope="module")
def bottle_ok():
    if not (BOTTLE / "train").is_dir():
        pytest.skip("needs ../shared/data/mvtec_bottle_256")
    from defectgen.io.images import load_folder

    return load_folder(BOTTLE / "train" / "good", 256, limit=8)


def disc(size, row, col, radius):
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (rows - row) ** 2 + (cols - col) ** 2 <= radius ** 2


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def mvtec_tree(root: Path, masks: dict) -> Path:
    """A tiny MVTec-like tree: ``masks`` maps ``"<defect>/<stem>"`` to a (H, W) bool mask; images are 32x32."""
    rng = np.random.default_rng(0)
    write_png(root / "test" / "good" / "000.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    for key, mask in masks.items():
        defect, stem = key.split("/")
        write_png(root / "test" / defect / f"{stem}.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        write_png(root / "ground_truth" / defect / f"{stem}_mask.png", mask.astype(np.uint8) * 255)
    return root


# -- the bank ------------------------------------------------------------------------------------------------------
@needs_bottle
def test_bottle_bank_entries_and_class_names(bottle_bank):
    assert bottle_bank.class_names == ["broken_large", "broken_small", "contamination"]
    assert bottle_bank.counts() == {"broken_large": 20, "broken_small": 22, "contamination": 21}
    assert len(bottle_bank) == 63 and bottle_bank.channels == 3
    assert bottle_bank.types.tolist() == [1] * 20 + [2] * 22 + [3] * 21
    s = bottle_bank.canvas_size
    assert bottle_bank.images.shape == (63, 3, s, s) and bottle_bank.masks.shape == (63, 1, s, s)
    assert (bottle_bank.source_sizes == 256).all()
    # every mask fits in its crop, which fits in the canvas
    assert (bottle_bank.masks.flatten(1).sum(1) > 0).all() and (bottle_bank.sizes <= s).all()
    assert bottle_bank.names[0].endswith("broken_large/000.png")
    op = DefectTransplant(bottle_bank)
    assert op.class_names == bottle_bank.class_names
    assert op.class_ids == {1: "broken_large", 2: "broken_small", 3: "contamination"}


@needs_bottle
def test_bottle_bank_filters():
    bank = DefectBank.from_mvtec(BOTTLE, defects=["contamination", "broken_small"], max_per_type=3)
    assert bank.counts() == {"broken_small": 3, "contamination": 3}
    with pytest.raises(ValueError, match="no defect folder.*'scratch'"):
        DefectBank.from_mvtec(BOTTLE, defects=["scratch"])


@needs_bottle
def test_pasted_pixels_come_from_the_bank(bottle_bank, bottle_ok):
    """Scale 1 (same image size), no flip or rotation, no brightness matching, replace: the pasted region is
    the bank's defect, pixel for pixel, and the mask is its mask."""
    out = DefectTransplant(bottle_bank, **EXACT)(bottle_ok, seed=0)
    assert (out.params["scale"] == 1).all()
    for b in range(len(bottle_ok)):
        i = int(out.params["bank_index"][b])
        offset = out.params["centre"][b] - bottle_bank.anchors[i]
        dy, dx = (int(v) for v in offset.round())
        assert torch.equal(offset, offset.round())
        expected = torch.zeros(256, 256, dtype=torch.bool)
        canvas = bottle_bank.canvas_size
        # the canvas window that lands inside the image
        y0, x0 = max(0, -dy), max(0, -dx)
        y1, x1 = min(canvas, 256 - dy), min(canvas, 256 - dx)
        window_mask = bottle_bank.masks[i, 0, y0:y1, x0:x1].bool()
        expected[y0 + dy:y1 + dy, x0 + dx:x1 + dx] = window_mask
        assert torch.equal(out.mask[b, 0], expected)
        pasted = out.image[b, :, y0 + dy:y1 + dy, x0 + dx:x1 + dx]
        source = bottle_bank.images[i, :, y0:y1, x0:x1]
        assert torch.equal(pasted[:, window_mask], source[:, window_mask])
        assert int(out.label[b]) == int(bottle_bank.types[i])


@needs_bottle
def test_brightness_matching_moves_the_defect_towards_the_destination(bottle_bank):
    """On a much brighter or darker destination, the matched defect's mean follows the destination."""
    base = {k: v for k, v in EXACT.items() if k != "match_brightness"}
    for level in (30, 220):
        images = torch.full((8, 3, 256, 256), level, dtype=torch.uint8)
        plain = DefectTransplant(bottle_bank, match_brightness=False, **base)(images, seed=1)
        matched = DefectTransplant(bottle_bank, match_brightness=True, **base)(images, seed=1)
        assert torch.equal(plain.mask, matched.mask)
        for b in range(8):
            m = plain.mask[b, 0]
            i = int(plain.params["bank_index"][b])
            before = (plain.image[b][:, m].float().mean(1) - level).abs().mean()
            after = (matched.image[b][:, m].float().mean(1) - level).abs().mean()
            assert after < before
            # the shift is exactly destination background minus source background (up to clipping at 0/255)
            shift = level - bottle_bank.background[i]
            unclipped = (matched.image[b][:, m] > 0) & (matched.image[b][:, m] < 255)
            diff = matched.image[b][:, m].float() - plain.image[b][:, m].float()
            assert torch.allclose(diff[unclipped], shift.view(3, 1).expand_as(diff)[unclipped], atol=1.01)


def test_brightness_matching_on_a_synthetic_defect():
    """A dark stain cut from a dark image lands on a bright image as a stain on the bright level."""
    image = torch.full((1, 48, 48), 40, dtype=torch.uint8)
    mask = disc(48, 24, 24, 8)
    image[0][mask] = 10  # 30 below its surroundings
    bank = DefectBank.from_pairs([image], [mask], "stain")
    assert bank.background.tolist() == [[40.0]]
    images = torch.full((4, 1, 48, 48), 200, dtype=torch.uint8)
    op = DefectTransplant(bank, **{**EXACT, "match_brightness": True})
    out = op(images, seed=0)
    for b in range(4):
        m = out.mask[b, 0]
        assert m.any()
        assert torch.equal(out.image[b, 0][m], torch.full((int(m.sum()),), 170, dtype=torch.uint8))


def test_scale_follows_the_image_size():
    """A defect cut from a 40 px image covers four times the pixels on 80 px images."""
    image = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(0))
    mask = disc(40, 20, 20, 6)
    bank = DefectBank.from_pairs([image], [mask], "dent")
    op = DefectTransplant(bank, flip=False, angle_deg_range=(0, 0), scale_range=(1, 1), blend="replace")
    images = torch.zeros(4, 3, 80, 80)
    out = op(images, params={**op.sample_params(4, 3, 80, 80, torch.Generator().manual_seed(0)),
                             "centre": torch.full((4, 2), 40.5)})
    assert torch.allclose(out.params["scale"], torch.full((4,), 2.0))
    # the 13 px wide disc becomes 26 px wide, give or take its anti-aliased edge
    sides = out.boxes[:, 2:] - out.boxes[:, :2]
    assert len(sides) == 4 and ((sides - 26).abs() <= 2).all()
    fixed = DefectTransplant(bank, flip=False, angle_deg_range=(0, 0), scale_range=(1, 1), scale_with_image=False)
    assert torch.allclose(fixed.sample_params(4, 3, 80, 80, torch.Generator())["scale"], torch.ones(4))


# -- labels and boxes --------------------------------------------------------------------------------------------
@needs_bottle
def test_labels_and_boxes_follow_the_defect_type(bottle_bank, bottle_ok):
    images = bottle_ok.repeat(4, 1, 1, 1)
    op = DefectTransplant(bottle_bank, label=5, foreground="otsu")
    out = op(images, seed=3)
    types = bottle_bank.types[out.params["bank_index"]]
    defective = out.mask.flatten(1).any(1)
    assert torch.equal(out.label, torch.where(defective, types + 4, 0))
    assert set(out.label[defective].tolist()) <= {5, 6, 7} and len(set(out.label.tolist())) >= 2
    assert torch.equal(out.box_index, torch.nonzero(defective).squeeze(1))
    assert torch.equal(out.box_label, out.label[defective])
    for box, b in zip(out.boxes.long().tolist(), out.box_index.tolist()):
        rows, cols = torch.nonzero(out.mask[b, 0], as_tuple=True)
        assert box == [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]
    assert op.class_ids == {5: "broken_large", 6: "broken_small", 7: "contamination"}


def test_balanced_types():
    images = torch.rand(6, 3, 30, 30, generator=torch.Generator().manual_seed(0))
    masks = [disc(30, 15, 15, 4)] * 6
    bank = DefectBank.from_pairs(images, masks, ["rare"] + ["common"] * 5)
    assert bank.class_names == ["common", "rare"] and bank.types.tolist() == [1, 1, 1, 1, 1, 2]
    g = torch.Generator().manual_seed(0)
    uniform = DefectTransplant(bank).sample_labels(DefectTransplant(bank).sample_params(3000, 3, 30, 30, g))
    balanced_op = DefectTransplant(bank, balance_types=True)
    balanced = balanced_op.sample_labels(balanced_op.sample_params(3000, 3, 30, 30, g))
    assert 0.12 < (uniform == 2).float().mean() < 0.22
    assert 0.45 < (balanced == 2).float().mean() < 0.55


# -- building from pairs -----------------------------------------------------------------------------------------
def test_from_pairs_accepts_tensors_arrays_and_files(tmp_path):
    rgb = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    gray = np.full((32, 32), 90, dtype=np.uint8)
    mask = disc(32, 16, 16, 5)
    write_png(tmp_path / "img.png", cv2.cvtColor(rgb.permute(1, 2, 0).numpy(), cv2.COLOR_RGB2BGR))
    write_png(tmp_path / "mask.png", mask.numpy().astype(np.uint8) * 255)
    bank = DefectBank.from_pairs([rgb, gray, tmp_path / "img.png"], [mask, mask.numpy(), str(tmp_path / "mask.png")],
                                 ["b", "a", "b"])
    assert len(bank) == 3 and bank.channels == 3 and bank.class_names == ["a", "b"]
    assert bank.types.tolist() == [1, 2, 2]  # sorted by type, in the given order within a type
    # the gray image was repeated to RGB; the file and the tensor hold the same pixels
    assert bank.background[0].tolist() == [90.0, 90.0, 90.0]
    assert torch.equal(bank.images[1], bank.images[2]) and torch.equal(bank.masks[1], bank.masks[2])
    crop = bank.sizes[1].tolist()
    assert crop == [11 + 16, 11 + 16]  # the disc's 11 px bounding box plus 8 px of margin on each side
    # a one-channel bank works on RGB images and an RGB bank on gray ones
    gray_bank = DefectBank.from_pairs(torch.rand(2, 1, 32, 32), torch.stack([mask, mask]), "a")
    assert gray_bank.channels == 1
    for b, channels in ((gray_bank, 3), (bank, 1)):
        out = DefectTransplant(b)(torch.rand(2, channels, 40, 40), seed=0)
        assert out.mask.any() and out.image.shape == (2, channels, 40, 40)


def test_several_components_are_one_defect():
    mask = disc(40, 10, 10, 3) | disc(40, 30, 28, 3)
    bank = DefectBank.from_pairs(torch.rand(1, 3, 40, 40), mask[None, None], "chips")
    assert len(bank) == 1
    out = DefectTransplant(bank, **EXACT)(torch.rand(3, 3, 64, 64), params=None, seed=0)
    assert torch.equal(out.box_index, torch.nonzero(out.mask.flatten(1).any(1)).squeeze(1))  # one box per image


def test_empty_masks_are_skipped_with_a_warning():
    images = torch.rand(3, 3, 20, 20)
    masks = torch.zeros(3, 1, 20, 20, dtype=torch.bool)
    masks[1, 0, 5:9, 5:9] = True
    with pytest.warns(UserWarning, match=r"mask of pair \d is empty") as record:
        bank = DefectBank.from_pairs(images, masks, "spot")
    assert len(bank) == 1 and len(record) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="every mask is empty"):
            DefectBank.from_pairs(images, torch.zeros(3, 1, 20, 20), "spot")


def test_mvtec_layout_errors_name_the_file(tmp_path):
    good = np.zeros((32, 32), dtype=bool)
    good[10:20, 12:18] = True
    root = mvtec_tree(tmp_path / "ok", {"crack/000": good, "hole/000": good, "hole/001": good})
    bank = DefectBank.from_mvtec(root)
    assert bank.counts() == {"crack": 1, "hole": 2}

    with pytest.warns(UserWarning, match="001.png.*empty"):
        bank = DefectBank.from_mvtec(mvtec_tree(tmp_path / "empty", {"crack/000": good, "crack/001": 0 * good}))
    assert len(bank) == 1

    root = mvtec_tree(tmp_path / "size", {"crack/000": good})
    write_png(root / "ground_truth" / "crack" / "000_mask.png", np.zeros((16, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"test/crack/000.png.*32x32.*000_mask.png.*16x32"):
        DefectBank.from_mvtec(root)

    root = mvtec_tree(tmp_path / "missing", {"crack/000": good})
    (root / "ground_truth" / "crack" / "000_mask.png").unlink()
    with pytest.raises(ValueError, match=r"000.png.*has no mask.*000_mask.png"):
        DefectBank.from_mvtec(root)

    with pytest.raises(ValueError, match="is not a directory"):
        DefectBank.from_mvtec(tmp_path / "nowhere")
    with pytest.raises(TypeError, match="bank must be"):
        DefectTransplant(42)
    with pytest.raises(ValueError, match="'root'"):
        DefectTransplant({"defects": ["crack"]})
    with pytest.raises(ValueError, match="ring_px"):
        DefectBank.from_pairs(torch.rand(1, 3, 8, 8), torch.ones(1, 1, 8, 8), "x", margin_px=2, ring_px=3)
    with pytest.raises(ValueError, match="2 images but 1 masks"):
        DefectBank.from_pairs(torch.rand(2, 3, 8, 8), torch.ones(1, 1, 8, 8), "x")


def test_config_round_trip_with_a_folder_bank(tmp_path):
    good = np.zeros((32, 32), dtype=bool)
    good[8:20, 10:22] = True
    root = mvtec_tree(tmp_path / "data", {"crack/000": good, "hole/000": good})
    images = torch.rand(4, 3, 32, 32)
    for bank in (str(root), root, {"root": str(root), "max_per_type": 1}):
        op = DefectTransplant(bank, foreground="otsu", scale_range=(0.5, 2))
        config = op.to_config()
        assert config["bank"] == (str(root) if isinstance(bank, Path) else bank)
        assert config["blend"] == {"type": "feather", "sigma_px": 1.5} and config["scale_range"] == [0.5, 2.0]
        again = create_op(config)
        a, b = op(images, seed=1), again(images, seed=1)
        assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)
    # the parts are registered and work composed by hand
    mask = create_part("mask", {"type": "transplant", "bank": str(root), "angle_deg_range": [0, 0]})
    source = create_part("source", {"type": "transplant", "bank": str(root)})
    out = create_op("region", mask=mask, source=source, blend="feather")(images, seed=0)
    assert out.mask.any()


def test_pickled_op_gives_the_same_defects():
    op = DefectTransplant(DefectBank.from_pairs(torch.rand(2, 3, 24, 24), [disc(24, 12, 12, 4)] * 2, ["a", "b"]))
    images = torch.rand(3, 3, 32, 32)
    a = op(images, seed=0)
    b = pickle.loads(pickle.dumps(op))(images, seed=0)
    assert torch.equal(a.image, b.image)


# -- on the real bottle ------------------------------------------------------------------------------------------
@needs_bottle
def test_bottle_defects_on_bottle_images_land_on_the_bottle(bottle_bank, bottle_ok):
    op = DefectTransplant(bottle_bank, foreground="otsu")
    out = op(bottle_ok, seed=5)
    fg = estimate_foreground(bottle_ok, "otsu")
    assert (out.label > 0).all()
    assert not (out.mask & ~fg).any(), "a defect pixel on the white background"
    centre = out.params["centre"].floor().long()
    assert fg[torch.arange(len(bottle_ok)), 0, centre[:, 0], centre[:, 1]].all()
    outside = ~out.mask.expand_as(bottle_ok)
    assert torch.equal(out.image[outside], bottle_ok[outside])
    # the defects are visible, and matched in brightness: the pasted mean stays near its surroundings' level
    changed = (out.image.float() - bottle_ok.float()).abs().sum(1, keepdim=True)
    assert (changed[out.mask] > 0).float().mean() > 0.5
    replay = op(bottle_ok, params=out.params)
    assert torch.equal(replay.image, out.image)


@needs_bottle
def test_folder_bank_uses_the_foreground_for_its_backgrounds():
    plain = DefectBank.from_mvtec(BOTTLE, defects=["broken_large"], max_per_type=4)
    on_object = DefectTransplant(str(BOTTLE), foreground="otsu").defect_bank
    # broken_large/003 reaches the white background: its ring mean drops once the background is left out
    assert plain.background[3].mean() > 100 > on_object.background[3].mean()


@needs_bottle
def test_poisson_blend(bottle_bank, bottle_ok):
    pytest.importorskip("defectgen.blends.poisson")
    out = DefectTransplant(bottle_bank, blend="poisson", foreground="otsu")(bottle_ok[:4], seed=0)
    outside = ~out.mask.expand(-1, 3, -1, -1)
    assert torch.equal(out.image[outside], bottle_ok[:4][outside]) and out.mask.any()


def test_replayed_params_are_checked():
    op = DefectTransplant(DefectBank.from_pairs(torch.rand(2, 3, 24, 24), [disc(24, 12, 12, 4)] * 2, "a"))
    images = torch.rand(2, 3, 32, 32)
    params = op(images, seed=0).params
    with pytest.raises(ValueError, match="bank_index"):
        op(images, params={**params, "bank_index": torch.tensor([0, 2])})
    with pytest.raises(ValueError, match="scale"):
        op(images, params={**params, "scale": torch.tensor([1.0, 0.0])})


def test_flips_and_quarter_turns_move_pixels_exactly():
    """A flip mirrors the paste about its centre; a 90 degree turn rotates it counter-clockwise."""
    image = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(40, 40, dtype=torch.bool)
    mask[10:30, 14:18] = True
    mask[26:30, 14:28] = True  # an L: no flip or turn maps it onto itself
    bank = DefectBank.from_pairs([image], [mask], "ell")
    op = DefectTransplant(bank, **EXACT)
    images = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
    params = {k: v for k, v in op(images, seed=0).params.items()}
    params["centre"] = bank.anchors.clone() + 12  # anchor phase kept, the whole L inside the image
    plain = op(images, params=params)
    rows, cols = torch.nonzero(plain.mask[0, 0], as_tuple=True)
    cy, cx = (float(v) for v in params["centre"][0])
    for flip, expected in (([True, False], plain.image.flip(-1)), ([False, True], plain.image.flip(-2))):
        out = op(images, params={**params, "flip": torch.tensor([flip])})
        # mirror about the centre: column x goes to 2 cx - 1 - x, which is a flip of the whole image when
        # the centre is the image's middle; shift the expectation to the actual centre
        shift = (int(2 * cy) - 64, 0) if flip[1] else (0, int(2 * cx) - 64)
        assert torch.equal(out.image, expected.roll(shift, dims=(-2, -1)))
    turned = op(images, params={**params, "angle_deg": torch.tensor([90.0])})
    # counter-clockwise: (row, col) offsets (dy, dx) from the centre go to (-dx, dy)
    dy, dx = rows + 0.5 - cy, cols + 0.5 - cx
    new_rows, new_cols = (cy - dx - 0.5).long(), (cx + dy - 0.5).long()
    assert torch.equal(turned.image[0][:, new_rows, new_cols], plain.image[0][:, rows, cols])
    assert int(turned.mask.sum()) == int(plain.mask.sum())
