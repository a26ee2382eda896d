"""Small shared linear-algebra helpers (weighted least squares on diagonal weights)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edueffects.core.jet import Array


@dataclass(frozen=True)
class WeightedFit:
    """Weighted least squares ``b = (X'WX)^-1 X'Wy`` with ``W = diag(w)``."""

    beta: Array
    cov_unscaled: Array
    rss: float
    trace_p: float

    @property
    def n_fixed(self) -> int:
        return int(self.beta.size)


def weighted_ls(x: Array, y: Array, w: Array) -> WeightedFit:
    """WLS fit, weighted residual sum of squares and ``tr(P)``, ``P = W - WX(X'WX)^-1 X'W``."""
    xw = x * w[:, None]
    a_inv = np.asarray(np.linalg.inv(xw.T @ x), dtype=np.float64)
    beta = a_inv @ (xw.T @ y)
    resid = y - x @ beta
    rss = float(np.sum(w * resid**2))
    xww = xw.T @ xw
    trace_p = float(np.sum(w) - np.sum(a_inv * xww))
    return WeightedFit(beta=beta, cov_unscaled=a_inv, rss=rss, trace_p=trace_p)
