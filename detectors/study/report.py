"""A study's report, rendered from its folder alone (``study.json`` and the cells' ``result.json``).

- ``results.jsonl``: one line per cell x test set (plan order): the cell's family, regime, detector and seed,
  its status (and error), the test set's metrics, the training record, timings and library versions; ``overlap``
  (how many of the test set's files the family learnt from) for a family run with ``allow_overlap: true``.
- ``results.csv``: the same, flat, one metric per column.
- ``table.md``: per test set and metric, families x regimes against detectors: mean +- std over seeds, each as a
  percentage of the detector's real-only baseline (``none / real``) and as a difference (points) from the
  ``none`` row of the same regime; failed and pending cells marked, and families that learnt from files of a
  test set (``allow_overlap``) marked ``†`` with a footnote. Then a ranking of the families per test set,
  the synthetic validation and, with two or more detectors, the method ranking (:mod:`.methods`).
- ``heatmaps/<test set>__<metric>.png``: family x detector, one panel per regime; with the method ranking,
  ``heatmaps/methods__<real>__<metric>__<regime>.png``: each detector's score on every synthetic set against
  its score on the real one (both need matplotlib; skipped with a note in ``table.md`` without it).

**Synthetic validation.** When the study has real and synthetic test sets, each synthetic one is compared with
each real one: for every detector and regime, Spearman's rank correlation between the families' means on the
two (:mod:`.ranks`, with its 95 % interval), and, with three or more detectors, the same over the detectors for
every family. A correlation near 1 with an interval clear of 0 says the synthetic set picks the same families
as real defects would.

**Method ranking** (:mod:`.methods`). With two or more detectors, the same question for the detectors
themselves: their scores (pooled over the families they were trained with) ranked on the real and on each
synthetic test set, Spearman's ρ over the detectors per synthetic set, and the synthetic set that is the best
proxy for the real one, with its interval.
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from defectgen.io.atomic import write_text_atomic
from defectgen.run_folder import read_json

from .folder import CELLS, RESULT, STUDY_FILE
from .methods import RANKING_INTRO, method_ranking, ranking_markdown, write_method_plots
from .ranks import spearman, spearman_interval
from .schema import BASELINE

Key = Tuple[str, str, str, str, str]  # test set, metric, family, regime, detector


def load(out: Union[str, Path]) -> Tuple[Dict[str, Any], Dict[str, Dict[str, Any]]]:
    """``(study record, {cell id: result})`` of a study folder; a ``ValueError`` if it is not one."""
    out = Path(out)
    record = read_json(out / STUDY_FILE)
    if record is None:
        raise ValueError(f"{str(out)!r} is not a study folder (no readable {STUDY_FILE}); run defectgen ablate first")
    results = {}
    for cell in record["cells"]:
        result = read_json(out / CELLS / cell["id"] / RESULT)
        if result is not None:
            results[cell["id"]] = result
    return record, results


def result_rows(record: Dict[str, Any], results: Dict[str, Dict[str, Any]], folder: Optional[Path] = None
                ) -> List[Dict[str, Any]]:
    """The rows of ``results.jsonl`` (see the module docstring), in plan order; pending cells have none. With the
    study ``folder``, each row also carries the cell's resolved settings (its ``cell.json``)."""
    rows = []
    for cell in record["cells"]:
        result = results.get(cell["id"])
        if result is None:
            continue
        settings = (read_json(folder / CELLS / cell["id"] / "cell.json") or {}).get("settings") if folder else None
        for test_set, kind in record["test_sets"].items():
            row = {"cell": cell["id"], "family": cell["family"], "regime": cell["regime"],
                   "detector": cell["detector"], "seed": cell["seed"], "test_set": test_set, "test_kind": kind,
                   "status": result.get("status")}
            if result.get("status") == "done":
                test = result["tests"].get(test_set, {})
                row["metrics"] = {k: v for k, v in test.get("overall", {}).items() if isinstance(v, (int, float))}
                for key in ("per_true_class", "per_defect"):
                    if test.get(key):
                        row[key] = test[key]
                row["record"] = result.get("record", {})
                row["timings"] = {"train_seconds": row["record"].get("train_seconds"),
                                  "eval_seconds": test.get("seconds"), "cell_seconds": result.get("seconds")}
            else:
                row["error"] = result.get("error")
                row["timings"] = {"cell_seconds": result.get("seconds")}
            overlap = record.get("overlaps", {}).get(cell["family"], {}).get(test_set)
            if overlap:  # the family learnt from this many of the test set's files (allow_overlap: true)
                row["overlap"] = overlap["count"]
            row["versions"] = result.get("versions")
            if settings is not None:
                row["settings"] = settings
            rows.append(row)
    return rows


