"""What real defects look like, in numbers a recipe can be written from: :func:`measure_defects`.

Every defect (label box) is measured on its mask (:mod:`defectgen.bank.box_masks`), in units relative to its
image, so sets of any resolution compare and a recipe fitted at one size works at another:

- **size**: the mask's tight box, width / W and height / H; its long and short side and ``size`` (the geometric
  mean side, what :class:`~defectgen.masks.shapes.ShapeMask`'s ``size_frac_range`` draws) as fractions of
  ``min(H, W)``; ``aspect`` = width / height; ``area``: mask pixels / (H * W) and ``box_area`` of the label box;
  the rotated extents (OpenCV's minimum-area rectangle): ``rotated_long`` / ``rotated_short``, ``angle_deg``,
  and ``fill`` (mask area / rotated box area: 1 for a rectangle, 0.79 for an ellipse, less for a scratch);
- **where**: the mask box's centre ``cx``, ``cy`` (0..1); ``dark_share``: the share of the defect's reference
  pixels on the dark side of its image's Otsu threshold (:func:`defectgen.foreground.estimate_foreground`, the
  rule an operator's ``foreground="otsu_dark"`` applies), and ``object_share`` on the ``"otsu"`` object. The
  reference pixels are the defect's own pixels on the aligned template when there is one (where the defect was
  painted on an OK image), else the ring just outside the defect on the image itself (its surroundings);
- **contrast**: mean grey inside the mask minus mean grey of a ring just outside it (``max(2, side / 100)`` px
  wide, other defects left out), signed: negative = darker than its surroundings; ``ring_mean`` is that ring's
  mean. ``inside_std`` / ``ring_std``: the grey spread inside and on the ring (a broken edge with bright shards
  and dark holes has a mean contrast near 0 but a large spread). With templates, ``change`` = mean grey inside
  minus the template's there;
- **label margin**: how far the label box reaches past the mask (mean per side, as a fraction of the side);
- **count**: defects per image (all chosen images, defect-free ones as 0).

Per class and over all classes the values are summarised by their mean, spread and 10th / 50th / 90th
percentiles, plus a 4 x 4 histogram of centres and the recommendations a recipe needs (foreground, polarity,
axis alignment). :class:`DefectStatistics` is plain data: ``to_dict()`` is what ``statistics.json`` holds, and
:meth:`DefectStatistics.from_dict` reads it back.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from ..foreground import estimate_foreground
from ..io.labelled import LabelledSet
from ..bank.box_masks import MASK_SOURCES, DefectMask, grey_array, image_defect_masks, otsu_threshold, pixel_box

#: per-defect quantities that are summarised (the rest of a defect record is bookkeeping)
QUANTITIES = ("width", "height", "long", "short", "size", "aspect", "area", "box_area", "rotated_long",
              "rotated_short", "fill", "cx", "cy", "contrast", "ring_mean", "inside_mean", "inside_std", "ring_std",
              "change", "dark_share", "object_share", "label_margin")

#: a defect "sits on" a side of the Otsu threshold when at least this share of its reference pixels are there,
#: and a class gets that side as its foreground when at least FOREGROUND_SHARE of its defects sit there
SIDE_SHARE = 0.5
FOREGROUND_SHARE = 0.85
#: a class is dark (bright) when at least this share of its defects is darker (brighter) than its surroundings
POLARITY_SHARE = 0.75
#: a defect whose rotated extents differ by less than this ratio has no direction to measure
ISOTROPIC_RATIO = 1.3
#: a direction within this many degrees of the image axes counts as axis-aligned
AXIS_TOLERANCE_DEG = 10.0
#: a class is axis-aligned (boxes drawn along the image axes, PCB traces) when this share of its elongated
#: defects is
AXIS_ALIGNED_SHARE = 0.6
#: an image is binarised (a black-and-white scan) when this share of its pixels is within BINARY_SPREAD grey
#: levels of its two Otsu class means and those means are near black and white
BINARY_PIXEL_SHARE = 0.9
BINARY_SPREAD = 24.0
BINARY_DARK_MAX, BINARY_BRIGHT_MIN = 60.0, 195.0
#: Otsu's threshold separates two surfaces (bottle and background, copper and substrate) when its between-class
#: variance is at least this share of the image's variance (Otsu's own measure of separability, eta); one noisy
#: surface gives 2 / pi = 0.64, fine textures 0.66-0.76, MVTec bottle 0.94, DeepPCB 1.0. Below it a foreground
#: split by Otsu's threshold would only split the noise, so no foreground is recommended
TWO_LEVEL_SEPARATION = 0.85
#: centre histogram: bins per axis
POSITION_BINS = 4
#: significant digits kept in statistics (byte-stable JSON and recipes)
DIGITS = 5


def rounded(value: float, digits: int = DIGITS) -> float:
    """``value`` to ``digits`` significant digits, as a plain float (stable text in JSON and YAML)."""
    value = float(value)
    if value == 0 or not np.isfinite(value):
        return 0.0 if value == 0 else value
    return float(f"{value:.{digits}g}")


def summary(values: Sequence[float]) -> Dict[str, float]:
    """``{n, mean, std, min, p10, p50, p90, max}`` of ``values`` (``{"n": 0}`` when empty)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"n": 0}
    p10, p50, p90 = np.percentile(v, [10, 50, 90])
    return {"n": int(v.size), "mean": rounded(v.mean()), "std": rounded(v.std()), "min": rounded(v.min()),
            "p10": rounded(p10), "p50": rounded(p50), "p90": rounded(p90), "max": rounded(v.max())}


