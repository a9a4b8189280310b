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
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .checks import check_channels, check_int, check_number
from .foreground import estimate_foreground
from .grey import LUMA, luma, luma_array

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
                   foreground: Optional[str] = None, split: Optional[str] = None,
                   shots: Optional[Union[int, float]] = None, split_seed: int = 0) -> "DefectBank":
        """Read ``root/test/<defect>/*.png`` with masks ``root/ground_truth/<defect>/<stem>_mask.png``.

        The folder is listed by :func:`defectgen.io.read_mvtec` (which also accepts ``<stem>_mask`` with
        another image extension); the ``good`` test images and ``train/`` are not used. :func:`mvtec_bank_items`
        lists the files a call reads (without reading them); ``bank.names`` holds them afterwards.

        Args:
            root: an MVTec AD category folder (or any folder with that layout).
            defects: defect type folders to read; ``None`` reads every folder under ``test/`` except ``good``.
            max_per_type: read at most this many images of each type (the first in sorted order, after ``split``).
            margin_px: context kept around each mask's bounding box, in source pixels.
            ring_px: width of the band outside the mask whose mean colour is the defect's local background.
            foreground: ``"otsu"``, ``"otsu_dark"`` or ``"otsu_bright"`` to take that mean on the source image's
                estimated foreground only (see :mod:`defectgen.foreground`): a defect at the edge of an object
                is then matched to the object's brightness, not to the background beside it.
            split: ``"train"`` or ``"held_out"``: read only that part of the fixed split of the defective images
                that :func:`defectgen.io.mvtec.split_defects` makes with ``shots`` and ``split_seed`` (over the
                types in ``defects``); ``None`` reads every image. ``split="train", shots=0.33, split_seed=0``
                is what ``defectgen train inpaint --shots 0.33 --seed 0`` trains on, and what a study's
                ``data.defect_split: {shots: 0.33, seed: 0}`` takes out of its real test set.
            shots: a fraction in (0, 1) of each type or a count >= 1 per type: the size of the ``train`` part.
            split_seed: seeds the split.

        Raises:
            ValueError: naming the folder or file when the layout is wrong, a mask is missing, or an image
                and its mask differ in size. Images with an empty mask are skipped with a warning.
        """
        items, defects = _mvtec_items(root, defects, max_per_type, split, shots, split_seed)
        return cls.from_pairs([it.image for it in items], [it.mask for it in items], [it.defect for it in items],
                              margin_px=margin_px, ring_px=ring_px, class_names=defects, foreground=foreground)

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
        margin_px, ring_px = _check_cut_settings(margin_px, ring_px, foreground)
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

        def pairs():
            for i, (image, mask, kind) in enumerate(zip(images, masks, types)):
                where = str(image) if isinstance(image, (str, Path)) else f"pair {i}"
                pixels = _read_pixels(image, where)
                coverage = _read_mask(mask, str(mask) if isinstance(mask, (str, Path)) else f"mask of pair {i}")
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
    def from_aligned_pairs(cls, images: Union[Sequence[ImageLike], torch.Tensor],
                           templates: Union[Sequence[ImageLike], torch.Tensor], boxes: Sequence[np.ndarray],
                           types: Sequence[Sequence[str]], threshold: float = 128, shift_px: int = 3,
                           open_px: int = 1, close_px: int = 1, min_area_px: int = 12, tolerance_px: int = 1,
                           margin_px: int = 8, ring_px: int = 4, class_names: Optional[Sequence[str]] = None,
                           foreground: Optional[str] = None, channels: Optional[int] = None) -> "DefectBank":
        """Build a bank from tested images, their aligned defect-free templates and defect boxes (no masks).

        Template-comparison sets (DeepPCB) label each defect with a box only; the defect itself is where the
        tested image differs from its template. Per box:

        1. the template is re-registered locally: of the integer shifts within ``shift_px``, the one that best
           matches the image on a band of ``REGISTRATION_CONTEXT_PX`` pixels around the box (outside it, where
           nothing is defective) is used. DeepPCB's pairs drift by 1-3 px, differently across one image (about
           60 % of its boxes match better shifted); without this, trace edges near a defect become slivers of
           "defect" 1-3 px wide (on deeppcb_400, 210 masks came out in several parts without it, 72 with it);
        2. the grey absolute difference is thresholded at ``threshold`` and opened by a disc of radius
           ``open_px`` (removes the remaining 1-2 px slivers), then the changed pixels next to what survived are
           given back (the opening alone would round every defect's corners off and erase the smallest mouse
           bites),
           and closed by a disc of radius ``close_px`` (fills the JPEG speckle holes inside a drawn blob);
        3. inside the box (grown by ``tolerance_px``), connected parts under ``min_area_px`` pixels (sliver
           stubs) are dropped; what is left is the defect's mask.

        Each box becomes one entry of its type, cut by the same path as :meth:`from_pairs`
        (:func:`difference_masks` gives the masks of one pair). The defaults were chosen by looking at the
        masks of every DeepPCB type (``docs/previews/deeppcb_bank_masks.png``): with them all 2754 boxes of
        ``deeppcb_400`` give a mask. Its 640 px scans are binarised, so the difference is 0 or ~255 and any
        threshold from ~60 to ~200 gives the same masks.

        A box whose mask comes out empty (a misaligned pair, a label on an unchanged spot, a box off the image)
        is skipped, and one warning gives the count and the first few such boxes.

        Args:
            images: the tested images: files, ``(C, H, W)`` / ``(H, W)`` tensors, ``(H, W[, C])`` uint8 arrays,
                or one ``(N, C, H, W)`` tensor (as :meth:`from_pairs`).
            templates: one aligned template per image, in the same forms and of the same size.
            boxes: per image an ``(n, 4)`` array of ``x1 y1 x2 y2`` boxes in pixel edges (``x2`` one past the
                last column, as :func:`defectgen.io.read_pairs` returns them); ``n`` may be 0.
            types: per image, one defect type name per box.
            threshold: grey difference (0..255 scale) from which a pixel counts as changed.
            shift_px: largest template shift (per axis) tried when re-registering each box; 0 trusts the pairs'
                alignment.
            open_px, close_px: radii of the morphological opening and closing; 0 skips that step.
            min_area_px: connected parts of a box's mask smaller than this are dropped.
            tolerance_px: pixels a mask may reach outside its box (annotators' boxes can be a pixel tight).
            margin_px, ring_px, foreground: as in :meth:`from_mvtec`.
            class_names: the class names in id order (``class_names[k]`` gets id ``k + 1``; every type must be
                in it), e.g. a data set's own order so the bank's ids equal its label ids. ``None``: the sorted
                type names, as :meth:`from_pairs` numbers them.
            channels: 1 or 3 to convert every image (and template) on reading; ``None`` keeps them, and the
                bank is colour if any image is. A grey set stored partly as 3-channel files (9 of DeepPCB's 400
                pairs) would otherwise make a bank three times the size.

        Raises:
            ValueError: naming the argument (or the image) when the lengths disagree, a box array is not
                ``(n, 4)`` or not finite, an image and its template differ in size, a type is not in
                ``class_names``, or no box has a difference.
        """
        settings = _difference_settings(threshold, shift_px, open_px, close_px, min_area_px, tolerance_px)
        if channels is not None:
            channels = check_channels(channels)
        margin_px, ring_px = _check_cut_settings(margin_px, ring_px, foreground)
        images, templates = _as_list(images, "images"), _as_list(templates, "templates")
        boxes, types = list(boxes), [list(t) for t in types]
        if not images:
            raise ValueError("from_aligned_pairs: no images given")
        for name, values in (("templates", templates), ("boxes", boxes), ("types", types)):
            if len(values) != len(images):
                raise ValueError(f"from_aligned_pairs: got {len(images)} images but {len(values)} {name}")
        for i, t in enumerate(types):
            boxes[i] = _check_boxes(boxes[i], f"from_aligned_pairs: boxes[{i}]")
            if len(t) != boxes[i].shape[0]:
                raise ValueError(f"from_aligned_pairs: image {i} has {boxes[i].shape[0]} boxes but {len(t)} types")
        found = sorted({k for t in types for k in t})
        if class_names is None:
            names = found
        else:
            names = list(class_names)
            unknown = [k for k in found if k not in names]
            if unknown or len(set(names)) != len(names):
                raise ValueError(f"from_aligned_pairs: class_names {names} must be distinct and hold every type; "
                                 f"missing {unknown}")
        total = sum(len(t) for t in types)
        skipped: List[str] = []

        def pairs():
            for i, (image, template, image_boxes, image_types) in enumerate(zip(images, templates, boxes, types)):
                if not image_types:
                    continue
                where = str(image) if isinstance(image, (str, Path)) else f"pair {i}"
                pixels = _read_pixels(image, where)
                reference = _read_pixels(template, str(template) if isinstance(template, (str, Path))
                                         else f"template of pair {i}")
                if channels is not None:
                    pixels, reference = _as_channels(pixels, channels), _as_channels(reference, channels)
                try:
                    masks = _difference_masks(pixels, reference, image_boxes, where, **settings)
                except ValueError as error:
                    raise ValueError(f"from_aligned_pairs: {error}") from None
                for j, (box, kind, coverage) in enumerate(zip(image_boxes, image_types, masks)):
                    name = f"{where} box {j} ({', '.join(f'{v:g}' for v in box)})"
                    if not coverage.any():
                        skipped.append(name)
                        continue
                    yield pixels, coverage, kind, name

        try:
            return cls._from_masks(pairs(), names, margin_px, ring_px, foreground)
        finally:
            if skipped:
                listed = "; ".join(skipped[:5]) + ("; ..." if len(skipped) > 5 else "")
                warnings.warn(f"DefectBank.from_aligned_pairs: {len(skipped)} of {total} boxes have no difference "
                              f"between image and template (misaligned pair, label noise or a box off the image); "
                              f"skipped them: {listed}", stacklevel=3)

    @classmethod
    def from_deeppcb(cls, root: PathLike, ids: Optional[Sequence[str]] = None, limit: Optional[int] = None,
                     types: Optional[Sequence[str]] = None, class_names: Optional[Sequence[str]] = None,
                     channels: Optional[int] = 1, **kwargs) -> "DefectBank":
        """Read a DeepPCB-style folder with :func:`defectgen.io.read_pairs` and cut one entry per labelled box.

        The class ids are DeepPCB's own (1 open, 2 short, 3 mousebite, 4 spur, 5 spurious_copper, 6 pin_hole),
        so a detector trained on defects transplanted from this bank is scored against DeepPCB's labels as is.

        The scans are binarised: paste with ``DefectTransplant(bank, blend="replace", match_brightness=False)``
        (a feathered edge and brightness matching turn a black-and-white defect into a grey smudge), one op per
        group of ``types`` below on its own foreground (``docs/previews/deeppcb_transplant.png``).

        Args:
            root: either layout :func:`~defectgen.io.read_pairs` reads.
            ids: the pair ids (file stems) to read; ``None`` reads all.
            limit: read at most this many pairs (the first in id order, after ``ids``).
            types: keep only the boxes of these types (the ids stay DeepPCB's). On DeepPCB's scans copper is dark:
                ``open``, ``mousebite`` and ``pin_hole`` remove copper and belong on the dark foreground
                (``foreground="otsu_dark"``), ``short``, ``spur`` and ``spurious_copper`` add it and belong on
                the bright substrate, so a transplant op per group places each where it can occur.
            class_names: defaults to :data:`defectgen.io.DEEPPCB_TYPES`.
            channels: 1 by default: DeepPCB is binarised grey, though a few of its JPEGs are stored with three
                identical channels.
            kwargs: :meth:`from_aligned_pairs` options (``threshold``, ``open_px``, ``margin_px``, ...).

        Raises:
            ValueError: from :func:`~defectgen.io.read_pairs`, or naming ids that are not in ``root``.
        """
        from .io.pairs import DEEPPCB_TYPES, read_pairs

        try:
            items = read_pairs(root)
        except ValueError as error:
            raise ValueError(f"DefectBank.from_deeppcb: {error}") from None
        if ids is not None:
            ids = [ids] if isinstance(ids, str) else [str(i) for i in ids]
            by_name = {it.name: it for it in items}
            missing = [i for i in ids if i not in by_name]
            if missing:
                raise ValueError(f"DefectBank.from_deeppcb: no pair {missing[:5]} under {str(root)!r}")
            items = [by_name[i] for i in ids]
        if limit is not None:
            items = items[:check_int(limit, "limit", 1)]
        boxes, kinds = [it.boxes for it in items], [it.types for it in items]
        if types is not None:
            types = [types] if isinstance(types, str) else list(types)
            unknown = [t for t in types if t not in (class_names or DEEPPCB_TYPES)]
            if unknown:
                raise ValueError(f"DefectBank.from_deeppcb: unknown types {unknown}; expected some of "
                                 f"{list(class_names or DEEPPCB_TYPES)}")
            chosen = [np.isin(np.asarray(k, dtype=object), types).astype(bool) for k in kinds]
            boxes = [b[c] for b, c in zip(boxes, chosen)]
            kinds = [[t for t, keep in zip(k, c) if keep] for k, c in zip(kinds, chosen)]
            if not any(kinds):
                raise ValueError(f"DefectBank.from_deeppcb: no box of types {types} in the pairs read")
        return cls.from_aligned_pairs([it.image for it in items], [it.template for it in items], boxes, kinds,
                                      class_names=DEEPPCB_TYPES if class_names is None else class_names,
                                      channels=channels, **kwargs)

    @classmethod
    def from_labelled(cls, labelled, templates: Optional[Sequence[torch.Tensor]] = None,
                      classes: Optional[Sequence[str]] = None, margin_px: int = 8, ring_px: int = 4,
                      foreground: Optional[str] = None) -> "DefectBank":
        """One entry per defect box of a :class:`~defectgen.io.labelled.LabelledSet` (of any format), cut along
        the defect's mask: the set's own mask, the difference with ``templates`` (aligned pairs), or one
        estimated inside the box (:mod:`defectgen.fit.box_masks` says how). The bank's class names are the
        set's, so entry type ``k`` is the set's class id ``k``.

        Args:
            labelled: the images, boxes (and masks) to cut.
            templates: one aligned defect-free ``(C, H, W)`` uint8 template per image, or None.
            classes: keep only the boxes of these class names.
            margin_px, ring_px, foreground: as in :meth:`from_mvtec`.

        Raises:
            ValueError: naming the argument: an unknown class, templates that do not match, no box to cut.
        """
        from .fit.labelled_bank import labelled_defects

        margin_px, ring_px = _check_cut_settings(margin_px, ring_px, foreground)
        defects = labelled_defects(labelled, templates, classes)
        return cls._from_masks(defects, list(labelled.class_names), margin_px, ring_px, foreground)

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
            crops.append(_cut(pixels, coverage, margin_px, ring_px, allowed) + (class_names.index(kind) + 1, where))
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


