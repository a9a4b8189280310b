"""The method ranking of a study's report: Spearman's rho over the detectors against hand-computed cases, the
families a detector's score pools, the best-proxy sentence, no interval below four detectors, the plot, and
the section in the report of a hand-written study folder (no training: results are written directly)."""
import json
import math

import pytest

from detectors.study.folder import CELLS, RESULT, STUDY_FILE
from detectors.study.methods import best_first_ranks, method_ranking, pooled_families
from detectors.study.ranks import spearman_interval
from detectors.study.report import aggregate, render_report, result_rows

DETECTORS = ["a", "b", "c", "d", "e"]


def study(detectors, scores, families=("none", "cut"), seeds=(0,), anomaly=True):
    """A study record and results: ``scores[test set][detector]`` is the value of every (non-none) family and
    seed; ``none`` scores 0.01 (an untrained network: it must not enter the pooled score)."""
    cells, results = [], {}
    for seed in seeds:
        for det in detectors:
            for family in families:
                cid = f"{det}-{family}-{seed}"
                cells.append({"id": cid, "family": family, "regime": "synthetic", "detector": det, "seed": seed})
                tests = {t: {"overall": {"image_auroc": 0.01 if family == "none" else per[det]}}
                         for t, per in scores.items()}
                results[cid] = {"status": "done", "record": {}, "tests": tests}
    kinds = {t: ("real" if t.startswith("real") else "synthetic") for t in scores}
    record = {"name": "methods", "budget": None, "fingerprint": {}, "families": list(families),
              "regimes": ["synthetic"], "metrics": ["image_auroc"], "test_sets": kinds, "seeds": list(seeds),
              "detectors": {d: {"kind": "cutpaste", "anomaly": anomaly} for d in detectors}, "cells": cells}
    return record, results


def ranking_of(record, results):
    return method_ranking(record, aggregate(result_rows(record, results)))


def write_folder(folder, record, results):
    folder.mkdir(parents=True)
    (folder / STUDY_FILE).write_text(json.dumps(record))
    for cid, result in results.items():
        (folder / CELLS / cid).mkdir(parents=True)
        (folder / CELLS / cid / RESULT).write_text(json.dumps(result))


REAL = {"a": 0.95, "b": 0.90, "c": 0.85, "d": 0.80, "e": 0.75}


def test_rho_over_detectors_is_one_when_the_order_is_the_same_and_minus_one_when_reversed():
    same = {"a": 0.70, "b": 0.69, "c": 0.50, "d": 0.40, "e": 0.10}  # other values, same order
    reversed_ = {"a": 0.60, "b": 0.70, "c": 0.80, "d": 0.90, "e": 0.99}
    record, results = study(DETECTORS, {"real": REAL, "same": same, "rev": reversed_})
    (item,) = ranking_of(record, results)
    rho = {a["synthetic"]: a for a in item["agreement"]}
    assert rho["same"]["rho"] == pytest.approx(1) and rho["rev"]["rho"] == pytest.approx(-1)
    assert rho["same"]["n"] == 5 and item["test_sets"] == ["real", "same", "rev"]
    # rows best first on the real set; ranks 1 = best on every set
    assert [r["detector"] for r in item["detectors"]] == DETECTORS
    assert [r["ranks"]["real"] for r in item["detectors"]] == [1, 2, 3, 4, 5]
    assert [r["ranks"]["rev"] for r in item["detectors"]] == [5, 4, 3, 2, 1]
    # rho = 1: the interval reaches 1 and keeps a width (ranks.spearman_interval's resolution step)
    assert rho["same"]["ci95"] == [pytest.approx(spearman_interval(1.0, 5)[0]), 1.0]
    assert 0.3 < rho["same"]["ci95"][0] < 0.5
    assert item["best"]["synthetic"] == "same" and item["best"]["second"] == "rev"


def test_rho_over_detectors_with_ties_against_hand_computed_ranks():
    # real ranks (1 = best): a 1, b 2, c 3, d 4, e 5
    # synthetic: b and c tie -> they share ranks 2 and 3: a 1, b 2.5, c 2.5, d 5, e 4
    synth = {"a": 0.9, "b": 0.8, "c": 0.8, "d": 0.6, "e": 0.7}
    record, results = study(DETECTORS, {"real": REAL, "syn": synth})
    (item,) = ranking_of(record, results)
    assert [r["ranks"]["syn"] for r in item["detectors"]] == [1, 2.5, 2.5, 5, 4]
    # Pearson of the ranks: x - 3 = (-2, -1, 0, 1, 2), y - 3 = (-2, -0.5, -0.5, 2, 1)
    # sxy = 4 + 0.5 + 0 + 2 + 2 = 8.5; sxx = 10; syy = 4 + 0.25 + 0.25 + 4 + 1 = 9.5
    expected = 8.5 / math.sqrt(10 * 9.5)
    (a,) = item["agreement"]
    assert a["rho"] == pytest.approx(expected) and a["n"] == 5
    low, high = spearman_interval(expected, 5)
    assert a["ci95"] == [pytest.approx(low), pytest.approx(high)]
    assert best_first_ranks([0.9, 0.8, 0.8, 0.6, 0.7]) == [1, 2.5, 2.5, 5, 4]