@dataclass
class DefectStatistics:
    """Measured defects of a labelled set (see the module docstring); plain data, JSON-able via :meth:`to_dict`.

    Attributes:
        class_names: the set's classes; id ``k + 1`` is ``class_names[k]``.
        image_names: the images measured, in order.
        defects: one record per defect: ``image`` (index), ``class``, ``label`` (id), ``mask_source`` and the
            :data:`QUANTITIES` (None where not measurable, e.g. ``change`` without templates).
        classes: per class name with at least one defect, the summary (see :func:`summarise`).
        overall: the same over every defect.
        images: image-level facts: ``count``, ``binary`` (black-and-white scans), ``grey_mean``, ``binary_share``.
        notes: what could not be measured, in words.
    """

    class_names: List[str]
    image_names: List[str]
    defects: List[Dict[str, Any]]
    classes: Dict[str, Dict[str, Any]]
    overall: Dict[str, Any]
    images: Dict[str, Any]
    notes: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"class_names": list(self.class_names), "image_names": list(self.image_names),
                "images": self.images, "overall": self.overall, "classes": self.classes, "notes": list(self.notes),
                "defects": self.defects}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DefectStatistics":
        try:
            return cls(class_names=list(data["class_names"]), image_names=list(data["image_names"]),
                       defects=list(data["defects"]), classes=dict(data["classes"]), overall=dict(data["overall"]),
                       images=dict(data["images"]), notes=list(data.get("notes", [])))
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a DefectStatistics dict (missing {error})") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

    def values(self, quantity: str, class_name: Optional[str] = None) -> List[float]:
        """Every defect's ``quantity`` (of ``class_name`` only, if given), skipping unmeasured ones."""
        return [d[quantity] for d in self.defects
                if d.get(quantity) is not None and (class_name is None or d["class"] == class_name)]

    def counts_per_image(self, class_name: Optional[str] = None) -> List[int]:
        counts = [0] * len(self.image_names)
        for d in self.defects:
            if class_name is None or d["class"] == class_name:
                counts[d["image"]] += 1
        return counts


def _as_image_list(images, what: str) -> Optional[List[torch.Tensor]]:
    if images is None:
        return None
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"{what} must be (N, C, H, W) or a list of (C, H, W) uint8 tensors, got "
                             f"{tuple(images.shape)}")
        images = list(images)
    images = list(images)
    for k, image in enumerate(images):
        if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.dtype != torch.uint8 or \
                image.shape[0] not in (1, 3):
            raise TypeError(f"{what}[{k}] must be a (1 or 3, H, W) uint8 tensor")
    return images


