"""detectors.data readers: YOLO, COCO, MVTec, VOC and DeepPCB pairs into one LabelledSet; bad input; class maps."""
import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from defectgen import generate
from defectgen.io import default_images
from detectors.data import (FORMATS, LabelProblemWarning, detect_format, parse_class_map, read_labelled,
                            read_templates)
from defectgen.io.labelled.problems import WARN_AT_MOST
from detectors.types import AGNOSTIC_CLASS

DEEPPCB = Path(__file__).resolve().parents[2] / "shared" / "data" / "deeppcb_400"


def write_image(path: Path, height: int, width: int, value: int = 100, gray: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full((height, width) if gray else (height, width, 3), value, dtype=np.uint8)
    cv2.imwrite(str(path), array)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def boxes_of(labelled, name):
    i = labelled.names.index(name)
    return labelled.boxes[i].tolist(), labelled.labels[i].tolist()


def read_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LabelProblemWarning)
        return read_labelled(*args, **kwargs)


# -- YOLO -------------------------------------------------------------------------------------------------------------
@pytest.fixture
def yolo_dir(tmp_path):
    root = tmp_path / "yolo"
    write_image(root / "images" / "val" / "a.png", 20, 40)
    write_image(root / "images" / "val" / "b.png", 32, 32)
    write_image(root / "images" / "val" / "c.png", 10, 10)      # no label file: defect-free
    write_image(root / "images" / "train" / "t.png", 10, 10)
    # 40 x 20: centre (20, 10), size 10 x 10 -> [15, 5, 25, 15]; centre (4, 2), size 8 x 4 -> [0, 0, 8, 4]
    write(root / "labels" / "val" / "a.txt", "1 0.5 0.5 0.25 0.5\n0 0.1 0.1 0.2 0.2\n")
    # a segmentation polygon: its bounding box [8, 4, 24, 16]
    write(root / "labels" / "val" / "b.txt", "2 0.25 0.125 0.75 0.5 0.5 0.5\n")
    write(root / "data.yaml", "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: scratch\n  1: dent\n"
          "  2: stain\n")
    return root


def test_yolo_exact_boxes_labels_and_names(yolo_dir):
    s = read_labelled(yolo_dir, "yolo")
    assert s.info["format"] == "yolo" and s.info["split"] == "val" and s.info["problems"] == []
    assert s.class_names == ("scratch", "dent", "stain")
    assert s.names == ("images/val/a.png", "images/val/b.png", "images/val/c.png")
    assert boxes_of(s, "images/val/a.png") == ([[15, 5, 25, 15], [0, 0, 8, 4]], [2, 1])
    assert boxes_of(s, "images/val/b.png") == ([[8, 4, 24, 16]], [3])
    assert boxes_of(s, "images/val/c.png") == ([], [])
    assert s.images[0].shape == (3, 20, 40) and s.images[0].dtype == torch.uint8
    assert s.defective.tolist() == [True, True, False]
    train = read_labelled(yolo_dir, "yolo", split="train")
    assert len(train) == 1 and train.info["split"] == "train"
    with pytest.raises(ValueError, match="no split 'test'"):
        read_labelled(yolo_dir, "yolo", split="test")


def test_yolo_size_channels_limit_and_data_yaml_path(yolo_dir):
    s = read_labelled(yolo_dir / "data.yaml", size=80, channels=1, limit=2)
    assert len(s) == 2 and all(im.shape == (1, 80, 80) for im in s.images)
    assert s.boxes[0].tolist() == [[30, 20, 50, 60], [0, 0, 16, 16]]  # x * 2, y * 4


