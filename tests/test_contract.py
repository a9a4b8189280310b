"""The operator contract (DESIGN.md section 2), checked on every registered operator."""
import pytest
import torch

from defectgen import DefectBatch, create_op, list_ops

from conftest import make_images
from op_cases import CROSS_SAMPLE, NETWORK_PIXELS, OP_CASES, SINGLE_INSTANCE, cases


def test_every_op_has_a_case():
    assert set(list_ops()) == set(OP_CASES), "add the new operator to tests/op_cases.py"


def check_boxes(out: DefectBatch, single_instance: bool):
    """Every box is tight around mask pixels of its sample, every mask pixel lies in a box of its sample."""
    b = out.image.shape[0]
    assert out.boxes.dtype == torch.float32 and out.boxes.shape == (len(out.box_index), 4)
    assert out.box_index.dtype == torch.long and out.box_label.dtype == torch.long
    assert torch.all(out.box_index[1:] >= out.box_index[:-1]), "box_index must be sorted"
    for i in range(b):
        m = out.mask[i, 0].cpu()
        boxes = out.boxes[out.box_index == i].cpu().long()
        labels = out.box_label[out.box_index == i].cpu()
        assert bool(m.any()) == (int(out.label[i]) > 0), "a sample is defective iff its mask is non-empty"
        if single_instance:
            assert len(boxes) == int(m.any())
        covered = torch.zeros_like(m)
        for (x1, y1, x2, y2), lab in zip(boxes.tolist(), labels.tolist()):
            assert 0 <= x1 < x2 <= m.shape[1] and 0 <= y1 < y2 <= m.shape[0]
            region = m[y1:y2, x1:x2]
            assert region[0].any() and region[-1].any() and region[:, 0].any() and region[:, -1].any(), "box not tight"
            covered[y1:y2, x1:x2] = True
            assert lab == int(out.label[i])
        assert not (m & ~covered).any(), "mask pixels outside every box"


def check_contract(out: DefectBatch, images: torch.Tensor):
    b, c, h, w = images.shape
    assert out.image.shape == images.shape and out.image.dtype == images.dtype
    assert out.image.device == images.device and out.mask.device == images.device
    assert out.mask.shape == (b, 1, h, w) and out.mask.dtype == torch.bool
    assert out.label.shape == (b,) and out.label.dtype == torch.long
    outside = ~out.mask.expand_as(images)
    assert torch.equal(out.image[outside], images[outside]), "pixels outside the mask changed"
    if out.target is not None:  # graded labels (NSA): float32 in [0, 1], 0 wherever the image is the input's
        assert out.target.shape == (b, 1, h, w) and out.target.dtype == torch.float32
        assert out.target.device == images.device
        assert bool(((out.target >= 0) & (out.target <= 1)).all()), "target outside [0, 1]"
        assert not out.target[~out.mask].any(), "target non-zero outside the mask"


@pytest.mark.parametrize("name,kwargs", cases())
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.float32])
@pytest.mark.parametrize("channels", [1, 3])
def test_contract(name, kwargs, dtype, channels):
    images = make_images(batch=6, channels=channels, dtype=dtype)
    before = images.clone()
    op = create_op(name, **kwargs)
    out = op(images, generator=torch.Generator().manual_seed(1))
    assert torch.equal(images, before), "the input was modified"
    assert out.image.data_ptr() != images.data_ptr()
    check_contract(out, images)
    check_boxes(out, name in SINGLE_INSTANCE)
    assert out.mask.any(), "no defect at all in a batch of 6: the case tests nothing"


@pytest.mark.parametrize("name,kwargs", cases())
def test_same_seed_same_output_and_replay(name, kwargs):
    images = make_images(batch=5)
    op = create_op(name, **kwargs)
    a = op(images, generator=torch.Generator().manual_seed(7))
    b = op(images, seed=7)
    c = op(images, params=a.params)
    d = create_op(op.to_config())(images, generator=torch.Generator().manual_seed(7))
    for other in (b, c, d):
        assert torch.equal(a.image, other.image) and torch.equal(a.mask, other.mask)
        assert torch.equal(a.label, other.label) and torch.equal(a.boxes, other.boxes)
        assert torch.equal(a.box_index, other.box_index) and torch.equal(a.box_label, other.box_label)
        assert torch.equal(a.soft_target(), other.soft_target()) and (a.target is None) == (other.target is None)
    e = op(images, seed=8)
    assert not torch.equal(a.image, e.image), "different seeds gave the same defects"


