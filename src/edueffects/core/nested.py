"""Exact ML/REML likelihood of linear mixed models with nested random intercepts.

Model: ``y = X b + sum_l Z_l u_l + e`` with ``u_l ~ N(0, sigma2_l I)`` for nested grouping levels
(outermost first) and ``e_i ~ N(0, v_i + sigma2_e)``: per-row known variances ``v_i`` (meta-analysis)
and/or a free residual variance ``sigma2_e`` (multilevel models of student data).

The marginal covariance ``V`` is never formed. Starting from the rows (``D = diag(v + sigma2_e)``),
each level is added with the Woodbury identity and the matrix determinant lemma, per group ``g``:

    a' (V + s 1 1')^-1 b = a'V^-1 b - s (a'V^-1 1)(1'V^-1 b) / (1 + s 1'V^-1 1)
    |V + s 1 1'| = |V| (1 + s 1'V^-1 1)

applied to the columns ``c = [X, y]``. Because the levels are nested, ``1'V^-1 1`` and
``c'V^-1 1`` of a group are segment sums of those of its children, so the whole likelihood costs
O(n (p+1)^2) with segment sums and no loop over groups. The recursion is evaluated with
second-order jets, which gives the exact gradient and Hessian (observed information).

Rows may be pre-aggregated into *units*: rows of one innermost group that share the same ``x`` and
``v`` contribute only through their count, ``sum c`` and ``sum c c'`` (sufficient statistics).

REML log-likelihood (Harville 1977; metafor's definition, which adds ``1/2 log|X'X|``):

    l_R = -1/2 [ (n-p) log 2pi - log|X'X| + log|V| + log|X'V^-1 X| + (y-Xb)'V^-1(y-Xb) ]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from edueffects.core.jet import Array, Jet

IntArray = NDArray[np.intp]
Method = Literal["ML", "REML"]


@dataclass(frozen=True)
class NestedDesign:
    """Sufficient statistics of one nested random-intercept model, units sorted by group.

    ``unit_stats`` holds per unit the packed upper triangle of ``sum c c'`` (``c = [x, y]``), then
    ``sum c``, then the number of rows; ``known_var`` is the known variance shared by those rows.
    Parameters ``theta`` are the level variances (outermost first), then the residual variance.

    ``woodbury_starts[j]`` gives, for the j-th Woodbury level counted from the innermost, where each
    group's run of children begins (children: units for the first, groups of level j-1 otherwise);
    ``woodbury_params[j]`` is its index in ``theta``. ``diagonal_param`` is the parameter added to
    every unit's variance: the residual variance, or the innermost level when its groups are single
    rows (then ``sigma2 1 1'`` of a 1x1 block is just a diagonal term, and no Woodbury step is needed).

    ``replicated_param`` marks an innermost level whose groups are aggregated inside units: unit ``u``
    holds ``group_count[u]`` groups of equal size and equal ``x`` pattern (e.g. the students of one
    school-cohort cell observed at the same occasions), and ``group_outer[u]`` the packed
    ``sum_g (sum_{rows of g} c)(sum_{rows of g} c)'``; the Woodbury step of that level then acts per
    unit, so the cost does not grow with the number of groups.
    """

    n_fixed: int
    n_params: int
    unit_stats: Array
    known_var: Array
    woodbury_starts: tuple[IntArray, ...]
    woodbury_params: tuple[int, ...]
    diagonal_param: int | None
    xtx_logdet: float
    n_obs: int
    replicated_param: int | None = None
    group_outer: Array | None = None
    group_count: Array | None = None

    @property
    def count(self) -> Array:
        return self.unit_stats[:, -1]

    @cached_property
    def _first_pattern(self) -> tuple[IntArray, IntArray, int]:
        """CSR pattern summing units into the first level's groups (one group if no level)."""
        n = self.count.size
        starts = self.woodbury_starts[0] if self.woodbury_starts else np.zeros(1, dtype=np.intp)
        return np.append(starts, n).astype(np.intp), np.arange(n, dtype=np.intp), int(starts.size)

    def weighted_unit_sums(self, weights: Array) -> Array:
        """``sum_{u in g} w_u [sum c, count]_u`` for every first-level group ``g``."""
        indptr, indices, n_groups = self._first_pattern
        matrix = sparse.csr_matrix((weights, indices, indptr), shape=(n_groups, indices.size))
        n_pairs = self.unit_stats.shape[1] - (self.n_fixed + 2)
        return np.asarray(matrix @ self.unit_stats[:, n_pairs:], dtype=np.float64)

    @cached_property
    def _constant_unit_level(self) -> tuple[Jet, Jet, Jet, Jet]:
        """Unit-level quantities when no parameter touches the unit variances (computed once)."""
        n_pairs = self.unit_stats.shape[1] - (self.n_fixed + 2)
        w = 1.0 / self.known_var
        sums = self.weighted_unit_sums(w)
        return (
            Jet.constant(w @ self.unit_stats[:, :n_pairs]),
            Jet.constant(sums[:, :-1]),
            Jet.constant(sums[:, -1]),
            Jet.constant(float(np.sum(self.count * np.log(self.known_var)))),
        )


@dataclass(frozen=True)
class Evaluation:
    """Log-likelihood with its exact gradient and Hessian at ``theta``, and the GLS solution."""

    theta: Array
    loglik: float
    gradient: Array
    hessian: Array
    beta: Array
    cov_beta: Array
    cov_beta_grad: Array
    rss: float
    logdet_v: float


def design_from_rows(
    x: Array,
    y: Array,
    known_var: Array,
    groups: Sequence[IntArray],
    residual: bool,
) -> NestedDesign:
    """Build a design with one unit per row; rows are put in group order internally.

    ``groups`` lists integer codes per row, outermost level first; each inner level's codes must be
    nested in the outer ones (a code belongs to one outer group). Results do not depend on row order.
    """
    n, p = x.shape
    keys = [np.asarray(g, dtype=np.int64) for g in groups]
    order = group_order(keys, n)
    identity = bool(np.array_equal(order, np.arange(n)))
    xs, ys, vs = (x, y, known_var) if identity else (x[order], y[order], known_var[order])
    stats = unit_statistics(xs, ys, ys * ys, np.ones(n))
    return design_from_units(p, stats, vs, keys if identity else [k[order] for k in keys], residual)


def unit_statistics(x: Array, y_sum: Array, y_sumsq: Array, count: Array) -> Array:
    """Per-unit ``[packed sum c c' | sum c | count]``, ``c = [x, y]``, for units of ``count`` rows
    sharing the same ``x`` (``y_sum``, ``y_sumsq``: the unit's sum of ``y`` and of ``y^2``)."""
    n, p = x.shape
    ia, ib = np.triu_indices(p + 1)
    n_pairs = ia.size
    stats = np.empty((n, n_pairs + p + 2))
    stats[:, n_pairs : n_pairs + p] = x * count[:, None]
    stats[:, n_pairs + p] = y_sum
    for k, (a, b) in enumerate(zip(ia, ib, strict=True)):
        if b < p:
            np.multiply(x[:, a] * count, x[:, b], out=stats[:, k])
        elif a < p:
            np.multiply(x[:, a], y_sum, out=stats[:, k])
        else:
            stats[:, k] = y_sumsq
    stats[:, -1] = count
    return stats


def design_from_units(
    n_fixed: int,
    unit_stats: Array,
    known_var: Array,
    groups: Sequence[IntArray],
    residual: bool,
    replicated: tuple[Array, Array] | None = None,
    reml_includes_xtx: bool = True,
) -> NestedDesign:
    """Build a design from units already sorted so that every level's groups are contiguous.

    ``groups`` lists per-unit codes of the Woodbury levels, outermost first. ``replicated`` is
    ``(group_outer, group_count)`` for an innermost level aggregated inside units (its variance is
    the parameter after the listed levels). ``reml_includes_xtx``: metafor's REML adds
    ``1/2 log|X'X|``; lme4's does not.
    """
    n = unit_stats.shape[0]
    p = n_fixed
    keys = [np.asarray(g, dtype=np.int64) for g in groups]
    starts: list[IntArray] = []
    previous = np.arange(n, dtype=np.intp)
    for depth in range(len(keys) - 1, -1, -1):  # innermost level first
        # codes of a nested level identify its groups on their own
        key = keys[depth]
        change = np.ones(n, dtype=bool)
        change[1:] = key[1:] != key[:-1]
        group_first_units = np.flatnonzero(change)
        starts.append(np.searchsorted(previous, group_first_units).astype(np.intp))
        previous = group_first_units
    n_levels = len(keys) + int(replicated is not None)
    params = list(range(len(keys) - 1, -1, -1))  # innermost first
    diagonal: int | None = n_levels if residual else None
    count = unit_stats[:, -1]
    if not residual and replicated is None and starts and starts[0].size == n and bool(np.all(count == 1)):
        diagonal = params.pop(0)
        starts.pop(0)
    ia, ib = np.triu_indices(p + 1)
    xtx = np.zeros((p + 1, p + 1))
    xtx[ia, ib] = unit_stats[:, : ia.size].sum(axis=0)
    xtx = xtx[:p, :p]
    xtx = xtx + np.triu(xtx, 1).T
    sign, logdet = np.linalg.slogdet(xtx)
    return NestedDesign(
        n_fixed=p,
        n_params=n_levels + int(residual),
        unit_stats=unit_stats,
        known_var=known_var,
        woodbury_starts=tuple(starts),
        woodbury_params=tuple(params),
        diagonal_param=diagonal,
        xtx_logdet=(float(logdet) if sign > 0 else float("-inf")) if reml_includes_xtx else 0.0,
        n_obs=round(float(count.sum())),
        replicated_param=len(keys) if replicated is not None else None,
        group_outer=replicated[0] if replicated is not None else None,
        group_count=replicated[1] if replicated is not None else None,
    )


def group_order(keys: Sequence[NDArray[np.int64]], n: int) -> IntArray:
    """Row order that makes every level's groups contiguous (identity if already so)."""
    if not keys:
        return np.arange(n, dtype=np.intp)
    combined = np.zeros(n, dtype=np.int64)
    for key in keys:
        width = int(key.max()) + 1 if key.size else 1
        combined = combined * width + key
    if n < 2 or bool(np.all(combined[1:] >= combined[:-1])):
        return np.arange(n, dtype=np.intp)
    return np.argsort(combined, kind="stable").astype(np.intp)


def _gram_total(u: Jet, q: Jet) -> Jet:
    """Jet of ``sum_g u_g q_g q_g'`` (an m x m matrix) from jets ``u`` (G,) and ``q`` (G, m).

    Contracted directly over groups, so no (t, t, G, m, m) intermediate is formed.
    """
    params = tuple(sorted(set(u.params) | set(q.params)))
    u, q = u.widened(params), q.widened(params)
    u0, u1, u2 = u.value, u.d1, u.d2
    q0, q1, q2 = q.value, q.d1, q.d2
    uq0 = q0 * u0[:, None]
    q0t = q0.T
    value = q0t @ uq0
    a1 = np.swapaxes(u1[:, :, None] * q0, 1, 2) @ q0  # sum_g u1 q0 q0'
    b1 = uq0.T @ q1  # sum_g u0 q0 q1'
    d1 = a1 + b1 + np.swapaxes(b1, 1, 2)
    term1 = np.swapaxes(u2[..., None] * q0, -1, -2) @ q0
    c = np.swapaxes(u1[:, None, :, None] * q1[None], -1, -2) @ q0  # [i, j] = sum_g u1_i q1_j q0'
    term2 = c + np.swapaxes(c, 2, 3)
    term2 = term2 + np.swapaxes(term2, 0, 1)
    d = uq0.T @ q2  # [i, j] = sum_g u0 q0 q2_ij'
    e = np.swapaxes(np.tensordot(q1 * u0[:, None], q1, axes=([1], [1])), 1, 2)  # [i, j] = sum_g u0 q1_i q1_j'
    term34 = d + e
    d2 = term1 + term2 + term34 + np.swapaxes(term34, 2, 3)
    return Jet(value, params, d1, d2)


def _unpack(packed: Jet, m: int) -> Jet:
    """Packed upper triangle (last axis) to a full symmetric m x m jet."""
    ia, ib = np.triu_indices(m)

    def full(arr: Array) -> Array:
        out = np.empty((*arr.shape[:-1], m, m))
        out[..., ia, ib] = arr
        out[..., ib, ia] = arr
        return out

    return Jet(full(packed.value), packed.params, full(packed.d1), full(packed.d2))


def _weighted_total(weight: Jet, columns: Array) -> Jet:
    """Jet of ``sum_u weight_u columns[u]`` (``weight`` a jet over units, ``columns`` constant)."""
    return Jet(weight.value @ columns, weight.params, weight.d1 @ columns, weight.d2 @ columns)


def _unit_level(design: NestedDesign, theta: Array) -> tuple[Jet, Jet, Jet, Jet]:
    """Unit contributions: total packed ``C'D^-1C`` (after a replicated level), per first-level
    group ``C'D^-1 1`` and ``1'D^-1 1``, and ``log|D|`` (plus the replicated level's determinant terms)."""
    stats = design.unit_stats
    n_pairs = stats.shape[1] - (design.n_fixed + 2)
    cross = stats[:, :n_pairs]
    count = stats[:, -1]
    if design.diagonal_param is None and design.replicated_param is None:
        return design._constant_unit_level
    d = Jet.constant(design.known_var)
    if design.diagonal_param is not None:
        d = Jet.parameter(float(theta[design.diagonal_param]), design.diagonal_param) + d
    if design.replicated_param is None:
        # diagonal parameter only: weights 1/d with exact derivatives, summed by a sparse product
        index = design.diagonal_param
        w0 = 1.0 / d.value
        w1 = -w0 * w0
        w2 = -2.0 * w1 * w0
        inv_d = Jet(w0, (index,), w1[None], w2[None, None])  # type: ignore[arg-type]
        n_w0 = count * w0
        logdet = Jet(
            np.asarray(float(np.sum(count * np.log(d.value)))),
            (index,),  # type: ignore[arg-type]
            np.array([np.sum(n_w0)]),
            np.array([[-np.sum(n_w0 * w0)]]),
        )
        sums = Jet(
            design.weighted_unit_sums(w0),
            inv_d.params,
            design.weighted_unit_sums(w1)[None],
            design.weighted_unit_sums(w2)[None, None],
        )
        return (
            _weighted_total(inv_d, cross),
            sums.take_last(np.arange(design.n_fixed + 1)),
            sums.take_last(np.array(design.n_fixed + 1)),
            logdet,
        )
    assert design.group_outer is not None and design.group_count is not None
    inv_d = d.reciprocal()
    logdet = d.log().scaled(count).total()
    sigma2 = Jet.parameter(float(theta[design.replicated_param]), design.replicated_param)
    factor = sigma2 * inv_d.scaled(count / design.group_count) + Jet.constant(1.0)
    inv_factor = factor.reciprocal()
    logdet = logdet + factor.log().scaled(design.group_count).total()
    total_cross = _weighted_total(inv_d, cross) - _weighted_total(
        sigma2 * inv_factor * inv_d * inv_d, design.group_outer
    )
    scale = inv_d * inv_factor
    colsum = scale.expand_last().scaled(stats[:, n_pairs:-1])
    ones = scale.scaled(count)
    if design.woodbury_starts:
        colsum, ones = colsum.segment_sum(design.woodbury_starts[0]), ones.segment_sum(design.woodbury_starts[0])
    return total_cross, colsum, ones, logdet


def _recurse(design: NestedDesign, theta: Array) -> tuple[Jet, Jet]:
    """``C'V^-1 C`` (m x m, ``C = [X, y]``) and ``log|V|`` as jets in all variance parameters.

    Cross-products only flow upward by summation, so the total is ``sum_units C'D^-1C`` minus, for
    every level, ``sum_g w_g q_g q_g'`` (``q_g = C_g'V^-1 1``, ``w_g = s/(1 + s 1'V^-1 1)``); only
    ``q`` and ``1'V^-1 1`` travel from level to level.
    """
    m = design.n_fixed + 1
    total_cross, colsum, ones, logdet = _unit_level(design, theta)
    total = _unpack(total_cross, m)
    for j, (starts, index) in enumerate(zip(design.woodbury_starts, design.woodbury_params, strict=True)):
        if j > 0:
            colsum, ones = colsum.segment_sum(starts), ones.segment_sum(starts)
        sigma2 = Jet.parameter(float(theta[index]), index)
        factor = sigma2 * ones + Jet.constant(1.0)
        inv_factor = factor.reciprocal()
        logdet = logdet + factor.log().total()
        total = total - _gram_total(sigma2 * inv_factor, colsum)
        if j < len(design.woodbury_starts) - 1:
            colsum = colsum * inv_factor.expand_last()
            ones = ones * inv_factor
    return total, logdet


def evaluate(design: NestedDesign, theta: Array, method: Method) -> Evaluation:
    """Log-likelihood, exact gradient and Hessian in ``theta`` (levels outermost first, then residual)."""
    theta = np.asarray(theta, dtype=np.float64)
    n_par = design.n_params
    params = tuple(range(n_par))
    cross, logdet = _recurse(design, theta)
    cross, logdet = cross.widened(params), logdet.widened(params)
    p = design.n_fixed
    q0, q1, q2 = cross.value, cross.d1, cross.d2
    a, b, c = q0[:p, :p], q0[:p, p], q0[p, p]
    a1, b1, c1 = q1[:, :p, :p], q1[:, :p, p], q1[:, p, p]
    a2, b2, c2 = q2[:, :, :p, :p], q2[:, :, :p, p], q2[:, :, p, p]
    a_inv = np.asarray(np.linalg.inv(a), dtype=np.float64)
    beta = a_inv @ b
    rss = float(c - b @ beta)
    beta1 = np.einsum("ij,tj->ti", a_inv, b1 - a1 @ beta)
    rss1 = c1 - 2.0 * b1 @ beta + np.einsum("i,tij,j->t", beta, a1, beta)
    rss2 = (
        c2
        - 2.0 * b2 @ beta
        + np.einsum("i,tuij,j->tu", beta, a2, beta)
        - 2.0 * np.einsum("ui,ij,tj->tu", beta1, a, beta1)
    )
    n = design.n_obs
    total1 = logdet.d1 + rss1
    total2 = logdet.d2 + rss2
    value = float(logdet.value) + rss
    if method == "REML":
        ainv_a1 = np.einsum("ij,tjk->tik", a_inv, a1)
        value += float(np.linalg.slogdet(a)[1]) - design.xtx_logdet + (n - p) * np.log(2 * np.pi)
        total1 = total1 + np.einsum("tii->t", ainv_a1)
        total2 = total2 + np.einsum("ij,tuji->tu", a_inv, a2) - np.einsum("tij,uji->tu", ainv_a1, ainv_a1)
    else:
        value += n * np.log(2 * np.pi)
    return Evaluation(
        theta=theta,
        loglik=-0.5 * value,
        gradient=-0.5 * np.asarray(total1, dtype=np.float64),
        hessian=-0.5 * np.asarray(total2, dtype=np.float64),
        beta=beta,
        cov_beta=a_inv,
        cov_beta_grad=-np.einsum("ij,tjk,kl->til", a_inv, a1, a_inv),
        rss=rss,
        logdet_v=float(logdet.value),
    )


@dataclass(frozen=True)
class Convergence:
    """How the optimiser ended: iterations, final projected-gradient norm, Newton decrement (the
    log-likelihood still to gain, scale-free), boundary components."""

    converged: bool
    iterations: int
    gradient_norm: float
    at_boundary: tuple[bool, ...]
    decrement: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "converged": self.converged,
            "iterations": self.iterations,
            "gradient_norm": self.gradient_norm,
            "newton_decrement": self.decrement,
            "at_boundary": list(self.at_boundary),
        }


