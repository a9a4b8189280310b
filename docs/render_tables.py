"""Render every published results table from its committed raw file.

    python docs/render_tables.py            # rewrite the tables in docs/*.md and benchmarks/README.md
    python docs/render_tables.py --check    # exit 1 and list the tables whose text differs from a re-render

A published table sits between two markers in a Markdown file::

    <!-- table: SOURCE#NAME -->
    ...generated: never edit by hand...
    <!-- /table -->

``SOURCE`` is either ``results/FILE.json`` — a raw results file under ``docs/results/`` written by a benchmark
(``benchmarks/raw_results.py``); the benchmark module named in the file renders its table ``NAME`` — or
``ablation/STUDY`` — a study's committed ``docs/ablation/STUDY/results.jsonl``, rendered by the study excerpts
below. A raw file whose results hold ``"tables"`` (numbers transcribed from an earlier README, whose raw output
was never committed) is rendered as it stands, with its provenance note. Under every table goes one line naming
the command, date, machine and release that produced it, so a reader can tell a fresh number from an old one.
``tests/test_published_tables.py`` fails when a committed table differs from its re-render.
"""
from __future__ import annotations

import argparse
import importlib
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from raw_results import markdown_table, provenance, read_raw  # noqa: E402

#: the Markdown files that may hold generated tables
PAGES = ["docs/results.md", "docs/speed.md", "benchmarks/README.md", "docs/diffusion.md", "docs/anomalib.md",
         "docs/ablate.md", "docs/fewshot.md", "docs/pretrain.md", "docs/anomalib_methods.md", "docs/executors.md"]
MARKER = re.compile(r"(<!-- table: (?P<source>[^#\s]+)#(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /table -->)",
                    re.DOTALL)


# -- raw results files ----------------------------------------------------------------------------------------
def render_raw(source: str, name: str) -> str:
    path = DOCS / source
    raw = read_raw(path)
    results = raw["results"]
    if isinstance(results, dict) and "tables" in results:  # transcribed numbers: the table as it was published
        tables = {key: markdown_table(t["header"], t["rows"]) for key, t in results["tables"].items()}
    else:
        module = importlib.import_module(raw["benchmark"])
        tables = module.render_tables(raw)
    if name not in tables:
        raise KeyError(f"{source} has no table {name!r} (it has: {', '.join(tables)})")
    lines = [tables[name], "", provenance(raw)]
    if raw.get("note"):
        lines[-1] = lines[-1][:-2] + f" {raw['note']}*"  # the note belongs to the provenance line
    return "\n".join(lines)


# -- study excerpts -------------------------------------------------------------------------------------------
def study_rows(study: str) -> List[Dict[str, Any]]:
    path = DOCS / "ablation" / study / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _values(rows, family, regime, detector, metric, test_set="real", defect=None) -> List[float]:
    out = []
    for r in rows:
        if (r["family"], r["regime"], r["detector"], r["test_set"]) != (family, regime, detector, test_set):
            continue
        if r.get("status") != "done":
            continue
        source = r.get("per_defect", {}).get(defect, {}) if defect else r.get("metrics", {})
        if metric in source:
            out.append(float(source[metric]))
    return out


def _pct(values: List[float], spread: bool = True) -> str:
    if not values:
        return "-"
    text = f"{100 * statistics.fmean(values):.1f}"
    return text + (f" ± {100 * statistics.stdev(values):.1f}" if spread and len(values) > 1 else "")


def _delta(values: List[float], base: List[float]) -> str:
    if not values or not base:
        return "-"
    return f"{100 * (statistics.fmean(values) - statistics.fmean(base)):+.1f}"


def _minutes(rows, family, regime, detector) -> str:
    """Mean wall time of the family's cells (training and evaluation), as results.jsonl records it."""
    seconds = [r["timings"]["cell_seconds"] for r in rows if (r["family"], r["regime"], r["detector"]) ==
               (family, regime, detector) and (r["timings"] or {}).get("cell_seconds") is not None]
    return f"{statistics.fmean(seconds) / 60:.1f}" if seconds else "-"


def _families(rows) -> List[str]:
    seen: List[str] = []
    for r in rows:
        if r["family"] not in seen:
            seen.append(r["family"])
    return seen


