"""Property-based fuzzing of every registered operator, with a seeded generator of cases (no new dependency).

Each case draws a batch size (0-3), an image size (1-80 px, often not square, one side in seven drawn from 1-8
px), a dtype, a channel count, a value space (``[0, 1]``, ``[0, 255]``, ``[-1, 1]``, an ImageNet normalisation, a
random range, or wrong on purpose: a batch that does not fit its declared space, NaN, an int32 batch), ``p`` and
whether to replay the params of a first call.

*Valid input* is: a uint8 or floating batch (float16 / float32 / float64) of 1 or 3 channels, batch 0-3, whose
float values lie in the declared space (``[0, 1]`` by default; ``value_range=`` or ``mean=`` / ``std=``), up to
the rounding :data:`defectgen.values.TOLERANCE` allows, with no NaN, and an image at least as large as the
operator's own documented minimum for its configured geometry (:func:`documented_size_refusal`). On valid input
the operator must keep the contract (outside-mask identity, dtype / device / shape, boxes tight around the mask,
defect values inside the space, replay identical); refusing it is a failure (``REFUSED VALID INPUT``). On
invalid input it must refuse with a ``ValueError`` / ``TypeError``; accepting it is a failure (``SILENTLY
ACCEPTED``), and so is any other exception or a silent contract violation. The outcomes are counted per
operator case (``python tests/test_fuzz_operators.py N`` prints them). ``FUZZ_CASES`` sets the number of cases
per operator case (default 40; ``DEFECTGEN_FUZZ_CASES=2000 pytest tests/test_fuzz_operators.py`` for a long run).
"""
import math
import os
import random
from collections import Counter
from typing import Optional

import pytest
import torch

from defectgen import create_op

from op_cases import SINGLE_INSTANCE, cases
from test_contract import check_boxes, check_contract

FUZZ_CASES = int(os.environ.get("DEFECTGEN_FUZZ_CASES", "40"))
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def documented_size_refusal(op, height: int, width: int) -> Optional[str]:
    """Why ``op``'s own documented size check refuses ``height x width`` images, or None when it allows them.

    - ``PatchDefect`` presets (CutPaste, Scar, Cutout, ...): the shape's largest bounding box and unrotated size
      (``MaskSampler.extent_bound`` / ``size_bound``, whose docstring says operators reject images smaller than
      them), rounded up to whole pixels, must fit.
    - ``PatchRegion`` masks (PoissonPaste): ``2 * margin_px + 1`` px on the short side (its error says so).
    - ``NSA``: ``2 * RIM_PX + 3`` = 7 px on the short side (a box 1 px clear of the border whose inside less
      ``RIM_PX`` on each side changes).
    - ``OneOf`` (and the CutPaste pretexts built on it): any branch's refusal, since every branch is sampled.
    - Every other operator documents no minimum: it must take images from 1x1 px up.
    """
    from defectgen.masks.patch_region import PatchRegion
    from defectgen.ops.nsa import NSA, RIM_PX
    from defectgen.ops.patch import PatchDefect
    from defectgen.pipeline import OneOf

    if isinstance(op, OneOf):
        return next(filter(None, (documented_size_refusal(o, height, width) for o in op.ops)), None)
    if isinstance(op, NSA) and min(height, width) < 2 * RIM_PX + 3:
        return f"NSA below {2 * RIM_PX + 3} px"
    if isinstance(op, PatchDefect):
        bound, size = op.mask.extent_bound(height, width), op.mask.size_bound(height, width)
        needed = [math.ceil(max(b, s) - 1e-3) for b, s in zip(bound, size)]
        if needed[0] > height or needed[1] > width:
            return f"shape spans {needed[0]}x{needed[1]} px"
    if isinstance(getattr(op, "mask", None), PatchRegion) and min(height, width) < 2 * op.mask.margin_px + 1:
        return f"patch region below {2 * op.mask.margin_px + 1} px"
    return None


def _side(rng: random.Random) -> int:
    return rng.randint(1, 8) if rng.random() < 1 / 7 else rng.randint(6, 80)