def aggregate(rows: List[Dict[str, Any]]) -> Dict[Key, List[float]]:
    """Every finished value, by (test set, metric, family, regime, detector), one per seed."""
    values: Dict[Key, List[float]] = {}
    for row in rows:
        for metric, value in row.get("metrics", {}).items():
            if isinstance(value, (int, float)) and not math.isnan(value):
                key = (row["test_set"], metric, row["family"], row["regime"], row["detector"])
                values.setdefault(key, []).append(float(value))
    return values


def mean(values: Optional[List[float]]) -> Optional[float]:
    return statistics.fmean(values) if values else None


def _fmt(values: Optional[List[float]]) -> str:
    if not values:
        return "-"
    text = f"{100 * statistics.fmean(values):.1f}"
    return text + (f" ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else "")


def _metrics_present(record, values, test_set) -> List[str]:
    return [m for m in record["metrics"] if any(k[0] == test_set and k[1] == m for k in values)]


def _row_keys(record) -> List[Tuple[str, str]]:
    """(family, regime) rows in plan order."""
    seen: List[Tuple[str, str]] = []
    for cell in record["cells"]:
        key = (cell["family"], cell["regime"])
        if key not in seen:
            seen.append(key)
    regimes = record["regimes"]
    return sorted(seen, key=lambda fr: (regimes.index(fr[1]), record["families"].index(fr[0])))


OVERLAP_MARK = "†"


def family_label(record, family: str) -> str:
    """A family's name in the tables: marked when it learnt from files of a test set (``allow_overlap``)."""
    return f"{family} {OVERLAP_MARK}" if family in record.get("overlaps", {}) else family


def overlap_note(record) -> List[str]:
    """The footnote of the marked families: which test sets, how many files, from where."""
    overlaps = record.get("overlaps") or {}
    if not overlaps:
        return []
    lines = [f"{OVERLAP_MARK} Trained on files of a test set it is scored on (`allow_overlap: true` in the recipe): "
             "its numbers on that test set are not comparable with the other families'."]
    for family, per_test in overlaps.items():
        for test_set, found in per_test.items():
            files = ", ".join(f"`{f}`" for f in found["files"][:3])
            more = f" and {found['count'] - 3} more" if found["count"] > 3 else ""
            lines.append(f"- `{family}`: {found['count']} files of `{test_set}`, from {found['source']} "
                         f"({files}{more})")
    return lines + [""]


def _status_mark(record, results, family, regime, detector) -> Optional[str]:
    ids = [c["id"] for c in record["cells"]
           if (c["family"], c["regime"], c["detector"]) == (family, regime, detector)]
    if not ids:
        return None
    states = [results.get(i, {}).get("status", "pending") for i in ids]
    if "failed" in states:
        return f"failed {states.count('failed')}/{len(ids)}"
    if "pending" in states:
        return f"pending {states.count('pending')}/{len(ids)}"
    return None


def metric_table(record, results, values, test_set, metric) -> str:
    """One Markdown table: rows (family, regime), for each detector: value, % of real-only, points over none."""
    detectors = list(record["detectors"])
    head = ["family", "regime"]
    for det in detectors:
        head += [det, "% real", "Δ none"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for family, regime in _row_keys(record):
        cells = [family_label(record, family), regime]
        for det in detectors:
            got = values.get((test_set, metric, family, regime, det))
            mark = _status_mark(record, results, family, regime, det)
            shown = _fmt(got) if got else ""
            if mark:  # some of the row's seeds failed or are still to run
                shown = f"{shown} ({mark})".strip()
            shown = shown or "-"
            real = mean(values.get((test_set, metric, BASELINE, "real", det)))
            none = mean(values.get((test_set, metric, BASELINE, regime, det)))
            value = mean(got)
            pct = f"{100 * value / real:.0f} %" if value is not None and real else "-"
            delta = f"{100 * (value - none):+.1f}" if value is not None and none is not None \
                and family != BASELINE else "-"
            cells += [shown, pct, delta]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_type_tables(record, rows, test_set) -> List[str]:
    """Markdown sections: the first metric against each real defect type, per detector (rows: family, regime).
    Object detectors give the agnostic AP@50 against each type's boxes (``per_true_class``), anomaly detectors
    their metrics on the defect-free images plus each type's (``per_defect``)."""
    per: Dict[Tuple[str, str, str, str], List[float]] = {}
    metric_of: Dict[str, str] = {}
    types: List[str] = []
    for row in rows:
        if row["test_set"] != test_set:
            continue
        if row.get("per_true_class"):
            table, metric, key = row["per_true_class"], "map_50", "ap_50"
        elif row.get("per_defect"):
            metric = next((m for m in record["metrics"] if m in next(iter(row["per_defect"].values()))), None)
            table, key = row["per_defect"], metric
        else:
            continue
        if metric is None:
            continue
        metric_of[row["detector"]] = metric
        for name, scores in table.items():
            if isinstance(scores.get(key), (int, float)):
                types += [name] if name not in types else []
                per.setdefault((row["detector"], row["family"], row["regime"], name), []).append(float(scores[key]))
    out = []
    for det, metric in metric_of.items():
        head = ["family", "regime", *types]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for family, regime in _row_keys(record):
            got = [per.get((det, family, regime, t)) for t in types]
            if any(got):
                lines.append("| " + " | ".join([family_label(record, family), regime, *(_fmt(g) for g in got)])
                             + " |")
        what = "agnostic AP@50 against each type's boxes" if metric == "map_50" else \
            f"{metric} on the defect-free images plus each type's"
        out += [f"### {test_set}: {det}, per real defect type ({what})", "", *lines, ""]
    return out


def ranking(record, values, test_set) -> List[str]:
    """Families best first, per detector and regime, by the first recipe metric the test set has."""
    lines = []
    metrics = _metrics_present(record, values, test_set)
    if not metrics:
        return lines
    metric = metrics[0]
    for det in record["detectors"]:
        for regime in record["regimes"]:
            scored = [(mean(values[(test_set, metric, fam, regime, det)]), fam) for fam in record["families"]
                      if (test_set, metric, fam, regime, det) in values]
            if len(scored) < 2:
                continue
            scored.sort(key=lambda pair: -pair[0])
            order = " > ".join(f"{family_label(record, fam)} {100 * v:.1f}" for v, fam in scored)
            lines.append(f"- {det}, {regime} ({metric}): {order}")
    return lines


def synthetic_validation(record, values) -> List[Dict[str, Any]]:
    """Rank agreement of every synthetic test set with every real one (see the module docstring)."""
    reals = [t for t, kind in record["test_sets"].items() if kind == "real"]
    synths = [t for t, kind in record["test_sets"].items() if kind == "synthetic"]
    groups = []  # (what is ranked, the fixed one, regime, the (family, regime, detector) keys ranked)
    for regime in record["regimes"]:
        groups += [("families", det, regime, [(f, regime, det) for f in record["families"]])
                   for det in record["detectors"]]
        if len(record["detectors"]) >= 3:
            groups += [("detectors", fam, regime, [(fam, regime, d) for d in record["detectors"]])
                       for fam in record["families"]]
    out = []
    for real in reals:
        for synth in synths:
            for metric in record["metrics"]:
                for ranked, within, regime, keys in groups:
                    pairs = [(mean(values[(real, metric, *k)]), mean(values[(synth, metric, *k)])) for k in keys
                             if (real, metric, *k) in values and (synth, metric, *k) in values]
                    if len(pairs) >= 2:
                        out.append(_agreement(real, synth, metric, ranked, within, regime, pairs))
    return out


def _agreement(real, synth, metric, ranked, within, regime, pairs) -> Dict[str, Any]:
    rho = spearman([p[0] for p in pairs], [p[1] for p in pairs])
    low, high = spearman_interval(rho, len(pairs))
    return {"real": real, "synthetic": synth, "metric": metric, "ranked": ranked, "within": within,
            "regime": regime, "n": len(pairs), "rho": rho, "ci95": [low, high]}


def validation_markdown(items: List[Dict[str, Any]]) -> str:
    if not items:
        return ""
    lines = ["| real | synthetic | metric | ranks | of | regime | n | Spearman ρ | 95 % interval |",
             "|---|---|---|---|---|---|---|---|---|"]
    for it in items:
        rho = "-" if math.isnan(it["rho"]) else f"{it['rho']:+.2f}"
        low, high = it["ci95"]
        ci = "- (n < 4)" if math.isnan(low) else f"{low:+.2f} … {high:+.2f}"
        lines.append(f"| {it['real']} | {it['synthetic']} | {it['metric']} | {it['ranked']} | {it['within']} | "
                     f"{it['regime']} | {it['n']} | {rho} | {ci} |")
    return "\n".join(lines)


def render_table(record, results, rows, values, heatmap_note: str = "",
                 methods: Optional[List[Dict[str, Any]]] = None) -> str:
    states = [results.get(c["id"], {}).get("status", "pending") for c in record["cells"]]
    seconds = sum(float(r.get("seconds") or 0) for r in results.values())
    parts = [f"# Study `{record['name']}`" + (f" (budget {record['budget']})" if record.get("budget") else ""),
             "",
             f"{len(states)} cells: {states.count('done')} done, {states.count('failed')} failed, "
             f"{states.count('pending')} pending; {seconds / 3600:.1f} h of cell time (training and evaluation, "
             f"summed over cells and shards). Values in percent: mean ± std over seeds "
             f"({', '.join(map(str, record['seeds']))}). **% real**: of the same detector's real-only baseline "
             f"(`{BASELINE}` / `real`); **Δ none**: points over the `{BASELINE}` row of the same regime and detector "
             f"(`{BASELINE}` / `synthetic+K` is K real images alone; for an anomaly detector `{BASELINE}` is the "
             "untrained network).", ""]
    parts += overlap_note(record)
    for test_set, kind in record["test_sets"].items():
        for metric in _metrics_present(record, values, test_set):
            parts += [f"## {test_set} ({kind} test set): {metric}", "", metric_table(record, results, values,
                                                                                     test_set, metric), ""]
    for test_set in record["test_sets"]:
        parts += per_type_tables(record, rows, test_set)
    parts += ["## Ranking of the families", ""]
    for test_set in record["test_sets"]:
        lines = ranking(record, values, test_set)
        if lines:
            parts += [f"Test set `{test_set}`:", "", *lines, ""]
    validation = synthetic_validation(record, values)
    if validation:
        parts += ["## Synthetic validation: does a synthetic test set rank like the real one?", "",
                  "Spearman's ρ between the means on the real and on the synthetic test set (over the families "
                  "for each detector; over the detectors for each family when there are three or more), with a "
                  "95 % interval (Fisher z, se = √(1.06 / (n − 3))).", "", validation_markdown(validation), ""]
    methods = method_ranking(record, values) if methods is None else methods
    if methods:
        parts += ["## Method ranking: which synthetic test set ranks the detectors as the real one does?", "",
                  RANKING_INTRO, ""]
        for item in methods:
            parts += [ranking_markdown(item), ""]
    failed = [(c, results[c["id"]]) for c in record["cells"] if results.get(c["id"], {}).get("status") == "failed"]
    if failed:
        parts += ["## Failed cells", ""] + [f"- `{c['id']}` {c['family']} / {c['regime']} / {c['detector']} / seed "
                                            f"{c['seed']}: {r.get('error')}" for c, r in failed] + [""]
    if heatmap_note:
        parts += [heatmap_note, ""]
    return "\n".join(parts)


def write_heatmaps(record, values, folder: Path) -> List[Path]:
    """``<test set>__<metric>.png`` per test set and metric: family x detector, a panel per regime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    detectors, families = list(record["detectors"]), list(record["families"])
    for test_set in record["test_sets"]:
        for metric in _metrics_present(record, values, test_set):
            regimes = [r for r in record["regimes"]
                       if any((test_set, metric, f, r, d) in values for f in families for d in detectors)]
            # one colour scale over the figure's own range: AUROCs of 89-97 would all look alike on 0-100
            shown = [100 * mean(v) for k, v in values.items() if k[0] == test_set and k[1] == metric]
            low, high = math.floor(min(shown)), math.ceil(max(shown))
            high = high if high > low else low + 1
            fig, axes = plt.subplots(1, len(regimes), figsize=(1.6 + 1.3 * len(detectors) * len(regimes),
                                                               1.2 + 0.42 * len(families)), squeeze=False,
                                     layout="constrained")
            for ax, regime in zip(axes[0], regimes):
                grid = np.full((len(families), len(detectors)), np.nan)
                for i, fam in enumerate(families):
                    for j, det in enumerate(detectors):
                        v = mean(values.get((test_set, metric, fam, regime, det)))
                        if v is not None:
                            grid[i, j] = 100 * v
                image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=low, vmax=high, aspect="auto")
                ax.set_facecolor("#dddddd")
                for i in range(len(families)):
                    for j in range(len(detectors)):
                        text = "-" if np.isnan(grid[i, j]) else f"{grid[i, j]:.1f}"
                        colour = "black" if not np.isnan(grid[i, j]) and grid[i, j] > (low + high) / 2 else "white"
                        ax.text(j, i, text, ha="center", va="center", fontsize=8,
                                color="black" if np.isnan(grid[i, j]) else colour)
                ax.set_xticks(range(len(detectors)), detectors, fontsize=8)
                ax.set_yticks(range(len(families)), families, fontsize=8)
                ax.set_title(regime, fontsize=9)
            fig.colorbar(image, ax=list(axes[0]), fraction=0.05, pad=0.02)
            fig.suptitle(f"{record['name']}: {metric} on {test_set} (%)", fontsize=10)
            path = folder / f"{test_set}__{metric}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
    return paths


CSV_FIELDS = ["cell", "family", "regime", "detector", "seed", "test_set", "test_kind", "status"]


def render_report(out: Union[str, Path], heatmaps: bool = True) -> Dict[str, Any]:
    """Write ``results.jsonl``, ``results.csv``, ``table.md``, the heatmaps and the method-ranking plots into
    the study folder ``out``; returns their paths (``heatmaps``, ``method_plots``), the synthetic validation
    (``validation``) and the method ranking (``method_ranking``: :func:`.methods.method_ranking`'s items)."""
    out = Path(out)
    record, results = load(out)
    rows = result_rows(record, results, out)
    values = aggregate(rows)
    write_text_atomic(out / "results.jsonl", "".join(json.dumps(r, sort_keys=True, default=str) + "\n"
                                                    for r in rows))
    metric_names = sorted({m for r in rows for m in r.get("metrics", {})},
                          key=lambda m: (m not in record["metrics"], m))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_FIELDS + metric_names + ["train_seconds", "eval_seconds", "error"])
    for r in rows:
        writer.writerow([r[k] for k in CSV_FIELDS] + [r.get("metrics", {}).get(m, "") for m in metric_names]
                        + [r["timings"].get("train_seconds", ""), r["timings"].get("eval_seconds", ""),
                           r.get("error", "")])
    write_text_atomic(out / "results.csv", buffer.getvalue())
    paths: Dict[str, Any] = {"jsonl": out / "results.jsonl", "csv": out / "results.csv", "heatmaps": [],
                             "method_plots": []}
    methods = method_ranking(record, values)
    note = ""
    if heatmaps:
        try:
            paths["heatmaps"] = write_heatmaps(record, values, out / "heatmaps")
            paths["method_plots"] = write_method_plots(record, methods, out / "heatmaps")
        except ImportError:
            note = ("Heatmaps" + (" and method-ranking plots" if methods else "")
                    + " skipped: matplotlib is not installed (pip install 'defectgen[plots]').")
    write_text_atomic(out / "table.md", render_table(record, results, rows, values, note, methods))
    paths["table"] = out / "table.md"
    paths["validation"] = synthetic_validation(record, values)
    paths["method_ranking"] = methods
    return paths
