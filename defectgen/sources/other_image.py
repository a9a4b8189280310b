"""Fill from a resized patch of another image of the batch (NSA's source)."""
from __future__ import annotations

from typing import Dict, Tuple

import torch

from ..checks import check_number, check_range
from ..rng import integers_below
from ..masks.geometry import rasterize_rotated_rectangles
from ..registry import register_part
from .base import Source


@register_part("source", "other_image")
class OtherImagePatch(Source):
    """Fill a region's bounding box with a patch cut from another image of the batch and resized to the box.

    Each sample takes a partner, a different image of the batch drawn uniformly (a batch of one uses its
    only image), and a resize factor ``clip(N(1, scale_std), *scale_range)`` (NSA: ``clip(N(1, 0.5), 0.7,
    1.3)``). The patch is cut from a uniformly drawn position of the partner, fully inside it, with size
    ``box / factor`` (clamped to the image, which changes the factor of that sample), and resampled bilinearly
    (pixel-centre aligned, like ``cv2.resize``) onto the box. The box is the mask's ``height_px``/``width_px``
    at ``top``/``left``; outside it the fill is the image itself.

    Because a sample's defect comes from another sample, a batch's output is not the concatenation of its
    samples' outputs: replaying a slice of the params needs the whole batch.

    Args:
        scale_range: clip range of the resize factor (pasted size / cut size), positive.
        scale_std: standard deviation of the normal the factor is drawn from, around 1.
    """

    def __init__(self, scale_range: Tuple[float, float] = (0.7, 1.3), scale_std: float = 0.5):
        self.scale_range = check_range(scale_range, "scale_range", 0.0, low_open=True)
        self.scale_std = check_number(scale_std, "scale_std", 0.0)

    def sample(self, n, channels, height, width, shape, generator) -> Dict[str, torch.Tensor]:
        device = generator.device
        if n > 1:
            # a uniform draw among the n - 1 other images: skip over self
            others = integers_below(torch.full((n,), n - 1, dtype=torch.long, device=device), generator)
            partner = (torch.arange(n, device=device) + 1 + others) % n
        else:
            partner = torch.zeros(n, dtype=torch.long, device=device)
        lo, hi = self.scale_range
        scale = (1.0 + self.scale_std * torch.randn(n, generator=generator, device=device)).clamp(lo, hi)
        src_h = (shape["height_px"].to(device) / scale).round().long().clamp(1, height)
        src_w = (shape["width_px"].to(device) / scale).round().long().clamp(1, width)
        return {"partner": partner, "scale": scale, "src_height_px": src_h, "src_width_px": src_w,
                "src_top": integers_below(height - src_h + 1, generator),
                "src_left": integers_below(width - src_w + 1, generator)}

    def check_replay(self, params, batch, height, width) -> None:
        self.check_fits(params, batch, height, width)

    def check_fits(self, params: Dict[str, torch.Tensor], batch: int, height: int, width: int) -> None:
        """Raise ValueError when replayed params name images or patches the batch does not have."""
        partner = params["partner"]
        if ((partner < 0) | (partner >= batch)).any():
            raise ValueError(f"params['partner'] names images outside a batch of {batch}: the source is another "
                             "image of the batch, so replay params on the whole batch that made them")
        src_h, src_w, top, left = (params[k] for k in ("src_height_px", "src_width_px", "src_top", "src_left"))
        if ((src_h < 1) | (src_w < 1) | (top < 0) | (left < 0) | (top + src_h > height)
                | (left + src_w > width)).any():
            raise ValueError(f"params describe source patches that do not fit {height}x{width} images")

    def render_region(self, images, params, coverage):
        b, c, h, w = images.shape
        fill = torch.empty((b, c, h, w), dtype=torch.float32, device=images.device)
        fill.copy_(images)
        if b == 0:
            return fill
        painted = coverage.flatten(1).amax(1) > 0
        angle = torch.zeros(b, device=images.device)
        pixels = rasterize_rotated_rectangles(params["height_px"], params["width_px"], angle, params["top"],
                                              params["left"], painted, (h, w), axis_aligned=True)
        if pixels.count == 0:
            return fill
        per_pixel = torch.stack([params[k] for k in ("partner", "top", "left", "height_px", "width_px",
                                                     "src_top", "src_left", "src_height_px", "src_width_px")],
                                dim=1).index_select(0, pixels.sample)
        partner, top, left, box_h, box_w, src_top, src_left, src_h, src_w = per_pixel.unbind(1)
        plane = pixels.plane_index % (h * w)
        # bilinear, pixel centres aligned: box pixel i samples the cut patch at (i + 0.5) * src / box - 0.5
        sy = ((plane // w - top).float() + 0.5) * (src_h / box_h) - 0.5
        sx = ((plane % w - left).float() + 0.5) * (src_w / box_w) - 0.5
        sy = sy.clamp(min=0).minimum(src_h - 1.0)
        sx = sx.clamp(min=0).minimum(src_w - 1.0)
        y0, x0 = sy.floor().long(), sx.floor().long()
        wy, wx = sy - y0, sx - x0
        y1, x1 = torch.minimum(y0 + 1, src_h - 1), torch.minimum(x0 + 1, src_w - 1)
        base = partner * (c * h * w)
        channel = (torch.arange(c, device=images.device) * (h * w)).unsqueeze(1)
        flat = images.reshape(-1)

        def tap(y, x):
            return flat.take(channel + (base + (src_top + y) * w + src_left + x).unsqueeze(0)).float()

        top_row = torch.lerp(tap(y0, x0), tap(y0, x1), wx)
        bottom_row = torch.lerp(tap(y1, x0), tap(y1, x1), wx)
        fill.view(-1)[pixels.channel_index(c)] = torch.lerp(top_row, bottom_row, wy)
        return fill