def measure_defects(labelled: LabelledSet, ok_images=None, templates=None) -> DefectStatistics:
    """Measure every defect box of ``labelled`` (see the module docstring).

    Args:
        labelled: the images and boxes (and masks) to measure; images may differ in size.
        ok_images: defect-free images of the same kind (``(N, C, H, W)`` or a list of ``(C, H, W)`` uint8), for
            the image-level facts (is the surface a binarised scan? its grey level); default: ``labelled``'s.
        templates: one aligned defect-free ``(C, H, W)`` uint8 image per labelled image (DeepPCB's templates,
            or the OK images a synthetic set was painted on): masks are cut by difference where the set has none,
            the foreground is read where the defect lies on the template, and ``change`` is measured.

    Raises:
        ValueError / TypeError: naming the argument when ``templates`` does not match the images, or
            ``labelled`` has no defect box.
    """
    if not isinstance(labelled, LabelledSet):
        raise TypeError(f"labelled must be a LabelledSet, got {type(labelled).__name__}")
    templates = _as_image_list(templates, "templates")
    ok_images = _as_image_list(ok_images, "ok_images")
    if templates is not None:
        if len(templates) != len(labelled):
            raise ValueError(f"templates: {len(labelled)} images but {len(templates)} templates")
        for k, (image, template) in enumerate(zip(labelled.images, templates)):
            if tuple(image.shape[-2:]) != tuple(template.shape[-2:]):
                raise ValueError(f"templates[{k}] is {tuple(template.shape[-2:])} px but image "
                                 f"{labelled.names[k]!r} is {tuple(image.shape[-2:])} px")
    if sum(len(b) for b in labelled.boxes) == 0:
        raise ValueError(f"labelled has no defect box in its {len(labelled)} images: nothing to measure")
    defects: List[Dict[str, Any]] = []
    for i, image in enumerate(labelled.images):
        boxes = labelled.boxes[i]
        if len(boxes) == 0:
            continue
        mask = None if labelled.masks is None else labelled.masks[i]
        template = None if templates is None else templates[i]
        masks = image_defect_masks(image, boxes, mask, template)
        defects.extend(_measure_image(i, image, boxes, labelled.labels[i], masks, template, labelled.class_names))
    images = image_facts(ok_images) if ok_images is not None else image_facts(labelled.images, labelled.boxes)
    notes = _notes(labelled, defects, templates)
    if not images["two_levels"]:
        notes.append(f"the images show one surface (Otsu separation {images['otsu_separation']:.2f} < "
                     f"{TWO_LEVEL_SEPARATION}): a foreground by Otsu's threshold would split its noise, so none is "
                     "recommended and defects may land anywhere")
    return summarise(list(labelled.class_names), list(labelled.names), defects, images, notes)


