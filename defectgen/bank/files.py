"""Which files :meth:`DefectBank.from_mvtec <defectgen.bank.DefectBank.from_mvtec>` reads: the defective test images
of an MVTec-layout folder, by type, optionally one part of the fixed shots split.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

from ..checks import check_int
from .pixels import PathLike


def mvtec_bank_items(root: PathLike, defects: Optional[Sequence[str]] = None, max_per_type: Optional[int] = None,
                     split: Optional[str] = None, shots: Optional[Union[int, float]] = None, split_seed: int = 0,
                     **_cutting) -> list:
    """The :class:`~defectgen.io.MVTecItem` s ``DefectBank.from_mvtec`` with these arguments reads (files only,
    nothing decoded; the cutting arguments, ``margin_px`` etc., are accepted and ignored), so a caller can tell
    which real images a bank config learns from without building it."""
    return mvtec_items(root, defects, max_per_type, split, shots, split_seed)[0]


def mvtec_items(root, defects, max_per_type, split, shots, split_seed):
    from ..io.mvtec import SPLIT_PARTS, read_mvtec, split_defects

    if split is None and shots is not None:
        raise ValueError(f"DefectBank.from_mvtec: shots={shots!r} needs split= (one of {SPLIT_PARTS}): which part "
                         "of the split to read")
    if split is not None and split not in SPLIT_PARTS:
        raise ValueError(f"DefectBank.from_mvtec: split must be one of {SPLIT_PARTS} or None, got {split!r}")
    if split is not None and shots is None:
        raise ValueError("DefectBank.from_mvtec: split= needs shots= (a fraction of each type, or a count per type)")
    try:
        layout = read_mvtec(root, defects, require_test=True)
    except ValueError as error:
        raise ValueError(f"DefectBank.from_mvtec: {error}") from None
    defects = layout.defect_types
    if not defects:
        raise ValueError(f"DefectBank.from_mvtec: no defect folders under {str(Path(root) / 'test')!r}")
    if max_per_type is not None:
        max_per_type = check_int(max_per_type, "max_per_type", 1)
    items = [it for it in layout.test if it.is_anomalous]
    if split is not None:
        try:
            parts = split_defects(layout, shots, split_seed)
        except ValueError as error:
            raise ValueError(f"DefectBank.from_mvtec: {error}") from None
        items = parts.train if split == "train" else parts.held_out
        if not items:
            raise ValueError(f"DefectBank.from_mvtec: the {split!r} part of the split (shots={shots!r}) holds no "
                             f"image of {defects}")
    items = [it for defect in defects for it in [it for it in items if it.defect == defect][:max_per_type]]
    return items, defects


__all__ = ["mvtec_bank_items", "mvtec_items"]
