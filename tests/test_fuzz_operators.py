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


@pytest.mark.parametrize("name,kwargs", cases())
def test_operators_keep_the_contract_or_refuse_clearly(name, kwargs, request):
    rng = random.Random(f"{name}/{sorted(kwargs.items()) if isinstance(kwargs, dict) else kwargs}")
    outcomes = Counter()
    for _ in range(FUZZ_CASES):
        images, keywords, low, high, space = draw_case(rng)
        p = rng.choice([0.0, 0.5, 1.0])
        try:
            op = create_op(name, **{**kwargs, "p": p}) if "p" not in kwargs else create_op(name, **kwargs)
        except (ValueError, TypeError):
            op = create_op(name, **kwargs)
        replay = rng.random() < 0.3
        try:
            check_case(op, name, images, keywords, low, high, replay)
        except (ValueError, TypeError) as error:
            if space == "bad dtype" or (space in ("wrong", "nan") and images.numel()):
                outcomes[f"refused: {space}"] += 1
            else:
                outcomes[f"refused: {str(error)[:60]}"] += 1
            continue
        assert space != "bad dtype", "an int32 batch was accepted"
        assert space not in ("wrong", "nan") or not images.numel(), f"{space} input was accepted silently"
        outcomes["kept the contract"] += 1
    request.node.user_properties.append(("fuzz", dict(outcomes)))
    assert outcomes["kept the contract"] > 0, outcomes


def fuzz_report(cases_per_operator: int) -> Counter:
    """Every operator case fuzzed ``cases_per_operator`` times; the outcomes counted (what the test asserts, as
    numbers): ``python tests/test_fuzz_operators.py 200``."""
    outcomes = Counter()
    for case in cases():
        name, kwargs = case.values
        rng = random.Random(f"report/{name}/{kwargs}")
        for _ in range(cases_per_operator):
            images, keywords, low, high, space = draw_case(rng)
            p = rng.choice([0.0, 0.5, 1.0])
            try:
                op = create_op(name, **{**kwargs, "p": p})
            except (ValueError, TypeError):
                op = create_op(name, **kwargs)
            bad = space == "bad dtype" or (space in ("wrong", "nan") and images.numel())
            try:
                check_case(op, name, images, keywords, low, high, rng.random() < 0.3)
                outcomes[f"SILENTLY ACCEPTED {space}" if bad else "kept the contract"] += 1
            except (ValueError, TypeError) as error:
                outcomes[f"refused: {space}" if bad else f"refused valid input ({name}): {error}"] += 1
            except AssertionError as error:
                outcomes[f"CONTRACT VIOLATED ({name}): {error}"] += 1
            except Exception as error:  # noqa: BLE001 -- counted: the test would fail on it
                outcomes[f"OTHER EXCEPTION ({name}): {type(error).__name__}: {error}"] += 1
    return outcomes


if __name__ == "__main__":
    import sys

    counts = fuzz_report(int(sys.argv[1]) if len(sys.argv) > 1 else FUZZ_CASES)
    for outcome, n in counts.most_common():
        print(f"{n:6d}  {outcome}")
    print(f"{sum(counts.values()):6d}  cases over {len(cases())} operator cases")
