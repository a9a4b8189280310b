"""Measured statistics -> an ordinary operator recipe: :func:`fit_recipe` and :func:`write_recipe`.

The recipe is a ``one_of`` with one branch per measured class (weight: the class's share of the real defects,
label: the set's class id, ``class_names``: the set's classes), and each class branch combines two families:

- **transplant** of the class's real defects (``op: transplant`` over a ``layout: labelled`` bank naming the
  same K images: :mod:`defectgen.bank.labelled`), randomly flipped, scaled 0.8-1.25x (and turned, unless
  the class is axis-aligned), on the measured foreground. It has the real look but only the variety of K images;
- **calibrated shapes** (``op: region`` with a ``shape`` mask): sizes and aspect ratios drawn over the measured
  10th-90th percentiles, the measured foreground, the outline family picked by the measured fill ratio, and a
  fill whose contrast against the surroundings is the measured one (:func:`choose_fill`). It varies freely
  but only matches the numbers, not the look.

Within a class the transplant gets ``n / (n + variety_prior)`` of the weight (n: the class's real defects): the
more real examples there are, the more of the class's variety the transplant covers by itself. The measured
median of defects per image is written as the top-level ``defects_per_image`` (consumers paint that many
defects per image; ``build_op`` ignores it). Everything is rounded to a few significant digits and emitted in a
fixed order, so the same statistics give a byte-identical file.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from ..io.labelled.real import RealSpec
from .measure import ISOTROPIC_RATIO, DefectStatistics, load_statistics, rounded

#: the weight a calibrated family keeps in a class, in "real defects": a class with this many real defects is
#: split evenly between transplant and calibrated shapes
VARIETY_PRIOR = 10.0
#: an axis-aligned class gets a shape branch per orientation (wide / tall) when at least this share of its defects
#: is clearly wide (aspect >= ISOTROPIC_RATIO) and as many clearly tall
ORIENTATION_SHARE = 0.15
#: opacities below this make a defect hardly visible; the fitted range is clipped to [MIN_OPACITY, 1]
MIN_OPACITY = 0.05
#: shape outlines by the class's median fill ratio (mask area / rotated box area): at least the first number
FILL_SHAPES = ((0.85, ["square"]), (0.7, ["square", "ellipse"]), (0.55, ["ellipse", "blob"]),
               (0.0, ["blob", "polygon"]))
#: a binarised scan's defect swaps the two levels: the image itself, inverted (a 1 x 1 shuffle is the image)
INVERT_SOURCE = {"type": "draem_augment", "source": {"type": "shuffle", "grid_range": [1, 1]}, "ops": ["invert"],
                 "count": 1}


class FittedRecipe(dict):
    """The recipe (a plain ``dict``: what :func:`~defectgen.recipe.build_op` reads from YAML) plus the
    reasons it was built so: ``header`` (comment lines: what was measured) and, per class branch and per family,
    ``comments``; ``branches`` lists every leaf branch for the report (class, family, share of all defects,
    settings in words)."""

    def __init__(self, config: Mapping[str, Any], header: Sequence[str], comments: Dict[Tuple[int, ...], List[str]],
                 branches: List[Dict[str, Any]]):
        super().__init__(config)
        self.header = list(header)
        self.comments = dict(comments)
        self.branches = list(branches)


def fit_recipe(statistics: Union[DefectStatistics, Mapping[str, Any], str], real_spec: Optional[RealSpec] = None,
               variety_prior: float = VARIETY_PRIOR, transplant: bool = True) -> FittedRecipe:
    """An operator recipe that makes defects like the measured ones (see the module docstring).

    Args:
        statistics: :func:`~defectgen.fit.measure_defects`' result, its dict, or a ``statistics.json`` path.
        real_spec: the real images measured, as the transplant branches' bank should read them again (its root
            absolute; ``format`` and ``split`` resolved). Required with ``transplant=True``.
        variety_prior: see :data:`VARIETY_PRIOR`.
        transplant: add the transplant branches; False gives calibrated shapes only (a class whose contrast no
            built-in fill can make then has no branch, and is listed in the header).

    Raises:
        ValueError: no class with a defect, or no branch at all could be made; ``transplant`` without
            ``real_spec``.
    """
    stats = load_statistics(statistics)
    if transplant and real_spec is None:
        raise ValueError("fit_recipe: transplant branches need real_spec (the real images to cut defects from)")
    if not isinstance(variety_prior, (int, float)) or variety_prior < 0:
        raise ValueError(f"variety_prior must be a number >= 0, got {variety_prior!r}")
    spec = real_spec.resolved() if real_spec is not None else None
    measured = [name for name in stats.class_names if name in stats.classes]
    if not measured:
        raise ValueError("fit_recipe: the statistics hold no defect")
    total = sum(stats.classes[name]["defects"] for name in measured)
    binary = bool(stats.images.get("binary"))
    class_ops, class_weights, comments, branches, skipped = [], [], {}, [], []
    for name in measured:
        s = stats.classes[name]
        label = stats.class_names.index(name) + 1
        share = s["defects"] / total
        families: List[Tuple[Dict[str, Any], float, List[str], str]] = []
        generic, generic_notes = shape_branches(stats, name, label, binary)
        if transplant:
            weight = s["defects"] / (s["defects"] + variety_prior) if generic else 1.0
            families.append((transplant_branch(spec, name, s, binary), weight,
                             [f"transplant: the {s['defects']} real '{name}' defects of the K images, cut along their "
                              f"masks ({_sources(s)}); weight n / (n + {variety_prior:g}) = {weight:.3g} of the class"
                              if generic else f"transplant: the {s['defects']} real '{name}' defects of the K images "
                              f"({_sources(s)}); the whole class, since no calibrated shape can make it"],
                             "transplant"))
        rest = 1.0 - (families[0][1] if families else 0.0)
        group_total = sum(g[1] for g in generic)
        for config, group_share, lines, family in generic:
            families.append((config, rest * group_share / group_total, lines, family))
        if not families:
            skipped.append(f"{name}: {'; '.join(generic_notes)}")
            continue
        index = len(class_ops)
        comments[(index,)] = [f"class {label} '{name}': {s['defects']} of the {total} real defects "
                              f"({100 * share:.3g} %), in {s['images_with']} of {len(stats.image_names)} images"] + \
            generic_notes
        if len(families) == 1:
            class_op = families[0][0]
            comments[(index,)] += families[0][2]
        else:
            weights = [rounded(w, 4) for _, w, _, _ in families]
            class_op = {"op": "one_of", "weights": weights, "ops": [f[0] for f in families]}
            for k, family in enumerate(families):
                comments[(index, k)] = family[2]
        class_ops.append(class_op)
        class_weights.append(rounded(share, 4))
        for config, weight, lines, family in families:
            branches.append({"class": name, "label": label, "family": family,
                             "share": rounded(share * (weight if len(families) > 1 else 1.0), 4),
                             "settings": _describe(config)})
    if not class_ops:
        raise ValueError("fit_recipe: no branch could be made: " + "; ".join(skipped))
    per_image = stats.overall["count_per_defective_image"]
    defects_per_image = max(1, int(math.floor(per_image["p50"] + 0.5)))
    config: Dict[str, Any] = {"class_names": list(stats.class_names), "defects_per_image": defects_per_image}
    if len(class_ops) == 1:
        config.update(class_ops[0])
        comments = {key[1:]: lines for key, lines in comments.items()}
    else:
        config.update({"op": "one_of", "p": 1.0, "weights": class_weights, "ops": class_ops})
    header = recipe_header(stats, spec, defects_per_image, skipped, variety_prior, transplant)
    return FittedRecipe(config, header, comments, branches)


def shape_branches(stats: DefectStatistics, name: str, label: int, binary: bool
                   ) -> Tuple[List[Tuple[Dict[str, Any], float, List[str], str]], List[str]]:
    """The calibrated shape branches of one class: ``([(config, share of the class, comment lines, family)],
    notes)``; no branch (and a note saying why) when no built-in fill gives the class's contrast."""
    s = stats.classes[name]
    fill = choose_fill(s, binary)
    if fill is None:
        return [], [_no_fill_reason(s)]
    source, blend, fill_note = fill
    defects = [d for d in stats.defects if d["class"] == name]
    boxes_only = s["mask_sources"].get("box", 0) > len(defects) / 2
    shapes = ["square"] if boxes_only else next(kinds for low, kinds in FILL_SHAPES
                                                if s["fill"]["p50"] >= low)
    shape_note = ("outline: rectangles (most masks are the label boxes)" if boxes_only else
                  f"outline: {', '.join(shapes)} (median fill ratio {s['fill']['p50']:.2f})")
    groups: List[Tuple[str, List[Dict[str, Any]], List[float], Tuple[float, float]]] = []
    if s["axis_aligned"]:
        # lying and standing defects (PCB opens along horizontal and vertical traces): one branch each, since one
        # log-uniform aspect range from tall to wide would make mostly the squares neither of them is
        lying = sum(d["aspect"] >= ISOTROPIC_RATIO for d in defects)
        standing = sum(d["aspect"] <= 1 / ISOTROPIC_RATIO for d in defects)
        if min(lying, standing) >= ORIENTATION_SHARE * len(defects):
            split = (("wide", [d for d in defects if d["aspect"] >= 1]),
                     ("tall", [d for d in defects if d["aspect"] < 1]))
        else:
            split = (("aligned", defects),)
        for family, chosen in split:
            groups.append((family, chosen, [d["size"] for d in chosen], (0.0, 0.0)))
        aspects = {family: [d["aspect"] for d in chosen] for family, chosen, _, _ in groups}
    else:
        groups.append(("turned", defects, [math.sqrt(d["rotated_long"] * d["rotated_short"]) for d in defects],
                       (-180.0, 180.0)))
        aspects = {"turned": [d["rotated_long"] / d["rotated_short"] for d in defects]}
    foreground = s["foreground"]
    out = []
    for family, chosen, sizes, angles in groups:
        size_range = _percentile_range(sizes, 1e-4, 1.0)
        aspect_range = _percentile_range(aspects[family], 1e-3, 1e3)
        mask = {"type": "shape", "shapes": shapes, "size_frac_range": list(size_range),
                "aspect_ratio_range": list(aspect_range), "angle_deg_range": list(angles)}
        config: Dict[str, Any] = {"op": "region", "label": label}
        if foreground is not None:
            config["foreground"] = foreground
        config.update({"mask": mask, "source": source, "blend": blend})
        where = {"wide": "wider than tall, along the image axes", "tall": "taller than wide, along the image axes",
                 "aligned": "along the image axes",
                 "turned": "at any angle (the class is not axis-aligned)"}[family]
        lines = [f"calibrated shapes, {where}: {len(chosen)} of the {len(defects)} real defects; size "
                 f"{_fmt(size_range[0])}-{_fmt(size_range[1])} of the side, aspect {_fmt(aspect_range[0])}-"
                 f"{_fmt(aspect_range[1])} (10th-90th percentiles); {shape_note}",
                 f"foreground: {foreground or 'anywhere'} ({_foreground_words(s)}); {fill_note}"]
        out.append((config, len(chosen) / len(defects), lines, f"shapes ({family})"))
    return out, []


