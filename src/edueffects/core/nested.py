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
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from edueffects.core.jet import Array, Jet

IntArray = NDArray[np.intp]
Method = Literal["ML", "REML"]


@dataclass(frozen=True)
class NestedDesign:
    """Sufficient statistics of one nested random-intercept model, units sorted by group.

    ``cross`` holds the packed upper triangle of ``sum c c'`` per unit (``c = [x, y]``), ``colsum``
    ``sum c``, ``count`` the number of rows and ``known_var`` the known variance shared by those rows.
    ``level_starts[j]`` gives, for the j-th level counted from the innermost, where each group's run
    of children begins (children: units for the innermost level, groups of level j-1 otherwise).
    """

    n_fixed: int
    cross: Array
    colsum: Array
    count: Array
    known_var: Array
    level_starts: tuple[IntArray, ...]
    residual: bool
    xtx_logdet: float
    n_obs: int

    @property
    def n_levels(self) -> int:
        return len(self.level_starts)

    @property
    def n_params(self) -> int:
        return self.n_levels + int(self.residual)


@dataclass(frozen=True)
class Evaluation:
    """Log-likelihood with its exact gradient and Hessian at ``theta``, and the GLS solution."""

    theta: Array
    loglik: float
    gradient: Array
    hessian: Array
    beta: Array
    cov_beta: Array
    rss: float
    logdet_v: float


def design_from_rows(
    x: Array,
    y: Array,
    known_var: Array,
    groups: Sequence[IntArray],
    residual: bool,
) -> tuple[NestedDesign, IntArray]:
    """Build a design with one unit per row.

    ``groups`` lists integer codes per row, outermost level first; the codes of an inner level must
    be nested in the outer ones (checked by the caller). Returns the design and the row order used.
    """
    n, p = x.shape
    keys = [np.asarray(g) for g in groups]
    order = np.lexsort(tuple(reversed(keys))) if keys else np.arange(n)
    xs, ys, vs = x[order], y[order], known_var[order]
    c = np.column_stack([xs, ys])
    ia, ib = np.triu_indices(p + 1)
    cross = c[:, ia] * c[:, ib]
    starts: list[IntArray] = []
    child_keys = np.arange(n)
    sorted_keys = [k[order] for k in keys]
    # innermost level first: a group starts where any of its (outer..this) codes change
    for depth in range(len(keys), 0, -1):
        codes = np.column_stack(sorted_keys[:depth])
        change = np.ones(codes.shape[0], dtype=bool)
        change[1:] = np.any(codes[1:] != codes[:-1], axis=1)
        child_starts = np.flatnonzero(change)
        # express starts relative to the previous (finer) level's sequence of groups
        starts.append(np.searchsorted(child_keys, child_starts).astype(np.intp))
        child_keys = child_starts
    xtx = xs.T @ xs
    sign, logdet = np.linalg.slogdet(xtx)
    design = NestedDesign(
        n_fixed=p,
        cross=cross,
        colsum=c,
        count=np.ones(n),
        known_var=vs,
        level_starts=tuple(starts),
        residual=residual,
        xtx_logdet=float(logdet) if sign > 0 else float("-inf"),
        n_obs=n,
    )
    return design, order


