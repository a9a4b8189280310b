"""The pretraining report: ``report.md`` with the settings, the last steps' numbers, and ``curves.png`` (the loss,
the collapse guard beside its healthy level ``1 / sqrt(d)``, the pretext accuracy when on). matplotlib is an
optional extra: without it the report says the plot was skipped and why."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional

from defectgen.io.atomic import write_text_atomic

PLOT = "curves.png"


def _smooth(values: List[float], window: int) -> List[float]:
    """A trailing mean over ``window`` steps (single steps are noisy at small batches)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def write_plot(folder: Path, record: Dict[str, Any]) -> Optional[str]:
    """Draw ``curves.png``; returns None, or why it was skipped."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return "matplotlib is not installed (the optional extra: pip install 'defectgen[plots]')"
    history = record["history"]
    steps = [r["step"] for r in history]
    window = max(1, len(history) // 50)
    panels = [("loss", "loss (total)"), ("output_std", "collapse guard: std of L2-normalised outputs")]
    if any("pretext_accuracy" in r for r in history):
        panels.append(("pretext_accuracy", "pretext accuracy"))
    figure = Figure(figsize=(5 * len(panels), 3.8), dpi=90)
    FigureCanvasAgg(figure)
    for axis, (key, title) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        values = [r[key] for r in history]
        if window > 1:
            axis.plot(steps, values, color="0.75", lw=0.8, label="per step")
            axis.plot(steps, _smooth(values, window), color="C0", lw=1.6, label=f"mean of {window} steps")
        else:
            axis.plot(steps, values, color="C0", lw=1.6, label="per step")
        if key == "output_std":
            axis.axhline(record["healthy_output_std"], color="C2", ls="--", lw=1, label="1/sqrt(d): spread")
            axis.axhline(0, color="C3", ls=":", lw=1, label="0: collapsed")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("step")
        axis.legend(fontsize=7)
    settings = record["settings"]
    figure.suptitle(f"{settings['method']} / {settings['backbone']}, {settings['image_size']} px, batch "
                    f"{settings['batch_size']}", fontsize=11)
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.84, wspace=0.25)
    figure.savefig(folder / PLOT, metadata={"Software": None})
    return None


def write_report(folder: Path, record: Dict[str, Any]) -> Path:
    """``folder/report.md`` (and ``curves.png``) from a ``pretrain.json`` record."""
    skipped = write_plot(folder, record)
    settings, history = record["settings"], record["history"]
    last = history[-max(1, len(history) // 10):]  # the last tenth: single steps are noisy
    keys = [k for k in ("loss", "ssl_loss", "output_std", "pretext_accuracy", "momentum") if k in history[-1]]
    lines = [f"# Pretraining: {settings['method']} on {settings['backbone']}", "",
             f"{settings['steps']} steps of {settings['batch_size']} images ({record['images_seen']} images seen, "
             f"two views each) at {settings['image_size']} px from {settings['ok_images']} OK images; backbone "
             f"written to `{record['backbone']}`.", "",
             "| quantity | first step | mean of the last tenth |", "|---|---|---|"]
    lines += [f"| {k} | {history[0][k]:.4f} | {statistics.fmean(r[k] for r in last):.4f} |" for k in keys]
    lines += ["", f"The collapse guard is the std of the L2-normalised outputs over the batch, averaged over their "
              f"{round(record['healthy_output_std'] ** -2)} dimensions: about {record['healthy_output_std']:.4f} "
              "(1/sqrt(d)) for outputs spread on the sphere, 0 for a collapsed network.", ""]
    lines.append(f"plot skipped: {skipped}" if skipped else f"![loss and collapse guard]({PLOT})")
    lines += ["", "## Settings", "", "```json", json.dumps(settings, indent=1, sort_keys=True), "```", ""]
    path = folder / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path


__all__ = ["write_report", "write_plot", "PLOT"]
