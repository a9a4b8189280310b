"""The ragged pixel list of a batch of patch defects: what a mask sampler rasterises and sources and blends read.

Every patch defect (rectangle, thin scar, ...) is a rotated rectangle; a batch of them is rasterised
(:func:`~defectgen.masks.geometry.rasterize_rotated_rectangles`) as one *ragged pixel list*: every pixel of every
defective sample's bounding box, tagged with its sample index. Sources render their values for these pixels and
blends write them back, so the type sits apart from all three parts folders and each of them imports it from here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch


@dataclass(frozen=True)
class PatchPixels:
    """The bounding-box pixels of a batch of rotated-rectangle defects, as one ragged list.

    The list runs sample by sample, box row by box row. Each box row is a contiguous run in the image, so any
    per-sample translation of the list's image indices is one ``repeat_interleave`` of per-row bases plus an
    ``arange`` (:meth:`shifted_index`), with no per-pixel division. Values travel as ``(C, N)`` so gathers,
    blends and colour maths walk memory in order.

    Attributes:
        batch: number of samples ``B``.
        count: number of listed pixels ``N``.
        start: ``(B + 1,)`` offsets: sample ``b``'s pixels are ``start[b]:start[b + 1]`` of the list.
        sample: ``(N,)`` sample index of each pixel, non-decreasing.
        plane_index: ``(N,)`` index of each pixel in a flattened ``(B, H, W)`` plane.
        inside: ``(N,)`` bool, the defect's own pixels, or None when every listed pixel is inside (unrotated
            rectangles fill their bounding box, so blends can skip the test).
        qy, qx: ``(N,)`` offsets of each pixel centre from the shape centre in the shape's own, unrotated
            frame, for sources that read a rotated patch; None for unrotated rectangles, where reading a patch
            is a translation (:meth:`channel_index` with a shift).
        boxes: ``(B, 4)`` tight xyxy pixel-edge boxes of each sample's defect (meaningless where it has none).
        row_sample, row_offset, row_length: ``(R,)`` per box row: its sample, its first pixel's plane index
            minus that pixel's position in the list, and its length.
    """

    batch: int
    count: int
    image_size: Tuple[int, int]
    start: torch.Tensor
    sample: torch.Tensor
    plane_index: torch.Tensor
    inside: Optional[torch.Tensor]
    qy: Optional[torch.Tensor]
    qx: Optional[torch.Tensor]
    boxes: torch.Tensor
    row_sample: torch.Tensor
    row_offset: torch.Tensor
    row_length: torch.Tensor
    positions: torch.Tensor  # arange(N), shared by every index built from the rows
    _channel_index: Dict[int, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    def per_pixel(self, values: torch.Tensor) -> torch.Tensor:
        """Broadcast per-sample ``(B, ...)`` values to the pixels (``index_select`` is the fast gather here)."""
        return values.index_select(0, self.sample)

    def per_pixel_channels(self, values: torch.Tensor) -> torch.Tensor:
        """Broadcast per-sample ``(B, C)`` values to ``(C, N)``."""
        return values.t().contiguous().index_select(1, self.sample)

    def segment_sum(self, values: torch.Tensor) -> torch.Tensor:
        """``(B,)`` per-sample sums of ``(N,)`` values: differences of one float64 running sum, which is several
        times faster than ``index_add_`` because each sample's pixels are contiguous in the list."""
        running = torch.zeros(len(values) + 1, dtype=torch.float64, device=values.device)
        torch.cumsum(values, 0, dtype=torch.float64, out=running[1:])
        return (running.index_select(0, self.start[1:]) - running.index_select(0, self.start[:-1])).to(values.dtype)

    def shifted_index(self, shift: torch.Tensor) -> torch.Tensor:
        """``plane_index`` plus a per-sample ``(B,)`` int64 shift, built from the rows (two ``(N,)`` ops)."""
        base = self.row_offset + shift.index_select(0, self.row_sample)
        return torch.repeat_interleave(base, self.row_length, output_size=self.count) + self.positions

    def channel_index(self, channels: int, shift: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(C, N)`` index of every pixel's channels in a flattened contiguous ``(B, C, H, W)`` tensor, moved by
        an optional per-sample ``(B,)`` plane shift (a translated source). Cached without a shift: the source
        and the blend index the same pixels, and at ``C x N`` int64 it is not free."""
        if shift is None and channels in self._channel_index:
            return self._channel_index[channels]
        plane = self.image_size[0] * self.image_size[1]
        to_first_channel = torch.arange(self.batch, device=self.sample.device) * ((channels - 1) * plane)
        first = self.shifted_index(to_first_channel if shift is None else to_first_channel + shift)
        index = first.unsqueeze(0) + (torch.arange(channels, device=first.device) * plane).unsqueeze(1)
        if shift is None:
            self._channel_index[channels] = index
        return index


__all__ = ["PatchPixels"]