@pytest.mark.parametrize("name,kwargs", cases())
def test_own_generator_is_seedable(name, kwargs):
    images = make_images(batch=3)
    a = create_op(name, **{**kwargs, "seed": 3})
    b = create_op(name, **{**kwargs, "seed": 3})
    assert torch.equal(a(images).image, b(images).image)


@pytest.mark.parametrize("name,kwargs", cases())
def test_p_zero_is_identity(name, kwargs):
    images = make_images(batch=4, dtype=torch.uint8)
    out = create_op(name, **{**kwargs, "p": 0.0})(images, seed=0)
    assert torch.equal(out.image, images) and not out.mask.any()
    assert (out.label == 0).all() and out.boxes.shape == (0, 4)


@pytest.mark.parametrize("name,kwargs", cases())
@pytest.mark.parametrize("batch", [0, 1])
def test_small_batches(name, kwargs, batch):
    images = make_images(batch=batch)
    out = create_op(name, **kwargs)(images, seed=0)
    check_contract(out, images)
    if batch == 0:
        assert out.boxes.shape == (0, 4) and out.label.shape == (0,)


@pytest.mark.parametrize("name,kwargs", cases())
@pytest.mark.parametrize("layout", ["channels_last", "strided"])
def test_any_memory_layout(name, kwargs, layout):
    """Channels-last batches and strided views work and give what the contiguous batch gives."""
    base = make_images(batch=4, height=96, width=64, dtype=torch.uint8)
    images = base.to(memory_format=torch.channels_last) if layout == "channels_last" else base[:, :, ::2]
    op = create_op(name, **kwargs)
    out = op(images, seed=3)
    check_contract(out, images)
    reference = op(images.contiguous(), seed=3)
    assert torch.equal(out.image, reference.image) and torch.equal(out.mask, reference.mask)


@pytest.mark.parametrize("name,kwargs", cases())
def test_batched_equals_unbatched(name, kwargs):
    """Sample i of a batch is what the same params give on image i alone."""
    if name in CROSS_SAMPLE:
        pytest.skip(f"{name} takes each defect from another sample of the batch")
    images = make_images(batch=4)
    op = create_op(name, **kwargs)
    out = op(images, seed=2)
    for i in range(4):
        single = op(images[i:i + 1], params=_slice(out.params, i))
        if name in NETWORK_PIXELS:
            torch.testing.assert_close(single.image[0], out.image[i], atol=1e-4, rtol=0)
        else:
            assert torch.equal(single.image[0], out.image[i])
        assert torch.equal(single.mask[0], out.mask[i])
        assert torch.equal(single.boxes, out.boxes_of(i))


def _slice(params, i):
    if isinstance(params, dict):
        return {k: _slice(v, i) for k, v in params.items()}
    if isinstance(params, list):
        return [_slice(v, i) for v in params]
    return params[i:i + 1]


@pytest.mark.cuda
@pytest.mark.parametrize("name,kwargs", cases())
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_cpu_equals_cuda(name, kwargs, dtype):
    images = make_images(batch=6, dtype=dtype)
    op = create_op(name, **kwargs)
    cpu = op(images, seed=4)
    gpu = op(images.cuda(), params=cpu.params)
    check_contract(gpu, images.cuda())
    assert torch.equal(cpu.mask, gpu.mask.cpu()) and torch.equal(cpu.boxes, gpu.boxes.cpu())
    tol = 0 if dtype == torch.uint8 else 1e-5
    if name in NETWORK_PIXELS:  # TF32 convolutions on the GPU
        tol = 2 if dtype == torch.uint8 else 2e-2
    assert torch.allclose(cpu.image.float(), gpu.image.cpu().float(), atol=tol + (1 if dtype == torch.uint8 else 0))
    # a CPU generator gives the same params whatever device the images are on
    gpu2 = op(images.cuda(), seed=4)
    assert torch.equal(gpu2.mask.cpu(), cpu.mask)