def draw_case(rng: random.Random):
    """One case: (images, call keywords, low, high, space); ``space`` is ``"bad dtype"``, ``"wrong"`` (values
    outside the declared space) or ``"nan"`` for input that is invalid on purpose."""
    batch = rng.choice([0, 1, 2, 3])
    height, width = _side(rng), rng.choice([None, _side(rng)])
    width = width or height
    channels = rng.choice([1, 3])
    dtype = rng.choice([torch.uint8, torch.float16, torch.float32, torch.float64, torch.int32])
    g = torch.Generator().manual_seed(rng.getrandbits(31))
    unit = torch.rand(batch, channels, height, width, generator=g)
    if dtype == torch.int32:  # not an image dtype: refused whatever the batch holds
        return (unit * 255).to(torch.int32), {}, 0.0, 255.0, "bad dtype"
    if dtype == torch.uint8:
        return (unit * 255).round().to(torch.uint8), {}, 0.0, 255.0, "uint8"
    space = rng.choice(["unit", "unit", "0-255", "-1-1", "imagenet", "random", "wrong", "nan"])
    if space == "imagenet" and channels == 3:
        mean, std = torch.tensor(IMAGENET[0]).view(1, 3, 1, 1), torch.tensor(IMAGENET[1]).view(1, 3, 1, 1)
        images, keywords = (unit - mean) / std, {"mean": IMAGENET[0], "std": IMAGENET[1]}
        low, high = (-mean / std), ((1 - mean) / std)
    elif space in ("0-255", "-1-1", "random", "imagenet"):
        lo, hi = {"0-255": (0.0, 255.0), "-1-1": (-1.0, 1.0)}.get(space, (None, None))
        if lo is None:
            lo = rng.uniform(-100, 100)
            hi = lo + rng.choice([1e-2, 1.0, 50.0, 1e3])
        images, keywords, low, high = unit * (hi - lo) + lo, {"value_range": (lo, hi)}, lo, hi
    elif space == "wrong":  # a normalised batch declared as [0, 1] (the case), if it has values at all
        images, keywords, low, high = (unit - 0.45) / 0.225, {}, 0.0, 1.0
        if images.numel():  # a tiny batch could fall inside [0, 1] by chance: make one pixel clearly outside
            images.view(-1)[rng.randrange(images.numel())] = -2.0
    elif space == "nan":
        images = unit.clone()
        if images.numel():
            images.view(-1)[rng.randrange(images.numel())] = float("nan")
        keywords, low, high = {}, 0.0, 1.0
    else:
        images, keywords, low, high = unit, {}, 0.0, 1.0
    images = images.to(dtype)
    if dtype == torch.float16:  # the declared space, rounded as the batch is
        low = torch.as_tensor(low, dtype=torch.float32).to(dtype).float()
        high = torch.as_tensor(high, dtype=torch.float32).to(dtype).float()
    return images, keywords, low, high, space


def check_case(op, name, images, keywords, low, high, p_replay):
    out = op(images, seed=11, **keywords)
    check_contract(out, images)
    check_boxes(out, name in SINGLE_INSTANCE)
    if images.is_floating_point() and images.numel():
        low_t = torch.as_tensor(low, dtype=torch.float32).reshape(1, -1, 1, 1)
        high_t = torch.as_tensor(high, dtype=torch.float32).reshape(1, -1, 1, 1)
        slack = 2e-3 * (high_t - low_t) + (1e-2 if images.dtype == torch.float16 else 0) * high_t.abs()
        x = out.image.float()
        assert bool(((x >= low_t - slack) & (x <= high_t + slack)).all()), "the defect left the declared space"
        assert bool(torch.isfinite(x).all()), "non-finite output"
    if p_replay:
        again = op(images, params=out.params, **keywords)
        assert torch.equal(again.image, out.image) and torch.equal(again.mask, out.mask), "replay differs"


FAILURES = ("CONTRACT VIOLATED", "OTHER EXCEPTION", "SILENTLY ACCEPTED", "REFUSED VALID INPUT")
INVALID = ("bad dtype", "wrong", "nan")


