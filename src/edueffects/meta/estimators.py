"""Non-likelihood estimators of tau^2 in the univariate random-effects model (metafor's ``rma.uni``).

With ``W = diag(1/v)``, ``P = W - WX(X'WX)^-1X'W``, ``Q_E = y'Py`` and ``k`` rows, ``p`` coefficients:

- DL  (DerSimonian & Laird 1986): ``(Q_E - (k-p)) / tr(P)``, truncated at 0;
- HE  (Hedges 1983): ``(RSS_OLS - sum v_i (1 - h_ii)) / (k-p)``, truncated at 0;
- HS  (Hunter & Schmidt 2004): ``(Q_E - k) / sum w_i``, truncated at 0;
- SJ  (Sidik & Jonkman 2005): ``t0 * Q(t0) / (k-p)`` with ``t0 = mean((y - mean y)^2)``;
- PM  (Paule & Mandel 1982) and EB (Morris 1983): the root of the generalized ``Q(tau2) = k - p``
  (the EB fixed point ``tau2 += (Q k/(k-p) - k) / sum w`` stops at the same root), 0 if ``Q(0) < k-p``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

from edueffects.core.jet import Array
from edueffects.core.linalg import weighted_ls

MomentMethod = Literal["DL", "HE", "HS", "SJ", "PM", "EB"]


def generalized_q(x: Array, y: Array, v: Array, tau2: float) -> float:
    """``Q(tau2) = sum w_i (y_i - x_i b)^2`` with ``w = 1/(v + tau2)`` and the matching WLS ``b``."""
    return weighted_ls(x, y, 1.0 / (v + tau2)).rss


def hedges(x: Array, y: Array, v: Array) -> float:
    k, p = x.shape
    ols = weighted_ls(x, y, np.ones(k))
    leverage = np.einsum("ij,jk,ik->i", x, ols.cov_unscaled, x)
    return float(max(0.0, (ols.rss - float(np.sum(v * (1.0 - leverage)))) / (k - p)))


def paule_mandel(x: Array, y: Array, v: Array) -> float:
    k, p = x.shape
    target = float(k - p)
    if generalized_q(x, y, v, 0.0) < target:
        return 0.0
    hi = max(float(np.var(y)), 1e-4)
    while generalized_q(x, y, v, hi) > target:
        hi *= 2.0
    return float(
        _brentq()(lambda t: generalized_q(x, y, v, t) - target, 0.0, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps)
    )


def moment_tau2(method: MomentMethod, x: Array, y: Array, v: Array) -> float:
    """tau^2 by one of the closed-form or root-finding estimators above."""
    k, p = x.shape
    if method == "HE":
        return hedges(x, y, v)
    if method in ("PM", "EB"):
        return paule_mandel(x, y, v)
    if method == "SJ":
        tau0 = float(np.mean((y - y.mean()) ** 2))
        return float(tau0 * generalized_q(x, y, v, tau0) / (k - p))
    fixed = weighted_ls(x, y, 1.0 / v)
    if method == "DL":
        return float(max(0.0, (fixed.rss - (k - p)) / fixed.trace_p))
    return float(max(0.0, (fixed.rss - k) / float(np.sum(1.0 / v))))


def _brentq() -> Callable[..., float]:
    """scipy's Brent root finder, imported on first use (keeps start-up fast)."""
    from scipy.optimize import brentq

    return brentq  # type: ignore[no-any-return]
