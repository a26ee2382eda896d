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

A known rank-one term per first-level group (correlated sampling errors, the CHE working model of
meta-analysis: ``V_g = D_g + rho s_g s_g'`` with ``D = diag((1 - rho) v + sigma2_e)`` and ``s = sqrt(v)``)
is one more Woodbury step before the first level, with ``w = 1/d``, ``c = [x, y]`` and per group
``a = sum w``, ``A = sum w c``, ``b = sum w s``, ``B = sum w s c``, ``e = sum w s^2``:

    f = 1 + rho e,  log|V| += log f,  C'V^-1C -= (rho / f) B B',  C'V^-1 1 = A - (rho b / f) B,
    1'V^-1 1 = a - rho b^2 / f

Rows may be pre-aggregated into *units*: rows of one innermost group that share the same ``x`` and
``v`` contribute only through their count, ``sum c`` and ``sum c c'`` (sufficient statistics).

REML log-likelihood (Harville 1977; metafor's definition, which adds ``1/2 log|X'X|``):

    l_R = -1/2 [ (n-p) log 2pi - log|X'X| + log|V| + log|X'V^-1 X| + (y-Xb)'V^-1(y-Xb) ]

The (restricted) likelihood is not concave in the variances and can have several local maxima (a
variance at 0, or the heterogeneity at one level or another). :func:`maximize` runs projected
Newton from the caller's start, then scans the log-likelihood (values only, vectorised over points)
along every free variance through the optimum and along the axes, and restarts Newton where the scan
points to another maximum; it reports the highest and how many distinct maxima it met.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from edueffects.core.heap import keep_freed_memory
from edueffects.core.jet import Array, Jet
from edueffects.core.linalg import csr_product

keep_freed_memory()  # the core's temporaries are reused from the heap, not faulted in afresh (core.heap)

IntArray = NDArray[np.intp]
Method = Literal["ML", "REML"]


@lru_cache(maxsize=32)
def _triu(m: int) -> tuple[IntArray, IntArray]:
    """Row and column indices of the upper triangle of an m x m matrix (cached: used at every step)."""
    ia, ib = (np.asarray(i, dtype=np.intp) for i in np.triu_indices(m))
    ia.flags.writeable = ib.flags.writeable = False
    return ia, ib


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

    ``unit_loading`` (one row per unit) and ``loading_variance`` add the known term
    ``loading_variance s s'`` within every group of the first Woodbury level (see the module docstring);
    ``known_var`` is then the diagonal part only.
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
    unit_loading: Array | None = None
    loading_variance: float | None = None

    @property
    def count(self) -> Array:
        return self.unit_stats[:, -1]

    @cached_property
    def _first_pattern(self) -> tuple[IntArray, IntArray, int]:
        """CSR pattern summing units into the first level's groups (one group if no level)."""
        n = self.count.size
        starts = self.woodbury_starts[0] if self.woodbury_starts else np.zeros(1, dtype=np.intp)
        return np.append(starts, n).astype(np.intp), np.arange(n, dtype=np.intp), int(starts.size)

    @cached_property
    def _sum_columns(self) -> Array:
        """``[sum c, count]`` per unit, contiguous (a strided view would be copied by every product)."""
        n_pairs = self.unit_stats.shape[1] - (self.n_fixed + 2)
        return np.ascontiguousarray(self.unit_stats[:, n_pairs:])

    def _stacked_pattern(self, n_weights: int) -> tuple[IntArray, IntArray]:
        """CSR ``indptr`` and ``indices`` of ``n_weights`` copies of the first-level pattern stacked
        row-wise (group ``g`` of copy ``b`` in row ``b * groups + g``). The largest pattern built so far
        is kept; fewer copies are its leading rows (views)."""
        indptr, indices, n_groups = self._first_pattern
        n_units = indices.size
        kept = self._stacked_patterns
        if not kept or kept[0].size < n_weights * n_groups + 1:
            copies = max(n_weights, 2 * (kept[0].size - 1) // n_groups if kept else 1)
            offsets = (indptr[None, :-1] + n_units * np.arange(copies)[:, None]).ravel()
            kept[:] = [np.append(offsets, n_units * copies).astype(np.intp), np.tile(indices, copies).astype(np.intp)]
        offsets, tiled = kept
        return offsets[: n_weights * n_groups + 1], tiled[: n_weights * n_units]

    @cached_property
    def _stacked_patterns(self) -> list[IntArray]:
        return []

    def weighted_unit_sums(self, weights: Array) -> Array:
        """``sum_{u in g} w_u [sum c, count]_u`` for every first-level group ``g``; ``weights`` of
        shape (units,) give (groups, p+2), of shape (units, b) give (b, groups, p+2).

        Segment sums for small designs, else a sparse matrix holding the weights (no n x (p+2) temporary);
        they differ only in rounding. Several weight columns of a mid-sized design share one sparse product.
        """
        indptr, indices, n_groups = self._first_pattern
        if weights.ndim == 2 and 1_000 <= indices.size < 100_000:
            # every weight column in one sparse product, a matrix holding the weights of column b in the
            # rows b * groups + g: the same sums, term for term, as one product per column
            n_weights = weights.shape[1]
            offsets, tiled = self._stacked_pattern(n_weights)
            data = np.ascontiguousarray(weights.T).ravel()
            sums = csr_product(offsets, tiled, data, self._sum_columns)
            return sums.reshape(n_weights, n_groups, -1)
        if weights.ndim == 2:
            return np.stack([self.weighted_unit_sums(w) for w in weights.T])
        if indices.size < 1_000:
            return np.asarray(np.add.reduceat(weights[:, None] * self._sum_columns, indptr[:-1], axis=0))
        return csr_product(indptr, indices, weights, self._sum_columns)

    @cached_property
    def variance_scale(self) -> float:
        """Scale of the variance parameters set by the data: the residual mean square of the
        unweighted least-squares fit of ``y`` on ``X`` (the total variance left to share between
        the levels, the residual and, in meta-analysis, the sampling error)."""
        m = self.n_fixed + 1
        ia, ib = _triu(m)
        total = np.zeros((m, m))
        total[ia, ib] = self.unit_stats[:, : ia.size].sum(axis=0)
        total = total + np.triu(total, 1).T
        xtx, xty, yty = total[:-1, :-1], total[:-1, -1], float(total[-1, -1])
        try:
            rss = yty - float(xty @ np.linalg.solve(xtx, xty)) if self.n_fixed else yty
        except np.linalg.LinAlgError:
            rss = yty
        scale = rss / max(self.n_obs - self.n_fixed, 1)
        if not (np.isfinite(scale) and scale > 0.0):  # y fitted exactly: the known variances, else 1
            known = float(self.count @ self.known_var) / max(float(self.count.sum()), 1.0)
            scale = known if np.isfinite(known) and known > 0.0 else 1.0
        return float(scale)

    @cached_property
    def _constant_unit_level(self) -> tuple[Jet, Jet, Jet, Jet]:
        """Unit-level quantities when no parameter touches the unit variances (computed once)."""
        n_pairs = self.unit_stats.shape[1] - (self.n_fixed + 2)
        w = 1.0 / self.known_var
        sums = self.weighted_unit_sums(w)
        level = (
            Jet.constant(w @ self.unit_stats[:, :n_pairs]),
            Jet.constant(sums[:, :-1]),
            Jet.constant(sums[:, -1]),
            Jet.constant(float(np.sum(self.count * np.log(self.known_var)))),
        )
        if self.unit_loading is None:
            return level
        loading, squares = self.loading_sums(w[:, None])
        return _loading_step(self, level, Jet.constant(loading[0]), Jet.constant(squares[0]))

    def loading_sums(self, weights: Array) -> tuple[Array, Array]:
        """``[B, b]`` (b, groups, p+2) and ``e`` (b, groups) of the first-level groups for unit
        weights ``w`` (units, b): ``sum w s [c, 1]`` and ``sum w s^2`` (see the module docstring)."""
        s = self.unit_loading
        assert s is not None and self.woodbury_starts
        ws = weights * s[:, None]
        linear = self.weighted_unit_sums(ws if ws.shape[1] > 1 else ws[:, 0])
        linear = linear if ws.shape[1] > 1 else linear[None]
        squares = np.add.reduceat(ws * s[:, None], self.woodbury_starts[0], axis=0).T
        return np.asarray(linear, dtype=np.float64), np.asarray(squares, dtype=np.float64)


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
    loading: Array | None = None,
    loading_variance: float = 0.0,
) -> NestedDesign:
    """Build a design with one unit per row; rows are put in group order internally.

    ``groups`` lists integer codes per row, outermost level first; each inner level's codes must be
    nested in the outer ones (a code belongs to one outer group). Results do not depend on row order.
    ``loading``/``loading_variance``: the known term ``loading_variance s s'`` within the groups of
    the first Woodbury level (see :func:`design_from_units`).
    """
    n, p = x.shape
    keys = [np.asarray(g, dtype=np.int64) for g in groups]
    order = group_order(keys, n)
    identity = bool(np.array_equal(order, np.arange(n)))
    xs, ys, vs = (x, y, known_var) if identity else (x[order], y[order], known_var[order])
    if loading is not None and not identity:
        loading = loading[order]
    stats = unit_statistics(xs, ys, ys * ys, np.ones(n))
    return design_from_units(
        p,
        stats,
        vs,
        keys if identity else [k[order] for k in keys],
        residual,
        loading=loading,
        loading_variance=loading_variance,
    )


def unit_statistics(x: Array, y_sum: Array, y_sumsq: Array, count: Array) -> Array:
    """Per-unit ``[packed sum c c' | sum c | count]``, ``c = [x, y]``, for units of ``count`` rows
    sharing the same ``x`` (``y_sum``, ``y_sumsq``: the unit's sum of ``y`` and of ``y^2``)."""
    n, p = x.shape
    ia, ib = _triu(p + 1)
    n_pairs = ia.size
    # filled column by column in a column-major buffer: every product reads and writes contiguous memory
    columns = np.empty((n_pairs + p + 2, n))
    xt = np.ascontiguousarray(x.T)
    ones = bool(np.all(count == 1.0))
    weighted = xt if ones else xt * count  # x * count (x * 1 is x exactly)
    columns[n_pairs : n_pairs + p] = weighted
    columns[n_pairs + p] = y_sum
    for k, (a, b) in enumerate(zip(ia, ib, strict=True)):
        if b < p:
            np.multiply(weighted[a], xt[b], out=columns[k])
        elif a < p:
            np.multiply(xt[a], y_sum, out=columns[k])
        else:
            columns[k] = y_sumsq
    columns[-1] = count
    return columns.T


def design_from_units(
    n_fixed: int,
    unit_stats: Array,
    known_var: Array,
    groups: Sequence[IntArray],
    residual: bool,
    replicated: tuple[Array, Array] | None = None,
    reml_includes_xtx: bool = True,
    loading: Array | None = None,
    loading_variance: float = 0.0,
) -> NestedDesign:
    """Build a design from units already sorted so that every level's groups are contiguous.

    ``groups`` lists per-unit codes of the Woodbury levels, outermost first. ``replicated`` is
    ``(group_outer, group_count)`` for an innermost level aggregated inside units (its variance is
    the parameter after the listed levels). ``reml_includes_xtx``: metafor's REML adds
    ``1/2 log|X'X|``; lme4's does not.

    ``loading`` (``s``, one value per unit of one row) and ``loading_variance`` (``rho >= 0``) add
    ``rho s s'`` within every group of the first Woodbury level: the innermost listed level, or the
    next one out when the innermost has single-row groups (then its variance is the diagonal
    parameter); when no Woodbury level remains (every group a single row) ``rho s^2`` joins
    ``known_var``.
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
        if previous.size == n:  # children are the units themselves: positions are the starts
            starts.append(group_first_units.astype(np.intp))
        else:
            starts.append(np.searchsorted(previous, group_first_units).astype(np.intp))
        previous = group_first_units
    n_levels = len(keys) + int(replicated is not None)
    params = list(range(len(keys) - 1, -1, -1))  # innermost first
    diagonal: int | None = n_levels if residual else None
    count = unit_stats[:, -1]
    if not residual and replicated is None and starts and starts[0].size == n and bool(np.all(count == 1)):
        diagonal = params.pop(0)
        starts.pop(0)
    unit_loading: Array | None = None
    if loading is not None and loading_variance > 0.0:
        if not keys or replicated is not None or not bool(np.all(count == 1)):
            raise ValueError("a known loading needs a grouping level, units of one row and no replicated level")
        if starts:
            unit_loading = np.ascontiguousarray(loading, dtype=np.float64)
        else:  # single-row groups: rho s s' is a diagonal term
            known_var = known_var + loading_variance * np.asarray(loading, dtype=np.float64) ** 2
    ia, ib = _triu(p + 1)
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
        unit_loading=unit_loading,
        loading_variance=float(loading_variance) if unit_loading is not None else None,
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

    Contracted directly over groups, so no (t, t, G, m, m) intermediate is formed; derivative terms
    are formed only for the parameters each factor depends on (``q`` typically depends on fewer).
    """
    params = tuple(sorted(set(u.params) | set(q.params)))
    t = len(params)
    iu = np.array([params.index(k) for k in u.params], dtype=np.intp)
    iq = np.array([params.index(k) for k in q.params], dtype=np.intp)
    tu = iu.size
    u0, u1, u2 = u.value, u.d1, u.d2
    q0, q1, q2 = q.value, q.d1, q.d2
    n_groups, m = q0.shape
    outer = (q0[:, :, None] * q0[:, None, :]).reshape(n_groups, m * m)
    weights = np.concatenate([u0[None], u1, u2.reshape(tu * tu, n_groups)])
    sums = (weights @ outer).reshape(-1, m, m)  # sum_g [u0, u1_i, u2_ij] q0 q0'
    d1 = np.zeros((t, m, m))
    d2 = np.zeros((t, t, m, m))
    d1[iu] = sums[1 : 1 + tu]
    d2[iu[:, None], iu] = sums[1 + tu :].reshape(tu, tu, m, m)
    if iq.size:
        uq0t = (q0 * u0[:, None]).T
        b = uq0t @ q1  # [j] = sum_g u0 q0 q1_j'
        d1[iq] += b + np.swapaxes(b, 1, 2)
        if tu:
            c = np.swapaxes(u1[:, :, None] * q0, 1, 2)[:, None] @ q1[None]  # [i, j] = sum_g u1_i q0 q1_j'
            c = c + np.swapaxes(c, 2, 3)
            d2[iu[:, None], iq] += c
            d2[iq[:, None], iu] += np.swapaxes(c, 0, 1)
        d = uq0t @ q2  # [i, j] = sum_g u0 q0 q2_ij'
        e = np.swapaxes(np.tensordot(q1 * u0[:, None], q1, axes=([1], [1])), 1, 2)  # [i, j] = sum_g u0 q1_i q1_j'
        de = d + e
        d2[iq[:, None], iq] += de + np.swapaxes(de, 2, 3)
    return Jet(sums[0], params, d1, d2)


def _unpack(packed: Jet, m: int) -> Jet:
    """Packed upper triangle (last axis) to a full symmetric m x m jet."""
    ia, ib = _triu(m)

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
    group ``C'D^-1 1`` and ``1'D^-1 1``, and ``log|D|`` (plus the replicated level's determinant terms).

    Without Woodbury levels the group sums are not needed and are returned as zeros.
    """
    stats = design.unit_stats
    n_pairs = stats.shape[1] - (design.n_fixed + 2)
    cross = stats[:, :n_pairs]
    count = stats[:, -1]
    if design.diagonal_param is None and design.replicated_param is None:
        return design._constant_unit_level
    colsum_index, ones_index = np.arange(design.n_fixed + 1), np.array(design.n_fixed + 1)
    if design.replicated_param is None:
        # diagonal parameter only: weights 1/d with exact derivatives, summed by a sparse product
        index = design.diagonal_param
        assert index is not None
        d_value = float(theta[index]) + design.known_var
        # rows w0 = 1/d, w1 = -w0^2, w2 = 2 w0^3: one contiguous block, so that the total and the group
        # sums below take all three in one pass over the units
        weights = np.empty((3, count.size))
        w0, w1, w2 = weights
        np.divide(1.0, d_value, out=w0)
        np.multiply(w0, w0, out=w1)
        np.negative(w1, out=w1)
        np.multiply(w1, w0, out=w2)
        np.multiply(w2, -2.0, out=w2)
        params = (index,)
        n_w0 = count * w0
        logdet = Jet(
            np.asarray(float(np.sum(count * np.log(d_value)))),
            params,
            np.array([np.sum(n_w0)]),
            np.array([[-np.sum(n_w0 * w0)]]),
        )
        t0, t1, t2 = weights @ cross  # sum_u [w0, w1, w2]_u cross_u in one product
        total = Jet(t0, params, t1[None], t2[None, None])
        if design.woodbury_starts:
            s0, s1, s2 = design.weighted_unit_sums(weights.T)
            sums = Jet(s0, params, s1[None], s2[None, None])
        else:
            sums = Jet.constant(np.zeros((1, design.n_fixed + 2)))
        level = total, sums.take_last(colsum_index), sums.take_last(ones_index), logdet
        if design.unit_loading is None:
            return level
        (l0, l1, l2), (e0, e1, e2) = design.loading_sums(weights.T)
        loading = Jet(l0, params, l1[None], l2[None, None])
        squares = Jet(e0, params, e1[None], e2[None, None])
        return _loading_step(design, level, loading, squares)
    assert design.group_outer is not None and design.group_count is not None
    d = Jet.constant(design.known_var)
    if design.diagonal_param is not None:
        d = Jet.parameter(float(theta[design.diagonal_param]), design.diagonal_param) + d
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


def _loading_step(
    design: NestedDesign, level: tuple[Jet, Jet, Jet, Jet], loading: Jet, squares: Jet
) -> tuple[Jet, Jet, Jet, Jet]:
    """The known rank-one term ``rho s s'`` of every first-level group added to the unit level
    (``loading``: ``[B, b]`` per group, ``squares``: ``e``; see the module docstring)."""
    total, colsum, ones, logdet = level
    rho = design.loading_variance
    assert rho is not None
    m = design.n_fixed + 1
    ia, ib = _triu(m)
    big_b = loading.take_last(np.arange(m))
    small_b = loading.take_last(np.array(m))
    inv_f = (squares.scaled(rho) + Jet.constant(1.0)).reciprocal()
    coef = inv_f.scaled(rho)  # rho / f
    gram = _gram_total(coef, big_b)
    packed = Jet(gram.value[ia, ib], gram.params, gram.d1[:, ia, ib], gram.d2[:, :, ia, ib])
    shift = coef * small_b
    return (
        total - packed,
        colsum - big_b * shift.expand_last(),
        ones - shift * small_b,
        logdet - inv_f.log().total(),
    )


def _recurse(design: NestedDesign, theta: Array) -> tuple[Jet, Jet]:
    """``C'V^-1 C`` (m x m, ``C = [X, y]``) and ``log|V|`` as jets in all variance parameters.

    Cross-products only flow upward by summation, so the total is ``sum_units C'D^-1C`` minus, for
    every level, ``sum_g w_g q_g q_g'`` (``q_g = C_g'V^-1 1``, ``w_g = s/(1 + s 1'V^-1 1)``); only
    ``q`` and ``1'V^-1 1`` travel from level to level.
    """
    m = design.n_fixed + 1
    total_cross, colsum, ones, logdet = _unit_level(design, theta)
    inner = colsum.params
    if (
        len(design.woodbury_starts) == 1
        and len(inner) == 1
        and inner[0] != design.woodbury_params[0]
        and total_cross.params == ones.params == logdet.params == inner
    ):
        return _one_level(design, theta, (total_cross, colsum, ones, logdet))
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


def _one_level(design: NestedDesign, theta: Array, level: tuple[Jet, Jet, Jet, Jet]) -> tuple[Jet, Jet]:
    """:func:`_recurse` for one Woodbury level (variance ``s``) over a unit level that depends on one
    parameter ``k`` (e.g. the three-level meta-analysis), with the derivatives written out: per group
    ``f = 1 + s a`` (``a = 1'D^-1 1``, ``A = C'D^-1 1``, both functions of ``k``), ``log|V| += sum log f``
    and ``C'V^-1C -= sum h A A'`` with ``h = s / f``: ``h_s = 1/f^2``, ``h_k = -s^2 a_k / f^2``,
    ``h_ss = -2 a / f^3``, ``h_sk = -2 s a_k / f^3``, ``h_kk = -s^2 a_kk / f^2 + 2 s^3 a_k^2 / f^3``."""
    total_cross, colsum, ones, logdet = level
    m = design.n_fixed + 1
    k, index = colsum.params[0], design.woodbury_params[0]
    s = float(theta[index])
    a0, a1, a2 = ones.value, ones.d1[0], ones.d2[0, 0]
    c0, c1, c2 = colsum.value, colsum.d1[0], colsum.d2[0, 0]  # (G, m)
    factor = 1.0 + s * a0
    inv = 1.0 / factor
    inv2 = inv * inv
    inv3 = inv2 * inv
    fk = s * a1  # df/dk (df/ds = a)
    # log|V|: sum log f and its derivatives (f_ss = 0, f_sk = a_k, f_kk = s a_kk)
    ld_s, ld_k = float(a0 @ inv), float(fk @ inv)
    ld_ss = -float((a0 * a0) @ inv2)
    ld_sk = float(a1 @ inv) - float((a0 * fk) @ inv2)
    ld_kk = s * float(a2 @ inv) - float((fk * fk) @ inv2)
    h = np.empty((6, inv.size))  # h, h_s, h_k, h_ss, h_sk, h_kk
    np.multiply(inv, s, out=h[0])
    h[1] = inv2
    np.multiply(inv2, -s * s * a1, out=h[2])
    np.multiply(inv3, -2.0 * a0, out=h[3])
    np.multiply(inv3, -2.0 * s * a1, out=h[4])
    h[5] = 2.0 * s**3 * a1 * a1 * inv3 - s * s * a2 * inv2
    plain = (h[:, None, :] * c0.T[None]) @ c0  # (6, m, m): sum h_. A A'
    mixed = (h[:3, None, :] * c1.T[None]) @ c0  # (3, m, m): sum h_. A_k A'
    mixed = mixed + np.swapaxes(mixed, 1, 2)
    second = (h[0] * c2.T) @ c0
    second = second + second.T + 2.0 * ((h[0] * c1.T) @ c1)
    full = _unpack(total_cross, m)
    ik, il = (0, 1) if k < index else (1, 0)
    d1 = np.empty((2, m, m))
    d2 = np.empty((2, 2, m, m))
    d1[il] = -plain[1]
    d1[ik] = full.d1[0] - plain[2] - mixed[0]
    d2[il, il] = -plain[3]
    d2[il, ik] = d2[ik, il] = -(plain[4] + mixed[1])
    d2[ik, ik] = full.d2[0, 0] - (plain[5] + 2.0 * mixed[2] + second)
    params = (k, index) if k < index else (index, k)
    total = Jet(full.value - plain[0], params, d1, d2)
    ld1 = np.empty(2)
    ld2 = np.empty((2, 2))
    ld1[il], ld1[ik] = ld_s, float(logdet.d1[0]) + ld_k
    ld2[il, il], ld2[ik, ik] = ld_ss, float(logdet.d2[0, 0]) + ld_kk
    ld2[il, ik] = ld2[ik, il] = ld_sk
    logdet_v = Jet(np.asarray(float(logdet.value) + float(np.sum(np.log(factor)))), params, ld1, ld2)
    return total, logdet_v


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
    # small products as matrix products (a and a_inv symmetric; t, u index the parameters)
    a1_beta = a1 @ beta  # (t, p)
    beta1 = (b1 - a1_beta) @ a_inv  # (t, p)
    rss1 = c1 - 2.0 * (b1 @ beta) + a1_beta @ beta
    rss2 = c2 - 2.0 * (b2 @ beta) + (a2 @ beta) @ beta - 2.0 * (beta1 @ a @ beta1.T)
    n = design.n_obs
    total1 = logdet.d1 + rss1
    total2 = logdet.d2 + rss2
    value = float(logdet.value) + rss
    ainv_a1 = a_inv @ a1  # (t, p, p)
    if method == "REML":
        n_par = ainv_a1.shape[0]
        value += float(np.linalg.slogdet(a)[1]) - design.xtx_logdet + (n - p) * np.log(2 * np.pi)
        total1 = total1 + np.trace(ainv_a1, axis1=1, axis2=2)
        flat = ainv_a1.reshape(n_par, p * p)
        total2 = (
            total2
            + a2.reshape(n_par, n_par, p * p) @ a_inv.reshape(p * p)
            - flat @ np.swapaxes(ainv_a1, 1, 2).reshape(n_par, p * p).T
        )
    else:
        value += n * np.log(2 * np.pi)
    return Evaluation(
        theta=theta,
        loglik=-0.5 * value,
        gradient=-0.5 * np.asarray(total1, dtype=np.float64),
        hessian=-0.5 * np.asarray(total2, dtype=np.float64),
        beta=beta,
        cov_beta=a_inv,
        cov_beta_grad=-(ainv_a1 @ a_inv),
        rss=rss,
        logdet_v=float(logdet.value),
    )


UNIT_BATCH_ELEMENTS = 1 << 18
"""Largest unit-level intermediate (elements) of a batched value evaluation (distinct residual values
are taken in chunks)."""
POINT_BATCH_ELEMENTS = 1 << 17
"""Largest group-level intermediate (elements) of a batched value evaluation: points are taken in
chunks small enough for the allocator to reuse memory (large temporaries cost page faults)."""


def _unit_parameters(design: NestedDesign) -> list[int]:
    """Parameters the unit level depends on: the residual (or singleton level) and a replicated level."""
    return [i for i in (design.diagonal_param, design.replicated_param) if i is not None]


def _unit_values(design: NestedDesign, keys: Array) -> tuple[Array, Array, Array, Array]:
    """Value-only unit level at the values ``keys`` (b, len(_unit_parameters)) of the parameters it
    depends on, batch axis first: packed ``C'D^-1C`` (b, n_pairs), first-level group sums
    ``C'D^-1 1`` (b, m, groups) and ``1'D^-1 1`` (b, groups), ``log|D|`` (b,)."""
    stats = design.unit_stats
    p = design.n_fixed
    n_pairs = stats.shape[1] - (p + 2)
    count = stats[:, -1]
    diag, repl = design.diagonal_param, design.replicated_param
    if diag is None and repl is None:
        total, colsum, ones, logdet = (j.value for j in design._constant_unit_level)
        return total[None], colsum.T[None], ones[None], np.asarray(logdet)[None]
    d = design.known_var[None, :] + (keys[:, :1] if diag is not None else 0.0)
    inv_d = 1.0 / d
    logdet = np.log(d) @ count
    if repl is None:
        total = inv_d @ stats[:, :n_pairs]
        if not design.woodbury_starts:
            return total, np.zeros((keys.shape[0], p + 1, 1)), np.zeros((keys.shape[0], 1)), logdet
        sums = np.ascontiguousarray(design.weighted_unit_sums(inv_d.T).transpose(0, 2, 1))
        colsum, ones = sums[:, : p + 1], sums[:, p + 1]
        if design.unit_loading is not None:
            rho = design.loading_variance
            assert rho is not None
            loading, squares = design.loading_sums(inv_d.T)  # (b, groups, p+2), (b, groups)
            big_b, small_b = loading[:, :, : p + 1], loading[:, :, p + 1]
            factor = 1.0 + rho * squares
            coef = rho / factor
            ia, ib = _triu(p + 1)
            total = total - np.einsum("bg,bgk->bk", coef, big_b[:, :, ia] * big_b[:, :, ib])
            shift = coef * small_b
            colsum = colsum - np.swapaxes(big_b, 1, 2) * shift[:, None, :]
            ones = ones - shift * small_b
            logdet = logdet + np.log(factor).sum(axis=1)
        return total, colsum, ones, logdet
    assert design.group_outer is not None and design.group_count is not None
    sigma2 = keys[:, -1:]
    factor = 1.0 + sigma2 * inv_d * (count / design.group_count)[None, :]
    logdet = logdet + np.log(factor) @ design.group_count
    scale = inv_d / factor
    total = inv_d @ stats[:, :n_pairs] - (sigma2 * scale * inv_d) @ design.group_outer
    colsum = scale[:, None, :] * stats[:, n_pairs:-1].T[None]
    ones = scale * count[None, :]
    if design.woodbury_starts:
        colsum = np.add.reduceat(colsum, design.woodbury_starts[0], axis=2)
        ones = np.add.reduceat(ones, design.woodbury_starts[0], axis=1)
    return total, colsum, ones, logdet


def _point_values(
    design: NestedDesign, thetas: Array, unit: tuple[Array, Array, Array, Array], method: Method
) -> Array:
    """Log-likelihoods at ``thetas`` (b, n_params) from their unit level (leading axis b, or 1 when
    shared): the Woodbury levels of :func:`_recurse` on values only, vectorised over the points."""
    p = design.n_fixed
    m = p + 1
    batch = thetas.shape[0]
    total_packed, colsum, ones, logdet = unit
    ia, ib = _triu(m)
    total = np.empty((total_packed.shape[0], m, m))
    total[:, ia, ib] = total_packed
    total[:, ib, ia] = total_packed
    for j, (starts, index) in enumerate(zip(design.woodbury_starts, design.woodbury_params, strict=True)):
        if j > 0:
            colsum, ones = np.add.reduceat(colsum, starts, axis=2), np.add.reduceat(ones, starts, axis=1)
        sigma2 = thetas[:, index][:, None]
        factor = 1.0 + sigma2 * ones
        logdet = logdet + np.log(factor).sum(axis=1)
        weighted = colsum * (sigma2 / factor)[:, None, :]
        total = total - weighted @ np.swapaxes(colsum, 1, 2)
        if j < len(design.woodbury_starts) - 1:
            colsum = colsum / factor[:, None, :]
            ones = ones / factor
    total = np.broadcast_to(total, (batch, m, m))
    logdet = np.broadcast_to(logdet, (batch,))
    a, b = total[:, :p, :p], total[:, :p, p]
    try:
        rss = total[:, p, p] - np.einsum("bi,bi->b", b, np.linalg.solve(a, b[..., None])[..., 0])
    except np.linalg.LinAlgError:  # a singular X'V^-1X at some point: those points get -inf
        finite = np.linalg.cond(a) < 1.0 / np.finfo(np.float64).eps
        rss = np.full(batch, np.inf)
        if finite.any():
            af, bf = a[finite], b[finite]
            rss[finite] = total[finite, p, p] - np.einsum("bi,bi->b", bf, np.linalg.solve(af, bf[..., None])[..., 0])
    value = logdet + rss
    if method == "REML":
        sign, logdet_a = np.linalg.slogdet(a)
        value = value + np.where(sign > 0, logdet_a, np.inf) - design.xtx_logdet
        value = value + (design.n_obs - p) * np.log(2 * np.pi)
    else:
        value = value + design.n_obs * np.log(2 * np.pi)
    return np.asarray(-0.5 * value, dtype=np.float64)


def loglik_values(design: NestedDesign, thetas: Array, method: Method) -> Array:
    """The (restricted) log-likelihood alone at each row of ``thetas`` (points x parameters).

    The recursion of :func:`evaluate` without derivatives, vectorised over the points, so a scan
    costs a fraction of a Newton step per point. The unit level (the O(n) part) is computed once per
    distinct value of the parameters it depends on (residual, singleton or replicated level): along
    a slice through another parameter only the (much smaller) group levels are recomputed.
    Intermediates are bounded by ``UNIT_BATCH_ELEMENTS`` and ``POINT_BATCH_ELEMENTS``. ``-inf``
    where the value is not finite (e.g. a zero residual variance without known variances).
    """
    thetas = np.atleast_2d(np.asarray(thetas, dtype=np.float64))
    p = design.n_fixed
    used = _unit_parameters(design)
    if len(used) == 1:  # the same keys and order as the row-wise unique below, without its structured sort
        values, inverse = np.unique(thetas[:, used[0]], return_inverse=True)
        keys, inverse = values[:, None], inverse.reshape(-1)
    elif used:
        keys, inverse = np.unique(thetas[:, used], axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
    else:
        keys, inverse = np.zeros((1, 0)), np.zeros(thetas.shape[0], dtype=np.intp)
    n_units = design.unit_stats.shape[0]
    n_groups = design.woodbury_starts[0].size if design.woodbury_starts else 1
    unit_width = n_units * (p + 3) if used else 1
    key_chunk = max(1, UNIT_BATCH_ELEMENTS // unit_width)
    point_chunk = max(1, POINT_BATCH_ELEMENTS // (n_groups * (p + 2)))
    out = np.empty(thetas.shape[0])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for lo in range(0, keys.shape[0], key_chunk):
            unit = _unit_values(design, keys[lo : lo + key_chunk])
            points = np.flatnonzero((inverse >= lo) & (inverse < lo + key_chunk))
            for first in range(0, points.size, point_chunk):
                chunk = points[first : first + point_chunk]
                local = inverse[chunk] - lo if unit[0].shape[0] > 1 else np.zeros(chunk.size, dtype=np.intp)
                if np.all(local == local[0]):  # one unit level for the chunk: broadcast it
                    parts = tuple(part[local[0] : local[0] + 1] for part in unit)
                else:
                    parts = tuple(part[local] for part in unit)
                out[chunk] = _point_values(design, thetas[chunk], parts, method)  # type: ignore[arg-type]
    out[~np.isfinite(out)] = -np.inf
    return out


@dataclass(frozen=True)
class Convergence:
    """How the optimiser ended: Newton iterations (summed over all starts), final projected-gradient
    norm, Newton decrement (the log-likelihood still to gain, scale-free), boundary components, and
    how many distinct local maxima the search found (more than one: the highest is reported)."""

    converged: bool
    iterations: int
    gradient_norm: float
    at_boundary: tuple[bool, ...]
    decrement: float = 0.0
    local_maxima: int = 1

    def to_dict(self) -> dict[str, object]:
        return {
            "converged": self.converged,
            "iterations": self.iterations,
            "gradient_norm": self.gradient_norm,
            "newton_decrement": self.decrement,
            "at_boundary": list(self.at_boundary),
            "local_maxima": self.local_maxima,
        }


SCAN_EXPONENTS = np.arange(-3.0, 1.5)
"""Scan grid of every variance parameter: 0 and ``s 10^e`` for these ``e`` (``s``: variance_scale)."""
MAX_ROUNDS = 3
"""Scan rounds: a round scans around the best maximum found so far; a new best triggers another."""
AXIS_MARGIN = 1.92
"""An axis slice's local maximum within this of the optimum (half the 95 % chi-square(1) quantile:
inside the likelihood-ratio confidence region) starts a Newton run: the grid may straddle a narrow
peak there. Far lower axis maxima, as in large data sets, are left alone."""
MAX_STARTS = 4
"""Newton runs per round, from the best candidate points of that round's scan."""
SEGMENT_FRACTIONS = np.array([0.01, 0.03, 0.1, 0.3, 0.5, 0.7, 0.9, 0.97, 0.99])
"""Points on the segment between two optima where a dip (two distinct maxima) is looked for."""


@dataclass(frozen=True)
class _Run:
    """One Newton run: where it ended and how."""

    ev: Evaluation
    converged: bool
    iterations: int
    decrement: float


def _free(ev: Evaluation, held: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Components Newton moves: not held, and not at zero with the gradient pointing outward."""
    return np.asarray(~held & ~((ev.theta <= 0.0) & (ev.gradient <= 0.0)), dtype=np.bool_)


NEGLIGIBLE_STEP = 1e-10
"""A Newton step below this relative to every component (see :func:`negligible_step`) ends a run."""


def negligible_step(step: Array, theta: Array, scale: float) -> NDArray[np.bool_]:
    """``|step_i| <= NEGLIGIBLE_STEP max(|theta_i|, 1e-6 s)`` for every component (the last axis; leading
    axes are batches, e.g. deletions): the quadratic model says the optimum is that close, so evaluating
    the step cannot move an estimate by more. Relative to the variance ``scale`` ``s``
    (:attr:`NestedDesign.variance_scale`), not to 1, near zero: the rule does not depend on the units of ``y``."""
    return np.asarray(np.all(np.abs(step) <= NEGLIGIBLE_STEP * np.maximum(np.abs(theta), 1e-6 * scale), axis=-1))


def _tolerance(loglik: float) -> float:
    """Log-likelihood differences below this are rounding (sums of many terms, ill-conditioned
    ``X'V^-1X``)."""
    return 1e-8 * max(1.0, abs(loglik))


def _curvature_floor(eigval: NDArray[np.floating], loglik: float, scale: float) -> float:
    """Hessian eigenvalues below this in size are rounding or flat directions (see _ascent_direction)."""
    return max(1e-6 * float(np.abs(eigval).max()), 2.0 * _tolerance(loglik) / scale**2)


def _ascent_direction(ev: Evaluation, held: NDArray[np.bool_], scale: float) -> Array | None:
    """A direction of positive curvature over the free components (a saddle or a minimum), if any:
    the Hessian there must be negative semi-definite, up to rounding, for a maximum. A curvature
    ``lambda`` counts only if it exceeds rounding relative to the other eigenvalues and a move of
    the variance ``scale`` along it would gain more than :func:`_tolerance` (``lambda s^2 / 2``):
    a flat direction (a variance the likelihood does not depend on) is not a saddle."""
    free = _free(ev, held)
    if not free.any():
        return None
    eigval, eigvec = np.linalg.eigh(ev.hessian[np.ix_(free, free)])
    if eigval[-1] <= _curvature_floor(eigval, ev.loglik, scale):
        return None
    direction = np.zeros(ev.theta.size)
    direction[free] = eigvec[:, -1]
    return direction


class _Search:
    """One call of :func:`maximize`: Newton runs, the scan, and every value evaluated on the way."""

    def __init__(self, design: NestedDesign, method: Method, held: NDArray[np.bool_], max_iter: int) -> None:
        self.design = design
        self.method = method
        self.held = held
        self.max_iter = max_iter
        self.runs: list[_Run] = []
        self.starts: list[Array] = []
        self.highest = float("-inf")
        self.highest_theta: Array | None = None

    def _record(self, theta: Array, loglik: float) -> None:
        if loglik > self.highest:
            self.highest, self.highest_theta = loglik, theta.copy()

    def values(self, points: Sequence[Array]) -> Array:
        """Log-likelihoods at ``points`` without derivatives, in one batch (:func:`loglik_values`)."""
        if not points:
            return np.zeros(0)
        out = loglik_values(self.design, np.array(points), self.method)
        best = int(np.argmax(out))
        self._record(points[best], float(out[best]))
        return out

    def newton(self, start: Array) -> _Run:
        """Projected Newton from ``start`` (see :func:`maximize`)."""
        design, method, held = self.design, self.method, self.held
        theta = np.maximum(np.asarray(start, dtype=np.float64), 0.0)
        self.starts.append(theta.copy())
        n_par = theta.size
        ev = evaluate(design, theta, method)
        self._record(theta, ev.loglik)
        converged = False
        iterations = 0
        below_resolution = 0
        decrement = float("inf")
        while iterations < self.max_iter:
            iterations += 1
            g, h = ev.gradient, ev.hessian
            free = _free(ev, held)
            if not free.any():
                converged = True
                break
            gf = g[free]
            hf = h[np.ix_(free, free)]
            eigval, eigvec = np.linalg.eigh(-hf)
            # flat directions: eigenvalues below 1e-12 of the largest, or of the curvature 1/s^2 that
            # the variance scale s implies (not of 1: the Hessian scales with the units of y^-4)
            floor = 1e-12 * max(float(np.abs(eigval).max()), design.variance_scale**-2)
            step_f = eigvec @ ((eigvec.T @ gf) / np.maximum(np.abs(eigval), floor))
            decrement = float(gf @ step_f)
            resolution = 1e-12 * max(1.0, abs(ev.loglik))  # sums of many terms: a few thousand ulps
            step = np.zeros(n_par)
            step[free] = step_f
            if decrement < 1e-20 or below_resolution >= 2:
                converged = True
                break
            if decrement < resolution and bool(negligible_step(step, theta, design.variance_scale)):
                converged = True  # the step would not change theta beyond 1e-10 relative: no trial needed
                break
            below_resolution = below_resolution + 1 if decrement < resolution else 0
            alpha = 1.0
            accepted = False
            for _ in range(60):
                trial = theta + alpha * step
                trial[free] = np.maximum(trial[free], 0.0)
                with np.errstate(divide="ignore", invalid="ignore"):  # a trial may touch an infeasible point
                    trial_ev = evaluate(design, trial, method)
                if np.isfinite(trial_ev.loglik):
                    self._record(trial, trial_ev.loglik)
                if np.isfinite(trial_ev.loglik) and trial_ev.loglik >= ev.loglik - resolution:
                    accepted = True
                    break
                alpha *= 0.5
            if not accepted:
                converged = bool(decrement < 1e3 * resolution)
                break
            moved = float(np.max(np.abs(trial - theta) / (design.variance_scale + np.abs(theta))))
            theta, ev = trial, trial_ev
            if moved < 1e-15:
                converged = True
                break
        run = _Run(ev, converged, iterations, max(decrement, 0.0))
        self.runs.append(run)
        return run

    def candidates(self, base: Evaluation) -> list[Array]:
        """Starting points the scan around ``base`` (a Newton optimum) suggests, best first.

        Slices through ``base`` along every free parameter, over 0 and the grid ``s 10^e``: a grid
        point that is a local maximum of its slice, separated from ``base`` by a lower point (or
        simply higher than ``base``), is a candidate. With several free parameters, the same slices
        with the other free parameters at 0 (the axes, where the variance sits in one parameter;
        a residual variance without known variances keeps its value): their local maxima within
        ``AXIS_MARGIN`` of ``base``. At a saddle, points along the direction of positive curvature
        that beat ``base``.
        """
        theta, level = base.theta, base.loglik
        tol = _tolerance(level)
        free = np.flatnonzero(~self.held)
        grid = np.concatenate([[0.0], self.design.variance_scale * 10.0**SCAN_EXPONENTS])
        points: list[Array] = []
        slices: list[tuple[int, Array, int, bool]] = []  # parameter, values, first point, through base

        def add_slice(j: int, through: Array, values: Array, through_base: bool) -> None:
            slices.append((j, values, len(points), through_base))
            for t in values:
                point = through.copy()
                point[j] = t
                points.append(point)

        diagonal = self.design.diagonal_param
        positive = diagonal if diagonal is not None and not np.any(self.design.known_var > 0.0) else None
        for index in free.tolist():  # a residual variance without known variances must stay > 0
            add_slice(index, theta, grid[(grid != theta[index]) & ((grid > 0.0) | (index != positive))], True)
        free = free[free != positive]
        if free.size >= 2:
            axis = theta.copy()
            axis[free] = 0.0
            for i, index in enumerate(free.tolist()):
                add_slice(index, axis, grid if i == 0 else grid[1:], False)  # the origin once
        n_slice_points = len(points)
        direction = _ascent_direction(base, self.held, self.design.variance_scale)
        if direction is not None:  # a saddle: look along the direction of positive curvature
            for step in self.design.variance_scale * 10.0 ** np.arange(-4.0, 0.0):
                points += [np.maximum(theta + step * direction, 0.0), np.maximum(theta - step * direction, 0.0)]
        logliks = self.values(points)
        found = [
            (float(v), points[n_slice_points + i]) for i, v in enumerate(logliks[n_slice_points:]) if v > level + tol
        ]
        for j, values, first, through_base in slices:
            slice_points = points[first : first + values.size]
            slice_logliks = logliks[first : first + values.size]
            if through_base:
                slice_points, slice_logliks = [*slice_points, theta], np.append(slice_logliks, level)
                values = np.append(values, theta[j])
            order = np.argsort(values, kind="stable")
            ordered = np.append(slice_logliks[order], float("-inf"))  # [-1]: beyond either end
            b = int(np.flatnonzero(order == values.size - 1)[0]) if through_base else -1
            for k, value in enumerate(ordered[:-1]):
                if k == b or not np.isfinite(value):
                    continue
                left, right = ordered[k - 1] if k > 0 else ordered[-1], ordered[k + 1]
                if through_base:  # separated from base: above its neighbour on base's side
                    toward, away = (right, left) if k < b else (left, right)
                    keep = value > toward + tol and value >= away
                else:
                    keep = value > level - AXIS_MARGIN and value >= left and value >= right
                if keep:
                    found.append((float(value), slice_points[order[k]]))
        found.sort(key=lambda item: -item[0])
        return [point for _, point in found]

    def explore(self, run: _Run) -> _Run:
        """Scan around the best maximum, run Newton from the candidates, repeat while that improves."""
        best = run
        for _ in range(MAX_ROUNDS):
            points = [c for c in self.candidates(best.ev) if not any(np.array_equal(c, s) for s in self.starts)]
            improved = False
            for point in points[:MAX_STARTS]:
                trial = self.newton(point)
                if trial.ev.loglik > best.ev.loglik + _tolerance(best.ev.loglik):
                    best, improved = trial, True
            if not improved:
                break
        if self.highest > best.ev.loglik + _tolerance(best.ev.loglik) and self.highest_theta is not None:
            trial = self.newton(self.highest_theta)  # a point met on the way beats every optimum: climb it
            if trial.ev.loglik > best.ev.loglik:
                best = trial
        return best

    def distinct_maxima(self) -> int:
        """Distinct local maxima among the Newton runs that converged to a maximum (negative
        semi-definite Hessian). Two optima apart from each other are distinct when both are strict
        (negative definite Hessian over the free components, gradient pointing outward at the
        boundary: isolated maxima), or when the log-likelihood dips between them; optima joined by
        a flat ridge (a variance not identified) count once."""
        scale = self.design.variance_scale
        maxima = [r.ev for r in self.runs if r.converged and _ascent_direction(r.ev, self.held, scale) is None]
        maxima.sort(key=lambda ev: -ev.loglik)
        kept: list[Evaluation] = []
        for ev in maxima:
            distinct = True
            for other in kept:
                apart = np.abs(ev.theta - other.theta) > 1e-4 * (scale + np.abs(ev.theta) + np.abs(other.theta))
                if not apart.any():
                    distinct = False
                elif not (self._strict(ev) and self._strict(other)):
                    lower = min(ev.loglik, other.loglik) - _tolerance(ev.loglik)
                    path = [ev.theta + f * (other.theta - ev.theta) for f in SEGMENT_FRACTIONS]
                    distinct = bool(np.min(self.values(path)) < lower)
                if not distinct:
                    break
            if distinct:
                kept.append(ev)
        return max(len(kept), 1)

    def _strict(self, ev: Evaluation) -> bool:
        free = _free(ev, self.held)
        boundary = ~self.held & ~free
        if np.any(ev.gradient[boundary] >= 0.0):
            return False
        if not free.any():
            return True
        eigval = np.linalg.eigvalsh(ev.hessian[np.ix_(free, free)])
        return bool(eigval[-1] < -_curvature_floor(eigval, ev.loglik, self.design.variance_scale))


def maximize(
    design: NestedDesign,
    method: Method,
    start: Array,
    fixed: Sequence[bool] | None = None,
    max_iter: int = 200,
    global_search: bool = True,
) -> tuple[Evaluation, Convergence]:
    """Maximise the (restricted) likelihood over ``theta >= 0``: projected Newton, then a scan for
    other, higher maxima.

    Newton uses the exact Hessian, modified to be negative definite where it is not, with
    backtracking; a component at zero whose gradient points outward is held at the boundary.
    Components marked in ``fixed`` keep their start value (used for profile likelihoods). A run
    converges when the Newton decrement (the predicted gain in log-likelihood) is below 1e-20, or
    has been below what the evaluated log-likelihood resolves (``1e-12 max(1, |l|)``) for two full
    Newton steps in a row: the second condition ends noise-driven steps in huge data sets, while the
    full steps still settle nearly flat directions, where a large move gains almost nothing. A
    decrement below that resolution with a step below ``1e-10`` of every component
    (:data:`NEGLIGIBLE_STEP`) also ends the run, without evaluating the step.

    The likelihood need not be concave in ``theta``: Newton can stop at a local maximum, typically
    on the boundary (a variance at 0) while a higher one lies inside. Hence the global search
    (``global_search``, on by default), after Newton from ``start``:

    1. Scan: the log-likelihood alone (:func:`loglik_values`: no derivatives, batched, the O(n) unit
       level computed once per distinct residual value) along every free parameter through the
       optimum, at 0 and at ``s 10^e``, ``e = -3, -2, -1, 0, 1`` (``s``:
       :attr:`NestedDesign.variance_scale`, the residual variance of least squares); with several
       free parameters also along the axes (the other free parameters at 0); at a saddle, along
       the direction of positive curvature.
    2. Restarts: a grid point that is a local maximum of its slice apart from the optimum (a lower
       point lies between), or that beats it, starts a Newton run; so does an axis slice's local
       maximum within ``AXIS_MARGIN`` (1.92) of the optimum. At most ``MAX_STARTS`` runs per round;
       a better optimum is scanned around in turn (at most ``MAX_ROUNDS`` rounds), and a point met
       on the way that beats every optimum is climbed as a last start.
    3. The highest optimum is reported; ``local_maxima`` counts the distinct maxima the runs reached
       (apart, and isolated or separated by a dip in the log-likelihood).

    The scan costs about one Newton step (a few unit levels and some 20 group-level evaluations for
    two parameters), so large fits are barely slower. ``converged`` means: the last Newton step was
    negligible (projected gradient ~0), the Hessian over the free components is negative
    semi-definite (a maximum, not a saddle), and no evaluated point (scan, Newton trials) is higher
    than the reported optimum by more than rounding (``1e-8 max(1, |l|)``). A grid cannot exclude a
    maximum narrower than its spacing: the optimum is the highest of all maxima the search reached,
    not one proven global over all of ``theta >= 0``.
    """
    theta = np.maximum(np.asarray(start, dtype=np.float64), 0.0)
    n_par = theta.size
    held = np.zeros(n_par, dtype=bool) if fixed is None else np.asarray(fixed, dtype=bool)
    if n_par == 0 or held.all():
        ev = evaluate(design, theta, method)
        return ev, Convergence(True, 0, 0.0, tuple(bool(t <= 0) for t in theta))
    search = _Search(design, method, held, max_iter)
    run = search.newton(theta)
    if global_search:
        run = search.explore(run)
    ev = run.ev
    local_maxima = search.distinct_maxima() if global_search else 1  # may evaluate more points
    projected = np.where(_free(ev, held), ev.gradient, 0.0)
    maximum = _ascent_direction(ev, held, design.variance_scale) is None
    highest = search.highest <= ev.loglik + _tolerance(ev.loglik)
    return ev, Convergence(
        converged=bool(run.converged and maximum and highest),
        iterations=sum(r.iterations for r in search.runs),
        gradient_norm=float(np.max(np.abs(projected))),
        at_boundary=tuple(bool(t <= 0.0) for t in ev.theta),
        decrement=run.decrement,
        local_maxima=local_maxima,
    )
