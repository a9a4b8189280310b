"""Fill from a bank of texture or natural images (DTD for DRAEM, natural images for CutPaste's shapes)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from ..checks import check_int
from ..rng import integers_below
from ..registry import register_part
from ..grey import luma
from ..values import value_scale
from .base import Source

TextureBank = Union[str, Path, torch.Tensor]


def load_texture_bank(textures: TextureBank, size: int = 256, limit: Optional[int] = None) -> torch.Tensor:
    """A ``(N, C, h, w)`` uint8 bank from a folder (read recursively, resized to ``size``) or a tensor.

    Tensors may be uint8 or float in [0, 1], ``(N, C, h, w)`` or one ``(C, h, w)`` image, with 1 or 3 channels.
    """
    if isinstance(textures, (str, Path)):
        from ..io.images import load_folder

        return load_folder(textures, size=size, limit=limit, channels=3)
    if not isinstance(textures, torch.Tensor):
        raise TypeError(f"textures must be a folder path or a (N, C, H, W) tensor, got {type(textures).__name__}")
    bank = textures.unsqueeze(0) if textures.ndim == 3 else textures
    if bank.ndim != 4 or bank.shape[0] < 1 or bank.shape[1] not in (1, 3) or min(bank.shape[2:]) < 1:
        raise ValueError("textures must have shape (N, C, H, W) with N >= 1 and C in (1, 3), "
                         f"got {tuple(textures.shape)}")
    if bank.dtype == torch.uint8:
        return bank.cpu()[:limit].contiguous()
    if not bank.dtype.is_floating_point:
        raise TypeError(f"textures must be uint8 or float in [0, 1], got {bank.dtype}")
    if not torch.isfinite(bank).all():
        raise ValueError("textures contain NaN or infinite values")
    return (bank.detach().float().cpu() * 255).round().clamp(0, 255).to(torch.uint8)[:limit].contiguous()


@register_part("source", "texture")
class TextureSource(Source):
    """Fill the defect from a texture picked at random from a bank, resized to the image, randomly flipped.

    Args:
        textures: a folder of images (read recursively, e.g. the DTD textures DRAEM uses) or a tensor bank
            ``(N, C, H, W)`` (uint8, or float in [0, 1]).
        size: side the folder's images are resized to when read (they are resized again to each batch's
            size when used, once per size and device).
        limit: read at most this many images from the folder.
        flip: flip each texture left-right and up-down with probability 1/2 each. The published recipes
            (DRAEM, MemSeg, GLASS) use the texture as read: their presets pass ``flip=False``.
    """

    def __init__(self, textures: TextureBank, size: int = 256, limit: Optional[int] = None, flip: bool = True):
        if not isinstance(flip, bool):
            raise TypeError(f"flip must be True or False, got {flip!r}")
        self.flip = flip
        self.size = check_int(size, "size", 1)
        self.limit = None if limit is None else check_int(limit, "limit", 1)
        self._bank = load_texture_bank(textures, self.size, self.limit)
        self.textures = str(textures) if isinstance(textures, (str, Path)) else textures
        self._resized: Dict[Tuple, torch.Tensor] = {}

    def __len__(self) -> int:
        return self._bank.shape[0]

    def sample(self, n, channels, height, width, shape, generator):
        count = torch.full((n,), len(self), dtype=torch.long, device=generator.device)
        params = {"texture_index": integers_below(count, generator)}
        if self.flip:
            params["texture_flip"] = torch.rand(n, 2, generator=generator, device=generator.device) < 0.5
        return params

    def bank_for(self, channels: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        """The bank resized to ``height x width`` with ``channels`` channels, uint8 on ``device`` (cached)."""
        key = (channels, height, width, str(device))
        if key not in self._resized:
            bank = self._bank.float()
            if bank.shape[1] != channels:
                bank = bank.expand(-1, 3, -1, -1) if channels == 3 else luma(bank)
            if bank.shape[2:] != (height, width):
                bank = F.interpolate(bank, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
            self._resized = {key: bank.round().clamp(0, 255).to(torch.uint8).to(device)}  # keep one size only
        return self._resized[key]

    def render_region(self, images, params, coverage):
        b, c, h, w = images.shape
        bank = self.bank_for(c, h, w, images.device)
        index = params["texture_index"].clamp(0, len(self) - 1)
        fill = bank[index]
        if not self.flip:
            return fill.float().mul_(value_scale(images.dtype) / 255.0)
        # only the flipped samples are rewritten, as uint8: a quarter of a float batch's memory traffic, and
        # about half the time of a whole-batch torch.where (benchmarks/bench_perlin.py spends it per call)
        for axis, dim in ((0, -1), (1, -2)):
            flipped = params["texture_flip"][:, axis].nonzero().squeeze(1)
            fill[flipped] = fill[flipped].flip(dim)
        return fill.float().mul_(value_scale(images.dtype) / 255.0)
