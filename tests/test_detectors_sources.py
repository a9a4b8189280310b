"""detectors.data.sources: training batches from real labels, on-the-fly defects, generated folders and mixes."""
import cv2
import pytest
import torch

from defectgen import Cutout, OneOf, generate
from defectgen.io import default_images
from detectors.data import (LabelledSource, MixedSource, SyntheticSource, choose_real, epoch_order, mix,
                            source_from_folder)
from detectors.types import AGNOSTIC_CLASS, LabelledSet


def numbered_set(n=7, size=20, channels=3):
    """Image i is filled with the value i and has i % 3 boxes whose x1 is i: batches can be traced back."""
    images = [torch.full((channels, size, size), i, dtype=torch.uint8) for i in range(n)]
    boxes = [torch.tensor([[float(i), 1.0, float(i) + 2, 3.0]] * (i % 3)).reshape(-1, 4) for i in range(n)]
    labels = [torch.full((i % 3,), 1 + i % 2, dtype=torch.int64) for i in range(n)]
    return LabelledSet(images, boxes, labels, ("open", "short"), names=tuple(f"img{i}" for i in range(n)))


def traced(batch):
    return batch.images[:, 0, 0, 0].tolist()


def test_labelled_source_batches_shapes_and_resize_once():
    source = LabelledSource(numbered_set(), image_size=40, seed=1)
    assert len(source) == 7 and source.class_names == ("open", "short") and source.channels == 3
    batches = list(source.epoch(0, 3))
    assert [len(b.images) for b in batches] == [3, 3, 1]
    for batch in batches:
        assert batch.images.shape[1:] == (3, 40, 40) and batch.images.dtype == torch.uint8
        for i, boxes, labels in zip(traced(batch), batch.boxes, batch.labels):
            assert boxes.tolist() == [[2.0 * i, 2, 2.0 * i + 4, 6]] * (i % 3)   # scaled with the 20 -> 40 resize
            assert labels.tolist() == [1 + i % 2] * (i % 3) and labels.dtype == torch.int64


def test_labelled_source_order_depends_on_seed_and_epoch_only():
    a, b = LabelledSource(numbered_set(), 20, seed=5), LabelledSource(numbered_set(), 20, seed=5)
    order = lambda s, e, bs=3: [i for batch in s.epoch(e, bs) for i in traced(batch)]  # noqa: E731
    assert order(a, 0) == order(b, 0) and order(a, 3) == order(b, 3)
    assert sorted(order(a, 0)) == list(range(7))                # every image once per epoch
    assert order(a, 0) == order(a, 0, bs=2)                     # the order does not depend on the batch size
    assert len({tuple(order(a, e)) for e in range(6)}) > 1      # epochs reshuffle
    assert order(a, 0) != order(LabelledSource(numbered_set(), 20, seed=6), 0)
    assert order(a, 0) == epoch_order(7, 5, 0, "labelled-order").tolist()
    with pytest.raises(ValueError, match="epoch"):
        next(a.epoch(-1, 2))
    with pytest.raises(ValueError, match="batch_size"):
        next(a.epoch(0, 0))


def test_labelled_source_agnostic_and_bad_input():
    source = LabelledSource(numbered_set(), 20, agnostic=True)
    assert source.class_names == (AGNOSTIC_CLASS,)
    assert all((lab == 1).all() for batch in source.epoch(0, 7) for lab in batch.labels)
    with pytest.raises(ValueError, match="empty"):
        LabelledSource(numbered_set().subset([]), 20)
    with pytest.raises(TypeError, match="LabelledSet"):
        LabelledSource(torch.zeros(2, 3, 8, 8), 8)


@pytest.fixture(scope="module")
def ok():
    return default_images(48, 6)


def test_synthetic_source_boxes_match_the_operators_defect_batch(ok):
    source = SyntheticSource(ok, ["cutpaste", "scar"], image_size=48, seed=2)
    assert source.class_names == ("cutpaste", "scar") and len(source) == 6
    assert torch.equal(source.ok_images, ok) and isinstance(source.op, OneOf)
    indices = torch.tensor([4, 0, 2])
    batch = source.make(indices, seed=11)
    reference = source.op(ok[indices], generator=torch.Generator().manual_seed(11))
    assert torch.equal(batch.images, reference.image)
    for j in range(3):
        keep = reference.box_index == j
        assert torch.equal(batch.boxes[j], reference.boxes[keep])
        assert torch.equal(batch.labels[j], reference.box_label[keep])   # OneOf labels 1, 2 are already 1..K


