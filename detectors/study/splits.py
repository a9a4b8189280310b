"""The study's fixed splits of its real data, the one rule that both reading the data (:mod:`.data`) and the
no-test-data-in-training check (:mod:`.overlap`) follow: which DeepPCB pairs are test pairs, and which defective
MVTec test images ``data.defect_split`` gives to training.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Set, Tuple

from .plan import Study


def resolved(path: Any) -> Path:
    """A path as the overlap check compares paths: user folder expanded, absolute, links resolved."""
    return Path(str(path)).expanduser().resolve()


def split_pair_ids(ids: List[str], every: int) -> Tuple[List[str], List[str]]:
    """A DeepPCB study's ``(training ids, test ids)`` from its sorted pair ids: every ``every``-th is a test pair
    (the one rule; the overlap check lists the same pairs)."""
    return ([i for k, i in enumerate(ids) if k % every != every - 1],
            [i for k, i in enumerate(ids) if k % every == every - 1])


def mvtec_root(root: Path) -> Path:
    """An MVTec root as the labelled-set reader takes it: a ``defectgen generate`` output holds one as ``mvtec/``."""
    if not (root / "train").is_dir() and not (root / "test").is_dir() and (root / "mvtec").is_dir():
        return root / "mvtec"
    return root


def defect_split_training(study: Study) -> Set[Path]:
    """The resolved image files of ``data.defect_split``'s training part (empty without one): the defective
    test images of the MVTec folder ``data.root`` that families may learn from and the real test set leaves out."""
    spec = study.data.get("defect_split")
    if not spec:
        return set()
    from defectgen.io.mvtec import split_defects

    parts = split_defects(mvtec_root(study.resolve_path(study.data["root"])), spec["shots"], spec["seed"])
    return {resolved(item.image) for item in parts.train}
