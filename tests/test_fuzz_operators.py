"""Property-based fuzzing of every registered operator, with a seeded generator of cases (no new dependency).

Each case draws a batch size (0-3), an image size (6-80 px, often not square), a dtype, a channel count, a value
space (``[0, 1]``, ``[0, 255]``, ``[-1, 1]``, an ImageNet normalisation, a random range, or wrong on purpose: a
batch that does not fit its declared space, NaN, an int32 batch), ``p`` and whether to replay the params of a first
call. The operator must either keep the contract (outside-mask identity, dtype / device / shape, boxes tight around
the mask, defect values inside the space, replay identical) or refuse with a ``ValueError`` / ``TypeError``: any
other exception, or a silent violation, fails. ``FUZZ_CASES`` sets the number of cases per operator (default 40;
``DEFECTGEN_FUZZ_CASES=2000 pytest tests/test_fuzz_operators.py`` for a long run).
"""
import os
import random
from collections import Counter

import pytest
import torch

from defectgen import create_op

from op_cases import SINGLE_INSTANCE, cases
from test_contract import check_boxes, check_contract

FUZZ_CASES = int(os.environ.get("DEFECTGEN_FUZZ_CASES", "40"))
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def draw_case(rng: random.Random):
    """One case: (images, call keywords, low, high, p, replay, expect_error)."""
    batch = rng.choice([0, 1, 2, 3])
    height, width = rng.randint(6, 80), rng.choice([None, rng.randint(6, 80)])
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


FAILURES = ("CONTRACT VIOLATED", "OTHER EXCEPTION", "SILENTLY ACCEPTED")


def fuzz_one(rng, name, kwargs) -> str:
    """One drawn case of operator ``name``, as an outcome: "kept the contract", "refused: ..." (a ValueError or
    TypeError; for input that is wrong on purpose, the space), or one of :data:`FAILURES`."""
    images, keywords, low, high, space = draw_case(rng)
    p = rng.choice([0.0, 0.5, 1.0])
    try:
        op = create_op(name, **{**kwargs, "p": p}) if "p" not in kwargs else create_op(name, **kwargs)
    except (ValueError, TypeError):
        op = create_op(name, **kwargs)
    replay = rng.random() < 0.3
    bad = space == "bad dtype" or (space in ("wrong", "nan") and images.numel())
    try:
        check_case(op, name, images, keywords, low, high, replay)
    except (ValueError, TypeError) as error:
        return f"refused: {space}" if bad else f"refused: {str(error)[:60]}"
    except AssertionError as error:
        return f"CONTRACT VIOLATED ({name}, {space}): {error}"
    except Exception as error:  # noqa: BLE001 -- any other exception type is a failure, reported with the case
        return f"OTHER EXCEPTION ({name}, {space}): {type(error).__name__}: {error}"
    return f"SILENTLY ACCEPTED {space} input ({name})" if bad else "kept the contract"


def fuzz_operator(name, kwargs, n: int) -> Counter:
    """``n`` cases of one operator case, seeded by its name and settings; the outcomes counted."""
    rng = random.Random(f"{name}/{sorted(kwargs.items()) if isinstance(kwargs, dict) else kwargs}")
    return Counter(fuzz_one(rng, name, kwargs) for _ in range(n))


@pytest.mark.parametrize("name,kwargs", cases())
def test_operators_keep_the_contract_or_refuse_clearly(name, kwargs, request):
    outcomes = fuzz_operator(name, kwargs, FUZZ_CASES)
    request.node.user_properties.append(("fuzz", dict(outcomes)))
    assert [o for o in outcomes if o.startswith(FAILURES)] == []
    assert outcomes["kept the contract"] > 0, outcomes


if __name__ == "__main__":
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else FUZZ_CASES
    counts = sum((fuzz_operator(*case.values, n) for case in cases()), Counter())
    for outcome, k in counts.most_common():
        print(f"{k:6d}  {outcome}")
    print(f"{sum(counts.values()):6d}  cases over {len(cases())} operator cases "
          "(python tests/test_fuzz_operators.py N: N per case)")