BankSpec = Union[DefectBank, str, Path, Dict]


def as_bank(bank: BankSpec, foreground: Optional[str] = None) -> DefectBank:
    """A :class:`DefectBank` from a bank, a folder, or a dict of builder arguments.

    A folder is read as MVTec layout (:meth:`DefectBank.from_mvtec`), or as aligned pairs
    (:meth:`DefectBank.from_deeppcb`) when it has no ``test/`` but a ``templates/`` folder. A dict holds the
    builder's arguments, ``{"root": ..., "defects": [...], "max_per_type": 5}``, plus an optional
    ``"layout": "mvtec"`` (default) or ``"pairs"`` (``{"root": ..., "layout": "pairs", "types": ["short"]}``), so a
    YAML recipe can transplant DeepPCB defects, or ``"labelled"``: the defect boxes of K images of any labelled set
    (``{"layout": "labelled", "root": ..., "format": "yolo", "count": 20, "seed": 0, "classes": ["scratch"]}``,
    chosen as ``defectgen train --real-count 20 --seed 0`` chooses them; see
    :func:`defectgen.fit.labelled_bank.bank_from_config`). ``foreground`` is the builder's default for banks read
    here (an estimate mode, or None; ``"given"`` counts as None)."""
    if foreground not in ESTIMATED_FOREGROUNDS:
        foreground = None
    if isinstance(bank, DefectBank):
        return bank
    if isinstance(bank, (str, Path)):
        root = Path(bank)
        if not (root / "test").is_dir() and (root / "templates").is_dir():
            return DefectBank.from_deeppcb(root, foreground=foreground)
        return DefectBank.from_mvtec(bank, foreground=foreground)
    if isinstance(bank, dict):
        if "root" not in bank:
            raise ValueError(f"a bank config needs a 'root' folder, got keys {sorted(bank)}")
        settings = {k: v for k, v in bank.items() if k != "layout"}
        layout = bank.get("layout", "mvtec")
        if layout == "mvtec":
            return DefectBank.from_mvtec(**{"foreground": foreground, **settings})
        if layout == "pairs":
            return DefectBank.from_deeppcb(**{"foreground": foreground, **settings})
        if layout == "labelled":
            from .fit.labelled_bank import bank_from_config

            return bank_from_config(settings, foreground)
        raise ValueError(f"a bank config's 'layout' must be 'mvtec', 'pairs' or 'labelled', got {layout!r}")
    raise TypeError(f"bank must be a DefectBank, a folder path or a dict of builder arguments, "
                    f"got {type(bank).__name__}")


