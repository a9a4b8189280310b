"""The region framework: connected-component boxes, whole-image blends, the texture source, RegionDefect."""
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from defectgen import PatchDefect, RegionDefect
from defectgen.blends import Feather, Opacity, Replace
from defectgen.masks import RectangleMask
from defectgen.masks.base import RegionMask
from defectgen.components import _boxes_propagate, component_boxes, mask_boxes
from defectgen.sources import ConstantFill, SelfPatch, TextureSource
from defectgen.sources.texture import load_texture_bank

from conftest import CUDA, make_images


def blobs(batch=6, height=70, width=90, threshold=0.6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(batch, 1, 9, 11, generator=g), size=(height, width), mode="bicubic")
    return x > threshold


def opencv_boxes(region):
    """Reference: one cv2 call per image, boxes sorted the same way."""
    rows = []
    for i, m in enumerate(region[:, 0].numpy().astype(np.uint8)):
        _, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        for x, y, w, h, _ in stats[1:]:
            rows.append((i, y, x, y + h, x + w))
    rows.sort()
    return [[x1, y1, x2, y2] for _, y1, x1, y2, x2 in rows], [r[0] for r in rows]


@pytest.mark.parametrize("threshold", [0.3, 0.55, 0.7, 0.9])
def test_component_boxes_match_per_image_opencv(threshold):
    region = blobs(threshold=threshold)
    boxes, index = component_boxes(region)
    ref_boxes, ref_index = opencv_boxes(region)
    assert boxes.dtype == torch.float32 and index.dtype == torch.long
    assert sorted(zip(index.tolist(), boxes.long().tolist())) == sorted(zip(ref_index, ref_boxes))
    assert torch.all(index[1:] >= index[:-1])


@pytest.mark.parametrize("threshold", [0.3, 0.6, 0.9])
def test_device_labelling_equals_cpu_labelling(threshold):
    """The propagation path (used on GPUs) gives the OpenCV path's boxes in the same order; run on CPU here."""
    speckle = torch.rand(3, 1, 30, 41, generator=torch.Generator().manual_seed(1)) > 0.5
    for region in (blobs(threshold=threshold), speckle):
        a, b = component_boxes(region), _boxes_propagate(region)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_component_boxes_empty_cases():
    for region in (torch.zeros(3, 1, 5, 7, dtype=torch.bool), torch.zeros(0, 1, 5, 7, dtype=torch.bool)):
        boxes, index = component_boxes(region)
        assert boxes.shape == (0, 4) and index.shape == (0,)


def test_diagonal_neighbours_are_connected_and_images_are_not():
    region = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    region[0, 0, 3, 0] = region[0, 0, 2, 1] = True  # diagonal: one component (8-connectivity)
    region[1, 0, 0, 0] = True  # touches image 0's last row only through the batch axis
    boxes, index = component_boxes(region)
    assert boxes.tolist() == [[0, 2, 2, 4], [0, 0, 1, 1]] and index.tolist() == [0, 1]


def test_mask_boxes():
    region = torch.zeros(3, 1, 10, 12, dtype=torch.bool)
    region[0, 0, 2:4, 5] = True
    region[0, 0, 8, 1] = True
    region[2, 0, 0, 11] = True
    boxes, non_empty = mask_boxes(region)
    assert non_empty.tolist() == [True, False, True]
    assert boxes.tolist() == [[1, 2, 6, 9], [0, 0, 0, 0], [11, 0, 12, 1]]


class Disc(RegionMask):
    """A test-only positioned mask: one disc of radius 8 px per image."""

    instances = "one"

    def sample(self, n, height, width, generator):
        return {"cy": torch.rand(n, generator=generator) * height, "cx": torch.rand(n, generator=generator) * width}

    def draw(self, params, height, width, device):
        y = torch.arange(height, device=device).view(1, 1, height, 1) + 0.5
        x = torch.arange(width, device=device).view(1, 1, 1, width) + 0.5
        d = (y - params["cy"].view(-1, 1, 1, 1)) ** 2 + (x - params["cx"].view(-1, 1, 1, 1)) ** 2
        return (d < 64).float()


class Empty(Disc):
    def draw(self, params, height, width, device):
        return torch.zeros(len(params["cy"]), 1, height, width, device=device)


def test_opacity_default_is_one_minus_drawn_beta():
    opacity = Opacity().sample(20000, torch.Generator().manual_seed(0))["opacity"]
    assert 0.2 < opacity.min() and opacity.max() <= 1.0
    assert abs(opacity.mean().item() - 0.6) < 0.01  # 1 - E[beta], beta ~ U[0, 0.8)


