"""Replace: the defect's pixels are the source's values (CutPaste, Cutout, Scar)."""
from __future__ import annotations

import torch

from ..masks.geometry import PatchWindow
from ..registry import register_part
from .base import Blend, cast_like


@register_part("blend", "replace")
class Replace(Blend):
    """Overwrite the masked pixels with the source's values."""

    def paint(self, canvas: torch.Tensor, values: torch.Tensor, window: PatchWindow) -> None:
        b, c, h, w = canvas.shape
        hb, wb = window.size
        flat = canvas.view(b, c, h * w)
        index = window.flat_index.unsqueeze(1).expand(b, c, hb * wb)
        current = flat.gather(2, index)
        values = cast_like(values, canvas.dtype).expand(b, c, hb, wb).reshape(b, c, hb * wb)
        # windows lie inside the image, so indices within a sample are distinct and the scatter is exact
        flat.scatter_(2, index, torch.where(window.inside.view(b, 1, hb * wb), values, current))