# -- value ranges (defectgen.values) ----------------------------------------------------------------------------------
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
SPACES = {  # name: (call keywords, low, high) per channel of a 3-channel batch
    "imagenet": (IMAGENET, [-m / s for m, s in zip(IMAGENET["mean"], IMAGENET["std"])],
                 [(1 - m) / s for m, s in zip(IMAGENET["mean"], IMAGENET["std"])]),
    "0-255": ({"value_range": (0, 255)}, [0.0] * 3, [255.0] * 3),
    "minus1-1": ({"value_range": (-1, 1)}, [-1.0] * 3, [1.0] * 3),
}


@pytest.mark.parametrize("space", sorted(SPACES))
@pytest.mark.parametrize("name,kwargs", cases())
def test_value_spaces(name, kwargs, space):
    """In any declared space: pixels outside the mask are the caller's, the defect stays in the space, and it is
    the defect the [0, 1] image gets, mapped into the space."""
    keywords, low, high = SPACES[space]
    low, high = torch.tensor(low).view(1, 3, 1, 1), torch.tensor(high).view(1, 3, 1, 1)
    unit = make_images(batch=4, channels=3)
    images = unit * (high - low) + low
    op = create_op(name, **kwargs)
    out = op(images, seed=3, **keywords)
    check_contract(out, images)
    check_boxes(out, name in SINGLE_INSTANCE)
    span = high - low
    assert bool(((out.image >= low - 1e-4 * span) & (out.image <= high + 1e-4 * span)).all()), "defect left the space"
    reference = op(unit, seed=3)
    assert torch.equal(out.mask, reference.mask) and torch.equal(out.boxes, reference.boxes)
    # a network sees the space's round-off (about 1e-7) in its input and may amplify it
    tol = 1e-2 if name in NETWORK_PIXELS else 1e-4
    torch.testing.assert_close(out.image, reference.image * (high - low) + low, atol=tol * float(span.max()), rtol=0)


@pytest.mark.parametrize("name,kwargs", cases()[:1])
def test_value_space_errors(name, kwargs):
    op = create_op(name, **kwargs)
    unit = make_images(batch=2, channels=3)
    normalised = (unit - 0.45) / 0.225
    with pytest.raises(ValueError, match=r"values in \[-2, 2.44.*declared in value_range \[0, 1\].*mean= and std="):
        op(normalised, seed=0)
    with pytest.raises(ValueError, match="NaN"):
        op(unit.masked_fill(unit > 0.9, float("nan")), seed=0)
    with pytest.raises(ValueError, match="infinite"):
        op(unit.masked_fill(unit > 0.9, float("inf")), value_range=(0, 1), seed=0)
    with pytest.raises(ValueError, match=r"values in \[0.*255.*declared in value_range \[-1, 1\]"):
        op(unit * 255, value_range=(-1, 1), seed=0)
    with pytest.raises(ValueError, match="uint8 images are 0..255"):
        op(make_images(batch=2, dtype=torch.uint8), value_range=(0, 255), seed=0)
    with pytest.raises(ValueError, match="not both"):
        op(unit, value_range=(0, 1), mean=0.5, std=0.5, seed=0)
    with pytest.raises(ValueError, match="come together"):
        op(unit, mean=0.5, seed=0)
    with pytest.raises(ValueError, match="low < high"):
        op(unit, value_range=(1, 0), seed=0)
    with pytest.raises(ValueError, match="1 or 3 values"):
        op(unit, mean=(0.5, 0.5), std=0.2, seed=0)
    with pytest.raises(ValueError, match="std must be > 0"):
        op(unit, mean=0.5, std=0.0, seed=0)
    # within rounding of the edge is accepted
    op(unit.clamp(0, 1) * 1.0001, seed=0)


def test_unit_input_is_unchanged_by_value_space_handling():
    """[0, 1] input, declared or not, gives what it gave before value spaces existed (nothing is converted)."""
    images = make_images(batch=4, channels=3)
    op = create_op("cutpaste")
    a, b = op(images, seed=5), op(images, seed=5, value_range=(0, 1))
    assert torch.equal(a.image, b.image)
