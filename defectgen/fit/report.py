"""The fit's report: ``report.md`` (real vs synthetic tables, the recipe's branches, what was not measured),
histograms side by side (``plots/*.png``, with matplotlib, an optional extra) and two preview grids.

- ``preview.png``: per class, crops of real defects beside crops of synthetic ones, at the same relative scale
  (each crop is three times the defect's long side, at least a tenth of the image), so size, shape and contrast
  can be compared by eye;
- ``preview_recipe.png``: :func:`defectgen.preview.preview_grid` of the fitted recipe on a few OK images.

Without matplotlib the report is written without the histograms and says so.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence

import cv2
import numpy as np
import torch

from ..io.labelled import LabelledSet
from .measure import DefectStatistics

#: the rows of the real-vs-synthetic tables: (quantity, words, scale for display)
TABLE_ROWS = (("size", "size (geometric mean side / image side)", 1.0),
              ("long", "long side / image side", 1.0), ("short", "short side / image side", 1.0),
              ("aspect", "aspect (width / height)", 1.0), ("area", "area / image area", 1.0),
              ("fill", "fill (mask / rotated box)", 1.0), ("contrast", "contrast (inside - ring, grey levels)", 1.0),
              ("ring_mean", "surroundings' grey", 1.0), ("inside_std", "grey spread inside", 1.0),
              ("ring_std", "grey spread of the surroundings", 1.0), ("change", "change against the template", 1.0),
              ("label_margin", "label box margin / image side", 1.0))
#: preview crops per class and side, and their size in pixels
PREVIEW_CROPS = 6
PREVIEW_TILE = 96


def write_report(out: Path, real: DefectStatistics, synthetic: Optional[DefectStatistics], recipe,
                 real_set: LabelledSet, synthetic_set: Optional[LabelledSet], settings: Mapping[str, Any],
                 recipe_preview: Optional[np.ndarray] = None) -> List[Path]:
    """Write ``report.md``, the plots and the previews into ``out``; returns the files written."""
    out = Path(out)
    files: List[Path] = []
    plots, plot_note = write_plots(out / "plots", real, synthetic)
    files.extend(plots)
    preview = out / "preview.png"
    _save(preview_crops(real_set, real, synthetic_set, synthetic), preview)
    files.append(preview)
    if recipe_preview is not None:
        _save(recipe_preview, out / "preview_recipe.png")
        files.append(out / "preview_recipe.png")
    text = report_text(real, synthetic, recipe, settings, [p.relative_to(out).as_posix() for p in files], plot_note)
    from ..io.atomic import write_text_atomic

    write_text_atomic(out / "report.md", text)
    return [out / "report.md"] + files


def _save(array: np.ndarray, path: Path) -> None:
    from ..io.atomic import encode_png, write_bytes_atomic

    write_bytes_atomic(path, encode_png(array))


# -- markdown -----------------------------------------------------------------------------------------------------
def _cell(s: Optional[Mapping[str, Any]], scale: float = 1.0) -> str:
    if not s or not s.get("n"):
        return "-"
    return " / ".join(f"{s[k] * scale:.3g}" for k in ("p10", "p50", "p90"))


def _table(real: Mapping[str, Any], synthetic: Optional[Mapping[str, Any]]) -> List[str]:
    head = "| | real (10th / 50th / 90th pct) |" + (" synthetic |" if synthetic is not None else "")
    rule = "|---|---|" + ("---|" if synthetic is not None else "")
    lines = [head, rule]

    def row(words: str, a: str, b: Optional[str]) -> None:
        lines.append(f"| {words} | {a} |" + (f" {b} |" if synthetic is not None else ""))

    row("defects", str(real["defects"]), str(synthetic["defects"]) if synthetic else None)
    row("defects per image (all images)", _cell(real["count_per_image"]),
        _cell(synthetic["count_per_image"]) if synthetic else None)
    row("defects per image (images with any)", _cell(real["count_per_defective_image"]),
        _cell(synthetic["count_per_defective_image"]) if synthetic else None)
    for quantity, words, scale in TABLE_ROWS:
        if not real.get(quantity, {}).get("n") and not (synthetic and synthetic.get(quantity, {}).get("n")):
            continue
        row(words, _cell(real.get(quantity), scale), _cell(synthetic.get(quantity), scale) if synthetic else None)
    row("on the dark side of Otsu's threshold", f"{100 * real['on_dark']:.0f} %",
        f"{100 * synthetic['on_dark']:.0f} %" if synthetic else None)
    row("darker than the surroundings", "-" if real.get("darker_share") is None else
        f"{100 * real['darker_share']:.0f} %",
        ("-" if synthetic.get("darker_share") is None else f"{100 * synthetic['darker_share']:.0f} %")
        if synthetic else None)
    row("axis-aligned (of the elongated)", "-" if real.get("axis_aligned_share") is None else
        f"{100 * real['axis_aligned_share']:.0f} %",
        ("-" if synthetic.get("axis_aligned_share") is None else f"{100 * synthetic['axis_aligned_share']:.0f} %")
        if synthetic else None)
    row("recommended foreground", str(real["foreground"]), str(synthetic["foreground"]) if synthetic else None)
    return lines


def report_text(real: DefectStatistics, synthetic: Optional[DefectStatistics], recipe, settings: Mapping[str, Any],
                files: Sequence[str], plot_note: Optional[str]) -> str:
    """The markdown report (see the module docstring)."""
    lines = ["# Defects fitted to real ones (`defectgen fit`)", ""]
    lines += [f"- {key}: {value}" for key, value in settings.items()]
    lines += ["", f"Real images measured ({len(real.image_names)}): " + ", ".join(f"`{n}`" for n in real.image_names),
              ""]
    lines += ["## The recipe (`recipe.yaml`)", ""]
    lines += [f"    {line}" for line in getattr(recipe, "header", [])]
    lines += ["", "| class | id | family | share of all defects | settings |", "|---|---|---|---|---|"]
    for branch in getattr(recipe, "branches", []):
        lines.append(f"| {branch['class']} | {branch['label']} | {branch['family']} | {100 * branch['share']:.3g} % | "
                     f"{branch['settings']} |")
    lines += ["", f"`defects_per_image: {recipe.get('defects_per_image')}` (the real median of defects per image "
              "with any)."]
    lines += ["", "## Real vs synthetic, every class", ""]
    if synthetic is None:
        lines += ["No OK images were given (`--ok`), so no synthetic defects were made or measured.", ""]
    else:
        passes = recipe.get("defects_per_image") or 1
        lines += [f"Synthetic: {len(synthetic.image_names)} images the recipe made on OK images ({passes} "
                  f"operator pass{'es' if passes > 1 else ''} per image, as `defects_per_image` asks), measured by "
                  "the same `measure_defects` as the real ones (masks taken the same way: the operator's own only "
                  "where the real defects had masks).", ""]
    lines += _table(real.overall, synthetic.overall if synthetic else None)
    for name in real.class_names:
        if name not in real.classes:
            continue
        lines += ["", f"## Class `{name}`", ""]
        lines += _table(real.classes[name], synthetic.classes.get(name) if synthetic else None)
    lines += ["", "## What was not measured, or only roughly", ""]
    lines += [f"- {note}" for note in real.notes]
    if plot_note:
        lines.append(f"- {plot_note}")
    lines += ["", "## Files", ""]
    lines += ["- `recipe.yaml`: the operator recipe (use it with `--recipe` in preview, generate, train, ablate)",
              "- `statistics.json`: every measured defect, real and synthetic, the summaries and the chosen images"]
    lines += [f"- `{f}`" for f in files]
    return "\n".join(lines) + "\n"


# -- plots --------------------------------------------------------------------------------------------------------
def write_plots(folder: Path, real: DefectStatistics, synthetic: Optional[DefectStatistics]):
    """Histograms of real vs synthetic (size, aspect, count per image, contrast, area) and a centre scatter:
    ``plots/all.png`` and one ``plots/<class>.png`` per class. Returns ``(files, note)``; without matplotlib no
    file and a note saying so."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return [], "matplotlib is not installed (the optional extra): no histograms were drawn"
    files = []
    for name in [None] + [n for n in real.class_names if n in real.classes]:
        figure = Figure(figsize=(13, 7.5), dpi=80)
        FigureCanvasAgg(figure)
        axes = figure.subplots(2, 3)
        _histogram(axes[0, 0], real, synthetic, name, "size", "size (geometric mean side / image side)")
        _histogram(axes[0, 1], real, synthetic, name, "aspect", "aspect width / height (log scale)", log=True)
        _counts(axes[0, 2], real, synthetic, name)
        _histogram(axes[1, 0], real, synthetic, name, "contrast", "contrast: inside - ring (grey levels)")
        _histogram(axes[1, 1], real, synthetic, name, "area", "area / image area (log scale)", log=True)
        _positions(axes[1, 2], real, synthetic, name)
        figure.suptitle(f"{'every class' if name is None else name}: real vs synthetic")
        # fixed margins: tight_layout measured every label and took longer than drawing the figure
        figure.subplots_adjust(left=0.05, right=0.98, bottom=0.08, top=0.9, wspace=0.25, hspace=0.35)
        path = folder / f"{'all' if name is None else _safe(name)}.png"
        folder.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, metadata={"Software": None})
        files.append(path)
    return files, None


