"""DRAEM's random texture augmentation, batched: every sample gets ``count`` of ten intensity/geometry ops.

DRAEM (Zavrtanik et al., ICCV 2021) passes each anomaly texture through three distinct augmenters picked at
random from ten imgaug ones before blending it in. The ten, with DRAEM's parameters, and how they are done
here (on values scaled to [0, 1]; ``U`` is uniform per sample):

=================  ================================================  ==========================================
name               DRAEM (imgaug)                                    here
=================  ================================================  ==========================================
``gamma``          ``GammaContrast((0.5, 2.0), per_channel=True)``   ``x ** gamma``, gamma ~ U(0.5, 2) per channel
``brightness``     ``MultiplyAndAddToBrightness((0.8, 1.2),          luma ``Y -> Y * U(0.8, 1.2) + U(-30, 30)/255``,
                   (-30, 30))``                                      chroma kept (imgaug's YCrCb variant)
``sharpness``      ``pillike.EnhanceSharpness()`` (factor 0..2)      PIL's 3x3 smoothing kernel, factor ~ U(0, 2)
``hue_saturation`` ``AddToHueAndSaturation((-50, 50),                hue += U(-50, 50)/255 of a turn, saturation
                   per_channel=True)``                               += U(-50, 50)/255 (independent); RGB only
``solarize``       ``Solarize(0.5, threshold=(32, 128))``            with probability 0.5, ``x >= t -> 1 - x``,
                                                                     t ~ U(32, 128)/255
``posterize``      ``Posterize()`` (1..8 bits)                       keep the top k ~ U{1..8} bits of each level
``invert``         ``Invert()``                                      ``1 - x``
``autocontrast``   ``pillike.Autocontrast()`` (cutoff 0..20 %)       PIL's per-channel stretch after cutting
                                                                     U{0..20} % of pixels at each end
``equalize``       ``pillike.Equalize()``                            PIL's per-channel histogram equalisation
``rotate``         ``Affine(rotate=(-45, 45))``                      bilinear rotation about the centre,
                                                                     U(-45, 45) degrees, black outside
=================  ================================================  ==========================================

Differences: by default the chosen ops run in the table's order; DRAEM runs them in the random order it
picked them in, which ``random_order=True`` reproduces (the presets ``draem`` and ``memseg`` set it). Values
stay float between ops (imgaug rounds to uint8 after each); the brightness op always works on luma (imgaug
picks YCrCb or HSV at random). Each op runs on the samples that chose it only, so the cost is that of
``count`` ops over the batch.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from ..checks import check_int
from ..rng import integers_below, uniform
from ..registry import register_part
from ..grey import grey
from ..values import value_scale
from .base import Source, resolve_source

OPS = ("gamma", "brightness", "sharpness", "hue_saturation", "solarize", "posterize", "invert", "autocontrast",
       "equalize", "rotate")


@register_part("source", "draem_augment")
class DraemAugment(Source):
    """Wrap a source (a texture bank, the self-shuffle ...) and augment its fill the way DRAEM does.

    Args:
        source: the wrapped source: an instance, a registered name or a ``{"type": name, ...}`` config; None
            augments the image itself (MemSeg augments the image before shuffling its blocks, see
            :class:`~defectgen.sources.SelfShuffle`).
        ops: the augmentations to pick from (default: DRAEM's ten, see the module docstring).
        count: how many distinct ops each sample gets (DRAEM: 3); at most ``len(ops)``.
        random_order: run each sample's ops in the random order they were picked in, as DRAEM's
            ``iaa.Sequential`` of the picked augmenters does; False runs them in the table's order.
    """

    def __init__(self, source: Optional[Union[Source, str, Mapping]] = "shuffle", ops: Sequence[str] = OPS,
                 count: int = 3, random_order: bool = False):
        self.source = resolve_source(source, "source", allow_none=True)
        if not isinstance(random_order, bool):
            raise TypeError(f"random_order must be True or False, got {random_order!r}")
        self.random_order = random_order
        self.ops, self.count = check_op_choice(ops, count, OPS)

    def sample(self, n, channels, height, width, shape, generator) -> Dict[str, torch.Tensor]:
        params = {} if self.source is None else dict(self.source.sample(n, channels, height, width, shape, generator))
        dev = generator.device

        def rand(*size):
            return torch.rand(n, *size, generator=generator, device=dev)

        params.update({
            "augment_key": rand(len(self.ops)),
            "aug_gamma": 0.5 + 1.5 * rand(3),
            "aug_brightness_mul": uniform(n, (0.8, 1.2), generator),
            "aug_brightness_add": uniform(n, (-30 / 255, 30 / 255), generator),
            "aug_sharpness": uniform(n, (0.0, 2.0), generator),
            "aug_hue": uniform(n, (-50 / 255, 50 / 255), generator),
            "aug_saturation": uniform(n, (-50 / 255, 50 / 255), generator),
            "aug_solarize": rand() < 0.5,
            "aug_solarize_threshold": uniform(n, (32 / 255, 128 / 255), generator),
            "aug_posterize_bits": integers_below(torch.full((n,), 8, dtype=torch.long, device=dev), generator) + 1,
            "aug_autocontrast_cutoff": integers_below(torch.full((n,), 21, dtype=torch.long, device=dev), generator),
            "aug_rotate_deg": uniform(n, (-45.0, 45.0), generator),
        })
        return params


    def chosen(self, params: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, len(ops))`` bool: the ``count`` ops each sample gets (its smallest keys)."""
        rank = params["augment_key"].argsort(dim=1).argsort(dim=1)
        return rank < self.count

    def slots(self, params: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, count)`` int64: each sample's ops (indices into ``ops``) in the order ``random_order`` runs them."""
        return op_slots(params["augment_key"], self.count)

    def render_region(self, images, params, coverage):
        fill = images.float() if self.source is None else self.source.render_region(images, params, coverage)
        if self.count == 0 or fill.shape[0] == 0:
            return fill
        scale = value_scale(images.dtype)
        x = fill / scale

        def apply(name, x_sub, index):
            sub = {key: value.to(x.device)[index] for key, value in params.items() if key.startswith("aug_")}
            return _APPLY[name](x_sub, sub)

        active = shown_samples(coverage, x.shape[0], x.device)
        if self.random_order:
            return apply_in_slots(x, self.slots(params), self.ops, apply, active).mul_(scale)
        chosen = self.chosen(params).to(x.device) & active.view(-1, 1)
        for k, name in enumerate(self.ops):
            index = chosen[:, k].nonzero().squeeze(1)
            if index.numel() == 0:
                continue
            x[index] = apply(name, x[index], index).clamp_(0.0, 1.0)
        return x.mul_(scale)

    def check_replay(self, params, batch, height, width) -> None:
        if self.source is not None:
            self.source.check_replay(params, batch, height, width)


def check_op_choice(ops: Sequence[str], count: int, table: Sequence[str]):
    """``(ops, count)`` checked: distinct names from ``table`` (kept in the table's order) and how many of them
    each sample gets, at most ``len(ops)``."""
    if isinstance(ops, str) or not isinstance(ops, Sequence) or not ops:
        raise TypeError(f"ops must be a non-empty list of names from {tuple(table)}, got {ops!r}")
    unknown = [name for name in ops if name not in table]
    if unknown or len(set(ops)) != len(ops):
        raise ValueError(f"ops must be distinct names from {tuple(table)}, got {list(ops)}")
    ops = tuple(name for name in table if name in ops)
    count = check_int(count, "count", 0)
    if count > len(ops):
        raise ValueError(f"count must be <= len(ops) = {len(ops)}, got {count}")
    return ops, count


def op_slots(keys: torch.Tensor, count: int) -> torch.Tensor:
    """``(B, count)`` int64: per sample, the indices of its ``count`` smallest keys, smallest first.

    The keys are i.i.d. uniform, so this is ``count`` distinct ops drawn without replacement, in a uniformly
    random order: what ``np.random.choice(n_ops, count, replace=False)`` gives the reference codes."""
    return keys.argsort(dim=1)[:, :count]


def shown_samples(coverage: Optional[torch.Tensor], batch: int, device: torch.device) -> torch.Tensor:
    """``(B,)`` bool: the samples whose fill shows somewhere (non-zero coverage); all of them without coverage.

    The augmenting sources skip the others: a sample left normal (``p < 1``) or with an empty mask never shows
    its fill, and DRAEM-style presets leave half of the batch normal, so this halves their work."""
    if coverage is None:
        return torch.ones(batch, dtype=torch.bool, device=device)
    return coverage.reshape(batch, -1).amax(1).to(device) > 0


def apply_in_slots(x: torch.Tensor, slots: torch.Tensor, ops: Sequence[str],
                   apply: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor],
                   active: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Run each sample's ops in its own order: ``slots`` ``(B, count)`` indexes ``ops``; ``apply(name, x[index],
    index)`` returns the op's result on those samples. Values are clipped to [0, 1] after every op. With
    ``active`` (``(B,)`` bool), only those samples are augmented; the others keep ``x`` as it was.

    Slot by slot, the samples are grouped by their op there (one sort and one host sync per slot), so the
    work is that of ``count`` ops over the batch, whatever the orders."""
    slots = slots.to(x.device)
    if active is not None:
        # an inactive sample is moved past every op index, so no group below holds it
        slots = torch.where(active.to(x.device).view(-1, 1), slots, len(ops))
    for slot in range(slots.shape[1]):
        op_at, order = slots[:, slot].sort(stable=True)
        counts = torch.bincount(op_at, minlength=len(ops) + 1).tolist()
        for name, index in zip(ops, order.split(counts)):
            if index.numel():
                x[index] = apply(name, x[index], index).clamp_(0.0, 1.0)
    return x


def _view(values: torch.Tensor) -> torch.Tensor:
    return values.float().view(-1, 1, 1, 1)


def _gamma(x, p):
    return x.clamp(0.0, 1.0).pow(p["aug_gamma"][:, :x.shape[1]].float().view(-1, x.shape[1], 1, 1))


def _brightness(x, p):
    y = grey(x)
    return x + (y * (_view(p["aug_brightness_mul"]) - 1.0) + _view(p["aug_brightness_add"]))


def _sharpness(x, p):
    # PIL's smoothing kernel is ones(3, 3) with 5 in the centre, over 13: a 3x3 box sum plus 4 x the centre
    smooth = (F.avg_pool2d(x, 3, stride=1, padding=1) * 9.0 + 4.0 * x) / 13.0
    # PIL leaves the one-pixel border of the smoothed image as it was
    smooth[..., 0, :], smooth[..., -1, :] = x[..., 0, :], x[..., -1, :]
    smooth[..., :, 0], smooth[..., :, -1] = x[..., :, 0], x[..., :, -1]
    return torch.lerp(smooth, x, _view(p["aug_sharpness"]))


def _hue_saturation(x, p):
    if x.shape[1] != 3:
        return x
    from kornia.color import hsv_to_rgb, rgb_to_hsv

    hsv = rgb_to_hsv(x.clamp(0.0, 1.0))
    hue = torch.remainder(hsv[:, :1] + _view(p["aug_hue"]) * (2 * math.pi), 2 * math.pi)
    saturation = (hsv[:, 1:2] + _view(p["aug_saturation"])).clamp(0.0, 1.0)
    return hsv_to_rgb(torch.cat([hue, saturation, hsv[:, 2:]], dim=1))


def _solarize(x, p):
    flip = p["aug_solarize"].view(-1, 1, 1, 1) & (x >= _view(p["aug_solarize_threshold"]))
    return torch.where(flip, 1.0 - x, x)


def _posterize(x, p):
    step = torch.pow(2.0, 8 - _view(p["aug_posterize_bits"]))
    return torch.floor(_levels(x).float() / step) * step / 255.0


def _invert(x, p):
    return 1.0 - x


def _levels(x: torch.Tensor) -> torch.Tensor:
    return (x * 255.0).round().clamp(0, 255).long()


def _histograms(levels: torch.Tensor) -> torch.Tensor:
    """``(B, C, 256)`` counts of the ``(B, C, H, W)`` integer levels, per image and channel."""
    b, c = levels.shape[:2]
    offsets = torch.arange(b * c, device=levels.device).view(b, c, 1, 1) * 256
    return torch.bincount((levels + offsets).reshape(-1), minlength=b * c * 256).view(b, c, 256)


def _autocontrast(x, p):
    levels = _levels(x)
    hist = _histograms(levels)
    total = hist.sum(-1, keepdim=True)
    cut = total * p["aug_autocontrast_cutoff"].view(-1, 1, 1) // 100
    ramp = torch.arange(256, device=x.device)
    # PIL removes ``cut`` pixels from each end, then stretches the remaining range to 0..255
    lo = torch.where(hist.cumsum(-1) > cut, ramp, 256).amin(-1, keepdim=True)
    hi = torch.where(hist.flip(-1).cumsum(-1).flip(-1) > cut, ramp, -1).amax(-1, keepdim=True)
    stretch = hi > lo
    gain = 255.0 / (hi - lo).clamp_min(1).float()
    lut = torch.where(stretch, ((ramp - lo).float() * gain).floor().clamp(0, 255), ramp.float())
    return _apply_lut(lut, levels)


def _equalize(x, p):
    levels = _levels(x)
    hist = _histograms(levels)
    ramp = torch.arange(256, device=x.device)
    last = torch.where(hist > 0, ramp, -1).amax(-1, keepdim=True)
    # PIL: step = (pixels - pixels at the highest level) // 255; lut[i] = (step // 2 + pixels below i) // step
    step = (hist.sum(-1, keepdim=True) - hist.gather(-1, last.clamp_min(0))) // 255
    below = hist.cumsum(-1) - hist
    lut = ((step // 2 + below) // step.clamp_min(1)).clamp(0, 255)
    lut = torch.where(step > 0, lut, ramp).float()
    return _apply_lut(lut, levels)


def _apply_lut(lut: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    b, c, h, w = levels.shape
    return torch.gather(lut, 2, levels.view(b, c, h * w)).view(b, c, h, w) / 255.0


def _rotate(x, p):
    b, _, h, w = x.shape
    theta = torch.deg2rad(p["aug_rotate_deg"].float())
    cos, sin = theta.cos(), theta.sin()
    zero = torch.zeros_like(cos)
    # a rotation in pixels, written in grid_sample's normalised coordinates of a h x w image
    affine = torch.stack([torch.stack([cos, -sin * h / w, zero], 1), torch.stack([sin * w / h, cos, zero], 1)], 1)
    grid = F.affine_grid(affine.to(x), [b, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


_APPLY = {"gamma": _gamma, "brightness": _brightness, "sharpness": _sharpness, "hue_saturation": _hue_saturation,
          "solarize": _solarize, "posterize": _posterize, "invert": _invert, "autocontrast": _autocontrast,
          "equalize": _equalize, "rotate": _rotate}
