"""DefectTransformV2: a defectgen operator as a torchvision.transforms.v2 transform returning tv_tensors."""
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from conftest import make_images
from defectgen import CutPaste, Cutout, create_op
from defectgen.compat.torchvision import DefectTransformV2

H, W = 40, 48


def image(dtype=torch.uint8, channels=3, seed=0):
    return make_images(batch=1, channels=channels, height=H, width=W, dtype=dtype, seed=seed)[0]


def tight_box(mask):
    ys, xs = torch.nonzero(mask.reshape(mask.shape[-2:]), as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("wrap", [True, False])
def test_single_image_outputs(dtype, channels, wrap):
    x = image(dtype, channels)
    out = DefectTransformV2("cutpaste", seed=0)(tv_tensors.Image(x) if wrap else x)
    assert set(out) == {"image", "mask", "boxes", "labels", "label"}
    assert type(out["image"]) is tv_tensors.Image and out["image"].dtype == dtype and out["image"].shape == x.shape
    assert type(out["mask"]) is tv_tensors.Mask and out["mask"].dtype == torch.bool and out["mask"].shape == (1, H, W)
    assert type(out["boxes"]) is tv_tensors.BoundingBoxes and out["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY
    assert tuple(out["boxes"].canvas_size) == (H, W)
    mask = out["mask"][0]
    assert mask.any() and torch.equal(out["image"][:, ~mask], x[:, ~mask])  # outside the mask: untouched
    assert torch.equal(out["boxes"][0].as_subclass(torch.Tensor), tight_box(mask))  # one tight box
    assert out["labels"].tolist() == [1] and out["label"].ndim == 0 and out["label"].item() == 1


def test_input_is_not_modified():
    x = image()
    before = x.clone()
    DefectTransformV2("cutpaste", seed=0)(x)
    assert torch.equal(x, before)


def test_flip_after_the_defect_moves_mask_and_boxes():
    x = image()
    plain = DefectTransformV2("cutpaste", seed=4)(x)
    flipped = v2.Compose([DefectTransformV2("cutpaste", seed=4), v2.RandomHorizontalFlip(p=1)])(x)
    assert torch.equal(flipped["image"], plain["image"].flip(-1))
    assert torch.equal(flipped["mask"], plain["mask"].flip(-1))
    x1, y1, x2, y2 = plain["boxes"][0].tolist()
    assert flipped["boxes"][0].tolist() == [W - x2, y1, W - x1, y2]
    assert torch.equal(flipped["boxes"][0].as_subclass(torch.Tensor), tight_box(flipped["mask"]))
    assert torch.equal(flipped["labels"], plain["labels"]) and torch.equal(flipped["label"], plain["label"])


def test_resize_and_sanitize_keep_boxes_consistent():
    out = v2.Compose([DefectTransformV2(Cutout(), seed=1), v2.Resize((2 * H, 2 * W)),
                      v2.SanitizeBoundingBoxes()])(image())
    assert out["mask"].shape == (1, 2 * H, 2 * W)
    assert torch.equal(out["boxes"][0].as_subclass(torch.Tensor), tight_box(out["mask"]))


def test_batch_equals_the_batched_operator_call():
    images = make_images(batch=4, channels=3, height=H, width=W, dtype=torch.uint8)
    out = DefectTransformV2("cutpaste", seed=5)(tv_tensors.Image(images))
    direct = create_op("cutpaste")(images, generator=torch.Generator().manual_seed(5))
    assert out["image"].shape == images.shape and out["mask"].shape == (4, 1, H, W)
    assert torch.equal(out["image"], direct.image) and torch.equal(out["mask"], direct.mask)
    assert torch.equal(out["boxes"].as_subclass(torch.Tensor), direct.boxes)
    assert torch.equal(out["box_index"], direct.box_index) and torch.equal(out["label"], direct.label)
    flipped = v2.RandomHorizontalFlip(p=1)(out)
    assert torch.equal(flipped["mask"], out["mask"].flip(-1))


@pytest.mark.cuda
def test_cuda_batch_stays_on_the_device_and_matches_cpu():
    images = make_images(batch=3, channels=3, height=H, width=W, dtype=torch.uint8)
    cpu = DefectTransformV2("cutpaste", seed=1)(images)
    gpu = DefectTransformV2("cutpaste", seed=1)(images.cuda())  # a CPU generator: the same draws
    assert gpu["image"].device.type == "cuda" and gpu["mask"].device.type == "cuda"
    assert torch.equal(gpu["mask"].cpu(), cpu["mask"]) and torch.equal(gpu["boxes"].cpu(), cpu["boxes"])
    assert (gpu["image"].cpu().int() - cpu["image"].int()).abs().max() <= 1  # colour jitter rounding


def test_seed_repeats_and_differs():
    x = image()
    a, b, c = DefectTransformV2("cutpaste", seed=3), DefectTransformV2("cutpaste", seed=3), DefectTransformV2(
        "cutpaste", seed=4)
    first, again, other = [a(x) for _ in range(3)], [b(x) for _ in range(3)], [c(x) for _ in range(3)]
    assert all(torch.equal(p["image"], q["image"]) for p, q in zip(first, again))
    assert not torch.equal(first[0]["mask"], first[1]["mask"])  # successive calls draw new defects
    assert not all(torch.equal(p["mask"], q["mask"]) for p, q in zip(first, other))


def test_without_seed_the_operators_own_generator_is_used():
    x = image()
    transform = DefectTransformV2(CutPaste(seed=11))
    reference = CutPaste(seed=11)
    for _ in range(2):
        assert torch.equal(transform(x)["image"], reference(x[None]).image[0])


def test_explicit_generator():
    x = image()
    out = DefectTransformV2("cutpaste", generator=torch.Generator().manual_seed(2))(x)
    assert torch.equal(out["image"], create_op("cutpaste")(x[None], seed=2).image[0])


def test_dict_input_extends_existing_entries():
    x = image()
    earlier = tv_tensors.BoundingBoxes([[24.0, 20.0, 8.0, 6.0]], format="CXCYWH", canvas_size=(H, W))
    previous_mask = tv_tensors.Mask(torch.zeros(1, H, W, dtype=torch.bool))
    previous_mask[0, :2, :2] = True
    sample = {"image": tv_tensors.Image(x), "boxes": earlier, "labels": torch.tensor([7]), "mask": previous_mask,
              "label": torch.tensor(0), "id": "part-17"}
    out = DefectTransformV2(Cutout(label=3), seed=0)(sample)
    alone = DefectTransformV2(Cutout(label=3), seed=0)(x)
    assert out["id"] == "part-17" and out["labels"].tolist() == [7, 3] and out["label"].item() == 3
    assert out["boxes"].format == tv_tensors.BoundingBoxFormat.CXCYWH and out["boxes"].shape == (2, 4)
    assert out["boxes"][0].tolist() == earlier[0].tolist()
    as_xyxy = v2.functional.convert_bounding_box_format(out["boxes"], new_format="XYXY")
    assert torch.allclose(as_xyxy[1], alone["boxes"][0])
    assert torch.equal(out["mask"], previous_mask | alone["mask"])
    assert type(out["mask"]) is tv_tensors.Mask


def test_bad_inputs():
    transform = DefectTransformV2("cutout", seed=0)
    with pytest.raises(TypeError, match="tv_tensors.Image or a tensor"):
        transform([1, 2, 3])
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        transform(torch.zeros(H, W))
    with pytest.raises(ValueError, match="'image' entry"):
        transform({"img": image()})
    with pytest.raises(TypeError, match="one input"):
        transform(image(), {"labels": torch.tensor([1])})
    with pytest.raises(TypeError, match="BoundingBoxes"):
        transform({"image": image(), "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)})
    with pytest.raises(ValueError, match="together"):
        transform({"image": image(), "labels": torch.zeros(0, dtype=torch.int64)})
    with pytest.raises(TypeError, match="Mask"):
        transform(tv_tensors.Mask(torch.zeros(1, H, W, dtype=torch.uint8)))
    with pytest.raises(ValueError, match="channels"):
        transform(torch.zeros(2, H, W))
    with pytest.raises(ValueError, match="not both"):
        DefectTransformV2("cutout", seed=1, generator=torch.Generator())
    with pytest.raises(TypeError, match="seed"):
        DefectTransformV2("cutout", seed="1")


class _Items(torch.utils.data.Dataset):
    def __init__(self):
        self.transform, self.image = DefectTransformV2("cutpaste", seed=0), image()

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return self.transform(self.image)["mask"].as_subclass(torch.Tensor)


def test_seeded_transform_differs_between_dataloader_workers():
    torch.manual_seed(0)
    masks = list(torch.utils.data.DataLoader(_Items(), batch_size=1, num_workers=2))
    assert not torch.equal(masks[0], masks[1])
    torch.manual_seed(0)
    again = list(torch.utils.data.DataLoader(_Items(), batch_size=1, num_workers=2))
    assert all(torch.equal(a, b) for a, b in zip(masks, again))


def test_importing_defectgen_loads_no_adapter_library():
    """The adapters are opt-in: `import defectgen` (and its compat package) must not pull them in."""
    import subprocess
    import sys

    code = ("import sys, defectgen, defectgen.compat, defectgen.dataset; "
            "print(sorted(m for m in ('albumentations', 'torchvision.transforms.v2') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_normalised_images_get_defects_in_their_own_space():
    """After v2.Normalize: the transform passes mean/std on, so the defect is the [0, 1] one, normalised."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    unit = image(torch.float32)
    normalised = v2.Normalize(mean, std)(unit)
    out = DefectTransformV2("cutpaste", seed=3, mean=mean, std=std)(normalised)
    reference = DefectTransformV2("cutpaste", seed=3)(unit)
    expected = v2.Normalize(mean, std)(reference["image"].as_subclass(torch.Tensor))
    torch.testing.assert_close(out["image"].as_subclass(torch.Tensor), expected, atol=1e-5, rtol=0)
    assert torch.equal(out["mask"], reference["mask"]) and "mean=" in repr(DefectTransformV2("scar", mean=0.5,
                                                                                            std=0.2))
    with pytest.raises(ValueError, match="mean= and std="):
        DefectTransformV2("cutpaste", seed=3)(normalised)
    with pytest.raises(ValueError, match="come together"):
        DefectTransformV2("cutpaste", mean=mean)
