"""The MVTec AD layout reader: listing, loading, labels and masks, bit depths and channels, every error path."""
from pathlib import Path
from typing import Dict, Optional

import cv2
import numpy as np
import pytest
import torch

from defectgen import DefectBank
from defectgen.io import MVTecBatch, MVTecItem, MVTecLayout, load_image, load_mask, read_mvtec

BOTTLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_bottle_256"

# the defect of every synthetic defective image: rows 8..15, columns 16..23 of a 32 x 32 image
BOX = (slice(8, 16), slice(16, 24))


def write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array), path
    return path


def make_mvtec(root: Path, train: int = 3, good: int = 2, defects: Optional[Dict[str, int]] = None,
               size=(32, 32), channels: int = 3, dtype=np.uint8, ext: str = ".png", mask_ext: str = ".png",
               mask_value: int = 255) -> Path:
    """A dummy MVTec category (as anomalib's test helpers build): ``train`` OK training images, ``good`` OK
    test images and, per defect type, that many defective images with a :data:`BOX` mask.

    Image ``i`` of a folder is filled with a value that encodes (folder, i), so tests can tell files apart;
    ``defects`` defaults to ``{"hole": 1, "crack": 2}`` (given unsorted on purpose).
    """
    defects = {"hole": 1, "crack": 2} if defects is None else defects
    top = 65535 if dtype == np.uint16 else 255
    shape = size + ((channels,) if channels == 3 else ())

    def image(value: int) -> np.ndarray:
        return np.full(shape, value * top // 255, dtype=dtype)

    for i in range(train):
        write(root / "train" / "good" / f"{i:03d}{ext}", image(10 + i))
    for i in range(good):
        write(root / "test" / "good" / f"{i:03d}{ext}", image(50 + i))
    for k, (defect, count) in enumerate(sorted(defects.items())):
        for i in range(count):
            write(root / "test" / defect / f"{i:03d}{ext}", image(100 + 20 * k + i))
            mask = np.zeros(size, dtype=np.uint8)
            mask[BOX] = mask_value
            write(root / "ground_truth" / defect / f"{i:03d}_mask{mask_ext}", mask)
    return root


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_mvtec(tmp_path / "cat")


# -- listing -------------------------------------------------------------------------------------------------------
def test_listing_order_types_and_masks(tree):
    layout = read_mvtec(tree)
    assert isinstance(layout, MVTecLayout) and layout.root == tree
    assert [p.name for p in layout.train] == ["000.png", "001.png", "002.png"]
    assert layout.defect_types == ["crack", "hole"]
    # good first, then the defect types in sorted order, each sorted by file name
    assert [(it.defect, it.image.name) for it in layout.test] == [
        ("good", "000.png"), ("good", "001.png"), ("crack", "000.png"), ("crack", "001.png"), ("hole", "000.png")]
    assert layout.counts() == {"good": 2, "crack": 2, "hole": 1}
    good, crack = layout.test[0], layout.test[3]
    assert good.mask is None and not good.is_anomalous
    assert crack == MVTecItem(tree / "test" / "crack" / "001.png", tree / "ground_truth" / "crack" / "001_mask.png",
                              "crack")
    assert crack.is_anomalous
    assert [layout.label(it) for it in layout.test] == [0, 0, 1, 1, 2]
    assert "train=3" in repr(layout) and "good 2, crack 2, hole 1" in repr(layout)
    with pytest.raises(AttributeError):
        crack.defect = "hole"  # frozen


def test_defect_selection(tree):
    layout = read_mvtec(tree, defects="hole")
    assert layout.defect_types == ["hole"] and layout.counts() == {"good": 2, "hole": 1}
    assert [layout.label(it) for it in layout.test] == [0, 0, 1]
    assert read_mvtec(tree, defects=["hole", "crack", "hole"]).defect_types == ["crack", "hole"]
    only_good = read_mvtec(tree, defects=[])
    assert only_good.defect_types == [] and only_good.counts() == {"good": 2}


def test_train_only_and_test_only_layouts_are_valid(tmp_path):
    train_only = make_mvtec(tmp_path / "train_only", good=0, defects={})
    layout = read_mvtec(train_only, require_train=True)
    assert len(layout.train) == 3 and layout.test == [] and layout.defect_types == []
    assert layout.load_train().shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match=r"no test images: '.*train_only/test' is not a directory"):
        layout.load_test()

    test_only = make_mvtec(tmp_path / "test_only", train=0)
    layout = read_mvtec(test_only, require_test=True)
    assert layout.train == [] and len(layout.test) == 5
    with pytest.raises(ValueError, match=r"no training images: '.*test_only/train/good' is not a directory"):
        layout.load_train()

    no_good = make_mvtec(tmp_path / "no_good", train=0, good=0)  # a source of real defects only
    assert read_mvtec(no_good).counts() == {"crack": 2, "hole": 1}


