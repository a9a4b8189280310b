"""OneOf pipelines, the CutPaste pretext presets, and the registry."""
import pytest
import torch
import yaml

from defectgen import Cutout, OneOf, Scar, create_op, cutpaste_3way, list_ops, register_op
from defectgen.ops.cutpaste import CutPaste

from conftest import make_images


def test_one_of_gives_each_sample_one_branch_and_its_label():
    images = make_images(batch=64, dtype=torch.uint8)
    op = OneOf([Cutout(fill="gray"), Scar(fill="gray")], labels=[5, 7], p=0.75)
    out = op(images, seed=0)
    choice = out.params["choice"]
    assert set(out.label.tolist()) <= {0, 5, 7}
    assert torch.equal(out.label == 0, choice == -1)
    assert torch.equal(out.label == 5, choice == 0) and torch.equal(out.label == 7, choice == 1)
    # one box per defective sample, labelled like its sample
    assert torch.equal(out.box_index, torch.nonzero(out.label).flatten())
    assert torch.equal(out.box_label, out.label[out.box_index])


def test_one_of_keeps_branch_labels_by_default_and_respects_weights():
    images = torch.zeros(2000, 1, 16, 16, dtype=torch.uint8)
    op = OneOf([Cutout(label=1), Scar(label=2)], weights=[3, 1])
    label = op(images, seed=0).label
    counts = torch.bincount(label, minlength=3)
    assert counts[0] == 0 and abs(counts[1].item() / 2000 - 0.75) < 0.04


def test_one_of_respects_branch_p():
    images = torch.zeros(2000, 1, 16, 16, dtype=torch.uint8)
    label = OneOf([Cutout(p=0.5)])(images, seed=0).label
    assert abs(float((label > 0).double().mean()) - 0.5) < 0.04


def test_nested_one_of():
    inner = OneOf([Cutout(label=1), Scar(label=2)])
    outer = OneOf([inner, CutPaste(label=3)], p=0.9)
    images = make_images(batch=32)
    out = outer(images, seed=0)
    assert set(out.label.tolist()) <= {0, 1, 2, 3} and len(set(out.label.tolist())) >= 3
    again = create_op(outer.to_config())(images, seed=0)
    assert torch.equal(out.image, again.image)


def test_3way_labels_are_cross_entropy_targets():
    images = make_images(batch=12)
    out = cutpaste_3way()(images, seed=0)
    logits = torch.zeros(12, 3)
    loss = torch.nn.functional.cross_entropy(logits, out.label)
    assert torch.isfinite(loss)


def test_list_ops_and_patterns():
    names = list_ops()
    assert {"cutpaste", "cutpaste_scar", "cutout", "scar", "cutpaste_3way", "cutpaste_union"} <= set(names)
    assert list_ops("cutpaste*") == ["cutpaste", "cutpaste_3way", "cutpaste_scar", "cutpaste_union"]


def test_create_op_from_yaml_config_with_overrides():
    config = yaml.safe_load("""
        op: scar
        width_px_range: [2, 8]
        angle_deg_range: [-10, 10]
    """)
    op = create_op(config, p=0.5)
    assert isinstance(op, Scar) and op.width_px_range == (2.0, 8.0) and op.p == 0.5
    assert yaml.safe_load(yaml.safe_dump(op.to_config())) == op.to_config()


def test_register_op_rejects_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        register_op("cutpaste")(Scar)


def test_unknown_kwarg_names_the_op():
    with pytest.raises(TypeError, match="op 'cutout'.*area"):
        create_op("cutout", area=0.1)
