"""Influence diagnostics, leave-one-out and cumulative meta-analysis (metafor's ``influence.rma.uni``,
``leave1out``, ``cumul``, ``cooks.distance.rma.mv`` and ``hatvalues.rma.mv``).

Every deleted fit re-estimates the variance components by the model's own method, test and level,
Newton-started from the full fit's estimates (the core's ``maximize`` on an orthonormal basis of the
moderators, as ``meta()`` does). With ``b``, ``V_b`` of the full fit and ``b(-i)``, ``V_b(-i)``,
``tau^2(-i)`` of the fit without effect (or cluster) ``i``:

- hat values: ``diag(X (X'WX)^-1 X'W)``, ``W`` the inverse marginal covariance (``hatvalues``);
- externally studentized residuals: ``(y_i - x_i'b(-i)) / sqrt(s2w(-i) (v_i + tau^2(-i)) + x_i'V_b(-i)x_i)``
  (``rstudent``; ``s2w`` is the Knapp–Hartung factor, 1 otherwise);
- DFFITS: ``x_i'(b - b(-i)) / sqrt(s2w(-i) h_i (tau^2(-i) + v_i))``;
- Cook's distance: ``(b - b(-i))' V_b^-1 (b - b(-i))``; covariance ratio: ``det V_b(-i) / det V_b``;
- DFBETAS: ``(b - b(-i)) / sqrt(s2w(-i) diag((X'W(-i)X)^-1))``, ``W(-i)`` with ``tau^2(-i)`` on all rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from edueffects.core.blocks import iter_blocks
from edueffects.core.distributions import chi2_sf
from edueffects.core.errors import InputError
from edueffects.core.inference import coefficient_table
from edueffects.core.jet import Array
from edueffects.core.linalg import weighted_ls
from edueffects.core.nested import design_from_rows, evaluate, maximize
from edueffects.core.results import ResultDisplay, format_level
from edueffects.meta.estimators import moment_tau2
from edueffects.meta.result import MetaResult
from edueffects.options import LIKELIHOOD_METHODS as LIKELIHOOD

__all__ = [
    "CumulativeResult",
    "InfluenceResult",
    "LeaveOneOut",
    "cooks_distance",
    "cumul",
    "hatvalues",
    "influence",
    "leave1out",
]


@dataclass(frozen=True)
class _Fit:
    """One (deleted or cumulative) fit: coefficients, their covariance, variance components, Q."""

    beta: Array
    cov: Array
    theta: Array
    s2w: float
    qe: float
    qe_df: int
    typical_v: float
    k: int


def _check(res: object, what: str) -> MetaResult:
    if not isinstance(res, MetaResult):
        raise InputError("{0}: give the result of meta() (got {1})", what, type(res).__name__)
    return res


def _univariate(res: MetaResult, what: str) -> None:
    if res.model == "multilevel":
        raise InputError("{0} is for univariate models: fit meta() without cluster", what)


def _intercept_only(res: MetaResult, what: str) -> None:
    if res.state.x.shape[1] != 1 or not res.state.terms.has_intercept:
        raise InputError("{0} is for models without moderators", what)


def _column(res: MetaResult, name: str) -> pd.Series:
    frame = res.state.frame
    if name not in frame.columns:
        raise InputError("column '{0}' not found (available: {1})", name, ", ".join(map(str, frame.columns)))
    return frame[name].reset_index(drop=True)


def _recode(codes: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.unique(c, return_inverse=True)[1].astype(np.intp) for c in codes]


def _refit(res: MetaResult, keep: np.ndarray) -> _Fit:
    """The model refitted on the rows ``keep``: Newton from the full fit's variance components (multilevel:
    without the global search, the deleted fit's optimum lying next to the full one)."""
    st = res.state
    x, y, v = st.x[keep], st.y[keep], st.v[keep]
    k, p = x.shape
    basis, r_factor = np.linalg.qr(x)
    to_original = np.linalg.inv(r_factor)
    fe = weighted_ls(basis, y, 1.0 / v)
    qe_df = k - p
    method = res.method
    if res.model == "multilevel":
        codes = _recode([c[keep] for c in st.level_codes])
        design = design_from_rows(basis, y, v, codes, residual=False)
        held = list(res.variance_fixed)
        ev, _ = maximize(design, method, np.asarray(res.variance, dtype=float), fixed=held, global_search=False)  # type: ignore[arg-type]
    elif res.model == "fixed":
        ev = evaluate(design_from_rows(basis, y, v, [], residual=False), np.zeros(0), "ML")
    else:
        design = design_from_rows(basis, y, v, [], residual=True)
        tau2 = float(res.variance[0])
        if qe_df == 0 and not res.variance_fixed[0]:  # one effect: tau^2 = 0, as metafor
            ev = evaluate(design, np.zeros(1), "ML")
        elif res.variance_fixed[0]:
            ev = evaluate(design, np.array([tau2]), "ML")
        elif method in LIKELIHOOD:
            ev, _ = maximize(design, method, np.array([tau2]))  # type: ignore[arg-type]
        else:
            ev = evaluate(design, np.array([moment_tau2(method, basis, y, v)]), "ML")  # type: ignore[arg-type]
    cov = to_original @ ev.cov_beta @ to_original.T
    s2w = float(ev.rss / qe_df) if res.test == "knha" else 1.0
    return _Fit(
        to_original @ ev.beta,
        cov * s2w,
        np.asarray(ev.theta, dtype=float),
        s2w,
        fe.rss,
        qe_df,
        float(qe_df / fe.trace_p),
        k,
    )