def _measure_image(index: int, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                   masks: List[DefectMask], template: Optional[torch.Tensor], class_names) -> List[Dict[str, Any]]:
    import cv2

    height, width = image.shape[-2:]
    side = min(height, width)
    grey = grey_array(image)
    reference = image if template is None else template
    dark = estimate_foreground(reference[None], "otsu_dark")[0, 0].numpy()
    obj = estimate_foreground(reference[None], "otsu")[0, 0].numpy()
    reference_grey = None if template is None else grey_array(template)
    union = np.zeros((height, width), dtype=bool)
    for m in masks:
        union[m.top:m.top + m.mask.shape[0], m.left:m.left + m.mask.shape[1]] |= m.mask
    ring_px = max(2, int(round(side / 100)))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring_px + 1, 2 * ring_px + 1))
    records = []
    for box, label, m in zip(boxes.tolist(), labels.tolist(), masks):
        x1, y1, x2, y2 = m.box
        h, w = m.mask.shape
        wy1, wx1 = max(0, y1 - ring_px), max(0, x1 - ring_px)
        wy2, wx2 = min(height, y2 + ring_px), min(width, x2 + ring_px)
        local = np.zeros((wy2 - wy1, wx2 - wx1), dtype=np.uint8)
        local[y1 - wy1:y2 - wy1, x1 - wx1:x2 - wx1] = m.mask
        ring = cv2.dilate(local, disc).astype(bool) & ~local.astype(bool) & ~union[wy1:wy2, wx1:wx2]
        inside = grey[y1:y2, x1:x2][m.mask]
        ring_values = grey[wy1:wy2, wx1:wx2][ring]
        inside_mean = float(inside.mean())
        ring_mean = float(ring_values.mean()) if ring_values.size else None
        if template is not None:
            where_dark = dark[y1:y2, x1:x2][m.mask]
            where_object = obj[y1:y2, x1:x2][m.mask]
            change = inside_mean - float(reference_grey[y1:y2, x1:x2][m.mask].mean())
        else:
            where_dark = dark[wy1:wy2, wx1:wx2][ring] if ring_values.size else dark[y1:y2, x1:x2][m.mask]
            where_object = obj[wy1:wy2, wx1:wx2][ring] if ring_values.size else obj[y1:y2, x1:x2][m.mask]
            change = None
        points = np.argwhere(m.mask)[:, ::-1].astype(np.float32)  # (x, y)
        if len(points) >= 3:
            (_, _), (rw, rh), angle = cv2.minAreaRect(points)
            rw, rh = rw + 1.0, rh + 1.0  # pixel centres span one pixel less than the pixels do
        else:
            rw, rh, angle = float(w), float(h), 0.0
        if rh > rw:  # the long side's direction, 0..180 degrees from the x axis
            rw, rh, angle = rh, rw, angle + 90.0
        angle = float(angle) % 180.0
        label_edges = pixel_box(box, height, width)
        margin = None
        if m.source != "box" and label_edges is not None:
            lx1, ly1, lx2, ly2 = label_edges
            margin = ((x1 - lx1) + (y1 - ly1) + (lx2 - x2) + (ly2 - y2)) / 4 / side
        records.append({
            "image": index, "label": int(label), "class": class_names[int(label) - 1], "mask_source": m.source,
            "width": w / width, "height": h / height, "long": max(w, h) / side, "short": min(w, h) / side,
            "size": float(np.sqrt(w * h)) / side, "aspect": w / h, "area": m.area / (height * width),
            "box_area": float((box[2] - box[0]) * (box[3] - box[1])) / (height * width),
            "rotated_long": rw / side, "rotated_short": rh / side, "angle_deg": angle,
            "fill": min(1.0, m.area / max(rw * rh, 1.0)),
            "cx": (x1 + x2) / 2 / width, "cy": (y1 + y2) / 2 / height,
            "inside_mean": inside_mean, "ring_mean": ring_mean, "inside_std": float(inside.std()),
            "ring_std": float(ring_values.std()) if ring_values.size else None,
            "contrast": None if ring_mean is None else inside_mean - ring_mean, "change": change,
            "dark_share": float(where_dark.mean()), "object_share": float(where_object.mean()),
            "label_margin": margin,
        })
    return records


