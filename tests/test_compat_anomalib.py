"""defectgen inside anomalib: the generator adapter against anomalib's own generator, DRAEM training with it,
and defectgen's MVTec export read by anomalib's datamodules as a validation split."""
from pathlib import Path

import numpy as np
import pytest
import torch

from defectgen import CutPaste
from defectgen.compat.anomalib import AnomalibGenerator

ROOT = Path(__file__).resolve().parents[1]


def batch(b=4, size=32, seed=0):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --- the call contract (needs only torch) -------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 3, 32, 32), (3, 32, 32), (2, 1, 24, 40)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
def test_call_returns_image_and_mask_like_the_input(shape, dtype):
    images = batch().reshape(-1)[: int(np.prod(shape))].reshape(shape)
    images = (images * 255).to(dtype) if dtype == torch.uint8 else images.to(dtype)
    image, mask = AnomalibGenerator("cutpaste", seed=0)(images)
    assert image.shape == images.shape and image.dtype == images.dtype and image.device == images.device
    assert mask.shape == (*images.shape[:-3], 1, *images.shape[-2:])
    assert mask.dtype == (dtype if dtype.is_floating_point else torch.float32)
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and mask.sum() > 0  # cutpaste: p=1, a patch per sample
    outside = (mask == 0).expand_as(images)
    assert torch.equal(image[outside], images[outside])
    assert not torch.equal(image, images)


def test_input_is_not_modified_and_bad_input_is_named():
    images = batch()
    kept = images.clone()
    AnomalibGenerator("perlin", seed=0)(images)
    assert torch.equal(images, kept)
    generator = AnomalibGenerator("cutpaste", seed=0)
    with pytest.raises(TypeError, match="images must be a tensor"):
        generator(images.numpy())
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) or \(C, H, W\)"):
        generator(images[0, 0])
    with pytest.raises(ValueError, match="either seed= or generator="):
        AnomalibGenerator("cutpaste", seed=0, generator=torch.Generator())
    with pytest.raises(TypeError, match="soft_labels"):
        AnomalibGenerator("cutpaste", soft_labels=1)
    with pytest.raises(ValueError, match="unknown op"):
        AnomalibGenerator("no_such_op")


def test_seeded_from_seed_generator_or_the_training_seed():
    images = batch()
    a, b = AnomalibGenerator("perlin", seed=3), AnomalibGenerator("perlin", seed=3)
    for _ in range(2):  # the same sequence of batches, not only the same first batch
        assert torch.equal(a(images)[0], b(images)[0])
    assert not torch.equal(AnomalibGenerator("perlin", seed=4)(images)[0],
                           AnomalibGenerator("perlin", seed=3)(images)[0])
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(AnomalibGenerator("perlin", generator=g1)(images)[1],
                       AnomalibGenerator("perlin", generator=g2)(images)[1])

    def from_training_seed(seed):
        torch.manual_seed(seed)  # what lightning.seed_everything does
        return AnomalibGenerator("perlin")(images)[1]

    assert torch.equal(from_training_seed(11), from_training_seed(11))
    assert not torch.equal(from_training_seed(11), from_training_seed(12))


def test_any_operator_form_and_the_full_result_is_kept():
    images = batch(6)
    recipe = ROOT / "recipes" / "cutpaste_3way.yaml"
    forms = [CutPaste(), "cutpaste_3way", {"op": "scar", "label": 5}, str(recipe), recipe]
    for form in forms:
        generator = AnomalibGenerator(form, seed=0)
        image, mask = generator(images)
        last = generator.last
        assert torch.equal(last.image, image) and torch.equal(last.mask.float(), mask)
        assert last.boxes.shape[1] == 4 and last.box_index.max() < 6
    # the recipe file and the registered preset are the same operator
    assert torch.equal(AnomalibGenerator(str(recipe), seed=0)(images)[0],
                       AnomalibGenerator("cutpaste_3way", seed=0)(images)[0])
    scar = AnomalibGenerator({"op": "scar", "label": 5}, seed=0)
    scar(images)
    assert set(scar.last.label.tolist()) == {5} and set(scar.last.box_label.tolist()) == {5}
    with pytest.raises(ValueError, match="cannot read recipe"):
        AnomalibGenerator("missing_recipe.yaml")


