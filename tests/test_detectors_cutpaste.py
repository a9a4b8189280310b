"""CutPasteDetector: density, localisation helpers, pretexts, end-to-end detection, persistence, errors."""
import math

import numpy as np
import pytest
import torch

from defectgen import Cutout, CutPaste
from detectors.cutpaste import CutPasteDetector, CutPasteNet, GaussianDensity, NotAModelFile, Pretext, ledoit_wolf
from detectors.cutpaste.localization import gaussian_upsample, grad_cam, grid_size, patch_grid
from learned import check_limits, gain

SMALL = dict(image_size=32, head_layers=(32,), batch_size=4)


def stripes(n, size, generator, angle=0.0, random_angle=False):
    """Normal images: sinusoidal stripes with a random phase and a little noise (uint8 RGB), at ``angle`` degrees
    or (``random_angle``) at an angle drawn per image."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    phase = torch.rand(n, 1, 1, generator=generator) * 2 * math.pi
    if random_angle:
        a = torch.rand(n, 1, 1, generator=generator) * math.pi
        cos, sin = torch.cos(a), torch.sin(a)
    else:
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    img = 0.5 + 0.25 * torch.sin(2 * math.pi * (xx * cos + yy * sin) / 8 + phase)
    img = img[:, None].expand(n, 3, size, size) + 0.03 * torch.randn(n, 3, size, size, generator=generator)
    return (img.clamp(0, 1) * 255).to(torch.uint8)


def planted(n_good, n_bad, size, generator, side=12):
    """Test images: stripes; the last ``n_bad`` get a square of perpendicular stripes (and its mask)."""
    images = stripes(n_good + n_bad, size, generator)
    masks = torch.zeros(n_good + n_bad, 1, size, size, dtype=torch.bool)
    rotated = stripes(n_bad, size, generator, angle=90)
    for k in range(n_bad):
        i = n_good + k
        y, x = torch.randint(4, size - side - 4, (2,), generator=generator).tolist()
        images[i, :, y:y + side, x:x + side] = rotated[k, :, y:y + side, x:x + side]
        masks[i, :, y:y + side, x:x + side] = True
    return images, masks, torch.tensor([0] * n_good + [1] * n_bad)


def planted_grey(n_good, n_bad, size, generator, side):
    """Test images: stripes at random angles; the last ``n_bad`` get a flat mid-grey square (and its mask)."""
    images = stripes(n_good + n_bad, size, generator, random_angle=True)
    masks = torch.zeros(n_good + n_bad, 1, size, size, dtype=torch.bool)
    for k in range(n_bad):
        y, x = torch.randint(2, size - side - 2, (2,), generator=generator).tolist()
        images[n_good + k, :, y:y + side, x:x + side] = 128
        masks[n_good + k, :, y:y + side, x:x + side] = True
    return images, masks, torch.tensor([0] * n_good + [1] * n_bad)


def auroc(scores, labels):
    """Probability that an anomalous score beats a normal one (ties count half): the AUROC by definition."""
    scores, labels = torch.as_tensor(scores, dtype=torch.float64), torch.as_tensor(labels).bool()
    pos, neg = scores[labels], scores[~labels]
    return float((pos[:, None] > neg[None]).double().mean() + 0.5 * (pos[:, None] == neg[None]).double().mean())


@pytest.fixture(scope="module")
def small_train():
    return stripes(12, 32, torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def fitted(small_train):
    return CutPasteDetector(pretext="3way", seed=0, **SMALL).fit(small_train, steps=2, progress=False)


# -- density ---------------------------------------------------------------------------------------------------------
def _ledoit_wolf_loop(x):
    """Ledoit & Wolf (2004), Lemma 3.2-3.4, written out with a loop over samples (independent of the module)."""
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    xc = x - x.mean(0)
    s = xc.T @ xc / n
    m = np.trace(s) / d
    d2 = np.linalg.norm(s - m * np.eye(d), "fro") ** 2 / d
    b2_bar = sum(np.linalg.norm(np.outer(r, r) - s, "fro") ** 2 / d for r in xc) / n ** 2
    b2 = min(b2_bar, d2)
    shrink = b2 / d2
    return (1 - shrink) * s + shrink * m * np.eye(d), shrink


@pytest.mark.parametrize("n,d", [(5, 8), (40, 6), (200, 3)])
def test_ledoit_wolf_matches_the_formula(n, d):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(n)) * torch.linspace(0.5, 3, d)
    cov, shrink = ledoit_wolf(x)
    ref_cov, ref_shrink = _ledoit_wolf_loop(x.numpy())
    assert shrink == pytest.approx(ref_shrink, rel=1e-9)
    np.testing.assert_allclose(cov.numpy(), ref_cov, rtol=1e-9, atol=1e-12)
    assert 0 <= shrink <= 1
    assert torch.linalg.eigvalsh(cov).min() > 0  # invertible even with fewer samples than dimensions


def test_ledoit_wolf_shrinks_less_with_more_samples():
    g = torch.Generator().manual_seed(0)
    few = ledoit_wolf(torch.randn(10, 20, generator=g) * torch.linspace(1, 4, 20))[1]
    many = ledoit_wolf(torch.randn(5000, 20, generator=g) * torch.linspace(1, 4, 20))[1]
    assert many < few and many < 0.05


def test_ledoit_wolf_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2"):
        ledoit_wolf(torch.randn(1, 4))


def test_gaussian_density_score_is_the_mahalanobis_distance():
    g = torch.Generator().manual_seed(3)
    train, query = torch.randn(50, 4, generator=g), torch.randn(7, 4, generator=g) * 3
    density = GaussianDensity().fit(train)
    cov, _ = ledoit_wolf(train)
    delta = query.double().numpy() - train.double().mean(0).numpy()
    expected = np.sqrt(np.einsum("nd,nd->n", delta, np.linalg.solve(cov.numpy(), delta.T).T))
    np.testing.assert_allclose(density.score(query).double().numpy(), expected, rtol=1e-5)
    assert density.score(train.mean(0, keepdim=True)).item() == pytest.approx(0, abs=1e-3)
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        density.score(torch.randn(3, 5))
    with pytest.raises(RuntimeError, match="not fitted"):
        GaussianDensity().score(query)
    with pytest.raises(ValueError, match="NaN"):
        GaussianDensity().fit(torch.full((3, 2), float("nan")))


# -- localisation helpers --------------------------------------------------------------------------------------------
def test_patch_grid_is_the_row_major_crops():
    images = torch.arange(2 * 1 * 10 * 10, dtype=torch.float32).view(2, 1, 10, 10)
    crops = patch_grid(images, 4, 3)  # grid 3 x 3
    assert crops.shape == (2 * 9, 1, 4, 4)
    k = 0
    for b in range(2):
        for gy in range(3):
            for gx in range(3):
                assert torch.equal(crops[k], images[b, :, 3 * gy:3 * gy + 4, 3 * gx:3 * gx + 4])
                k += 1
    with pytest.raises(ValueError, match="multiple of the stride"):
        grid_size(10, 4, 4)
    with pytest.raises(ValueError, match="larger than the image"):
        grid_size(10, 12, 1)


def test_gaussian_upsample_against_a_direct_weighted_average():
    g = torch.Generator().manual_seed(0)
    patch, stride, grid = 6, 2, 4
    scores = torch.rand(2, 1, grid, grid, generator=g, dtype=torch.float64)
    out = gaussian_upsample(scores, patch, stride)
    size = (grid - 1) * stride + patch
    assert out.shape == (2, 1, size, size)
    sigma, centre = patch / 4, (patch - 1) / 2
    expected = torch.zeros(2, size, size, dtype=torch.float64)
    for b in range(2):
        for y in range(size):
            for x in range(size):
                num = den = 0.0
                for gy in range(grid):
                    for gx in range(grid):
                        dy, dx = y - gy * stride, x - gx * stride
                        if 0 <= dy < patch and 0 <= dx < patch:
                            w = math.exp(-0.5 * (((dy - centre) / sigma) ** 2 + ((dx - centre) / sigma) ** 2))
                            num += w * float(scores[b, 0, gy, gx])
                            den += w
                expected[b, y, x] = num / den
    torch.testing.assert_close(out[:, 0], expected)
    constant = gaussian_upsample(torch.full((1, 1, 3, 3), 2.5), 8, 4)
    torch.testing.assert_close(constant, torch.full_like(constant, 2.5))


def test_grad_cam_of_a_known_score():
    # features = the input itself; score = sum of channel 0, so Grad-CAM weighs channel 0 by 1, the others by 0
    features = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    cam, scores = grad_cam(lambda x: x, lambda f: f[:, 0].sum((1, 2)), features)
    torch.testing.assert_close(cam, features[:, :1].clamp_min(0))
    torch.testing.assert_close(scores, features[:, 0].sum((1, 2)))


# -- pretexts --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,classes", [("cutpaste", 2), ("scar", 2), ("union", 2), ("3way", 3)])
def test_named_pretexts_make_balanced_labelled_batches(name, classes):
    pretext = Pretext(name)
    assert pretext.num_classes == classes
    normals = torch.rand(6, 3, 32, 32)
    images, labels = pretext.make_batch(normals, torch.Generator().manual_seed(0))
    assert images.shape == (6 * classes, 3, 32, 32)
    assert torch.equal(labels, torch.arange(classes).repeat_interleave(6))
    assert torch.equal(images[:6], normals)
    for k in range(1, classes):
        assert not torch.equal(images[6 * k:6 * (k + 1)], normals)  # every defective copy differs


def test_custom_pretexts_and_unchanged_samples_stay_normal():
    pretext = Pretext([Cutout(), "scar"])
    assert pretext.num_classes == 3 and pretext.name == "Cutout+scar"
    half = Pretext(CutPaste(p=0.5))
    images, labels = half.make_batch(torch.rand(64, 3, 32, 32), torch.Generator().manual_seed(0))
    untouched = (images[64:] == images[:64]).flatten(1).all(1)
    assert torch.equal(labels[64:] == 0, untouched) and 0 < int(untouched.sum()) < 64
    assert Pretext({"op": "cutout", "fill": "mean"}).describe()["ops"][0]["fill"] == "mean"
    with pytest.raises((ValueError, TypeError), match="pretext must be"):
        Pretext("no_such_op")
    with pytest.raises(ValueError, match="at least one"):
        Pretext([])


# -- network ---------------------------------------------------------------------------------------------------------
def test_network_loads_a_local_resnet18_state_dict(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(5)
    reference = resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    net = CutPasteNet(3, (16,), weights=tmp_path / "r18.pth")
    torch.testing.assert_close(net.encoder.conv1.weight, reference.conv1.weight)
    assert net(torch.rand(2, 1, 32, 32))[0].shape == (2, 3)  # gray input is repeated to RGB
    with pytest.raises(ValueError, match="does not exist"):
        CutPasteNet(3, weights=tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a torch state_dict"):
        CutPasteNet(3, weights=tmp_path / "junk.pth")
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a torchvision resnet18 backbone"):
        CutPasteNet(3, weights=tmp_path / "other.pth")


# -- learned results ---------------------------------------------------------------------------------------------
# Measured through measure_*(seed, breakage) against *_LIMITS (the convention in tests/learned.py), over seeds and
# breakages by benchmarks/learned_margins.py (its raw results: docs/results/learned_margins.json). The patch-level
# limits were set on seeds 0-9, 1 and 2 threads, torch 2.9.1, 2.14.1 and 2.15.0; the end-to-end test as it is now
# (training must beat the same network untrained) on seeds 0-4, 1 thread, torch 2.14.1 and 2.9.1
# (docs/results/learned_margins_torch2.9.1.json).

class _ShuffledLabels:
    """A broken pretext: the batch is right but the labels are shuffled, so there is nothing to learn."""

    def __init__(self, pretext):
        self.pretext = pretext

    def make_batch(self, normals, generator):
        images, labels = self.pretext.make_batch(normals, generator)
        return images, labels[torch.randperm(len(labels), generator=generator)]


END_TO_END_LIMITS = {  # seeds 0-4, 1 thread, torch 2.14.1 and 2.9.1: benchmarks/learned_margins.py
    "loss_ratio": ("<", 0.6),          # last 5 steps' mean loss / first 5's
    "accuracy": (">", 0.75),           # pretext accuracy, last 10 steps (chance 0.5)
    "image_auroc": (">", 0.8),         # held-out grey squares vs normal test images
    "image_auroc_gain": (">", 0.15),   # minus the same network untrained (its density only)
}
END_TO_END_BREAKAGES = ("untrained", "shuffled_labels", "negated_scores")


def measure_end_to_end(seed=0, breakage=None):
    """Train 100 steps on 48 normal images (48 px stripes at random angles), score 24 normal and 24 test images
    with a flat mid-grey 8x8 square, trained and (the control) with the same network untrained.

    The pretext is Cutout (mid-grey rectangles), which a network learns within a CPU test budget. The planted
    squares are of the pretext's own kind, held out, and small (2.8 % of the image, near the pretext's 2-15 %
    floor): the claim is that training teaches the detector what its pretext shows it, across the normal
    images' variation (the stripes' angle), which random weights plus the Gaussian density do not give. With
    stripes of one angle, random weights already scored these squares 0.9 (and larger or perpendicular-stripe
    squares 1.0), and on other small defects (dark or noise squares, other stripes) 100 steps of Cutout gave no
    reliable gain: whether training helps on real defects is what benchmarks/bench_cutpaste.py measures. Each
    step's accuracy is measured on a fresh draw of defects, before the step's update.
    """
    g = torch.Generator().manual_seed(seed)
    train = stripes(48, 48, g, random_angle=True)
    test, masks, labels = planted_grey(24, 24, 48, g, side=8)
    settings = dict(pretext=Cutout(), image_size=48, head_layers=(128,), batch_size=16, seed=seed)
    control = CutPasteDetector(**settings).fit(train, steps=0, progress=False)
    det = CutPasteDetector(**settings)
    if breakage == "shuffled_labels":
        det.pretext = _ShuffledLabels(det.pretext)
    det.fit(train, steps=0 if breakage == "untrained" else 100, progress=False)
    prediction = det.predict(test)
    scores, maps = prediction.scores, prediction.maps
    if breakage == "negated_scores":
        scores = -scores
    losses = [h["loss"] for h in det.history]
    bad = labels == 1
    measured = {
        "loss_ratio": float(np.mean(losses[-5:]) / np.mean(losses[:5])) if losses else math.nan,
        "accuracy": float(np.mean([h["accuracy"] for h in det.history[-10:]])) if losses else math.nan,
        "image_auroc": auroc(scores, labels),
        "image_auroc_control": auroc(control.score(test), labels),
        # reported by learned_margins.py, not asserted (see the test)
        "gradcam_pixel_auroc": auroc(maps[bad].flatten(), masks[bad].flatten()),
        "gradcam_pixel_auroc_transposed": auroc(maps[bad].transpose(-1, -2).flatten(), masks[bad].flatten()),
        "_detector": det, "_scores": scores, "_maps": maps}
    return gain(measured, "image_auroc")


def test_detects_planted_defects_end_to_end():
    """The acceptance test: train on a tiny normal set, learn the pretext, and score held-out defects better
    than the same network untrained (END_TO_END_LIMITS; about 25 s at 1 thread)."""
    measured = measure_end_to_end(seed=0)
    assert check_limits(measured, END_TO_END_LIMITS) == []
    det, scores, maps = measured["_detector"], measured["_scores"], measured["_maps"]
    assert len(det.history) == 100 and det.steps_trained == 100
    assert scores.shape == (48,) and scores.dtype == torch.float32
    # Grad-CAM of layer4 is a 2x2 grid at 48 px: too coarse for a pixel AUROC with teeth (learned_margins.py shows
    # the maps and the transposed maps overlapping), so maps are checked for form here, localisation at patch level
    assert maps.shape == (48, 1, 48, 48) and torch.isfinite(maps).all() and (maps >= 0).all()


def test_same_seed_same_model(small_train):
    a = CutPasteDetector(pretext="cutpaste", seed=3, **SMALL).fit(small_train, steps=2)
    b = CutPasteDetector(pretext="cutpaste", seed=3, **SMALL).fit(small_train, steps=2)
    c = CutPasteDetector(pretext="cutpaste", seed=4, **SMALL).fit(small_train, steps=2)
    assert a.history == b.history
    assert torch.equal(a.score(small_train), b.score(small_train))
    assert not torch.equal(a.score(small_train), c.score(small_train))


def test_untrained_control_only_fits_the_density(small_train):
    det = CutPasteDetector(**SMALL).fit(small_train, steps=0)
    assert det.history == [] and det.density.fitted
    assert torch.isfinite(det.score(small_train)).all()


def test_grayscale_model(small_train):
    gray = small_train[:, :1].contiguous()
    det = CutPasteDetector(pretext="scar", channels=1, **SMALL).fit(gray, steps=2)
    torch.testing.assert_close(det.score(gray[:3]), det.score(gray[:3].float() / 255))
    assert det.score(small_train[:3]).shape == (3,)  # colour input is seen as luminance


def test_patch_level_scores_and_maps(small_train):
    det = CutPasteDetector(level="patch", patch_size=16, patch_stride=4, fit_patches_per_image=5, seed=0, **SMALL)
    det.fit(small_train, steps=2)
    patches = det.patch_scores(small_train[:3])
    assert patches.shape == (3, 1, 5, 5)
    torch.testing.assert_close(det.score(small_train[:3]), patches.flatten(1).amax(1))
    maps = det.anomaly_map(small_train[:3])
    assert maps.shape == (3, 1, 32, 32)
    assert maps.min() >= patches.min() - 1e-4 and maps.max() <= patches.max() + 1e-4  # a weighted average
    assert det.anomaly_map(small_train[:1], stride=8).shape == (1, 1, 32, 32)
    with pytest.raises(ValueError, match="multiple of the stride"):
        det.anomaly_map(small_train[:1], stride=5)
    with pytest.raises(ValueError, match="multiple of the stride"):
        CutPasteDetector(level="patch", patch_size=16, patch_stride=5, **SMALL)


PATCH_LIMITS = {
    "image_auroc": (">", 0.9),    # the largest patch score: 1.0; negated scores 0.0
    "pixel_auroc": (">", 0.93),   # upsampled patch scores vs the masks: 0.978-0.992; transposed maps 0.70-0.88
}
PATCH_BREAKAGES = ("negated_scores", "transposed_maps")


def measure_patch_level(seed=0, breakage=None):
    """Patch-level detector on 48 px stripes: 24 normal training images, 6 normal and 6 planted test images.

    What it claims is the scoring path (dense patch scores, their maximum, the Gaussian upsampling), which
    holds for this planted task after 3 training steps as it does for an untrained network: the ``*_control``
    values (the same network untrained) are reported beside them, not asserted.
    """
    g = torch.Generator().manual_seed(seed)
    train = stripes(24, 48, g)
    test, masks, labels = planted(6, 6, 48, g, side=10)
    settings = dict(pretext="3way", image_size=48, level="patch", patch_size=16, patch_stride=4, head_layers=(32,),
                    batch_size=8, fit_patches_per_image=16, seed=seed)
    control = CutPasteDetector(**settings).fit(train, steps=0, progress=False).predict(test)
    det = CutPasteDetector(**settings)
    det.fit(train, steps=3, progress=False)
    prediction = det.predict(test)
    scores, maps = prediction.scores, prediction.maps
    if breakage == "negated_scores":
        scores = -scores
    if breakage == "transposed_maps":
        maps = maps.transpose(-1, -2)
    return {"image_auroc": auroc(scores, labels), "pixel_auroc": auroc(maps.flatten(), masks.flatten()),
            "image_auroc_control": auroc(control.scores, labels),
            "pixel_auroc_control": auroc(control.maps.flatten(), masks.flatten())}


def test_patch_level_localises_planted_defects():
    """The patch variant end to end: patch scores, Gaussian upsampling and the max-patch image score."""
    assert check_limits(measure_patch_level(seed=0), PATCH_LIMITS) == []


@pytest.mark.parametrize("level", ["image", "patch"])
def test_predict_is_score_and_anomaly_map_in_one_pass(small_train, level):
    kwargs = dict(patch_size=16, patch_stride=4, fit_patches_per_image=5) if level == "patch" else {}
    det = CutPasteDetector(level=level, seed=0, **SMALL, **kwargs).fit(small_train, steps=1)
    prediction = det.predict(small_train[:3])
    assert prediction.boxes is None
    torch.testing.assert_close(prediction.scores, det.score(small_train[:3]))
    assert torch.equal(prediction.maps, det.anomaly_map(small_train[:3]))


def test_save_and_load_give_identical_scores(fitted, small_train, tmp_path):
    path = fitted.save(tmp_path / "model.pt")
    loaded = CutPasteDetector.load(path)
    assert torch.equal(loaded.score(small_train), fitted.score(small_train))
    assert torch.equal(loaded.anomaly_map(small_train[:2]), fitted.anomaly_map(small_train[:2]))
    assert loaded.history == fitted.history and loaded.config() == fitted.config()
    assert loaded.pretext.name == "3way" and loaded.num_classes == 3
    loaded.fit(small_train, steps=1)  # a loaded model can train on
    assert loaded.steps_trained == fitted.steps_trained + 1


def test_custom_pretext_survives_save(small_train, tmp_path):
    det = CutPasteDetector(pretext=[Cutout(fill="mean")], **SMALL).fit(small_train, steps=1)
    loaded = CutPasteDetector.load(det.save(tmp_path / "m.pt"))
    assert loaded.pretext.ops[0].fill == "mean" and loaded.pretext_record == det.pretext_record


def test_load_errors(fitted, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        CutPasteDetector.load(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(NotAModelFile, match="not a defectgen CutPaste model"):
        CutPasteDetector.load(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(NotAModelFile, match="not a defectgen CutPaste model"):
        CutPasteDetector.load(tmp_path / "other.pt")
    path = fitted.save(tmp_path / "model.pt")
    with pytest.raises(ValueError, match="made for 32 px images, not 64 px"):
        CutPasteDetector.load(path, image_size=64)
    assert CutPasteDetector.load(path, image_size=32).image_size == 32


def test_input_errors(fitted, small_train):
    with pytest.raises(ValueError, match="are 64x64 px but this model was made for 32x32"):
        fitted.score(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, 1 or 3, H, W\)"):
        fitted.score(torch.zeros(1, 4, 32, 32))
    with pytest.raises(TypeError, match="torch.Tensor"):
        fitted.score(np.zeros((1, 3, 32, 32)))
    with pytest.raises(TypeError, match="uint8 or float"):
        fitted.score(torch.zeros(1, 3, 32, 32, dtype=torch.int32))
    with pytest.raises(RuntimeError, match="not fitted"):
        CutPasteDetector(**SMALL).score(small_train[:1])
    with pytest.raises(RuntimeError, match="not fitted"):
        CutPasteDetector(**SMALL).save("never.pt")
    with pytest.raises(ValueError, match="at least 2"):
        CutPasteDetector(**SMALL).fit(small_train[:1], steps=0)
    with pytest.raises(ValueError, match="device must be"):
        CutPasteDetector(**SMALL).fit(small_train, steps=0, device="tpu")
    assert CutPasteDetector(**SMALL).to("auto").device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="level must be"):
        CutPasteDetector(level="pixel")
    with pytest.raises(ValueError, match="patch_scores needs"):
        fitted.patch_scores(small_train[:1])
    with pytest.raises(ValueError, match="not a directory"):
        CutPasteDetector(**SMALL).fit("/no/such/folder", steps=0)


def test_fits_from_an_mvtec_folder(tmp_path):
    from test_io_mvtec import make_mvtec

    root = make_mvtec(tmp_path / "cat")
    det = CutPasteDetector(**SMALL).fit(root, steps=1)
    assert det.density.fitted


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_and_scores_match_cpu(small_train, tmp_path):
    det = CutPasteDetector(pretext="3way", seed=0, **SMALL).fit(small_train, steps=3, device="cuda")
    assert det.device.type == "cuda"
    scores = det.score(small_train.cuda())
    assert scores.device.type == "cuda" and torch.isfinite(scores).all()
    cpu = CutPasteDetector.load(det.save(tmp_path / "m.pt"), device="cpu")
    torch.testing.assert_close(cpu.score(small_train), scores.cpu(), rtol=1e-3, atol=1e-3)


# every learned test of this module: benchmarks/learned_margins.py sweeps these over seeds and breakages
LEARNED = {
    "cutpaste_end_to_end": (measure_end_to_end, END_TO_END_LIMITS, END_TO_END_BREAKAGES),
    "cutpaste_patch_level": (measure_patch_level, PATCH_LIMITS, PATCH_BREAKAGES),
}


def test_interrupted_training_resumes_to_the_same_model(small_train, tmp_path):
    whole = CutPasteDetector(pretext="3way", seed=2, **SMALL).fit(small_train, steps=4)

    class Interrupt(Exception):
        pass

    def stop_after_two(record):
        if record["step"] == 2:
            raise Interrupt

    checkpoint = tmp_path / "ckpt.pt"
    first = CutPasteDetector(pretext="3way", seed=2, **SMALL)
    with pytest.raises(Interrupt):
        first.fit(small_train, steps=4, checkpoint=checkpoint, checkpoint_every=1, callback=stop_after_two)
    assert first.steps_trained == 2 and checkpoint.is_file()
    resumed = CutPasteDetector(pretext="3way", seed=2, **SMALL)
    resumed.fit(small_train, steps=4, checkpoint=checkpoint, resume=True)
    assert resumed.steps_trained == 4 and resumed.history == whole.history
    assert torch.equal(resumed.score(small_train), whole.score(small_train))
    with pytest.raises(ValueError, match="4-step run, not 5"):
        CutPasteDetector(pretext="3way", seed=2, **SMALL).fit(small_train, steps=5, checkpoint=checkpoint, resume=True)
    with pytest.raises(ValueError, match="does not exist"):
        CutPasteDetector(**SMALL).fit(small_train, steps=2, checkpoint=tmp_path / "none.pt", resume=True)


def test_registry_builds_and_loads_the_cutpaste_detector(fitted, small_train, tmp_path):
    from detectors.registry import create_detector, list_detectors, load_detector

    assert "cutpaste" in list_detectors()
    det = create_detector("cutpaste", **fitted.config())
    assert isinstance(det, CutPasteDetector) and det.config() == fitted.config()
    loaded = load_detector(fitted.save(tmp_path / "m.pt"))
    assert isinstance(loaded, CutPasteDetector)
    assert torch.equal(loaded.score(small_train), fitted.score(small_train))
    assert loaded.describe()["pretext"] == "3way" and loaded.kind == "cutpaste"


def test_normalised_float_input_is_refused_with_the_fix(fitted, small_train):
    normalised = (small_train.float() / 255 - 0.45) / 0.225
    with pytest.raises(ValueError, match=r"declared float in \[0, 1\].*undo a normalisation"):
        fitted.score(normalised)
    with pytest.raises(ValueError, match="NaN"):
        fitted.score(torch.full((1, 3, 32, 32), float("nan")))
    with pytest.raises(ValueError, match="undo a normalisation"):
        CutPasteDetector(**SMALL).fit(normalised, steps=0)
