"""detectors.metrics.boxes: hand-computed COCO APs, image-level metrics with defect-free images, class handling,
empty cases, frames, the Markdown table, and a cross-check against pycocotools' COCOeval used directly."""
import contextlib
import io
import json

import pytest
import torch

from detectors.metrics import evaluate_boxes, format_box_markdown, format_markdown, rescale_boxes
from detectors.metrics import evaluate as evaluate_anomaly
from detectors.types import LabelledSet, Prediction

NAMES = ("scratch", "stain")
# COCO interpolates precision at 101 recall points 0, 0.01, ..., 1
N_REC = 101


def truth_set(boxes, labels, class_names=NAMES, size=(64, 64)):
    """One image per entry of ``boxes`` (a list of x1 y1 x2 y2 lists, empty for a defect-free image)."""
    return LabelledSet(
        images=[torch.zeros(1, *size, dtype=torch.uint8) for _ in boxes],
        boxes=[torch.tensor(b, dtype=torch.float32).reshape(-1, 4) for b in boxes],
        labels=[torch.tensor(lab, dtype=torch.int64).reshape(-1) for lab in labels],
        class_names=class_names,
    )


def prediction(boxes, scores, labels):
    """An object detector's prediction; the image score is the top box score, 0 without a box (as detectors do)."""
    scores_t = [torch.tensor(s, dtype=torch.float32).reshape(-1) for s in scores]
    return Prediction(
        scores=torch.tensor([float(s.max()) if len(s) else 0.0 for s in scores_t]),
        boxes=[torch.tensor(b, dtype=torch.float32).reshape(-1, 4) for b in boxes],
        box_scores=scores_t,
        box_labels=[torch.tensor(lab, dtype=torch.int64).reshape(-1) for lab in labels],
    )