def test_soft_labels_give_the_graded_target_or_fall_back_to_the_mask():
    images = batch()
    hard = AnomalibGenerator("cutpaste", seed=0)(images)
    soft = AnomalibGenerator("cutpaste", seed=0, soft_labels=True)(images)
    assert torch.equal(hard[0], soft[0]) and torch.equal(hard[1], soft[1])

    nsa = AnomalibGenerator("nsa", seed=0, soft_labels=True)
    image, target = nsa(batch(size=64))
    assert target.dtype == torch.float32 and torch.equal(target, nsa.last.target)
    assert torch.equal(image, AnomalibGenerator("nsa", seed=0)(batch(size=64))[0])
    graded = target[nsa.last.mask]
    assert graded.min() >= 0 and graded.max() <= 1 and (target[~nsa.last.mask] == 0).all()
    assert ((graded > 0) & (graded < 1)).any()  # not just the binary mask again


def test_normalised_input_through_the_value_space():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    images = batch()
    normalised = (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    image, mask = AnomalibGenerator("cutpaste", seed=0, mean=mean, std=std)(normalised)
    plain, plain_mask = AnomalibGenerator("cutpaste", seed=0)(images)
    assert torch.equal(mask, plain_mask)
    back = image * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    assert torch.allclose(back, plain, atol=1e-5)


@pytest.mark.cuda
def test_cuda_batch_stays_on_the_device():
    images = batch().cuda()
    image, mask = AnomalibGenerator("perlin", seed=0)(images)
    assert image.is_cuda and mask.is_cuda and mask.dtype == torch.float32
    cpu_image, cpu_mask = AnomalibGenerator("perlin", seed=0)(images.cpu())
    assert torch.equal(mask.cpu(), cpu_mask)


# --- against anomalib itself ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def anomalib():
    return pytest.importorskip("anomalib", reason="the optional extra 'anomalib' is not installed")


@pytest.mark.parametrize("shape", [(4, 3, 32, 32), (3, 32, 32)])
def test_same_call_contract_as_anomalib_generator(anomalib, shape):
    from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator

    images = batch().reshape(-1)[: int(np.prod(shape))].reshape(shape)
    torch.manual_seed(0)
    theirs = PerlinAnomalyGenerator(probability=1.0)(images)
    ours = AnomalibGenerator("perlin", seed=0)(images)
    assert isinstance(ours, tuple) and len(ours) == len(theirs) == 2
    for mine, reference in zip(ours, theirs):
        assert mine.shape == reference.shape
        assert mine.dtype == reference.dtype and mine.device == reference.device


def _ok_folder(tmp_path, count=12, size=32):
    import cv2

    from defectgen.io.images import default_images

    folder = tmp_path / "ok"
    folder.mkdir()
    for i, image in enumerate(default_images(size=size, count=count)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), image.permute(1, 2, 0).numpy()[..., ::-1])
    return folder


def _export(tmp, name, op="cutpaste", seed=0):
    """A defectgen MVTec export with a validation split: held-out OK images in test/good, defects beside."""
    from defectgen import generate

    out = tmp / name
    generate(_ok_folder(tmp) if not (tmp / "ok").is_dir() else tmp / "ok", out, op, count=8, formats=["mvtec"],
             seed=seed, size=32, val_fraction=0.5, progress=False)
    return out


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("export"), "synth")


