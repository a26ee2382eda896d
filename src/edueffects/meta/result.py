"""The frozen result of :func:`edueffects.meta` and of its robust (CR2) re-inference."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from edueffects.core.errors import InputError
from edueffects.core.inference import CoefficientAccessors, CoefficientTable, coefficient_table
from edueffects.core.jet import Array
from edueffects.core.nested import Convergence, design_from_rows
from edueffects.core.profile import VarianceInterval, profile_curve
from edueffects.core.robust import cr2
from edueffects.meta.design import sorted_codes

Transform = Literal["z_to_r"]


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def _p_clause(p: float) -> str:
    return "< .0001" if p < 1e-4 else f"= {p:.4f}"


def _fmt_p(p: float) -> str:
    return "< .0001" if p < 1e-4 else f"{p:.4f}"


@dataclass(frozen=True)
class Prediction:
    """Pooled estimate with its CI and prediction interval (models without moderators)."""

    pred: float
    se: float
    ci_lb: float
    ci_ub: float
    pi_lb: float | None
    pi_ub: float | None

    def to_dict(self) -> dict[str, float | None]:
        return {
            "pred": self.pred,
            "se": self.se,
            "ci_lb": self.ci_lb,
            "ci_ub": self.ci_ub,
            "pi_lb": self.pi_lb,
            "pi_ub": self.pi_ub,
        }

    def transformed(self, transform: Transform) -> Prediction:
        """Back-transform to the reported metric (``z_to_r``: Fisher z to r by tanh; se is dropped)."""
        f = np.tanh
        return Prediction(
            pred=float(f(self.pred)),
            se=float("nan"),
            ci_lb=float(f(self.ci_lb)),
            ci_ub=float(f(self.ci_ub)),
            pi_lb=None if self.pi_lb is None else float(f(self.pi_lb)),
            pi_ub=None if self.pi_ub is None else float(f(self.pi_ub)),
        )


@dataclass(frozen=True, eq=False)
class FittedState:
    """What re-inference (CR2) needs from a fit: the data in model order and the estimates."""

    x: Array
    y: Array
    v: Array
    level_codes: tuple[NDArray[np.intp], ...]
    theta: Array
    beta: Array
    cov_beta: Array
    frame: pd.DataFrame
    residual_variance: float


@dataclass(frozen=True, eq=False)
class RobustResult:
    """CR2 cluster-robust inference with Satterthwaite df (clubSandwich's ``coef_test``)."""

    coefficients: CoefficientTable
    vcov: Array
    cluster: str
    n_clusters: int

    def tidy(self) -> pd.DataFrame:
        return self.coefficients.to_frame()

    def to_dict(self) -> dict[str, object]:
        return {
            "type": "CR2",
            "df_method": "Satterthwaite",
            "cluster": self.cluster,
            "n_clusters": self.n_clusters,
            "coefficients": self.coefficients.to_records(),
        }

    def summary(self) -> str:
        lines = [f"Cluster-robust inference (CR2, Satterthwaite df), {self.n_clusters} clusters by {self.cluster}"]
        lines.append(_coef_block(self.coefficients, "t"))
        return "\n".join(lines)


def _coef_block(table: CoefficientTable, stat_name: str) -> str:
    header = f"  {'term':<18} {'estimate':>10} {'se':>9} {stat_name:>8} {'df':>8} {'p':>8} {'ci.lb':>9} {'ci.ub':>9}"
    rows = [header]
    for rec in table.to_records():
        df = rec["df"]
        rows.append(
            f"  {rec['name']!s:<18} {_fmt(float(rec['estimate'])):>10} {_fmt(float(rec['se'])):>9} "  # type: ignore[arg-type]
            f"{_fmt(float(rec['stat']), 3):>8} {('-' if df is None else _fmt(float(df), 2)):>8} "  # type: ignore[arg-type]
            f"{_fmt_p(float(rec['pval'])):>8} {_fmt(float(rec['ci_lb'])):>9} {_fmt(float(rec['ci_ub'])):>9}"  # type: ignore[arg-type]
        )
    return "\n".join(rows)


@dataclass(frozen=True, eq=False)
class MetaResult(CoefficientAccessors):
    """A fitted meta-analytic model: coefficients, heterogeneity, fit statistics and convergence."""

    model: Literal["fixed", "univariate", "multilevel"]
    method: str
    test: str
    level: float
    k: int
    n_groups: tuple[int, ...]
    coefficients: CoefficientTable
    cov_beta: Array
    variance_names: tuple[str, ...]
    variance: Array
    QE: float
    QEp: float
    QE_df: int
    QM: float | None
    QMp: float | None
    QMdf: tuple[int, int | None] | None
    loglik: float
    aic: float
    bic: float
    i2_total: float
    i2_levels: tuple[float, ...]
    h2: float | None
    typical_v: float
    prediction: Prediction | None
    variance_ci: tuple[VarianceInterval, ...]
    convergence: Convergence
    n_dropped: int
    warnings: tuple[str, ...]
    fitted: FittedState = field(repr=False)

    # --- coefficient accessors -------------------------------------------------------------
    def tidy(self) -> pd.DataFrame:
        """Coefficients as a DataFrame: term, estimate, se, stat, df, pval, ci_lb, ci_ub."""
        return self.coefficients.to_frame()

    # --- re-inference ------------------------------------------------------------------------
    def robust(self, cluster: str | NDArray[np.generic] | pd.Series, level: float | None = None) -> RobustResult:
        """CR2 cluster-robust SEs with Satterthwaite df, clustering by a column name or a vector."""
        fit = self.fitted
        if isinstance(cluster, str):
            if cluster not in fit.frame.columns:
                raise InputError("robust cluster column '{0}' not found", cluster)
            values = fit.frame[cluster]
            label = cluster
        else:
            values = pd.Series(np.asarray(cluster))
            label = "cluster"
            if len(values) != self.k:
                raise InputError("robust cluster has {0} values for {1} rows", len(values), self.k)
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise InputError("robust cluster '{0}' is missing in row {1}", label, row + 1)
        codes = sorted_codes(values)
        if fit.level_codes:
            outer = fit.level_codes[0]
            per_group = pd.Series(codes).groupby(outer).nunique()
            if (per_group > 1).any():
                raise InputError(
                    "robust cluster '{0}' splits clusters of the model: "
                    "each model cluster must lie within one robust cluster",
                    label,
                )
        residuals = fit.y - fit.x @ fit.beta
        rc = cr2(
            fit.x,
            residuals,
            fit.cov_beta,
            fit.v + fit.residual_variance,
            fit.level_codes,
            fit.theta[: len(fit.level_codes)],
            codes,
        )
        table = coefficient_table(
            self.coefficients.names,
            fit.beta,
            np.sqrt(np.diag(rc.vcov)),
            rc.df,
            self.level if level is None else level,
        )
        return RobustResult(coefficients=table, vcov=rc.vcov, cluster=label, n_clusters=rc.n_clusters)

    def profile(self, component: int, points: int = 31) -> pd.DataFrame:
        """Profile log-likelihood of one variance component (multilevel models) over a grid from 0
        to beyond its profile CI: columns ``sigma2``, ``loglik``, ``deviance`` (2 x drop from the maximum)."""
        if self.model != "multilevel":
            raise InputError("profile curves are computed for multilevel models")
        fit = self.fitted
        design = design_from_rows(fit.x, fit.y, fit.v, list(fit.level_codes), residual=False)
        estimate = float(self.variance[component])
        upper = next((vc.ci_ub for vc in self.variance_ci if vc.component == self.variance_names[component]), None)
        top = 1.5 * (upper if upper is not None and np.isfinite(upper) else 3.0 * max(estimate, 1e-4))
        grid = np.linspace(0.0, max(top, 1e-6), points)
        loglik = profile_curve(design, self.method, np.asarray(self.variance), component, grid)  # type: ignore[arg-type]
        return pd.DataFrame({"sigma2": grid, "loglik": loglik, "deviance": 2.0 * (self.loglik - loglik)})

    def back_transform(self, transform: Transform = "z_to_r") -> Prediction:
        """Pooled estimate, CI and prediction interval back-transformed (e.g. Fisher z to r)."""
        if self.prediction is None:
            raise InputError("back-transformation needs a model without moderators")
        return self.prediction.transformed(transform)

    # --- output ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, object]:
        """JSON-able dict of every reported quantity."""
        out: dict[str, object] = {
            "model": self.model,
            "method": self.method,
            "test": self.test,
            "level": self.level,
            "k": self.k,
            "coefficients": self.coefficients.to_records(),
        }
        if self.model == "multilevel":
            out["sigma2"] = [float(s) for s in self.variance]
            out["sigma2_levels"] = list(self.variance_names)
            out["n_groups"] = list(self.n_groups)
        else:
            out["tau2"] = float(self.variance[0]) if self.variance.size else 0.0
        out.update(
            {
                "QE": self.QE,
                "QEp": self.QEp,
                "QEdf": self.QE_df,
                "QM": self.QM,
                "QMp": self.QMp,
                "QMdf": list(self.QMdf) if self.QMdf is not None else None,
                "logLik": self.loglik,
                "AIC": self.aic,
                "BIC": self.bic,
                "I2": {"total": self.i2_total, "levels": list(self.i2_levels), "typical_v": self.typical_v},
                "H2": self.h2,
                "prediction": self.prediction.to_dict() if self.prediction else None,
                "variance_ci": [vc.to_dict() for vc in self.variance_ci],
                "convergence": self.convergence.to_dict(),
                "n_dropped": self.n_dropped,
                "warnings": list(self.warnings),
            }
        )
        return out

    def summary(self) -> str:
        """A readable text report in the spirit of metafor's print method."""
        kind = {
            "fixed": "Equal-effects model",
            "univariate": "Random-effects model",
            "multilevel": f"{len(self.variance) + 1}-level model",
        }[self.model]
        lines = [f"{kind} ({self.method}), k = {self.k}"]
        if self.n_dropped:
            lines.append(f"  {self.n_dropped} row(s) with missing values were dropped")
        if self.variance.size:
            lines.append("")
            lines.append("Variance components:")
            intervals = {vc.component: vc for vc in self.variance_ci}
            for i, (name, value) in enumerate(zip(self.variance_names, self.variance, strict=True)):
                groups = f"  ({self.n_groups[i]} groups)" if self.model == "multilevel" else ""
                vc = intervals.get(name)
                ci = f"  95% CI [{_fmt(vc.ci_lb)}, {_fmt(vc.ci_ub)}] ({vc.kind})" if vc else ""
                lines.append(f"  {name:<24} {_fmt(float(value))}{groups}{ci}")
            levels = ", ".join(f"{_fmt(v, 2)}%" for v in self.i2_levels)
            lines.append(
                f"  I2 total = {_fmt(self.i2_total, 2)}%"
                + (f" (by level: {levels})" if len(self.i2_levels) > 1 else "")
            )
        lines.append("")
        lines.append(f"Test for heterogeneity: Q({self.QE_df}) = {_fmt(self.QE, 3)}, p {_p_clause(self.QEp)}")
        if self.QM is not None and self.QMdf is not None and self.QMp is not None:
            if self.QMdf[1] is None:
                lines.append(f"Test of moderators: QM({self.QMdf[0]}) = {_fmt(self.QM, 3)}, p {_p_clause(self.QMp)}")
            else:
                lines.append(
                    f"Test of moderators: F({self.QMdf[0]}, {self.QMdf[1]}) = {_fmt(self.QM, 3)}, "
                    f"p {_p_clause(self.QMp)}"
                )
        lines.append("")
        lines.append(f"Coefficients ({'z' if self.test == 'z' else 't'} test):")
        lines.append(_coef_block(self.coefficients, "z" if self.test == "z" else "t"))
        if self.prediction is not None:
            pr = self.prediction
            lines.append("")
            text = f"Pooled estimate {_fmt(pr.pred)}, {self.level:g}% CI [{_fmt(pr.ci_lb)}, {_fmt(pr.ci_ub)}]"
            if pr.pi_lb is not None and pr.pi_ub is not None:
                text += f", prediction interval [{_fmt(pr.pi_lb)}, {_fmt(pr.pi_ub)}]"
            lines.append(text)
        lines.append("")
        lines.append(f"logLik = {_fmt(self.loglik)}, AIC = {_fmt(self.aic)}, BIC = {_fmt(self.bic)}")
        conv = self.convergence
        state = "converged" if conv.converged else "did NOT converge"
        lines.append(
            f"Optimiser {state} in {conv.iterations} iterations "
            f"(max |gradient| = {conv.gradient_norm:.1e}, logLik still to gain = {conv.decrement:.1e})"
        )
        for w in self.warnings:
            lines.append(f"Warning: {w}")
        return "\n".join(lines)
