"""Case-deletion refits of a nested random-intercept model, all deletions at once.

Deleting rows from the data is the same as giving them zero weight: with ``K`` the 0/1 mask of the
kept rows, every unit-level sum of the nested likelihood (``C'D^-1C``, the first level's group sums
``C'D^-1 1`` and ``1'D^-1 1``, ``log|D|``) takes the weights ``K / (v + sigma2_diag)``, and a group
left without rows drops out of the Woodbury steps (``1 + s 0 = 1``). So the (restricted) log-likelihood
of every deleted data set, with its exact gradient and Hessian, is the recursion of
:func:`edueffects.core.nested.evaluate` with a leading axis over deletions, each at its own ``theta``.

:func:`deletion_refits` runs projected Newton on all deletions together from the full fit's
``theta`` (full steps; a component at 0 whose gradient points outward is held there). A deletion is
accepted when its Newton decrement or its Newton step is negligible (the step relative to each
component, or to ``1e-6`` of the data's variance scale near zero: :func:`edueffects.core.nested.negligible_step`,
the rule of ``maximize``, so that the result does not depend on the units of ``y``), its Hessian over the
free components is negative definite and every free component stayed positive; any other deletion (a step leaving
``theta >= 0``, a non-concave point, a decrease of the log-likelihood, no convergence) is refitted by
:func:`edueffects.core.nested.maximize` from the same start, the general path. Rows whose moderators
are no longer estimable without the deleted rows give NaN. A level left with a single group by a
deletion has its component fixed at 0 in that refit (metafor ``rma.mv``: "Single-level factor(s) found
in 'random' argument. Corresponding 'sigma2' value(s) fixed to 0"; under REML its variance is not
identified, confounded with the intercept); such deletions take the general path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from edueffects.core.jet import Array
from edueffects.core.nested import (
    IntArray,
    Method,
    NestedDesign,
    _triu,
    design_from_rows,
    group_order,
    maximize,
    negligible_step,
)

__all__ = ["DeletionFits", "deletion_refits", "full_data_covariances"]

BATCH_ELEMENTS = 1 << 18
"""Deletions are taken in chunks whose unit-level arrays (deletions x rows) hold about this many elements."""
MAX_NEWTON = 30
"""Newton steps of the batched path before a deletion is handed to the general optimiser."""


@dataclass(frozen=True)
class DeletionFits:
    """Deleted fits, one row per deletion, in the coordinates of the ``x`` given: ``beta`` (d, p),
    ``cov_beta = (X'V^-1X)^-1`` (d, p, p), ``theta`` (d, t), ``loglik``, ``rss`` (the GLS residual sum of
    squares), ``k`` (rows kept), ``qe`` (the fixed-effect heterogeneity Q of the kept rows, weights 1/v);
    ``batched`` marks deletions the batched Newton settled (the others went through ``maximize``);
    ``converged`` whether the refit converged: always for batched ones (settled by a negligible step at a
    negative definite Hessian), ``maximize``'s verdict for the others, False where nothing was fitted
    (moderators not estimable: NaN)."""

    beta: Array
    cov_beta: Array
    theta: Array
    loglik: Array
    rss: Array
    k: Array
    qe: Array
    batched: NDArray[np.bool_]
    converged: NDArray[np.bool_]


class _BJet:
    """Values with exact first and second derivatives over all ``t`` parameters, batched over deletions:
    ``v`` (b, *s), ``d1`` (b, t, *s), ``d2`` (b, t, t, *s)."""

    __slots__ = ("d1", "d2", "v")

    def __init__(self, v: Array, d1: Array, d2: Array) -> None:
        self.v, self.d1, self.d2 = v, d1, d2

    def __add__(self, o: _BJet) -> _BJet:
        return _BJet(self.v + o.v, self.d1 + o.d1, self.d2 + o.d2)

    def __sub__(self, o: _BJet) -> _BJet:
        return _BJet(self.v - o.v, self.d1 - o.d1, self.d2 - o.d2)

    def __mul__(self, o: _BJet) -> _BJet:
        cross = self.d1[:, :, None] * o.d1[:, None, :]
        return _BJet(
            self.v * o.v,
            self.d1 * o.v[:, None] + self.v[:, None] * o.d1,
            self.d2 * o.v[:, None, None] + self.v[:, None, None] * o.d2 + cross + np.swapaxes(cross, 1, 2),
        )

    def plus_one(self) -> _BJet:
        return _BJet(self.v + 1.0, self.d1, self.d2)

    def reciprocal(self) -> _BJet:
        r = 1.0 / self.v
        r2 = r * r
        outer = self.d1[:, :, None] * self.d1[:, None, :]
        return _BJet(r, -self.d1 * r2[:, None], -self.d2 * r2[:, None, None] + 2.0 * outer * (r2 * r)[:, None, None])

    def log(self) -> _BJet:
        r = 1.0 / self.v
        outer = self.d1[:, :, None] * self.d1[:, None, :]
        return _BJet(np.log(self.v), self.d1 * r[:, None], self.d2 * r[:, None, None] - outer * (r * r)[:, None, None])

    def expand(self, axis: int) -> _BJet:
        """Insert a value axis of length one at value position ``axis``."""
        return _BJet(
            np.expand_dims(self.v, 1 + axis), np.expand_dims(self.d1, 2 + axis), np.expand_dims(self.d2, 3 + axis)
        )

    def sum(self, axis: int) -> _BJet:
        return _BJet(self.v.sum(axis=1 + axis), self.d1.sum(axis=2 + axis), self.d2.sum(axis=3 + axis))

    def segment_sum(self, starts: IntArray) -> _BJet:
        """Sum runs along the first value axis; run ``g`` begins at ``starts[g]``."""
        return _BJet(
            np.add.reduceat(self.v, starts, axis=1),
            np.add.reduceat(self.d1, starts, axis=2),
            np.add.reduceat(self.d2, starts, axis=3),
        )


def _parameter(theta: Array, index: int, shape: tuple[int, ...], t: int) -> _BJet:
    """``theta[:, index]`` as a jet broadcast over value axes ``shape`` (ones), derivatives in ``t``
    parameters (none when ``t`` is 0)."""
    b = theta.shape[0]
    pad = (1,) * len(shape)
    d1 = np.zeros((b, t, *pad))
    if t:
        d1[:, index] = 1.0
    return _BJet(theta[:, index].reshape(b, *pad), d1, np.zeros((b, t, t, *pad)))


def _group_matrix(design: NestedDesign) -> sparse.csr_matrix:
    """Sparse (groups * c, units) holding the unit statistics ``[packed c c' | sum c | count]`` (``c`` columns)
    at rows ``g(u) c + k``, ``g`` the unit's first-level group (one group without Woodbury levels): one
    product with the units' weights gives every group sum the unit level needs."""
    stats = design.unit_stats
    n, c = stats.shape
    starts = design.woodbury_starts[0] if design.woodbury_starts else np.zeros(1, dtype=np.intp)
    group = np.repeat(np.arange(starts.size), np.diff(np.append(starts, n)))
    rows = (group[:, None] * c + np.arange(c)[None, :]).ravel()
    cols = np.repeat(np.arange(n), c)
    return sparse.csr_matrix((stats.ravel(), (rows, cols)), shape=(starts.size * c, n))


def _mm(a: Array, b: Array) -> Array:
    """``sum_g a[..., g, :]' b[..., g, :]`` (contracting the group axis)."""
    return np.asarray(np.swapaxes(a, -1, -2) @ b, dtype=np.float64)


def _tr(a: Array) -> Array:
    return np.swapaxes(a, -1, -2)


def _gram(u: _BJet, q: _BJet) -> _BJet:
    """Jet of ``sum_g u_g q_g q_g'`` (b, m, m) from ``u`` (b, groups) and ``q`` (b, groups, m), contracted
    over groups by batched matrix products (no (b, t, t, groups, m, m) intermediate)."""
    u0, u1, u2 = u.v, u.d1, u.d2
    q0, q1, q2 = q.v, q.d1, q.d2
    uq = u0[..., None] * q0  # (b, g, m)
    value = _mm(uq, q0)
    s_ = _mm(uq[:, None], q1)  # [i] = sum u0 q q1_i'
    d1 = _mm(u1[..., None] * q0[:, None], q0[:, None]) + s_ + _tr(s_)
    r = _mm((u1[..., None] * q0[:, None])[:, :, None], q1[:, None])  # [i, j] = sum u1_i q q1_j'
    pp = _mm(uq[:, None, None], q2)  # [i, j] = sum u0 q q2_ij'
    qq = _mm((u0[:, None, :, None] * q1)[:, :, None], q1[:, None])  # [i, j] = sum u0 q1_i q1_j'
    rr = r + _tr(r)
    d2 = (
        _mm(u2[..., None] * q0[:, None, None], q0[:, None, None])
        + rr
        + np.swapaxes(rr, 1, 2)
        + pp
        + _tr(pp)
        + qq
        + _tr(qq)
    )
    return _BJet(value, d1, d2)


def _one_level(
    groups: Array, sigma2: Array, cross: _BJet, logdet: _BJet, a: int | None, b: int | None
) -> tuple[_BJet, _BJet]:
    """One Woodbury level (parameter ``a``, groups of units whose weights depend on parameter ``b`` or on
    none) in closed form: with ``O = 1'D^-1 1``, ``q = C'D^-1 1`` per group (and their ``b``-derivatives
    ``O'``, ``O''``, ``q'``, ``q''`` in ``groups``, (orders, deletions, groups, m + 1)), ``s`` the level's
    variance, ``f = 1 + s O`` and ``u = s / f``: ``log|V| += sum log f`` and ``C'V^-1C -= sum u q q'``, with
    ``u_s = 1/f^2``, ``u_ss = -2 O/f^3``, ``u_b = -s^2 O'/f^2``, ``u_sb = -2 s O'/f^2 + 2 s^2 O O'/f^3``,
    ``u_bb = -s^2 O''/f^2 + 2 s^3 O'^2/f^3``; ``(log f)_s = O/f``, ``_ss = -O^2/f^2``, ``_b = s O'/f``,
    ``_sb = O'/f^2``, ``_bb = s O''/f - s^2 O'^2/f^2``."""
    s = sigma2[:, None]
    o, q = groups[0, ..., -1], groups[0, ..., :-1]
    f = 1.0 + s * o
    r = 1.0 / f
    u = s * r
    value_cross = cross.v - _mm(u[..., None] * q, q)
    logdet_v = logdet.v + np.log(f).sum(axis=1)
    if a is None:
        return _BJet(value_cross, cross.d1, cross.d2), _BJet(logdet_v, logdet.d1, logdet.d2)
    d1c, d2c = cross.d1.copy(), cross.d2.copy()
    d1l, d2l = logdet.d1.copy(), logdet.d2.copy()
    r2 = r * r
    qq = q[..., :, None] * q[..., None, :]  # (deletions, groups, m, m)
    n_b, n_g, m = q.shape

    def wsum(weights: Array, products: Array) -> Array:  # sum_g weights[k, g] products[g] -> (deletions, k, m, m)
        return np.asarray(weights @ products.reshape(n_b, n_g, m * m), dtype=np.float64).reshape(n_b, -1, m, m)

    u_s, u_ss = r2, -2.0 * o * r2 * r
    d1l[:, a] += (o * r).sum(axis=1)
    d2l[:, a, a] += (-(o * o) * r2).sum(axis=1)
    if b is None:
        parts = wsum(np.stack([u_s, u_ss], axis=1), qq)
        d1c[:, a] -= parts[:, 0]
        d2c[:, a, a] -= parts[:, 1]
        return _BJet(value_cross, d1c, d2c), _BJet(logdet_v, d1l, d2l)
    o1, o2 = groups[1, ..., -1], groups[2, ..., -1]
    q1, q2 = groups[1, ..., :-1], groups[2, ..., :-1]
    u_b = -s * s * o1 * r2
    u_sb = -2.0 * s * o1 * r2 + 2.0 * s * s * o * o1 * r2 * r
    u_bb = -s * s * o2 * r2 + 2.0 * s**3 * o1 * o1 * r2 * r
    d1l[:, b] += (s * o1 * r).sum(axis=1)
    d2l[:, a, b] += (o1 * r2).sum(axis=1)
    d2l[:, b, a] = d2l[:, a, b]
    d2l[:, b, b] += (s * o2 * r - s * s * o1 * o1 * r2).sum(axis=1)
    p_qq = wsum(np.stack([u_s, u_ss, u_b, u_sb, u_bb], axis=1), qq)
    p_1 = wsum(np.stack([u, u_s, u_b], axis=1), q1[..., :, None] * q[..., None, :])  # sum w q' q^T
    p_1 = p_1 + _tr(p_1)
    p_2 = wsum(u[:, None], q2[..., :, None] * q[..., None, :])[:, 0]
    p_11 = wsum(u[:, None], q1[..., :, None] * q1[..., None, :])[:, 0]
    d1c[:, a] -= p_qq[:, 0]
    d2c[:, a, a] -= p_qq[:, 1]
    d1c[:, b] -= p_qq[:, 2] + p_1[:, 0]
    d2c[:, a, b] -= p_qq[:, 3] + p_1[:, 1]
    d2c[:, b, a] = d2c[:, a, b]
    d2c[:, b, b] -= p_qq[:, 4] + 2.0 * p_1[:, 2] + p_2 + _tr(p_2) + 2.0 * p_11
    return _BJet(value_cross, d1c, d2c), _BJet(logdet_v, d1l, d2l)


@dataclass(frozen=True)
class _Batch:
    """Batched evaluation of a chunk of deletions: log-likelihood, gradient, Hessian, GLS solution."""

    loglik: Array
    gradient: Array
    hessian: Array
    beta: Array
    cov_beta: Array
    rss: Array


def _evaluate(
    design: NestedDesign,
    matrix: sparse.csr_matrix,
    keep: Array,
    theta: Array,
    method: Method,
    xtx_logdet: Array,
    derivatives: bool = True,
) -> _Batch:
    """The recursion of :func:`edueffects.core.nested.evaluate` for the rows ``keep`` (n, b) of each
    deletion at its own ``theta`` (b, t); ``matrix`` from :func:`_group_matrix`. Without ``derivatives``
    the gradient and Hessian are empty (b, 0), (b, 0, 0)."""
    stats = design.unit_stats
    p = design.n_fixed
    m = p + 1
    n_units, n_columns = stats.shape
    n_pairs = n_columns - (p + 2)
    b = theta.shape[0]
    t = theta.shape[1] if derivatives else 0
    diagonal = design.diagonal_param
    index = diagonal if derivatives else None
    orders = 3 if index is not None else 1
    d = design.known_var[:, None] + (theta[:, diagonal][None, :] if diagonal is not None else 0.0)  # (n, b)
    weights = np.empty((n_units, orders, b))
    inv_d = np.divide(1.0, d)
    np.multiply(keep, inv_d, out=weights[:, 0])
    if orders == 3:
        np.multiply(weights[:, 0], inv_d, out=weights[:, 1])
        np.negative(weights[:, 1], out=weights[:, 1])
        np.multiply(weights[:, 1], inv_d, out=weights[:, 2])
        weights[:, 2] *= -2.0
    sums = np.asarray(matrix @ weights.reshape(n_units, orders * b), dtype=np.float64)
    sums = sums.reshape(-1, n_columns, orders, b).transpose(2, 3, 0, 1)  # (orders, b, groups, columns)
    totals = sums.sum(axis=2)  # (orders, b, columns)
    logdet = _BJet(np.einsum("nb,nb->b", keep, np.log(d)), np.zeros((b, t)), np.zeros((b, t, t)))
    ia, ib = _triu(m)
    full_v = np.empty((b, m, m))
    full_v[:, ia, ib] = full_v[:, ib, ia] = totals[0, :, :n_pairs]
    full_d1 = np.zeros((b, t, m, m))
    full_d2 = np.zeros((b, t, t, m, m))
    if index is not None:
        logdet.d1[:, index] = totals[0, :, -1]
        logdet.d2[:, index, index] = totals[1, :, -1]
        full_d1[:, index, ia, ib] = full_d1[:, index, ib, ia] = totals[1, :, :n_pairs]
        full_d2[:, index, index, ia, ib] = full_d2[:, index, index, ib, ia] = totals[2, :, :n_pairs]
    cross = _BJet(full_v, full_d1, full_d2)
    if len(design.woodbury_starts) == 1:  # one level of groups: closed-form derivatives
        cross, logdet = _one_level(
            sums[..., n_pairs:],
            theta[:, design.woodbury_params[0]],
            cross,
            logdet,
            design.woodbury_params[0] if t else None,
            index,
        )
    elif design.woodbury_starts:
        groups = sums[..., n_pairs:]  # (orders, b, groups, m + 1)
        n_groups = groups.shape[2]
        g1 = np.zeros((b, t, n_groups, m + 1))
        g2 = np.zeros((b, t, t, n_groups, m + 1))
        if index is not None:
            g1[:, index], g2[:, index, index] = groups[1], groups[2]
        colsum = _BJet(groups[0, ..., :-1], g1[..., :-1], g2[..., :-1])
        ones = _BJet(groups[0, ..., -1], g1[..., -1], g2[..., -1])
        levels = list(zip(design.woodbury_starts, design.woodbury_params, strict=True))
        for j, (starts, param) in enumerate(levels):
            if j > 0:
                colsum, ones = colsum.segment_sum(starts), ones.segment_sum(starts)
            sigma2 = _parameter(theta, param, (1,), t)
            inv_factor = (sigma2 * ones).plus_one().reciprocal()
            logdet = logdet - inv_factor.log().sum(0)
            cross = cross - _gram(sigma2 * inv_factor, colsum)
            if j < len(levels) - 1:
                colsum = colsum * inv_factor.expand(1)
                ones = ones * inv_factor
    q0, q1, q2 = cross.v, cross.d1, cross.d2
    a, bb, c = q0[:, :p, :p], q0[:, :p, p], q0[:, p, p]
    a1, b1, c1 = q1[:, :, :p, :p], q1[:, :, :p, p], q1[:, :, p, p]
    a2, b2, c2 = q2[:, :, :, :p, :p], q2[:, :, :, :p, p], q2[:, :, :, p, p]
    a_inv = np.linalg.inv(a)
    beta = np.einsum("bij,bj->bi", a_inv, bb)
    rss = c - np.einsum("bi,bi->b", bb, beta)
    beta1 = np.einsum("bij,btj->bti", a_inv, b1 - np.einsum("btij,bj->bti", a1, beta))
    rss1 = c1 - 2.0 * np.einsum("bti,bi->bt", b1, beta) + np.einsum("bi,btij,bj->bt", beta, a1, beta)
    rss2 = (
        c2
        - 2.0 * np.einsum("btui,bi->btu", b2, beta)
        + np.einsum("bi,btuij,bj->btu", beta, a2, beta)
        - 2.0 * np.einsum("bui,bij,btj->btu", beta1, a, beta1)
    )
    n = keep.sum(axis=0)
    total1 = logdet.d1 + rss1
    total2 = logdet.d2 + rss2
    value = logdet.v + rss
    if method == "REML":
        ainv_a1 = np.einsum("bij,btjk->btik", a_inv, a1)
        value = value + np.linalg.slogdet(a)[1] - xtx_logdet + (n - p) * np.log(2 * np.pi)
        total1 = total1 + np.einsum("btii->bt", ainv_a1)
        total2 = total2 + np.einsum("bij,btuji->btu", a_inv, a2) - np.einsum("btij,buji->btu", ainv_a1, ainv_a1)
    else:
        value = value + n * np.log(2 * np.pi)
    return _Batch(-0.5 * value, -0.5 * total1, -0.5 * total2, beta, np.asarray(a_inv, dtype=np.float64), rss)


def _sorted_design(x: Array, y: Array, v: Array, codes: Sequence[IntArray]) -> tuple[NestedDesign, IntArray]:
    """The one-unit-per-row design of all rows in group order, and that order."""
    keys = [np.asarray(g, dtype=np.int64) for g in codes]
    order = group_order(keys, x.shape[0])
    design = design_from_rows(x[order], y[order], v[order], [k[order] for k in keys], residual=False)
    if (
        design.replicated_param is not None
        or getattr(design, "unit_loading", None) is not None
        or bool(np.any(design.unit_stats[:, -1] != 1))
    ):
        raise ValueError("deletion refits need one unit per row")  # pragma: no cover - design_from_rows
    return design, order


def _kept_cross(design: NestedDesign, keep: Array, weights: Array) -> Array:
    """``C'WC`` of the kept rows (b, m, m) for fixed row weights."""
    m = design.n_fixed + 1
    n_pairs = design.unit_stats.shape[1] - (m + 1)
    ia, ib = _triu(m)
    out = np.empty((keep.shape[1], m, m))
    out[:, ia, ib] = out[:, ib, ia] = (keep * weights[:, None]).T @ design.unit_stats[:, :n_pairs]
    return out


def _newton(
    design: NestedDesign,
    matrix: sparse.csr_matrix,
    keep: Array,
    start: Array,
    held: NDArray[np.bool_],
    method: Method,
    xtx_logdet: Array,
    scale: float,
) -> tuple[_Batch, NDArray[np.bool_], Array]:
    """Batched projected Newton (full steps) from ``start``; which deletions settled, and their ``theta``.
    ``scale`` is the variance scale of the data (:attr:`NestedDesign.variance_scale`): the Hessian's
    eigenvalues are measured against ``1 / scale^2`` and the steps against ``scale`` near zero."""
    b = keep.shape[1]
    t = start.size
    theta = np.tile(start, (b, 1))
    settled = np.zeros(b, dtype=bool)
    failed = np.zeros(b, dtype=bool)
    final: _Batch | None = None
    active = np.arange(b)
    previous = np.full(b, -np.inf)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(MAX_NEWTON):
            if active.size == 0:
                break
            ev = _evaluate(design, matrix, keep[:, active], theta[active], method, xtx_logdet[active])
            if final is None:
                final = _Batch(*(np.zeros((b, *np.shape(f)[1:])) for f in vars(ev).values()))
            th = theta[active]
            g, h = ev.gradient, ev.hessian
            free = ~held[None, :] & ~((th <= 0.0) & (g <= 0.0))
            pair = free[:, :, None] & free[:, None, :]
            neg_h = np.where(pair, -h, 0.0) + np.where(~free, 1.0, 0.0)[:, :, None] * np.eye(t)[None]
            eigval, eigvec = np.linalg.eigh(neg_h)
            gf = np.where(free, g, 0.0)
            floor = 1e-10 * np.maximum(scale**-2, np.abs(eigval).max(axis=1))  # curvature in units of 1/scale^2
            concave = eigval.min(axis=1) > floor
            step = np.einsum(
                "bij,bj->bi", eigvec, np.einsum("bji,bj->bi", eigvec, gf) / np.where(concave[:, None], eigval, 1.0)
            )
            decrement = np.einsum("bi,bi->b", gf, step)
            tol = 1e-10 * np.maximum(1.0, np.abs(ev.loglik))
            bad = ~np.isfinite(ev.loglik) | ~concave | (ev.loglik < previous[active] - tol) | ~np.isfinite(decrement)
            done = ~bad & ((decrement < 1e-20) | negligible_step(step, th, scale))
            trial = th + step
            bad |= ~done & np.any(free & (trial <= 0.0), axis=1)  # the step leaves theta >= 0: general path
            for name, value in vars(ev).items():
                getattr(final, name)[active[done]] = value[done]
            settled[active[done]] = True
            failed[active[bad]] = True
            previous[active] = ev.loglik
            theta[active[~done & ~bad]] = trial[~done & ~bad]
            active = active[~done & ~bad]
    if final is None:  # pragma: no cover - b >= 1
        raise ValueError("no deletions")
    return final, settled, theta


def single_group_levels(
    codes: Sequence[IntArray], members: IntArray, owner: IntArray, n_deletions: int
) -> NDArray[np.bool_]:
    """(d, levels): which levels each deletion leaves with exactly one group (a group is gone when all its
    rows are deleted), from the (deletion, group) pairs of the deleted rows; no deletions x rows array."""
    out = np.zeros((n_deletions, len(codes)), dtype=bool)
    owner64 = np.asarray(owner, dtype=np.int64)
    for j, level in enumerate(codes):
        c = np.asarray(level, dtype=np.int64)
        groups = int(c.max()) + 1 if c.size else 0
        size = np.bincount(c, minlength=groups)
        pair, count = np.unique(owner64 * groups + c[members], return_counts=True)
        emptied = count == size[pair % groups]
        removed = np.bincount(pair[emptied] // groups, minlength=n_deletions)
        out[:, j] = groups - removed == 1
    return out


def deletion_refits(
    x: Array,
    y: Array,
    v: Array,
    codes: Sequence[IntArray],
    method: Method,
    start: Array,
    members: IntArray,
    owner: IntArray,
    n_deletions: int,
    fixed: Sequence[bool] | None = None,
) -> DeletionFits:
    """Refit the nested model (``codes``: per-row group codes, outermost first; ``v`` known variances)
    without the rows ``members[owner == d]`` for every deletion ``d``, from the variance components
    ``start`` (``fixed`` components held), by ``method``; see the module docstring. ``x`` should be
    well conditioned (e.g. an orthonormal basis of the moderators): results are in its coordinates."""
    n, p = x.shape
    design, order = _sorted_design(x, y, v, codes)
    position = np.empty(n, dtype=np.intp)
    position[order] = np.arange(n)
    held = np.zeros(start.size, dtype=bool) if fixed is None else np.asarray(fixed, dtype=bool)
    t = start.size
    out = DeletionFits(
        beta=np.full((n_deletions, p), np.nan),
        cov_beta=np.full((n_deletions, p, p), np.nan),
        theta=np.full((n_deletions, t), np.nan),
        loglik=np.full(n_deletions, np.nan),
        rss=np.full(n_deletions, np.nan),
        k=np.zeros(n_deletions),
        qe=np.full(n_deletions, np.nan),
        batched=np.zeros(n_deletions, dtype=bool),
        converged=np.zeros(n_deletions, dtype=bool),
    )
    single = single_group_levels(codes, members, owner, n_deletions) & ~held[None, :]
    special = single.any(axis=1)  # a level left with one group: its component fixed at 0, general path
    matrix = _group_matrix(design)
    chunk = max(1, BATCH_ELEMENTS // max(n, 1))
    rows_sorted = position[members]
    v_sorted = design.known_var
    general: list[int] = []
    for lo in range(0, n_deletions, chunk):
        ids = np.arange(lo, min(lo + chunk, n_deletions))
        keep = np.ones((n, ids.size))  # rows x deletions
        inside = (owner >= lo) & (owner < lo + ids.size)
        keep[rows_sorted[inside], owner[inside] - lo] = 0.0
        k = keep.sum(axis=0)
        out.k[ids] = k
        fe = _kept_cross(design, keep, 1.0 / v_sorted)
        xtx = _kept_cross(design, keep, np.ones(n))[:, :p, :p]
        sign, xtx_logdet = np.linalg.slogdet(xtx)
        estimable = (k > p) & (sign > 0) & (np.linalg.cond(xtx) < 1e12)
        with np.errstate(invalid="ignore"):
            fe_beta = np.linalg.solve(np.where(estimable[:, None, None], fe[:, :p, :p], np.eye(p)), fe[:, :p, p, None])[
                ..., 0
            ]
        out.qe[ids] = np.where(estimable, fe[:, p, p] - np.einsum("bi,bi->b", fe[:, :p, p], fe_beta), np.nan)
        general.extend(ids[estimable & special[ids]].tolist())
        use = np.flatnonzero(estimable & ~special[ids])
        if use.size == 0:
            continue
        start_theta = np.asarray(start, dtype=float)
        final, settled, theta = _newton(
            design, matrix, keep[:, use], start_theta, held, method, xtx_logdet[use], design.variance_scale
        )
        done = ids[use[settled]]
        out.beta[done], out.cov_beta[done] = final.beta[settled], final.cov_beta[settled]
        out.loglik[done], out.rss[done] = final.loglik[settled], final.rss[settled]
        out.theta[done] = theta[settled]
        out.batched[done] = out.converged[done] = True
        general.extend(ids[use[~settled]].tolist())
    for d in general:  # the general optimiser, as a loop over deletions would run it
        keep_rows = np.ones(n, dtype=bool)
        keep_rows[members[owner == d]] = False
        kept = [np.asarray(c)[keep_rows] for c in codes]
        sub = design_from_rows(x[keep_rows], y[keep_rows], v[keep_rows], kept, residual=False)
        start_d = np.where(single[d], 0.0, np.asarray(start, dtype=float))
        held_d = held | single[d]
        ev, convergence = maximize(sub, method, start_d, fixed=held_d.tolist(), global_search=False)
        out.beta[d], out.cov_beta[d], out.theta[d] = ev.beta, ev.cov_beta, ev.theta
        out.loglik[d], out.rss[d] = ev.loglik, ev.rss
        out.converged[d] = convergence.converged
    return out


def full_data_covariances(x: Array, y: Array, v: Array, codes: Sequence[IntArray], thetas: Array) -> Array:
    """``(X'V(theta)^-1 X)^-1`` of all rows at each row of ``thetas`` (d, t), batched (NaN rows stay NaN)."""
    n, p = x.shape
    design, _ = _sorted_design(x, y, v, codes)
    matrix = _group_matrix(design)
    out = np.full((thetas.shape[0], p, p), np.nan)
    ok = np.flatnonzero(np.all(np.isfinite(thetas), axis=1))
    chunk = max(1, BATCH_ELEMENTS // max(n, 1))
    for lo in range(0, ok.size, chunk):
        ids = ok[lo : lo + chunk]
        batch = _evaluate(design, matrix, np.ones((n, ids.size)), thetas[ids], "ML", np.zeros(ids.size), False)
        out[ids] = batch.cov_beta
    return out