def test_a_detectors_score_pools_its_families_seeds_first_and_leaves_none_out():
    # two families, two seeds: the score is the mean over families of the mean over seeds; none (0.01) left out
    record, results = study(["p", "q"], {"real": {"p": 0.8, "q": 0.6}, "syn": {"p": 0.7, "q": 0.9}},
                            families=("none", "cut", "scar"), seeds=(0, 1))
    results["p-scar-1"]["tests"]["real"]["overall"]["image_auroc"] = 0.4  # p/scar: seeds 0.8, 0.4 -> 0.6
    values = aggregate(result_rows(record, results))
    assert pooled_families(record, values, "p", "synthetic", "image_auroc", ["real", "syn"]) == ["cut", "scar"]
    (item,) = method_ranking(record, values)
    p = next(r for r in item["detectors"] if r["detector"] == "p")
    assert p["scores"]["real"] == pytest.approx((0.8 + 0.6) / 2) and p["families"] == ["cut", "scar"]
    # a family missing on one test set of the table is left out of every column of that detector
    del results["p-scar-0"]["tests"]["syn"], results["p-scar-1"]["tests"]["syn"]
    (item,) = ranking_of(record, results)
    p = next(r for r in item["detectors"] if r["detector"] == "p")
    assert p["families"] == ["cut"] and p["scores"]["real"] == pytest.approx(0.8)


def test_none_alone_is_the_score_when_it_is_the_detectors_only_family():
    # object detectors in the real regime: only none / real exists
    cells, results = [], {}
    for det, value in (("frcnn", 0.7), ("yolo", 0.5)):
        cells.append({"id": det, "family": "none", "regime": "real", "detector": det, "seed": 0})
        results[det] = {"status": "done", "record": {},
                        "tests": {"real": {"overall": {"map_50": value}}, "syn": {"overall": {"map_50": value}}}}
    record = {"name": "o", "families": ["none", "cut"], "regimes": ["real"], "metrics": ["map_50"],
              "test_sets": {"real": "real", "syn": "synthetic"}, "seeds": [0], "cells": cells,
              "detectors": {"frcnn": {"kind": "fasterrcnn", "anomaly": False},
                            "yolo": {"kind": "yolo", "anomaly": False}}}
    (item,) = ranking_of(record, results)
    assert [r["families"] for r in item["detectors"]] == [["none"], ["none"]]
    assert item["agreement"][0]["rho"] == pytest.approx(1)


def test_the_best_proxy_sentence_names_the_highest_rho_and_how_sure():
    good = {"a": 0.9, "b": 0.85, "c": 0.8, "d": 0.7, "e": 0.6}          # rho 1
    fair = {"a": 0.9, "b": 0.7, "c": 0.8, "d": 0.6, "e": 0.65}          # b/c and d/e swapped: rho 0.8
    poor = {"a": 0.5, "b": 0.9, "c": 0.4, "d": 0.8, "e": 0.7}           # rho = -0.1
    record, results = study(DETECTORS, {"real": REAL, "poor": poor, "fair": fair})
    (item,) = ranking_of(record, results)
    best = item["best"]
    assert best["synthetic"] == "fair" and best["rho"] == pytest.approx(0.8) and best["second"] == "poor"
    low, high = spearman_interval(0.8, 5)
    assert best["ci95"] == [pytest.approx(low), pytest.approx(high)]
    assert low < 0 and best["excludes_zero"] is False and best["overlaps_second"] is True
    assert item["summary"].startswith(f"Best proxy for `real`: `fair`, ρ = +0.80, 95 % interval {low:+.2f} … "
                                      f"{high:+.2f}, n = 5.")
    assert "includes 0" in item["summary"] and "overlaps the next one's (`poor`, ρ = -0.10" in item["summary"]
    # with a perfect proxy: its interval excludes 0; it overlaps a poor one's at 5 detectors, and is clear of a
    # reversed one's
    record, results = study(DETECTORS, {"real": REAL, "poor": poor, "good": good})
    (item,) = ranking_of(record, results)
    assert item["best"]["synthetic"] == "good" and item["best"]["excludes_zero"] is True
    assert item["best"]["overlaps_second"] is True and "overlaps the next one's (`poor`" in item["summary"]
    assert "by chance with probability 1/120" in item["summary"]
    reversed_ = {name: -value for name, value in REAL.items()}  # rho = -1
    record, results = study(DETECTORS, {"real": REAL, "rev": reversed_, "good": good})
    (item,) = ranking_of(record, results)
    assert item["best"]["overlaps_second"] is False
    assert "excludes 0" in item["summary"] and "clear of the next one's (`rev`" in item["summary"]