def test_synthetic_source_same_seed_same_batches_new_defects_each_epoch(ok):
    make = lambda seed: SyntheticSource(ok, "cutpaste", image_size=48, seed=seed)  # noqa: E731
    a, b = make(0), make(0)
    first = list(a.epoch(0, 4))
    again = list(b.epoch(0, 4))
    assert [len(x.images) for x in first] == [4, 2]
    for x, y in zip(first, again):
        assert torch.equal(x.images, y.images) and all(torch.equal(p, q) for p, q in zip(x.boxes, y.boxes))
    later = torch.cat([x.images for x in a.epoch(1, 4)])
    assert not torch.equal(torch.cat([x.images for x in first]), later)
    other = torch.cat([x.images for x in make(1).epoch(0, 4)])
    assert not torch.equal(torch.cat([x.images for x in first]), other)
    for batch in first:
        assert all(len(boxes) == 1 for boxes in batch.boxes) and all(lab.tolist() == [1] for lab in batch.labels)


def test_synthetic_source_untouched_images_have_no_boxes(ok):
    never = SyntheticSource(ok, Cutout(p=0.0), image_size=48, seed=0)
    images = torch.cat([b.images for b in never.epoch(0, 4)])
    assert all(len(boxes) == 0 for b in never.epoch(0, 4) for boxes in b.boxes)
    # with no defects every OK image comes back as it was, each once per epoch
    assert sorted(map(bytes, images.flatten(1).numpy())) == sorted(map(bytes, ok.flatten(1).numpy()))
    half = SyntheticSource(ok, Cutout(p=0.5, label=3), image_size=48, seed=4)
    assert half.class_names == ("cutout",)
    counts = []
    for batch in half.epoch(0, 6):
        for image, boxes, labels in zip(batch.images, batch.boxes, batch.labels):
            counts.append(len(boxes))
            untouched = any(torch.equal(image, o) for o in ok)
            assert untouched == (len(boxes) == 0)
            assert labels.tolist() == [1] * len(boxes)   # operator label 3 is class id 1 of 1
    assert 0 in counts and 1 in counts


def test_synthetic_source_inputs(ok, tmp_path):
    for i, image in enumerate(ok[:3]):
        cv2.imwrite(str(tmp_path / f"{i}.png"), image.permute(1, 2, 0).numpy()[:, :, ::-1])
    from_folder = SyntheticSource(tmp_path, "cutout", image_size=32, channels=1, seed=0)
    assert from_folder.ok_images.shape == (3, 1, 32, 32)
    assert next(from_folder.epoch(0, 3)).images.shape == (3, 1, 32, 32)
    named = SyntheticSource(ok, ["cutpaste", "scar"], image_size=48, class_names=["short", "open"])
    assert named.class_names == ("short", "open")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("op: one_of\nops: [cutpaste, scar]\nlabels: [1, 2]\nclass_names: {1: short, 2: open}\n")
    from_recipe = SyntheticSource(ok, recipe=recipe, image_size=48)
    assert from_recipe.class_names == ("short", "open") and isinstance(from_recipe.op, OneOf)
    agnostic = SyntheticSource(ok, ["cutpaste", "scar"], image_size=48, agnostic=True)
    assert agnostic.class_names == (AGNOSTIC_CLASS,)
    assert all((lab == 1).all() for b in agnostic.epoch(0, 6) for lab in b.labels)
    with pytest.raises(ValueError, match="either as ops"):
        SyntheticSource(ok, image_size=48)
    with pytest.raises(TypeError, match="uint8"):
        SyntheticSource(ok.float() / 255, "cutout", image_size=48)
    with pytest.raises(ValueError, match="channels"):
        SyntheticSource(ok, "cutout", image_size=48, channels=1)
    with pytest.raises(ValueError, match=r"\(N, C, 32, 32\)"):
        SyntheticSource(ok, "cutout", image_size=32)


def test_mixed_source_holds_both_kinds_every_item_once():
    synthetic = SyntheticSource(default_images(20, 6), ["cutpaste", "scar"], image_size=20, seed=1)
    real = LabelledSource(numbered_set(5, size=20).mapped({}, ("short", "open")), 20, seed=1)
    mixed = MixedSource(synthetic, real)
    assert len(mixed) == 11 and mixed.class_names == ("cutpaste", "scar", "short", "open")
    seen_real, seen_synthetic = [], 0
    for batch in mixed.epoch(0, 4):
        assert batch.images.shape[1:] == (3, 20, 20) and len(batch.boxes) == len(batch.labels) == len(batch.images)
        for image, boxes, labels in zip(batch.images, batch.boxes, batch.labels):
            if (image == image.flatten()[0]).all() and int(image.flatten()[0]) < 5:   # a numbered real image
                i = int(image.flatten()[0])
                seen_real.append(i)
                assert labels.tolist() == [4 - i % 2] * (i % 3)   # open -> 4, short -> 3 by name
            else:
                seen_synthetic += 1
                assert len(boxes) == 1 and labels.tolist()[0] in (1, 2)
    assert sorted(seen_real) == list(range(5)) and seen_synthetic == 6
    first = [b.images for b in mixed.epoch(2, 4)]
    again = [b.images for b in MixedSource(synthetic, real).epoch(2, 4)]
    assert all(torch.equal(x, y) for x, y in zip(first, again))


