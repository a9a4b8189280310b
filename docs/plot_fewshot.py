"""Plot a label-efficiency study: mAP@50 against the number of real training images K, with and without
synthetic data, one panel per detector, from the study's committed ``results.jsonl``.

    python docs/plot_fewshot.py fewshot_deeppcb     # writes docs/ablation/fewshot_deeppcb/map_vs_k.png

Each line is one training-data family (mean over seeds, bars: min-max over seeds); "K real alone" is the
baseline every synthetic family must beat at the same K and the same number of images seen. K = 0 is
synthetic only. The x axis is logarithmic past 0 (K = 0 is drawn at the left edge).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render_tables import DOCS, fewshot_curves, study_rows  # noqa: E402


def plot(study: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = study_rows(study)
    detectors = sorted({r["detector"] for r in rows})
    fig, axes = plt.subplots(1, len(detectors), figsize=(5.5 * len(detectors), 4.2), squeeze=False)
    for ax, detector in zip(axes[0], detectors):
        curves = fewshot_curves(rows, detector)
        ks = sorted({k for c in curves.values() for k in c})
        position = {k: (0.6 * min(k for k in ks if k) if k == 0 else k) for k in ks} if any(ks) else {0: 1}
        for family, curve in curves.items():
            points = sorted(k for k in curve if family != "none" or k)
            x = [position[k] for k in points]
            mean = [100 * statistics.fmean(curve[k]) for k in points]
            low = [m - 100 * min(curve[k]) for m, k in zip(mean, points)]
            high = [100 * max(curve[k]) - m for m, k in zip(mean, points)]
            label = "K real alone" if family == "none" else f"{family} + K real"
            style = dict(color="black", linewidth=2.5) if family == "none" else {}
            ax.errorbar(x, mean, yerr=[low, high], marker="o", capsize=3, label=label, **style)
        ax.set_xscale("log")
        ax.minorticks_off()  # only the measured K are labelled
        ax.set_xticks([position[k] for k in ks])
        ax.set_xticklabels([str(k) for k in ks])
        ax.set_xlabel("real training images K (0: synthetic only)")
        ax.set_ylabel("mAP@50 on the real test images")
        ax.set_title(detector)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", help="a study folder under docs/ablation/")
    parser.add_argument("--out", type=Path, help="default: docs/ablation/STUDY/map_vs_k.png")
    args = parser.parse_args(argv)
    print(plot(args.study, args.out or DOCS / "ablation" / args.study / "map_vs_k.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
