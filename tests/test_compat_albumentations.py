"""DefectTransform: a defectgen operator inside albumentations' Compose, with masks, boxes and seeds."""
import importlib
import sys

import numpy as np
import pytest
import torch

A = pytest.importorskip("albumentations")

from defectgen import Cutout, create_op  # noqa: E402
from defectgen.compat.albumentations import DefectTransform  # noqa: E402

FORMATS = ["pascal_voc", "coco", "yolo", "albumentations"]
H, W = 40, 48


def make_image(channels=3, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    shape = (H, W) if channels is None else (H, W, channels)
    if dtype == np.uint8:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.random(shape, dtype=np.float32)


def compose(transforms, fmt="pascal_voc", seed=0, **kwargs):
    return A.Compose(transforms, bbox_params=A.BboxParams(format=fmt, label_fields=["labels"]),
                     additional_targets={"defect_mask": "mask"}, seed=seed, **kwargs)


def tight_box(mask):
    """xyxy pixel-edge box of a mask's True pixels."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def to_format(box, fmt):
    x1, y1, x2, y2 = box
    if fmt == "pascal_voc":
        return [x1, y1, x2, y2]
    if fmt == "coco":
        return [x1, y1, x2 - x1, y2 - y1]
    if fmt == "yolo":
        return [(x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H]
    return [x1 / W, y1 / H, x2 / W, y2 / H]


def test_defect_matches_the_operator_and_keeps_outside_pixels():
    image = make_image()
    transform = DefectTransform("cutpaste")
    out = compose([transform])(image=image, bboxes=[], labels=[])
    mask = out["defect_mask"].astype(bool)
    assert out["defect_mask"].dtype == np.uint8 and mask.shape == (H, W) and mask.any()
    assert out["image"].dtype == np.uint8 and out["image"].shape == image.shape
    assert np.array_equal(out["image"][~mask], image[~mask])
    assert not np.array_equal(out["image"][mask], image[mask])
    assert out["defect_label"] == 1
    # the seed the transform drew reproduces the call with the operator itself
    seed = transform.get_applied_params()["defect_seed"]
    direct = create_op("cutpaste")(torch.from_numpy(image).permute(2, 0, 1)[None], seed=seed)
    assert np.array_equal(direct.image[0].permute(1, 2, 0).numpy(), out["image"])
    assert np.array_equal(direct.mask[0, 0].numpy(), mask)


def test_same_compose_seed_repeats_and_other_seeds_differ():
    image = make_image()

    def run(seed):
        transform = compose([DefectTransform("cutpaste"), A.HorizontalFlip(p=0.5)], seed=seed)
        return [transform(image=image, bboxes=[], labels=[]) for _ in range(3)]

    first, again, other = run(7), run(7), run(8)
    for a, b in zip(first, again):
        assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["defect_mask"], b["defect_mask"])
        assert np.allclose(a["bboxes"], b["bboxes"])
    assert not all(np.array_equal(a["defect_mask"], c["defect_mask"]) for a, c in zip(first, other))
    # successive calls of one Compose draw new defects
    assert not np.array_equal(first[0]["defect_mask"], first[1]["defect_mask"])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("with_user_box", [False, True])
def test_boxes_in_the_compose_format(fmt, with_user_box):
    image = make_image()
    user_box = to_format([2, 3, 12, 15], fmt)
    bboxes, labels = ([user_box], [5]) if with_user_box else ([], [])
    out = compose([DefectTransform(Cutout())], fmt=fmt)(image=image, bboxes=bboxes, labels=labels)
    reference = compose([A.NoOp()], fmt=fmt)(image=image, bboxes=bboxes, labels=labels)  # the user's boxes alone
    expected_defect = to_format(tight_box(out["defect_mask"]), fmt)
    assert len(out["bboxes"]) == len(bboxes) + 1
    if with_user_box:
        assert np.array_equal(np.asarray(out["bboxes"][0]), np.asarray(reference["bboxes"][0]))
    assert np.allclose(out["bboxes"][-1], expected_defect, atol=1e-5)
    assert list(out["labels"]) == labels + [1]


def test_horizontal_flip_moves_image_mask_and_boxes_together():
    image = make_image()
    plain = compose([DefectTransform("cutpaste")], seed=3)(image=image, bboxes=[[2, 3, 12, 15]], labels=[4])
    flipped = compose([DefectTransform("cutpaste"), A.HorizontalFlip(p=1)], seed=3)(
        image=image, bboxes=[[2, 3, 12, 15]], labels=[4])
    assert np.array_equal(flipped["image"], plain["image"][:, ::-1])
    assert np.array_equal(flipped["defect_mask"], plain["defect_mask"][:, ::-1])
    x1, y1, x2, y2 = plain["bboxes"][-1]
    assert np.allclose(flipped["bboxes"][-1], [W - x2, y1, W - x1, y2], atol=1e-5)
    assert np.allclose(flipped["bboxes"][-1], tight_box(flipped["defect_mask"]), atol=1e-5)
    assert list(flipped["labels"]) == [4, 1]


@pytest.mark.parametrize("channels,dtype", [(None, np.uint8), (1, np.uint8), (3, np.float32), (1, np.float32)])
def test_gray_colour_uint8_float(channels, dtype):
    image = make_image(channels, dtype)
    out = A.Compose([DefectTransform("cutout")], seed=0)(image=image)
    mask = out["defect_mask"].astype(bool)
    assert out["image"].shape == image.shape and out["image"].dtype == image.dtype
    assert mask.any() and np.array_equal(out["image"][~mask], image[~mask])


def test_user_masks_and_keypoints_pass_through_unchanged():
    image = make_image()
    user_mask = (make_image(None) > 128).astype(np.uint8)
    masks = [user_mask, 1 - user_mask]
    keypoints = np.array([[5.0, 6.0], [30.0, 20.0]])
    out = A.Compose([DefectTransform("cutpaste")], keypoint_params=A.KeypointParams(format="xy"), seed=0)(
        image=image, mask=user_mask, masks=masks, keypoints=keypoints)
    assert np.array_equal(out["mask"], user_mask)
    assert all(np.array_equal(a, b) for a, b in zip(out["masks"], masks))
    assert np.allclose(out["keypoints"], keypoints)
    assert out["defect_mask"].any()


def test_not_applied_gives_the_same_keys_with_no_defect():
    image = make_image()
    out = compose([DefectTransform("cutpaste", p=0.0)])(image=image, bboxes=[], labels=[])
    assert np.array_equal(out["image"], image)
    assert out["defect_mask"].shape == (H, W) and not out["defect_mask"].any()
    assert out["defect_label"] == 0 and len(out["bboxes"]) == 0
    out = A.Compose([DefectTransform(Cutout(p=0.0))], seed=0)(image=image)  # the operator's own p
    assert out["defect_label"] == 0 and not out["defect_mask"].any() and np.array_equal(out["image"], image)


def test_two_defect_transforms_union_their_masks_and_boxes():
    image = make_image()
    out = compose([DefectTransform(Cutout(label=1)), DefectTransform(Cutout(label=2))])(
        image=image, bboxes=[], labels=[])
    assert list(out["labels"]) == [1, 2] and len(out["bboxes"]) == 2 and out["defect_label"] == 2
    covered = np.zeros((H, W), dtype=bool)
    for x1, y1, x2, y2 in np.round(np.asarray(out["bboxes"])).astype(int):
        covered[y1:y2, x1:x2] = True
    mask = out["defect_mask"].astype(bool)
    assert np.array_equal(mask & covered, mask)  # every defect pixel lies in a box
    assert np.array_equal(out["image"][~mask], image[~mask])


def test_string_labels_need_box_labels():
    image = make_image()
    named = compose([DefectTransform("cutout", box_labels={"labels": {1: "defect"}})])
    out = named(image=image, bboxes=[[2, 3, 12, 15]], labels=["scratch"])
    assert list(out["labels"]) == ["scratch", "defect"]
    out = named(image=image, bboxes=[], labels=[])
    assert list(out["labels"]) == ["defect"]
    unnamed = compose([DefectTransform("cutout")])
    with pytest.raises(ValueError, match="box_labels"):
        unnamed(image=image, bboxes=[[2, 3, 12, 15]], labels=["scratch"])


def test_bboxes_key_may_be_left_out():
    out = compose([DefectTransform("cutout")])(image=make_image(), labels=[])
    assert np.allclose(out["bboxes"][0], tight_box(out["defect_mask"])) and list(out["labels"]) == [1]


def test_numpy_labels_keep_their_dtype():
    image = make_image()
    out = compose([DefectTransform("cutout")])(image=image, bboxes=np.zeros((0, 4)), labels=np.zeros(0, np.int64))
    assert isinstance(out["labels"], np.ndarray) and out["labels"].dtype == np.int64 and out["labels"].tolist() == [1]


def test_boxes_need_bbox_params_and_label_fields():
    image = make_image()
    out = A.Compose([DefectTransform("cutout")], seed=0)(image=image)  # no bbox_params: mask only
    assert "bboxes" not in out and out["defect_mask"].any()
    inline = A.Compose([DefectTransform("cutout")], bbox_params=A.BboxParams(format="pascal_voc"), seed=0)
    out = inline(image=image, bboxes=[])
    assert np.allclose(out["bboxes"][0], tight_box(out["defect_mask"]))
    with pytest.raises(ValueError, match="label_fields"):
        inline(image=image, bboxes=[[2, 3, 12, 15, 7]])  # the class in an extra column


def test_op_from_name_or_config_and_bad_arguments():
    assert isinstance(DefectTransform({"op": "scar", "width_px_range": [2, 4]}).op, create_op("scar").__class__)
    with pytest.raises(TypeError, match="op must be"):
        DefectTransform(3)
    with pytest.raises(ValueError, match="unknown op"):
        DefectTransform("no_such_op")
    with pytest.raises(ValueError, match="mask_key"):
        DefectTransform("cutout", mask_key="mask")
    with pytest.raises(ValueError, match="differ"):
        DefectTransform("cutout", mask_key="a", label_key="a")
    with pytest.raises(TypeError, match="box_labels"):
        DefectTransform("cutout", box_labels=["labels"])
    with pytest.raises(ValueError, match="p must be"):
        DefectTransform("cutout", p=2)
    transform = A.Compose([DefectTransform("cutout")], seed=0)
    with pytest.raises(TypeError, match="uint8 or float32"):
        transform(image=np.zeros((H, W, 3), np.uint16))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        transform(image=np.zeros((H, W, 4), np.uint8))
    with pytest.raises(ValueError, match="needs the data to have an 'image'"):
        transform(images=np.zeros((2, H, W, 3), np.uint8))


def test_serialisation_round_trip_gives_the_same_output():
    image = make_image()
    transform = compose([DefectTransform({"op": "scar", "fill": "random"}, box_labels={"labels": {1: 9}})], seed=5)
    rebuilt = A.from_dict(A.to_dict(transform))
    rebuilt.set_random_seed(5)
    a = transform(image=image, bboxes=[], labels=[])
    b = rebuilt(image=image, bboxes=[], labels=[])
    assert np.array_equal(a["image"], b["image"]) and list(b["labels"]) == [9]


def test_replay_compose_replays_the_defect():
    image = make_image()
    transform = A.ReplayCompose([DefectTransform("cutpaste"), A.HorizontalFlip()],
                                additional_targets={"defect_mask": "mask"})
    out = transform(image=image)
    again = A.ReplayCompose.replay(out["replay"], image=image)
    assert out["defect_mask"].any()
    assert np.array_equal(out["image"], again["image"]) and np.array_equal(out["defect_mask"], again["defect_mask"])


class _Items(torch.utils.data.Dataset):
    def __init__(self, transform):
        self.transform, self.image = transform, make_image()

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return torch.from_numpy(self.transform(image=self.image)["defect_mask"])


def test_dataloader_workers_draw_different_defects():
    """albumentations 2.0 copies one generator into every worker; the defects must still differ."""
    torch.manual_seed(0)
    data = _Items(A.Compose([DefectTransform("cutpaste")], seed=0))
    masks = list(torch.utils.data.DataLoader(data, batch_size=1, num_workers=2))
    assert not torch.equal(masks[0], masks[1])  # items 0 and 1 come from different workers' first calls
    torch.manual_seed(0)
    again = list(torch.utils.data.DataLoader(data, batch_size=1, num_workers=2))
    assert all(torch.equal(a, b) for a, b in zip(masks, again))  # reproducible under a fixed torch seed


def test_missing_albumentations_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "albumentations", None)  # makes `import albumentations` fail
    monkeypatch.delitem(sys.modules, "defectgen.compat.albumentations")
    with pytest.raises(ImportError, match=r"pip install 'defectgen\[albumentations\]'"):
        importlib.import_module("defectgen.compat.albumentations")


def test_normalised_float_images_and_the_config_round_trip():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    unit = make_image().astype(np.float32) / 255
    normalised = (unit - np.array(mean, np.float32)) / np.array(std, np.float32)
    transform = DefectTransform("cutpaste", mean=mean, std=std)
    out = compose([transform])(image=normalised, bboxes=[], labels=[])
    seed = transform.get_applied_params()["defect_seed"]
    direct = create_op("cutpaste")(torch.from_numpy(unit).permute(2, 0, 1)[None], seed=seed)
    expected = (direct.image[0].permute(1, 2, 0).numpy() - np.array(mean, np.float32)) / np.array(std, np.float32)
    assert np.allclose(out["image"], expected, atol=1e-5)
    mask = out["defect_mask"].astype(bool)
    assert np.array_equal(out["image"][~mask], normalised[~mask])
    rebuilt = A.from_dict(A.to_dict(A.Compose([transform])))
    assert rebuilt.transforms[0].space == {"mean": mean, "std": std}
    with pytest.raises(ValueError, match="declared in value_range"):
        compose([DefectTransform("cutpaste")])(image=normalised, bboxes=[], labels=[])
