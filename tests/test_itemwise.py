"""Per-item seeding (defectgen.itemwise): the property data set generation relies on."""
import pytest
import torch

from defectgen import create_op
from defectgen.rng import index_seed
from defectgen.itemwise import apply_itemwise, concat_params
from op_cases import CROSS_SAMPLE, NETWORK_PIXELS, cases
from test_contract import make_images


@pytest.mark.parametrize("name,kwargs", cases())
def test_item_depends_only_on_its_seed(name, kwargs):
    """Item j of a batch equals the same item generated alone, and does not move when the batch changes."""
    images = make_images(batch=4)
    op = create_op(name, **kwargs)
    seeds = [index_seed(7, i) for i in range(4)]
    out = apply_itemwise(op, images, seeds)
    shifted = apply_itemwise(op, images[1:], seeds[1:])  # same items, other batch composition
    for j in range(4):
        alone = apply_itemwise(op, images[j:j + 1], [seeds[j]])
        if name in CROSS_SAMPLE:  # iterative Poisson solve: rounding may depend on the batch
            assert (alone.image[0].float() - out.image[j].float()).abs().max() <= 1
        elif name in NETWORK_PIXELS:  # a network's kernels round differently per batch size (op_cases.py)
            torch.testing.assert_close(alone.image[0], out.image[j], atol=1e-4, rtol=0)
        else:
            assert torch.equal(alone.image[0], out.image[j])
        assert torch.equal(alone.mask[0], out.mask[j])
        assert torch.equal(alone.boxes, out.boxes_of(j))
        assert torch.equal(alone.label, out.label[j:j + 1])
        if j > 0:
            assert torch.equal(shifted.mask[j - 1], out.mask[j])


def test_different_seeds_give_different_items():
    images = make_images(batch=2)
    images = torch.stack([images[0], images[0]])
    out = apply_itemwise(create_op("cutpaste"), images, [index_seed(0, 0), index_seed(0, 1)])
    assert not torch.equal(out.mask[0], out.mask[1])


def test_index_seed():
    assert index_seed(0, 1) == index_seed(0, 1)
    assert len({index_seed(s, i) for s in range(5) for i in range(50)}) == 250
    assert 0 <= index_seed(3, 10**12) < 2**63
    with pytest.raises(ValueError, match="index"):
        index_seed(0, -1)
    with pytest.raises(TypeError, match="seed"):
        index_seed("0", 1)


def test_concat_params_shifts_partner_indices():
    a = {"partner": torch.tensor([0]), "x": torch.tensor([1.0])}
    b = {"partner": torch.tensor([1, 0]), "x": torch.tensor([2.0, 3.0])}
    out = concat_params([a, b])
    assert out["partner"].tolist() == [0, 2, 1] and out["x"].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="different operators"):
        concat_params([a, {"x": torch.tensor([1.0])}])
    with pytest.raises(ValueError, match="at least one"):
        concat_params([])