def test_mask_with_another_extension_png_preferred(tmp_path):
    root = make_mvtec(tmp_path / "bmp", mask_ext=".bmp")
    layout = read_mvtec(root)
    assert [it.mask.name for it in layout.test if it.is_anomalous] == ["000_mask.bmp", "001_mask.bmp", "000_mask.bmp"]
    assert layout.load_test().masks.sum().item() == 3 * 64
    write(root / "ground_truth" / "hole" / "000_mask.png", np.zeros((32, 32), np.uint8))
    (root / "ground_truth" / "hole" / "000_mask.txt").write_text("not a mask")
    assert read_mvtec(root, "hole").test[-1].mask.name == "000_mask.png"
    # the bank reads through the same reader
    assert DefectBank.from_mvtec(root, "crack").counts() == {"crack": 2}


# -- loading -------------------------------------------------------------------------------------------------------
def test_load_test_images_masks_labels(tree):
    layout = read_mvtec(tree)
    batch = layout.load_test()
    assert isinstance(batch, MVTecBatch)
    images, masks, labels, defects = batch  # unpacks as a tuple
    assert images.shape == (5, 3, 32, 32) and images.dtype == torch.uint8
    assert masks.shape == (5, 1, 32, 32) and masks.dtype == torch.bool
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 0, 1, 1, 2]
    assert defects == ["good", "good", "crack", "crack", "hole"]
    assert batch.anomalous.tolist() == [False, False, True, True, True]
    assert images[:, 0, 0, 0].tolist() == [50, 51, 100, 101, 120]
    assert not masks[:2].any()
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[BOX] = True
    assert all(torch.equal(m[0], expected) for m in masks[2:])


def test_load_test_resizes_masks_by_nearest_neighbour(tree):
    layout = read_mvtec(tree)
    small = layout.load_test(size=16)
    assert small.images.shape == (5, 3, 16, 16) and small.masks.shape == (5, 1, 16, 16)
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[4:8, 8:12] = True
    assert torch.equal(small.masks[2, 0], expected) and not small.masks[:2].any()
    big = layout.load_test(size=64)
    assert big.masks.dtype == torch.bool and torch.equal(big.masks[4, 0], expected.repeat_interleave(4, 0)
                                                         .repeat_interleave(4, 1))
    assert (big.images[:, :, 0, 0] == small.images[:, :, 0, 0]).all()  # flat images stay flat


def test_load_test_subset_and_gray(tree):
    layout = read_mvtec(tree)
    subset = [it for it in layout.test if it.defect != "crack"]
    batch = layout.load_test(channels=1, items=subset)
    assert batch.images.shape == (3, 1, 32, 32) and batch.labels.tolist() == [0, 0, 2]
    assert batch.defects == ["good", "good", "hole"]
    with pytest.raises(ValueError, match="no items given"):
        layout.load_test(items=[])
    with pytest.raises(ValueError, match=r"defect types \['crack'\] are not in this layout's \['hole'\]"):
        read_mvtec(tree, "hole").load_test(items=layout.test)


def test_load_train(tree):
    layout = read_mvtec(tree)
    train = layout.load_train()
    assert train.shape == (3, 3, 32, 32) and train.dtype == torch.uint8
    assert train[:, :, 5, 5].tolist() == [[10] * 3, [11] * 3, [12] * 3]
    assert layout.load_train(size=8, channels=1, limit=2).shape == (2, 1, 8, 8)