def mvtec_bank_items(root: PathLike, defects: Optional[Sequence[str]] = None, max_per_type: Optional[int] = None,
                     split: Optional[str] = None, shots: Optional[Union[int, float]] = None, split_seed: int = 0,
                     **_cutting) -> list:
    """The :class:`~defectgen.io.MVTecItem` s ``DefectBank.from_mvtec`` with these arguments reads (files only,
    nothing decoded; the cutting arguments, ``margin_px`` etc., are accepted and ignored), so a caller can tell
    which real images a bank config learns from without building it."""
    return _mvtec_items(root, defects, max_per_type, split, shots, split_seed)[0]


def _mvtec_items(root, defects, max_per_type, split, shots, split_seed):
    from .io.mvtec import SPLIT_PARTS, read_mvtec, split_defects

    if split is None and shots is not None:
        raise ValueError(f"DefectBank.from_mvtec: shots={shots!r} needs split= (one of {SPLIT_PARTS}): which part "
                         "of the split to read")
    if split is not None and split not in SPLIT_PARTS:
        raise ValueError(f"DefectBank.from_mvtec: split must be one of {SPLIT_PARTS} or None, got {split!r}")
    if split is not None and shots is None:
        raise ValueError("DefectBank.from_mvtec: split= needs shots= (a fraction of each type, or a count per type)")
    try:
        layout = read_mvtec(root, defects, require_test=True)
    except ValueError as error:
        raise ValueError(f"DefectBank.from_mvtec: {error}") from None
    defects = layout.defect_types
    if not defects:
        raise ValueError(f"DefectBank.from_mvtec: no defect folders under {str(Path(root) / 'test')!r}")
    if max_per_type is not None:
        max_per_type = check_int(max_per_type, "max_per_type", 1)
    items = [it for it in layout.test if it.is_anomalous]
    if split is not None:
        try:
            parts = split_defects(layout, shots, split_seed)
        except ValueError as error:
            raise ValueError(f"DefectBank.from_mvtec: {error}") from None
        items = parts.train if split == "train" else parts.held_out
        if not items:
            raise ValueError(f"DefectBank.from_mvtec: the {split!r} part of the split (shots={shots!r}) holds no "
                             f"image of {defects}")
    items = [it for defect in defects for it in [it for it in items if it.defect == defect][:max_per_type]]
    return items, defects