def _df(res: MetaResult, fit: _Fit) -> float:
    return float(fit.qe_df) if res.test in ("t", "knha") else float("inf")


def _summary_rows(res: MetaResult, fits: list[_Fit]) -> pd.DataFrame:
    """metafor's ``leave1out``/``cumul`` columns for intercept-only models."""
    rows = []
    for fit in fits:
        se = float(np.sqrt(fit.cov[0, 0]))
        coef = coefficient_table(("intrcpt",), fit.beta[:1], np.array([se]), _df(res, fit), res.level)
        row: dict[str, float] = {
            "k": float(fit.k),
            "estimate": float(fit.beta[0]),
            "se": se,
            "zval": float(coef.stat[0]),
            "pval": float(coef.pval[0]),
            "ci_lb": float(coef.ci_lb[0]),
            "ci_ub": float(coef.ci_ub[0]),
            "Q": fit.qe,
            "Qp": float(chi2_sf(fit.qe, fit.qe_df)) if fit.qe_df > 0 else 1.0,
        }
        if res.model == "multilevel":
            for name, value in zip(res.variance_names, fit.theta, strict=True):
                row[name.replace(" ", "_")] = float(value)
        else:
            tau2 = float(fit.theta[0]) if res.model == "univariate" else 0.0
            if res.model == "fixed":
                row["I2"] = max(0.0, 100.0 * (fit.qe - fit.qe_df) / fit.qe) if fit.qe > 0 else 0.0
                row["H2"] = fit.qe / fit.qe_df if fit.qe_df > 0 else 1.0
            else:
                row["tau2"] = tau2
                if fit.qe_df == 0:  # one effect
                    row["I2"], row["H2"] = 0.0, 1.0
                else:
                    row["I2"] = 100.0 * tau2 / (tau2 + fit.typical_v)
                    row["H2"] = (tau2 + fit.typical_v) / fit.typical_v
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True, eq=False, repr=False)
class LeaveOneOut(ResultDisplay):
    """Estimates with one effect, or one cluster, left out (metafor ``leave1out``)."""

    table: pd.DataFrame
    left_out: str
    level: float

    def tidy(self) -> pd.DataFrame:
        return self.table.copy()

    def to_dict(self) -> dict[str, object]:
        return {
            "left_out": self.left_out,
            "level": self.level,
            "rows": self.table.replace({np.nan: None}).to_dict(orient="records"),
        }

    def summary(self) -> str:
        head = f"Leave-one-out estimates by {self.left_out} ({format_level(self.level)} CI)"
        return head + "\n" + self.table.to_string(index=False)


