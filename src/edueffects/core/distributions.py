"""Tail probabilities and quantiles of the reference distributions, from ``scipy.special``.

These are the routines ``scipy.stats`` itself evaluates (``stdtr``, ``chdtrc``, ``fdtrc`` ...),
called directly so that the command line starts quickly. ``df = inf`` means the normal limit.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from edueffects.core.jet import Array


def norm_ppf(q: ArrayLike) -> Array:
    return np.asarray(special.ndtri(np.asarray(q, dtype=np.float64)), dtype=np.float64)


def t_sf(x: ArrayLike, df: ArrayLike) -> Array:
    """Upper tail of Student's t (normal where ``df`` is infinite)."""
    xa, dfa = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(df, dtype=np.float64))
    finite = np.isfinite(dfa)
    out = np.where(finite, special.stdtr(np.where(finite, dfa, 1.0), -xa), special.ndtr(-xa))
    return np.asarray(out, dtype=np.float64)


def t_ppf(q: ArrayLike, df: ArrayLike) -> Array:
    """Quantile of Student's t (normal where ``df`` is infinite)."""
    qa, dfa = np.broadcast_arrays(np.asarray(q, dtype=np.float64), np.asarray(df, dtype=np.float64))
    finite = np.isfinite(dfa)
    out = np.where(finite, special.stdtrit(np.where(finite, dfa, 1.0), qa), special.ndtri(qa))
    return np.asarray(out, dtype=np.float64)


def chi2_sf(x: float, df: float) -> float:
    return float(special.chdtrc(df, x))


def chi2_ppf(q: float, df: float) -> float:
    return float(special.chdtri(df, 1.0 - q))


def f_sf(x: float, df1: float, df2: float) -> float:
    return float(special.fdtrc(df1, df2, x))