def test_mvtec_export_loads_in_the_mvtec_and_folder_datamodules(anomalib, export):
    import cv2
    from anomalib.data import Folder, MVTecAD

    mvtec = export / "mvtec"
    defects = sorted((mvtec / "test" / "cutpaste").glob("*.png"))
    goods = sorted((mvtec / "test" / "good").glob("*.png"))
    assert defects and goods

    datamodule = MVTecAD(root=export, category="mvtec", num_workers=0, eval_batch_size=4)
    datamodule.setup()
    test = datamodule.test_data.samples
    assert len(datamodule.train_data) == len(list((mvtec / "train" / "good").glob("*.png")))
    assert len(test) == len(defects) + len(goods)
    assert sorted(test.label_index.tolist()) == [0] * len(goods) + [1] * len(defects)

    folder = Folder(name="synth", root=mvtec, normal_dir="train/good", abnormal_dir="test/cutpaste",
                    normal_test_dir="test/good", mask_dir="ground_truth/cutpaste", num_workers=0,
                    val_split_mode="none")
    folder.setup()
    assert len(folder.test_data) == len(defects) + len(goods)
    # the masks anomalib reads are the ones defectgen wrote, paired with the right image
    item = next(folder.test_data[i] for i in range(len(folder.test_data))
                if folder.test_data.samples.iloc[i].label_index == 1)
    name = Path(item.image_path).stem
    written = cv2.imread(str(mvtec / "ground_truth" / "cutpaste" / f"{name}_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert torch.equal(item.gt_mask.bool().squeeze(), torch.from_numpy(written))
    assert item.gt_label == 1


DATA = ROOT.parent / "shared" / "data" / "mvtec_bottle_256"


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data/mvtec_bottle_256 is not here")
def test_docs_recipe_trains_on_the_export_validates_on_it_and_tests_on_real_defects(anomalib, export):
    """docs/anomalib.md: a Folder datamodule over the real test set, training on the export's OK images,
    validation on its synthetic defects."""
    from anomalib.data import Folder

    from defectgen.compat.anomalib import synthetic_validation

    kinds = ["broken_large", "broken_small", "contamination"]
    datamodule = Folder(name="bottle", root=DATA, normal_dir=(export / "mvtec" / "train" / "good").resolve(),
                        abnormal_dir=[f"test/{k}" for k in kinds], normal_test_dir="test/good",
                        mask_dir=[f"ground_truth/{k}" for k in kinds], num_workers=0)
    synthetic_validation(datamodule, export)
    datamodule.setup()
    assert len(datamodule.train_data) == len(list((export / "mvtec" / "train" / "good").glob("*.png")))
    assert len(datamodule.val_data) == len(list((export / "mvtec" / "test").rglob("*.png")))
    assert len(datamodule.test_data) == 83
    labels = datamodule.test_data.samples.label_index.tolist()
    assert labels.count(0) == 20 and labels.count(1) == 63
    for i in range(0, 83, 9):  # every real defect is paired with its own mask
        item = datamodule.test_data[i]
        if item.gt_label:
            assert Path(item.mask_path).name == Path(item.image_path).stem + "_mask.png"
            assert Path(item.mask_path).parent.name == Path(item.image_path).parent.name
            assert item.gt_mask.sum() > 0


def test_synthetic_validation_refuses_an_export_without_a_split(anomalib, tmp_path):
    from anomalib.data import MVTecAD

    from defectgen import generate
    from defectgen.compat.anomalib import synthetic_validation

    out = tmp_path / "no_split"
    generate(_ok_folder(tmp_path, count=4), out, "cutpaste", count=4, formats=["mvtec"], seed=0, size=32,
             progress=False)
    datamodule = MVTecAD(root=out, category="mvtec", num_workers=0)
    with pytest.raises(ValueError, match="--val-fraction"):
        synthetic_validation(datamodule, out)
    with pytest.raises(ValueError, match="not a defectgen MVTec export"):
        synthetic_validation(datamodule, tmp_path / "nowhere")
    with pytest.raises(TypeError, match="not an anomalib 2.x datamodule"):
        synthetic_validation(object(), out)


def test_draem_trains_with_the_generator_and_picks_thresholds_on_synthetic_validation(anomalib, export, tmp_path,
                                                                                       no_network):
    """A few DRAEM steps with a defectgen generator; validation (threshold selection) runs on the export's
    synthetic defects; nothing touches the network although DRAEM's texture folder holds no DTD."""
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from anomalib.models import Draem
    from anomalib.pre_processing import PreProcessor
    from lightning.pytorch.callbacks import Callback
    from torchvision.transforms import v2

    from defectgen.compat.anomalib import synthetic_validation

    class Seen(Callback):
        def __init__(self):
            self.validated, self.losses = [], []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.losses.append(float(outputs["loss"]))

        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            self.validated += [Path(p).resolve() for p in batch.image_path]

    torch.manual_seed(0)
    textures = tmp_path / "dtd"
    textures.mkdir()  # an existing folder: DRAEM does not download DTD
    model = Draem(dtd_dir=textures, pre_processor=PreProcessor(transform=v2.Resize((32, 32))), visualizer=False)
    model.augmenter = AnomalibGenerator("cutpaste_3way")
    # the datamodule's own test split (and so its default validation split) is another data set
    other = _export(tmp_path, "other", op="scar", seed=1)
    datamodule = MVTecAD(root=other, category="mvtec", train_batch_size=4, eval_batch_size=4, num_workers=0)
    synthetic_validation(datamodule, export)
    seen = Seen()
    engine = Engine(max_steps=2, accelerator="cpu", devices=1, barebones=True, callbacks=[seen],
                    default_root_dir=tmp_path / "run")
    engine.fit(model, datamodule=datamodule)

    assert len(seen.losses) == 2 and all(np.isfinite(seen.losses))
    assert model.augmenter.last is not None and model.augmenter.last.image.shape[-1] == 32
    expected = {p.resolve() for p in (export / "mvtec" / "test").rglob("*.png")}
    assert set(seen.validated) == expected  # validation ran on the synthetic split, all of it
    thresholds = model.post_processor
    assert torch.isfinite(thresholds._image_threshold) and torch.isfinite(thresholds._pixel_threshold)
    assert no_network == []


@pytest.mark.skipif(not DATA.is_dir() or not (DATA.parent / "deeppcb_400" / "templates").is_dir(),
                    reason="../shared/data is not here")
def test_benchmark_smoke_run(anomalib, tmp_path, no_network):
    """benchmarks/bench_anomalib.py end to end at a tiny budget, so the script cannot silently rot."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("bench_anomalib", ROOT / "benchmarks" / "bench_anomalib.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    result = bench.main(["--steps", "2", "--size", "32", "--seeds", "0", "--generators", "anomalib", "draem",
                         "--time-batch", "2", "--repeats", "1", "--json", str(out),
                         "--markdown", str(tmp_path / "bench.md")])
    assert [row["generator"] for row in result["runs"]] == ["anomalib", "draem"]
    for row in result["runs"]:
        assert row["steps"] == 2 and 0 <= row["image_auroc"] <= 1 and 0 <= row["aupro"] <= 1
        assert 0 < row["generator_s"] < row["step_s"]
    assert set(result["generator_seconds"]) == {"anomalib", "draem"}
    raw = json.loads(out.read_text())
    assert raw["benchmark"] == "bench_anomalib" and raw["versions"]["anomalib"] and "merged_from" not in raw
    assert raw["results"]["table"][0]["generator"] == "anomalib"
    tables = bench.render_tables(raw)
    assert "| draem |" in (tmp_path / "bench.md").read_text() and tables["draem"] in (tmp_path / "bench.md").read_text()
    assert "| `draem` (same textures) |" in tables["readme"] and set(tables) == {"draem", "timing", "readme", "runs"}
    # runs split over processes merge into one table; a run in two files counts once
    merged = bench.main(["--merge", str(out), str(out), "--markdown", str(tmp_path / "merged.md"),
                         "--json", str(tmp_path / "merged.json")])
    assert merged["runs"] == result["runs"] and merged["table"] == result["table"]
    assert (tmp_path / "merged.md").read_text() == (tmp_path / "bench.md").read_text()
    assert json.loads((tmp_path / "merged.json").read_text())["merged_from"] == [raw["command"]]
    assert no_network == []