def fuzz_one(rng, name, kwargs, make=create_op) -> str:
    """One drawn case of operator ``name`` (built by ``make(name, **kwargs)``), as an outcome: "kept the
    contract", "refused: <why the input is invalid>" (a ValueError or TypeError on invalid input, or on an image
    below the operator's documented minimum size), or one of :data:`FAILURES`."""
    images, keywords, low, high, space = draw_case(rng)
    p = rng.choice([0.0, 0.5, 1.0])
    try:
        op = make(name, **{**kwargs, "p": p}) if "p" not in kwargs else make(name, **kwargs)
    except (ValueError, TypeError):
        op = make(name, **kwargs)
    replay = rng.random() < 0.3
    invalid = space == "bad dtype" or (space in INVALID and images.numel() > 0)
    too_small = documented_size_refusal(op, *images.shape[-2:])
    case = f"{name}, {space}, {tuple(images.shape)} {str(images.dtype)[6:]}"
    try:
        check_case(op, name, images, keywords, low, high, replay)
    except (ValueError, TypeError) as error:
        if invalid:
            return f"refused: {space}"
        if too_small:
            return "refused: below the documented size"
        return f"REFUSED VALID INPUT ({case}): {type(error).__name__}: {str(error)[:120]}"
    except AssertionError as error:
        return f"CONTRACT VIOLATED ({case}): {error}"
    except Exception as error:  # noqa: BLE001 -- any other exception type is a failure, reported with the case
        return f"OTHER EXCEPTION ({case}): {type(error).__name__}: {error}"
    if invalid:
        return f"SILENTLY ACCEPTED {space} input ({case})"
    if too_small:
        return f"SILENTLY ACCEPTED an image below the documented size ({case}: {too_small})"
    return "kept the contract"


def fuzz_operator(name, kwargs, n: int, make=create_op) -> Counter:
    """``n`` cases of one operator case, seeded by its name and settings; the outcomes counted."""
    rng = random.Random(f"{name}/{sorted(kwargs.items()) if isinstance(kwargs, dict) else kwargs}")
    return Counter(fuzz_one(rng, name, kwargs, make) for _ in range(n))


def fuzz_failures(outcomes: Counter):
    """What fails the fuzz check: every failure outcome, and no valid case at all that kept the contract."""
    failed = [o for o in outcomes if o.startswith(FAILURES)]
    if not outcomes["kept the contract"]:
        failed.append(f"no case kept the contract: {dict(outcomes)}")
    return failed


@pytest.mark.parametrize("name,kwargs", cases())
def test_operators_keep_the_contract_or_refuse_clearly(name, kwargs, request):
    outcomes = fuzz_operator(name, kwargs, FUZZ_CASES)
    request.node.user_properties.append(("fuzz", dict(outcomes)))
    assert fuzz_failures(outcomes) == [], dict(outcomes)


class _OverRefusing:
    """Cutout that refuses float16 batches and images under 24 px: valid input its documentation allows."""

    def __init__(self, **kwargs):
        self.op = create_op("cutout", **kwargs)

    def __call__(self, images, **keywords):
        if images.dtype == torch.float16 or min(images.shape[-2:]) < 24:
            raise ValueError("images must be float32 and at least 24 px")
        return self.op(images, **keywords)


def test_the_fuzz_fails_an_operator_that_refuses_valid_input():
    outcomes = fuzz_operator("cutout", {}, FUZZ_CASES, make=lambda name, **kw: _OverRefusing(**kw))
    refused = [o for o in outcomes if o.startswith("REFUSED VALID INPUT")]
    assert refused and fuzz_failures(outcomes), dict(outcomes)  # the over-refusals fail the fuzz check
    assert outcomes["kept the contract"] > 0  # it keeps the contract on the rest: only the refusals fail it


def test_the_documented_size_rule_matches_the_operators_checks():
    """Below its documented size each sized operator refuses; at it, it does not (the rule is not too loose)."""
    images = lambda h, w: torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0))  # noqa: E731
    for name, kwargs, small, enough in [("nsa", {}, (6, 40), (7, 40)), ("poisson_paste", {}, (2, 2), (3, 3)),
                                        ("scar", {}, (1, 1), (2, 2))]:
        op = create_op(name, **kwargs)
        assert documented_size_refusal(op, *small) and not documented_size_refusal(op, *enough), name
        with pytest.raises(ValueError):
            op(images(*small), seed=0)
        op(images(*enough), seed=0)
    assert documented_size_refusal(create_op("perlin"), 1, 1) is None


if __name__ == "__main__":
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else FUZZ_CASES
    total = Counter()
    for case in cases():
        counts = fuzz_operator(*case.values, n)
        total += counts
        shown = ", ".join(f"{k} {o}" for o, k in counts.most_common())
        print(f"{case.id:18s} {'FAILS' if fuzz_failures(counts) else 'ok   '} {shown}")
    print()
    for outcome, k in total.most_common():
        print(f"{k:6d}  {outcome}")
    print(f"{sum(total.values()):6d}  cases over {len(cases())} operator cases "
          "(python tests/test_fuzz_operators.py N: N per case)")