@dataclass(frozen=True, eq=False, repr=False)
class CumulativeResult(ResultDisplay):
    """Cumulative meta-analysis: the estimate after each effect in the given order (metafor ``cumul``)."""

    table: pd.DataFrame
    order: str
    level: float

    def tidy(self) -> pd.DataFrame:
        return self.table.copy()

    def to_dict(self) -> dict[str, object]:
        return {
            "order": self.order,
            "level": self.level,
            "rows": self.table.replace({np.nan: None}).to_dict(orient="records"),
        }

    def summary(self) -> str:
        head = f"Cumulative meta-analysis ordered by {self.order} ({format_level(self.level)} CI)"
        return head + "\n" + self.table.to_string(index=False)


@dataclass(frozen=True, eq=False, repr=False)
class InfluenceResult(ResultDisplay):
    """Case-deletion diagnostics, one row per effect (or cluster); what the table holds is named in ``kind``."""

    table: pd.DataFrame
    kind: str

    def tidy(self) -> pd.DataFrame:
        return self.table.copy()

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "rows": self.table.replace({np.nan: None}).to_dict(orient="records")}

    def summary(self) -> str:
        return f"{self.kind}\n" + self.table.to_string(index=False)


def _deletion_sets(res: MetaResult, cluster: str | None) -> tuple[list[np.ndarray], pd.DataFrame, str]:
    """Rows kept for every deletion, a label column per deletion, and what is left out."""
    k = res.k
    if cluster is None:
        keeps = []
        for i in range(k):
            keep = np.ones(k, dtype=bool)
            keep[i] = False
            keeps.append(keep)
        return keeps, pd.DataFrame({"effect": np.arange(1, k + 1)}), "effect"
    values = _column(res, cluster)
    labels = pd.unique(values)
    codes = pd.Index(labels).get_indexer(pd.Index(values))
    keeps = [codes != j for j in range(len(labels))]
    return keeps, pd.DataFrame({cluster: labels}), cluster


def leave1out(res: MetaResult, cluster: str | None = None) -> LeaveOneOut:
    """Leave-one-out estimates (metafor ``leave1out``): the model without each effect, or (``cluster``,
    a column of the data) without each whole cluster, in order of first appearance; estimate, se,
    z (or t), p, CI, Q, Qp, and tau^2, I^2, H^2 (univariate) or the variance components (multilevel)."""
    res = _check(res, "leave1out")
    _intercept_only(res, "leave1out")
    keeps, labels, what = _deletion_sets(res, cluster)
    table = pd.concat([labels, _summary_rows(res, [_refit(res, keep) for keep in keeps])], axis=1)
    return LeaveOneOut(table, what, res.level)


def cumul(res: MetaResult, order: str) -> CumulativeResult:
    """Cumulative meta-analysis (metafor ``cumul``): the model refitted on the first 1, 2, ..., k effects,
    sorted by the column ``order`` (stable for ties)."""
    res = _check(res, "cumul")
    _univariate(res, "cumul")
    _intercept_only(res, "cumul")
    values = _column(res, order)
    sort = np.argsort(values.to_numpy(), kind="stable")
    fits = []
    for n in range(1, res.k + 1):
        keep = np.zeros(res.k, dtype=bool)
        keep[sort[:n]] = True
        fits.append(_refit(res, keep))
    labels = pd.DataFrame({"effect": sort + 1, order: values.to_numpy()[sort]})
    return CumulativeResult(pd.concat([labels, _summary_rows(res, fits)], axis=1), order, res.level)


def _hat_univariate(res: MetaResult) -> Array:
    st = res.state
    w = 1.0 / (st.v + st.residual_variance)
    hat: Array = np.einsum("ij,jk,ik->i", st.x, st.cov_beta, st.x * w[:, None])
    return hat