def test_opacity_mixes_fill_over_image():
    images = make_images(batch=3)
    op = RegionDefect(Disc(), ConstantFill("gray"), Opacity((0.25, 0.25)))
    out = op(images, seed=0)
    m = out.mask.expand_as(images)
    assert torch.allclose(out.image[m], (0.75 * images + 0.25 * 0.5)[m], atol=1e-6)


def test_feather_spreads_the_edge_and_the_mask_follows():
    images = torch.zeros(2, 1, 48, 64)
    hard = RegionDefect(Disc(), ConstantFill("gray"), Replace())(images, seed=0)
    soft = RegionDefect(Disc(), ConstantFill("gray"), Feather(2.0))(images, seed=0)
    assert (soft.mask >= hard.mask).all() and soft.mask.sum() > hard.mask.sum()
    assert torch.equal(soft.image[hard.mask], hard.image[hard.mask]), "the defect's core keeps full coverage"
    edge = soft.mask & ~hard.mask
    assert (soft.image[edge] > 0).all() and (soft.image[edge] < 0.5).all()
    assert torch.equal(soft.image[~soft.mask], images[~soft.mask])


def test_empty_defect_leaves_the_sample_normal():
    out = RegionDefect(Empty(), "constant")(make_images(batch=3), seed=0)
    assert (out.label == 0).all() and out.boxes.shape == (0, 4) and not out.mask.any()


def test_texture_source_fills_from_the_bank():
    bank = torch.zeros(2, 3, 48, 64, dtype=torch.uint8)
    bank[0] = 40
    bank[1] = 200
    op = RegionDefect(Disc(), TextureSource(bank), Replace())
    images = make_images(batch=8, dtype=torch.uint8)
    out = op(images, seed=0)
    for i in range(8):
        values = out.image[i][out.mask[i].expand(3, -1, -1)].unique().tolist()
        assert values == [bank[out.params["texture_index"][i], 0, 0, 0].item()]
    grey = op(images[:, :1], seed=0)
    assert grey.image.shape == (8, 1, 48, 64)


def test_texture_bank_validation(tmp_path):
    assert load_texture_bank(torch.rand(3, 8, 8)).shape == (1, 3, 8, 8)
    assert load_texture_bank(torch.rand(3, 1, 8, 8)).dtype == torch.uint8
    with pytest.raises(ValueError, match="textures must have shape"):
        load_texture_bank(torch.rand(2, 4, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        load_texture_bank(torch.full((1, 3, 4, 4), float("nan")))
    with pytest.raises(TypeError, match="folder path or a"):
        load_texture_bank([1, 2])
    with pytest.raises(ValueError, match="holds no images"):
        TextureSource(tmp_path)
    cv2.imwrite(str(tmp_path / "a.png"), np.full((20, 30, 3), 7, np.uint8))
    source = TextureSource(tmp_path, size=16)
    assert len(source) == 1 and source.to_config()["textures"] == str(tmp_path)


def test_parts_that_do_not_fit_the_operator_say_so():
    with pytest.raises(TypeError, match="cannot fill a whole-image region"):
        RegionDefect(Disc(), SelfPatch())
    with pytest.raises(TypeError, match="whole-image regions only"):
        PatchDefect(RectangleMask(), ConstantFill(), Opacity())
    with pytest.raises(TypeError, match="whole-image regions only"):
        PatchDefect(RectangleMask(), TextureSource(torch.rand(1, 3, 8, 8)))
    with pytest.raises(TypeError, match="mask must be a RegionMask"):
        RegionDefect(RectangleMask(), "constant")


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_component_boxes_cuda_equals_cpu():
    region = blobs(threshold=0.5)
    a, b = component_boxes(region), component_boxes(region.cuda())
    assert torch.equal(a[0], b[0].cpu()) and torch.equal(a[1], b[1].cpu())


def test_composed_region_operator_checks_replayed_params_through_its_parts():
    """A plain RegionDefect validates replays with its parts' own checks (here: a partner outside the batch)."""
    op = RegionDefect(mask="patch_region", source="other_image", blend="poisson")
    images = make_images(batch=3)
    out = op(images, seed=0)
    assert torch.equal(op(images, params=out.params).image, out.image)
    bad = {**out.params, "partner": out.params["partner"] + 5}
    with pytest.raises(ValueError, match="partner"):
        op(images, params=bad)
