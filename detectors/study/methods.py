"""Method-ranking validation: does a synthetic test set rank the study's detectors as a real test set does?

For every real test set, metric and regime with two or more detectors, each detector gets one **score** per test
set (the real one, then every synthetic one that has the metric):

1. the mean over seeds of each of its (family, regime) cells, as the study's tables show them;
2. the unweighted mean of those over the **families it was trained with in the regime**: every family but the
   ``none`` baseline (for an anomaly detector, the untrained network; for an object detector, no synthetic
   defects), or ``none`` alone when that is the detector's only family in the regime (the real-only ``real``
   regime). Only families finished on every test set of the table count, so a detector's scores on the real and
   the synthetic sets come from the same cells.

One rule serves both kinds of detector: one that uses the family (CutPaste's pretext, DRAEM's generator, an
object detector's training defects) is scored as "this method with the study's defect families", and one that
ignores it (PatchCore) trains the same model in every family's cell, so its mean is a mean over repeats.

The detectors are ranked on each test set (rank 1 = best; ties share the mean of their ranks), and each
synthetic set's scores are compared with the real set's by Spearman's ρ over the detectors, with its 95 %
interval (:mod:`.ranks`: Fisher's z with the standard error of Fieller, Hartley & Pearson; no interval below 4
detectors). The synthetic set with the highest ρ is named the best proxy, with its interval, whether the
interval excludes 0 and whether it overlaps the second best's.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .ranks import average_ranks, spearman, spearman_interval
from .schema import BASELINE

MIN_INTERVAL = 4  # spearman_interval needs n >= 4


def method_ranking(record: Dict[str, Any], values: Dict[Tuple[str, ...], List[float]]) -> List[Dict[str, Any]]:
    """Per real test set, metric and regime: the detectors' scores and ranks on it and on every synthetic set,
    Spearman's ρ of each synthetic set against it and the best proxy (see the module docstring). ``values`` is
    :func:`.report.aggregate`'s ``{(test set, metric, family, regime, detector): [value per seed]}``. Empty
    with fewer than two detectors, or without a real or a synthetic test set."""
    reals = [t for t, kind in record["test_sets"].items() if kind == "real"]
    synths = [t for t, kind in record["test_sets"].items() if kind == "synthetic"]
    if len(record["detectors"]) < 2 or not reals or not synths:
        return []
    out = []
    for real in reals:
        for metric in record["metrics"]:
            for regime in record["regimes"]:
                item = _ranking_of(record, values, real, synths, metric, regime)
                if item is not None:
                    out.append(item)
    return out


def pooled_families(record: Dict[str, Any], values, detector: str, regime: str, metric: str,
                    test_sets: Sequence[str]) -> List[str]:
    """The families a detector's score pools in ``regime``: those it was trained with (``none`` only when it is
    the detector's one family there), finished on every one of ``test_sets``."""
    planned = {c["family"] for c in record["cells"] if c["detector"] == detector and c["regime"] == regime}
    wanted = [f for f in record["families"] if f in planned and (f != BASELINE or planned == {BASELINE})]
    return [f for f in wanted if all((t, metric, f, regime, detector) in values for t in test_sets)]


def _ranking_of(record, values, real, synths, metric, regime) -> Optional[Dict[str, Any]]:
    def present(test_set):
        return any(k[0] == test_set and k[1] == metric and k[3] == regime for k in values)

    columns = [s for s in synths if present(s)]
    if not present(real) or not columns:
        return None
    test_sets = [real, *columns]
    rows, left_out = [], []
    for det in record["detectors"]:
        if not any(c["detector"] == det and c["regime"] == regime for c in record["cells"]):
            continue  # not a cell of this regime (an anomaly detector under synthetic+K)
        families = pooled_families(record, values, det, regime, metric, test_sets)
        if not families:
            left_out.append(det)
            continue
        scores = {t: statistics.fmean(statistics.fmean(values[(t, metric, f, regime, det)]) for f in families)
                  for t in test_sets}
        rows.append({"detector": det, "families": families, "scores": scores, "ranks": {}})
    if len(rows) < 2:
        return None
    for t in test_sets:
        for row, rank in zip(rows, best_first_ranks([r["scores"][t] for r in rows])):
            row["ranks"][t] = rank
    rows.sort(key=lambda r: (r["ranks"][real], list(record["detectors"]).index(r["detector"])))
    agreement = []
    for synth in columns:
        rho = spearman([r["scores"][real] for r in rows], [r["scores"][synth] for r in rows])
        low, high = spearman_interval(rho, len(rows))
        agreement.append({"synthetic": synth, "n": len(rows), "rho": rho, "ci95": [low, high]})
    item = {"real": real, "metric": metric, "regime": regime, "test_sets": test_sets, "detectors": rows,
            "left_out": left_out, "agreement": agreement}
    item["best"] = best_proxy(agreement)
    item["summary"] = best_proxy_sentence(item)
    return item


