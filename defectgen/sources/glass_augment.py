"""GLASS's random texture augmentation, batched: every sample gets three of nine torchvision ops, in random order.

GLASS (Chen et al., "A Unified Anomaly Synthesis Strategy with Gradient Ascent for Industrial Anomaly Detection
and Localization", ECCV 2024; reference code github.com/cqylunlun/GLASS, ``datasets/mvtec.py``,
``MVTecDataset.rand_augmenter``) augments each DTD texture with three distinct torchvision transforms drawn
without replacement from nine and composed in the order drawn. The nine, and how they are done here (values
in [0, 1]; ``U`` is uniform per sample):

==================  ==================================================  ========================================
name                GLASS (torchvision, on the PIL image)                here
==================  ==================================================  ========================================
``contrast``        ``ColorJitter(contrast=(0.8, 1.2))``                PIL: towards the mean grey (rounded to a
                                                                        level), factor ~ U(0.8, 1.2)
``brightness``      ``ColorJitter(brightness=(0.8, 1.2))``              ``x * U(0.8, 1.2)``
``saturation_hue``  ``ColorJitter(saturation=(0.8, 1.2),                saturation: away from the grey,
                    hue=(-0.2, 0.2))``                                  factor ~ U(0.8, 1.2); hue: H += U(-0.2,
                                                                        0.2) of a turn; in a random order, as
                                                                        ColorJitter does; RGB only
``hflip``           ``RandomHorizontalFlip(p=1)``                       left-right flip
``vflip``           ``RandomVerticalFlip(p=1)``                         up-down flip
``grayscale``       ``RandomGrayscale(p=1)``                            ITU-R 601 luma in every channel
``autocontrast``    ``RandomAutocontrast(p=1)``                         PIL's per-channel stretch (no cutoff)
``equalize``        ``RandomEqualize(p=1)``                             PIL's per-channel histogram equalisation
``rotate``          ``RandomAffine(degrees=(-45, 45))``                 rotation about the centre by U(-45, 45)
                                                                        degrees, black outside
==================  ==================================================  ========================================

Differences: values stay float between ops (PIL rounds to uint8 after each); the rotation interpolates
bilinearly (torchvision's default for ``RandomAffine`` is nearest); hue is shifted in kornia's float HSV
(PIL's HSV has 8-bit hue). GLASS resizes the texture's shorter side to the image size, augments it and then
centre-crops it; here the texture is the bank image resized to the batch (see
:class:`~defectgen.sources.TextureSource`).
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Sequence, Union

import torch

from ..grey import grey
from ..rng import uniform
from ..registry import register_part
from ..values import value_scale
from .base import Source, resolve_source
from .draem_augment import _autocontrast, _equalize, _rotate, apply_in_slots, check_op_choice, op_slots, shown_samples

OPS = ("contrast", "brightness", "saturation_hue", "hflip", "vflip", "grayscale", "autocontrast", "equalize",
       "rotate")

#: every param of this source starts with it: the ops read theirs by this prefix
PREFIX = "glass_"


@register_part("source", "glass_augment")
class GlassAugment(Source):
    """Wrap a source (a texture bank, the self-shuffle ...) and augment its fill the way GLASS does.

    Args:
        source: the wrapped source: an instance, a registered name or a ``{"type": name, ...}`` config.
        ops: the augmentations to pick from (default: GLASS's nine, see the module docstring).
        count: how many distinct ops each sample gets, run in the random order they were picked in (GLASS: 3).

    Sampled params (besides the wrapped source's): ``glass_augment_key`` ``(B, len(ops))`` (the ops a sample
    gets are its ``count`` smallest keys, smallest first), ``glass_contrast``, ``glass_brightness``,
    ``glass_saturation``, ``glass_hue``, ``glass_hue_first`` (bool), ``glass_rotate_deg``, all ``(B,)``.
    """

    def __init__(self, source: Union[Source, str, Mapping] = "shuffle", ops: Sequence[str] = OPS, count: int = 3):
        self.source = resolve_source(source, "source")
        self.ops, self.count = check_op_choice(ops, count, OPS)

    def sample(self, n, channels, height, width, shape, generator) -> Dict[str, torch.Tensor]:
        params = dict(self.source.sample(n, channels, height, width, shape, generator))
        params.update({
            "glass_augment_key": torch.rand(n, len(self.ops), generator=generator, device=generator.device),
            "glass_contrast": uniform(n, (0.8, 1.2), generator),
            "glass_brightness": uniform(n, (0.8, 1.2), generator),
            "glass_saturation": uniform(n, (0.8, 1.2), generator),
            "glass_hue": uniform(n, (-0.2, 0.2), generator),
            "glass_hue_first": torch.rand(n, generator=generator, device=generator.device) < 0.5,
            "glass_rotate_deg": uniform(n, (-45.0, 45.0), generator),
        })
        return params

    def slots(self, params: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, count)`` int64: each sample's ops (indices into ``ops``) in the order they run."""
        return op_slots(params["glass_augment_key"], self.count)


    def render_region(self, images, params, coverage):
        fill = self.source.render_region(images, params, coverage)
        if self.count == 0 or fill.shape[0] == 0:
            return fill
        scale = value_scale(images.dtype)

        def apply(name, x_sub, index):
            sub = {key: value.to(x_sub.device)[index] for key, value in params.items() if key.startswith(PREFIX)}
            return _APPLY[name](x_sub, sub)

        active = shown_samples(coverage, fill.shape[0], fill.device)
        return apply_in_slots(fill / scale, self.slots(params), self.ops, apply, active).mul_(scale)

    def check_replay(self, params, batch, height, width) -> None:
        self.source.check_replay(params, batch, height, width)


def _view(values: torch.Tensor) -> torch.Tensor:
    return values.float().view(-1, 1, 1, 1)


def _contrast(x, p):
    # PIL's ImageEnhance.Contrast blends with a flat image at the mean grey level, rounded to a whole level
    mean = (grey(x).mean(dim=(1, 2, 3), keepdim=True) * 255.0).round() / 255.0
    return torch.lerp(mean.expand_as(x), x, _view(p["glass_contrast"]))


def _brightness(x, p):
    return x * _view(p["glass_brightness"])


def _saturation(x, p):
    return torch.lerp(grey(x).expand_as(x), x, _view(p["glass_saturation"])).clamp(0.0, 1.0)


def _hue(x, p):
    from kornia.color import hsv_to_rgb, rgb_to_hsv

    hsv = rgb_to_hsv(x.clamp(0.0, 1.0))
    hue = torch.remainder(hsv[:, :1] + _view(p["glass_hue"]) * (2 * math.pi), 2 * math.pi)
    return hsv_to_rgb(torch.cat([hue, hsv[:, 1:]], dim=1))


def _saturation_hue(x, p):
    if x.shape[1] != 3:
        return x
    hue_first = p["glass_hue_first"].view(-1, 1, 1, 1)
    saturation_then_hue = _hue(_saturation(x, p), p)
    hue_then_saturation = _saturation(_hue(x, p), p)
    return torch.where(hue_first, hue_then_saturation, saturation_then_hue)


def _hflip(x, p):
    return x.flip(-1)


def _vflip(x, p):
    return x.flip(-2)


def _grayscale(x, p):
    return grey(x).expand_as(x).clone()


def _autocontrast_plain(x, p):
    return _autocontrast(x, {"aug_autocontrast_cutoff": torch.zeros(x.shape[0], dtype=torch.long, device=x.device)})


def _rotate_by(x, p):
    return _rotate(x, {"aug_rotate_deg": p["glass_rotate_deg"]})


_APPLY = {"contrast": _contrast, "brightness": _brightness, "saturation_hue": _saturation_hue, "hflip": _hflip,
          "vflip": _vflip, "grayscale": _grayscale, "autocontrast": _autocontrast_plain, "equalize": _equalize,
          "rotate": _rotate_by}