def maximize(
    design: NestedDesign,
    method: Method,
    start: Array,
    fixed: Sequence[bool] | None = None,
    max_iter: int = 200,
) -> tuple[Evaluation, Convergence]:
    """Maximise the (restricted) likelihood over ``theta >= 0`` by projected Newton.

    Uses the exact Hessian, modified to be negative definite where it is not, with backtracking; a
    component at zero whose gradient points outward is held at the boundary. Components marked in
    ``fixed`` keep their start value (used for profile likelihoods). Converges when the Newton
    decrement (the predicted gain in log-likelihood) is below 1e-20, or has been below what the
    evaluated log-likelihood resolves (``1e-12 max(1, |l|)``) for two full Newton steps in a row:
    the second condition ends noise-driven steps in huge data sets, while the full steps still
    settle nearly flat directions, where a large move gains almost nothing in the log-likelihood.
    """
    theta = np.maximum(np.asarray(start, dtype=np.float64), 0.0)
    n_par = theta.size
    held = np.zeros(n_par, dtype=bool) if fixed is None else np.asarray(fixed, dtype=bool)
    ev = evaluate(design, theta, method)
    if n_par == 0 or held.all():
        return ev, Convergence(True, 0, 0.0, tuple(bool(t <= 0) for t in theta))
    converged = False
    iterations = 0
    below_resolution = 0
    decrement = float("inf")
    while iterations < max_iter:
        iterations += 1
        g, h = ev.gradient, ev.hessian
        free = ~held & ~((theta <= 0.0) & (g <= 0.0))
        if not free.any():
            converged = True
            break
        gf = g[free]
        hf = h[np.ix_(free, free)]
        eigval, eigvec = np.linalg.eigh(-hf)
        floor = 1e-12 * max(1.0, float(np.abs(eigval).max()))
        step_f = eigvec @ ((eigvec.T @ gf) / np.maximum(np.abs(eigval), floor))
        decrement = float(gf @ step_f)
        resolution = 1e-12 * max(1.0, abs(ev.loglik))  # sums of many terms: a few thousand ulps
        step = np.zeros(n_par)
        step[free] = step_f
        if decrement < 1e-20 or below_resolution >= 2:
            converged = True
            break
        below_resolution = below_resolution + 1 if decrement < resolution else 0
        alpha = 1.0
        accepted = False
        for _ in range(60):
            trial = theta + alpha * step
            trial[free] = np.maximum(trial[free], 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):  # a trial may touch an infeasible point
                trial_ev = evaluate(design, trial, method)
            if np.isfinite(trial_ev.loglik) and trial_ev.loglik >= ev.loglik - resolution:
                accepted = True
                break
            alpha *= 0.5
        if not accepted:
            converged = bool(decrement < 1e3 * resolution)
            break
        moved = float(np.max(np.abs(trial - theta) / (1.0 + np.abs(theta))))
        theta, ev = trial, trial_ev
        if moved < 1e-15:
            converged = True
            break
    g = ev.gradient
    projected = np.where(~held & ~((theta <= 0.0) & (g <= 0.0)), g, 0.0)
    at_zero = tuple(bool(t <= 0.0) for t in theta)
    return ev, Convergence(converged, iterations, float(np.max(np.abs(projected))), at_zero, max(decrement, 0.0))