def test_yolo_without_data_yaml(tmp_path):
    root = tmp_path / "flat"
    write_image(root / "images" / "x.png", 10, 10)
    write(root / "labels" / "x.txt", "0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(ValueError, match="pass class_names"):
        read_labelled(root, "yolo")
    s = read_labelled(root, "yolo", class_names=["hole"])
    assert s.class_names == ("hole",) and s.boxes[0].tolist() == [[4, 4, 6, 6]] and s.info["split"] is None
    write(root / "classes.txt", "crack\nhole\n")
    assert read_labelled(root).class_names == ("crack", "hole")
    # with names in the files, class_names fixes the id order by name
    reordered = read_labelled(root, class_names=["hole", "crack", "extra"])
    assert reordered.class_names == ("hole", "crack", "extra") and reordered.labels[0].tolist() == [2]
    with pytest.raises(ValueError, match="crack"):
        read_labelled(root, class_names=["hole"])


def test_yolo_bad_lines_clipping_and_zero_area_are_reported(tmp_path):
    root = tmp_path / "bad"
    write_image(root / "images" / "train" / "a.png", 10, 10)
    label = write(root / "labels" / "train" / "a.txt",
                  "0 0.5 0.5 0.2\n"          # 1: four fields
                  "x 0.5 0.5 0.2 0.2\n"      # 2: not a number
                  "\n"                        # 3: blank, fine
                  "0 0.5 0.5 0.2 0.2\n"      # 4: good -> [4, 4, 6, 6]
                  "0 0.95 0.5 0.3 0.2\n"     # 5: reaches x = 11 -> clipped to [8, 4, 10, 6]
                  "0 0.5 0.5 0 0.2\n"        # 6: zero width -> dropped
                  "0 1.5 1.5 0.2 0.2\n")     # 7: wholly outside -> dropped
    write(root / "data.yaml", "train: images/train\nnames: [crack]\n")
    with pytest.warns(LabelProblemWarning) as record:
        s = read_labelled(root)
    assert s.boxes[0].tolist() == [[4, 4, 6, 6], [8, 4, 10, 6]] and s.labels[0].tolist() == [1, 1]
    problems = s.info["problems"]
    assert len(problems) == 5 == len(record)
    for line, word in ((1, "fields"), (2, "not numbers"), (5, "clipped"), (6, "zero area"), (7, "outside")):
        assert any(p.startswith(f"{label}:{line}:") and word in p for p in problems), (line, problems)


def test_yolo_class_index_outside_names_is_an_error(tmp_path):
    root = tmp_path / "cls"
    write_image(root / "images" / "a.png", 10, 10)
    label = write(root / "labels" / "a.txt", "0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n")
    write(root / "data.yaml", "train: images\nnames: [a, b]\n")
    with pytest.raises(ValueError, match=f"{label}:2: class index 3 is outside the 2 class names"):
        read_labelled(root)


def test_many_problems_are_warned_collapsed_but_all_recorded(tmp_path):
    root = tmp_path / "many"
    write_image(root / "images" / "a.png", 10, 10)
    write(root / "labels" / "a.txt", "garbage\n" * 12)
    write(root / "data.yaml", "train: images\nnames: [a]\n")
    with pytest.warns(LabelProblemWarning) as record:
        s = read_labelled(root)
    assert len(s.info["problems"]) == 12 and len(record) == WARN_AT_MOST + 1
    assert "7 more label problems" in str(record[-1].message)


# -- COCO -------------------------------------------------------------------------------------------------------------
def coco_json(images, annotations, categories=((3, "scratch"), (7, "dent"))):
    return json.dumps({"images": images, "annotations": annotations,
                       "categories": [{"id": i, "name": n} for i, n in categories]})


@pytest.fixture
def coco_dir(tmp_path):
    root = tmp_path / "coco"
    write_image(root / "images" / "test" / "a.png", 20, 40)
    write_image(root / "images" / "test" / "b.png", 16, 16)
    write_image(root / "images" / "train" / "b.png", 16, 16)
    images = [{"id": 1, "file_name": "a.png", "width": 40, "height": 20},
              {"id": 2, "file_name": "b.png", "width": 16, "height": 16}]
    annotations = [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [2, 3, 10, 5]},
                   {"id": 2, "image_id": 1, "category_id": 3, "bbox": [30, 10, 20, 5]},   # clipped to x = 40
                   {"id": 3, "image_id": 1, "category_id": 3, "bbox": [1, 1, 0, 4]},      # zero width
                   {"id": 4, "image_id": 9, "category_id": 3, "bbox": [1, 1, 2, 2]},      # unknown image
                   {"id": 5, "image_id": 1, "category_id": 3, "bbox": [1, 1, 2]}]         # not a bbox
    write(root / "annotations" / "instances_test.json", coco_json(images, annotations))
    write(root / "annotations" / "instances_train.json", coco_json(images[1:], []))
    return root


def test_coco_exact_boxes_categories_in_id_order(coco_dir):
    with pytest.warns(LabelProblemWarning):
        s = read_labelled(coco_dir, "coco")
    assert s.class_names == ("scratch", "dent") and s.info["split"] == "test"
    assert boxes_of(s, "a.png") == ([[2, 3, 12, 8], [30, 10, 40, 15]], [2, 1])
    assert boxes_of(s, "b.png") == ([], [])
    problems = "\n".join(s.info["problems"])
    for fragment in ("annotation 2: box [30, 10, 50, 15] extends outside", "annotation 3: box", "zero area",
                     "annotation 4: image_id 9", "annotation 5: bbox"):
        assert fragment in problems
    train = read_labelled(coco_dir / "annotations" / "instances_train.json")
    assert train.info["format"] == "coco" and train.info["split"] == "train" and len(train) == 1


