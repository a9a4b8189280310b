"""Fill each sample from one of two sources, chosen at random per sample (MemSeg's texture-or-structure fill)."""
from __future__ import annotations

from typing import Dict, Mapping, Union

import torch

from ..checks import check_probability
from ..rng import bernoulli
from ..registry import register_part
from ..result import BATCH_INDEX_KEYS
from .base import Source, has_region_fill, resolve_source

#: the per-sample choice: True where the sample's fill comes from ``first``
CHOICE_KEY = "either_first"


@register_part("source", "either")
class EitherSource(Source):
    """Each sample's whole-image fill comes from ``first`` with probability ``first_prob``, else from ``second``.

    MemSeg (Yang et al., 2023) fills half of its defects with a DTD texture and half with the image itself,
    augmented and block-shuffled: ``EitherSource(TextureSource(dtd), SelfShuffle((8, 8), DraemAugment(None)))``.

    Both sources draw their params for every sample (so the params keep one layout whatever the choice), but
    each renders only the samples that chose it. The two sources' params must not share a name, and each must
    fill a sample from that sample alone (not, say, a patch of another image of the batch), since it sees the
    chosen samples only.

    Args:
        first, second: sources with a whole-image fill: instances, registered names or ``{"type": ...}`` configs.
        first_prob: probability that a sample's fill comes from ``first``.

    Sampled params: ``either_first`` ``(B,)`` bool, then the two sources' own.
    """

    def __init__(self, first: Union[Source, str, Mapping], second: Union[Source, str, Mapping],
                 first_prob: float = 0.5):
        self.first = resolve_source(first, "first")
        self.second = resolve_source(second, "second")
        for name, source in (("first", self.first), ("second", self.second)):
            if not has_region_fill(source):
                raise TypeError(f"{name} source {type(source).__name__} has no whole-image fill")
        self.first_prob = check_probability(first_prob, "first_prob")
        keys_first, keys_second = self._keys(self.first), self._keys(self.second)
        clash = sorted((keys_first & keys_second) | ({CHOICE_KEY} & (keys_first | keys_second)))
        if clash:
            raise ValueError(f"the two sources' params must have different names, both use {clash}")
        # rendering a subset renumbers the batch: a source that indexes other samples would read the wrong ones
        crossing = sorted((keys_first | keys_second) & set(BATCH_INDEX_KEYS))
        if crossing:
            raise TypeError(f"EitherSource needs sources that fill each sample from itself; params {crossing} index "
                            "other samples of the batch")
        self._own = {"first": keys_first, "second": keys_second}

    @staticmethod
    def _keys(source: Source) -> set:
        empty = torch.zeros(0, dtype=torch.long)
        shape = {"height_px": empty, "width_px": empty, "angle_deg": empty.float()}
        return set(source.sample(0, 3, 8, 8, shape, torch.Generator()))

    def sample(self, n, channels, height, width, shape, generator) -> Dict[str, torch.Tensor]:
        params = {CHOICE_KEY: bernoulli(n, self.first_prob, generator)}
        params.update(self.first.sample(n, channels, height, width, shape, generator))
        params.update(self.second.sample(n, channels, height, width, shape, generator))
        return params


    def render_region(self, images, params, coverage):
        b, c, h, w = images.shape
        choice = params[CHOICE_KEY].to(images.device)
        out = None
        for role, source, picked in (("first", self.first, choice), ("second", self.second, ~choice)):
            index = picked.nonzero().squeeze(1)
            if index.numel() == 0:
                continue
            if index.numel() == b:  # the whole batch chose this source: no gathering
                return source.render_region(images, params, coverage)
            own = {key: value.to(images.device)[index] for key, value in params.items() if key in self._own[role]}
            part = source.render_region(images[index], own, None if coverage is None else coverage[index])
            if out is None:
                out = torch.empty(b, c, h, w, dtype=torch.float32, device=images.device)
            out[index] = part.float()
        return out if out is not None else images.float()

    def check_replay(self, params, batch, height, width) -> None:
        self.first.check_replay(params, batch, height, width)
        self.second.check_replay(params, batch, height, width)