# -- building helpers ---------------------------------------------------------------------------------------------
def _check_cut_settings(margin_px: int, ring_px: int, foreground: Optional[str]) -> Tuple[int, int]:
    """The cutting settings every builder takes, checked: ``(margin_px, ring_px)``."""
    margin_px = check_int(margin_px, "margin_px", 0)
    ring_px = check_int(ring_px, "ring_px", 1)
    if foreground is not None and foreground not in ESTIMATED_FOREGROUNDS:
        raise ValueError(f"foreground must be None or one of {ESTIMATED_FOREGROUNDS}, got {foreground!r}")
    if ring_px > margin_px:
        raise ValueError(f"ring_px ({ring_px}) must be <= margin_px ({margin_px}): the ring must lie in the crop")
    return margin_px, ring_px


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
    # a copy, not a view: a view would keep every whole source image alive until the bank is stacked
    return (pixels[cy0:cy1, cx0:cx1].copy(), mask[cy0:cy1, cx0:cx1].astype(np.uint8),
            ring[cy0:cy1, cx0:cx1].astype(np.uint8), anchor, background, (height, width))


def _as_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """``(H, W, channels)`` uint8: grey as luma (as :func:`defectgen.io.read_image_as` converts), or repeated."""
    if pixels.shape[2] == channels:
        return pixels
    if channels == 3:
        return np.repeat(pixels, 3, axis=2)
    return np.clip(np.round(luma_array(pixels)), 0, 255).astype(np.uint8)[:, :, None]