def _recurse(design: NestedDesign, theta: Array) -> tuple[Jet, Jet]:
    """Packed ``C'V^-1 C`` and ``log|V|`` as jets in all variance parameters."""
    m = design.n_fixed + 1
    ia, ib = np.triu_indices(m)
    n_levels = design.n_levels
    if design.residual:
        d = Jet.parameter(float(theta[n_levels]), n_levels) + Jet.constant(design.known_var)
        inv_d = d.reciprocal()
        cross = inv_d.expand_last().scaled(design.cross)
        colsum = inv_d.expand_last().scaled(design.colsum)
        ones = inv_d.scaled(design.count)
        logdet = d.log().scaled(design.count).total()
    else:
        inv_v = 1.0 / design.known_var
        cross = Jet.constant(design.cross * inv_v[:, None])
        colsum = Jet.constant(design.colsum * inv_v[:, None])
        ones = Jet.constant(design.count * inv_v)
        logdet = Jet.constant(float(np.sum(design.count * np.log(design.known_var))))
    for depth, starts in enumerate(design.level_starts):
        index = n_levels - 1 - depth  # parameters are ordered outermost first
        cross, colsum, ones = cross.segment_sum(starts), colsum.segment_sum(starts), ones.segment_sum(starts)
        sigma2 = Jet.parameter(float(theta[index]), index)
        scaled_ones = sigma2 * ones
        factor = scaled_ones + Jet.constant(1.0)
        inv_factor = factor.reciprocal()
        weight = (sigma2 * inv_factor).expand_last()
        pairs = colsum.take_last(ia) * colsum.take_last(ib)
        cross = cross - weight * pairs
        colsum = colsum * inv_factor.expand_last()
        ones = ones * inv_factor
        logdet = logdet + factor.log().total()
    return cross.total(), logdet


def evaluate(design: NestedDesign, theta: Array, method: Method) -> Evaluation:
    """Log-likelihood, exact gradient and Hessian in ``theta`` (levels outermost first, then residual)."""
    theta = np.asarray(theta, dtype=np.float64)
    n_par = design.n_params
    params = tuple(range(n_par))
    cross, logdet = _recurse(design, theta)
    cross, logdet = cross.widened(params), logdet.widened(params)
    p = design.n_fixed
    m = p + 1
    ia, ib = np.triu_indices(m)

    def unpack(packed: Array) -> Array:
        lead = packed.shape[:-1]
        full = np.empty((*lead, m, m))
        full[..., ia, ib] = packed
        full[..., ib, ia] = packed
        return full

    q0, q1, q2 = unpack(cross.value), unpack(cross.d1), unpack(cross.d2)
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
        rss=rss,
        logdet_v=float(logdet.value),
    )


@dataclass(frozen=True)
class Convergence:
    """How the optimiser ended: iterations, final projected-gradient norm, boundary components."""

    converged: bool
    iterations: int
    gradient_norm: float
    at_boundary: tuple[bool, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "converged": self.converged,
            "iterations": self.iterations,
            "gradient_norm": self.gradient_norm,
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
    decrement falls below 1e-20, i.e. the gradient is zero to machine precision.
    """
    theta = np.maximum(np.asarray(start, dtype=np.float64), 0.0)
    n_par = theta.size
    held = np.zeros(n_par, dtype=bool) if fixed is None else np.asarray(fixed, dtype=bool)
    ev = evaluate(design, theta, method)
    if n_par == 0 or held.all():
        return ev, Convergence(True, 0, 0.0, tuple(bool(t <= 0) for t in theta))
    converged = False
    iterations = 0
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
        if decrement < 1e-20:
            converged = True
            break
        step = np.zeros(n_par)
        step[free] = step_f
        alpha = 1.0
        accepted = False
        for _ in range(60):
            trial = theta + alpha * step
            trial[free] = np.maximum(trial[free], 0.0)
            trial_ev = evaluate(design, trial, method)
            if trial_ev.loglik >= ev.loglik - 1e-12 * abs(ev.loglik) and np.isfinite(trial_ev.loglik):
                accepted = True
                break
            alpha *= 0.5
        if not accepted:
            converged = decrement < 1e-12
            break
        moved = float(np.max(np.abs(trial - theta) / (1.0 + np.abs(theta))))
        theta, ev = trial, trial_ev
        if moved < 1e-15:
            converged = True
            break
    g = ev.gradient
    projected = np.where(~held & ~((theta <= 0.0) & (g <= 0.0)), g, 0.0)
    at_zero = tuple(bool(t <= 0.0) for t in theta)
    return ev, Convergence(converged, iterations, float(np.max(np.abs(projected))), at_zero)
