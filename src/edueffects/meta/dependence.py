"""Dependent effect sizes with a known sampling correlation: the correlated-and-hierarchical-effects
(CHE) working model and its sensitivity to the assumed correlation.

Within cluster ``j`` the sampling errors of the effects correlate with a known ``rho``:

    V_j = (1 - rho) diag(v_j) + rho s_j s_j',   s = sqrt(v)

(metafor ``vcalc(vi, cluster, obs, rho)``, clubSandwich ``impute_covariance_matrix(vi, cluster, r = rho)``),
and ``meta(..., rho=)`` fits ``rma.mv(yi, V, random = ~ 1 | cluster/within)``. ``V`` is never formed:
the likelihood adds ``rho s s'`` as a known rank-one step of the nested recursion
(:mod:`edueffects.core.nested`); here ``V^-1`` is applied with the Sherman-Morrison formula
``V_j^-1 = D_j^-1 - (rho / f_j) u_j u_j'`` (``D = (1 - rho) diag(v)``, ``u = D^-1 s``,
``f_j = 1 + rho s_j'D_j^-1 s_j``), for Cochran's ``QE`` and the typical sampling variance of ``I^2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from edueffects.core.errors import InputError, Message
from edueffects.core.jet import Array
from edueffects.core.nested import NestedDesign, design_from_rows
from edueffects.core.results import ResultDisplay
from edueffects.options import DEFAULT_RHOS

if TYPE_CHECKING:
    import pandas as pd

    from edueffects.io.columns import TableLike
    from edueffects.meta.design import MetaData
    from edueffects.meta.result import MetaResult

IntArray = NDArray[np.intp]


def check_rho(rho: object, cluster: str | None) -> float | None:
    """The validated sampling correlation: ``None`` (independent errors) or a number in ``[0, 1)``."""
    if rho is None:
        return None
    if isinstance(rho, bool) or not isinstance(rho, int | float | np.integer | np.floating):
        raise InputError("rho must be a number in [0, 1) (got {0})", repr(rho))
    value = float(rho)
    if not np.isfinite(value) or value < 0.0 or value >= 1.0:
        raise InputError("rho must be a number in [0, 1) (got {0})", value)
    if cluster is None:
        raise InputError("rho correlates the sampling errors within clusters: give cluster")
    return value + 0.0  # -0.0 is 0


def che_design_inputs(v: Array, rho: float) -> tuple[Array, Array]:
    """The diagonal ``(1 - rho) v`` and the loading ``s = sqrt(v)`` of the rank-one term ``rho s s'``."""
    return (1.0 - rho) * v, np.sqrt(v)


def multilevel_design(
    x: Array, y: Array, v: Array, level_codes: Sequence[NDArray[np.intp]], rho: float | None
) -> NestedDesign:
    """The nested design of a multilevel model; with ``rho`` the sampling errors of a cluster correlate:
    ``V_j = (1 - rho) diag(v) + rho s s'`` (``s = sqrt(v)``) plus the random intercepts."""
    if not rho:
        return design_from_rows(x, y, v, list(level_codes), residual=False)
    diagonal, loading = che_design_inputs(v, rho)
    return design_from_rows(x, y, diagonal, list(level_codes), residual=False, loading=loading, loading_variance=rho)


