"""The one table of registered operators and the arguments the contract tests build them with.

Every name in ``list_ops()`` must have an entry: a new operator without one fails ``test_every_op_has_a_case``.
Entries hold one or more kwarg dicts; each is tested separately.
"""
OP_CASES = {
    "cutpaste": [{}, {"colour_jitter": 0.0, "area_frac_range": (0.05, 0.1)}],
    "cutpaste_scar": [{}],
    "cutout": [{"fill": "gray"}, {"fill": "mean"}, {"fill": "random"}],
    "scar": [{}, {"fill": "gray", "angle_deg_range": (80, 100)}, {"fill": "random_gray"}],
    "patch": [{"mask": {"type": "scar", "width_px_range": [4, 8]}, "source": {"type": "constant", "fill": "mean"}},
              {"mask": "rectangle", "source": {"type": "self_patch", "colour_jitter": {"hue": 0.3}}}],
    "one_of": [{"ops": ["cutout", {"op": "scar", "label": 3}], "weights": [1, 2], "p": 0.8}],
    "cutpaste_union": [{}],
    "cutpaste_3way": [{}],
}

# operators that place exactly one defect instance on each defective sample
SINGLE_INSTANCE = set(OP_CASES)


def cases():
    """``pytest.param(name, kwargs)`` for every case in the table."""
    import pytest
    return [pytest.param(name, kwargs, id=f"{name}-{i}")
            for name, kwarg_list in OP_CASES.items() for i, kwargs in enumerate(kwarg_list)]
