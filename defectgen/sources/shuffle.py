"""Fill a region with the image itself, its blocks shuffled (MemSeg's "structure" anomaly source).

MemSeg (Yang et al., 2023) divides the normal image into an 8 x 8 grid and rearranges the blocks at random to
get a texture for its Perlin-shaped defects; DRAEM-style operators use it when no texture folder (DTD) is
at hand, since the fill then has the image's own colours and grain but broken structure.
"""
from __future__ import annotations

from typing import Mapping, Optional, Tuple, Union

import torch

from ..checks import check_range
from ..rng import integers_below
from ..registry import register_part
from .base import Source, has_region_fill, resolve_source


@register_part("source", "shuffle")
class SelfShuffle(Source):
    """The image cut into a random ``rows x cols`` grid of blocks, the blocks permuted at random per sample.

    Args:
        grid_range: ``(lo, hi)`` blocks per axis, an integer uniform in ``lo..hi`` drawn independently for
            rows and columns. MemSeg uses a fixed 8 x 8 grid: ``grid_range=(8, 8)``.
        source: shuffle the blocks of this source's whole-image fill instead of the image's: MemSeg first
            augments the image (``DraemAugment(source=None)``), then shuffles it. An instance, a registered
            name or a ``{"type": name, ...}`` config; None shuffles the image itself.

    When the image side is a multiple of the grid, the fill is an exact permutation of the image's pixels.
    Otherwise blocks differ in size by one pixel (the grid lines are at ``ceil(k * H / rows)``), and a
    block moved into a larger slot repeats its last row or column. Grids finer than the image are coarsened
    to one block per pixel.

    Sampled params: ``shuffle_grid`` ``(B, 2)`` int64 (rows, cols) and ``block_key`` ``(B, hi * hi)``:
    random keys whose order among the first ``rows * cols`` entries is the permutation.
    """

    def __init__(self, grid_range: Tuple[int, int] = (2, 8), source: Optional[Union[Source, str, Mapping]] = None):
        lo, hi = check_range(grid_range, "grid_range", 1, 64)
        if lo != int(lo) or hi != int(hi):
            raise ValueError(f"grid_range must hold integers (blocks per axis), got {tuple(grid_range)}")
        self.grid_range = (int(lo), int(hi))
        self.source = resolve_source(source, "source", allow_none=True)
        if self.source is not None and not has_region_fill(self.source):
            raise TypeError(f"source {type(self.source).__name__} has no whole-image fill to shuffle")

    def sample(self, n, channels, height, width, shape, generator):
        lo, hi = self.grid_range
        span = torch.full((n, 2), hi - lo + 1, dtype=torch.long, device=generator.device)
        params = {"shuffle_grid": integers_below(span, generator) + lo,
                  "block_key": torch.rand(n, hi * hi, generator=generator, device=generator.device)}
        if self.source is not None:
            inner = self.source.sample(n, channels, height, width, shape, generator)
            clash = sorted(set(inner) & set(params))
            if clash:
                raise ValueError(f"the shuffled source's params {clash} clash with the shuffle's own")
            params.update(inner)
        return params

    def check_replay(self, params, batch, height, width) -> None:
        if self.source is not None:
            self.source.check_replay(params, batch, height, width)

    def source_index(self, params, height: int, width: int, device: torch.device) -> torch.Tensor:
        """``(B, H, W)`` int64: for each pixel, the flat index ``row * W + col`` of the pixel it copies."""
        grid = params["shuffle_grid"].to(device)
        keys = params["block_key"].to(device)
        b, k = keys.shape
        hi = self.grid_range[1]
        rows = grid[:, 0].clamp(1, min(height, hi)).view(b, 1)
        cols = grid[:, 1].clamp(1, min(width, hi)).view(b, 1)
        count = rows * cols
        # blocks beyond this sample's grid sort last, so the first rows*cols entries permute 0..rows*cols-1
        slots = torch.arange(k, device=device).view(1, k)
        src = torch.argsort(torch.where(slots < count, keys.float(), 2.0), dim=1, stable=True).clamp_max(count - 1)
        src_top, src_height = _blocks(src // cols, rows, height)
        src_left, src_width = _blocks(src % cols, cols, width)

        # the source row of pixel (i, j) depends on i and the block column of j only, its source column on j
        # and the block row of i only: two small (B, H, hi) / (B, hi, W) tables, expanded by one gather each
        i = torch.arange(height, device=device).view(1, height)
        j = torch.arange(width, device=device).view(1, width)
        block_r, block_c = i * rows // height, j * cols // width
        off_r, off_c = i - _blocks(block_r, rows, height)[0], j - _blocks(block_c, cols, width)[0]
        across = torch.arange(hi, device=device)
        cols3, rows3 = cols.view(b, 1, 1), rows.view(b, 1, 1)
        dest = (block_r.unsqueeze(2) * cols3 + across.view(1, 1, hi).clamp_max(cols3 - 1)).view(b, height * hi)
        off = off_r.unsqueeze(2).expand(b, height, hi).reshape(b, height * hi)
        row = src_top.gather(1, dest) + torch.minimum(off, src_height.gather(1, dest) - 1)
        dest = (across.view(1, hi, 1).clamp_max(rows3 - 1) * cols3 + block_c.unsqueeze(1)).view(b, hi * width)
        off = off_c.unsqueeze(1).expand(b, hi, width).reshape(b, hi * width)
        col = src_left.gather(1, dest) + torch.minimum(off, src_width.gather(1, dest) - 1)
        row = torch.gather(row.view(b, height, hi), 2, block_c.view(b, 1, width).expand(b, height, width))
        col = torch.gather(col.view(b, hi, width), 1, block_r.view(b, height, 1).expand(b, height, width))
        return row.mul_(width).add_(col)


    def render_region(self, images, params, coverage):
        b, c, h, w = images.shape
        index = self.source_index(params, h, w, images.device).view(b, 1, h * w)
        base = images if self.source is None else self.source.render_region(images, params, coverage)
        flat = base.reshape(b, c, h * w)
        return torch.gather(flat, 2, index.expand(b, c, h * w)).view(b, c, h, w).float()


def _blocks(block: torch.Tensor, count: torch.Tensor, length: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """First index and size of block ``block`` of ``count`` blocks splitting ``0..length-1`` at
    ``ceil(k * length / count)`` (the blocks whose pixels ``i`` have ``i * count // length == k``)."""
    start = (block * length + count - 1) // count
    end = ((block + 1) * length + count - 1) // count
    return start, end - start
