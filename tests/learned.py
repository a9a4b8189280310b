"""The convention of tests that assert a learned result (an AUROC, an accuracy, boxes found on new images).

Such a test must pass on every torch release a fresh machine may install and on any seed, and must fail for a
broken detector. So it measures through a function ``measure_*(seed=0, breakage=None) -> dict`` and compares the
result against ``*_LIMITS`` (``{quantity: ("<" or ">", threshold)}``) with :func:`check_limits`; its module lists
it in a ``LEARNED`` table ``{name: (measure, limits, breakages)}``. ``benchmarks/learned_margins.py`` runs every
listed measurement over many seeds and every breakage, and prints the spread beside the limits. Keys starting
with ``_`` carry objects for the test's own extra checks; other keys without a limit are reported, not asserted.

A test whose claim is that *training helps* compares with a control in the same call: ``<q>_control`` is the
quantity ``<q>`` measured on the same network untrained (same seed, same initial weights, same test images), and
the limit is on ``<q>_gain = <q> - <q>_control``, so a trained model that merely matches what random weights
already do fails. Such a test also lists the ``"untrained"`` breakage (no training step), which must miss the gain
limit: the gain has teeth. ``learned_margins.py`` shows trained, control and gain side by side over seeds.
"""
import math

UNTRAINED = "untrained"


def gain(measured, quantity):
    """Add ``<quantity>_gain = <quantity> - <quantity>_control`` to ``measured`` (NaN where either is missing)."""
    value, control = measured.get(quantity), measured.get(f"{quantity}_control")
    ok = value is not None and control is not None and math.isfinite(value) and math.isfinite(control)
    measured[f"{quantity}_gain"] = value - control if ok else math.nan
    return measured


def meets(value, op, threshold) -> bool:
    """Whether one measured value meets its limit (``op`` is ``">"`` or ``"<"``); None and NaN never do."""
    return value is not None and math.isfinite(value) and (value > threshold if op == ">" else value < threshold)


def check_limits(measured, limits):
    """The limits ``measured`` misses, as readable strings (empty when it meets all of them)."""
    missed = []
    for name, (op, threshold) in limits.items():
        value = measured[name]
        if not meets(value, op, threshold):
            missed.append(f"{name} = {value:.4g} (wanted {op} {threshold})" if value is not None else f"{name} missing")
    return missed