def difference_masks(image: ImageLike, template: ImageLike, boxes: np.ndarray, threshold: float = 128,
                     shift_px: int = 3, open_px: int = 1, close_px: int = 1, min_area_px: int = 12,
                     tolerance_px: int = 1) -> np.ndarray:
    """The defect mask of each box of an aligned pair: ``(n, H, W)`` bool, all False where nothing changed.

    This is what :meth:`DefectBank.from_aligned_pairs` cuts (see it for the method and the arguments); call it
    to look at the masks a bank will learn, or to turn a box-labelled pair into a mask-labelled one.

    Args:
        image, template: the tested image and its aligned template (a file, ``(C, H, W)`` / ``(H, W)`` tensor or
            ``(H, W[, C])`` uint8 array), of the same size.
        boxes: ``(n, 4)`` ``x1 y1 x2 y2`` in pixel edges.
    """
    settings = _difference_settings(threshold, shift_px, open_px, close_px, min_area_px, tolerance_px)
    boxes = _check_boxes(boxes, "boxes")
    where = str(image) if isinstance(image, (str, Path)) else "image"
    pixels = _read_pixels(image, where)
    reference = _read_pixels(template, str(template) if isinstance(template, (str, Path)) else "template")
    return _difference_masks(pixels, reference, boxes, where, **settings)


