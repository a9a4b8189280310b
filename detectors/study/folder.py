"""The study folder (``--out``): where a study's files are, ``--shard k/N``, and the refusal of a folder that holds
another study. The mechanism is :mod:`defectgen.run_folder`, shared with ``defectgen generate``: done-records
read back with :func:`~defectgen.run_folder.read_json`, a shard's cells by
:func:`~defectgen.run_folder.interleaved_share` (every N-th cell, so each shard gets a mix of cheap and costly
cells), the keys two settings differ in by :func:`~defectgen.run_folder.differing_keys`.

The layout (:mod:`.runner` writes it, :mod:`.report` reads it)::

    study.json                 the study: its fingerprint (the resolved recipe), the plan of cells, metadata
    cells/<id>/cell.json       the cell's resolved settings (``id`` is their hash)
    cells/<id>/result.json     written last, atomically: status done (record + metrics per test set) or failed
    cells/<id>/log.txt         what the cell printed: training progress, metrics, the traceback of a failure
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

from defectgen import run_folder
from defectgen.run_folder import differing_keys, name_keys, read_json

from .plan import Cell, Study
from .schema import RecipeError

STUDY_FILE = "study.json"
CELLS = "cells"
RESULT = "result.json"


def parse_shard(text: str) -> Tuple[int, int]:
    """``"k/N"`` (``0 <= k < N``) -> ``(k, N)``: this process runs the cells whose index ``% N == k``."""
    return run_folder.parse_shard(text, RecipeError)


def check_out_folder(study: Study, out: Path, cells: List[Cell]) -> None:
    """Refuse a study folder that holds another study: name the recipe keys that differ."""
    existing = read_json(out / STUDY_FILE)
    if existing is None:
        return
    keys = differing_keys(existing.get("fingerprint", {}), study.fingerprint())
    if not keys:  # the same recipe text, but a file it names (an operator recipe) may have changed since
        before = {(c["family"], c["regime"], c["detector"], c["seed"]): c["id"] for c in existing.get("cells", [])}
        changed = [c for c in cells if before.get((c.family, c.regime, c.detector, c.seed), c.id) != c.id]
        keys = sorted({f"families.{c.family}.recipe (the file's content)" for c in changed
                       if isinstance(study.families[c.family], dict) and "recipe" in study.families[c.family]}
                      | {f"detectors.{c.detector}.backbone_weights (the file's content)" for c in changed
                         if "backbone_weights" in study.detectors[c.detector]}) or (
            ["a file the recipe names (its content)"] if changed else [])
    if keys:
        raise RecipeError(f"{str(out)!r} holds a study whose recipe differs in: {name_keys(keys, 12)}; use another "
                          "--out, or restore the recipe it was run with")
