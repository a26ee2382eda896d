"""Small shared linear-algebra helpers: weighted least squares, products with a sparse matrix of kept pattern."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from edueffects.core.jet import Array

try:  # the compiled kernel behind scipy's ``csr_matrix @ dense`` (same sums, term for term)
    from scipy.sparse._sparsetools import csr_matvecs as _csr_matvecs
except ImportError:  # pragma: no cover - a scipy without it: the public product
    _csr_matvecs = None

IntArray = NDArray[np.intp]


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


def csr_product(indptr: IntArray, indices: IntArray, data: Array, dense: Array) -> Array:
    """``A @ dense`` for the CSR matrix ``A = (data, indices, indptr)`` (``len(indptr) - 1`` rows, as many
    columns as ``dense`` has rows) whose pattern the caller built and keeps: scipy's compiled CSR kernel
    without re-validating the pattern at every call (``csr_matrix`` construction costs more than the
    product at a few thousand rows), else ``csr_matrix @ dense``. The kernel does not check the pattern:
    ``indices`` must lie in ``[0, len(dense))`` and ``indptr`` rise from 0 to ``len(data)``, as a pattern built
    for ``dense`` does (its sizes are checked here)."""
    n_rows, (n_cols, n_vecs) = indptr.size - 1, dense.shape
    indptr, indices = np.asarray(indptr, dtype=np.intp), np.asarray(indices, dtype=np.intp)
    dense = np.ascontiguousarray(dense, dtype=np.float64)
    data = np.ascontiguousarray(data, dtype=np.float64)
    if n_rows < 0 or indptr[0] != 0 or indptr[-1] != data.size or indices.size != data.size:
        raise ValueError("csr_product: indptr, indices and data do not describe one sparse matrix")
    if _csr_matvecs is None:
        matrix = sparse.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))
        return np.asarray(matrix @ dense, dtype=np.float64)
    out = np.zeros((n_rows, n_vecs))
    _csr_matvecs(n_rows, n_cols, n_vecs, indptr, indices, data, dense.ravel(), out.ravel())
    return out