def _study_provenance(study: str, rows) -> str:
    seeds = sorted({r["seed"] for r in rows})
    seconds = sum(r["timings"].get("cell_seconds") or 0 for r in rows if r["test_set"] == rows[0]["test_set"])
    versions = rows[0].get("versions", "")
    torch_version = re.search(r"torch (\S+),", versions)
    return (f"*`docs/ablation/{study}/results.jsonl`: {len({r['cell'] for r in rows})} cells, seeds "
            f"{', '.join(map(str, seeds))}, {seconds / 3600:.1f} h of cell time, torch "
            f"{torch_version.group(1) if torch_version else '?'}.*")


def deeppcb_summary(study: str) -> str:
    """Family × (Faster R-CNN synthetic only, + 20 real, Δ vs 20 real alone, YOLO + 20 real), mAP@50."""
    rows = study_rows(study)
    real_k = sorted({r["regime"] for r in rows if r["regime"].startswith("synthetic+")})[0]
    base = _values(rows, "none", real_k, "fasterrcnn", "map_50")
    table = [["none (20 real alone)", "-", _pct(base), "-", _pct(_values(rows, "none", real_k, "yolo", "map_50"))]]
    for family in _families(rows):
        if family == "none":
            continue
        plus = _values(rows, family, real_k, "fasterrcnn", "map_50")
        table.append([family, _pct(_values(rows, family, "synthetic", "fasterrcnn", "map_50")), _pct(plus),
                      _delta(plus, base), _pct(_values(rows, family, real_k, "yolo", "map_50"))])
    table.append(["none, all real training images", "-",
                  _pct(_values(rows, "none", "real", "fasterrcnn", "map_50")) + " (real only)", "-",
                  _pct(_values(rows, "none", "real", "yolo", "map_50")) + " (real only)"])
    header = ["family", "Faster R-CNN, synthetic only", "Faster R-CNN, + 20 real", "Δ vs 20 real alone",
              "YOLO, + 20 real"]
    return markdown_table(header, table) + "\n\n" + _study_provenance(study, rows)


def anomaly_summary(study: str, families: Optional[List[str]] = None, baseline: Optional[str] = "none") -> str:
    """Pretext × (image AUROC, Δ none, pixel AUROC, AUPRO, image AUROC per real defect type) on the real set."""
    rows = [r for r in study_rows(study) if r["test_set"] == "real"]
    detector = rows[0]["detector"]
    regime = rows[0]["regime"]
    defects = sorted({d for r in rows for d in r.get("per_defect", {})})
    base = _values(rows, baseline, regime, detector, "image_auroc") if baseline else []
    table = []
    for family in families or _families(rows):
        auroc = _values(rows, family, regime, detector, "image_auroc")
        name = f"{family} (untrained)" if family == "none" else family
        table.append([name, _pct(auroc), "-" if family == baseline else _delta(auroc, base),
                      _pct(_values(rows, family, regime, detector, "pixel_auroc")),
                      _pct(_values(rows, family, regime, detector, "aupro"))]
                     + [_pct(_values(rows, family, regime, detector, "image_auroc", defect=d), spread=False)
                        for d in defects] + [_minutes(rows, family, regime, detector)])
    header = ["pretext", "image AUROC", f"Δ {baseline}" if baseline else "Δ", "pixel AUROC", "AUPRO@0.3"] + defects \
        + ["min per cell"]
    return markdown_table(header, table) + "\n\n" + _study_provenance(study, study_rows(study))


def _shots(regime: str) -> Optional[int]:
    """K of a regime: 0 for synthetic only, K for synthetic+K, None for all real images."""
    if regime == "synthetic":
        return 0
    return int(regime.split("+", 1)[1]) if regime.startswith("synthetic+") else None


def fewshot_curves(rows, detector: str, metric: str = "map_50") -> Dict[str, Dict[int, List[float]]]:
    """``{family: {K: [value per seed]}}`` of one detector on the real test set (K = 0: synthetic only)."""
    curves: Dict[str, Dict[int, List[float]]] = {}
    for family in _families(rows):
        for regime in sorted({r["regime"] for r in rows}, key=lambda g: (_shots(g) is None, _shots(g) or 0)):
            k = _shots(regime)
            values = _values(rows, family, regime, detector, metric)
            if k is not None and values:
                curves.setdefault(family, {})[k] = values
    return curves


def real_images_worth(curve: Dict[int, List[float]], value: float) -> str:
    """How many real images alone reach ``value``: the "K real alone" curve (means, K > 0) interpolated linearly
    in log K between measured K; "< K_min" / "> K_max" outside the measured range."""
    import math

    points = sorted((k, statistics.fmean(v)) for k, v in curve.items() if k > 0)
    if not points:
        return "-"
    if value < points[0][1]:
        return f"< {points[0][0]}"
    for (k0, m0), (k1, m1) in zip(points, points[1:]):
        if m0 <= value <= m1 and m1 > m0:
            t = (value - m0) / (m1 - m0)
            return f"{math.exp(math.log(k0) + t * (math.log(k1) - math.log(k0))):.0f}"
    best = max(points, key=lambda p: p[1])
    return f"> {best[0]}" if value > best[1] else f"≈ {best[0]}"