def hatvalues(res: MetaResult) -> InfluenceResult:
    """Hat values ``diag(X (X'WX)^-1 X'W)`` (metafor ``hatvalues.rma.uni``, ``hatvalues.rma.mv``), ``W``
    the inverse marginal covariance, computed per cluster block for multilevel models."""
    res = _check(res, "hatvalues")
    st = res.state
    if res.model != "multilevel":
        hat = _hat_univariate(res)
    else:
        hat = np.empty(res.k)
        for rows, block in iter_blocks(st.level_codes[0], st.v, st.level_codes, st.theta):
            wx = np.linalg.inv(block) @ st.x[rows]
            hat[rows] = np.einsum("csi,ij,csj->cs", st.x[rows], st.cov_beta, wx)
    return InfluenceResult(pd.DataFrame({"effect": np.arange(1, res.k + 1), "hat": hat}), "Hat values")


def cooks_distance(res: MetaResult, cluster: str | None = None) -> InfluenceResult:
    """Cook's distances ``(b - b(-i))' V_b^-1 (b - b(-i))`` of every effect or (``cluster``) every cluster,
    with the variance components re-estimated (metafor ``cooks.distance.rma.mv``, ``cooks.distance.rma.uni``)."""
    res = _check(res, "cooks_distance")
    keeps, labels, _ = _deletion_sets(res, cluster)
    beta = res.state.beta
    inv_vb = np.linalg.inv(res.cov_beta)
    cook = []
    for keep in keeps:
        dfb = beta - _refit(res, keep).beta
        cook.append(float(dfb @ inv_vb @ dfb))
    labels["cook_d"] = cook
    return InfluenceResult(labels, "Cook's distances")


def influence(res: MetaResult) -> InfluenceResult:
    """Case-deletion diagnostics of a univariate model (metafor ``influence.rma.uni``): rstudent, dffits,
    cook_d, cov_r, tau2_del, QE_del, hat, weight (percent) and one DFBETAS column per coefficient."""
    res = _check(res, "influence")
    _univariate(res, "influence")
    st = res.state
    x, y, v = st.x, st.y, st.v
    k, p = x.shape
    tau2 = st.residual_variance
    hat = _hat_univariate(res)
    w = 1.0 / (v + tau2)
    weight = 100.0 * w / np.sum(w)
    beta, vb = st.beta, res.cov_beta
    inv_vb = np.linalg.inv(vb)
    det_vb = np.linalg.det(vb)
    pred_full = x @ beta
    out = {name: np.full(k, np.nan) for name in ("rstudent", "dffits", "cook_d", "cov_r", "tau2_del", "QE_del")}
    dfbetas = np.full((k, p), np.nan)
    for i in range(k):
        keep = np.ones(k, dtype=bool)
        keep[i] = False
        fit = _refit(res, keep)
        tau2_del = float(fit.theta[0]) if res.model == "univariate" else 0.0
        delpred = float(x[i] @ fit.beta)
        vdelpred = float(x[i] @ fit.cov @ x[i])
        resid = y[i] - delpred
        if abs(resid) < 100 * np.finfo(float).eps:
            resid = 0.0
        out["rstudent"][i] = resid / np.sqrt(fit.s2w * (v[i] + tau2_del) + vdelpred)
        out["dffits"][i] = (pred_full[i] - delpred) / np.sqrt(fit.s2w * hat[i] * (tau2_del + v[i]))
        dfb = beta - fit.beta
        out["cook_d"][i] = float(dfb @ inv_vb @ dfb)
        out["cov_r"][i] = float(np.linalg.det(fit.cov) / det_vb)
        out["tau2_del"][i] = tau2_del
        out["QE_del"][i] = fit.qe
        xw = x / (v + tau2_del)[:, None]
        vb_del = np.linalg.inv(xw.T @ x)
        dfbetas[i] = dfb / np.sqrt(fit.s2w * np.diag(vb_del))
    table = pd.DataFrame({"effect": np.arange(1, k + 1), **out, "hat": hat, "weight": weight})
    for j, name in enumerate(res.coefficients.names):
        table[f"dfbetas_{name}"] = dfbetas[:, j]
    return InfluenceResult(table, "Influence diagnostics")
