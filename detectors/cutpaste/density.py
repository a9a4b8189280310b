"""Gaussian density estimation (GDE) on embeddings: mean, Ledoit-Wolf shrunk covariance, Mahalanobis score.

With a few hundred normal images and 512-d embeddings the sample covariance is singular or nearly so;
Ledoit-Wolf shrinks it towards a scaled identity by the amount that minimises the expected error, which makes
it invertible and the Mahalanobis distance stable (as in the CutPaste paper).
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch


def ledoit_wolf(x: torch.Tensor) -> Tuple[torch.Tensor, float]:
    """Ledoit-Wolf (2004) shrunk covariance of the rows of ``x`` ``(n, d)``: ``(covariance, shrinkage)``.

    ``covariance = (1 - s) * S + s * (trace(S) / d) * I`` with ``S`` the maximum-likelihood covariance
    (divided by n) and ``s`` in [0, 1] the estimated optimal shrinkage. Computed in float64.
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 embeddings of shape (n, d) to estimate a covariance, got {tuple(x.shape)}")
    x = x.double()
    n, d = x.shape
    centred = x - x.mean(0)
    sample = centred.T @ centred / n
    scale = torch.trace(sample) / d
    identity = torch.eye(d, dtype=x.dtype, device=x.device)
    # d2: how far S is from the scaled identity; b2: how noisy S is (mean squared distance of the per-sample
    # outer products from S, over n). Frobenius norms are divided by d as in the paper's normalisation.
    d2 = ((sample - scale * identity) ** 2).sum() / d
    sq_norms = (centred ** 2).sum(1)
    b2_bar = ((sq_norms ** 2).sum() - n * (sample ** 2).sum()) / (n * n * d)
    b2 = torch.minimum(b2_bar, d2)
    shrinkage = float(b2 / d2) if float(d2) > 0 else 1.0
    return (1 - shrinkage) * sample + shrinkage * scale * identity, shrinkage


class GaussianDensity:
    """A multivariate Gaussian fitted to normal embeddings; :meth:`score` is the Mahalanobis distance.

    Keeps the mean and the inverse covariance (float64, on the device of the fitted embeddings).
    """

    def __init__(self):
        self.mean: torch.Tensor = torch.empty(0)
        self.precision: torch.Tensor = torch.empty(0)
        self.shrinkage: float = float("nan")

    @property
    def fitted(self) -> bool:
        return self.mean.numel() > 0

    def fit(self, embeddings: torch.Tensor) -> "GaussianDensity":
        if not torch.isfinite(embeddings).all():
            raise ValueError("embeddings contain NaN or inf (did training diverge? try a lower learning rate)")
        covariance, self.shrinkage = ledoit_wolf(embeddings)
        self.mean = embeddings.double().mean(0)
        self.precision = torch.linalg.inv(covariance)
        return self

    def score(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance of each row of ``embeddings`` ``(n, d)`` to the mean, in the input's dtype.

        Differentiable, so Grad-CAM can explain it.
        """
        if not self.fitted:
            raise RuntimeError("the density is not fitted: call fit() first")
        if embeddings.ndim != 2 or embeddings.shape[1] != self.mean.numel():
            raise ValueError(f"expected embeddings of shape (n, {self.mean.numel()}), got {tuple(embeddings.shape)}")
        delta = embeddings.double() - self.mean.to(embeddings.device)
        squared = ((delta @ self.precision.to(embeddings.device)) * delta).sum(1)
        return squared.clamp_min(0).sqrt().to(embeddings.dtype)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {"mean": self.mean.cpu(), "precision": self.precision.cpu(),
                "shrinkage": torch.tensor(self.shrinkage, dtype=torch.float64)}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> "GaussianDensity":
        self.mean, self.precision = state["mean"].double(), state["precision"].double()
        self.shrinkage = float(state["shrinkage"])
        return self

    def to(self, device) -> "GaussianDensity":
        self.mean, self.precision = self.mean.to(device), self.precision.to(device)
        return self