def image_facts(images: Sequence[torch.Tensor], boxes: Optional[Sequence[torch.Tensor]] = None) -> Dict[str, Any]:
    """Image-level facts of the surface: ``grey_mean`` (0..255); ``otsu_separation`` (Otsu's eta, median over the
    images) and ``two_levels`` (at least :data:`TWO_LEVEL_SEPARATION`: the images have two surfaces a foreground
    can pick); ``binary_share`` (pixels within :data:`BINARY_SPREAD` of their Otsu class's mean), the two class
    levels, and ``binary``: a black-and-white scan (DeepPCB), where a defect swaps the two levels.

    ``boxes`` (one ``(n, 4)`` tensor per image) leaves the defects out: a few strong defects on a plain surface
    would otherwise be the "second level" of the image."""
    from ..foreground import grey_levels

    means, shares, dark_means, bright_means, separations = [], [], [], [], []
    for k, image in enumerate(images):
        grey = grey_levels(image[None])[0]
        keep = torch.ones_like(grey, dtype=torch.bool)
        for box in ([] if boxes is None else boxes[k].tolist()):
            edges = pixel_box(box, *grey.shape)
            if edges is not None:
                keep[edges[1]:edges[3], edges[0]:edges[2]] = False
        grey = grey[keep] if bool(keep.any()) else grey.reshape(-1)
        threshold = otsu_threshold(grey.numpy())
        low, high = grey[grey <= threshold].float(), grey[grey > threshold].float()
        means.append(float(grey.float().mean()))
        variance = float(grey.float().var(unbiased=False))
        if low.numel() and high.numel() and variance > 0:
            w0 = low.numel() / grey.numel()
            separations.append(w0 * (1 - w0) * float(high.mean() - low.mean()) ** 2 / variance)
        else:
            separations.append(0.0)
        near = 0
        if low.numel():
            dark_means.append(float(low.mean()))
            near += int(((low - low.mean()).abs() <= BINARY_SPREAD).sum())
        if high.numel():
            bright_means.append(float(high.mean()))
            near += int(((high - high.mean()).abs() <= BINARY_SPREAD).sum())
        shares.append(near / grey.numel())
    share = float(np.mean(shares)) if shares else 0.0
    dark_mean = float(np.median(dark_means)) if dark_means else 0.0
    bright_mean = float(np.median(bright_means)) if bright_means else 255.0
    binary = share >= BINARY_PIXEL_SHARE and dark_mean <= BINARY_DARK_MAX and bright_mean >= BINARY_BRIGHT_MIN
    separation = float(np.median(separations)) if separations else 0.0
    return {"count": len(images), "grey_mean": rounded(np.mean(means)) if means else None,
            "otsu_separation": rounded(separation), "two_levels": bool(separation >= TWO_LEVEL_SEPARATION),
            "binary_share": rounded(share), "dark_level": rounded(dark_mean), "bright_level": rounded(bright_mean),
            "binary": bool(binary)}


def summarise(class_names: List[str], image_names: List[str], defects: List[Dict[str, Any]],
              images: Dict[str, Any], notes: List[str]) -> DefectStatistics:
    """Round the records and summarise them per class and overall (see :func:`class_summary`)."""
    for d in defects:
        for key, value in d.items():
            if isinstance(value, float):
                d[key] = rounded(value)
    stats = DefectStatistics(class_names=class_names, image_names=image_names, defects=defects, classes={},
                             overall={}, images=images, notes=notes)
    stats.overall = class_summary(stats, None)
    for name in class_names:
        if any(d["class"] == name for d in defects):
            stats.classes[name] = class_summary(stats, name)
    return stats