def sampling_covariance(v: Array, cluster: IntArray, rho: float, rows: IntArray) -> Array:
    """The block ``V_j`` of the rows ``rows`` (one cluster): ``(1 - rho) diag(v) + rho s s'``
    (metafor ``vcalc``; for checks and display, never used by the fit)."""
    if np.unique(cluster[rows]).size != 1:
        raise ValueError("rows of one cluster expected")
    s = np.sqrt(v[rows])
    return np.asarray((1.0 - rho) * np.diag(v[rows]) + rho * np.outer(s, s), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class _CheInverse:
    """``V^-1`` of the CHE sampling covariance, applied without forming it."""

    d: Array
    u: Array
    coef: Array  # rho / f per cluster
    indicator: Any  # sparse (k x J) cluster indicator
    cluster: IntArray

    @staticmethod
    def of(v: Array, cluster: IntArray, rho: float) -> _CheInverse:
        d = (1.0 - rho) * v
        s = np.sqrt(v)
        u = s / d
        n_clusters = int(cluster.max()) + 1
        e = np.bincount(cluster, u * s, n_clusters)
        indicator = sparse.csr_matrix((np.ones(cluster.size), (np.arange(cluster.size), cluster)))
        coef = np.asarray(rho / (1.0 + rho * e), dtype=np.float64)
        return _CheInverse(d, u, coef, indicator, cluster)

    def apply(self, a: Array) -> Array:
        """``V^-1 a`` for ``a`` of shape (k, q)."""
        sums = np.asarray(self.indicator.T @ (self.u[:, None] * a))  # (J, q): u_j' a_j
        return np.asarray(a / self.d[:, None] - (self.coef[self.cluster] * self.u)[:, None] * sums[self.cluster])

    def trace(self) -> float:
        return float(np.sum(1.0 / self.d) - np.sum(self.coef[self.cluster] * self.u * self.u))


def che_heterogeneity(x: Array, y: Array, v: Array, cluster: IntArray, rho: float) -> tuple[float, float]:
    """Cochran's ``QE = (y - Xb)'V^-1(y - Xb)`` under the CHE sampling covariance (``b`` its GLS fit;
    metafor ``rma.mv``'s ``QE``) and the typical sampling variance ``(k - p) / tr(P)``,
    ``P = W - W X (X'WX)^-1 X'W``, ``W = V^-1`` (metafor's ``I^2`` for multilevel models)."""
    inverse = _CheInverse.of(v, cluster, rho)
    wx = inverse.apply(x)
    wy = inverse.apply(y[:, None])[:, 0]
    a = x.T @ wx
    beta = np.linalg.solve(a, x.T @ wy)
    r = y - x @ beta
    qe = float(r @ inverse.apply(r[:, None])[:, 0])
    k, p = x.shape
    trace_p = inverse.trace() - float(np.trace(np.linalg.solve(a, wx.T @ wx)))
    return qe, (k - p) / trace_p


def check_within_unique(md: MetaData, cluster: str, within: str | None) -> None:
    """With a known correlation every effect of a cluster is a distinct outcome: ``within`` must not
    repeat inside a cluster (metafor ``vcalc``'s ``obs``); the message names the data row."""
    if within is None:
        return
    pairs = md.level_codes[1]  # one code per (cluster, within) pair
    first_seen = np.zeros(pairs.size, dtype=bool)
    first_seen[np.unique(pairs, return_index=True)[1]] = True
    if not first_seen.all():
        row = int(md.rows[np.flatnonzero(~first_seen)[0]])
        raise InputError(
            "with rho, '{0}' must identify the effects within each '{1}': row {2} repeats a value",
            within,
            cluster,
            row + 1,
        )


def che_loadings(
    v: Array, level_codes: Sequence[IntArray], rho: float
) -> tuple[Array, list[IntArray], list[float], list[Array]]:
    """The CHE working covariance as :func:`edueffects.core.blocks.block_covariance` levels: row variance
    ``(1 - rho) v``, and ``rho s s'`` as one more level (the clusters) with loading ``s``; the random
    intercepts keep loading 1. Returns the row variance, the extra codes, variances and all loadings."""
    ones = np.ones(v.size)
    return (1.0 - rho) * v, [level_codes[0]], [rho], [*(ones for _ in level_codes), np.sqrt(v)]


@dataclass(frozen=True, eq=False, repr=False)
class RhoSensitivity(ResultDisplay):
    """The CHE model refitted at each assumed sampling correlation ``rho``.

    ``tidy()`` has one row per (rho, term): ``rho, term, estimate, se, ci_lb, ci_ub, pval``, one column
    ``sigma2_<level>`` per variance component (level names as in the fit, e.g. ``sigma2_study``,
    ``sigma2_study/esid``) and, with ``robust``, the CR2 ``robust_se, robust_df, robust_pval``
    clustered by ``cluster``; ``results`` holds the fits.
    """

    rhos: tuple[float, ...]
    cluster: str
    robust: bool
    results: tuple[MetaResult, ...] = field(repr=False)
    table: pd.DataFrame = field(repr=False)
    warnings: tuple[str, ...] = ()

    def tidy(self) -> pd.DataFrame:
        return self.table.copy()

    def to_dict(self) -> dict[str, object]:
        return {
            "rhos": list(self.rhos),
            "cluster": self.cluster,
            "robust": self.robust,
            "rows": self.table.astype(object).where(self.table.notna(), None).to_dict(orient="records"),
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        first = self.results[0]
        kind = "CR2 cluster-robust tests" if self.robust else "model-based tests"
        lines = [
            f"Sensitivity to the sampling correlation rho within {self.cluster} ({first.method}, k = {first.k}, {kind})"
        ]
        shown = self.table.copy()
        for col in shown.columns:
            if col not in ("rho", "term", "robust_df"):
                shown[col] = shown[col].map(lambda value: "-" if not np.isfinite(value) else f"{value:.4f}")
        if "robust_df" in shown:
            shown["robust_df"] = shown["robust_df"].map(lambda value: "-" if not np.isfinite(value) else f"{value:.2f}")
        shown["rho"] = shown["rho"].map(lambda value: f"{value:g}")
        lines.append(shown.to_string(index=False))
        lines.extend(f"Warning: {w}" for w in self.warnings)
        return "\n".join(lines)


def _rho_values(rhos: object, cluster: str) -> tuple[float, ...]:
    """``rhos`` as distinct validated values in the order given (a list, tuple, 1-d array or Series)."""
    import pandas as pd

    if isinstance(rhos, np.ndarray | pd.Series) and np.ndim(rhos) == 1:
        rhos = [value.item() if isinstance(value, np.generic) else value for value in rhos]
    if isinstance(rhos, str) or not isinstance(rhos, Sequence) or len(rhos) == 0:
        raise InputError("rhos must be a non-empty list of numbers in [0, 1)")
    values = tuple(check_rho(r, cluster) or 0.0 for r in rhos)
    seen: set[float] = set()
    for value in values:
        if value in seen:
            raise InputError("rhos repeats {0}: give each value once", f"{value:g}")
        seen.add(value)
    return values


def _fit_warnings(values: Sequence[float], results: Sequence[MetaResult]) -> tuple[str, ...]:
    """The fits' warnings: once when every fit gave it (e.g. rows dropped), otherwise with its rho."""
    out: list[str] = []
    for rho, res in zip(values, results, strict=True):
        for w in res.warnings:
            if all(w in other.warnings for other in results):
                if w not in out:
                    out.append(w)
            else:
                out.append(Message("with rho = {0}: {1}", f"{rho:g}", w))
    return tuple(out)


def rho_sensitivity(
    data: TableLike,
    yi: str,
    vi: str,
    cluster: str,
    within: str | None = None,
    *,
    rhos: Sequence[float] | NDArray[np.float64] | pd.Series = DEFAULT_RHOS,
    robust: bool = True,
    **options: Any,
) -> RhoSensitivity:
    """Fit ``meta(data, yi, vi, cluster, within, rho=rho, **options)`` at every ``rho`` in ``rhos``
    (distinct values in ``[0, 1)``, in the order given; the CHE working model, metafor ``rma.mv(yi,
    vcalc(vi, cluster, obs = within, rho), random = ~ 1 | cluster/within)``) and tabulate the
    coefficients and variance components, with ``robust`` also the CR2 tests clustered by ``cluster``
    (clubSandwich ``coef_test(vcov = "CR2")``), which stay valid whatever the true correlation.
    ``warnings`` holds the fits' warnings (rows dropped, boundary estimates), each with its rho unless
    every fit gave it."""
    import pandas as pd

    if "rho" in options:
        raise InputError("rho_sensitivity fits every value of rhos: give rhos, not rho")
    values = _rho_values(rhos, cluster)
    if not isinstance(robust, bool | np.bool_):
        raise InputError("robust must be True or False (got {0})", repr(robust))
    from edueffects.meta.fit import meta

    results = tuple(meta(data, yi, vi, cluster=cluster, within=within, rho=r, **options) for r in values)
    frames = []
    for rho, res in zip(values, results, strict=True):
        c = res.coefficients
        frame = pd.DataFrame(
            {
                "rho": rho,
                "term": list(c.names),
                "estimate": c.estimate,
                "se": c.se,
                "ci_lb": c.ci_lb,
                "ci_ub": c.ci_ub,
                "pval": c.pval,
            }
        )
        for name, value in zip(res.state.level_names, res.variance, strict=True):
            frame[f"sigma2_{name}"] = float(value)
        if robust:
            rob = res.robust(cluster).coefficients
            frame["robust_se"] = rob.se
            frame["robust_df"] = rob.df
            frame["robust_pval"] = rob.pval
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    return RhoSensitivity(
        rhos=values,
        cluster=cluster,
        robust=bool(robust),
        results=results,
        table=table,
        warnings=_fit_warnings(values, results),
    )