def test_fewer_than_four_detectors_give_no_interval_and_say_so(tmp_path):
    record, results = study(["a", "b", "c"], {"real": {"a": 0.9, "b": 0.8, "c": 0.7},
                                              "syn": {"a": 0.8, "b": 0.9, "c": 0.7}})
    (item,) = ranking_of(record, results)
    (a,) = item["agreement"]
    assert a["rho"] == pytest.approx(0.5) and all(math.isnan(v) for v in a["ci95"])
    assert item["best"]["excludes_zero"] is None
    assert "No interval with fewer than 4 detectors" in item["summary"]
    write_folder(tmp_path / "s", record, results)
    table = render_report(tmp_path / "s", heatmaps=False)["table"].read_text()
    assert "| syn | 3 | +0.50 | - (n < 4) |" in table


def test_one_detector_or_no_synthetic_set_gives_no_method_ranking():
    record, results = study(["a"], {"real": {"a": 0.9}, "syn": {"a": 0.8}})
    assert ranking_of(record, results) == []
    record, results = study(["a", "b"], {"real": {"a": 0.9, "b": 0.8}, "real2": {"a": 0.8, "b": 0.9}})
    assert ranking_of(record, results) == []


def test_the_report_of_a_study_folder_has_the_section_and_the_plot(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    good = {"a": 0.9, "b": 0.85, "c": 0.8, "d": 0.7, "e": 0.6}
    poor = {"a": 0.5, "b": 0.9, "c": 0.4, "d": 0.8, "e": 0.7}
    record, results = study(DETECTORS, {"real": REAL, "good": good, "poor": poor})
    write_folder(tmp_path / "s", record, results)
    paths = render_report(tmp_path / "s")
    table = paths["table"].read_text()
    assert "## Method ranking: which synthetic test set ranks the detectors as the real one does?" in table
    assert "### `real`: image_auroc, regime synthetic" in table
    assert "| detector | families | real (real) | good | poor |" in table
    assert "| a | cut | 95.0 (1) | 90.0 (1) | 50.0 (4) |" in table
    assert "**Best proxy for `real`: `good`, ρ = +1.00" in table
    (item,) = paths["method_ranking"]
    assert item["best"]["synthetic"] == "good"
    json.dumps(paths["method_ranking"])  # the numbers are plain JSON
    (plot,) = paths["method_plots"]
    assert plot == tmp_path / "s" / "heatmaps" / "methods__real__image_auroc__synthetic.png"
    image = matplotlib.image.imread(str(plot))
    assert image.shape[0] > 200 and image.shape[1] > 2 * image.shape[0] * 0.8 and image.std() > 0.05


def test_without_matplotlib_the_report_says_the_plots_were_skipped(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # import matplotlib -> ImportError
    record, results = study(DETECTORS, {"real": REAL, "syn": REAL})
    write_folder(tmp_path / "s", record, results)
    paths = render_report(tmp_path / "s")
    assert paths["method_plots"] == [] and paths["method_ranking"]
    assert "Heatmaps and method-ranking plots skipped: matplotlib is not installed" in paths["table"].read_text()


def test_a_perfect_ranking_keeps_an_interval():
    # rho = 1 over 8 methods: Fisher's z is infinite there; rho is taken half a step of its resolution inside the
    # bound (6 / (n (n^2 - 1)) = 0.0119), by hand: atanh(0.98810) = 2.5586, half width 1.96 sqrt(1.06 / 5) = 0.9024,
    # tanh(1.6562) = 0.9298
    low, high = spearman_interval(1.0, 8)
    assert high == 1.0 and low == pytest.approx(0.9298, abs=5e-4)
    assert spearman_interval(-1.0, 8) == pytest.approx((-1.0, -low))
    one_swap = 1 - 12 / (8 * 63)  # the next value below 1: its interval starts lower
    assert spearman_interval(one_swap, 8)[0] < low
