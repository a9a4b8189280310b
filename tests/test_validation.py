"""Bad input gets a clear ValueError / TypeError naming the problem."""
import math

import pytest
import torch

from defectgen import Cutout, CutPaste, CutPasteScar, OneOf, Scar, create_op

from conftest import make_images


@pytest.mark.parametrize("images,error,match", [
    (torch.rand(3, 32, 32), ValueError, r"4 dimensions.*unsqueeze"),
    (torch.rand(1, 1, 3, 32, 32), ValueError, "4 dimensions"),
    (torch.rand(2, 2, 32, 32), ValueError, "1 .grayscale. or 3 .RGB. channels"),
    (torch.rand(2, 4, 32, 32), ValueError, "channels"),
    (torch.zeros(2, 3, 32, 32, dtype=torch.int32), TypeError, "uint8 or floating"),
    (torch.zeros(2, 3, 32, 32, dtype=torch.bool), TypeError, "uint8 or floating"),
    (torch.zeros(2, 3, 0, 32), ValueError, "non-empty"),
    ([[1.0]], TypeError, "torch.Tensor"),
])
def test_bad_images(images, error, match):
    with pytest.raises(error, match=match):
        CutPaste()(images, seed=0)


def test_image_too_small_for_absolute_scar():
    op = Scar(length_px_range=(10, 25), reference_size=None)
    with pytest.raises(ValueError, match="too small"):
        op(torch.rand(2, 3, 16, 16), seed=0)
    assert op(torch.rand(2, 3, 32, 32), seed=0).mask.any()  # fits once the image is large enough


def test_image_too_small_for_unrotated_patch():
    # rotated 90 degrees the scar's box is only 4 px tall, but its source strip is 40 px long
    with pytest.raises(ValueError, match="too small"):
        CutPasteScar(width_px_range=(4, 4), length_px_range=(40, 40), angle_deg_range=(90, 90),
                     reference_size=None)(torch.rand(1, 3, 30, 64), seed=0)


@pytest.mark.parametrize("factory,error,match", [
    (lambda: CutPaste(area_frac_range=(0.2, 0.1)), ValueError, "min <= max"),
    (lambda: CutPaste(area_frac_range=(0.0, 0.1)), ValueError, r"area_frac_range\[0\] must be > 0"),
    (lambda: CutPaste(area_frac_range=(0.1, 1.5)), ValueError, r"area_frac_range\[1\] must be <= 1"),
    (lambda: CutPaste(area_frac_range=(0.5, 0.6)), ValueError, "wider or taller than the image"),
    (lambda: CutPaste(aspect_ratio_range=(-1, 2)), ValueError, "aspect_ratio_range"),
    (lambda: CutPaste(area_frac_range=(math.nan, 0.1)), ValueError, "finite"),
    (lambda: CutPaste(area_frac_range=0.1), TypeError, r"\(min, max\) pair"),
    (lambda: CutPaste(area_frac_range=(0.1, 0.2, 0.3)), TypeError, r"\(min, max\) pair"),
    (lambda: CutPaste(area_frac_range=("a", 0.2)), TypeError, "must be a number"),
    (lambda: CutPaste(colour_jitter=-0.1), ValueError, "colour_jitter"),
    (lambda: CutPaste(p=1.5), ValueError, r"p must be in \[0, 1\]"),
    (lambda: CutPaste(p=math.nan), ValueError, "p must be in"),
    (lambda: CutPaste(p="half"), TypeError, "p must be a number"),
    (lambda: CutPaste(label=0), ValueError, "label must be >= 1"),
    (lambda: CutPasteScar(width_px_range=(16, 2)), ValueError, "width_px_range must have min <= max"),
    (lambda: CutPasteScar(angle_deg_range=(-200, 0)), ValueError, "angle_deg_range"),
    (lambda: CutPasteScar(reference_size=0), ValueError, "reference_size"),
    (lambda: Cutout(fill="blue"), ValueError, "fill must be one of"),
    (lambda: OneOf([]), TypeError, "non-empty list"),
    (lambda: OneOf(["cutout", "scar"], weights=[1]), ValueError, "one entry per op"),
    (lambda: OneOf(["cutout", "scar"], weights=[0, 0]), ValueError, "all be zero"),
    (lambda: OneOf(["cutout"], labels=[0]), ValueError, "labels"),
    (lambda: create_op("cutpast"), ValueError, "did you mean 'cutpaste'"),
    (lambda: create_op({"width_px_range": [2, 8]}), ValueError, "needs a 'op' entry"),
    (lambda: create_op("scar", width=3), TypeError, "scar"),
    (lambda: create_op("patch", mask="circle", source="constant"), ValueError, "unknown mask 'circle'"),
    (lambda: create_op(42), TypeError, "name or a config dict"),
])
def test_bad_arguments(factory, error, match):
    with pytest.raises(error, match=match):
        factory()


def test_bad_generator_and_seed():
    images = make_images()
    with pytest.raises(ValueError, match="either generator= or seed="):
        CutPaste()(images, generator=torch.Generator(), seed=1)
    with pytest.raises(TypeError, match="torch.Generator"):
        CutPaste()(images, generator=1)
    with pytest.raises(TypeError, match="seed must be an int"):
        CutPaste()(images, seed="1")


def test_bad_replay_params():
    images = make_images(batch=4)
    op = CutPaste()
    params = op(images, seed=0).params
    with pytest.raises(ValueError, match="shape"):
        op(images[:2], params=params)
    with pytest.raises(ValueError, match="missing"):
        op(images, params={k: v for k, v in params.items() if k != "top"})
    with pytest.raises(ValueError, match="NaN"):
        op(images, params={**params, "hue": torch.full((4,), math.nan)})
    with pytest.raises(TypeError, match="dtype"):
        op(images, params={**params, "top": params["top"].float()})
    with pytest.raises(ValueError, match="do not fit"):
        op(images, params={**params, "top": params["top"] + 1000})
    with pytest.raises(ValueError, match="replays a call"):
        op(images, params=params, seed=1)
    with pytest.raises(ValueError, match="does not match this operator"):
        Scar()(images, params=params)


def test_resolve_device_spellings_and_errors():
    from defectgen.checks import resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    for bad in ("tpu", "gpu", "meta"):
        with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")
