"""The data set constructors of :class:`~defectgen.bank.DefectBank`: MVTec-layout folders, aligned pairs (DeepPCB)
and labelled sets of any format.

Each reads its layout and hands ``(pixels, mask, type, where)`` pairs to the bank's one cutting path
(``DefectBank._from_masks``); :class:`DefectBankReaders` holds them as class methods that
:class:`~defectgen.bank.DefectBank` inherits, so ``DefectBank.from_mvtec(...)`` builds a bank.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Type, TypeVar, Union

import numpy as np
import torch

from ..checks import check_channels, check_int
from .cutting import check_cut_settings
from .difference import aligned_difference_masks, check_boxes, difference_settings
from .files import mvtec_items
from .labelled import labelled_defects
from .pixels import ImageLike, PathLike, as_channels, as_list, read_pixels

#: the bank class a constructor is called on (:class:`~defectgen.bank.DefectBank`)
Bank = TypeVar("Bank", bound="DefectBankReaders")


class DefectBankReaders:
    """The constructors of :class:`~defectgen.bank.DefectBank` that read a data set layout (see the module)."""

    @classmethod
    def from_mvtec(cls: Type[Bank], root: PathLike, defects: Optional[Sequence[str]] = None,
                   max_per_type: Optional[int] = None, margin_px: int = 8, ring_px: int = 4,
                   foreground: Optional[str] = None, split: Optional[str] = None,
                   shots: Optional[Union[int, float]] = None, split_seed: int = 0) -> Bank:
        """Read ``root/test/<defect>/*.png`` with masks ``root/ground_truth/<defect>/<stem>_mask.png``.

        The folder is listed by :func:`defectgen.io.read_mvtec` (which also accepts ``<stem>_mask`` with
        another image extension); the ``good`` test images and ``train/`` are not used.
        :func:`~defectgen.bank.mvtec_bank_items` lists the files a call reads (without reading them); ``bank.names``
        holds them afterwards.

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
        items, defects = mvtec_items(root, defects, max_per_type, split, shots, split_seed)
        return cls.from_pairs([it.image for it in items], [it.mask for it in items], [it.defect for it in items],
                              margin_px=margin_px, ring_px=ring_px, class_names=defects, foreground=foreground)

    @classmethod
    def from_aligned_pairs(cls: Type[Bank], images: Union[Sequence[ImageLike], torch.Tensor],
                           templates: Union[Sequence[ImageLike], torch.Tensor], boxes: Sequence[np.ndarray],
                           types: Sequence[Sequence[str]], threshold: float = 128, shift_px: int = 3,
                           open_px: int = 1, close_px: int = 1, min_area_px: int = 12, tolerance_px: int = 1,
                           margin_px: int = 8, ring_px: int = 4, class_names: Optional[Sequence[str]] = None,
                           foreground: Optional[str] = None, channels: Optional[int] = None) -> Bank:
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
        (:func:`~defectgen.bank.difference_masks` gives the masks of one pair). The defaults were chosen by looking at
        the masks of every DeepPCB type (``docs/previews/deeppcb_bank_masks.png``): with them all 2754 boxes of
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
        settings = difference_settings(threshold, shift_px, open_px, close_px, min_area_px, tolerance_px)
        if channels is not None:
            channels = check_channels(channels)
        margin_px, ring_px = check_cut_settings(margin_px, ring_px, foreground)
        images, templates = as_list(images, "images"), as_list(templates, "templates")
        boxes, types = list(boxes), [list(t) for t in types]
        if not images:
            raise ValueError("from_aligned_pairs: no images given")
        for name, values in (("templates", templates), ("boxes", boxes), ("types", types)):
            if len(values) != len(images):
                raise ValueError(f"from_aligned_pairs: got {len(images)} images but {len(values)} {name}")
        for i, t in enumerate(types):
            boxes[i] = check_boxes(boxes[i], f"from_aligned_pairs: boxes[{i}]")
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
                pixels = read_pixels(image, where)
                reference = read_pixels(template, str(template) if isinstance(template, (str, Path))
                                         else f"template of pair {i}")
                if channels is not None:
                    pixels, reference = as_channels(pixels, channels), as_channels(reference, channels)
                try:
                    masks = aligned_difference_masks(pixels, reference, image_boxes, where, **settings)
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
    def from_deeppcb(cls: Type[Bank], root: PathLike, ids: Optional[Sequence[str]] = None, limit: Optional[int] = None,
                     types: Optional[Sequence[str]] = None, class_names: Optional[Sequence[str]] = None,
                     channels: Optional[int] = 1, **kwargs) -> Bank:
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
        from ..io.pairs import DEEPPCB_TYPES, read_pairs

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
    def from_labelled(cls: Type[Bank], labelled, templates: Optional[Sequence[torch.Tensor]] = None,
                      classes: Optional[Sequence[str]] = None, margin_px: int = 8, ring_px: int = 4,
                      foreground: Optional[str] = None) -> Bank:
        """One entry per defect box of a :class:`~defectgen.io.labelled.LabelledSet` (of any format), cut along
        the defect's mask: the set's own mask, the difference with ``templates`` (aligned pairs), or one
        estimated inside the box (:mod:`defectgen.bank.box_masks` says how). The bank's class names are the
        set's, so entry type ``k`` is the set's class id ``k``.

        Args:
            labelled: the images, boxes (and masks) to cut.
            templates: one aligned defect-free ``(C, H, W)`` uint8 template per image, or None.
            classes: keep only the boxes of these class names.
            margin_px, ring_px, foreground: as in :meth:`from_mvtec`.

        Raises:
            ValueError: naming the argument: an unknown class, templates that do not match, no box to cut.
        """
        margin_px, ring_px = check_cut_settings(margin_px, ring_px, foreground)
        defects = labelled_defects(labelled, templates, classes)
        return cls._from_masks(defects, list(labelled.class_names), margin_px, ring_px, foreground)


__all__ = ["DefectBankReaders"]