def class_summary(stats: DefectStatistics, class_name: Optional[str]) -> Dict[str, Any]:
    """The summary of one class (or every defect, ``class_name=None``): ``defects``, ``images_with``,
    a :func:`summary` per quantity, ``count_per_image`` (over every image) and its histogram, ``positions``
    (:data:`POSITION_BINS` x :data:`POSITION_BINS` counts, rows top to bottom), ``mask_sources``, and the
    recommendations: ``foreground`` (``"otsu_dark"``, ``"otsu_bright"``, ``"otsu"`` or None), ``polarity``
    (``"dark"``, ``"bright"``, ``"mixed"`` or None), ``axis_aligned`` (bool), ``wide_share`` (of the elongated
    axis-aligned defects, the share wider than tall)."""
    chosen = [d for d in stats.defects if class_name is None or d["class"] == class_name]
    counts = stats.counts_per_image(class_name)
    out: Dict[str, Any] = {"defects": len(chosen), "images_with": sum(c > 0 for c in counts)}
    for quantity in QUANTITIES:
        out[quantity] = summary([d[quantity] for d in chosen if d.get(quantity) is not None])
    out["count_per_image"] = summary(counts)
    out["count_per_defective_image"] = summary([c for c in counts if c > 0])
    histogram: Dict[str, int] = {}
    for c in counts:
        histogram[str(c)] = histogram.get(str(c), 0) + 1
    out["count_histogram"] = dict(sorted(histogram.items(), key=lambda kv: int(kv[0])))
    grid = np.zeros((POSITION_BINS, POSITION_BINS), dtype=int)
    for d in chosen:
        row = min(int(d["cy"] * POSITION_BINS), POSITION_BINS - 1)
        col = min(int(d["cx"] * POSITION_BINS), POSITION_BINS - 1)
        grid[row, col] += 1
    out["positions"] = grid.tolist()
    out["mask_sources"] = {s: sum(d["mask_source"] == s for d in chosen) for s in MASK_SOURCES
                           if any(d["mask_source"] == s for d in chosen)}
    n = max(len(chosen), 1)
    on_dark = sum(d["dark_share"] >= SIDE_SHARE for d in chosen) / n
    on_object = sum(d["object_share"] >= SIDE_SHARE for d in chosen) / n
    out["on_dark"], out["on_bright"], out["on_object"] = rounded(on_dark), rounded(1 - on_dark), rounded(on_object)
    if not stats.images.get("two_levels", True):
        out["foreground"] = None  # one surface: Otsu's threshold would split its noise, not where defects lie
    elif on_dark >= FOREGROUND_SHARE:
        out["foreground"] = "otsu_dark"
    elif 1 - on_dark >= FOREGROUND_SHARE:
        out["foreground"] = "otsu_bright"
    elif on_object >= FOREGROUND_SHARE:
        out["foreground"] = "otsu"
    else:
        out["foreground"] = None
    signed = [d["contrast"] for d in chosen if d.get("contrast") is not None]
    if signed:
        darker = sum(c < 0 for c in signed) / len(signed)
        out["darker_share"] = rounded(darker)
        out["polarity"] = "dark" if darker >= POLARITY_SHARE else "bright" if darker <= 1 - POLARITY_SHARE \
            else "mixed"
    else:
        out["darker_share"], out["polarity"] = None, None
    elongated = [d for d in chosen if d["rotated_long"] >= ISOTROPIC_RATIO * d["rotated_short"]]
    aligned = [d for d in elongated if min(d["angle_deg"] % 90.0, 90.0 - d["angle_deg"] % 90.0) <= AXIS_TOLERANCE_DEG]
    out["elongated"] = len(elongated)
    out["axis_aligned_share"] = rounded(len(aligned) / len(elongated)) if elongated else None
    # no elongated defect: nothing shows a direction, and square-ish shapes look the same turned or not
    out["axis_aligned"] = (len(aligned) / len(elongated) >= AXIS_ALIGNED_SHARE) if elongated else True
    out["wide_share"] = rounded(sum(d["aspect"] >= 1 for d in aligned) / len(aligned)) if aligned else None
    return out


def _notes(labelled: LabelledSet, defects: List[Dict[str, Any]], templates) -> List[str]:
    notes = []
    sources = {s: sum(d["mask_source"] == s for d in defects) for s in MASK_SOURCES}
    if sources["estimated"]:
        notes.append(f"{sources['estimated']} of {len(defects)} defects have no mask: it was estimated inside the "
                     "box (pixels that differ from the box's surroundings by more than an Otsu threshold)")
    if sources["box"]:
        notes.append(f"{sources['box']} of {len(defects)} defects stand out from nothing around them (or their box "
                     "fills the image): their mask is the whole box, so their size is the box's and their contrast "
                     "and shape are only rough")
    if templates is None:
        notes.append("no defect-free templates: the foreground side is read on the ring around each defect, and "
                     "the change against the OK surface ('change') is not measured")
    missing = [name for name in labelled.class_names if not any(d["class"] == name for d in defects)]
    if missing:
        notes.append(f"classes {missing} have no defect among the {len(labelled)} images: not measured, no branch")
    if labelled.channels == 3:
        notes.append("colour is not measured: contrast is on grey levels (ITU-R 601 luma)")
    notes.append("texture inside the defects is not measured: the transplant branch copies it, the calibrated "
                 "families do not")
    return notes


def load_statistics(source: Union[str, Mapping[str, Any], DefectStatistics]) -> DefectStatistics:
    """A :class:`DefectStatistics` from itself, its dict, or a ``statistics.json`` path (its ``"real"`` part)."""
    if isinstance(source, DefectStatistics):
        return source
    if isinstance(source, Mapping):
        return DefectStatistics.from_dict(source.get("real", source))
    with open(source) as handle:
        return load_statistics(json.load(handle))