def test_load_image_and_mask(tree):
    layout = read_mvtec(tree)
    good, crack = layout.test[0], layout.test[2]
    assert load_image(good).shape == (3, 32, 32) and load_image(good).dtype == torch.uint8
    assert torch.equal(load_image(crack.image, size=16, channels=1), load_image(str(crack.image), 16, 1))
    assert load_image(crack, 16, 1).shape == (1, 16, 16)
    mask = load_mask(crack)
    assert mask.shape == (1, 32, 32) and mask.dtype == torch.bool and mask.sum() == 64
    assert load_mask(crack, size=16).sum() == 16
    assert load_mask(good).shape == (1, 32, 32) and not load_mask(good).any()
    assert load_mask(good, size=8).shape == (1, 8, 8) and not load_mask(good, 8).any()


def test_gray_rgb_16_bit_and_other_formats(tmp_path):
    gray16 = read_mvtec(make_mvtec(tmp_path / "g16", channels=1, dtype=np.uint16, ext=".tif"))
    batch = gray16.load_test()
    assert batch.images.shape == (5, 3, 32, 32)  # gray repeated to RGB
    assert batch.images[:, :, 0, 0].tolist() == [[v] * 3 for v in (50, 51, 100, 101, 120)]  # 16 bit -> 8 bit
    assert gray16.load_train(channels=1)[:, 0, 0, 0].tolist() == [10, 11, 12]

    rgb = make_mvtec(tmp_path / "rgb", ext=".bmp")
    colour = np.zeros((32, 32, 3), np.uint8)
    colour[..., 2] = 200  # BGR: red in RGB
    write(rgb / "test" / "good" / "000.bmp", colour)
    layout = read_mvtec(rgb)
    assert layout.load_test().images[0, :, 0, 0].tolist() == [200, 0, 0]
    assert layout.load_test(channels=1).images[0, 0, 0, 0].item() == round(0.299 * 200)

    jpg = read_mvtec(make_mvtec(tmp_path / "jpg", ext=".jpg"))
    assert jpg.load_test().images.shape == (5, 3, 32, 32)


def test_mask_values_any_non_zero_channel_is_defective(tmp_path):
    ones = read_mvtec(make_mvtec(tmp_path / "ones", mask_value=1))  # 0/1 masks, as some exporters write
    assert ones.load_test().masks.sum().item() == 3 * 64
    root = make_mvtec(tmp_path / "rgb_mask", defects={"crack": 1})
    rgb_mask = np.zeros((32, 32, 3), np.uint8)
    rgb_mask[BOX + (1,)] = 255
    write(root / "ground_truth" / "crack" / "000_mask.png", rgb_mask)
    deep = np.zeros((32, 32), np.uint16)
    deep[BOX] = 65535
    root16 = make_mvtec(tmp_path / "mask16", defects={"crack": 1})
    write(root16 / "ground_truth" / "crack" / "000_mask.png", deep)
    for folder in (root, root16):
        assert read_mvtec(folder).load_test().masks.sum().item() == 64


def test_different_image_sizes_need_a_size(tmp_path):
    root = make_mvtec(tmp_path / "sizes", defects={})
    write(root / "train" / "good" / "big.png", np.zeros((40, 48, 3), np.uint8))
    write(root / "test" / "good" / "big.png", np.zeros((40, 48, 3), np.uint8))
    layout = read_mvtec(root)
    with pytest.raises(ValueError, match=r"differ in size: '.*000.png' is 32x32 px but '.*big.png' is 40x48 px; "
                                         "pass size="):
        layout.load_train()
    with pytest.raises(ValueError, match="big.png' is 40x48 px"):
        layout.load_test()
    assert layout.load_train(size=24).shape == (4, 3, 24, 24)
    assert layout.load_test(size=24).masks.shape == (3, 1, 24, 24)
    assert layout.load_train(limit=3).shape == (3, 3, 32, 32)  # only the first three, all 32 x 32


# -- errors --------------------------------------------------------------------------------------------------------
def test_layout_errors_name_the_path(tmp_path, tree):
    with pytest.raises(ValueError, match=r"MVTec folder '.*nowhere' does not exist or is not a directory"):
        read_mvtec(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"'.*empty' is not an MVTec-layout folder: it has neither train/good/"):
        read_mvtec(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"'.*no_test/test' is not a directory; expected an MVTec-layout folder"):
        read_mvtec(make_mvtec(tmp_path / "no_test", good=0, defects={}), require_test=True)
    with pytest.raises(ValueError, match=r"'.*no_train/train/good' is not a directory; .*train/good/\*.png"):
        read_mvtec(make_mvtec(tmp_path / "no_train", train=0), require_train=True)
    (tree / "test" / "scratch").mkdir()
    with pytest.raises(ValueError, match=r"test/scratch' holds no images"):
        read_mvtec(tree)
    assert read_mvtec(tree, ["crack"]).defect_types == ["crack"]  # only the requested folders are listed


