"""Effect-size conversions used in education meta-analysis.

- Fisher z (Fisher 1921): ``z = atanh(r)``, ``v = 1/(n - 3)``; back-transformation ``r = tanh(z)``.
- Standardized mean difference (Hedges 1981): ``d = (m1 - m2)/s_pooled``, Hedges' ``g = J d`` with
  ``J = 1 - 3/(4 (n1 + n2 - 2) - 1)``; ``v = (n1 + n2)/(n1 n2) + g^2 / (2 (n1 + n2))`` (metafor's
  large-sample ``vtype = "LS"``).
- r <-> d (Borenstein et al. 2009): ``d = 2r / sqrt(1 - r^2)``, ``r = d / sqrt(d^2 + a)`` with
  ``a = (n1 + n2)^2 / (n1 n2)`` (4 for equal groups).
- SE from a reported CI: ``(ub - lb) / (2 z_{1-alpha/2})`` on the scale where the CI is symmetric.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from edueffects.core.distributions import norm_ppf
from edueffects.core.errors import InputError
from edueffects.core.jet import Array


def _array(name: str, values: ArrayLike) -> Array:
    arr = np.asarray(values, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(np.atleast_1d(arr)))
    if bad.size:
        raise InputError("{0} row {1}: value is missing or not finite", name, int(bad[0]) + 1)
    return arr


def fisher_z(r: ArrayLike, n: ArrayLike) -> tuple[Array, Array]:
    """Fisher's z of correlations and its sampling variance ``1/(n - 3)``."""
    ra, na = _array("r", r), _array("n", n)
    if np.any(np.abs(ra) >= 1):
        raise InputError("r must lie strictly between -1 and 1")
    if np.any(na <= 3):
        raise InputError("n must exceed 3 for the variance of Fisher's z")
    return np.arctanh(ra), 1.0 / (na - 3.0)


def z_to_r(z: ArrayLike) -> Array:
    """Back-transform Fisher's z to r."""
    return np.tanh(_array("z", z))


def se_from_ci(lower: ArrayLike, upper: ArrayLike, level: float = 95.0) -> Array:
    """Standard error from a symmetric (normal-theory) confidence interval."""
    lo, hi = _array("lower", lower), _array("upper", upper)
    if np.any(hi <= lo):
        raise InputError("each CI upper bound must exceed its lower bound")
    z = float(norm_ppf(1.0 - (1.0 - level / 100.0) / 2.0))
    return np.asarray((hi - lo) / (2.0 * z))


def smd(
    m1: ArrayLike, m2: ArrayLike, sd1: ArrayLike, sd2: ArrayLike, n1: ArrayLike, n2: ArrayLike, hedges: bool = True
) -> tuple[Array, Array]:
    """Standardized mean difference (Hedges' g by default, Cohen's d otherwise) and its variance."""
    a1, a2 = _array("m1", m1), _array("m2", m2)
    s1, s2 = _array("sd1", sd1), _array("sd2", sd2)
    k1, k2 = _array("n1", n1), _array("n2", n2)
    if np.any(k1 < 2) or np.any(k2 < 2):
        raise InputError("group sizes must be at least 2")
    pooled = np.sqrt(((k1 - 1) * s1**2 + (k2 - 1) * s2**2) / (k1 + k2 - 2))
    d = (a1 - a2) / pooled
    if hedges:
        d = d * (1.0 - 3.0 / (4.0 * (k1 + k2 - 2) - 1.0))
    v = (k1 + k2) / (k1 * k2) + d**2 / (2.0 * (k1 + k2))
    return d, v


def r_to_d(r: ArrayLike) -> Array:
    """Correlation to d (equal groups): ``2r / sqrt(1 - r^2)``."""
    ra = _array("r", r)
    return np.asarray(2.0 * ra / np.sqrt(1.0 - ra**2))


def d_to_r(d: ArrayLike, n1: ArrayLike | None = None, n2: ArrayLike | None = None) -> Array:
    """d to a point-biserial correlation; ``a = (n1+n2)^2/(n1 n2)``, 4 without group sizes."""
    da = _array("d", d)
    a = (
        4.0
        if n1 is None or n2 is None
        else (_array("n1", n1) + _array("n2", n2)) ** 2 / (_array("n1", n1) * _array("n2", n2))
    )
    return np.asarray(da / np.sqrt(da**2 + a))