def test_coco_unknown_category_and_missing_image_are_errors(tmp_path):
    root = tmp_path / "c"
    write_image(root / "images" / "val" / "a.png", 8, 8)
    path = write(root / "annotations" / "instances_val.json", coco_json(
        [{"id": 1, "file_name": "a.png"}], [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [0, 0, 2, 2]}]))
    with pytest.raises(ValueError, match=r"instances_val.json.*category ids \[5\]"):
        read_labelled(root)
    write(path, coco_json([{"id": 1, "file_name": "missing.png"}], []))
    with pytest.raises(ValueError, match="image 'missing.png' not found"):
        read_labelled(root)


# -- MVTec ------------------------------------------------------------------------------------------------------------
def test_mvtec_boxes_from_mask_components(tmp_path):
    root = tmp_path / "mv"
    write_image(root / "train" / "good" / "g.png", 16, 16)
    write_image(root / "test" / "good" / "g.png", 16, 16)
    write_image(root / "test" / "crack" / "c.png", 16, 16)
    mask = np.zeros((16, 16), np.uint8)
    mask[2:4, 3:6] = 255          # one region
    mask[10:13, 10:11] = 255      # another
    mask[13, 11] = 255            # touches the second diagonally: same 8-connected region
    (root / "ground_truth" / "crack").mkdir(parents=True)
    cv2.imwrite(str(root / "ground_truth" / "crack" / "c_mask.png"), mask)
    s = read_labelled(root)
    assert s.info["format"] == "mvtec" and s.class_names == ("crack",)
    assert s.names == ("test/good/g.png", "test/crack/c.png")
    assert boxes_of(s, "test/crack/c.png") == ([[3, 2, 6, 4], [10, 10, 12, 14]], [1, 1])
    assert s.masks[1].shape == (1, 16, 16) and s.masks[1].sum() == 6 + 3 + 1 and not s.masks[0].any()
    small = read_labelled(root, size=8)
    assert small.boxes[1].tolist() == [[1.5, 1, 3, 2], [5, 5, 6, 7]] and small.masks[1].shape == (1, 8, 8)
    train = read_labelled(root, split="train")
    assert len(train) == 1 and train.boxes[0].shape == (0, 4)
    with pytest.raises(ValueError, match="split must be one of"):
        read_labelled(root, "mvtec", split="val")


# -- defectgen's own output, read back three ways -------------------------------------------------------------------
@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    ok = tmp_path_factory.mktemp("ok")
    for i, image in enumerate(default_images(48, 4)):
        cv2.imwrite(str(ok / f"ok_{i}.png"), image.permute(1, 2, 0).numpy()[:, :, ::-1])
    out = tmp_path_factory.mktemp("gen") / "out"
    generate(ok, out, ops=["cutpaste", "cutout"], count=8, formats=["yolo", "coco", "mvtec"], size=48, seed=1,
             batch_size=8, progress=False)
    return out


def test_generated_set_reads_the_same_as_yolo_coco_and_mvtec(generated):
    manifest = [json.loads(line) for line in (generated / "manifest.jsonl").read_text().splitlines()]
    truth = {Path(m["image"]).stem: m["boxes"] for m in manifest if m["kind"] == "ng"}
    read = {fmt: read_labelled(generated, fmt) for fmt in ("yolo", "coco", "mvtec")}
    for fmt, s in read.items():
        assert s.class_names == ("cutpaste", "cutout") and len(s) == 8, fmt
        assert s.info["problems"] == []
        got = {Path(n).stem: [b + [c] for b, c in zip(s.boxes[i].tolist(), s.labels[i].tolist())]
               for i, n in enumerate(s.names)}
        assert got.keys() == truth.keys()
        for stem, boxes in truth.items():
            assert np.allclose(got[stem], boxes, atol=1e-3), (fmt, stem, got[stem], boxes)
    assert read["mvtec"].masks is not None and read["yolo"].masks is None
    assert detect_format(generated) == "yolo"


# -- Pascal VOC -------------------------------------------------------------------------------------------------------
def voc_xml(filename, objects):
    body = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
                   f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>" for n, (a, b, c, d) in objects)
    name = f"<filename>{filename}</filename>" if filename else ""
    return f"<annotation>{name}<size><width>1</width><height>1</height></size>{body}</annotation>"