def iou(a, b):
    """Plain IoU of two x1 y1 x2 y2 boxes (pixel edges, as COCO: area = w * h)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def walk(x):
    """Every number in a nested report."""
    if isinstance(x, dict):
        for v in x.values():
            yield from walk(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from walk(v)
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield x


A, B, C = [4, 4, 20, 14], [30, 30, 50, 44], [8, 40, 24, 60]


# ----------------------------------------------------------------------------------------------------------------------
# hand-computed cases


def test_perfect_predictions():
    truth = truth_set([[A, B], [C], [], []], [[1, 2], [1], [], []])
    pred = prediction([[A, B], [C], [], []], [[0.9, 0.8], [0.7], [], []], [[1, 2], [1], [], []])
    r = evaluate_boxes(pred, truth)
    assert r["overall"] == {"map_50": 1.0, "map_50_95": 1.0, "image_auroc": 1.0, "image_ap": 1.0}
    assert r["per_class"] == {"scratch": {"ap_50": 1.0, "ap_50_95": 1.0}, "stain": {"ap_50": 1.0, "ap_50_95": 1.0}}
    assert r["counts"] == {"images": 4, "defective images": 2, "defect-free images": 2, "boxes": 3,
                           "predicted boxes": 3}
    assert r["class_boxes"] == {"scratch": 2, "stain": 1}
    assert r["notes"] == []
    assert all(type(v) in (int, float) for v in walk(r["overall"]))
    json.dumps(r)


@pytest.mark.parametrize("shift, hit", [(33, True), (34, False)])
def test_iou_just_above_and_below_one_half(shift, hit):
    gt = [0, 0, 100, 10]
    box = [shift, 0, 100 + shift, 10]
    # by hand: overlap (100 - shift) * 10 over union 2000 - overlap: 670 / 1330 = 0.504, 660 / 1340 = 0.493
    expected_iou = (100 - shift) / (100 + shift)
    assert iou(gt, box) == pytest.approx(expected_iou)
    assert (expected_iou >= 0.5) == hit and abs(expected_iou - 0.5) < 0.01
    truth = truth_set([[gt], []], [[1], []], size=(20, 200))
    r = evaluate_boxes(prediction([[box], []], [[0.9], []], [[1], []]), truth)
    # a hit at IoU 0.50 only: AP 1 at the first of the ten thresholds 0.50, 0.55, ..., 0.95 and 0 at the others
    assert r["overall"]["map_50"] == pytest.approx(1.0 if hit else 0.0)
    assert r["overall"]["map_50_95"] == pytest.approx(0.1 if hit else 0.0)


def test_missed_box_lowers_recall():
    # two true boxes, one found: recall 1/2 at precision 1. Interpolated precision is 1 at the 51 recall points
    # 0, 0.01, ..., 0.50 and 0 at the 50 points above: AP = 51 / 101
    truth = truth_set([[A, B]], [[1, 1]])
    r = evaluate_boxes(prediction([[A]], [[0.9]], [[1]]), truth)
    assert r["overall"]["map_50"] == pytest.approx(51 / N_REC, abs=1e-6)
    # three true boxes, one found: recall 1/3, precision 1 at the 34 points 0 .. 0.33
    truth = truth_set([[A, B, C]], [[1, 1, 1]])
    r = evaluate_boxes(prediction([[A]], [[0.9]], [[1]]), truth)
    assert r["overall"]["map_50"] == pytest.approx(34 / N_REC, abs=1e-6)


def test_false_positives_below_the_hits_cost_nothing_above_them_they_do():
    far = [40, 40, 60, 60]
    truth = truth_set([[A]], [[1]])
    low = evaluate_boxes(prediction([[A, far]], [[0.9, 0.3]], [[1, 1]]), truth)
    assert low["overall"]["map_50"] == pytest.approx(1.0)
    # the false box first: precision 0 at recall 0, then 1/2 at recall 1; the envelope is 1/2 everywhere
    high = evaluate_boxes(prediction([[A, far]], [[0.3, 0.9]], [[1, 1]]), truth)
    assert high["overall"]["map_50"] == pytest.approx(0.5, abs=1e-6)
    # two true boxes, detections hit (0.9), false (0.8), hit (0.7): precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1;
    # envelope 1 up to recall 0.50 (51 points), 2/3 above (50 points)
    truth = truth_set([[A, B]], [[1, 1]])
    r = evaluate_boxes(prediction([[A, far, B]], [[0.9, 0.8, 0.7]], [[1, 1, 1]]), truth)
    assert r["overall"]["map_50"] == pytest.approx((51 + 50 * 2 / 3) / N_REC, abs=1e-6)


def test_defect_free_images_in_the_image_level_metrics():
    far = [40, 40, 60, 60]
    truth = truth_set([[A], [B], [C], [], []], [[1], [1], [1], [], []])
    # defective images score 0.9, 0.8, 0.7; one defect-free image has a false box at 0.85, the other no box (0)
    pred = prediction([[A], [B], [C], [far], []], [[0.9], [0.8], [0.7], [0.85], []], [[1], [1], [1], [1], []])
    r = evaluate_boxes(pred, truth)
    # AUROC: of the 3 x 2 (defective, defect-free) pairs, the 0.85 image is beaten by 0.9 only, the 0 image by all 3
    assert r["overall"]["image_auroc"] == pytest.approx(4 / 6)
    # AP: ranking D(0.9) OK(0.85) D(0.8) D(0.7) OK(0): precision 1, 2/3, 3/4 at the three defective images
    assert r["overall"]["image_ap"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    # boxes: hit, false, hit, hit: recall 1/3, 1/3, 2/3, 1 with precision 1, 1/2, 2/3, 3/4; envelope 1 up to recall
    # 1/3 (34 points: 0 .. 0.33), 3/4 above (67 points)
    assert r["overall"]["map_50"] == pytest.approx((34 + 67 * 3 / 4) / N_REC, abs=1e-6)
    assert r["counts"]["defect-free images"] == 2


def test_image_scores_outside_the_unit_interval_are_ranked_not_squashed():
    truth = truth_set([[A], [B], [], []], [[1], [1], [], []])
    pred = prediction([[A], [B], [], []], [[0.9], [0.8], [], []], [[1], [1], [], []])
    big = Prediction(torch.tensor([40.0, 30.0, 20.0, 10.0]), None, pred.boxes, pred.box_scores, pred.box_labels)
    # the sigmoid torchmetrics would apply makes these ties at 1.0 (AUROC 0.5); ranked, they separate perfectly
    assert evaluate_boxes(big, truth)["overall"]["image_auroc"] == 1.0


def test_one_kind_of_image_leaves_the_image_metrics_out():
    pred = prediction([[A], [B]], [[0.9], [0.8]], [[1], [1]])
    all_defective = evaluate_boxes(pred, truth_set([[A], [B]], [[1], [1]]))
    assert "image_auroc" not in all_defective["overall"] and "image_ap" not in all_defective["overall"]
    assert any("image AUROC and AP undefined" in n and "none is normal" in n for n in all_defective["notes"])
    assert all_defective["overall"]["map_50"] == 1.0

    all_ok = evaluate_boxes(prediction([[A], []], [[0.9], []], [[1], []]), truth_set([[], []], [[], []]))
    assert all_ok["overall"] == {}
    assert any("mAP undefined" in n for n in all_ok["notes"])
    assert any("image AUROC and AP undefined" in n for n in all_ok["notes"])
    assert all_ok["per_class"] == {}
    assert "-" in format_box_markdown(all_ok)


# ----------------------------------------------------------------------------------------------------------------------
# classes


def test_agnostic_versus_per_class():
    truth = truth_set([[A], [B], []], [[1], [2], []])
    # the right places with the classes swapped
    pred = prediction([[A], [B], []], [[0.9], [0.8], []], [[2], [1], []])
    per_class = evaluate_boxes(pred, truth)
    assert per_class["overall"]["map_50"] == 0.0
    assert per_class["per_class"] == {"scratch": {"ap_50": 0.0, "ap_50_95": 0.0},
                                      "stain": {"ap_50": 0.0, "ap_50_95": 0.0}}
    agnostic = evaluate_boxes(pred, truth, agnostic=True)
    assert agnostic["overall"]["map_50"] == 1.0 and agnostic["overall"]["map_50_95"] == 1.0
    assert agnostic["class_names"] == ["defect"] and agnostic["class_boxes"] == {"defect": 2}
    assert agnostic["agnostic"] is True
    # the image-level axis does not depend on classes
    assert agnostic["overall"]["image_auroc"] == per_class["overall"]["image_auroc"] == 1.0
    # detector classes with other names are fine when agnostic
    agnostic_named = evaluate_boxes(pred, truth, prediction_class_names=["a", "b"], agnostic=True)
    assert agnostic_named["overall"] == agnostic["overall"]


def test_class_map_renames_and_drops():
    detector_classes = ["syn_stain", "glare", "syn_scratch"]
    truth = truth_set([[A], [B], []], [[1], [2], []])
    far = [40, 40, 60, 60]
    # a "glare" box (id 2) with the highest score on the defect-free image: a false alarm if it were kept
    pred = prediction([[A], [B], [far]], [[0.9], [0.8], [0.95]], [[3], [1], [2]])
    for class_map in ({"syn_scratch": "scratch", "syn_stain": "stain"},
                      {"syn_scratch": "scratch", "syn_stain": "stain", "glare": None}):
        r = evaluate_boxes(pred, truth, prediction_class_names=detector_classes, class_map=class_map)
        assert r["overall"]["map_50"] == 1.0
        assert r["per_class"]["scratch"]["ap_50"] == 1.0 and r["per_class"]["stain"]["ap_50"] == 1.0
        assert r["counts"]["predicted boxes"] == 2 and r["counts"]["dropped predicted boxes"] == 1
        assert any("glare" in n for n in r["notes"])
        # the image score still counts the glare box: the defect-free image ranks first
        assert r["overall"]["image_auroc"] == 0.0
    # mapping the wrong way round: both classes missed
    swapped = evaluate_boxes(pred, truth, prediction_class_names=detector_classes,
                             class_map={"syn_scratch": "stain", "syn_stain": "scratch"})
    assert swapped["overall"]["map_50"] == 0.0
    with pytest.raises(ValueError, match=r"\['crack'\].*test set does not have.*\['scratch', 'stain'\]"):
        evaluate_boxes(pred, truth, prediction_class_names=detector_classes, class_map={"syn_scratch": "crack"})
    with pytest.raises(ValueError, match=r"\['dust'\].*detector does not have.*\['syn_stain', 'glare', 's"):
        evaluate_boxes(pred, truth, prediction_class_names=detector_classes, class_map={"dust": "scratch"})
    with pytest.raises(ValueError, match="not both"):
        evaluate_boxes(pred, truth, prediction_class_names=detector_classes, class_map={}, agnostic=True)


def test_same_names_in_another_order_are_matched_by_name():
    truth = truth_set([[A], [B]], [[1], [2]])
    pred = prediction([[A], [B]], [[0.9], [0.8]], [[2], [1]])  # ids of ("stain", "scratch")
    r = evaluate_boxes(pred, truth, prediction_class_names=["stain", "scratch"])
    assert r["overall"]["map_50"] == 1.0


def test_mismatched_class_names_are_refused_naming_both_lists():
    truth = truth_set([[A]], [[1]])
    pred = prediction([[A]], [[0.9]], [[1]])
    with pytest.raises(ValueError, match=r"\['blob', 'line'\].*\['scratch', 'stain'\].*class_map.*agnostic"):
        evaluate_boxes(pred, truth, prediction_class_names=["blob", "line"])


# ----------------------------------------------------------------------------------------------------------------------
# empty cases


def test_no_predictions_give_zero_not_an_error():
    truth = truth_set([[A], [B], []], [[1], [2], []])
    r = evaluate_boxes(prediction([[], [], []], [[], [], []], [[], [], []]), truth)
    assert r["overall"]["map_50"] == 0.0 and r["overall"]["map_50_95"] == 0.0
    assert r["per_class"] == {"scratch": {"ap_50": 0.0, "ap_50_95": 0.0}, "stain": {"ap_50": 0.0, "ap_50_95": 0.0}}
    assert r["overall"]["image_auroc"] == 0.5  # every image scores 0: one big tie
    assert r["counts"]["predicted boxes"] == 0


def test_a_class_without_true_boxes_is_left_out_never_minus_one():
    truth = truth_set([[A], [B], []], [[1], [1], []])  # no "stain" box in the test set
    # a false "stain" box too, which COCO tools score -1 for the class
    pred = prediction([[A], [B], [C]], [[0.9], [0.8], [0.4]], [[1], [1], [2]])
    r = evaluate_boxes(pred, truth)
    assert list(r["per_class"]) == ["scratch"]
    assert r["class_boxes"] == {"scratch": 2, "stain": 0}
    assert r["overall"]["map_50"] == 1.0  # the mean runs over classes with boxes, as in COCO
    assert any("['stain']" in n for n in r["notes"])
    assert all(v >= 0 for v in walk(r))
    md = format_box_markdown(r)
    assert "| stain | 0 | - | - | - | - |" in md and "-100" not in md


# ----------------------------------------------------------------------------------------------------------------------
# frames and input checks


def test_rescale_boxes_back_to_each_image():
    # images of 50 x 100 (H x W) seen by the detector at 200 x 200: x scales by 1/2, y by 4
    truth = truth_set([[[10, 10, 30, 20]], []], [[1], []], size=(50, 100))
    seen = prediction([[[20, 40, 60, 80]], []], [[0.9], []], [[1], []])
    with pytest.raises(ValueError, match="rescale_boxes"):
        evaluate_boxes(seen, truth)
    back = rescale_boxes(seen, 200, truth)
    assert back.boxes[0].tolist() == [[10.0, 10.0, 30.0, 20.0]]
    assert torch.equal(back.scores, seen.scores) and back.box_labels[0].tolist() == [1]
    assert evaluate_boxes(back, truth)["overall"]["map_50"] == 1.0
    # the same with explicit sizes: one (H, W) for the detector, one pair per image for the truth
    assert rescale_boxes(seen, (200, 200), [(50, 100), (50, 100)]).boxes[0].tolist() == [[10.0, 10.0, 30.0, 20.0]]
    with pytest.raises(ValueError, match="3 image sizes for a prediction of 2"):
        rescale_boxes(seen, 200, [(50, 100)] * 3)
    with pytest.raises(ValueError, match="pair"):
        rescale_boxes(seen, 200, [50, 100, 50])


def test_input_errors():
    truth = truth_set([[A], []], [[1], []])
    with pytest.raises(ValueError, match="no boxes"):
        evaluate_boxes(Prediction(torch.tensor([0.5, 0.1])), truth)
    with pytest.raises(ValueError, match="covers 1 images but the test set has 2"):
        evaluate_boxes(prediction([[A]], [[0.9]], [[1]]), truth)
    with pytest.raises(ValueError, match=r"outside 1\.\.2"):
        evaluate_boxes(prediction([[A], []], [[0.9], []], [[3], []]), truth)
    with pytest.raises(ValueError, match="finite"):
        evaluate_boxes(prediction([[A], []], [[float("nan")], []], [[1], []]), truth)


def test_markdown_shares_the_anomaly_table_format():
    truth = truth_set([[A, B], [C], []], [[1, 2], [1], []])
    r = evaluate_boxes(prediction([[A], [C], []], [[0.9], [0.7], []], [[1], [1], []]), truth)
    md = format_box_markdown(r, title="Faster R-CNN")
    lines = md.splitlines()
    assert lines[0] == "# Faster R-CNN"
    assert lines[2] == "| subset | boxes | AP@50 | AP@50:95 | image AUROC | image AP |"
    assert lines[4] == "| overall (mAP) | 3 | 50.0 | 50.0 | 100.0 | 100.0 |"
    assert lines[5] == "| scratch | 2 | 100.0 | 100.0 | - | - |"
    assert lines[6] == "| stain | 1 | 0.0 | 0.0 | - | - |"
    anomaly = format_markdown(evaluate_anomaly([0.9, 0.1], [1, 0])).splitlines()
    assert lines[3] == "|:---|---:|---:|---:|---:|---:|" and anomaly[3] == lines[3]


# ----------------------------------------------------------------------------------------------------------------------
# cross-check against pycocotools' COCOeval, without torchmetrics


def _coco_eval(truth, pred, cat_ids=None):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    xywh = lambda b: [b[0], b[1], b[2] - b[0], b[3] - b[1]]  # noqa: E731
    gt = {"images": [{"id": i + 1, "height": 64, "width": 64} for i in range(len(truth))],
          "categories": [{"id": k + 1, "name": n} for k, n in enumerate(truth.class_names)], "annotations": []}
    dets = []
    for i in range(len(truth)):
        for b, lab in zip(truth.boxes[i].tolist(), truth.labels[i].tolist()):
            w, h = b[2] - b[0], b[3] - b[1]
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i + 1, "category_id": lab,
                                      "bbox": xywh(b), "area": w * h, "iscrowd": 0})
        for b, s, lab in zip(pred.boxes[i].tolist(), pred.box_scores[i].tolist(), pred.box_labels[i].tolist()):
            dets.append({"image_id": i + 1, "category_id": lab, "bbox": xywh(b), "score": s})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        e = COCOeval(coco, coco.loadRes(dets), "bbox")
        if cat_ids is not None:
            e.params.catIds = cat_ids
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e.stats[1], e.stats[0]  # AP@50, AP@50:95 (all areas, 100 detections)


def test_cross_check_against_cocoeval():
    g = torch.Generator().manual_seed(3)
    boxes, labels, p_boxes, p_scores, p_labels = [], [], [], [], []
    for _ in range(16):
        n = int(torch.randint(0, 4, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 40
        wh = 4 + torch.rand(n, 2, generator=g) * 20
        b = torch.cat([xy, xy + wh], 1).round()
        lab = torch.randint(1, 3, (n,), generator=g)
        keep = torch.rand(n, generator=g) > 0.25                      # some defects missed
        jitter = (torch.rand(n, 4, generator=g) - 0.5) * 5            # IoUs spread over the thresholds
        m = int(torch.randint(0, 3, (1,), generator=g))               # some false boxes
        fxy = torch.rand(m, 2, generator=g) * 40
        fb = torch.cat([fxy, fxy + 4 + torch.rand(m, 2, generator=g) * 16], 1)
        flip = torch.rand(n, generator=g) < 0.15                      # some with the wrong class
        pl = torch.where(flip, 3 - lab, lab)[keep]
        boxes.append(b.tolist())
        labels.append(lab.tolist())
        p_boxes.append(torch.cat([(b + jitter).clamp(0, 64)[keep], fb]).tolist())
        p_scores.append(torch.rand(int(keep.sum()) + m, generator=g).tolist())
        p_labels.append(torch.cat([pl, torch.randint(1, 3, (m,), generator=g)]).tolist())
    truth = truth_set(boxes, labels)
    pred = prediction(p_boxes, p_scores, p_labels)
    r = evaluate_boxes(pred, truth)
    # a case with something to check: hits, misses, false and wrongly-classed boxes in both classes
    assert sum(len(b) for b in boxes) > 16 and 0.1 < r["overall"]["map_50"] < 0.9
    ap50, ap = _coco_eval(truth, pred)
    assert r["overall"]["map_50"] == pytest.approx(ap50, abs=1e-6)
    assert r["overall"]["map_50_95"] == pytest.approx(ap, abs=1e-6)
    for k, name in enumerate(NAMES):
        ap50_k, ap_k = _coco_eval(truth, pred, cat_ids=[k + 1])
        assert r["per_class"][name]["ap_50"] == pytest.approx(ap50_k, abs=1e-6)
        assert r["per_class"][name]["ap_50_95"] == pytest.approx(ap_k, abs=1e-6)


def test_torchmetrics_without_the_backend_argument(monkeypatch):
    """torchmetrics 1.0 and 1.1 (pycocotools only) have no ``backend`` and refuse unknown keywords."""
    import torchmetrics.detection

    real = torchmetrics.detection.MeanAveragePrecision
    made = []

    class Old(real):
        def __init__(self, box_format="xyxy", iou_type="bbox", iou_thresholds=None, class_metrics=False, **kwargs):
            if "backend" in kwargs:
                raise ValueError("Unexpected keyword arguments: `backend`")
            made.append(iou_thresholds)
            super().__init__(box_format=box_format, iou_type=iou_type, iou_thresholds=iou_thresholds,
                             class_metrics=class_metrics, **kwargs)

    monkeypatch.setattr(torchmetrics.detection, "MeanAveragePrecision", Old)
    truth = truth_set([[A, B]], [[1, 1]])
    r = evaluate_boxes(prediction([[A]], [[0.9]], [[1]]), truth)
    assert r["overall"]["map_50"] == pytest.approx(51 / N_REC, abs=1e-6)
    assert made == [None, [0.5]]


def test_agnostic_ap_per_true_class_ignores_the_other_classes():
    """Two test classes, one agnostic detector. Scored against 'a', its top box (on the 'b' box) is ignored rather
    than a false alarm, so 'a' gets AP 1; 'b' too. Without a box on 'b', 'a' keeps AP 1 and 'b' gets 0."""
    import torch

    from detectors.metrics import evaluate_boxes
    from detectors.types import LabelledSet, Prediction

    truth = LabelledSet([torch.zeros(3, 50, 50, dtype=torch.uint8)] * 2,
                        [torch.tensor([[0., 0, 10, 10], [30, 30, 40, 40]]), torch.tensor([[5., 5, 20, 20]])],
                        [torch.tensor([1, 2]), torch.tensor([1])], ("a", "b"))
    # image 0: a high-scoring box on the 'b' box, then the 'a' box; image 1: the 'a' box
    prediction = Prediction(torch.tensor([0.9, 0.7]),
                            boxes=[torch.tensor([[30., 30, 40, 40], [0, 0, 10, 10]]), torch.tensor([[5., 5, 20, 20]])],
                            box_scores=[torch.tensor([0.9, 0.8]), torch.tensor([0.7])],
                            box_labels=[torch.tensor([1, 1]), torch.tensor([1])])
    report = evaluate_boxes(prediction, truth, prediction_class_names=["defect"], agnostic=True)
    assert report["overall"]["map_50"] == pytest.approx(1.0)
    assert report["per_true_class"]["a"]["ap_50"] == pytest.approx(1.0)  # the box on 'b' is ignored, not a miss
    assert report["per_true_class"]["b"]["ap_50"] == pytest.approx(1.0)
    missing_b = Prediction(torch.tensor([0.8, 0.7]), boxes=[torch.tensor([[0., 0, 10, 10]]),
                                                           torch.tensor([[5., 5, 20, 20]])],
                           box_scores=[torch.tensor([0.8]), torch.tensor([0.7])],
                           box_labels=[torch.tensor([1]), torch.tensor([1])])
    report = evaluate_boxes(missing_b, truth, prediction_class_names=["defect"], agnostic=True)
    assert report["per_true_class"]["a"]["ap_50"] == pytest.approx(1.0)
    assert report["per_true_class"]["b"]["ap_50"] == pytest.approx(0.0)
    assert "a (agnostic)" in __import__("detectors.metrics", fromlist=["x"]).format_box_markdown(report)
