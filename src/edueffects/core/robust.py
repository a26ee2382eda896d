"""CR2 cluster-robust covariance with Satterthwaite degrees of freedom.

Follows Pustejovsky & Tipton (2018, JBES 36(4)) as implemented by R clubSandwich for models fitted
with inverse-variance weights (``rma.uni``, ``rma.mv``, ``inverse_var = TRUE``): with working
covariance ``Theta_j`` of cluster ``j`` (the model's marginal covariance), ``W_j = Theta_j^-1``,
``M = (X'WX)^-1`` and ``Theta_j = R_j'R_j``,

    A_j = R_j' [R_j (Theta_j - X_j M X_j') R_j']^{-1/2} R_j
    V_CR2 = M [sum_j X_j' W_j A_j e_j e_j' A_j' W_j X_j] M

and, for coefficient ``i``, the Satterthwaite df ``2 E^2 / V`` of the matrix
``P = diag(|G_j[i]|^2) - H H'`` (``G_j = M X_j'W_j A_j chol(Theta_j)``, ``H_j = M X_j'W_j A_j X_j chol(M)``).
Clusters are processed in batches of equal size, never one by one; nothing of size n x n is formed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from edueffects.core.jet import Array
from edueffects.core.nested import group_order

IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class RobustCovariance:
    """CR2 covariance of the fixed effects and the Satterthwaite df of each coefficient."""

    vcov: Array
    df: Array
    n_clusters: int


def _batched_inverse_sqrt(g: Array) -> Array:
    """Symmetric ``g^{-1/2}``; eigenvalues below 1e-12 count as zero (clubSandwich's ``matrix_power``).

    Singular ``g`` arises when a cluster alone determines a coefficient (``(I - H)_jj`` singular).
    """
    values, vectors = np.linalg.eigh(g)
    safe = np.where(values > 1e-12, values, 1.0)
    scale = np.where(values > 1e-12, 1.0 / np.sqrt(safe), 0.0)
    return np.asarray((vectors * scale[:, None, :]) @ np.swapaxes(vectors, 1, 2), dtype=np.float64)


def cr2(
    x: Array,
    residuals: Array,
    cov_beta: Array,
    row_variance: Array,
    level_codes: Sequence[IntArray],
    level_variances: Array,
    cluster: IntArray,
    level_loadings: Sequence[Array] | None = None,
) -> RobustCovariance:
    """CR2 for a nested random-intercept model.

    The working covariance of rows ``a, b`` in one cluster is
    ``delta_ab row_variance_a + sum_l sigma2_l lambda_la lambda_lb [same level-l group]``:
    ``row_variance`` is ``v_i + sigma2_e``; ``level_codes``/``level_variances`` give each random
    intercept; ``level_loadings`` (default 1) let rows stand for orthonormalised blocks of identical
    rows (a block of ``n`` students enters with loading ``sqrt(n)``). Each model group must lie within
    one robust ``cluster`` (checked by the caller).
    """
    order = group_order([np.asarray(cluster, dtype=np.int64)], cluster.size)
    sorted_cluster = cluster[order]
    change = np.ones(order.size, dtype=bool)
    change[1:] = sorted_cluster[1:] != sorted_cluster[:-1]
    starts = np.flatnonzero(change)
    sizes = np.diff(np.append(starts, order.size))
    p = x.shape[1]
    meat_terms: list[Array] = []
    var_terms: list[Array] = []
    k_terms: list[Array] = []
    for size in np.unique(sizes):
        rows = order[starts[sizes == size][:, None] + np.arange(size)[None, :]]  # (C, s)
        theta = np.zeros((rows.shape[0], size, size))
        idx = np.arange(size)
        theta[:, idx, idx] = row_variance[rows]
        for level, (codes, variance) in enumerate(zip(level_codes, level_variances, strict=True)):
            c = np.asarray(codes)[rows]
            same = c[:, :, None] == c[:, None, :]
            if level_loadings is None:
                theta += variance * same
            else:
                load = level_loadings[level][rows]
                theta += variance * same * load[:, :, None] * load[:, None, :]
        chol = np.linalg.cholesky(theta)  # Theta = L L', R = L'
        xj = x[rows]  # (C, s, p)
        ej = residuals[rows]
        xmx = xj @ cov_beta @ np.swapaxes(xj, 1, 2)
        chol_t = np.swapaxes(chol, 1, 2)
        g = chol_t @ (theta - xmx) @ chol
        g = 0.5 * (g + np.swapaxes(g, 1, 2))
        adjust = chol @ _batched_inverse_sqrt(g) @ chol_t
        weights = np.linalg.inv(theta)
        est = cov_beta @ np.swapaxes(xj, 1, 2) @ weights @ adjust  # (C, p, s) = M X'W A
        meat_terms.append(np.einsum("cps,cs->cp", est, ej))
        var_terms.append(np.einsum("cis,cst,cit->ci", est, theta, est))
        k_terms.append(est @ xj)  # (C, p, p)
    b = np.concatenate(meat_terms)
    a = np.concatenate(var_terms)  # (J, p): |G_j[i]|^2
    k = np.concatenate(k_terms)
    vcov = b.T @ b
    chol_m = np.linalg.cholesky(cov_beta)
    df = np.empty(p)
    for i in range(p):
        h = k[:, i, :] @ chol_m  # (J, p)
        h2 = np.einsum("jp,jp->j", h, h)
        expectation = a[:, i].sum() - h2.sum()
        hth = h.T @ h
        variance = 2.0 * (np.sum(a[:, i] ** 2) - 2.0 * np.sum(a[:, i] * h2) + np.sum(hth * hth))
        df[i] = 2.0 * expectation**2 / variance
    return RobustCovariance(vcov=vcov, df=df, n_clusters=int(starts.size))