def test_voc_one_based_inclusive_to_pixel_edges(tmp_path):
    root = tmp_path / "NEU-DET"   # NEU-DET's upper-case folders, one image sub-folder per class
    write_image(root / "IMAGES" / "crazing" / "crazing_1.jpg", 20, 30, gray=True)
    write_image(root / "IMAGES" / "patches" / "patches_2.jpg", 20, 20, gray=True)
    write(root / "ANNOTATIONS" / "crazing_1.xml", voc_xml("crazing_1.jpg", [("crazing", (1, 1, 10, 5))]))
    path = write(root / "ANNOTATIONS" / "patches_2.xml",
                 voc_xml("patches_2", [("patches", (3, 4, 3, 4)), ("crazing", (11, 11, 25, 20))])
                 .replace("</annotation>", "<object><name>patches</name><bndbox><xmin>a</xmin></bndbox></object>"
                          "</annotation>"))
    assert detect_format(root) == "voc"
    with pytest.warns(LabelProblemWarning):
        s = read_labelled(root, channels=1)
    assert s.class_names == ("crazing", "patches") and s.images[0].shape == (1, 20, 30)
    assert boxes_of(s, "crazing/crazing_1.jpg") == ([[0, 0, 10, 5]], [1])
    # a one-pixel box at (3, 4) is [2, 3, 3, 4]; the second box is clipped at the 20 px image edge
    assert boxes_of(s, "patches/patches_2.jpg") == ([[2, 3, 3, 4], [10, 10, 20, 20]], [2, 1])
    assert any(p.startswith(f"{path}: object 3:") and "xmin" in p for p in s.info["problems"])
    with pytest.raises(ValueError, match=r"classes \['patches'\]"):
        read_labelled(root, class_names=["crazing"])


def test_voc_image_sets_split(tmp_path):
    root = tmp_path / "voc"
    for stem in ("1", "2", "3"):
        write_image(root / "JPEGImages" / f"{stem}.jpg", 10, 10)
        write(root / "Annotations" / f"{stem}.xml", voc_xml(f"{stem}.jpg", [("dog", (1, 1, 2, 2))]))
    write(root / "ImageSets" / "Main" / "train.txt", "1\n2\n")
    write(root / "ImageSets" / "Main" / "test.txt", "3\n")
    assert read_labelled(root).names == ("3.jpg",)
    assert read_labelled(root, split="train").names == ("1.jpg", "2.jpg")
    write(root / "ImageSets" / "Main" / "val.txt", "4\n")
    with pytest.raises(ValueError, match=r"val.txt:1: no annotation"):
        read_labelled(root, split="val")


# -- DeepPCB pairs ----------------------------------------------------------------------------------------------------
def test_pairs_tested_images_and_templates(tmp_path):
    root = tmp_path / "pcb"
    for stem in ("a", "b"):
        write_image(root / "images" / f"{stem}.jpg", 20, 20, value=0, gray=True)
        write_image(root / "templates" / f"{stem}.jpg", 20, 20, value=255, gray=True)
    # inclusive x2/y2: "0 0 4 4" covers pixels 0..4, edges [0, 0, 5, 5]; type names or ids
    write(root / "labels" / "a.txt", "0 0 4 4 1\n10,10,19,19,pin-hole\n2 2 3 3 9\n")
    write(root / "labels" / "b.txt", "5 5 25 8 spur\n")
    assert detect_format(root) == "deeppcb"
    with pytest.warns(LabelProblemWarning):
        s = read_labelled(root)
    assert s.class_names[0] == "open" and len(s.class_names) == 6 and s.names == ("a", "b")
    assert boxes_of(s, "a") == ([[0, 0, 5, 5], [10, 10, 20, 20]], [1, 6])
    assert boxes_of(s, "b") == ([[5, 5, 20, 9]], [4])
    assert any("a.txt:3" in p for p in s.info["problems"]) and any("clipped" in p for p in s.info["problems"])
    templates = read_templates(root, 8, channels=1)
    assert templates.shape == (2, 1, 8, 8) and templates.dtype == torch.uint8 and (templates == 255).all()
    with pytest.raises(ValueError, match="no splits"):
        read_labelled(root, split="test")