def choose_fill(s: Mapping[str, Any], binary: bool) -> Optional[Tuple[Dict[str, Any], Any, str]]:
    """``(source, blend, reason)`` whose fill gives the class's measured contrast, or None when none can.

    A region blended at opacity ``a`` over surroundings of grey ``B`` with a fill ``F`` changes them by
    ``a * (F - B)``; the measured contrast ``c`` (inside minus ring, at the 10th / 50th / 90th percentile) then
    asks for ``a = c / (F - B)``, with ``B`` the class's median ring grey. The built-in fills with a known ``F``:

    - binarised scans (:func:`~defectgen.fit.measure.image_facts`): the image inverted, replaced (a PCB defect
      swaps copper and substrate: the contrast is the full swing, whatever was measured on a ring half of which
      may be the other level);
    - ``constant`` ``gray`` (``F = 128``): a flat stain, used when the median contrast needs an opacity <= 1;
    - the image inverted (``F = 255 - B``, twice as far from ``B`` as grey): for stronger contrast, capped at
      opacity 1 (the header says how much of the contrast it reaches).

    Both move a pixel towards (or past) mid-grey, so neither can make a dark defect on a dark surface or a bright
    one on a bright surface; then there is no calibrated fill (None) and the transplant carries the class.
    """
    if binary:
        return (dict(INVERT_SOURCE), "replace",
                "fill: the image inverted, replacing it (binarised scan: a defect swaps the two levels)")
    contrast, ring = s.get("contrast", {}), s.get("ring_mean", {})
    if not contrast.get("n") or not ring.get("n"):
        return None
    background, median = ring["p50"], contrast["p50"]
    if median == 0:
        return None
    candidates = [("gray", {"type": "constant", "fill": "gray"}, 128.0),
                  ("inverted", {"type": "draem_augment", "source": {"type": "shuffle", "grid_range": [1, 1]},
                                "ops": ["invert"], "count": 1}, 255.0 - background)]
    usable = [(name, source, fill - background) for name, source, fill in candidates
              if (fill - background) * median > 0 and abs(fill - background) >= 1.0]
    if not usable:
        return None
    name, source, step = next(((n, src, st) for n, src, st in usable if median / st <= 1.0), usable[-1])
    lo, hi = sorted((contrast["p10"] / step, contrast["p90"] / step))
    lo = min(max(lo, MIN_OPACITY), 1.0)
    hi = min(max(hi, lo), 1.0)
    reach = min(1.0, step / median)  # the share of the median contrast that opacity 1 gives
    blend = {"type": "opacity", "opacity_range": [rounded(lo, 3), rounded(hi, 3)]}
    words = "mid-grey" if name == "gray" else "the image inverted"
    note = (f"fill: {words} at opacity {rounded(lo, 3):g}-{rounded(hi, 3):g}, so a surface of grey "
            f"{background:.0f} changes by {rounded(lo * step, 3):g}..{rounded(hi * step, 3):g} "
            f"(measured contrast {contrast['p10']:.3g} / {median:.3g} / {contrast['p90']:.3g})")
    if reach < 1.0 - 1e-6:
        note += f"; at full opacity it reaches only {100 * reach:.0f} % of the median contrast"
    return source, blend, note


