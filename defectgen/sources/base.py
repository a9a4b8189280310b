"""The "what" part of a defect: what fills the masked pixels."""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch

from .._config import Configurable
from ..patch_pixels import PatchPixels


class Source(Configurable):
    """Produces the defect's pixel values for a batch of patch windows.

    ``sample`` draws the source's own per-sample parameters on the generator's device (``shape`` holds the
    mask sampler's ``height_px``/``width_px``/``angle_deg``). ``render`` returns ``(C, N)`` values, one column per
    pixel of the ragged pixel list, in the images' value scale (0..255 for uint8, 0..1 for float); the blend
    casts them to the images' dtype.
    """

    def sample(self, n: int, channels: int, height: int, width: int, shape: Dict[str, torch.Tensor],
               generator: torch.Generator) -> Dict[str, torch.Tensor]:
        return {}

    def render(self, images: torch.Tensor, params: Dict[str, torch.Tensor], pixels: PatchPixels) -> torch.Tensor:
        raise NotImplementedError

    def render_region(self, images: torch.Tensor, params: Dict[str, torch.Tensor],
                      coverage: torch.Tensor) -> torch.Tensor:
        """Whole-image fill for region operators: ``(B, C, H, W)`` float32 in the images' value scale.

        ``coverage`` is the region mask's ``(B, 1, H, W)`` coverage; values where it is 0 are ignored."""
        raise TypeError(f"source {type(self).__name__} cannot fill a whole-image region; use it with a "
                        "rectangle/scar mask in PatchDefect")

    def check_replay(self, params: Dict[str, torch.Tensor], batch: int, height: int, width: int) -> None:
        """Raise ValueError if replayed params cannot be rendered (e.g. an index outside the batch or bank)."""

    def class_offset(self, params: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        """``(B,)`` int64 index of each sample's defect class among the source's classes, for sources that make
        several kinds of defect (the operator labels a sample ``label + offset``); None for one kind."""
        return None

    def constant_colour(self, images: torch.Tensor, params: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        """``(B, C)`` colours if this source fills each sample with one colour, else None.

        Operators use it to paint unrotated rectangles with one whole-batch ``torch.where`` instead of a
        per-pixel scatter."""
        return None


def has_region_fill(source: Source) -> bool:
    """Whether ``source`` fills whole-image regions (overrides :meth:`Source.render_region`)."""
    return type(source).render_region is not Source.render_region


def resolve_source(source, name: str, allow_none: bool = False) -> Optional[Source]:
    """A source instance as it is, or one built from a registered name or ``{"type": name, ...}`` config."""
    if source is None and allow_none:
        return None
    if isinstance(source, (str, Mapping)):
        from ..registry import create_part

        source = create_part("source", source)
    if not isinstance(source, Source):
        raise TypeError(f"{name} must be a Source, a registered name or a config dict, got {type(source).__name__}")
    return source
