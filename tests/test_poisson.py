"""Poisson blending and PoissonPaste (NSA): agreement with cv2.seamlessClone, exactness, NSA defaults, errors."""
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from defectgen import PoissonPaste, RegionDefect, create_op
from defectgen.blends import Poisson, blend_poisson, solve_poisson
from defectgen.masks import PatchRegion
from defectgen.sources import OtherImagePatch

from conftest import make_images

BOTTLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_bottle_256" / "train" / "good"
FLAGS = {"normal": cv2.NORMAL_CLONE, "mixed": cv2.MIXED_CLONE}


def smooth_images(batch, size, seed, wavelength_px=96):
    """Synthetic RGB images: sums of four random low-frequency plane waves (no data needed)."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.arange(size).float().view(-1, 1)
    cols = torch.arange(size).float().view(1, -1)
    images = torch.zeros(batch, 3, size, size)
    for _ in range(4):
        freq = torch.rand(batch, 3, 2, 1, 1, generator=g) * (2 * math.pi / wavelength_px)
        phase = torch.rand(batch, 3, 1, 1, generator=g) * 2 * math.pi
        images += torch.sin(freq[:, :, 0] * rows + freq[:, :, 1] * cols + phase)
    return (128 + 25 * images).round().clamp(0, 255).to(torch.uint8)


def bottle_images(count=16):
    if not BOTTLE.is_dir():
        pytest.skip(f"{BOTTLE} is absent")
    from defectgen.io.images import load_folder

    return load_folder(BOTTLE, 256, limit=count)


def paste_and_fill(images, mode, seed):
    """PoissonPaste's output and the exact resized patch (whole-image fill) it blended, from its own parts."""
    op = PoissonPaste(mode=mode)
    out = op(images, seed=seed)
    coverage = op.mask.draw(out.params, *images.shape[2:], images.device)
    return out, op.source.render_region(images, out.params, coverage)


def hwc(x):
    return np.ascontiguousarray(x.permute(1, 2, 0).numpy())