def _no_fill_reason(s: Mapping[str, Any]) -> str:
    contrast, ring = s.get("contrast", {}), s.get("ring_mean", {})
    if not contrast.get("n"):
        return "no calibrated shapes: the contrast could not be measured (no surroundings)"
    side = "darker" if contrast["p50"] < 0 else "brighter"
    return (f"no calibrated shapes: the defects are {side} than surroundings of grey {ring['p50']:.0f} (median "
            f"contrast {contrast['p50']:.3g}), and the built-in fills (mid-grey, the image inverted) can only "
            "move a pixel towards mid-grey; the transplant carries the class")


def transplant_branch(spec: RealSpec, name: str, s: Mapping[str, Any], binary: bool) -> Dict[str, Any]:
    """The transplant of one class's real defects, from the K images ``spec`` chooses."""
    bank: Dict[str, Any] = {"layout": "labelled", **spec.to_config(), "classes": [name]}
    config: Dict[str, Any] = {"op": "transplant", "label": 1}  # label 1: the bank's type ids are the set's class ids
    if s["foreground"] is not None:
        config["foreground"] = s["foreground"]
    config["bank"] = bank
    if binary:  # a soft edge or brightness matching turns a black-and-white defect into a grey smudge
        config.update({"blend": "replace", "match_brightness": False})
    else:
        config.update({"blend": "feather", "match_brightness": True})
    config["angle_deg_range"] = [0.0, 0.0] if s["axis_aligned"] else [-180.0, 180.0]
    config["scale_range"] = [0.8, 1.25]
    return config


