"""detectors.metrics: hand-computed cases, an independent loop-based AUPRO, invariances, the report and its errors."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from skimage.measure import label as sk_label

from detectors.metrics import (
    aupro,
    average_precision,
    evaluate,
    f1_max,
    format_markdown,
    image_auroc,
    pixel_auroc,
    pro_curve,
)

# ----------------------------------------------------------------------------------------------------------------------
# independent references: plain loops over thresholds / ranks, no sorting tricks, skimage (not scipy) components


def reference_pro_curve(maps, masks):
    """One point per distinct map value, descending, with boolean masks; regions per image from skimage."""
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks) != 0
    maps = maps.reshape(maps.shape[0], maps.shape[-2], maps.shape[-1])
    masks = masks.reshape(maps.shape)
    regions = []
    for i, m in enumerate(masks):
        lab = sk_label(m, connectivity=2)
        regions += [(i, lab == k) for k in range(1, lab.max() + 1)]
    normal = ~masks
    fpr, pro = [0.0], [0.0]
    for t in sorted(np.unique(maps), reverse=True):
        above = maps >= t
        fpr.append(above[normal].mean())
        pro.append(np.mean([above[i][r].mean() for i, r in regions]))
    return np.array(fpr), np.array(pro)


def reference_area(fpr, pro, limit):
    """Trapezoids segment by segment, cutting the one that crosses ``limit`` with a linear interpolation."""
    area = 0.0
    for x0, y0, x1, y1 in zip(fpr[:-1], pro[:-1], fpr[1:], pro[1:]):
        if x0 >= limit:
            break
        if x1 <= limit:
            area += (x1 - x0) * (y0 + y1) / 2
        else:
            y = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            area += (limit - x0) * (y0 + y) / 2
            break
    return area / limit


def reference_auroc(scores, labels):
    """Mann-Whitney: (sum of the positives' average ranks - n+(n+ + 1)/2) / (n+ n-)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel() != 0
    ranks = rankdata(scores)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    return (ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def reference_ap(scores, labels):
    """sum_k (R_k - R_{k-1}) P_k over the distinct thresholds, descending."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels) != 0
    ap, prev_recall = 0.0, 0.0
    for t in sorted(np.unique(scores), reverse=True):
        pred = scores >= t
        recall = (pred & labels).sum() / labels.sum()
        ap += (recall - prev_recall) * (pred & labels).sum() / pred.sum()
        prev_recall = recall
    return ap


def random_case(seed, n=4, height=20, width=24, decimals=2):
    """Random maps with ties (rounded), masks with several blobs, two separate rectangles in image 0, image 1 normal."""
    g = torch.Generator().manual_seed(seed)
    masks = F.interpolate(torch.rand(n, 1, 5, 6, generator=g), size=(height, width), mode="bilinear") > 0.7
    masks[0] = False
    masks[0, 0, 2:5, 2:6] = True  # 12 pixels
    masks[0, 0, 12:14, 15:16] = True  # 2 pixels, a second region in the same image
    masks[1] = False
    maps = torch.rand(n, 1, height, width, generator=g) + 0.4 * masks * torch.rand(n, 1, 1, 1, generator=g)
    maps = torch.round(maps, decimals=decimals).double()
    return maps, masks


# ----------------------------------------------------------------------------------------------------------------------
# image level, by hand


def test_image_auroc_by_hand():
    # anomalous scores {0.35, 0.8}, normal {0.1, 0.4}: of the 4 (anomalous, normal) pairs only 0.35 < 0.4 is inverted
    assert image_auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # a tie between an anomalous and a normal image counts one half: pairs (0.5 vs 0.5) = 0.5, (0.5 vs 0.2) = 1
    assert image_auroc([0.5, 0.5, 0.2], [1, 0, 0]) == pytest.approx(0.75)


def test_average_precision_by_hand():
    # ranking 0.9(+) 0.8(-) 0.7(+) 0.6(-):
    # top-1: P=1, R=1/2; top-2: P=1/2, R=1/2 (no recall gain); top-3: P=2/3, R=1; top-4: no recall gain
    # AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(5 / 6)


def test_f1_max_by_hand():
    # same ranking: F1 = 2PR/(P+R) at top-1: 2(1)(1/2)/(3/2) = 2/3; top-2: 1/2; top-3: 2(2/3)(1)/(5/3) = 4/5;
    # top-4: P=1/2, R=1 -> 2/3. Max = 4/5
    assert f1_max([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.8)
    # the top image is normal: at top-1 P = R = 0, F1 counts as 0 (not NaN); top-2: P=1/2, R=1 -> 2/3
    assert f1_max([0.9, 0.1], [0, 1]) == pytest.approx(2 / 3)


def test_image_metrics_against_references():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(60), 1)  # many ties
    labels = rng.random(60) < 0.4
    assert image_auroc(scores, labels) == pytest.approx(reference_auroc(scores, labels), abs=1e-6)
    assert average_precision(scores, labels) == pytest.approx(reference_ap(scores, labels), abs=1e-6)


def test_scores_outside_unit_interval_are_not_squashed():
    # torchmetrics would apply a sigmoid to these, which maps every score above ~37 to exactly 1.0 in float64
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    for big in (scores * 10 + 50, scores - 100):
        assert image_auroc(big, labels) == pytest.approx(0.75)
        assert average_precision(big, labels) == average_precision(scores, labels)
        assert f1_max(big, labels) == f1_max(scores, labels)


def test_image_metrics_invariant_under_increasing_transform():
    rng = np.random.default_rng(1)
    scores = torch.from_numpy(np.round(rng.random(40), 2))
    labels = torch.from_numpy(rng.random(40) < 0.5)
    for transform in (lambda s: torch.exp(8 * s) - 3, lambda s: 1000 * s**3, lambda s: s / 7):
        t = transform(scores)
        assert image_auroc(t, labels) == image_auroc(scores, labels)
        assert average_precision(t, labels) == average_precision(scores, labels)
        assert f1_max(t, labels) == f1_max(scores, labels)


def test_input_types():
    expected = 0.75
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert image_auroc(np.array(scores, dtype=np.float32), np.array(labels, dtype=bool)) == pytest.approx(expected)
    assert image_auroc(torch.tensor(scores), torch.tensor(labels, dtype=torch.float32)) == pytest.approx(expected)
    assert image_auroc(torch.tensor(scores, requires_grad=True), torch.tensor(labels)) == pytest.approx(expected)


# ----------------------------------------------------------------------------------------------------------------------
# pixel level


def test_pixel_auroc_by_hand_pools_all_images():
    # image A: map [0.9, 0.2], mask [1, 0]; image B: map [0.6, 0.4], mask [0, 1]
    # pooled: defect {0.9, 0.4} vs normal {0.2, 0.6}: only 0.4 < 0.6 is inverted -> 3/4
    # (per image it would be 1.0 and 0.0, mean 0.5)
    maps = torch.tensor([[[[0.9, 0.2]]], [[[0.6, 0.4]]]])
    masks = torch.tensor([[[[1, 0]]], [[[0, 1]]]])
    assert pixel_auroc(maps, masks) == pytest.approx(0.75)
    assert pixel_auroc(maps[:, 0], masks[:, 0].bool()) == pytest.approx(0.75)  # (N, H, W) and bool masks
    assert pixel_auroc(maps, masks[:, 0]) == pytest.approx(0.75)  # channel axis on one side only


def test_pixel_auroc_against_mann_whitney():
    maps, masks = random_case(3)
    assert pixel_auroc(maps, masks) == pytest.approx(reference_auroc(maps, masks), abs=1e-6)
    assert pixel_auroc(maps.numpy() * 40 - 7, masks.numpy()) == pytest.approx(reference_auroc(maps, masks), abs=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# PRO curve and AUPRO


@pytest.mark.parametrize("seed", range(4))
def test_pro_curve_and_aupro_match_reference(seed):
    maps, masks = random_case(seed, decimals=1 if seed % 2 else 2)
    fpr, pro = pro_curve(maps, masks)
    ref_fpr, ref_pro = reference_pro_curve(maps, masks)
    assert fpr.dtype == pro.dtype == torch.float64
    assert fpr.shape == (len(torch.unique(maps)) + 1,)
    np.testing.assert_allclose(fpr.numpy(), ref_fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(pro.numpy(), ref_pro, rtol=0, atol=1e-12)
    for limit in (0.3, 1.0, 0.05, 0.5):
        assert aupro(maps, masks, fpr_limit=limit) == pytest.approx(reference_area(ref_fpr, ref_pro, limit), abs=1e-12)


def test_pro_curve_shape_of_curve():
    maps, masks = random_case(5)
    fpr, pro = pro_curve(maps, masks)
    assert fpr[0] == 0 and pro[0] == 0
    assert fpr[-1] == 1 and pro[-1] == pytest.approx(1, abs=1e-12)
    assert (fpr.diff() >= 0).all() and (pro.diff() >= 0).all()


def test_aupro_perfect_map_is_one():
    _, masks = random_case(0)
    assert aupro(masks.double(), masks) == pytest.approx(1.0, abs=1e-12)
    assert aupro(masks.double(), masks, fpr_limit=1.0) == pytest.approx(1.0, abs=1e-12)


def test_aupro_constant_map_by_hand():
    # one threshold: every pixel is above it, so the curve is (0, 0) -> (1, 1), i.e. PRO = FPR.
    # area up to L is L^2 / 2, normalised by L: L / 2
    _, masks = random_case(0)
    maps = torch.full(masks.shape, 0.7)
    fpr, pro = pro_curve(maps, masks)
    assert fpr.tolist() == [0.0, 1.0] and pro.tolist() == pytest.approx([0.0, 1.0])
    assert aupro(maps, masks) == pytest.approx(0.15)
    assert aupro(maps, masks, fpr_limit=1.0) == pytest.approx(0.5)


def test_aupro_weights_regions_equally():
    # one 8x8 image: a 4x4 region (16 px) and a separate 1-px region; 47 normal pixels scored 0.5
    masks = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    masks[0, 0, :4, :4] = True
    masks[0, 0, 7, 7] = True
    maps = torch.full((1, 1, 8, 8), 0.5)
    # big region at 0.9, small at 0.1: at t=0.9 FPR=0 and PRO=(1 + 0)/2 = 1/2 (pixel-weighted it would be 16/17);
    # at t=0.5 FPR=1, PRO=1/2; at t=0.1 FPR=1, PRO=1. Curve (0,0) (0,1/2) (1,1/2) (1,1): area to 0.3 = 0.3 * 1/2
    big_found = torch.where(masks, 0.1, maps)
    big_found[0, 0, :4, :4] = 0.9
    fpr, pro = pro_curve(big_found, masks)
    assert fpr.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert pro.tolist() == pytest.approx([0.0, 0.5, 0.5, 1.0])
    assert aupro(big_found, masks) == pytest.approx(0.5)
    # the other way round: only the single pixel found early still gives 1/2 (pixel-weighted: 1/17)
    small_found = torch.where(masks, 0.1, maps)
    small_found[0, 0, 7, 7] = 0.9
    assert aupro(small_found, masks) == pytest.approx(0.5)


def test_aupro_uses_8_connectivity():
    # pixels (0,0), (1,1), (1,2): one region with 8-connectivity (diagonal touch), two ({(0,0)}, {(1,1),(1,2)}) with 4.
    # only (0,0) scores high: PRO at FPR 0 is 1/3 with one region (it would be (1 + 0)/2 with two). Area: 0.3 * 1/3
    masks = torch.zeros(1, 6, 6, dtype=torch.bool)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[0, 1, 2] = True
    maps = torch.where(masks, 0.1, 0.5)
    maps[0, 0, 0] = 0.9
    assert aupro(maps, masks) == pytest.approx(1 / 3)


def test_aupro_regions_do_not_connect_across_images():
    # image 0: region {(0,0), (0,1)}; image 1: region {(0,0)} at the same place. Two regions, not one of 3 px.
    # only image 1's pixel scores high: PRO at FPR 0 is (0 + 1)/2 = 1/2 (merged it would be 1/3)
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, 0, :2] = True
    masks[1, 0, 0] = True
    maps = torch.where(masks, 0.1, 0.5)
    maps[1, 0, 0] = 0.9
    assert aupro(maps, masks) == pytest.approx(0.5)


def test_aupro_interpolates_at_the_limit():
    # 4 normal pixels scored 0.4, 0.3, 0.2, 0.1 and one defect pixel scored 0.35:
    # curve (0,0) (1/4,0) (1/4,1) (1/2,1) (3/4,1) (1,1); area to 0.3 = 0.05 * 1 = 0.05 -> 0.05 / 0.3 = 1/6;
    # area to 0.2 is 0: the vertical step at 1/4 lies beyond the limit
    maps = torch.tensor([[[0.4, 0.35, 0.3, 0.2, 0.1]]])
    masks = torch.tensor([[[0, 1, 0, 0, 0]]])
    assert aupro(maps, masks) == pytest.approx(1 / 6)
    assert aupro(maps, masks, fpr_limit=0.2) == 0.0
    assert aupro(maps, masks, fpr_limit=0.25) == 0.0
    # to 1.0: 0.75 * 1
    assert aupro(maps, masks, fpr_limit=1.0) == pytest.approx(0.75)


def test_pixel_metrics_invariant_under_increasing_transform():
    maps, masks = random_case(2)
    for transform in (lambda m: torch.exp(5 * m) + 100, lambda m: 3 * m - 1):
        assert aupro(transform(maps), masks) == aupro(maps, masks)
        assert pixel_auroc(transform(maps), masks) == pixel_auroc(maps, masks)
        np.testing.assert_array_equal(pro_curve(transform(maps), masks)[1], pro_curve(maps, masks)[1])


@pytest.mark.cuda
def test_cuda_inputs():
    maps, masks = random_case(1)
    assert aupro(maps.cuda(), masks.cuda()) == aupro(maps, masks)
    assert pixel_auroc(maps.cuda(), masks.cuda()) == pixel_auroc(maps, masks)


# ----------------------------------------------------------------------------------------------------------------------
# evaluate and format_markdown


def dataset(seed=0):
    """12 images: 5 good (empty masks), 4 'crack', 3 'scratch' (nonempty masks), with image scores from the maps."""
    g = torch.Generator().manual_seed(seed)
    defects = ["good", "crack", "scratch", "good", "crack", "good", "scratch", "crack", "good", "scratch", "crack",
               "good"]
    labels = torch.tensor([d != "good" for d in defects])
    masks = F.interpolate(torch.rand(12, 1, 4, 4, generator=g), size=(16, 16), mode="bilinear") > 0.6
    masks[~labels] = False
    masks[labels, 0, 7, 7] = True  # every anomalous image has at least one defect pixel
    maps = torch.rand(12, 1, 16, 16, generator=g) + 0.5 * masks
    scores = maps.flatten(1).amax(1) + 0.3 * torch.rand(12, generator=g)
    return scores, labels, maps, masks, defects


def test_evaluate_report():
    scores, labels, maps, masks, defects = dataset()
    report = evaluate(scores, labels, maps, masks, defects)
    keys = {"image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "aupro"}
    assert set(report) == {"overall", "per_defect", "counts", "fpr_limit"}
    assert set(report["overall"]) == keys
    assert list(report["per_defect"]) == ["crack", "scratch"]
    assert report["counts"] == {"good": 5, "crack": 4, "scratch": 3}
    assert report["fpr_limit"] == 0.3
    json.dumps(report)
    assert all(type(v) is float for row in [report["overall"], *report["per_defect"].values()] for v in row.values())

    o = report["overall"]
    assert o["image_auroc"] == pytest.approx(image_auroc(scores, labels))
    assert o["image_ap"] == pytest.approx(average_precision(scores, labels))
    assert o["image_f1_max"] == pytest.approx(f1_max(scores, labels))
    assert o["pixel_auroc"] == pytest.approx(pixel_auroc(maps, masks))
    assert o["pixel_ap"] == pytest.approx(reference_ap(maps, masks), abs=1e-6)
    assert o["aupro"] == pytest.approx(aupro(maps, masks))
    for name in ("crack", "scratch"):
        keep = torch.tensor([d in ("good", name) for d in defects])
        row = report["per_defect"][name]
        assert row["image_auroc"] == pytest.approx(image_auroc(scores[keep], labels[keep]))
        assert row["image_ap"] == pytest.approx(average_precision(scores[keep], labels[keep]))
        assert row["image_f1_max"] == pytest.approx(f1_max(scores[keep], labels[keep]))
        assert row["pixel_auroc"] == pytest.approx(pixel_auroc(maps[keep], masks[keep]))
        assert row["aupro"] == pytest.approx(aupro(maps[keep], masks[keep]))
        assert row["pixel_ap"] == pytest.approx(reference_ap(maps[keep], masks[keep]), abs=1e-6)
    # the subsets differ from the whole set, so comparing with the subset is a real check
    assert report["per_defect"]["crack"]["aupro"] != o["aupro"]

    limited = evaluate(scores, labels, maps, masks, defects, fpr_limit=1.0)
    assert limited["fpr_limit"] == 1.0
    assert limited["overall"]["aupro"] == pytest.approx(aupro(maps, masks, fpr_limit=1.0))


def test_evaluate_without_maps_or_defects():
    scores, labels, maps, masks, defects = dataset()
    report = evaluate(scores, labels)
    assert set(report) == {"overall", "counts", "fpr_limit"}
    assert set(report["overall"]) == {"image_auroc", "image_ap", "image_f1_max"}
    assert report["counts"] == {"good": 5, "anomalous": 7}
    json.dumps(report)
    report = evaluate(scores.numpy(), labels.numpy(), defects=tuple(defects))
    assert set(report["per_defect"]["crack"]) == {"image_auroc", "image_ap", "image_f1_max"}


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d, y: d.__setitem__(0, "crack"), "disagree"),  # a label-0 image with a defect type
        (lambda d, y: d.__setitem__(1, "good"), "disagree"),  # a label-1 image called good
        (lambda d, y: d.pop(), "one entry per image"),
        (lambda d, y: d.__setitem__(2, 7), "strings"),
    ],
)
def test_evaluate_inconsistent_defects(change, match):
    scores, labels, _, _, defects = dataset()
    change(defects, labels)
    with pytest.raises(ValueError, match=match):
        evaluate(scores, labels, defects=defects)


def test_evaluate_errors():
    scores, labels, maps, masks, defects = dataset()
    with pytest.raises(ValueError, match="together"):
        evaluate(scores, labels, maps=maps)
    with pytest.raises(ValueError, match="together"):
        evaluate(scores, labels, masks=masks)
    with pytest.raises(ValueError, match="12 scores"):
        evaluate(scores, labels, maps[:10], masks[:10])
    dirty = masks.clone()
    dirty[0, 0, 0, 0] = True  # image 0 is good
    with pytest.raises(ValueError, match=r"empty masks; images \[0\]"):
        evaluate(scores, labels, maps, dirty)
    with pytest.raises(ValueError, match="need normal images"):
        keep = labels
        evaluate(scores[keep], labels[keep], defects=[d for d, k in zip(defects, keep) if k])
    with pytest.raises(ValueError, match="fpr_limit"):
        evaluate(scores, labels, fpr_limit=0)
    # a defect type whose images have no defect pixels: pixel metrics undefined on its subset, and the error says which
    empty = masks.clone()
    empty[torch.tensor([d == "scratch" for d in defects])] = False
    with pytest.raises(ValueError, match="'scratch'.*normal"):
        evaluate(scores, labels, maps, empty, defects)


def test_format_markdown():
    scores, labels, maps, masks, defects = dataset()
    report = evaluate(scores, labels, maps, masks, defects)
    text = format_markdown(report, title="Bottle")
    lines = text.splitlines()
    assert lines[0] == "# Bottle"
    header = (
        "| subset | images | anomalous | image AUROC | image AP | image F1-max | pixel AUROC | pixel AP | AUPRO@30% |"
    )
    assert header in lines
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ") and line != header}
    assert set(rows) == {"overall", "crack", "scratch"}
    cells = [c.strip() for c in rows["crack"].strip("|").split("|")]
    assert cells[1:3] == ["9", "4"]  # 5 good + 4 crack images, 4 of them anomalous
    assert cells[3] == f"{100 * report['per_defect']['crack']['image_auroc']:.1f}"
    assert [c.strip() for c in rows["overall"].strip("|").split("|")][1:3] == ["12", "7"]
    # every row has as many cells as the header
    assert {line.count("|") for line in lines if line.startswith("|")} == {header.count("|")}

    image_only = format_markdown(evaluate(scores, labels))
    assert "| subset | images | anomalous | image AUROC | image AP | image F1-max |" in image_only
    assert "pixel" not in image_only.split("\n\n")[1]
    with pytest.raises(ValueError, match="report"):
        format_markdown({"per_defect": {}})


# ----------------------------------------------------------------------------------------------------------------------
# every ValueError path of the metrics

GOOD_MAPS = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
GOOD_MASKS = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
GOOD_MASKS[1, 0, 1:3, 1:3] = True
IMAGE_METRICS = [image_auroc, average_precision, f1_max]
PIXEL_METRICS = [pixel_auroc, pro_curve, aupro]


@pytest.mark.parametrize("metric", IMAGE_METRICS)
@pytest.mark.parametrize(
    "scores, labels, match",
    [
        ([0.1, 0.2, 0.3], [0, 1], "same length"),
        ([0.1, 0.2], [0, 2], r"binary.*\[2\.0\]"),
        ([0.1, 0.2], [0.0, 0.5], "binary"),
        ([0.1, float("nan")], [0, 1], "finite.*1 NaN"),
        ([float("inf"), 0.2], [0, 1], "finite.*1 inf"),
        ([], [], "empty"),
        ([0.1, 0.2], [0, 0], "none is anomalous"),
        ([0.1, 0.2], [1, 1], "none is normal"),
        ([[0.1, 0.2]], [[0, 1]], "1-D"),
        (["a", "b"], [0, 1], "numeric"),
    ],
)
def test_image_metric_errors(metric, scores, labels, match):
    with pytest.raises(ValueError, match=match):
        metric(scores, labels)


def nan_maps():
    m = GOOD_MAPS.clone()
    m[1, 0, 2, 3] = float("nan")
    return m


@pytest.mark.parametrize("metric", PIXEL_METRICS)
@pytest.mark.parametrize(
    "maps, masks, match",
    [
        (GOOD_MAPS, GOOD_MASKS[:, :, :3], "same shape.*maps \\(2, 1, 4, 4\\) and masks \\(2, 1, 3, 4\\)"),
        (GOOD_MAPS[:1], GOOD_MASKS, "same shape"),
        (GOOD_MAPS, GOOD_MASKS * 3, "binary"),
        (nan_maps(), GOOD_MASKS, r"finite.*1 NaN.*\(1, 0, 2, 3\)"),
        (GOOD_MAPS[:0], GOOD_MASKS[:0], "empty"),
        (GOOD_MAPS[0, 0], GOOD_MASKS[0, 0], r"\(N, 1, H, W\) or \(N, H, W\)"),
        (GOOD_MAPS.expand(2, 3, 4, 4), GOOD_MASKS.expand(2, 3, 4, 4), r"\(N, 1, H, W\)"),
        (GOOD_MAPS, torch.zeros_like(GOOD_MASKS), "no defect|none is anomalous"),
        (GOOD_MAPS, torch.ones_like(GOOD_MASKS), "no normal|none is normal"),
    ],
)
def test_pixel_metric_errors(metric, maps, masks, match):
    with pytest.raises(ValueError, match=match):
        metric(maps, masks)


@pytest.mark.parametrize("limit", [0, -0.1, 1.5, float("nan"), "x"])
def test_fpr_limit_errors(limit):
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(GOOD_MAPS, GOOD_MASKS, fpr_limit=limit)
    with pytest.raises(ValueError, match="fpr_limit"):
        evaluate([0.1, 0.2], [0, 1], fpr_limit=limit)


def test_fpr_limit_one_is_allowed():
    assert 0 <= aupro(GOOD_MAPS, GOOD_MASKS, fpr_limit=1) <= 1
