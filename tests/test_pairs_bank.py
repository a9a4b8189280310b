"""Aligned pairs with boxes (DeepPCB): listing them, and cutting a DefectBank from their differences."""
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from defectgen.io import DEEPPCB_TYPES, PairItem, read_pairs

DEEPPCB = Path(__file__).resolve().parents[2] / "shared" / "data" / "deeppcb_400"
needs_deeppcb = pytest.mark.skipif(not (DEEPPCB / "labels").is_dir(), reason="needs ../shared/data/deeppcb_400")


def write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def pair_images(size=64, defect=(20, 24, 30, 40)):
    """A template with one bright trace, and the tested image with a dark cut (x1, y1, x2, y2 edges) across it."""
    template = np.zeros((size, size), np.uint8)
    template[16:48, 8:56] = 255
    image = template.copy()
    x1, y1, x2, y2 = defect
    image[y1:y2, x1:x2] = 0
    return image, template


# -- read_pairs ------------------------------------------------------------------------------------------------
def test_read_pairs_role_layout_space_and_comma(tmp_path):
    image, template = pair_images()
    for name in ("b", "a"):
        write(tmp_path / "images" / f"{name}.jpg", image)
        write(tmp_path / "templates" / f"{name}.png", template)  # another extension still pairs by stem
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("10 12 19 21 1\n\n3 4 5 6 6\n")
    (tmp_path / "labels" / "b.txt").write_text("10,12,19,21,copper\n1, 2, 3, 4, pin-hole\n")
    items = read_pairs(tmp_path)
    assert [it.name for it in items] == ["a", "b"]
    a, b = items
    assert isinstance(a, PairItem) and a.image == tmp_path / "images" / "a.jpg"
    assert a.template == tmp_path / "templates" / "a.png" and a.labels == tmp_path / "labels" / "a.txt"
    # DeepPCB's x2, y2 are the last pixel: edges are one past them
    np.testing.assert_array_equal(a.boxes, [[10, 12, 20, 22], [3, 4, 6, 7]])
    assert a.boxes.dtype == np.float32 and a.types == ["open", "pin_hole"] and a.problems == ()
    assert b.types == ["spurious_copper", "pin_hole"]
    np.testing.assert_array_equal(b.boxes[0], a.boxes[0])


def test_read_pairs_deeppcb_layout(tmp_path):
    image, template = pair_images()
    group = tmp_path / "PCBData" / "group00041"
    write(group / "00041" / "00041000_test.jpg", image)
    write(group / "00041" / "00041000_temp.jpg", template)
    (group / "00041_not").mkdir()
    (group / "00041_not" / "00041000.txt").write_text("1 2 3 4 2\n")
    # labels beside the image are found too
    write(group / "00041" / "00041001_test.jpg", image)
    write(group / "00041" / "00041001_temp.jpg", template)
    (group / "00041" / "00041001.txt").write_text("5,6,7,8,4\n")
    items = read_pairs(tmp_path / "PCBData")
    assert [it.name for it in items] == ["00041000", "00041001"]
    assert items[0].template == group / "00041" / "00041000_temp.jpg"
    assert items[0].labels == group / "00041_not" / "00041000.txt" and items[0].types == ["short"]
    assert items[1].types == ["spur"]
    np.testing.assert_array_equal(items[1].boxes, [[5, 6, 8, 9]])
    assert [it.name for it in read_pairs(group / "00041")] == ["00041000", "00041001"]


def test_read_pairs_reports_bad_lines_with_file_and_line(tmp_path):
    image, template = pair_images()
    write(tmp_path / "images" / "a.jpg", image)
    write(tmp_path / "templates" / "a.jpg", template)
    (tmp_path / "labels").mkdir()
    labels = tmp_path / "labels" / "a.txt"
    labels.write_text("1 2 3 4 1\n1 2 3 4\n1 2 x 4 1\n1 2 3 4 9\n5 2 3 4 1\n6 7 8 9 mousebite\n")
    with pytest.warns(UserWarning) as caught:
        (item,) = read_pairs(tmp_path)
    assert item.types == ["open", "mousebite"]
    assert [p.split(": ")[0] for p in item.problems] == [f"{labels}:{n}" for n in (2, 3, 4, 5)]
    assert "4 fields" in item.problems[0] and "unknown defect type '9'" in item.problems[2]
    assert len(caught) == 4 and f"{labels}:2" in str(caught[0].message)