def test_unknown_defects(tree):
    with pytest.raises(ValueError, match=r"no defect folder \['dent', 'scratch'\] under '.*cat/test' "
                                         r"\(found: \['crack', 'hole'\]\)"):
        read_mvtec(tree, ["crack", "scratch", "dent"])
    with pytest.raises(ValueError, match=r"no defect folder \['good'\]"):
        read_mvtec(tree, "good")


def test_missing_mask_names_the_expected_file(tree):
    (tree / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(ValueError, match=r"image '.*test/crack/001.png' has no mask "
                                         r"\(expected '.*ground_truth/crack/001_mask.png'\)"):
        read_mvtec(tree)
    assert read_mvtec(tree, "hole").counts() == {"good": 2, "hole": 1}
    (tree / "ground_truth" / "hole").rename(tree / "ground_truth" / "holes")
    with pytest.raises(ValueError, match=r"has no mask \(expected '.*ground_truth/hole/000_mask.png'\)"):
        read_mvtec(tree, "hole")


def test_mask_size_mismatch_names_both_files(tree):
    write(tree / "ground_truth" / "hole" / "000_mask.png", np.zeros((16, 32), np.uint8))
    layout = read_mvtec(tree)  # listing reads no pixels
    pattern = r"image '.*test/hole/000.png' is 32x32 px but its mask '.*hole/000_mask.png' is 16x32 px"
    with pytest.raises(ValueError, match=pattern):
        layout.load_test(size=16)
    with pytest.raises(ValueError, match=pattern):
        load_mask(layout.test[-1])
    assert layout.load_test(items=layout.test[:4]).masks.shape == (4, 1, 32, 32)


def test_bad_load_arguments(tree):
    layout = read_mvtec(tree)
    with pytest.raises(ValueError, match="channels must be 1 .* or 3"):
        layout.load_train(channels=4)
    with pytest.raises(ValueError, match="channels must be 1 .* or 3"):
        load_image(layout.test[0], channels=2)
    with pytest.raises(ValueError, match="size"):
        layout.load_test(size=0)
    with pytest.raises(ValueError, match="limit"):
        layout.load_train(limit=0)


def test_bank_errors_keep_their_prefix(tmp_path, tree):
    with pytest.raises(ValueError, match=r"DefectBank.from_mvtec: '.*train_only/test' is not a directory"):
        DefectBank.from_mvtec(make_mvtec(tmp_path / "train_only", good=0, defects={}))
    with pytest.raises(ValueError, match=r"DefectBank.from_mvtec: no defect folders under '.*only_good/test'"):
        DefectBank.from_mvtec(make_mvtec(tmp_path / "only_good", defects={}))
    with pytest.raises(ValueError, match=r"DefectBank.from_mvtec: no defect folder \['dent'\]"):
        DefectBank.from_mvtec(tree, "dent")


# -- the real data set -----------------------------------------------------------------------------------------
@pytest.mark.skipif(not (BOTTLE / "test").is_dir(), reason="needs ../shared/data/mvtec_bottle_256")
def test_bottle_layout():
    layout = read_mvtec(BOTTLE, require_train=True, require_test=True)
    assert len(layout.train) == 209
    assert layout.defect_types == ["broken_large", "broken_small", "contamination"]
    assert layout.counts() == {"good": 20, "broken_large": 20, "broken_small": 22, "contamination": 21}
    assert all(it.mask.name == f"{it.image.stem}_mask.png" for it in layout.test if it.is_anomalous)
    batch = layout.load_test(size=128)
    assert batch.images.shape == (83, 3, 128, 128) and batch.masks.shape == (83, 1, 128, 128)
    assert batch.labels.bincount().tolist() == [20, 20, 22, 21]
    assert not batch.masks[:20].any() and batch.masks[20:].flatten(1).any(1).all()
    assert layout.load_train(limit=4).shape == (4, 3, 256, 256)