def recipe_header(stats: DefectStatistics, spec: Optional[RealSpec], defects_per_image: int, skipped: List[str],
                  variety_prior: float, transplant: bool) -> List[str]:
    """The comment lines above the recipe: where the defects came from and what was measured."""
    lines = ["Fitted by `defectgen fit`: defects like the real ones measured below (defectgen.fit; see docs/fit.md)."]
    if spec is not None:
        chosen = f"K={spec.count} images chosen with seed {spec.seed}" if spec.count is not None else "every image"
        held = f", every {spec.test_every}th held out first" if spec.test_every else ""
        lines.append(f"Real defects: {chosen} of {spec.root} (format {spec.format}, split "
                     f"{spec.split or '-'}{held}); statistics.json lists them.")
    images = stats.images
    lines.append(f"{len(stats.image_names)} images, {stats.overall['defects']} defects; surface: "
                 + ("binarised scan (black and white)" if images.get("binary") else
                    f"grey mean {images.get('grey_mean')}"))
    lines.append("Measured (10th / 50th / 90th percentile; sizes as fractions of the image side):")
    for name in stats.class_names:
        if name not in stats.classes:
            continue
        s = stats.classes[name]
        lines.append(f"  {name}: {s['defects']} defects; size {_triple(s['size'])}, aspect {_triple(s['aspect'])}, "
                     f"area {_triple(s['area'])}, contrast {_triple(s['contrast'])}, on {_foreground_words(s)}, "
                     f"{'axis-aligned' if s['axis_aligned'] else 'at any angle'}; masks: {_sources(s)}")
    count = stats.overall["count_per_defective_image"]
    lines.append(f"Defects per image (images with any): {_triple(count)}, {count['min']:g}-{count['max']:g} -> "
                 f"defects_per_image: {defects_per_image} (the rounded median; build_op ignores it, training "
                 "sources paint that many per image)")
    margin = stats.overall.get("label_margin", {})
    if margin.get("n") and margin["p50"] * 640 >= 0.5:  # under half a pixel at 640 px: tight boxes
        lines.append(f"Label boxes reach {_fmt(margin['p50'])} of the side past the defects (median per side): "
                     f"train with a box margin of that much (e.g. --box-margin {margin['p50'] * 640:.3g} at 640 px)")
    lines.append("Weights: each class branch its share of the real defects; within a class "
                 + (f"the transplant n / (n + {variety_prior:g}) (n: its real defects), calibrated shapes the rest"
                    if transplant else "calibrated shapes only (no transplant)"))
    mixed = [name for name, s in stats.classes.items() if s.get("polarity") == "mixed"]
    if mixed:
        lines.append(f"Mixed polarity ({', '.join(mixed)}): darker and brighter parts; the mean contrast hides them "
                     "(see the grey spread inside in the report), the calibrated fill follows the median only")
    lines.extend(f"Not made: {s}" for s in skipped)
    return lines