def _safe(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name) or "class"


def _histogram(ax, real, synthetic, name, quantity, title, log=False):
    series = [np.asarray(real.values(quantity, name), dtype=float)]
    labels = ["real"]
    if synthetic is not None:
        series.append(np.asarray(synthetic.values(quantity, name), dtype=float))
        labels.append("synthetic")
    if log:
        series = [np.log10(np.clip(s, 1e-9, None)) for s in series]
    joined = np.concatenate([s for s in series if s.size] or [np.zeros(1)])
    bins = np.linspace(joined.min(), joined.max() if joined.max() > joined.min() else joined.min() + 1, 16)
    present = [(s, lab) for s, lab in zip(series, labels) if s.size]
    if present:
        ax.hist([s for s, _ in present], bins=bins, density=True, label=[lab for _, lab in present],
                color=["tab:blue", "tab:orange"][:len(present)])
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_xlabel("log10", fontsize=8)


def _counts(ax, real, synthetic, name):
    series = [np.asarray(real.counts_per_image(name))]
    labels = ["real"]
    if synthetic is not None:
        series.append(np.asarray(synthetic.counts_per_image(name)))
        labels.append("synthetic")
    top = max(int(s.max()) for s in series) if any(s.size for s in series) else 1
    bins = np.arange(-0.5, top + 1.5, 1.0)
    ax.hist(series, bins=bins, density=True, label=labels, color=["tab:blue", "tab:orange"][:len(series)])
    ax.legend(fontsize=8)
    ax.set_title("defects per image", fontsize=10)


