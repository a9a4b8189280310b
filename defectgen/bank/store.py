"""The store of a bank of real defects cut from a few NG images, ready to be warped and pasted onto OK images.

Each entry is one image's defect: the pixels around the mask's bounding box (plus ``margin_px`` of context,
so soft blend edges and interpolation see real surroundings), the mask, a ring just outside the mask and the
mean colour of the source image on that ring (the defect's local background, used to match brightness at the
destination). Entries are stored on one shared ``S x S`` canvas (each crop centred, padded by repeating its
edge pixels); for warping they are packed once per channel count and device into an atlas image, so a whole
batch is warped by one ``grid_sample`` call with no per-sample gather.

A mask with several connected components (a crack and its splinters) is one entry: the parts belong to one
physical defect and keep their relative positions.

Here: the store, its one cutting path from image + mask pairs (:meth:`DefectBank.from_pairs`) and the atlas; the
constructors that read data set layouts (MVTec, aligned pairs, labelled sets) are in :mod:`.constructors`, whose
class methods :class:`DefectBank` inherits.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..foreground import estimate_foreground
from ..grey import LUMA, luma
from .constructors import DefectBankReaders
from .cutting import check_cut_settings, cut_defect
from .pixels import ImageLike, as_list, read_mask, read_pixels


class BankTensors(NamedTuple):
    """A bank's tensors converted for one channel count and device (see :meth:`DefectBank.tensors`).

    The crops are packed into one atlas image, each tile surrounded by a gutter of ``ATLAS_GUTTER_PX``
    pixels (pixels: the tile's edge repeated; ring and mask: zeros), so a whole batch is warped by a single
    ``grid_sample`` over the atlas without gathering a padded canvas per sample.
    """

    pixels_ring: torch.Tensor   # (1, C + 1, Ha, Wa) float32: the crops (0..255), then the rings (0/1)
    masks: torch.Tensor         # (1, 1, Ha, Wa) float32 0/1
    tile_boxes: torch.Tensor    # (N, 4) float32 (top, left, bottom, right) of each crop in the atlas, pixel edges
    anchors: torch.Tensor       # (N, 2) float32 (row, col) of each defect's centre in the atlas, pixel edges
    background: torch.Tensor    # (N, C) float32, 0..255
    source_sizes: torch.Tensor  # (N, 2) float32 (height, width) of the image each defect was cut from
    types: torch.Tensor         # (N,) int64 class ids 1..K


#: pixels between atlas tiles: bilinear taps one pixel past a tile must read the gutter, never the next tile
ATLAS_GUTTER_PX = 2


class DefectBank(DefectBankReaders):
    """Real defects stored as padded tensors: build it with :meth:`from_mvtec` or :meth:`from_pairs`.

    Attributes:
        images: ``(N, C, S, S)`` uint8 crops (C is 3 if any source image is colour, else 1).
        masks: ``(N, 1, S, S)`` uint8 0/1 defect masks on the same canvas.
        rings: ``(N, 1, S, S)`` uint8 0/1, the ``ring_px`` wide band just outside each mask.
        anchors: ``(N, 2)`` float32 ``(row, col)`` centre of each mask's bounding box on the canvas (pixel
            edges: a box over rows 3..5 has centre 4.5); the pasted defect is centred at its destination here.
        sizes: ``(N, 2)`` int64 ``(height, width)`` of each crop (mask bounding box plus margin, clipped to
            the source image); the rest of the canvas is padding.
        types: ``(N,)`` int64 class ids: ``class_names[k]`` has id ``k + 1``. Entries are sorted by type.
        background: ``(N, C)`` float32 mean colour (0..255) of the source image on the ring.
        source_sizes: ``(N, 2)`` int64 ``(height, width)`` of each source image.
        class_names: sorted defect type names.
        names: where each entry came from (file path or ``"pair <i>"``).
    """

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, rings: torch.Tensor, anchors: torch.Tensor,
                 sizes: torch.Tensor, types: torch.Tensor, background: torch.Tensor, source_sizes: torch.Tensor,
                 class_names: Sequence[str], names: Optional[Sequence[str]] = None):
        n = images.shape[0]
        if n == 0:
            raise ValueError("a DefectBank needs at least one defect")
        if images.ndim != 4 or images.dtype != torch.uint8 or images.shape[1] not in (1, 3) or \
                images.shape[2] != images.shape[3]:
            raise ValueError(f"images must be (N, C, S, S) uint8 with C in (1, 3), got {tuple(images.shape)} "
                             f"{images.dtype}")
        for name, t in (("masks", masks), ("rings", rings)):
            if t.shape != (n, 1) + tuple(images.shape[2:]):
                raise ValueError(f"{name} must have shape {(n, 1) + tuple(images.shape[2:])}, got {tuple(t.shape)}")
        self.images = images.contiguous()
        self.masks = (masks != 0).to(torch.uint8)
        self.rings = (rings != 0).to(torch.uint8)
        self.anchors = anchors.float().reshape(n, 2)
        self.sizes = sizes.long().reshape(n, 2)
        self.types = types.long().reshape(n)
        self.background = background.float().reshape(n, images.shape[1])
        self.source_sizes = source_sizes.long().reshape(n, 2)
        self.class_names = list(class_names)
        self.names = list(names) if names is not None else [f"entry {i}" for i in range(n)]
        if self.types.min() < 1 or self.types.max() > len(self.class_names):
            raise ValueError(f"types must be class ids 1..{len(self.class_names)}")
        if bool((self.types[1:] < self.types[:-1]).any()):
            raise ValueError("entries must be sorted by type")
        self._cache: Dict[Tuple[int, str], BankTensors] = {}

    # -- building -------------------------------------------------------------------------------------------
    @classmethod
    def from_pairs(cls, images: Union[Sequence[ImageLike], torch.Tensor],
                   masks: Union[Sequence[ImageLike], torch.Tensor], types: Union[str, Sequence[str]],
                   margin_px: int = 8, ring_px: int = 4,
                   class_names: Optional[Sequence[str]] = None, foreground: Optional[str] = None) -> "DefectBank":
        """Build a bank from image + mask pairs.

        Args:
            images: image files, ``(C, H, W)`` / ``(H, W)`` tensors, ``(H, W[, C])`` uint8 arrays, or one
                ``(N, C, H, W)`` tensor. Tensors may be uint8 or float in [0, 1]; C is 1 or 3.
            masks: the same forms (or one ``(N, H, W)`` tensor); a pixel is defective where the mask is
                non-zero (float masks: >= 0.5).
            types: one defect type name per pair, or one name for all. Class ids follow the sorted names.
            margin_px, ring_px, foreground: as in :meth:`from_mvtec`.
            class_names: every type name, when the ids must also cover types with no usable entry.
        """
        margin_px, ring_px = check_cut_settings(margin_px, ring_px, foreground)
        images, masks = as_list(images, "images"), as_list(masks, "masks")
        if len(images) != len(masks):
            raise ValueError(f"from_pairs: got {len(images)} images but {len(masks)} masks")
        if isinstance(types, str):
            types = [types] * len(images)
        types = list(types)
        if len(types) != len(images):
            raise ValueError(f"from_pairs: got {len(images)} images but {len(types)} types")
        if not images:
            raise ValueError("from_pairs: no image + mask pairs given")
        names = sorted(set(types) | set(class_names or ()))

        def pairs():
            for i, (image, mask, kind) in enumerate(zip(images, masks, types)):
                where = str(image) if isinstance(image, (str, Path)) else f"pair {i}"
                pixels = read_pixels(image, where)
                coverage = read_mask(mask, str(mask) if isinstance(mask, (str, Path)) else f"mask of pair {i}")
                if coverage.shape != pixels.shape[:2]:
                    mask_name = f" {str(mask)!r}" if isinstance(mask, (str, Path)) else ""
                    raise ValueError(f"DefectBank: image {where!r} is {pixels.shape[0]}x{pixels.shape[1]} px but "
                                     f"its mask{mask_name} is {coverage.shape[0]}x{coverage.shape[1]} px")
                if not coverage.any():
                    warnings.warn(f"DefectBank: the mask of {where} is empty; skipping it", stacklevel=4)
                    continue
                yield pixels, coverage, kind, where

        return cls._from_masks(pairs(), names, margin_px, ring_px, foreground)

    @classmethod
    def _from_masks(cls, pairs: Iterable[Tuple[np.ndarray, np.ndarray, str, str]], class_names: Sequence[str],
                    margin_px: int, ring_px: int, foreground: Optional[str]) -> "DefectBank":
        """Cut and stack ``(pixels (H, W, C) uint8, non-empty mask (H, W) bool, type, where)`` pairs.

        The one cutting path of every builder. ``pairs`` is consumed lazily, so a builder with one mask per box
        (:meth:`from_aligned_pairs`) never holds thousands of full-image masks at once. Consecutive pairs that
        share one pixel array (several defects of one image) share its foreground estimate.
        """
        crops, estimated = [], (None, None)
        for pixels, coverage, kind, where in pairs:
            allowed = None
            if foreground is not None:
                if estimated[0] is not pixels:
                    estimated = (pixels, estimate_foreground(torch.from_numpy(pixels).permute(2, 0, 1)[None],
                                                             foreground)[0, 0].numpy())
                allowed = estimated[1]
            crops.append(cut_defect(pixels, coverage, margin_px, ring_px, allowed)
                         + (class_names.index(kind) + 1, where))
        if not crops:
            raise ValueError("DefectBank: every mask is empty; no defect to learn from")
        crops.sort(key=lambda c: c[-2])  # stable: entries of a type stay in the given order
        return cls._stack(crops, class_names)

    @classmethod
    def _stack(cls, crops, class_names) -> "DefectBank":
        channels = 3 if any(c[0].shape[2] == 3 for c in crops) else 1
        side = max(max(c[0].shape[:2]) for c in crops)
        images, masks, rings, anchors, sizes, backgrounds, sources = [], [], [], [], [], [], []
        for pixels, mask, ring, anchor, background, source_size, _, _ in crops:
            h, w = mask.shape
            top, left = (side - h) // 2, (side - w) // 2
            pad = ((top, side - h - top), (left, side - w - left))
            if pixels.shape[2] != channels:
                pixels, background = np.repeat(pixels, 3, axis=2), np.repeat(background, 3)
            # repeated edges, not zeros: a soft blend edge or bilinear tap past the crop sees its surroundings
            images.append(np.pad(pixels, pad + ((0, 0),), mode="edge"))
            masks.append(np.pad(mask, pad))
            rings.append(np.pad(ring, pad))
            anchors.append((anchor[0] + top, anchor[1] + left))
            sizes.append((h, w))
            backgrounds.append(background)
            sources.append(source_size)
        return cls(images=torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
                   masks=torch.from_numpy(np.stack(masks)).unsqueeze(1),
                   rings=torch.from_numpy(np.stack(rings)).unsqueeze(1),
                   anchors=torch.tensor(anchors, dtype=torch.float32), sizes=torch.tensor(sizes),
                   types=torch.tensor([c[-2] for c in crops]),
                   background=torch.from_numpy(np.stack(backgrounds).astype(np.float32)),
                   source_sizes=torch.tensor(sources), class_names=class_names, names=[c[-1] for c in crops])

    # -- use --------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def canvas_size(self) -> int:
        return self.images.shape[-1]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    def counts(self) -> Dict[str, int]:
        """Number of entries of each defect type, by name."""
        ids = torch.bincount(self.types, minlength=len(self.class_names) + 1)[1:].tolist()
        return dict(zip(self.class_names, ids))

    def tensors(self, channels: Optional[int], device: Union[str, torch.device]) -> BankTensors:
        """The bank as an atlas with ``channels`` (1 or 3) channels on ``device``, cached per pair.

        ``channels=None`` is for callers that need no pixels (masks, types): any cached atlas on ``device``.
        """
        device = torch.device(device)
        if channels is None:
            cached = [v for (_, d), v in self._cache.items() if d == str(device)]
            if cached:
                return cached[0]
            channels = self.channels
        key = (channels, str(device))
        if key not in self._cache:
            images, background = self.images, self.background
            if channels != self.channels:
                if channels == 3:
                    images, background = images.expand(-1, 3, -1, -1), background.expand(-1, 3)
                else:
                    images = luma(images.float()).round().to(torch.uint8)
                    background = background @ torch.tensor(LUMA).view(3, 1)
            origins, atlas_size = self._atlas_layout()
            g = ATLAS_GUTTER_PX
            atlas = torch.zeros(1, channels + 2, atlas_size[0], atlas_size[1])
            side = self.canvas_size
            tiles = []
            for i, ((h, w), (top, left)) in enumerate(zip(self.sizes.tolist(), origins)):
                y, x = (side - h) // 2, (side - w) // 2
                pixels = F.pad(images[i:i + 1, :, y:y + h, x:x + w].float(), (g, g, g, g), mode="replicate")
                rest = F.pad(torch.cat([self.rings[i:i + 1], self.masks[i:i + 1]], 1)[:, :, y:y + h, x:x + w].float(),
                             (g, g, g, g))
                atlas[:, :, top - g:top + h + g, left - g:left + w + g] = torch.cat([pixels, rest], 1)
                tiles.append((top, left, top + h, left + w))
            tile_boxes = torch.tensor(tiles, dtype=torch.float32)
            offsets = tile_boxes[:, :2] - torch.tensor([[(side - h) // 2, (side - w) // 2]
                                                         for h, w in self.sizes.tolist()], dtype=torch.float32)
            self._cache[key] = BankTensors(
                pixels_ring=atlas[:, :channels + 1].contiguous().to(device),
                masks=atlas[:, channels + 1:].contiguous().to(device), tile_boxes=tile_boxes.to(device),
                anchors=(self.anchors + offsets).to(device), background=background.float().contiguous().to(device),
                source_sizes=self.source_sizes.float().to(device), types=self.types.to(device))
        return self._cache[key]

    def _atlas_layout(self) -> Tuple[List[Tuple[int, int]], Tuple[int, int]]:
        """Shelf packing of the crops (tallest first): ``(top, left)`` of each crop and the atlas size."""
        g = ATLAS_GUTTER_PX
        sizes = [(h + 2 * g, w + 2 * g) for h, w in self.sizes.tolist()]
        area = sum(h * w for h, w in sizes)
        # a roughly square atlas keeps normalised grid coordinates precise (float32 steps grow with the side)
        limit = max(max(w for _, w in sizes), int(area ** 0.5 * 1.1))
        origins: List[Tuple[int, int]] = [(0, 0)] * len(sizes)
        top = left = shelf = width = 0
        for i in sorted(range(len(sizes)), key=lambda k: -sizes[k][0]):
            h, w = sizes[i]
            if left + w > limit:
                top, left, shelf = top + shelf, 0, 0
            origins[i] = (top + g, left + g)
            left += w
            shelf = max(shelf, h)
            width = max(width, left)
        return origins, (top + shelf, width)

    def __getstate__(self):  # device copies are rebuilt on demand
        return {k: v for k, v in self.__dict__.items() if k != "_cache"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._cache = {}

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in self.counts().items())
        return f"DefectBank({len(self)} defects, {self.channels} channels, canvas {self.canvas_size} px; {counts})"


__all__ = ["DefectBank", "BankTensors", "ATLAS_GUTTER_PX"]