def fewshot_summary(study: str) -> str:
    """Per detector: family × K (mAP@50 mean ± std over seeds on the real test set), each family's Δ against K
    real alone, and how many real images alone the synthetic + 10 real run is worth."""
    rows = study_rows(study)
    parts = []
    for detector in sorted({r["detector"] for r in rows}):
        curves = fewshot_curves(rows, detector)
        ks = sorted({k for c in curves.values() for k in c})
        base = curves.get("none", {})
        table = []
        for family, curve in curves.items():
            name = "K real alone" if family == "none" else f"{family} + K real"
            cells = [_pct(curve.get(k, [])) if family != "none" or k else "-" for k in ks]
            deltas = ["-" if family == "none" else _delta(curve.get(k, []), base.get(k, [])) for k in ks if k]
            worth = "-" if family == "none" or 10 not in curve else real_images_worth(base, statistics.fmean(curve[10]))
            table.append([name] + cells + [" / ".join(deltas), worth])
        header = ["training data"] + [f"K = {k}" for k in ks] + \
            [f"Δ vs K real alone (K = {', '.join(str(k) for k in ks if k)})", "+ 10 real is worth (real images)"]
        parts.append(f"**{detector}**, mAP@50 on the real test images\n\n" + markdown_table(header, table))
    return "\n\n".join(parts) + "\n\n" + _study_provenance(study, rows)


def _method_ranking(study: str, metric: str) -> str:
    """The study report's method ranking (:mod:`detectors.study.methods`) of the real test set on ``metric``,
    recomputed from the committed ``results.jsonl`` and ``study.json``: detectors x test sets (score, rank), then
    Spearman's ρ of each synthetic set against the real one and the best-proxy sentence."""
    from detectors.study.methods import method_ranking, ranking_markdown
    from detectors.study.report import aggregate

    rows = study_rows(study)
    record = json.loads((DOCS / "ablation" / study / "study.json").read_text())
    items = [i for i in method_ranking(record, aggregate(rows)) if i["metric"] == metric and i["real"] == "real"]
    if len(items) != 1:
        raise KeyError(f"ablation/{study}: {len(items)} method rankings of the real set on {metric}")
    return ranking_markdown(items[0], heading=False) + "\n\n" + _study_provenance(study, rows)


def methods_image_auroc(study: str) -> str:
    return _method_ranking(study, "image_auroc")


def methods_pixel_auroc(study: str) -> str:
    return _method_ranking(study, "pixel_auroc")


def methods_aupro(study: str) -> str:
    return _method_ranking(study, "aupro")


STUDY_TABLES: Dict[str, Callable[[str], str]] = {"deeppcb_summary": deeppcb_summary,
                                                 "anomaly_summary": anomaly_summary,
                                                 "fewshot_summary": fewshot_summary,
                                                 "methods_image_auroc": methods_image_auroc,
                                                 "methods_pixel_auroc": methods_pixel_auroc,
                                                 "methods_aupro": methods_aupro}


# -- the pages ------------------------------------------------------------------------------------------------
def render(source: str, name: str) -> str:
    if source.startswith("results/"):
        return render_raw(source, name)
    if source.startswith("ablation/"):
        return STUDY_TABLES[name](source.split("/", 1)[1])
    raise ValueError(f"unknown table source {source!r} (results/FILE.json or ablation/STUDY)")


def render_page(text: str) -> Tuple[str, List[str]]:
    """The page with every marked table re-rendered, and the sources of those that changed."""
    changed: List[str] = []

    def replace(match: re.Match) -> str:
        body = render(match["source"], match["name"]) + "\n"
        if body != match["body"]:
            changed.append(f"{match['source']}#{match['name']}")
        return match.group(1) + body + match.group(5)

    return MARKER.sub(replace, text), changed


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs")
    args = parser.parse_args(argv)
    stale = []
    for page in PAGES:
        path = ROOT / page
        text = path.read_text()
        new, changed = render_page(text)
        stale += [f"{page}: {c}" for c in changed]
        if changed and not args.check:
            path.write_text(new)
    for line in stale:
        print(("differs from its raw file: " if args.check else "re-rendered: ") + line)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