def test_read_pairs_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_pairs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image pairs"):
        read_pairs(tmp_path / "empty")
    image, template = pair_images()
    write(tmp_path / "roles" / "images" / "a.jpg", image)
    (tmp_path / "roles" / "templates").mkdir()
    (tmp_path / "roles" / "labels").mkdir()
    with pytest.raises(ValueError, match=r"a\.jpg' has no template"):
        read_pairs(tmp_path / "roles")
    write(tmp_path / "roles" / "templates" / "a.jpg", template)
    with pytest.raises(ValueError, match=r"has no label file .*a\.txt"):
        read_pairs(tmp_path / "roles")
    write(tmp_path / "pcb" / "g" / "1_test.jpg", image)
    with pytest.raises(ValueError, match=r"1_test\.jpg' has no template 1_temp"):
        read_pairs(tmp_path / "pcb")


@needs_deeppcb
def test_read_pairs_on_deeppcb():
    items = read_pairs(DEEPPCB)
    assert len(items) == 400
    assert all(it.problems == () and it.types for it in items)
    assert sum(len(it.types) for it in items) == 2754
    assert {t for it in items for t in it.types} == set(DEEPPCB_TYPES)
    boxes = np.concatenate([it.boxes for it in items])
    assert boxes.min() >= 0 and boxes[:, 2:].max() <= 641 and (boxes[:, 2:] > boxes[:, :2]).all()


# -- DefectBank from aligned pairs -------------------------------------------------------------------------------
from defectgen import DefectBank  # noqa: E402
from defectgen.bank import difference_masks  # noqa: E402


def test_difference_masks_recover_a_drawn_defect_despite_misregistration():
    image, template = pair_images(defect=(20, 24, 30, 40))
    truth = np.zeros(image.shape, bool)
    truth[24:40, 20:30] = True
    boxes = np.array([[10, 14, 40, 50]], np.float32)  # DeepPCB-like: the defect plus a margin
    np.testing.assert_array_equal(difference_masks(image, template, boxes)[0], truth)
    # the scan drifted by 2 px: every trace edge differs, and the local re-registration takes it out
    shifted = np.roll(image, (2, -2), (0, 1))
    moved = np.roll(truth, (2, -2), (0, 1))
    np.testing.assert_array_equal(difference_masks(shifted, template, boxes + [-2, 2, -2, 2])[0], moved)
    raw = difference_masks(shifted, template, boxes + [-2, 2, -2, 2], shift_px=0, open_px=0)[0]
    assert (raw & ~moved).any(), "without re-registration the trace edges must leak into the mask"


def test_from_aligned_pairs_one_entry_per_box_with_its_type(tmp_path):
    image, template = pair_images(defect=(20, 24, 30, 40))
    image[50:56, 40:48] = 255  # a second defect: copper where the template has none
    boxes = [np.array([[10, 14, 40, 50], [34, 46, 54, 60], [0, 0, 8, 8]], np.float32)]
    with pytest.warns(UserWarning, match=r"1 of 3 boxes have no difference.*box 2 \(0, 0, 8, 8\)"):
        bank = DefectBank.from_aligned_pairs([image], [template], boxes, [["open", "spurious_copper", "short"]],
                                             class_names=DEEPPCB_TYPES)
    assert len(bank) == 2 and bank.class_names == list(DEEPPCB_TYPES) and bank.channels == 1
    assert bank.types.tolist() == [1, 5]  # DeepPCB's ids, the order given
    assert bank.masks.flatten(1).sum(1).tolist() == [10 * 16, 6 * 8]
    assert bank.names[0] == "pair 0 box 0 (10, 14, 40, 50)"
    # the entry holds the tested image's pixels under its mask
    entry = bank.images[0, 0][bank.masks[0, 0].bool()]
    assert (entry == 0).all()
    # default ids follow the sorted names, as from_pairs numbers them
    with pytest.warns(UserWarning):
        sorted_bank = DefectBank.from_aligned_pairs([image], [template], boxes, [["open", "spurious_copper", "short"]])
    assert sorted_bank.class_names == ["open", "short", "spurious_copper"] and sorted_bank.types.tolist() == [1, 3]


