"""A bank of real defects cut from a few NG images, ready to be warped and pasted onto OK images.

Each entry is one image's defect: the pixels around the mask's bounding box (plus ``margin_px`` of context,
so soft blend edges and interpolation see real surroundings), the mask, a ring just outside the mask and the
mean colour of the source image on that ring (the defect's local background, used to match brightness at the
destination). Entries are stored on one shared ``S x S`` canvas (each crop centred, padded by repeating its
edge pixels); for warping they are packed once per channel count and device into an atlas image, so a whole
batch is warped by one ``grid_sample`` call with no per-sample gather.

A mask with several connected components (a crack and its splinters) is one entry: the parts belong to one
physical defect and keep their relative positions.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import check_int
from .foreground import estimate_foreground
from ._grey import LUMA, luma

#: foreground modes a bank can estimate on its source images
ESTIMATED_FOREGROUNDS = ("otsu", "otsu_dark", "otsu_bright")

PathLike = Union[str, Path]
ImageLike = Union[PathLike, torch.Tensor, np.ndarray]


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


class DefectBank:
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
    def from_mvtec(cls, root: PathLike, defects: Optional[Sequence[str]] = None,
                   max_per_type: Optional[int] = None, margin_px: int = 8, ring_px: int = 4,
                   foreground: Optional[str] = None) -> "DefectBank":
        """Read ``root/test/<defect>/*.png`` with masks ``root/ground_truth/<defect>/<stem>_mask.png``.

        The folder is listed by :func:`defectgen.io.read_mvtec` (which also accepts ``<stem>_mask`` with
        another image extension); the ``good`` test images and ``train/`` are not used.

        Args:
            root: an MVTec AD category folder (or any folder with that layout).
            defects: defect type folders to read; ``None`` reads every folder under ``test/`` except ``good``.
            max_per_type: read at most this many images of each type (the first in sorted order).
            margin_px: context kept around each mask's bounding box, in source pixels.
            ring_px: width of the band outside the mask whose mean colour is the defect's local background.
            foreground: ``"otsu"``, ``"otsu_dark"`` or ``"otsu_bright"`` to take that mean on the source image's
                estimated foreground only (see :mod:`defectgen.foreground`): a defect at the edge of an object
                is then matched to the object's brightness, not to the background beside it.

        Raises:
            ValueError: naming the folder or file when the layout is wrong, a mask is missing, or an image
                and its mask differ in size. Images with an empty mask are skipped with a warning.
        """
        from .io.mvtec import read_mvtec

        try:
            layout = read_mvtec(root, defects, require_test=True)
        except ValueError as error:
            raise ValueError(f"DefectBank.from_mvtec: {error}") from None
        defects = layout.defect_types
        if not defects:
            raise ValueError(f"DefectBank.from_mvtec: no defect folders under {str(Path(root) / 'test')!r}")
        if max_per_type is not None:
            max_per_type = check_int(max_per_type, "max_per_type", 1)
        items = [[it for it in layout.test if it.defect == defect][:max_per_type] for defect in defects]
        images = [it.image for group in items for it in group]
        masks = [it.mask for group in items for it in group]
        types = [it.defect for group in items for it in group]
        return cls.from_pairs(images, masks, types, margin_px=margin_px, ring_px=ring_px, class_names=defects,
                              foreground=foreground)

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
        margin_px = check_int(margin_px, "margin_px", 0)
        ring_px = check_int(ring_px, "ring_px", 1)
        if foreground is not None and foreground not in ESTIMATED_FOREGROUNDS:
            raise ValueError(f"foreground must be None or one of {ESTIMATED_FOREGROUNDS}, got {foreground!r}")
        if ring_px > margin_px:
            raise ValueError(f"ring_px ({ring_px}) must be <= margin_px ({margin_px}): the ring must lie in the crop")
        images, masks = _as_list(images, "images"), _as_list(masks, "masks")
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
        crops = []
        for i, (image, mask, kind) in enumerate(zip(images, masks, types)):
            where = str(image) if isinstance(image, (str, Path)) else f"pair {i}"
            pixels = _read_pixels(image, where)
            coverage = _read_mask(mask, str(mask) if isinstance(mask, (str, Path)) else f"mask of pair {i}")
            if coverage.shape != pixels.shape[:2]:
                mask_name = f" {str(mask)!r}" if isinstance(mask, (str, Path)) else ""
                raise ValueError(f"DefectBank: image {where!r} is {pixels.shape[0]}x{pixels.shape[1]} px but its "
                                 f"mask{mask_name} is {coverage.shape[0]}x{coverage.shape[1]} px")
            if not coverage.any():
                warnings.warn(f"DefectBank: the mask of {where} is empty; skipping it", stacklevel=2)
                continue
            allowed = None
            if foreground is not None:
                allowed = estimate_foreground(torch.from_numpy(pixels).permute(2, 0, 1)[None], foreground)[0, 0].numpy()
            crops.append(_cut(pixels, coverage, margin_px, ring_px, allowed) + (names.index(kind) + 1, where))
        if not crops:
            raise ValueError("DefectBank: every mask is empty; no defect to learn from")
        crops.sort(key=lambda c: c[-2])  # stable: entries of a type stay in the given order
        return cls._stack(crops, names)

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


BankSpec = Union[DefectBank, str, Path, Dict]


def as_bank(bank: BankSpec, foreground: Optional[str] = None) -> DefectBank:
    """A :class:`DefectBank` from a bank, an MVTec-layout folder, or a dict of :meth:`DefectBank.from_mvtec`
    arguments (``{"root": ..., "defects": [...], "max_per_type": 5}``). ``foreground`` is the
    ``from_mvtec`` default for banks read here (an estimate mode, or None; ``"given"`` counts as None)."""
    if foreground not in ESTIMATED_FOREGROUNDS:
        foreground = None
    if isinstance(bank, DefectBank):
        return bank
    if isinstance(bank, (str, Path)):
        return DefectBank.from_mvtec(bank, foreground=foreground)
    if isinstance(bank, dict):
        if "root" not in bank:
            raise ValueError(f"a bank config needs a 'root' folder, got keys {sorted(bank)}")
        return DefectBank.from_mvtec(**{"foreground": foreground, **bank})
    raise TypeError(f"bank must be a DefectBank, an MVTec-layout folder path or a dict of from_mvtec arguments, "
                    f"got {type(bank).__name__}")


# -- building helpers ---------------------------------------------------------------------------------------------
def _as_list(items, name: str) -> list:
    if isinstance(items, torch.Tensor) and (items.ndim == 4 or (name == "masks" and items.ndim == 3)):
        return list(items)
    if isinstance(items, (str, Path, torch.Tensor, np.ndarray)):
        raise TypeError(f"{name} must be a sequence (files, tensors, arrays) or one (N, C, H, W) tensor, "
                        f"got {type(items).__name__}" + (f" of shape {tuple(items.shape)}" if hasattr(items, "shape")
                                                         else ""))
    return list(items)


def _read_pixels(image: ImageLike, where: str) -> np.ndarray:
    """``(H, W, 1 | 3)`` uint8."""
    if isinstance(image, (str, Path)):
        from .io.images import read_image

        return read_image(image)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 2:
            t = t.unsqueeze(0)
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"{where}: an image tensor must be (C, H, W) with C in (1, 3) or (H, W), "
                             f"got {tuple(image.shape)}")
        if t.dtype.is_floating_point:
            if not torch.isfinite(t).all():
                raise ValueError(f"{where}: image contains NaN or infinite values")
            t = (t.float() * 255).round().clamp(0, 255).to(torch.uint8)
        elif t.dtype != torch.uint8:
            raise TypeError(f"{where}: image tensors must be uint8 or float in [0, 1], got {t.dtype}")
        return np.ascontiguousarray(t.permute(1, 2, 0).numpy())
    if isinstance(image, np.ndarray):
        a = image[:, :, None] if image.ndim == 2 else image
        if a.ndim != 3 or a.shape[2] not in (1, 3) or a.dtype != np.uint8:
            raise ValueError(f"{where}: an image array must be (H, W) or (H, W, 1 | 3) uint8, got {image.shape} "
                             f"{image.dtype}")
        return np.ascontiguousarray(a)
    raise TypeError(f"{where}: expected an image file, tensor or array, got {type(image).__name__}")


def _read_mask(mask: ImageLike, where: str) -> np.ndarray:
    """``(H, W)`` bool."""
    if isinstance(mask, (str, Path)):
        from .io.images import read_image

        return read_image(mask).any(axis=2)
    if isinstance(mask, torch.Tensor):
        t = mask.detach().cpu()
        t = t[0] if t.ndim == 3 and t.shape[0] == 1 else t
        if t.ndim != 2:
            raise ValueError(f"{where}: a mask must be (H, W) or (1, H, W), got {tuple(mask.shape)}")
        return (t >= 0.5 if t.dtype.is_floating_point else t != 0).numpy()
    if isinstance(mask, np.ndarray):
        a = mask[:, :, 0] if mask.ndim == 3 and mask.shape[2] == 1 else mask
        if a.ndim != 2:
            raise ValueError(f"{where}: a mask array must be (H, W), got {mask.shape}")
        return a >= 0.5 if a.dtype.kind == "f" else a != 0
    raise TypeError(f"{where}: expected a mask file, tensor or array, got {type(mask).__name__}")


def _cut(pixels: np.ndarray, mask: np.ndarray, margin: int, ring_px: int, allowed: Optional[np.ndarray]):
    """Crop one defect: ``(pixels, mask, ring, anchor, background, source_size)``."""
    import cv2

    height, width = mask.shape
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    cy0, cy1 = max(0, y0 - margin), min(height, y1 + margin)
    cx0, cx1 = max(0, x0 - margin), min(width, x1 + margin)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring_px + 1, 2 * ring_px + 1))
    ring = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~mask
    # the stored ring stays whole: the destination clips it to its own foreground
    measured = ring & allowed if allowed is not None and (ring & allowed).any() else ring
    # a mask that fills its image has no outside: its whole image is the best reference there is
    reference = pixels[measured] if measured.any() else pixels.reshape(-1, pixels.shape[2])
    background = reference.astype(np.float64).mean(0)
    anchor = ((y0 + y1) / 2 - cy0, (x0 + x1) / 2 - cx0)
    return (pixels[cy0:cy1, cx0:cx1], mask[cy0:cy1, cx0:cx1].astype(np.uint8), ring[cy0:cy1, cx0:cx1].astype(np.uint8),
            anchor, background, (height, width))
