"""A bank named in a recipe: a :class:`~defectgen.bank.DefectBank`, a folder, or a dict of builder arguments.

Transplant operators take any of these (:data:`BankSpec`); :func:`as_bank` builds the bank. A dict names its
layout: ``"mvtec"`` (default), ``"pairs"`` (aligned pairs, DeepPCB) or ``"labelled"`` (the defect boxes of K
images of any labelled set, chosen as ``defectgen train --real-count K`` chooses them: :func:`bank_from_config`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from ..io.labelled.real import RealSpec, read_chosen
from .cutting import ESTIMATED_FOREGROUNDS
from .labelled import chosen_class_ids
from .store import DefectBank

BankSpec = Union[DefectBank, str, Path, Dict]

LAYOUT_KEYS = ("root", "format", "split", "count", "seed", "test_every", "image_size", "classes", "channels",
               "margin_px", "ring_px", "foreground")
"""The keys of a ``layout: labelled`` bank config (besides ``layout``)."""


def as_bank(bank: BankSpec, foreground: Optional[str] = None) -> DefectBank:
    """A :class:`DefectBank` from a bank, a folder, or a dict of builder arguments.

    A folder is read as MVTec layout (:meth:`DefectBank.from_mvtec`), or as aligned pairs
    (:meth:`DefectBank.from_deeppcb`) when it has no ``test/`` but a ``templates/`` folder. A dict holds the
    builder's arguments, ``{"root": ..., "defects": [...], "max_per_type": 5}``, plus an optional
    ``"layout": "mvtec"`` (default) or ``"pairs"`` (``{"root": ..., "layout": "pairs", "types": ["short"]}``), so a
    YAML recipe can transplant DeepPCB defects, or ``"labelled"``: the defect boxes of K images of any labelled set
    (``{"layout": "labelled", "root": ..., "format": "yolo", "count": 20, "seed": 0, "classes": ["scratch"]}``,
    chosen as ``defectgen train --real-count 20 --seed 0`` chooses them; see :func:`bank_from_config`).
    ``foreground`` is the builder's default for banks read here (an estimate mode, or None; ``"given"`` counts as
    None)."""
    if foreground not in ESTIMATED_FOREGROUNDS:
        foreground = None
    if isinstance(bank, DefectBank):
        return bank
    if isinstance(bank, (str, Path)):
        root = Path(bank)
        if not (root / "test").is_dir() and (root / "templates").is_dir():
            return DefectBank.from_deeppcb(root, foreground=foreground)
        return DefectBank.from_mvtec(bank, foreground=foreground)
    if isinstance(bank, dict):
        if "root" not in bank:
            raise ValueError(f"a bank config needs a 'root' folder, got keys {sorted(bank)}")
        settings = {k: v for k, v in bank.items() if k != "layout"}
        layout = bank.get("layout", "mvtec")
        if layout == "mvtec":
            return DefectBank.from_mvtec(**{"foreground": foreground, **settings})
        if layout == "pairs":
            return DefectBank.from_deeppcb(**{"foreground": foreground, **settings})
        if layout == "labelled":
            return bank_from_config(settings, foreground)
        raise ValueError(f"a bank config's 'layout' must be 'mvtec', 'pairs' or 'labelled', got {layout!r}")
    raise TypeError(f"bank must be a DefectBank, a folder path or a dict of builder arguments, "
                    f"got {type(bank).__name__}")


def bank_from_config(config: Mapping[str, Any], foreground: Optional[str] = None):
    """The bank a ``{layout: labelled, ...}`` config names (see :data:`LAYOUT_KEYS`).

    The set at ``root`` (``format``, ``split``: as :func:`~defectgen.io.labelled.read_labelled`, the split
    defaulting to the one ``defectgen train --real`` reads) is read, every ``test_every``-th image held out, and
    ``count`` images chosen with ``seed`` by :func:`~defectgen.io.labelled.choose_real` (the K images ``train
    --real-count K --seed S`` uses); their boxes of ``classes`` become the bank's entries. Aligned pairs
    (``format: deeppcb``) are cut by :meth:`DefectBank.from_deeppcb` with the chosen pair ids; other formats by
    :meth:`DefectBank.from_labelled` on images read at ``image_size`` (default: their own size).

    ``foreground`` is the transplant's: the default of the config's own ``foreground`` key.
    """
    unknown = sorted(set(config) - set(LAYOUT_KEYS) - {"layout"})
    if unknown:
        raise TypeError(f"a labelled bank config takes {list(LAYOUT_KEYS)}; unknown keys {unknown}")
    spec = RealSpec.from_config(config).resolved()
    classes = config.get("classes")
    foreground = config.get("foreground", foreground)
    cutting = {k: config[k] for k in ("margin_px", "ring_px") if k in config}
    if spec.format == "deeppcb":
        # names only: the pairs are cut again at full size, by difference with their templates
        chosen = read_chosen(spec, None, 1)[0]
        if classes is not None:
            chosen_class_ids(chosen, classes)  # the same error for an unknown class as the other formats
        return DefectBank.from_deeppcb(spec.root, ids=list(chosen.names), types=classes, foreground=foreground,
                                       channels=config.get("channels", 1), **cutting)
    chosen = read_chosen(spec, spec.image_size, config.get("channels", 3))[0]
    return DefectBank.from_labelled(chosen, classes=classes, foreground=foreground, **cutting)


__all__ = ["BankSpec", "as_bank", "bank_from_config", "LAYOUT_KEYS"]