def recipe_text(recipe: FittedRecipe) -> str:
    """The recipe as YAML text with its comments (deterministic: the same recipe gives the same bytes)."""
    header = getattr(recipe, "header", [])
    comments = getattr(recipe, "comments", {})
    out = [f"# {line}".rstrip() for line in header]
    out.extend(_comment_lines(comments.get((), []), 0))  # a recipe of one class: that class's reasons
    top = {k: v for k, v in recipe.items() if k != "ops"}
    for key, value in top.items():
        out.append(_dump({key: value}, 0).rstrip("\n"))
    if "ops" in recipe:
        out.append("ops:")
        for i, op in enumerate(recipe["ops"]):
            out.extend(_comment_lines(comments.get((i,), []), 2))
            if op.get("op") == "one_of" and (i, 0) in comments:
                inner = {k: v for k, v in op.items() if k != "ops"}
                first = True
                for key, value in inner.items():
                    text = _dump({key: value}, 4).rstrip("\n")
                    out.append(("  - " + text.lstrip()) if first else text)
                    first = False
                out.append("    ops:")
                for k, leaf in enumerate(op["ops"]):
                    out.extend(_comment_lines(comments.get((i, k), []), 6))
                    out.append(_dump([leaf], 6).rstrip("\n"))
            else:
                out.append(_dump([op], 2).rstrip("\n"))
    text = "\n".join(out) + "\n"
    if yaml.safe_load(text) != _plain(recipe):  # the comments must never change what the recipe says
        raise AssertionError("recipe_text: the YAML text does not read back as the recipe")
    return text