def best_first_ranks(scores: Sequence[float]) -> List[float]:
    """Ranks with 1 for the highest score; ties share the mean of the ranks they span."""
    return [len(scores) + 1 - r for r in average_ranks(scores)]


def best_proxy(agreement: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The synthetic set with the highest defined ρ (and those tied with it), how sure: whether its interval
    excludes 0 and whether it overlaps the interval of the next set down; None when no ρ is defined."""
    ranked = sorted((a for a in agreement if not math.isnan(a["rho"])), key=lambda a: -a["rho"])
    if not ranked:
        return None
    top = ranked[0]
    tied = [a["synthetic"] for a in ranked if a["rho"] == top["rho"]]
    rest = [a for a in ranked if a["rho"] < top["rho"]]
    second = rest[0] if rest else None
    low, high = top["ci95"]
    has_interval = not math.isnan(low)
    best = {"synthetic": tied[0], "tied": tied, "rho": top["rho"], "ci95": top["ci95"], "n": top["n"],
            "excludes_zero": (low > 0 or high < 0) if has_interval else None,
            "second": second["synthetic"] if second else None,
            "overlaps_second": None}
    if has_interval and second is not None and not math.isnan(second["ci95"][0]):
        best["overlaps_second"] = second["ci95"][1] >= low
    return best


def _rho_text(a: Dict[str, Any]) -> str:
    low, high = a["ci95"]
    interval = "" if math.isnan(low) else f", 95 % interval {low:+.2f} … {high:+.2f}"
    return f"ρ = {a['rho']:+.2f}{interval}, n = {a['n']}"


def best_proxy_sentence(item: Dict[str, Any]) -> str:
    """One or two sentences naming the synthetic set with the highest ρ against ``item``'s real set, its
    interval and how sure the choice is."""
    best, real = item["best"], item["real"]
    if best is None:
        return (f"No synthetic test set has a defined ρ against `{real}`: the detectors' scores are all equal on "
                "one side.")
    names = " and ".join(f"`{s}`" for s in best["tied"])
    lead = (f"Best proxy for `{real}`: {names}" + (" (tied)" if len(best["tied"]) > 1 else "")
            + f", {_rho_text(best)}.")
    if best["n"] < MIN_INTERVAL:
        return (lead + f" No interval with fewer than {MIN_INTERVAL} detectors: with {best['n']}, ρ takes only a "
                       "few values and says little; study at least 4 detectors to know how sure it is.")
    if abs(best["rho"]) > 1 - 1e-9:  # the chance of a perfect order says more than an interval at the bound
        lead += (f" {best['n']} detectors fall in one given order by chance with probability "
                 f"1/{math.factorial(best['n'])} (without ties).")
    if best["excludes_zero"]:
        sure = (" Its interval excludes 0: it ranks the detectors as the real set does beyond chance."
                if best["rho"] > 0 else
                " Its interval lies below 0: even the best synthetic set ranks the detectors in the opposite order.")
    else:
        sure = " Its interval includes 0: no evidence that it ranks the detectors as the real set does."
    if best["second"] is None:
        other = " It is the only synthetic test set." if len(item["agreement"]) == 1 else ""
    else:
        second = next(a for a in item["agreement"] if a["synthetic"] == best["second"])
        if best["overlaps_second"] is None:
            other = f" Next: `{second['synthetic']}` ({_rho_text(second)})."
        elif best["overlaps_second"]:
            other = (f" Its interval overlaps the next one's (`{second['synthetic']}`, {_rho_text(second)}): "
                     "this study does not tell the two apart.")
        else:
            other = (f" Its interval is clear of the next one's (`{second['synthetic']}`, {_rho_text(second)}): "
                     "it is the better proxy.")
    return lead + sure + other


def _rank_text(rank: float) -> str:
    return f"{rank:.0f}" if rank == int(rank) else f"{rank:.1f}"


def ranking_markdown(item: Dict[str, Any], heading: bool = True) -> str:
    """One table section: detectors x test sets (score in percent, rank), then ρ per synthetic set and the
    best-proxy sentence; ``heading=False`` leaves out its ``###`` line (a page that gives its own)."""
    real, sets = item["real"], item["test_sets"]
    head = ["detector", "families", *(f"{t} (real)" if t == real else t for t in sets)]
    lines = [f"### `{real}`: {item['metric']}, regime {item['regime']}", ""] if heading else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in item["detectors"]:
        families = ", ".join(row["families"]) if len(row["families"]) <= 2 else f"{len(row['families'])}"
        cells = [f"{100 * row['scores'][t]:.1f} ({_rank_text(row['ranks'][t])})" for t in sets]
        lines.append("| " + " | ".join([row["detector"], families, *cells]) + " |")
    lines += ["", "| synthetic | n | Spearman ρ | 95 % interval |", "|---|---|---|---|"]
    for a in item["agreement"]:
        rho = "-" if math.isnan(a["rho"]) else f"{a['rho']:+.2f}"
        low, high = a["ci95"]
        ci = f"- (n < {MIN_INTERVAL})" if math.isnan(low) else f"{low:+.2f} … {high:+.2f}"
        lines.append(f"| {a['synthetic']} | {a['n']} | {rho} | {ci} |")
    lines += ["", f"**{item['summary']}**"]
    if item["left_out"]:
        lines += ["", "Left out (no family finished on every test set of the table): "
                  + ", ".join(f"`{d}`" for d in item["left_out"]) + "."]
    return "\n".join(lines)


RANKING_INTRO = (
    "Each detector's score on a test set: the mean over seeds of each of its (family, regime) cells, then the "
    f"unweighted mean over the families it was trained with in the regime (`{BASELINE}` left out unless it is "
    "the detector's only family there, as in the real-only `real` regime; only families finished on every test "
    "set of the table). A detector that ignores the family (e.g. PatchCore) is the same model in every "
    "family's cell, so its mean is over repeats. Values in percent, the rank in brackets (1 = best). Spearman's "
    "ρ over the detectors between each synthetic set's scores and the real set's, with a 95 % interval (Fisher "
    f"z, se = √(1.06 / (n − 3))); it needs {MIN_INTERVAL} or more detectors (with fewer, no interval).")


def plot_name(item: Dict[str, Any]) -> str:
    return f"methods__{item['real']}__{item['metric']}__{item['regime']}.png"


def write_method_plots(record: Dict[str, Any], items: List[Dict[str, Any]], folder: Path) -> List[Path]:
    """``methods__<real>__<metric>__<regime>.png`` per ranking: a panel per synthetic test set, one labelled
    point per detector at (score on real, score on the synthetic set), ρ and its interval in the title."""
    if not items:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for item in items:
        real, panels = item["real"], item["agreement"]
        fig, axes = plt.subplots(1, len(panels), figsize=(0.6 + 3.6 * len(panels), 3.9), squeeze=False,
                                 layout="constrained")
        xs = [100 * r["scores"][real] for r in item["detectors"]]
        for ax, a in zip(axes[0], panels):
            ys = [100 * r["scores"][a["synthetic"]] for r in item["detectors"]]
            ax.scatter(xs, ys, s=28, color="tab:blue", zorder=3)
            for x, y, row in zip(xs, ys, item["detectors"]):
                ax.annotate(row["detector"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
            low, high = min(xs + ys), max(xs + ys)
            pad = max(1.0, 0.08 * (high - low))
            ax.plot([low - pad, high + pad], [low - pad, high + pad], color="#bbbbbb", lw=0.8, ls="--", zorder=1)
            ax.set_xlim(min(xs) - pad, max(xs) + 3 * pad)  # room on the right for the labels
            ax.set_ylim(min(ys) - pad, max(ys) + 2 * pad)
            rho = "ρ undefined" if math.isnan(a["rho"]) else f"ρ = {a['rho']:+.2f}"
            ci = "" if math.isnan(a["ci95"][0]) else f" [{a['ci95'][0]:+.2f}, {a['ci95'][1]:+.2f}]"
            ax.set_title(f"{a['synthetic']}: {rho}{ci}, n = {a['n']}", fontsize=9)
            ax.set_xlabel(f"{item['metric']} on {real} (%)", fontsize=8)
            ax.set_ylabel(f"{item['metric']} on {a['synthetic']} (%)", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        fig.suptitle(f"{record['name']}: detectors on synthetic vs real test sets (regime {item['regime']}; "
                     "dashed: y = x)", fontsize=10)
        path = folder / plot_name(item)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