def _positions(ax, real, synthetic, name):
    ax.scatter(real.values("cx", name), real.values("cy", name), s=10, label="real", color="tab:blue")
    if synthetic is not None:
        ax.scatter(synthetic.values("cx", name), synthetic.values("cy", name), s=6, label="synthetic",
                   color="tab:orange", alpha=0.6)
    ax.set_xlim(0, 1)
    ax.set_ylim(1, 0)  # image rows grow downwards
    ax.set_aspect("equal")
    ax.legend(fontsize=8)
    ax.set_title("defect centres (x, y as fractions of the image)", fontsize=10)


# -- preview crops ------------------------------------------------------------------------------------------------
def _rgb(image: torch.Tensor) -> np.ndarray:
    array = image.detach().cpu()
    if array.shape[0] == 1:
        array = array.expand(3, -1, -1)
    return np.ascontiguousarray(array.permute(1, 2, 0).numpy())


def _crop(image: torch.Tensor, record: Mapping[str, Any]) -> np.ndarray:
    """A square crop centred on the defect, three times its long side (at least a tenth of the image), as a
    ``PREVIEW_TILE`` tile with the defect's box drawn in green."""
    height, width = image.shape[-2:]
    cx, cy = record["cx"] * width, record["cy"] * height
    w, h = record["width"] * width, record["height"] * height
    side = int(round(min(max(3 * max(w, h), 0.1 * min(height, width), 8), min(height, width))))
    x0 = int(round(min(max(cx - side / 2, 0), width - side)))
    y0 = int(round(min(max(cy - side / 2, 0), height - side)))
    crop = _rgb(image)[y0:y0 + side, x0:x0 + side]
    scale = PREVIEW_TILE / side
    tile = cv2.resize(crop, (PREVIEW_TILE, PREVIEW_TILE),
                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
    tile = np.ascontiguousarray(tile)
    bx1, by1 = (cx - w / 2 - x0) * scale, (cy - h / 2 - y0) * scale
    bx2, by2 = (cx + w / 2 - x0) * scale, (cy + h / 2 - y0) * scale
    cv2.rectangle(tile, (int(bx1) - 1, int(by1) - 1), (int(np.ceil(bx2)), int(np.ceil(by2))), (0, 200, 0), 1)
    return tile


def _spread(items: Sequence[Any], count: int) -> List[Any]:
    """``count`` items spread evenly over ``items`` (all of them when there are fewer)."""
    if len(items) <= count:
        return list(items)
    return [items[int(k * len(items) / count)] for k in range(count)]


def preview_crops(real_set: LabelledSet, real: DefectStatistics, synthetic_set: Optional[LabelledSet],
                  synthetic: Optional[DefectStatistics]) -> np.ndarray:
    """One row per measured class: up to :data:`PREVIEW_CROPS` real defect crops, then as many synthetic ones."""
    gutter, title = 4, 150
    names = [n for n in real.class_names if n in real.classes]
    columns = PREVIEW_CROPS * (2 if synthetic is not None else 1)
    header = 22
    grid = np.full((header + len(names) * (PREVIEW_TILE + gutter) + gutter,
                    title + columns * (PREVIEW_TILE + gutter) + (3 * gutter if synthetic is not None else 0) + gutter,
                    3), 255, dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(grid, "real", (title, 15), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    synthetic_left = title + PREVIEW_CROPS * (PREVIEW_TILE + gutter) + 3 * gutter
    if synthetic is not None:
        cv2.putText(grid, "synthetic (fitted recipe)", (synthetic_left, 15), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for row, name in enumerate(names):
        top = header + row * (PREVIEW_TILE + gutter)
        cv2.putText(grid, name[:20], (gutter, top + PREVIEW_TILE // 2), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        sides = [(real_set, real, title)]
        if synthetic is not None and synthetic_set is not None:
            sides.append((synthetic_set, synthetic, synthetic_left))
        for images, stats, left in sides:
            records = _spread([d for d in stats.defects if d["class"] == name], PREVIEW_CROPS)
            for k, record in enumerate(records):
                x = left + k * (PREVIEW_TILE + gutter)
                grid[top:top + PREVIEW_TILE, x:x + PREVIEW_TILE] = _crop(images.images[record["image"]], record)
    return grid
