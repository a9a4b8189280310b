"""The pictures of ``defectgen features``: a 2-D map of the embeddings (t-SNE, or UMAP when asked and
installed) with one colour per group, and the ROC curves of a detector's scores.

matplotlib, scikit-learn (t-SNE) and umap-learn are optional; each is imported only here, when a picture is
made, with an error naming the package to install.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Sequence, Union

import numpy as np
import torch

from .separability import require

METHODS = ("tsne", "umap")
_MARKERS = {"normal": "o", "synthetic": "^", "real": "s"}


def project(embeddings: torch.Tensor, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """``(N, 2)`` coordinates of ``(N, D)`` embeddings: scikit-learn's t-SNE (PCA initialisation, perplexity
    at most 30 and below a third of N) or umap-learn's UMAP, both seeded."""
    if method not in METHODS:
        raise ValueError(f"unknown projection method {method!r} (known: {', '.join(METHODS)})")
    n = len(embeddings)
    if n < 4:
        raise ValueError(f"a 2-D map needs at least 4 images, got {n}")
    x = embeddings.double().numpy()
    x = (x - x.mean(0)) / (x.std(0) + 1e-12)  # every feature on one scale, as both methods assume
    if method == "umap":
        umap = require("umap", "umap-learn", "--method umap", in_extra=False)
        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed)
        return np.asarray(reducer.fit_transform(x), dtype=np.float64)
    require("sklearn", "scikit-learn", "the t-SNE map")
    from sklearn.manifold import TSNE

    tsne = TSNE(n_components=2, perplexity=float(min(30.0, (n - 1) / 3)), init="pca", random_state=seed)
    return np.asarray(tsne.fit_transform(x), dtype=np.float64)


def _pyplot():
    require("matplotlib", "matplotlib", "the plots")
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_map(points: np.ndarray, groups: Sequence[str], kinds: Dict[str, str], title: str,
             path: Union[str, Path]) -> Path:
    """Scatter ``points`` coloured by group (legend with counts; circles normal, triangles synthetic, squares
    real) into the PNG ``path``."""
    plt = _pyplot()
    labels = np.asarray(groups)
    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    colours = plt.get_cmap("tab10")
    for i, name in enumerate(dict.fromkeys(groups)):  # the groups in their order of appearance
        at = labels == name
        ax.scatter(points[at, 0], points[at, 1], s=18, alpha=0.75, color=colours(i % 10),
                   marker=_MARKERS.get(kinds[name], "o"), label=f"{name} ({int(at.sum())})", edgecolors="none")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)  # never over points
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_roc(curves: Dict[str, Dict[str, Any]], title: str, path: Union[str, Path]) -> Path:
    """The ROC curves (overall thick and black, one colour per defect type), AUROC in the legend, into ``path``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 6), dpi=120)
    colours = plt.get_cmap("tab10")
    for i, (name, curve) in enumerate(curves.items()):
        overall = i == 0
        ax.plot(curve["fpr"], curve["tpr"], drawstyle="default", linewidth=2.4 if overall else 1.4,
                color="black" if overall else colours((i - 1) % 10),
                label=f"{name}: AUROC {100 * curve['auroc']:.1f} ({curve['count']['defective']} defective)")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false-positive rate (defect-free images flagged)")
    ax.set_ylabel("true-positive rate (defective images found)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


__all__ = ["METHODS", "project", "plot_map", "plot_roc"]
