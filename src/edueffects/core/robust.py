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

:func:`cr2_wald_test` adds clubSandwich's multi-constraint Wald tests (``Wald_test``: HTZ, Naive-F,
chi-sq) from the per-cluster pieces ``G_j G_j'`` and ``M X_j'W_j A_j X_j`` kept in the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from edueffects.core.blocks import block_covariance, cluster_batches, constant_within
from edueffects.core.distributions import chi2_sf, f_sf
from edueffects.core.jet import Array

IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class RobustCovariance:
    """CR2 covariance of the fixed effects and the Satterthwaite df of each coefficient.

    The per-cluster pieces (``J x p x p`` each, clusters batched by size) feed :func:`cr2_wald_test`:
    ``cluster_var[j] = G_j G_j' = M X_j'W_j A_j Theta_j A_j'W_j X_j M`` and
    ``cluster_design[j] = M X_j'W_j A_j X_j``; ``bread`` is ``M = (X'WX)^-1``.
    """

    vcov: Array
    df: Array
    n_clusters: int
    bread: Array
    cluster_var: Array
    cluster_design: Array


def _eigen_inverse_sqrt(g: Array, unit: Array | float = 1.0) -> tuple[Array, Array]:
    """Eigenvectors ``V`` and scales ``d`` with ``g^{-1/2} = V diag(d) V'`` (batched symmetric ``g``).

    Eigenvalues below ``1e-12 unit`` count as zero (clubSandwich's ``matrix_power``, ``unit`` 1): singular
    ``g`` arises when a cluster alone determines a coefficient (``(I - H)_jj`` singular). ``unit`` (one per
    matrix) gives the scale of ``g``, so that the cut-off does not depend on the units of the data.
    """
    values, vectors = np.linalg.eigh(g)
    values[~(values > 1e-12 * np.reshape(unit, (-1, 1)))] = np.inf  # 1 / sqrt(inf) = 0
    return vectors, 1.0 / np.sqrt(values)


def _batched_inverse_sqrt(g: Array) -> Array:
    """Symmetric ``g^{-1/2}`` (see :func:`_eigen_inverse_sqrt`)."""
    vectors, scale = _eigen_inverse_sqrt(g)
    return np.asarray((vectors * scale[:, None, :]) @ np.swapaxes(vectors, 1, 2), dtype=np.float64)


def _right_times(stack: Array, m: Array) -> Array:
    """``S_j m`` for every matrix of the stack ``S`` (J, a, p): one product, not one per matrix."""
    return np.asarray((stack.reshape(-1, m.shape[0]) @ m).reshape(stack.shape[0], -1, m.shape[1]))


def _left_times(m: Array, stack: Array) -> Array:
    """``m S_j`` for every matrix of the stack ``S`` (J, p, a), ``m`` symmetric: ``(S_j' m)'``."""
    return np.swapaxes(_right_times(np.swapaxes(stack, 1, 2), m), 1, 2)


def _cholesky_solve(theta: Array, xj: Array, border: float | None = None) -> tuple[Array, Array]:
    """``L`` (``Theta = L L'``) and ``L^-1 X`` of a batch (C, s, s), (C, s, p). With ``border`` ``b`` above
    every ``X_j'Theta_j^-1 X_j``, both come from one Cholesky factor of ``[[Theta, X], [X', b I]]`` (``L`` and,
    below it, ``(L^-1 X)'``; its last block is not used), else from a Cholesky factor and a solve."""
    if border is None:
        chol = np.asarray(np.linalg.cholesky(theta), dtype=np.float64)
        return chol, np.asarray(np.linalg.solve(chol, xj), dtype=np.float64)
    n, size, p = xj.shape
    bordered = np.zeros((n, size + p, size + p))
    bordered[:, :size, :size] = theta
    bordered[:, size:, :size] = np.swapaxes(xj, 1, 2)
    bordered.reshape(n, -1)[:, (size + p + 1) * size :: size + p + 1] = border * size
    full = np.asarray(np.linalg.cholesky(bordered), dtype=np.float64)
    return full[:, :size, :size], np.swapaxes(full[:, size:, :size], 1, 2)