def _difference_settings(threshold, shift_px, open_px, close_px, min_area_px, tolerance_px) -> dict:
    return {"threshold": check_number(threshold, "threshold", 0.0, 255.0, low_open=True),
            "shift_px": check_int(shift_px, "shift_px", 0), "open_px": check_int(open_px, "open_px", 0),
            "close_px": check_int(close_px, "close_px", 0), "min_area_px": check_int(min_area_px, "min_area_px", 1),
            "tolerance_px": check_int(tolerance_px, "tolerance_px", 0)}


def _check_boxes(boxes, name: str) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4 or not np.isfinite(b).all():
        raise ValueError(f"{name} must be a finite (n, 4) array of x1 y1 x2 y2, got shape {b.shape}")
    return b


#: context around a box on which its template shift is measured: enough trace edges to lock on, local enough to
#: follow the scan's non-rigid drift (DeepPCB's registration is off by 1-3 px in places, differently per region)
REGISTRATION_CONTEXT_PX = 8


def _disc(radius: int) -> np.ndarray:
    import cv2

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _difference_masks(pixels: np.ndarray, reference: np.ndarray, boxes: np.ndarray, where: str, threshold: float,
                      shift_px: int, open_px: int, close_px: int, min_area_px: int, tolerance_px: int) -> np.ndarray:
    import cv2

    if reference.shape[:2] != pixels.shape[:2]:
        raise ValueError(f"image {where!r} is {pixels.shape[0]}x{pixels.shape[1]} px but its template is "
                         f"{reference.shape[0]}x{reference.shape[1]} px")
    image, template = luma_array(pixels), luma_array(reference)
    height, width = image.shape
    padded = cv2.copyMakeBorder(template, shift_px, shift_px, shift_px, shift_px, cv2.BORDER_REPLICATE)
    # smallest shifts first, and only a strictly better match moves: a featureless spot keeps the given alignment
    shifts = sorted(((dy, dx) for dy in range(-shift_px, shift_px + 1) for dx in range(-shift_px, shift_px + 1)),
                    key=lambda d: (abs(d[0]) + abs(d[1]), d))
    grow = REGISTRATION_CONTEXT_PX + 2 * (open_px + close_px) + tolerance_px
    masks = np.zeros((len(boxes), height, width), dtype=bool)
    for k, box in enumerate(boxes):
        x1, y1 = max(0, int(np.floor(box[0])) - tolerance_px), max(0, int(np.floor(box[1])) - tolerance_px)
        x2, y2 = min(width, int(np.ceil(box[2])) + tolerance_px), min(height, int(np.ceil(box[3])) + tolerance_px)
        if x2 <= x1 or y2 <= y1:
            continue
        wx1, wy1, wx2, wy2 = max(0, x1 - grow), max(0, y1 - grow), min(width, x2 + grow), min(height, y2 + grow)
        window = image[wy1:wy2, wx1:wx2]
        context = np.ones(window.shape, dtype=bool)  # the window outside the box: no defect, only alignment
        context[y1 - wy1:y2 - wy1, x1 - wx1:x2 - wx1] = False
        best, changed = None, None
        for dy, dx in shifts:
            moved = padded[wy1 + shift_px - dy:wy2 + shift_px - dy, wx1 + shift_px - dx:wx2 + shift_px - dx]
            differs = np.abs(window - moved) >= threshold
            score = int(np.count_nonzero(differs & context))
            if best is None or score < best:
                best, changed = score, differs
        changed = changed.astype(np.uint8)
        # opening first: thin slivers left by misregistration must be gone before closing could fuse them on
        if open_px:
            disc = _disc(open_px)
            opened = cv2.morphologyEx(changed, cv2.MORPH_OPEN, disc)
            # a disc rounds a defect's corners off: give back the changed pixels next to what survived
            changed = cv2.dilate(opened, disc) & changed
        if close_px:
            changed = cv2.morphologyEx(changed, cv2.MORPH_CLOSE, _disc(close_px))
        inside = np.ascontiguousarray(changed[y1 - wy1:y2 - wy1, x1 - wx1:x2 - wx1])
        _, parts, stats, _ = cv2.connectedComponentsWithStats(inside, connectivity=8)
        keep = stats[:, cv2.CC_STAT_AREA] >= min_area_px
        keep[0] = False  # the unchanged pixels
        masks[k, y1:y2, x1:x2] = keep[parts]
    return masks
