"""The operator contract (DESIGN.md section 2), checked on every registered operator."""
import pytest
import torch

from defectgen import DefectBatch, create_op, list_ops

from conftest import make_images
from op_cases import CROSS_SAMPLE, OP_CASES, SINGLE_INSTANCE, cases


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
        assert torch.equal(single.image[0], out.image[i]) and torch.equal(single.mask[0], out.mask[i])
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
    assert torch.allclose(cpu.image.float(), gpu.image.cpu().float(), atol=tol + (1 if dtype == torch.uint8 else 0))
    # a CPU generator gives the same params whatever device the images are on
    gpu2 = op(images.cuda(), seed=4)
    assert torch.equal(gpu2.mask.cpu(), cpu.mask)