def test_mixed_source_checks_and_mix_helper():
    synthetic = SyntheticSource(default_images(20, 6), "cutpaste", image_size=20, seed=1)
    with pytest.raises(ValueError, match="agnostic"):
        MixedSource(synthetic, LabelledSource(numbered_set(), 20, agnostic=True))
    with pytest.raises(ValueError, match="image_size"):
        MixedSource(synthetic, LabelledSource(numbered_set(), 24))
    mixed = mix(synthetic, numbered_set(), k=3)
    assert len(mixed) == 6 + 3 and mixed.real.names == choose_real(numbered_set(), 3, synthetic.seed).names


def test_choose_real_is_reproducible_and_nested():
    labelled = numbered_set(20)
    a, b = choose_real(labelled, 5, seed=3), choose_real(labelled, 5, seed=3)
    assert a.names == b.names and len(a) == 5 and list(a.names) == sorted(a.names, key=labelled.names.index)
    assert set(choose_real(labelled, 2, seed=3).names) <= set(a.names)
    assert any(choose_real(labelled, 5, seed=s).names != a.names for s in range(4, 8))
    assert len(choose_real(labelled, 0, seed=3)) == 0 and len(choose_real(labelled, 20, seed=3)) == 20
    with pytest.raises(ValueError, match="only 20 images"):
        choose_real(labelled, 21, seed=0)


def test_source_from_a_generated_folder(ok, tmp_path):
    folder = tmp_path / "ok"
    folder.mkdir()
    for i, image in enumerate(ok[:3]):
        cv2.imwrite(str(folder / f"{i}.png"), image.permute(1, 2, 0).numpy()[:, :, ::-1])
    generate(folder, tmp_path / "gen", ops=["cutpaste", "cutout"], count=6, formats=["coco"], size=48, seed=0,
             batch_size=6, progress=False)
    source = source_from_folder(tmp_path / "gen", image_size=24, seed=0)
    assert len(source) == 6 and source.class_names == ("cutpaste", "cutout") and source.image_size == 24
    batch = next(source.epoch(0, 6))
    assert batch.images.shape == (6, 3, 24, 24) and sum(len(b) for b in batch.boxes) == 6
    with pytest.raises(ValueError, match="YOLO or COCO"):
        source_from_folder(tmp_path / "gen", 24, format="mvtec")


@pytest.mark.cuda
def test_sources_stay_on_the_device(ok):
    synthetic = SyntheticSource(ok, "cutpaste", image_size=48, device="cuda", seed=0)
    real = LabelledSource(numbered_set(size=48), 48, device="cuda")
    for batch in MixedSource(synthetic, real).epoch(0, 5):
        assert batch.images.is_cuda and all(b.is_cuda for b in batch.boxes) and all(lab.is_cuda for lab in batch.labels)


def test_several_defects_per_image_and_box_margin(ok):
    one = SyntheticSource(ok, op=Cutout(), image_size=48, seed=3)
    three = SyntheticSource(ok, op=Cutout(), image_size=48, seed=3, defects_per_image=3)
    index = torch.arange(4)
    first, batch = one.make(index, 11), three.make(index, 11)
    assert [len(b) for b in batch.boxes] == [3, 3, 3, 3]
    for a, b in zip(first.boxes, batch.boxes):  # the first pass is the one-defect batch's
        assert torch.equal(a[0], b[0])
    assert not torch.equal(first.images, batch.images)
    wide = SyntheticSource(ok, op=Cutout(), image_size=48, seed=3, box_margin_px=2.5).make(index, 11)
    for a, b in zip(first.boxes, wide.boxes):
        torch.testing.assert_close(b, (a + torch.tensor([-2.5, -2.5, 2.5, 2.5])).clamp(0, 48))
    with pytest.raises(ValueError, match="defects_per_image"):
        SyntheticSource(ok, op=Cutout(), image_size=48, defects_per_image=0)
