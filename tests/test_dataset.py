"""DefectDataset: per-item seeded defects on OK images for DataLoaders with any number of workers."""
import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from defectgen import Cutout, DefectBatch, create_op
from defectgen.rng import index_seed
from defectgen.dataset import DefectDataset, DefectItem, collate
from defectgen.itemwise import apply_itemwise

SIZE = 32


@pytest.fixture
def folder(tmp_path):
    """Six OK images of mixed sizes and layouts: gray, colour, 16-bit, in a nested folder."""
    rng = np.random.default_rng(0)
    (tmp_path / "sub").mkdir()
    for i in range(3):
        assert cv2.imwrite(str(tmp_path / f"colour{i}.png"), rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8))
    assert cv2.imwrite(str(tmp_path / "gray.png"), rng.integers(0, 256, (30, 30), dtype=np.uint8))
    assert cv2.imwrite(str(tmp_path / "sub" / "deep16.png"), rng.integers(0, 65536, (36, 36), dtype=np.uint16))
    assert cv2.imwrite(str(tmp_path / "sub" / "small.png"), rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    return tmp_path


def assert_items_equal(a, b):
    for field in ("image", "mask", "label", "boxes", "box_label"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


@pytest.mark.parametrize("channels", [1, 3])
def test_items_from_a_folder(folder, channels):
    data = DefectDataset(folder, "cutpaste", size=SIZE, channels=channels, seed=0)
    assert len(data) == 6 and f"6 images from {str(folder)!r}" in repr(data)
    for i in range(len(data)):
        item = data[i]
        assert isinstance(item, DefectItem)
        assert item.image.shape == (channels, SIZE, SIZE) and item.image.dtype == torch.uint8
        assert item.mask.shape == (1, SIZE, SIZE) and item.mask.dtype == torch.bool and item.mask.any()
        assert item.boxes.shape == (1, 4) and item.boxes.dtype == torch.float32
        assert item.box_label.tolist() == [1] and item.label.dtype == torch.int64 and item.label.item() == 1
        ok = data.image(i)
        assert torch.equal(item.image[:, ~item.mask[0]], ok[:, ~item.mask[0]])


def test_folder_defaults_to_256_rgb(folder):
    data = DefectDataset(folder, Cutout(), seed=0)
    assert data[0].image.shape == (3, 256, 256) and data.image(3).shape == (3, 256, 256)


def test_seeded_item_is_the_itemwise_defect_of_its_index_and_epoch(folder):
    op = create_op("cutpaste")
    data = DefectDataset(folder, op, size=SIZE, seed=5)
    data.set_epoch(2)
    expected = apply_itemwise(op, data.image(4)[None], [index_seed(5, 4, stream="epoch2")])
    item = data[4]
    assert torch.equal(item.image, expected.image[0]) and torch.equal(item.boxes, expected.boxes)
    assert_items_equal(item, data[4])  # repeated access gives the same item
    again = DefectDataset(folder, "cutpaste", size=SIZE, seed=5)
    again.set_epoch(2)
    assert_items_equal(item, again[4])
    assert_items_equal(data[-2], item)  # negative indices count from the end


def test_epochs_and_seeds_change_the_defects(folder):
    data = DefectDataset(folder, "cutpaste", size=SIZE, seed=0)
    epoch0 = [data[i].mask for i in range(len(data))]
    data.set_epoch(1)
    epoch1 = [data[i].mask for i in range(len(data))]
    other = DefectDataset(folder, "cutpaste", size=SIZE, seed=1)
    assert not any(torch.equal(a, b) for a, b in zip(epoch0, epoch1))
    assert not any(torch.equal(a, other[i].mask) for i, a in enumerate(epoch0))


def test_without_seed_every_access_is_fresh(folder):
    data = DefectDataset(folder, "cutpaste", size=SIZE)
    assert not torch.equal(data[0].mask, data[0].mask)


def test_tensor_source_keeps_dtype_and_size():
    images = torch.rand(5, 1, 24, 40)
    data = DefectDataset(images, "scar", seed=0)
    item = data[3]
    assert item.image.shape == (1, 24, 40) and item.image.dtype == torch.float32
    assert torch.equal(item.image[:, ~item.mask[0]], images[3][:, ~item.mask[0]])
    assert torch.equal(data.image(3), images[3])
    assert DefectDataset(torch.zeros(2, 3, 16, 16, dtype=torch.uint8), "cutout", size=16, channels=3)[1].mask.any()


def test_collate_makes_a_replayable_defect_batch(folder):
    data = DefectDataset(folder, "cutpaste_3way", size=SIZE, seed=0)
    items = [data[i] for i in range(len(data))]
    batch = collate(items)
    assert isinstance(batch, DefectBatch)
    assert batch.image.shape == (6, 3, SIZE, SIZE) and batch.mask.shape == (6, 1, SIZE, SIZE)
    assert batch.label.tolist() == [item.label.item() for item in items]
    assert batch.box_index.tolist() == [j for j, item in enumerate(items) for _ in range(item.boxes.shape[0])]
    for j, item in enumerate(items):
        assert torch.equal(batch.boxes_of(j), item.boxes)
    ok = torch.stack([data.image(i) for i in range(len(data))])
    replay = data.op(ok, params=batch.params)
    assert torch.equal(replay.image, batch.image) and torch.equal(replay.boxes, batch.boxes)


def test_dataloader_workers_give_the_same_batches(folder):
    data = DefectDataset(folder, "cutpaste", size=SIZE, seed=3)
    data.set_epoch(1)

    def batches(workers):
        loader = DataLoader(data, batch_size=4, shuffle=False, num_workers=workers, collate_fn=collate)
        return list(loader)

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 2
    for a, b in zip(serial, parallel):
        for field in ("image", "mask", "label", "boxes", "box_index", "box_label"):
            assert torch.equal(getattr(a, field), getattr(b, field)), field
    data.set_epoch(2)
    next_epoch = batches(2)
    assert not torch.equal(next_epoch[0].mask, serial[0].mask)


def test_clear_errors(folder, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        DefectDataset(empty, "cutout")
    with pytest.raises(ValueError, match="does not exist"):
        DefectDataset(tmp_path / "missing", "cutout")
    with pytest.raises(ValueError, match="size must be >= 1"):
        DefectDataset(folder, "cutout", size=0)
    with pytest.raises(TypeError, match="size must be an int"):
        DefectDataset(folder, "cutout", size=32.0)
    with pytest.raises(ValueError, match="channels must be 1"):
        DefectDataset(folder, "cutout", channels=2)
    with pytest.raises(TypeError, match="seed must be an int"):
        DefectDataset(folder, "cutout", seed="0")
    with pytest.raises(TypeError, match="source must be"):
        DefectDataset(np.zeros((2, 3, 8, 8)), "cutout")
    with pytest.raises(TypeError, match="op must be"):
        DefectDataset(folder, None)
    with pytest.raises(ValueError, match="not resized"):
        DefectDataset(torch.zeros(2, 3, 16, 16), "cutout", size=32)
    with pytest.raises(ValueError, match="not converted"):
        DefectDataset(torch.zeros(2, 3, 16, 16), "cutout", channels=1)
    with pytest.raises(ValueError, match="no images"):
        DefectDataset(torch.zeros(0, 3, 16, 16), "cutout")
    with pytest.raises(ValueError, match="4 dimensions"):
        DefectDataset(torch.zeros(3, 16, 16), "cutout")
    data = DefectDataset(folder, "cutout", size=SIZE)
    with pytest.raises(IndexError, match="index 6 is out of range .* 6 images"):
        data[6]
    with pytest.raises(IndexError, match="out of range"):
        data[-7]
    with pytest.raises(TypeError, match="index must be an int"):
        data[1.0]
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        data.set_epoch(-1)
    with pytest.raises(ValueError, match="at least one"):
        collate([])
    with pytest.raises(TypeError, match="DefectItem"):
        collate([(1, 2)])


def test_float_tensor_source_in_another_value_range():
    unit = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    data = DefectDataset(unit * 2 - 1, "cutout", seed=4, value_range=(-1, 1))
    reference = DefectDataset(unit, "cutout", seed=4)
    for i in range(3):
        torch.testing.assert_close(data[i].image, reference[i].image * 2 - 1, atol=1e-6, rtol=0)
        assert torch.equal(data[i].mask, reference[i].mask)
    with pytest.raises(ValueError, match=r"declared in value_range \[0, 1\]"):
        DefectDataset(unit * 2 - 1, "cutout", seed=4)[0]