@pytest.mark.skipif(not (DEEPPCB / "images").is_dir(), reason="needs ../shared/data/deeppcb_400")
def test_deeppcb_real_data():
    s = read_labelled(DEEPPCB, channels=1)
    assert s.info["format"] == "deeppcb" and s.info["problems"] == []
    assert len(s) == 400 and s.class_names == ("open", "short", "mousebite", "spur", "spurious_copper", "pin_hole")
    counts = s.counts()
    assert counts == {"images": 400, "defect-free images": 0, "open": 518, "short": 409, "mousebite": 553,
                      "spur": 455, "spurious_copper": 405, "pin_hole": 414}
    boxes = torch.cat(list(s.boxes))
    assert all(im.shape == (1, 640, 640) for im in s.images)
    assert len(boxes) == 2754 and (boxes >= 0).all() and (boxes <= 640).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    small = read_labelled(DEEPPCB, size=160, limit=3)
    assert torch.allclose(torch.cat(list(small.boxes)), torch.cat(list(s.boxes[:3])) / 4)
    templates = read_templates(DEEPPCB, 64, limit=5)
    assert templates.shape == (5, 3, 64, 64)


# -- the front door: detection and errors -----------------------------------------------------------------------------
def test_auto_detection(yolo_dir, coco_dir, tmp_path):
    assert detect_format(yolo_dir) == "yolo" and detect_format(yolo_dir / "data.yaml") == "yolo"
    assert detect_format(coco_dir) == "coco"
    assert detect_format(coco_dir / "annotations" / "instances_test.json") == "coco"
    write_image(tmp_path / "mv" / "train" / "good" / "a.png", 4, 4)
    assert detect_format(tmp_path / "mv") == "mvtec"
    assert set(FORMATS) == {"yolo", "coco", "mvtec", "voc", "deeppcb"}


def test_unknown_format_empty_folder_and_missing_path(tmp_path):
    write_image(tmp_path / "loose" / "a.png", 4, 4)
    with pytest.raises(ValueError) as error:
        read_labelled(tmp_path / "loose")
    message = str(error.value)
    assert "cannot tell the format" in message and all(f"  {fmt}: " in message for fmt in FORMATS)
    assert "Annotations/*.xml" in message and "instances_<split>.json" in message
    with pytest.raises(ValueError, match="format must be 'auto' or one of"):
        read_labelled(tmp_path / "loose", format="pascal")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is empty"):
        read_labelled(tmp_path / "empty")
    with pytest.raises(ValueError, match="is empty"):
        read_labelled(tmp_path / "empty", format="yolo")
    with pytest.raises(ValueError, match="does not exist"):
        read_labelled(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="channels"):
        read_labelled(tmp_path / "loose", format="yolo", channels=2)


# -- class maps -------------------------------------------------------------------------------------------------------
def test_parse_class_map_forms(tmp_path):
    assert parse_class_map("cutpaste=short, scar = open,cutout=-") == {"cutpaste": "short", "scar": "open",
                                                                       "cutout": None}
    assert parse_class_map({"a": "b", "c": None}) == {"a": "b", "c": None}
    yaml_file = write(tmp_path / "map.yaml", "cutpaste: short\nscar: open\n")
    json_file = write(tmp_path / "map.json", '{"cutpaste": "short"}')
    assert parse_class_map(str(yaml_file)) == {"cutpaste": "short", "scar": "open"}
    assert parse_class_map(json_file) == {"cutpaste": "short"}
    for bad, match in (("cutpaste", "needs the form old=new"), ("=short", "empty class name"),
                       ("a=b,a=c", "mapped twice"), ("", "maps no class"), ({"a": 3}, "map a class name")):
        with pytest.raises(ValueError, match=match):
            parse_class_map(bad)
    with pytest.raises(ValueError, match="cannot read class map file"):
        parse_class_map(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="must hold a mapping"):
        parse_class_map(write(tmp_path / "list.yaml", "- a\n- b\n"))
    with pytest.raises(TypeError):
        parse_class_map(3)


def test_class_map_applied_to_a_read_set(yolo_dir):
    s = read_labelled(yolo_dir)
    mapped = s.mapped(parse_class_map("scratch=defect_a,dent=defect_a,stain=-"))
    assert mapped.class_names == ("defect_a",)
    assert mapped.labels[0].tolist() == [1, 1] and mapped.boxes[1].shape == (0, 4)
    with pytest.raises(ValueError, match="unknown classes"):
        s.mapped(parse_class_map("crack=open"))
    agnostic = s.agnostic()
    assert agnostic.class_names == (AGNOSTIC_CLASS,) and agnostic.labels[1].tolist() == [1]