def test_from_aligned_pairs_errors(tmp_path):
    image, template = pair_images()
    box = [np.array([[10, 14, 40, 50]], np.float32)]
    with pytest.raises(ValueError, match="got 1 images but 2 templates"):
        DefectBank.from_aligned_pairs([image], [template, template], box, [["open"]])
    with pytest.raises(ValueError, match="image 0 has 1 boxes but 2 types"):
        DefectBank.from_aligned_pairs([image], [template], box, [["open", "short"]])
    with pytest.raises(ValueError, match=r"boxes\[0\] must be a finite \(n, 4\) array"):
        DefectBank.from_aligned_pairs([image], [template], [np.zeros((1, 3))], [["open"]])
    with pytest.raises(ValueError, match="its template is 32x32 px"):
        DefectBank.from_aligned_pairs([image], [template[:32, :32]], box, [["open"]])
    with pytest.raises(ValueError, match=r"missing \['open'\]"):
        DefectBank.from_aligned_pairs([image], [template], box, [["open"]], class_names=["short"])
    with pytest.raises(ValueError, match="threshold must be > 0"):
        DefectBank.from_aligned_pairs([image], [template], box, [["open"]], threshold=0)
    path = write(tmp_path / "t.png", template)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="every mask is empty"):
        DefectBank.from_aligned_pairs([path], [path], box, [["open"]])


def test_from_deeppcb_and_as_bank_on_a_pairs_folder(tmp_path):
    image, template = pair_images(defect=(20, 24, 30, 40))
    write(tmp_path / "images" / "a.jpg", image)
    write(tmp_path / "templates" / "a.jpg", template)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("10 14 39 49 1\n")  # inclusive x2, y2
    bank = DefectBank.from_deeppcb(tmp_path)
    assert len(bank) == 1 and bank.counts()["open"] == 1 and bank.class_names == list(DEEPPCB_TYPES)
    # JPEG ringing stays under the threshold: the mask is the drawn cut
    assert int(bank.masks.sum()) == 10 * 16
    with pytest.raises(ValueError, match=r"no pair \['b'\]"):
        DefectBank.from_deeppcb(tmp_path, ids=["b"])
    with pytest.raises(ValueError, match="no box of types"):
        DefectBank.from_deeppcb(tmp_path, types=["short"])
    from defectgen.bank import as_bank

    assert len(as_bank(str(tmp_path))) == 1  # a folder with templates/ is read as pairs
    assert len(as_bank({"root": tmp_path, "layout": "pairs", "types": ["open"]})) == 1


@needs_deeppcb
def test_from_deeppcb_on_real_pairs():
    items = read_pairs(DEEPPCB)[:40]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the first 40 pairs have no box without a difference
        bank = DefectBank.from_deeppcb(DEEPPCB, limit=40)
    boxes = sum(len(it.types) for it in items)
    assert len(bank) == boxes and all(n > 0 for n in bank.counts().values())
    assert bank.channels == 1 and bank.types.tolist() == sorted(bank.types.tolist())
    expected = {name: [] for name in DEEPPCB_TYPES}
    for it in items:
        masks = difference_masks(it.image, it.template, it.boxes)
        for box, kind, mask in zip(it.boxes.astype(int), it.types, masks):
            rows, cols = np.nonzero(mask)
            assert rows.size > 0, f"{it.name}: empty mask for {kind} at {box}"
            # inside the box, one pixel of tolerance
            assert cols.min() >= box[0] - 1 and rows.min() >= box[1] - 1
            assert cols.max() < box[2] + 1 and rows.max() < box[3] + 1
            expected[kind].append(int(mask.sum()))
    areas = bank.masks.flatten(1).sum(1).tolist()
    assert areas == [a for name in DEEPPCB_TYPES for a in expected[name]]  # the bank cuts exactly these masks