def cv2_clone(image, fill, top, left, height, width, mode):
    """cv2.seamlessClone of the same patch at the same place. Its mask is our rectangle plus a one-pixel ring:
    cv2 keeps the mask's bounding rectangle's outer ring fixed, so the pixels it solves for are our rectangle."""
    mask = np.zeros(image.shape[1:], np.uint8)
    mask[top - 1:top + height + 1, left - 1:left + width + 1] = 255
    x, y, w, h = cv2.boundingRect(mask)
    source = hwc(fill.round().clamp(0, 255).to(torch.uint8))
    out = cv2.seamlessClone(source, hwc(image), mask.copy(), (x + w // 2, y + h // 2), FLAGS[mode])
    return torch.from_numpy(out).permute(2, 0, 1), mask


def check_agreement(images, mode, seed, mean_tol, p99_tol):
    out, fill = paste_and_fill(images, mode, seed)
    errors = []
    for i in range(len(images)):
        top, left, h, w = (int(out.params[k][i]) for k in ("top", "left", "height_px", "width_px"))
        # the mask marks the blended region: exactly the pasted rectangle, and nothing outside it changed
        rect = torch.zeros_like(out.mask[i, 0])
        rect[top:top + h, left:left + w] = True
        assert torch.equal(out.mask[i, 0], rect)
        assert torch.equal(out.image[i][:, ~rect], images[i][:, ~rect])
        assert out.boxes_of(i).tolist() == [[left, top, left + w, top + h]]
        reference, _ = cv2_clone(images[i], fill[i], top, left, h, w, mode)
        errors.append((out.image[i].float() - reference.float()).abs()[:, rect].flatten())
    error = torch.cat(errors)
    mean, p99 = error.mean().item(), error.quantile(0.99).item()
    assert mean < mean_tol and p99 < p99_tol, f"{mode}: mean {mean:.2f}, p99 {p99:.1f} grey levels"


# Tolerances of the agreement with cv2.seamlessClone, in grey levels over the mask's pixels and channels.
# Both solve the same discrete Poisson equation on the same pixels with the same boundary (test_solver_...
# below reproduces cv2 to one grey level when given cv2's guidance field); the differences come from the
# guidance field and the rounding:
#   - cv2 erodes its mask by 3 px before taking the patch's gradients, so in a 2-px band inside the rectangle
#     it follows the destination's gradients; we use the patch's gradients up to the region's edge. The two
#     solutions then anchor the patch's level at different depths, which shifts the interior smoothly by about
#     the textures' change over 2 px: small on smooth images, tens of grey levels on sharp edges (the bottle);
#   - cv2's "mixed" clone keeps the patch's (x, y) gradient pair where |gx - gy| is larger than the
#     destination's, a quirk of its implementation; we keep, per direction, the larger gradient (Pérez et al.);
#   - cv2 truncates to uint8 (we round) and takes the patch as uint8 (our bilinear fill is float).
AGREEMENT = {  # (mean, p99); measured: smooth normal 1.6-1.9 / 6-8, mixed 2.3-6.1 / 13-38;
    "smooth": {"normal": (3.0, 12.0), "mixed": (8.0, 45.0)},  # bottle normal 4.5 / 33, mixed 5.6 / 45
    "bottle": {"normal": (6.0, 40.0), "mixed": (8.0, 55.0)},
}


@pytest.mark.parametrize("mode", ["normal", "mixed"])
@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_cv2_seamless_clone_on_synthetic_images(mode, seed):
    check_agreement(smooth_images(12, 128, seed), mode, seed, *AGREEMENT["smooth"][mode])


@pytest.mark.parametrize("mode", ["normal", "mixed"])
def test_agrees_with_cv2_seamless_clone_on_bottle_images(mode):
    check_agreement(bottle_images(), mode, 0, *AGREEMENT["bottle"][mode])


def cv2_laplacian(dest, source, mask, mode):
    """cv2.seamlessClone's guidance field, rebuilt: forward differences of the (masked) source where the mask
    eroded 3 times by a 3x3 square is set, of the destination elsewhere; its divergence by backward differences."""
    eroded = (cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=3) > 0)[..., None]
    d = dest.astype(np.float32)
    s = np.where(mask[..., None] > 0, source, 0).astype(np.float32)

    def forward(a, axis):
        g = np.zeros_like(a)
        if axis == 1:
            g[:, :-1] = a[:, 1:] - a[:, :-1]
        else:
            g[:-1] = a[1:] - a[:-1]
        return g

    sx, sy, dx, dy = forward(s, 1), forward(s, 0), forward(d, 1), forward(d, 0)
    if mode == "mixed":
        patch = np.abs(sx - sy) > np.abs(dx - dy)
        sx, sy = np.where(patch, sx, dx), np.where(patch, sy, dy)
    gx, gy = np.where(eroded, sx, dx), np.where(eroded, sy, dy)
    lap = np.zeros_like(d)
    lap[:, 1:] += gx[:, 1:] - gx[:, :-1]
    lap[1:] += gy[1:] - gy[:-1]
    return lap


@pytest.mark.parametrize("mode", ["normal", "mixed"])
def test_solver_reproduces_cv2_given_cv2s_guidance(mode):
    """With cv2's own guidance field our batched solve is cv2's result up to its truncation to uint8."""
    images = bottle_images(6) if BOTTLE.is_dir() else smooth_images(6, 128, 0, wavelength_px=24)
    out, fill = paste_and_fill(images, mode, 2)
    dest, laps = images.float(), []
    for i in range(len(images)):
        top, left, h, w = (int(out.params[k][i]) for k in ("top", "left", "height_px", "width_px"))
        reference, mask = cv2_clone(images[i], fill[i], top, left, h, w, mode)
        source = hwc(fill[i].round().clamp(0, 255).to(torch.uint8))
        laps.append(torch.from_numpy(cv2_laplacian(hwc(images[i]), source, mask, mode)).permute(2, 0, 1))
        out_i = solve_poisson(dest[i:i + 1], laps[-1][None], out.mask[i:i + 1])
        ours = out_i[0].floor().clamp(0, 255)
        error = (ours - reference.float()).abs()
        assert error.max() <= 1 and error.mean() < 0.01
    # and batched over samples of different sizes it is the same solve
    batched = solve_poisson(dest, torch.stack(laps), out.mask)
    for i in range(len(images)):
        single = solve_poisson(dest[i:i + 1], laps[i][None], out.mask[i:i + 1])
        assert torch.allclose(batched[i], single[0], atol=1e-3)


def dense_reference(images, fill, region, mode):
    """The discrete Poisson equation (same guidance rule) solved directly in float64 with scipy."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spl

    out = images.double().clone()
    for b in range(images.shape[0]):
        inside = region[b, 0].numpy().copy()
        inside[[0, -1]], inside[:, [0, -1]] = False, False
        ys, xs = np.nonzero(inside)
        index = -np.ones(inside.shape, int)
        index[ys, xs] = np.arange(len(ys))
        for c in range(images.shape[1]):
            image, guide = images[b, c].double().numpy(), fill[b, c].double().numpy()
            rows, cols, vals, rhs = [], [], [], np.zeros(len(ys))
            for k, (y, x) in enumerate(zip(ys, xs)):
                rows.append(k), cols.append(k), vals.append(4.0)
                for qy, qx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                    if inside[qy, qx]:
                        rows.append(k), cols.append(index[qy, qx]), vals.append(-1.0)
                        v, w = guide[y, x] - guide[qy, qx], image[y, x] - image[qy, qx]
                        rhs[k] += v if mode == "normal" or abs(v) > abs(w) else w
                    else:  # a boundary neighbour: its value is known, the guidance is the image's
                        rhs[k] += image[y, x]
            solution = spl.spsolve(sp.csr_matrix((vals, (rows, cols)), shape=(len(ys), len(ys))), rhs)
            out[b, c][ys, xs] = torch.from_numpy(solution)
    return out


def ellipse_and_boxes(batch, height, width):
    rows = torch.arange(height).view(-1, 1).float()
    cols = torch.arange(width).view(1, -1).float()
    region = torch.zeros(batch, 1, height, width, dtype=torch.bool)
    region[0, 0] = ((rows - 14) / 9) ** 2 + ((cols - 20) / 13) ** 2 <= 1  # ellipse: conjugate gradients
    region[1, 0, 4:20, 6:31] = True  # rectangle: one exact box solve
    region[2, 0, 0:9, 25:40] = True  # touches the image border: that ring stays fixed
    region[2, 0, 18:27, 3:9] = True  # two blobs in one sample
    return region


@pytest.mark.parametrize("mode", ["normal", "mixed"])
def test_solution_satisfies_the_discrete_poisson_equation(mode):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 2, 30, 40, generator=g) * 255
    fill = torch.rand(3, 2, 30, 40, generator=g) * 255
    region = ellipse_and_boxes(3, 30, 40)
    out = blend_poisson(images, fill, region, mode)
    reference = dense_reference(images, fill, region, mode)
    # conjugate gradients stop at 0.1 grey levels of estimated error; the exact box solve is float32-exact
    assert (out.double() - reference).abs().max() < 0.1
    assert (out[1].double() - reference[1]).abs().max() < 1e-2
    outside = ~(region & (torch.arange(30).view(-1, 1) > 0) & (torch.arange(30).view(-1, 1) < 29)
                & (torch.arange(40) > 0) & (torch.arange(40) < 39))
    assert torch.equal(out[outside.expand_as(out)], images[outside.expand_as(images)])


@pytest.mark.parametrize("shape", ["rectangle", "ellipse"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_constant_offset_fill_gives_the_image_back(shape, dtype):
    """A fill that is the image plus a constant has the image's gradients: the clone changes nothing (exactly
    for uint8 images, whose differences are exact in float32; to float rounding for float images)."""
    images = make_images(batch=4, channels=3, height=64, width=80, dtype=dtype)
    scale = 255.0 if dtype == torch.uint8 else 1.0
    offset = 40.0 if dtype == torch.uint8 else 0.125
    op = RegionDefect(mask=PatchRegion(shape=shape), source={"type": "constant", "fill": "gray"},
                      blend="poisson")
    params = op(images, seed=0).params
    region = op.mask.draw(params, 64, 80, "cpu") >= 0.5
    for mode in ("normal", "mixed"):
        out = blend_poisson(images.float(), images.float() + offset, region, mode, scale)
        if dtype == torch.uint8:
            assert torch.equal(out, images.float())
        else:
            assert torch.allclose(out, images, atol=1e-5, rtol=0)


def test_poisson_blend_by_name_in_a_region_defect():
    """Any RegionDefect can use the blend by name; the mask marks every changed pixel and only those."""
    images = make_images(batch=6, height=64, width=64, dtype=torch.uint8)
    for blend in ("poisson", {"type": "poisson", "mode": "mixed"}):
        op = RegionDefect(mask={"type": "patch_region", "shape": "ellipse"}, source={"type": "constant"},
                          blend=blend)
        out = op(images, seed=1)
        changed = (out.image != images).any(1, keepdim=True)
        assert not (changed & ~out.mask).any() and out.mask.any()
        assert create_op(op.to_config())(images, seed=1).image.equal(out.image)
        assert isinstance(op.blend, Poisson)


def test_nsa_defaults():
    op = PoissonPaste()
    assert (op.mode, op.scale_range, op.scale_std, op.side_frac_range, op.shape) == (
        "normal", (0.7, 1.3), 0.5, (0.06, 0.8), "rectangle")
    g = torch.Generator().manual_seed(0)
    n = 20000
    params = op.sample_params(n, 3, 256, 256, g)
    scale = params["scale"]
    # clip(N(1, 0.5), 0.7, 1.3): P(N(1, 0.5) < 0.7) = Phi(-0.6) = 0.274 of the draws sit on each end
    assert scale.min() >= 0.7 and scale.max() <= 1.3
    assert abs((scale == 0.7).float().mean().item() - 0.274) < 0.015
    assert abs((scale == 1.3).float().mean().item() - 0.274) < 0.015
    assert abs(scale.mean().item() - 1.0) < 0.01
    # the cut patch is the pasted size over the factor (unless clamped to the image)
    ratio = params["height_px"] / params["src_height_px"]
    big = (params["src_height_px"] >= 40) & (params["src_height_px"] < 256)
    assert (ratio[big] - scale[big]).abs().max() < 0.05
    # sides: 0.06 + Gamma(2, 0.1) of the side, clipped to [0.06, 0.8]: mean about 0.26
    frac = params["height_px"].float() / 256
    assert frac.min() >= 0.06 - 1 / 256 and frac.max() <= 0.8 + 1 / 256
    assert abs(frac.mean().item() - 0.26) < 0.01
    # patches 1 px clear of the border; the partner is another image, uniformly
    assert (params["top"] >= 1).all() and (params["top"] + params["height_px"] <= 255).all()
    partner = params["partner"]
    assert (partner != torch.arange(n)).all()
    small = op.sample_params(5, 3, 64, 64, g)
    counts = torch.zeros(5, 5)
    for _ in range(400):
        counts[torch.arange(5), op.sample_params(5, 3, 64, 64, g)["partner"]] += 1
    assert (counts.diagonal() == 0).all() and counts.sum(0).min() > 0
    off = counts[~torch.eye(5, dtype=torch.bool)]
    assert (off - 100).abs().max() < 40
    assert small["partner"].shape == (5,)
    assert op.sample_params(1, 3, 64, 64, g)["partner"].tolist() == [0]


def test_patch_content_comes_from_the_partner():
    """With scale 1 the pasted patch (before blending) is the partner's pixels; the blend keeps its gradients."""
    images = make_images(batch=5, height=64, width=64, dtype=torch.uint8)
    op = PoissonPaste(scale_range=(1.0, 1.0))
    out = op(images, seed=4)
    fill = op.source.render_region(images, out.params, op.mask.draw(out.params, 64, 64, "cpu"))
    p = out.params
    for i in range(5):
        top, left, h, w = (int(p[k][i]) for k in ("top", "left", "height_px", "width_px"))
        st, sl, j = int(p["src_top"][i]), int(p["src_left"][i]), int(p["partner"][i])
        assert j != i
        assert torch.equal(fill[i, :, top:top + h, left:left + w], images[j, :, st:st + h, sl:sl + w].float())


