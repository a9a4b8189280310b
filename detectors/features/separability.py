"""How well frozen embeddings tell two groups apart, and how close synthetic defects sit to real ones.

- :func:`separability`: a kNN classifier (k = 5, cosine distance) and a linear probe (logistic regression on
  standardised features), both cross-validated with seeded stratified folds; their balanced accuracy (50 % =
  chance, whatever the group sizes) and the probe's AUROC on the pooled out-of-fold scores. A synthetic image
  and the normal image it was made from always share a fold, so a classifier never meets the clean twin of an
  image it is tested on: an operator that changes nothing scores exactly chance.
- :func:`closeness`: per synthetic family, the mean cosine similarity of each of its embeddings to the nearest
  real defect's (embeddings centred on the normal mean, so it compares the directions in which each leaves
  normal; reported beside the same number for the normal images as the baseline), and the cross-validated kNN
  accuracy of real vs synthetic (a two-sample test: 50 % = indistinguishable, 100 % = told apart every time).

scikit-learn is optional (``pip install 'defectgen[features]'``); it is imported here, only when called.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, Optional

import numpy as np
import torch

EXTRA = "features"
K = 5
FOLDS = 5


class MissingExtra(ImportError):
    """An optional library this needs is not installed; the message names the pip extra that installs it."""


def require(module: str, package: str, what: str, in_extra: bool = True):
    """``import module``, or :class:`MissingExtra` naming ``package`` (and the ``features`` extra when
    ``in_extra``: umap-learn is not in it)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        extra = f" (or the extra: pip install 'defectgen[{EXTRA}]')" if in_extra else ""
        raise MissingExtra(f"{what} needs {package}, which is not installed: pip install '{package}'{extra}") from None


def _unit(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x.double(), dim=1).numpy()


def _folds(y: np.ndarray, groups: np.ndarray, folds: int, seed: int):
    require("sklearn", "scikit-learn", "the separability numbers")
    from sklearn.model_selection import StratifiedGroupKFold

    smallest = int(min((y == 0).sum(), (y == 1).sum()))
    if smallest < 2:
        raise ValueError(f"cross-validation needs at least 2 images in each group, got {smallest}")
    n_splits = min(folds, smallest)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return n_splits, list(splitter.split(np.zeros(len(y)), y, groups))


def separability(a: torch.Tensor, b: torch.Tensor, pairs: Optional[torch.Tensor] = None, k: int = K,
                 folds: int = FOLDS, seed: int = 0) -> Dict[str, Any]:
    """Cross-validated kNN and linear-probe separability of embeddings ``a`` (label 0) from ``b`` (label 1).

    Args:
        a, b: ``(Na, D)`` and ``(Nb, D)`` embeddings.
        pairs: optional ``(Nb,)`` index into ``a`` of the image each ``b`` was made from: a pair shares a fold.
        k: neighbours of the kNN classifier (fewer when a training fold is smaller).
        folds: cross-validation folds (fewer when a group is smaller); ``seed`` shuffles them.

    Returns ``{"knn_accuracy", "probe_accuracy", "probe_auroc", "count": [Na, Nb], "folds", "k"}``; the
    accuracies are balanced (the mean of the two groups' recalls), all in [0, 1].
    """
    require("sklearn", "scikit-learn", "the separability numbers")
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"embeddings must be (N, D) with the same D, got {tuple(a.shape)} and {tuple(b.shape)}")
    y = np.r_[np.zeros(len(a), int), np.ones(len(b), int)]
    own = np.arange(len(a) + len(b))
    groups = own.copy()
    if pairs is not None:
        groups[len(a):] = pairs.cpu().numpy()
    x = torch.cat([a, b]).double().numpy()
    unit = _unit(torch.cat([a, b]))
    n_splits, splits = _folds(y, groups, folds, seed)
    knn_pred = np.zeros(len(y), int)
    probe_score = np.zeros(len(y))
    for train, test in splits:
        knn = KNeighborsClassifier(n_neighbors=min(k, len(train)))  # euclidean on unit vectors = cosine order
        knn_pred[test] = knn.fit(unit[train], y[train]).predict(unit[test])
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, class_weight="balanced"))
        with warnings.catch_warnings():  # a perfectly separable fold only means a large weight norm
            warnings.simplefilter("ignore", ConvergenceWarning)
            probe.fit(x[train], y[train])
        probe_score[test] = probe.decision_function(x[test])
    return {"knn_accuracy": float(balanced_accuracy_score(y, knn_pred)),
            "probe_accuracy": float(balanced_accuracy_score(y, (probe_score > 0).astype(int))),
            "probe_auroc": float(roc_auc_score(y, probe_score)),
            "count": [len(a), len(b)], "folds": n_splits, "k": k}


def nearest_cosine(x: torch.Tensor, reference: torch.Tensor, centre: torch.Tensor) -> float:
    """The mean over ``x`` of the cosine similarity to its nearest ``reference`` embedding, both centred on
    ``centre`` (the normal mean)."""
    xs = torch.nn.functional.normalize((x - centre).double(), dim=1)
    rs = torch.nn.functional.normalize((reference - centre).double(), dim=1)
    return float((xs @ rs.T).max(dim=1).values.mean())


def closeness(synthetic: torch.Tensor, real: torch.Tensor, normal: torch.Tensor, k: int = K,
              folds: int = FOLDS, seed: int = 0) -> Dict[str, Any]:
    """How close a synthetic family's embeddings sit to the real defects' (see the module docstring):
    ``{"nearest_real_cosine", "real_vs_synthetic_knn_accuracy"}``."""
    centre = normal.double().mean(0)
    two_sample = separability(real, synthetic, k=k, folds=folds, seed=seed)
    return {"nearest_real_cosine": nearest_cosine(synthetic, real, centre),
            "real_vs_synthetic_knn_accuracy": two_sample["knn_accuracy"]}


__all__ = ["separability", "closeness", "nearest_cosine", "require", "MissingExtra", "EXTRA", "K", "FOLDS"]