def _fold_single_rows(
    row_variance: Array, level_codes: Sequence[IntArray], level_variances: Array, level_loadings: Sequence[Array] | None
) -> tuple[Array, list[IntArray], Array, list[Array] | None]:
    """The levels of :func:`~edueffects.core.blocks.block_covariance` with the levels whose groups are single rows
    (e.g. the effects within studies) added to the row variance: they only add to the diagonal."""
    row_variance = np.asarray(row_variance, dtype=np.float64)
    kept: list[int] = []
    for level, (codes, variance) in enumerate(zip(level_codes, level_variances, strict=True)):
        codes = np.asarray(codes)
        if codes.size and int(codes.min()) >= 0 and int(np.bincount(codes).max()) == 1:
            load = 1.0 if level_loadings is None else np.asarray(level_loadings[level]) ** 2
            row_variance = row_variance + variance * load
        else:
            kept.append(level)
    variances = np.asarray(level_variances, dtype=np.float64)[kept]
    loadings = None if level_loadings is None else [level_loadings[i] for i in kept]
    return row_variance, [np.asarray(level_codes[i]) for i in kept], variances, loadings


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

    With ``Theta_j = L L'`` (Cholesky), ``W_j A_j = L^-T g^{-1/2} L'``, so
    ``E_j' = (M X_j'W_j A_j)' = L V diag(d) V' (L^-1 X_j) M`` with ``g = V diag(d)^-2 V'``: only
    ``s x p`` products after the one ``eigh`` per batch, no inverse of ``Theta_j``; then
    ``G_j G_j' = (L'E_j')'(L'E_j')`` and ``M X_j'W_j A_j X_j = E_j X_j``. ``L`` and ``L^-1 X_j`` come from one
    Cholesky factor per batch (:func:`_cholesky_solve`); ``M`` is applied to the per-cluster sums of all
    batches at once.
    """
    batches, n_clusters = cluster_batches(cluster)
    p = x.shape[1]
    cov_beta = np.asarray(cov_beta, dtype=np.float64)
    chol_m = np.asarray(np.linalg.cholesky(cov_beta), dtype=np.float64)
    row_variance, level_codes, level_variances, level_loadings = _fold_single_rows(
        row_variance, level_codes, level_variances, level_loadings
    )
    whole = [constant_within(codes, cluster) for codes in level_codes]
    # per row [x, e, u] (u: X M X' = U U'), gathered once per batch
    rows_data = np.concatenate([x, residuals[:, None], x @ chol_m], axis=1)
    # X_j'Theta_j^-1 X_j <= |X_j|_F^2 / min(row variance) I <= size * max_i |x_i|^2 / min(row variance) I
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        border = 2.0 * float(np.max(np.einsum("ij,ij->i", x, x))) / float(np.min(row_variance)) + 1.0
    bordering = bool(np.isfinite(border) and border > 0.0)
    cluster_terms: list[Array] = []
    var_terms: list[Array] = []
    for rows in batches:  # (C, s): clusters of equal size together
        theta = block_covariance(rows, row_variance, level_codes, level_variances, level_loadings, whole)
        data = rows_data[rows]
        xj, xe, u = data[:, :, :p], data[:, :, : p + 1], data[:, :, p + 1 :]  # X (C, s, p), [X, e], U
        chol, z = _cholesky_solve(theta, xj, border) if bordering else _cholesky_solve(theta, xj)
        chol_t = np.swapaxes(chol, 1, 2)
        # g = L'(Theta - U U')L; eigh reads its lower triangle only
        g = chol_t @ (theta - u @ np.swapaxes(u, 1, 2)) @ chol
        # g is in squared units of Theta (L'Theta L has the eigenvalues of Theta, squared)
        vectors, scale = _eigen_inverse_sqrt(g, np.max(theta.diagonal(axis1=1, axis2=2), axis=1) ** 2)
        inner = vectors @ (scale[:, :, None] * (np.swapaxes(vectors, 1, 2) @ z))  # g^{-1/2} L^-1 X
        q = chol @ inner  # (C, s, p): A'W X = E' M^-1 (M is applied to all clusters at once below)
        half = chol_t @ q  # L'E' M^-1
        cluster_terms.append(np.swapaxes(q, 1, 2) @ xe)  # (C, p, p + 1): [M^-1 E X, M^-1 E e]
        var_terms.append(np.swapaxes(half, 1, 2) @ half)
    terms = np.concatenate(cluster_terms)
    b = terms[:, :, p] @ cov_beta  # (J, p): E_j e_j
    gg = _left_times(cov_beta, _right_times(np.concatenate(var_terms), cov_beta))  # (J, p, p): G_j G_j'
    k = _left_times(cov_beta, terms[:, :, :p])  # (J, p, p): M X_j'W_j A_j X_j
    a = np.einsum("jii->ji", gg)  # (J, p): |G_j[i]|^2
    vcov = b.T @ b
    h = _right_times(k, chol_m)  # (J, p, p): row i is h_j of coefficient i
    h2 = (h * h) @ np.ones(p)  # (J, p): |h_j|^2 of each coefficient
    expectation = a.sum(axis=0) - h2.sum(axis=0)
    flat = h.reshape(n_clusters, p * p)
    cross = (flat.T @ flat).reshape(p, p, p, p)  # [i, :, i, :]: H_i'H_i of coefficient i
    hth = cross[np.arange(p), :, np.arange(p), :]
    variance = 2.0 * (np.sum(a**2, axis=0) - 2.0 * np.sum(a * h2, axis=0) + np.sum(hth * hth, axis=(1, 2)))
    df = 2.0 * expectation**2 / variance
    return RobustCovariance(
        vcov=vcov,
        df=df,
        n_clusters=n_clusters,
        bread=cov_beta,
        cluster_var=gg,
        cluster_design=k,
    )


WaldTestKind = Literal["HTZ", "Naive-F", "chi-sq"]
SINGULAR_RATIO = 1e-12
"""Redundancy threshold of the constraints: with the rows of ``C`` scaled to unit robust variance
(``C V_CR2 C'`` a correlation matrix), its smallest / largest eigenvalue below this means redundant
constraints; a row's own robust variance below this relative to ``|c|'|V_CR2||c|`` (rounding) means a
constraint the data cannot test (e.g. a zero row)."""


@dataclass(frozen=True)
class RobustWaldTest:
    """A cluster-robust Wald test of ``C beta = 0`` (one row of clubSandwich's ``Wald_test``).

    ``statistic`` is the F statistic for HTZ and Naive-F and the chi-square ``Q`` for chi-sq
    (clubSandwich reports ``Fstat = Q / q`` there: see :attr:`fstat`); ``wald`` is always ``Q``.
    ``df_denom`` is ``None`` for chi-sq; ``pval`` is NaN when the HTZ denominator df is not positive.
    """

    test: WaldTestKind
    statistic: float
    df_num: int
    df_denom: float | None
    pval: float
    q: int
    wald: float

    @property
    def fstat(self) -> float:
        """clubSandwich's ``Fstat`` column: ``Q / q`` for chi-sq, else :attr:`statistic`."""
        return self.statistic / self.q if self.test == "chi-sq" else self.statistic


def _hotelling_df(robust: RobustCovariance, c: Array) -> float:
    """HTZ degrees of freedom ``eta = q (q + 1) / sum(Var)`` (clubSandwich ``Wald_testing``).

    With ``C`` replaced by ``Omega^{-1/2} C`` (``Omega[s, t] = tr P_st``, the working-model expectation
    of ``C V_CR2 C'``), ``B_st = diag_j(g_j[s] . g_j[t]) - H_s'H_t`` (``J x J``) and
    ``Var[s, t] = <B_st, B_ts> + <B_ss, B_tt>`` (``total_variance_mat``; ``get_P_array(all_terms)``).
    The ``J x J`` sums are expanded into per-cluster terms, so nothing of size ``J x J`` is formed:
    ``<B_st, B_uv> = sum_j d_st d_uv - d_st hh_uv - d_uv hh_st + tr(A_us A_tv)``
    with ``d = g_j g_j'``, ``hh = h_j h_j'`` per cluster and ``A_ab = sum_j h_aj h_bj'``.
    """
    chol_m = np.linalg.cholesky(robust.bread)
    g = np.einsum("ap,jpr,br->jab", c, robust.cluster_var, c)  # (J, q, q)
    h = np.einsum("ap,jpr,ru->jau", c, robust.cluster_design, chol_m)  # (J, q, p)
    omega = g.sum(axis=0) - np.einsum("jau,jbu->ab", h, h)
    ns = _batched_inverse_sqrt(0.5 * (omega + omega.T)[None])[0]
    d = ns @ g @ ns
    h = np.einsum("ab,jbu->jau", ns, h)
    hh = np.einsum("jau,jbu->jab", h, h)
    a = np.einsum("jau,jbv->abuv", h, h)  # (q, q, p, p): A_ab
    dd = np.einsum("jss->js", d)
    hd = np.einsum("jss->js", hh)
    per_cluster = (
        np.sum(d * d)
        - 2.0 * np.sum(d * hh)
        + np.sum(dd.sum(axis=1) ** 2)
        - 2.0 * np.sum(dd.sum(axis=1) * hd.sum(axis=1))
    )
    cross = np.einsum("tsuv,tsvu->", a, a) + np.sum(a * a)
    q = c.shape[0]
    return float(q * (q + 1) / (per_cluster + cross))


def _whitened(vcov: Array, c: Array, chol: Array) -> Array:
    """``R^{-T} C`` for ``R'R = C V C'``: constraints orthonormal in the metric of ``V`` (``C -> A C`` changes them
    by an orthogonal matrix only). ``R`` comes from a QR factorisation of ``(C F)'`` (``V = F F'``, Cholesky of the
    correlation form of ``V``), so that nearly dependent constraints lose digits by the square root of the
    condition number of ``C V C'``, not by all of it; ``chol`` (Cholesky of ``C V C'``) when ``V`` is singular."""
    scale = np.sqrt(np.diag(vcov))
    if np.all(scale > 0.0):
        try:
            factor = scale[:, None] * np.linalg.cholesky(vcov / np.outer(scale, scale))
        except np.linalg.LinAlgError:
            factor = None
        if factor is not None and bool(np.all(np.isfinite(factor))):
            r = np.asarray(np.linalg.qr((c @ factor).T, mode="r"), dtype=np.float64)  # (q, q): R'R = C V C'
            return np.asarray(np.linalg.solve(r.T, c), dtype=np.float64)
    return np.asarray(np.linalg.solve(chol, c), dtype=np.float64)


def cr2_wald_test(
    robust: RobustCovariance,
    beta: ArrayLike,
    constraints: ArrayLike,
    test: WaldTestKind = "HTZ",
) -> RobustWaldTest:
    """Cluster-robust Wald test of ``C beta = 0`` for a ``q x p`` constraint matrix ``C``.

    ``Q = (C b)'(C V_CR2 C')^{-1}(C b)``. Following clubSandwich's ``Wald_test`` (Wald_test.R,
    ``Wald_testing``/``Hotelling_Tsq``; Tipton & Pustejovsky 2015, JEBS; Pustejovsky & Tipton 2018, JBES):
    HTZ reports ``F = max((eta - q + 1) / eta, 0) Q / q`` on ``(q, eta - q + 1)`` df with ``eta`` from
    :func:`_hotelling_df`; Naive-F ``F = Q / q`` on ``(q, J - 1)``; chi-sq ``Q`` on ``q`` df.
    For ``q = 1`` HTZ gives ``F = t^2`` on the coefficient's Satterthwaite df.

    All three are invariant under ``C -> A C`` (``A`` invertible) in exact arithmetic. The rows of ``C`` are
    first scaled to unit robust variance (``diag(C V_CR2 C') = 1``), so that neither the check for redundant
    constraints nor clubSandwich's fixed eigenvalue cut-off ``1e-12`` in ``Omega^{-1/2}`` depends on the units
    of the moderators (a sample size as a moderator makes ``V_CR2`` span many orders of magnitude).
    """
    c = np.atleast_2d(np.asarray(constraints, dtype=np.float64))
    b = np.asarray(beta, dtype=np.float64).reshape(-1)
    p = robust.vcov.shape[0]
    if c.ndim != 2 or c.shape[1] != p or c.shape[0] == 0 or b.size != p:
        raise ValueError(f"constraints must be q x {p} with q >= 1 and beta of length {p}")
    q = c.shape[0]
    vcov = 0.5 * (robust.vcov + robust.vcov.T)
    row_var = np.einsum("ap,pr,ar->a", c, vcov, c)  # diag(C V C')
    rounding = np.einsum("ap,pr,ar->a", np.abs(c), np.abs(vcov), np.abs(c))
    # a row of no robust variance (beyond rounding) is an empty constraint; the others are scaled to unit
    # variance, which C -> A C leaves the tests unchanged by, and C V C' becomes a correlation matrix
    empty = not np.all(row_var > SINGULAR_RATIO * rounding)
    c = c / np.sqrt(np.where(empty, 1.0, row_var))[:, None]
    sym = c @ vcov @ c.T
    sym = 0.5 * (sym + sym.T)
    values = np.linalg.eigvalsh(sym)
    # redundant constraints make C V C' singular, but rounding may leave its smallest eigenvalue a hair
    # above 0: a condition number beyond 1e12 counts as singular, whatever Cholesky's luck
    singular = empty or not values[0] > SINGULAR_RATIO * values[-1]
    try:
        if singular:
            raise np.linalg.LinAlgError
        chol = np.asarray(np.linalg.cholesky(sym), dtype=np.float64)  # clubSandwich: chol2inv(chol(C V C'))
    except np.linalg.LinAlgError:
        raise ValueError("C V_CR2 C' is not positive definite (redundant constraints or too few clusters)") from None
    # Q and the HTZ df are invariant under C -> A C: both are computed from the whitened constraints, on which
    # A acts as an orthogonal matrix (the statistic and eta then stay invariant to rounding)
    c = _whitened(vcov, c, chol)
    z = c @ b
    wald = float(z @ z)
    if test == "chi-sq":
        return RobustWaldTest(test, wald, q, None, chi2_sf(wald, q), q, wald)
    if test == "Naive-F":
        df2 = float(robust.n_clusters - 1)
        return RobustWaldTest(test, wald / q, q, df2, f_sf(wald / q, q, df2), q, wald)
    if test == "HTZ":
        eta = _hotelling_df(robust, c)
        df2 = eta - q + 1.0
        fstat = max(df2 / eta, 0.0) * wald / q  # Hotelling_Tsq: delta = pmax((nu - q + 1) / nu, 0)
        pval = f_sf(fstat, q, df2) if df2 > 0 else float("nan")
        return RobustWaldTest(test, fstat, q, df2, pval, q, wald)
    raise ValueError(f"unknown Wald test {test!r}")