def write_recipe(recipe: FittedRecipe, path) -> None:
    """Write :func:`recipe_text` to ``path`` (atomically: a reader never sees half a recipe)."""
    from ..io.atomic import write_text_atomic

    write_text_atomic(path, recipe_text(recipe))


# -- helpers ------------------------------------------------------------------------------------------------------
def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _dump(value, indent: int) -> str:
    value = _plain(value)
    # flow style for the innermost lists and mappings ("size_frac_range: [0.01, 0.03]"), block style above them;
    # a mapping of scalars alone would come out as one flow line ("{p: 1.0}"), so it is written in block style
    scalars_only = isinstance(value, dict) and not any(isinstance(v, (dict, list)) for v in value.values())
    text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False if scalars_only else None,
                          width=118 - indent, allow_unicode=False)
    return "".join(" " * indent + line if line.strip() else line for line in text.splitlines(keepends=True))


def _comment_lines(lines: Sequence[str], indent: int) -> List[str]:
    return [" " * indent + f"# {line}" for line in lines]


def _percentile_range(values: Sequence[float], low: float, high: float) -> Tuple[float, float]:
    """The 10th-90th percentiles of ``values`` (a 10 % band around a single value), clipped to [low, high]."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    lo, hi = (float(x) for x in np.percentile(v, [10, 90]))
    if hi <= lo * 1.02:
        lo, hi = lo / 1.05, hi * 1.05
    lo, hi = min(max(lo, low), high), min(max(hi, low), high)
    return rounded(lo, 3), rounded(hi, 3)


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _triple(s: Mapping[str, Any]) -> str:
    if not s.get("n"):
        return "-"
    return f"{_fmt(s['p10'])} / {_fmt(s['p50'])} / {_fmt(s['p90'])}"


def _sources(s: Mapping[str, Any]) -> str:
    return ", ".join(f"{n} {source}" for source, n in s["mask_sources"].items())


def _foreground_words(s: Mapping[str, Any]) -> str:
    return f"dark side {100 * s['on_dark']:.0f} %, bright {100 * s['on_bright']:.0f} %"


def _describe(config: Mapping[str, Any]) -> str:
    """A branch's settings in a few words, for the report's table."""
    if config["op"] == "transplant":
        bank = config["bank"]
        return (f"real defects of {bank.get('count', 'all')} images, classes {bank['classes']}, foreground "
                f"{config.get('foreground') or 'anywhere'}, blend {config['blend']}, angle {config['angle_deg_range']}")
    mask, blend = config["mask"], config["blend"]
    source = config["source"]
    fill = "gray" if source.get("fill") == "gray" else "image inverted"
    blend_words = blend if isinstance(blend, str) else f"opacity {blend['opacity_range']}"
    return (f"{'/'.join(mask['shapes'])}, size {mask['size_frac_range']}, aspect {mask['aspect_ratio_range']}, "
            f"angle {mask['angle_deg_range']}, foreground {config.get('foreground') or 'anywhere'}, fill {fill}, "
            f"{blend_words}")