def test_foreground_placement():
    images = make_images(batch=4, height=64, width=64, dtype=torch.uint8)
    foreground = torch.zeros(4, 1, 64, 64, dtype=torch.bool)
    foreground[:, :, 30:50, 10:40] = True
    op = PoissonPaste(side_frac_range=(0.1, 0.2), foreground="given")
    out = op(images, seed=0, foreground=foreground)
    p = out.params
    centre_y = p["top"] + p["height_px"] / 2
    centre_x = p["left"] + p["width_px"] / 2
    assert ((centre_y > 28) & (centre_y < 52) & (centre_x > 8) & (centre_x < 42)).all()
    assert not (out.mask & ~foreground).any() and out.mask.any(dim=(1, 2, 3)).all()
    replay = op(images, params=out.params)
    assert torch.equal(replay.image, out.image)


def test_speed_path_groups_match_one_window():
    """Samples of very different patch sizes (solved in size groups) give what each gives alone."""
    images = torch.rand(8, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    fill = torch.rand(8, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    region = torch.zeros(8, 1, 96, 96, dtype=torch.bool)
    for i, side in enumerate([4, 90, 10, 60, 30, 94, 2, 45]):
        region[i, 0, 1:1 + side, 1:1 + side] = True
    batched = blend_poisson(images, fill, region)
    for i in range(8):
        assert torch.allclose(batched[i], blend_poisson(images[i:i + 1], fill[i:i + 1], region[i:i + 1])[0],
                              atol=1e-4)


def test_error_messages():
    with pytest.raises(ValueError, match="mode must be one of"):
        PoissonPaste(mode="seamless")
    with pytest.raises(ValueError, match="mode must be one of"):
        Poisson(mode="monochrome")
    with pytest.raises(ValueError, match="shape must be one of"):
        PoissonPaste(shape="heart")
    with pytest.raises(ValueError, match="side_frac_range"):
        PoissonPaste(side_frac_range=(0.0, 0.5))
    with pytest.raises(ValueError, match="side_frac_range"):
        PoissonPaste(side_frac_range=(0.5, 0.2))
    with pytest.raises(ValueError, match="scale_range"):
        OtherImagePatch(scale_range=(-1.0, 1.0))
    with pytest.raises(ValueError, match="scale_std"):
        PoissonPaste(scale_std=-0.1)
    with pytest.raises(ValueError, match="leave no room"):
        PoissonPaste()(torch.zeros(2, 3, 2, 2))
    images = make_images(batch=4)
    out = PoissonPaste()(images, seed=0)
    partner = out.params["partner"]
    single = {k: v[:1] for k, v in out.params.items()}
    single["partner"] = partner[:1].clamp_min(1)
    with pytest.raises(ValueError, match="partner"):
        PoissonPaste()(images[:1], params=single)
    moved = {**out.params, "top": out.params["top"] + 100}
    with pytest.raises(ValueError, match="do not fit"):
        PoissonPaste()(images, params=moved)
    with pytest.raises(ValueError, match="region must be"):
        blend_poisson(images, images, torch.ones(4, 1, 48, 64))
    with pytest.raises(ValueError, match="float"):
        blend_poisson(images.to(torch.uint8), images.to(torch.uint8), torch.ones(4, 1, 48, 64, dtype=torch.bool))
