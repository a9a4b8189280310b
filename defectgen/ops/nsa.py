"""NSA: several Poisson-blended patches of another image per sample, with intensity-graded soft labels.

Schlüter, Tan, Hou, Kainz: "Natural Synthetic Anomalies for Self-Supervised Anomaly Detection and Localization",
ECCV 2022. Reference code: github.com/hmsch/natural-synthetic-anomalies, ``self_sup_data/self_sup_tasks.py``
(``patch_ex`` / ``_patch_ex``: the sampling, blending and labels) and ``train_mvtec.py`` (the per-category MVTec
AD settings in :data:`MVTEC_SETTINGS`). Everything here is written from the reference's arithmetic, batched.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..checks import check_int, check_number, check_probability, check_range
from ..rng import bernoulli, integers_below
from ..blends.base import cast_like
from ..blends.poisson import Poisson
from ..foreground import sample_foreground_points
from ..components import mask_boxes
from ..masks.patch_region import PatchRegion
from ..registry import register_op
from ..result import Params
from ..sources.other_image import OtherImagePatch
from ..values import value_scale
from .base import FOREGROUND_KEY, Canvas, DefectOp, Painted

# NSA zeroes its paste mask's outer pixel ring and cv2.seamlessClone keeps the ring of the mask's bounding box
# fixed, so the pixels that change are the pasted box less 2 px on every side
RIM_PX = 2
# NSA's binary label: 5 x 5 median of "mean |change| > tol" (cv2.medianBlur, replicated border)
LABEL_MEDIAN_PX = 5
# NSA's intensity: median over skimage's disk(5) (81 pixels) of the masked change, nearest-pixel border
INTENSITY_DISK_RADIUS_PX = 5
# pixels whose disk medians are taken at once (81 float32 values each: about 21 MB)
_MEDIAN_CHUNK = 1 << 16

TEXTURES = ("carpet", "grid", "leather", "tile", "wood")

#: NSA's MVTec AD training settings per category (``train_mvtec.py``: ``NUM_PATCHES``, ``WIDTH_BOUNDS_PCT``,
#: ``INTENSITY_LOGISTIC_PARAMS``; textures resize by ``(0.5, 2)``). ``foreground`` translates the reference's
#: ``BACKGROUND`` brightness test (object = mean grey level far from a bright or dark background) into this
#: library's Otsu modes. The reference trains every category with a normal clone (``Shift-Intensity``) and with
#: a mixed one (``Shift-Intensity-M``); here textures get the mixed clone, objects the normal one.
MVTEC_SETTINGS: Dict[str, Dict[str, Any]] = {
    "bottle": {"max_patches": 3, "half_height_frac_range": (0.03, 0.4), "half_width_frac_range": (0.03, 0.4),
               "intensity_logistic": (1 / 12, 24.0), "foreground": "otsu_dark"},
    "cable": {"max_patches": 3, "half_height_frac_range": (0.05, 0.4), "half_width_frac_range": (0.05, 0.4),
              "intensity_logistic": (1 / 12, 24.0)},
    "capsule": {"max_patches": 3, "half_height_frac_range": (0.03, 0.15), "half_width_frac_range": (0.03, 0.4),
                "intensity_logistic": (1 / 2, 4.0), "foreground": "otsu_dark"},
    "hazelnut": {"max_patches": 3, "half_height_frac_range": (0.03, 0.35), "half_width_frac_range": (0.03, 0.35),
                 "intensity_logistic": (1 / 12, 24.0), "foreground": "otsu_bright"},
    "metal_nut": {"max_patches": 3, "half_height_frac_range": (0.03, 0.4), "half_width_frac_range": (0.03, 0.4),
                  "intensity_logistic": (1 / 3, 7.0), "foreground": "otsu_bright"},
    "pill": {"max_patches": 3, "half_height_frac_range": (0.03, 0.2), "half_width_frac_range": (0.03, 0.4),
             "intensity_logistic": (1 / 3, 7.0), "foreground": "otsu_bright"},
    "screw": {"max_patches": 4, "half_height_frac_range": (0.03, 0.12), "half_width_frac_range": (0.03, 0.12),
              "intensity_logistic": (1.0, 3.0), "foreground": "otsu_dark"},
    "toothbrush": {"max_patches": 3, "half_height_frac_range": (0.03, 0.4), "half_width_frac_range": (0.03, 0.2),
                   "intensity_logistic": (1 / 6, 15.0), "foreground": "otsu_bright"},
    "transistor": {"max_patches": 3, "half_height_frac_range": (0.03, 0.4), "half_width_frac_range": (0.03, 0.4),
                   "intensity_logistic": (1 / 6, 15.0)},
    "zipper": {"max_patches": 4, "half_height_frac_range": (0.03, 0.4), "half_width_frac_range": (0.03, 0.2),
               "intensity_logistic": (1 / 6, 15.0), "foreground": "otsu_dark"},
    "carpet": {"max_patches": 4, "intensity_logistic": (1 / 3, 7.0)},
    "grid": {"max_patches": 4, "intensity_logistic": (1 / 3, 7.0)},
    "leather": {"max_patches": 4, "intensity_logistic": (1 / 3, 7.0)},
    "tile": {"max_patches": 4, "intensity_logistic": (1 / 3, 7.0)},
    "wood": {"max_patches": 4, "intensity_logistic": (1 / 6, 15.0)},
}
for _name in TEXTURES:
    MVTEC_SETTINGS[_name].update(scale_range=(0.5, 2.0), mode="mixed")


@register_op("nsa")
class NSA(DefectOp):
    """NSA's natural synthetic anomalies: 1 to ``max_patches`` patches cut from another image of the batch,
    resized, and Poisson-blended one after another, with per-pixel soft labels graded by intensity change.

    Per sample (reference: ``patch_ex`` / ``_patch_ex`` of NSA's ``self_sup_tasks.py``):

    - Patch count: the first patch always, each of the other ``max_patches - 1`` with probability
      ``extra_patch_prob`` (NSA: a coin flip), so ``1 + Binomial(max_patches - 1, extra_patch_prob)``. NSA's
      MVTec runs use 3 (objects) or 4 (screw, zipper, textures).
    - Source: one partner per sample, a different image of the batch drawn uniformly (NSA: another training
      image); all of the sample's patches are cut from the partner as the batch was when this operator
      started painting.
    - Cut: each half side is ``int(clip((offset + Gamma(shape, scale)) * side, lo, hi))`` pixels, with
      ``half_side_gamma = (shape, scale, offset) = (2, 0.05, 0.03)`` and ``lo, hi`` the image side times
      ``half_{height,width}_frac_range`` (default ``(0.03, 0.4)``), rounded; the cut's centre is uniform in
      ``[lo, side - lo)`` and the cut is ``centre ± half side`` clipped to the image.
    - Resize: a factor ``clip(N(1, scale_std), *scale_range)`` (NSA: ``N(1, 0.5)`` in ``[0.7, 1.3]``, ``[0.5, 2]``
      for textures) times the cut's height, clipped to ``[lo, hi]`` (NSA clips the *full* pasted side to the
      half-side bounds, so pastes are at most 40 % of the side); the width follows at the cut's aspect ratio
      and is clipped likewise, then the height is recomputed from it. Bilinear, as ``cv2.resize``.
    - Paste: the box's centre is uniform with the box 1 px clear of the border (NSA's ``shift``), and the
      patch is Poisson-blended there (:class:`~defectgen.blends.Poisson`, ``mode="normal"`` or ``"mixed"``),
      into the image as the earlier patches left it. As in NSA, where the paste mask's rim is zeroed and
      ``cv2.seamlessClone`` keeps the mask's bounding ring fixed, the pixels that change are the box less
      :data:`RIM_PX` = 2 px on each side; a patch with ``(h - 2) * (w - 2) < min_area_px`` (50: where NSA's
      clone call gives up) is dropped.
    - Soft labels (``soft_labels=True``, NSA's ``label_mode='logistic-intensity'``): see
      :func:`nsa_intensity_target`. They land in ``DefectBatch.target``; ``mask`` stays the union of the
      blended pixels, so outside it the image is the input's, bit for bit.

    The mask is the union of the patches' blended pixels; there is one box per patch (patches may overlap).
    :meth:`mvtec` builds the preset of one MVTec AD category from NSA's ``train_mvtec.py``.

    Not reproduced: NSA's ``skip_background`` (a fixed brightness threshold per category, with rejection
    sampling until a patch holds enough object); use ``foreground=`` instead, which centres every cut on the
    partner's foreground and every paste on the image's, and clips the blended pixels to the image's
    foreground. NSA's ``cv2.seamlessClone`` erodes its mask before taking the patch's gradients and centres
    odd-sized boxes half a pixel differently; the blend here is the plain discrete Poisson equation on the
    box (see :mod:`defectgen.blends.poisson`).

    Because each defect comes from another sample, sample ``i`` of a batch is not what image ``i`` alone gives.

    Args:
        max_patches: NSA's ``num_patches``: the most patches per sample (the first is always attempted).
        extra_patch_prob: probability of each patch after the first.
        half_height_frac_range, half_width_frac_range: NSA's ``width_bounds_pct``: bounds of the half side of the
            cut, as fractions of the image side, which also bound the full side of the resized paste.
        half_side_gamma: ``(shape, scale, offset)`` of the half side as a fraction of the image side,
            ``offset + Gamma(shape, scale)``; ``shape`` a whole number (a sum of exponentials).
        scale_range: clip range of the resize factor (pasted size / cut size).
        scale_std: standard deviation of the normal the resize factor is drawn from, around 1.
        mode: ``"normal"`` (objects) or ``"mixed"`` (textures) Poisson clone.
        soft_labels: give the graded target (``DefectBatch.target``); False gives ``target=None``.
        intensity_logistic: ``(k, x0)`` of the logistic label, per grey level and in grey levels (0..255).
        tol_grey_levels: a pixel counts as changed when its mean absolute change exceeds this many grey levels.
        min_area_px: a patch whose paste mask, less its 1 px rim, has fewer pixels is dropped.
        p: probability that a sample gets defects; the others come back untouched with label 0.
        label: class id of this defect in ``label`` and ``box_label``.
        seed: seeds the operator's own generator, used when a call passes neither ``generator`` nor ``seed``.
        foreground: where defects may land: None (anywhere), ``"otsu"``/``"otsu_dark"``/``"otsu_bright"``
            (estimated per image) or ``"given"`` (a mask passed to each call); see :mod:`defectgen.foreground`.
    """

    def __init__(self, max_patches: int = 3, extra_patch_prob: float = 0.5,
                 half_height_frac_range: Tuple[float, float] = (0.03, 0.4),
                 half_width_frac_range: Tuple[float, float] = (0.03, 0.4),
                 half_side_gamma: Tuple[int, float, float] = (2, 0.05, 0.03),
                 scale_range: Tuple[float, float] = (0.7, 1.3), scale_std: float = 0.5, mode: str = "normal",
                 soft_labels: bool = True, intensity_logistic: Tuple[float, float] = (1 / 6, 20.0),
                 tol_grey_levels: float = 1.0, min_area_px: int = 50, p: float = 1.0, label: int = 1,
                 seed: Optional[int] = None, foreground: Optional[str] = None):
        super().__init__(p=p, label=label, seed=seed, foreground=foreground)
        self.max_patches = check_int(max_patches, "max_patches", 1)
        self.extra_patch_prob = check_probability(extra_patch_prob, "extra_patch_prob")
        self.half_height_frac_range = check_range(half_height_frac_range, "half_height_frac_range", 0.0, 0.5)
        self.half_width_frac_range = check_range(half_width_frac_range, "half_width_frac_range", 0.0, 0.5)
        self.half_side_gamma = _check_gamma(half_side_gamma)
        self.scale_range = check_range(scale_range, "scale_range", 0.0, low_open=True)
        self.scale_std = check_number(scale_std, "scale_std", 0.0)
        self.blend = Poisson(mode)
        self.mode = self.blend.mode
        if not isinstance(soft_labels, bool):
            raise TypeError(f"soft_labels must be True or False, got {soft_labels!r}")
        self.soft_labels = soft_labels
        self.intensity_logistic = _check_logistic(intensity_logistic)
        self.tol_grey_levels = check_number(tol_grey_levels, "tol_grey_levels", 0.0)
        self.min_area_px = check_int(min_area_px, "min_area_px", 0)
        # the parts whose kernels paint each patch: a rectangle's coverage and the resampled partner patch
        self._rectangle = PatchRegion(shape="rectangle", margin_px=0)
        self._source = OtherImagePatch(self.scale_range, self.scale_std)

    @classmethod
    def mvtec(cls, category: str, **overrides: Any) -> "NSA":
        """NSA's settings for one MVTec AD category (:data:`MVTEC_SETTINGS`), with ``overrides`` on top."""
        if category not in MVTEC_SETTINGS:
            raise ValueError(f"category must be one of {sorted(MVTEC_SETTINGS)}, got {category!r}")
        return cls(**{**MVTEC_SETTINGS[category], **overrides})

    # -- sampling ---------------------------------------------------------------------------------------------
    def sample_params(self, batch, channels, height, width, generator) -> Params:
        _check_size(height, width)
        device = generator.device
        k = self.max_patches
        applied = bernoulli(batch, self.p, generator)
        patch_on = torch.rand(batch, k, generator=generator, device=device) < self.extra_patch_prob
        patch_on[:, 0] = True
        if batch > 1:  # a uniform draw among the other images: skip over self
            others = integers_below(torch.full((batch,), batch - 1, dtype=torch.long, device=device), generator)
            partner = (torch.arange(batch, device=device) + 1 + others) % batch
        else:
            partner = torch.zeros(batch, dtype=torch.long, device=device)

        half_h, lo_h, hi_h = self._half_sides(batch, height, self.half_height_frac_range, generator)
        half_w, lo_w, hi_w = self._half_sides(batch, width, self.half_width_frac_range, generator)
        src_top, src_h = _cut(half_h, lo_h, height, generator)
        src_left, src_w = _cut(half_w, lo_w, width, generator)

        lo, hi = self.scale_range
        scale = (1.0 + self.scale_std * torch.randn(batch, k, generator=generator, device=device,
                                                    dtype=torch.float64)).clamp(lo, hi)
        # NSA's resize arithmetic, in its order and in float64: height from the factor, width at the cut's
        # aspect ratio, height again from the (clipped) width; int() truncates
        cut_h, cut_w = src_h.double(), src_w.double()
        new_h = (scale * cut_h).clamp(lo_h, hi_h)
        new_w = (new_h / cut_h * cut_w).floor().clamp(lo_w, hi_w)
        new_h = (new_w / cut_w * cut_h).floor().clamp(lo_h, hi_h)
        box_h = new_h.long().clamp(1, max(height - 3, 1))
        box_w = new_w.long().clamp(1, max(width - 3, 1))
        # NSA's shift: centre uniform in [h // 2 + 1, side - h // 2 - 1), box = centre - h // 2 ...
        top = 1 + integers_below((height - 2 * (box_h // 2) - 2).clamp_min(1), generator)
        left = 1 + integers_below((width - 2 * (box_w // 2) - 2).clamp_min(1), generator)
        return {"applied": applied, "patch_on": patch_on, "partner": partner, "scale": scale,
                "src_top": src_top, "src_left": src_left, "src_height_px": src_h, "src_width_px": src_w,
                "top": torch.minimum(top, height - box_h), "left": torch.minimum(left, width - box_w),
                "height_px": box_h, "width_px": box_w}

    def _half_sides(self, batch: int, extent: int, frac_range: Tuple[float, float], generator: torch.Generator
                    ) -> Tuple[torch.Tensor, int, int]:
        """``(B, K)`` half sides in pixels and NSA's pixel bounds ``lo, hi`` (rounded half to even, as numpy)."""
        shape, scale, offset = self.half_side_gamma
        lo, hi = round(frac_range[0] * extent), round(frac_range[1] * extent)
        u = torch.rand(batch, self.max_patches, shape, generator=generator, device=generator.device,
                       dtype=torch.float64)
        gamma = -torch.log1p(-u).sum(2) * scale  # a sum of `shape` exponentials is Gamma(shape, 1)
        return ((offset + gamma) * extent).clamp(lo, hi).floor().long(), lo, hi

    def place(self, params: Params, foreground: torch.Tensor, generator: torch.Generator) -> Params:
        height, width = foreground.shape[2:]
        k = self.max_patches
        h, w = params["height_px"], params["width_px"]
        centre = sample_foreground_points(foreground, k, generator)
        top = _centred(centre[..., 0], h, 1, height - 1)
        left = _centred(centre[..., 1], w, 1, width - 1)
        src_h, src_w = params["src_height_px"], params["src_width_px"]
        src_centre = sample_foreground_points(foreground[params["partner"]], k, generator)
        src_top = _centred(src_centre[..., 0], src_h, 0, height)
        src_left = _centred(src_centre[..., 1], src_w, 0, width)
        return {**params, "top": top, "left": left, "src_top": src_top, "src_left": src_left,
                FOREGROUND_KEY: foreground}

    def check_replay(self, params: Params, height: int, width: int) -> None:
        _check_size(height, width)
        batch = params["applied"].shape[0]
        for k in range(self.max_patches):
            patch = self._patch(params, k)
            self._rectangle.check_fits(patch, height, width)
            self._source.check_fits(patch, batch, height, width)

    def gate(self, params: Params, keep: torch.Tensor) -> Params:
        return {**params, "applied": params["applied"] & keep}

    # -- painting ---------------------------------------------------------------------------------------------
    @staticmethod
    def _patch(params: Params, k: int) -> Dict[str, torch.Tensor]:
        """Patch ``k``'s box and cut as the ``(B,)`` params the rectangle and partner-patch kernels read."""
        patch = {key: params[key][:, k] for key in ("top", "left", "height_px", "width_px", "src_top", "src_left",
                                                   "src_height_px", "src_width_px")}
        patch["partner"] = params["partner"]
        return patch

    def paint(self, canvas: Canvas, mask: torch.Tensor, params: Params) -> Painted:
        images = canvas.image
        batch, _, height, width = images.shape
        device = images.device
        max_value = value_scale(images.dtype)
        h, w = params["height_px"], params["width_px"]
        # NSA skips a patch whose paste mask (less its zeroed rim) is too small for cv2's clone
        big_enough = ((h - 2) * (w - 2) >= self.min_area_px) & (h > 2 * RIM_PX) & (w > 2 * RIM_PX)
        drawn = params["applied"].view(-1, 1) & params["patch_on"] & big_enough
        foreground = params.get(FOREGROUND_KEY)

        work = images.float()
        union = torch.zeros(batch, 1, height, width, dtype=torch.bool, device=device)
        boxes, valid = [], []
        for k in range(self.max_patches):  # patches blend into what the earlier ones left, as in NSA
            patch = self._patch(params, k)
            inner = {"top": patch["top"] + RIM_PX, "left": patch["left"] + RIM_PX,
                     "height_px": (patch["height_px"] - 2 * RIM_PX).clamp_min(1),
                     "width_px": (patch["width_px"] - 2 * RIM_PX).clamp_min(1)}
            allowed = drawn[:, k].view(-1, 1, 1, 1)
            if foreground is not None:
                allowed = allowed & foreground
            coverage = torch.where(allowed, self._rectangle.draw(inner, height, width, device), 0.0)
            # the cut comes from the partner as it was before this operator painted
            fill = self._source.render_region(images, patch, coverage)
            work, region = self.blend.blend_region(work, fill, coverage, patch, max_value)
            if images.dtype == torch.uint8:  # NSA blends each patch into a uint8 image
                work = work.round_()
            region = region & allowed
            union |= region
            patch_box, non_empty = mask_boxes(region)
            boxes.append(patch_box)
            valid.append(non_empty)

        painted = torch.where(union, cast_like(work, images.dtype), images)
        canvas.replace(painted)
        torch.logical_or(mask, union, out=mask)
        defective = union.flatten(1).any(1)
        labels = torch.full((batch,), self.label, dtype=torch.long, device=device)
        target = None
        if self.soft_labels:
            target = nsa_intensity_target(images, painted, union, self.intensity_logistic, self.tol_grey_levels)
        return Painted(boxes=torch.stack(boxes, 1).reshape(-1, 4),
                       box_index=torch.arange(batch, device=device).repeat_interleave(self.max_patches),
                       box_label=labels.repeat_interleave(self.max_patches), valid=torch.stack(valid, 1).reshape(-1),
                       label=torch.where(defective, labels, 0), target=target)


def nsa_intensity_target(before: torch.Tensor, after: torch.Tensor, region: torch.Tensor,
                         intensity_logistic: Tuple[float, float] = (1 / 6, 20.0), tol_grey_levels: float = 1.0
                         ) -> torch.Tensor:
    """NSA's ``'logistic-intensity'`` soft label of a batch: ``(B, 1, H, W)`` float32 in ``[0, 1]``.

    With ``d`` the per-pixel mean over channels of ``|after - before|`` in grey levels (0..255; float images are
    taken to be in ``[0, 1]``) inside ``region``:

    1. ``changed = median5x5(d > tol_grey_levels)``: the changed pixels, de-speckled by a 5 x 5 binary
       median (``cv2.medianBlur``, replicated border);
    2. ``m = median over a disk of radius 5 (81 pixels) of changed * d`` (``skimage.filters.median`` with
       ``disk(5)``, nearest-pixel border): the local intensity change;
    3. ``target = changed / (1 + exp(-k (m - x0)))``, ``(k, x0) = intensity_logistic``,

    and 0 outside ``region`` (step 1 can switch on an unchanged pixel in a concave corner of overlapping
    patches; NSA would label it, the contract's target is 0 wherever the image is the input's). Reference:
    ``patch_ex`` in NSA's ``self_sup_tasks.py``.
    """
    k, x0 = _check_logistic(intensity_logistic)
    scale = 255.0 / value_scale(before.dtype)
    change = (after.float() - before.float()).abs_().mean(1, keepdim=True).mul_(scale)
    change = torch.where(region, change, 0.0)
    votes = F.avg_pool2d(_pad_nearest(change.gt(tol_grey_levels).float(), LABEL_MEDIAN_PX // 2),
                         LABEL_MEDIAN_PX, stride=1) * (LABEL_MEDIAN_PX ** 2)
    changed = votes > (LABEL_MEDIAN_PX ** 2) / 2  # the majority of 25 zeros and ones
    graded = changed & region
    target = torch.zeros_like(change)
    pixels = graded.view(-1).nonzero().squeeze(1)  # one host sync: the number of labelled pixels
    if pixels.numel() == 0:
        return target
    batch, _, height, width = change.shape
    r = INTENSITY_DISK_RADIUS_PX
    values = _pad_nearest(torch.where(changed, change, 0.0), r).view(-1)
    padded_w = width + 2 * r
    offsets = torch.tensor([dy * padded_w + dx for dy in range(2 * r + 1) for dx in range(2 * r + 1)
                            if (dy - r) ** 2 + (dx - r) ** 2 <= r * r], device=change.device)
    sample, pos = pixels // (height * width), pixels % (height * width)
    # flat index of each pixel's window corner in the padded batch
    corner = (sample * (height + 2 * r) + pos // width) * padded_w + pos % width
    medians = torch.cat([values[c.unsqueeze(1) + offsets].median(1).values for c in corner.split(_MEDIAN_CHUNK)])
    target.view(-1)[pixels] = torch.sigmoid(k * (medians - x0))
    return target


def _pad_nearest(x: torch.Tensor, pad: int) -> torch.Tensor:
    return F.pad(x, (pad, pad, pad, pad), mode="replicate") if x.shape[0] else x.new_zeros(
        x.shape[:2] + (x.shape[2] + 2 * pad, x.shape[3] + 2 * pad))


def _cut(half: torch.Tensor, lo: int, extent: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """NSA's cut along one axis: centre uniform in ``[lo, extent - lo)``, ``centre ± half`` clipped to the image.
    Returns ``(start, size)``, the size at least 1."""
    centre = lo + integers_below(torch.full_like(half, max(extent - 2 * lo, 1)), generator)
    start = (centre - half).clamp(0, extent)
    end = (centre + half).clamp(0, extent)
    size = (end - start).clamp_min(1)
    return torch.minimum(start, extent - size), size


def _centred(centre: torch.Tensor, size: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """Start of a ``size`` box centred on ``centre``, moved inside ``[low, high)`` where it would leave it."""
    start = (centre - size / 2).round().long()
    return torch.minimum(start.clamp_min(low), high - size).clamp_min(0)


def _check_size(height: int, width: int) -> None:
    if min(height, width) < 2 * RIM_PX + 3:
        raise ValueError(f"NSA needs images of at least {2 * RIM_PX + 3}x{2 * RIM_PX + 3} px (a pasted box keeps "
                         f"1 px from the border and changes only its inside less {RIM_PX} px), got {height}x{width}")


def _check_gamma(value: Sequence) -> Tuple[int, float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 3:
        raise TypeError(f"half_side_gamma must be (shape, scale, offset), got {value!r}")
    shape = check_int(value[0], "half_side_gamma[0] (shape)", 1)
    if shape > 64:
        raise ValueError(f"half_side_gamma[0] (shape) must be <= 64, got {shape}")
    return shape, check_number(value[1], "half_side_gamma[1] (scale)", 0.0), check_number(
        value[2], "half_side_gamma[2] (offset)", 0.0)


def _check_logistic(value: Sequence) -> Tuple[float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"intensity_logistic must be (k, x0), got {value!r}")
    return check_number(value[0], "intensity_logistic[0] (k)", 0.0, low_open=True), check_number(
        value[1], "intensity_logistic[1] (x0)")
