"""Schmidt & Oh (2013) second-order meta-analysis of L first-order meta-analytic means.

As psychmeta's ``ma_r_order2`` (``var_unbiased = TRUE``): with first-order means ``m_j`` (mean r for
bare-bones, corrected rho for artifact distribution), ``k_j`` studies and observed variance of r
``var_r_j``, the second-order sampling error variance of each mean is ``var_e_j = var_r_j / k_j``
(artifact distribution: times ``(rho_j / r_j)^2``), weights ``w_j = 1 / var_e_j``, and

    mean      = sum w m / sum w
    var_means = L/(L-1) * sum w (m - mean)^2 / sum w
    var_e     = L / sum w                      (the weighted mean of var_e_j)
    var_res   = var_means - var_e
    percent_var_e = 100 var_e / var_means;  reliability = 1 - var_e / var_means
    cor_means_error = sqrt(var_e / var_means)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike

from edueffects.core.errors import InputError


@dataclass(frozen=True)
class SecondOrder:
    """One Schmidt-Oh second-order meta-analysis."""

    kind: str
    L: int
    k_total: float
    mean: float
    var_means: float
    var_e: float
    var_res: float
    percent_var_e: float
    reliability: float
    cor_means_error: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def schmidt_oh(
    k: ArrayLike, r: ArrayLike, var_r: ArrayLike, rho: ArrayLike | None = None, kind: str = "bb"
) -> SecondOrder:
    """Bare-bones (``kind = 'bb'``, means ``r``) or artifact-distribution (``'ad'``, means ``rho``)."""
    ka, ra, va = (np.asarray(a, dtype=np.float64) for a in (k, r, var_r))
    if ka.size < 2:
        raise InputError("a second-order meta-analysis needs at least two first-order meta-analyses")
    if np.any(ka < 1):
        raise InputError("every first-order meta-analysis needs k >= 1")
    if np.any(va <= 0):
        raise InputError("every first-order meta-analysis needs an observed variance of r > 0")
    var_e_j = va / ka
    means = ra
    if kind == "ad":
        if rho is None:
            raise InputError("the artifact-distribution analysis needs corrected means (rho)")
        means = np.asarray(rho, dtype=np.float64)
        var_e_j = var_e_j * (means / ra) ** 2
    elif kind != "bb":
        raise InputError("kind must be 'bb' or 'ad' (got {0})", repr(kind))
    w = 1.0 / var_e_j
    n = ka.size
    mean = float(np.sum(w * means) / np.sum(w))
    var_means = float(np.sum(w * (means - mean) ** 2) / np.sum(w) * n / (n - 1))
    var_e = float(n / np.sum(w))
    return SecondOrder(
        kind=kind,
        L=n,
        k_total=float(ka.sum()),
        mean=mean,
        var_means=var_means,
        var_e=var_e,
        var_res=var_means - var_e,
        percent_var_e=100.0 * var_e / var_means,
        reliability=1.0 - var_e / var_means,
        cor_means_error=float(np.sqrt(var_e / var_means)),
    )
