"""The diagnostics of one backbone on a set of image groups, as one JSON-able report, and its text table.

:func:`embedding_report` embeds every group (:mod:`.backbone`), measures each non-normal group's separability
from the normal one and, with real defects present, each synthetic family's closeness to them
(:mod:`.separability`); :func:`format_table` prints the numbers. The 2-D map and the ROC curves are added by the
command (:mod:`.cli`), which writes the files.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Dict, List, Sequence, Tuple, Union

import torch

from .backbone import Embedder, embed
from .groups import NORMAL, REAL, SYNTHETIC, Group
from .separability import FOLDS, K, closeness, nearest_cosine, separability


def _describe(group: Group) -> Dict[str, Any]:
    out: Dict[str, Any] = {"kind": group.kind, "count": len(group), "source": group.source, **group.info}
    if group.types is not None:
        out["types"] = dict(sorted(Counter(group.types).items()))
    return out


def embedding_report(groups: Sequence[Group], embedder: Embedder, batch_size: int = 64,
                     device: Union[str, torch.device] = "cpu", seed: int = 0, k: int = K, folds: int = FOLDS
                     ) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """``(report, embeddings by group name)`` for ``groups`` (exactly one normal group, the first or any).

    The report: ``{"groups": {name: {kind, count, source, ...}}, "separability": {name: ...},
    "closeness": {name: ..., "normal": {"nearest_real_cosine"}}}``; ``separability`` has one entry per
    synthetic family and, with real defects, ``real`` and ``real:<type>`` for each type of two or more images;
    ``closeness`` is there only with real defects.
    """
    normals = [g for g in groups if g.kind == NORMAL]
    if len(normals) != 1:
        raise ValueError(f"the diagnostics need exactly one normal group, got {len(normals)}")
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ValueError(f"group names must differ, got {names}")
    normal = normals[0]
    embeddings = {g.name: embed(embedder, g.images, batch_size, device) for g in groups}
    base = embeddings[normal.name]
    report: Dict[str, Any] = {"groups": {g.name: _describe(g) for g in groups}, "separability": {}}
    real = next((g for g in groups if g.kind == REAL), None)
    for group in groups:
        if group.kind == NORMAL:
            continue
        report["separability"][group.name] = separability(base, embeddings[group.name], group.pairs, k, folds, seed)
    if real is not None:
        types = Counter(real.types or [])
        for name in sorted(types):
            if types[name] >= 2 and len(types) > 1:
                keep = torch.tensor([t == name for t in real.types])
                report["separability"][f"{REAL}:{name}"] = separability(base, embeddings[real.name][keep],
                                                                        None, k, folds, seed)
        centre = base.double().mean(0)
        report["closeness"] = {g.name: closeness(embeddings[g.name], embeddings[real.name], base, k, folds, seed)
                               for g in groups if g.kind == SYNTHETIC}
        report["closeness"][normal.name] = {"nearest_real_cosine": nearest_cosine(base, embeddings[real.name],
                                                                                  centre)}
    return report, embeddings


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def format_table(report: Dict[str, Any]) -> str:
    """The separability (and closeness) numbers as a fixed-width text table, in percent (cosine as is)."""
    lines: List[str] = []
    close = report.get("closeness", {})
    header = f"{'group':<24} {'n':>5} {'kNN acc':>8} {'probe acc':>9} {'probe AUROC':>11}"
    if close:
        header += f" {'cos->real':>9} {'real-vs-syn kNN':>15}"
    lines.append(header)
    for name, row in report.get("separability", {}).items():
        line = f"{name:<24} {row['count'][1]:>5} {_pct(row['knn_accuracy']):>8} {_pct(row['probe_accuracy']):>9} " \
               f"{_pct(row['probe_auroc']):>11}"
        if close and name in close:
            c = close[name]
            line += f" {c['nearest_real_cosine']:>9.3f} {_pct(c['real_vs_synthetic_knn_accuracy']):>15}"
        lines.append(line)
    if close and NORMAL in close:
        lines.append(f"{'(normal, baseline)':<24} {'':>5} {'':>8} {'':>9} {'':>11} "
                     f"{close[NORMAL]['nearest_real_cosine']:>9.3f}")
    return "\n".join(lines) + "\n"


__all__ = ["embedding_report", "format_table"]
