"""Small-study effects and publication bias for :func:`edueffects.meta` results.

- :func:`regtest`: Egger-type regression tests (Egger et al. 1997; Sterne & Egger 2005), metafor's
  ``regtest``: the model refitted with a measure of precision added as a moderator, ``sei = sqrt(v)``,
  ``vi``, ``ni``, ``ninv = 1/n``, ``sqrtni``, ``sqrtninv = 1/sqrt(n)``; ``model="rma"`` refits the
  meta-analytic model (same method, test and fixed variance components; multilevel models keep their
  levels, optionally with a CR2 test of the slope), ``model="lm"`` is weighted least squares with
  weights ``1/v`` and a multiplicative dispersion, t(k - p - 1). With ``sei``/``vi``/``ninv``/``sqrtninv``
  the intercept is the limit estimate (the effect of an infinitely large study).
- :func:`pet_peese`: PET (``y ~ sei``) and PEESE (``y ~ vi``), and the conditional PET-PEESE estimate
  (Stanley & Doucouliagos 2014): PEESE's intercept when PET's intercept differs from zero in the
  direction of the pooled effect (one-sided test at ``alpha``), otherwise PET's.
- :func:`ranktest`: Begg & Mazumdar's (1994) rank correlation test, metafor's ``ranktest``: Kendall's
  tau between ``(y - b) / sqrt(v - 1/sum(w))`` and ``v``; exact p-value without ties, otherwise the
  normal approximation with tie correction (R's ``cor.test(..., method = "kendall", exact = TRUE)``).
- :func:`trimfill`: Duval & Tweedie's (2000) trim-and-fill, estimators L0 and R0, metafor's
  ``trimfill.rma.uni``: the missing side from the sign of the Egger-type slope, iterated trimming,
  then the mirrored studies ``2 b - y`` filled in and the model refitted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from edueffects.core.distributions import norm_ppf, t_sf
from edueffects.core.errors import InputError
from edueffects.core.inference import critical_value
from edueffects.core.jet import Array
from edueffects.core.results import ResultDisplay
from edueffects.meta.result import MetaResult
from edueffects.options import (
    REGTEST_MODELS,
    REGTEST_PREDICTORS,
    TRIMFILL_ESTIMATORS,
    TRIMFILL_SIDES,
    RegtestModel,
    RegtestPredictor,
    TrimfillEstimator,
    TrimfillSide,
)

_LIMIT_PREDICTORS = ("sei", "vi", "ninv", "sqrtninv")


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def _p(p: float) -> str:
    return "< .0001" if p < 1e-4 else f"= {p:.4f}"


def _num(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


# ---- refitting ---------------------------------------------------------------------------------


def refit(
    res: MetaResult,
    extra: Mapping[str, Array] | None = None,
    y: Array | None = None,
    v: Array | None = None,
    method: str | None = None,
    intercept_only: bool = False,
) -> MetaResult:
    """``res``'s model refitted with the columns of ``extra`` added to its model matrix (or to an
    intercept), optionally to other effects ``y``/``v`` (then intercept-only) or by another ``method``;
    variance components that were fixed stay fixed, multilevel models keep their levels."""
    from edueffects.meta.fit import meta

    state = res.state
    yy = state.y if y is None else y
    vv = state.v if v is None else v
    x = np.ones((yy.size, 1)) if intercept_only or y is not None else state.x
    columns: dict[str, Array] = {"_yi": yy, "_vi": vv}
    names = [f"_x{j}" for j in range(x.shape[1])]
    columns.update({name: x[:, j] for j, name in enumerate(names)})
    for name, values in (extra or {}).items():
        columns[name] = values
        names.append(name)
    cluster = within = None
    sigma2: list[float | None] | None = None
    tau2 = None
    if res.model == "multilevel":
        columns["_cluster"] = state.level_codes[0].astype(np.float64)
        cluster = "_cluster"
        if len(state.level_codes) > 1:
            columns["_within"] = state.level_codes[1].astype(np.float64)
            within = "_within"
        sigma2 = [float(s) if fixed else None for s, fixed in zip(res.variance, res.variance_fixed, strict=True)]
    elif res.model == "univariate" and res.variance_fixed[0]:
        tau2 = float(res.variance[0])
    return meta(
        pd.DataFrame(columns),
        "_yi",
        "_vi",
        cluster=cluster,
        within=within,
        method=(method or res.method),  # type: ignore[arg-type]
        mods="~ 0 + " + " + ".join(names),
        test=res.test,  # type: ignore[arg-type]
        level=res.level,
        variance_ci=False,
        sigma2=sigma2,
        tau2=tau2,
        rho=res.rho,
    )


def _is_intercept_only(res: MetaResult) -> bool:
    return res.coefficients.names == ("intrcpt",)


def _require_univariate(res: MetaResult, what: str) -> None:
    if not isinstance(res, MetaResult):
        raise InputError("{0}: give the result of meta() (got {1})", what, type(res).__name__)
    if res.model == "multilevel":
        raise InputError("{0} is for univariate models: fit meta() without cluster", what)


def sample_sizes(res: MetaResult, ni: str | ArrayLike | None, what: str) -> Array:
    """Sample sizes of the model's effects: a column of the data it was fitted to, or one value per effect."""
    if ni is None:
        raise InputError("{0}: this predictor needs sample sizes: give ni (a column or one value per effect)", what)
    if isinstance(ni, str):
        frame = res.state.frame
        if ni not in frame.columns:
            raise InputError("ni column '{0}' not found", ni)
        values = pd.to_numeric(frame[ni], errors="coerce").to_numpy(dtype=np.float64)
    else:
        values = np.asarray(ni, dtype=np.float64).ravel()
        if values.size != res.k:
            raise InputError("ni has {0} values for {1} effects", values.size, res.k)
    bad = np.flatnonzero(~np.isfinite(values) | (values <= 0))
    if bad.size:
        raise InputError("ni row {0}: sample size is missing or not positive", int(bad[0]) + 1)
    return values


def _predictor(res: MetaResult, predictor: str, ni: str | ArrayLike | None) -> Array:
    v = res.state.v
    if predictor == "sei":
        return np.sqrt(v)
    if predictor == "vi":
        return v.copy()
    n = sample_sizes(res, ni, "regtest")
    return {"ni": n, "ninv": 1.0 / n, "sqrtni": np.sqrt(n), "sqrtninv": 1.0 / np.sqrt(n)}[predictor]


# ---- regression tests --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class RegressionTest(ResultDisplay):
    """An Egger-type regression test: the slope of the precision ``predictor`` (``statistic``, ``df``
    None for z, ``pval``) and, for intercept-only models with ``sei``/``vi``/``ninv``/``sqrtninv``,
    the limit estimate (intercept) with its SE, test and CI."""

    model: str
    predictor: str
    method: str
    test: str
    k: int
    slope: float
    slope_se: float
    statistic: float
    df: float | None
    pval: float
    level: float
    limit_estimate: float | None = None
    limit_se: float | None = None
    limit_statistic: float | None = None
    limit_pval: float | None = None
    limit_ci_lb: float | None = None
    limit_ci_ub: float | None = None
    robust_cluster: str | None = None
    robust_se: float | None = None
    robust_statistic: float | None = None
    robust_df: float | None = None
    robust_pval: float | None = None
    fit: MetaResult | None = field(default=None, repr=False)

    @property
    def limit_df(self) -> float:
        return float("inf") if self.df is None else self.df

    def limit_one_sided_p(self, direction: float) -> float | None:
        """One-sided p of the limit estimate in ``direction`` (+1: greater than zero)."""
        if self.limit_statistic is None:
            return None
        return float(t_sf(np.sign(direction) * self.limit_statistic, self.limit_df))

    def tidy(self) -> pd.DataFrame:
        return pd.DataFrame([self.to_dict()]).drop(columns=["robust"], errors="ignore")

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "model": self.model,
            "predictor": self.predictor,
            "method": self.method,
            "test": self.test,
            "k": self.k,
            "slope": self.slope,
            "slope_se": self.slope_se,
            "statistic": self.statistic,
            "df": self.df,
            "pval": self.pval,
            "limit_estimate": self.limit_estimate,
            "limit_se": self.limit_se,
            "limit_ci_lb": self.limit_ci_lb,
            "limit_ci_ub": self.limit_ci_ub,
        }
        if self.robust_cluster is not None:
            out["robust"] = {
                "cluster": self.robust_cluster,
                "se": self.robust_se,
                "statistic": self.robust_statistic,
                "df": self.robust_df,
                "pval": self.robust_pval,
            }
        return out

    def summary(self) -> str:
        kind = "weighted regression (lm)" if self.model == "lm" else f"meta-regression ({self.method})"
        stat = "z" if self.df is None else f"t({self.df:g})"
        lines = [
            f"Regression test for funnel plot asymmetry, {kind}, predictor {self.predictor}, k = {self.k}",
            f"  slope = {_fmt(self.slope)} (SE = {_fmt(self.slope_se)}), {stat} = {_fmt(self.statistic, 3)}, "
            f"p {_p(self.pval)}",
        ]
        if self.robust_cluster is not None and self.robust_pval is not None:
            lines.append(
                f"  CR2 by {self.robust_cluster}: t({_fmt(self.robust_df, 2)}) = {_fmt(self.robust_statistic, 3)}, "
                f"p {_p(self.robust_pval)}"
            )
        if self.limit_estimate is not None:
            lines.append(
                f"  limit estimate (as the predictor goes to 0) = {_fmt(self.limit_estimate)}, "
                f"{self.level:g}% CI [{_fmt(self.limit_ci_lb)}, {_fmt(self.limit_ci_ub)}]"
            )
        return "\n".join(lines)


def _wls(x: Array, y: Array, v: Array) -> tuple[Array, Array, int]:
    """Weighted least squares with weights ``1/v`` and dispersion ``s^2 = sum w e^2 / (k - p)``
    (R's ``lm(y ~ X - 1, weights = 1/v)``): coefficients, their covariance and the residual df."""
    sw = 1.0 / np.sqrt(v)
    q, r = np.linalg.qr(x * sw[:, None])
    beta = np.linalg.solve(r, q.T @ (y * sw))
    resid = y * sw - (x * sw[:, None]) @ beta
    df = x.shape[0] - x.shape[1]
    if df < 1:
        raise InputError("{0} effect(s) are too few for this regression test", x.shape[0])
    r_inv = np.linalg.inv(r)
    cov = float(resid @ resid / df) * (r_inv @ r_inv.T)
    return beta, cov, df


def regtest(
    res: MetaResult,
    predictor: RegtestPredictor = "sei",
    model: RegtestModel = "rma",
    ni: str | ArrayLike | None = None,
    robust: str | None = None,
) -> RegressionTest:
    """Egger-type regression test of funnel-plot asymmetry (metafor ``regtest``): the slope of
    ``predictor`` added to the model's moderators. ``model="rma"`` refits the meta-analytic model
    (univariate or multilevel; ``robust`` adds a CR2 test of the slope clustered by that column),
    ``model="lm"`` is ``lm(y ~ X + predictor, weights = 1/v)``. ``ni``: a column or one sample size per
    effect, for ``ni``, ``ninv``, ``sqrtni`` and ``sqrtninv``."""
    if not isinstance(res, MetaResult):
        raise InputError("{0}: give the result of meta() (got {1})", "regtest", type(res).__name__)
    if predictor not in REGTEST_PREDICTORS:
        raise InputError("predictor '{0}' is not one of {1}", predictor, ", ".join(REGTEST_PREDICTORS))
    if model not in REGTEST_MODELS:
        raise InputError("regression test model '{0}' is not one of {1}", model, ", ".join(REGTEST_MODELS))
    if robust is not None and model != "rma":
        raise InputError("robust (CR2) tests are for model='rma'")
    values = _predictor(res, predictor, ni)
    state = res.state
    x = np.column_stack([state.x, values])
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise InputError("predictor '{0}' is collinear with the moderators: the model cannot be fitted", predictor)
    p = state.x.shape[1]
    limit = predictor in _LIMIT_PREDICTORS and _is_intercept_only(res)
    level = res.level
    common = {"predictor": predictor, "k": res.k, "level": level}
    if model == "lm":
        beta, cov, df = _wls(x, state.y, state.v)
        se = np.sqrt(np.diag(cov))
        stat = beta / se
        pvals = 2.0 * t_sf(np.abs(stat), float(df))
        crit = float(critical_value(float(df), level))
        out = RegressionTest(
            model="lm",
            method="WLS",
            test="t",
            slope=float(beta[p]),
            slope_se=float(se[p]),
            statistic=float(stat[p]),
            df=float(df),
            pval=float(pvals[p]),
            **common,  # type: ignore[arg-type]
        )
        if limit:
            out = _with_limit(out, beta[0], se[0], stat[0], pvals[0], beta[0] - crit * se[0], beta[0] + crit * se[0])
        return out
    fit = refit(res, {predictor: values})
    c = fit.coefficients
    df_value = float(c.df[p])
    out = RegressionTest(
        model="rma",
        method=res.method,
        test=res.test,
        slope=float(c.estimate[p]),
        slope_se=float(c.se[p]),
        statistic=float(c.stat[p]),
        df=df_value if np.isfinite(df_value) else None,
        pval=float(c.pval[p]),
        fit=fit,
        **common,  # type: ignore[arg-type]
    )
    if limit:
        out = _with_limit(out, c.estimate[0], c.se[0], c.stat[0], c.pval[0], c.ci_lb[0], c.ci_ub[0])
    if robust is not None:
        if robust not in state.frame.columns:
            raise InputError("robust cluster column '{0}' not found", robust)
        rob = fit.robust(state.frame[robust].to_numpy())
        rc = rob.coefficients
        out = _replace(
            out,
            robust_cluster=robust,
            robust_se=float(rc.se[p]),
            robust_statistic=float(rc.stat[p]),
            robust_df=float(rc.df[p]),
            robust_pval=float(rc.pval[p]),
        )
    return out


def _replace(test: RegressionTest, **changes: object) -> RegressionTest:
    from dataclasses import replace

    return replace(test, **changes)  # type: ignore[arg-type]


def _with_limit(
    test: RegressionTest, est: float, se: float, stat: float, pval: float, lb: float, ub: float
) -> RegressionTest:
    return _replace(
        test,
        limit_estimate=float(est),
        limit_se=float(se),
        limit_statistic=float(stat),
        limit_pval=float(pval),
        limit_ci_lb=float(lb),
        limit_ci_ub=float(ub),
    )


@dataclass(frozen=True, eq=False, repr=False)
class PetPeese(ResultDisplay):
    """PET, PEESE and the conditional PET-PEESE estimate (``selected`` names the one reported)."""

    pet: RegressionTest
    peese: RegressionTest
    selected: str
    estimate: float
    se: float
    ci_lb: float
    ci_ub: float
    pet_one_sided_p: float
    alpha: float
    direction: float

    def tidy(self) -> pd.DataFrame:
        rows = []
        for name, test in (("PET", self.pet), ("PEESE", self.peese)):
            rows.append(
                {
                    "estimator": name,
                    "estimate": test.limit_estimate,
                    "se": test.limit_se,
                    "ci_lb": test.limit_ci_lb,
                    "ci_ub": test.limit_ci_ub,
                    "pval": test.limit_pval,
                    "slope": test.slope,
                    "slope_pval": test.pval,
                    "selected": name == self.selected,
                }
            )
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, object]:
        return {
            "selected": self.selected,
            "estimate": self.estimate,
            "se": self.se,
            "ci_lb": self.ci_lb,
            "ci_ub": self.ci_ub,
            "pet_one_sided_p": self.pet_one_sided_p,
            "alpha": self.alpha,
            "pet": self.pet.to_dict(),
            "peese": self.peese.to_dict(),
        }

    def summary(self) -> str:
        side = "> 0" if self.direction > 0 else "< 0"
        return "\n".join(
            [
                f"PET-PEESE ({self.pet.model}), k = {self.pet.k}: {self.selected} estimate {_fmt(self.estimate)}, "
                f"{self.pet.level:g}% CI [{_fmt(self.ci_lb)}, {_fmt(self.ci_ub)}]",
                f"  PET intercept {_fmt(self.pet.limit_estimate)} (one-sided p {side} {_p(self.pet_one_sided_p)}, "
                f"alpha = {self.alpha:g})",
                f"  PEESE intercept {_fmt(self.peese.limit_estimate)}",
            ]
        )


def pet_peese(res: MetaResult, model: RegtestModel = "lm", alpha: float = 0.05) -> PetPeese:
    """PET (predictor ``sei``) and PEESE (``vi``) and the conditional PET-PEESE estimate (Stanley &
    Doucouliagos 2014): PEESE's intercept when PET's intercept differs from 0 in the direction of the
    pooled effect (one-sided p < ``alpha``), PET's otherwise. ``model="lm"`` is their weighted least
    squares with multiplicative dispersion; ``"rma"`` the meta-regression. Intercept-only models."""
    if not isinstance(res, MetaResult):
        raise InputError("{0}: give the result of meta() (got {1})", "pet_peese", type(res).__name__)
    if not _is_intercept_only(res):
        raise InputError("{0} needs a model without moderators (intercept only)", "PET-PEESE")
    if not 0.0 < alpha < 1.0:
        raise InputError("alpha must lie between 0 and 1 (got {0})", alpha)
    pet = regtest(res, "sei", model)
    peese = regtest(res, "vi", model)
    direction = 1.0 if float(res.coefficients.estimate[0]) >= 0 else -1.0
    p_one = pet.limit_one_sided_p(direction)
    assert p_one is not None and pet.limit_estimate is not None and peese.limit_estimate is not None
    chosen = peese if p_one < alpha else pet
    assert chosen.limit_estimate is not None and chosen.limit_se is not None
    assert chosen.limit_ci_lb is not None and chosen.limit_ci_ub is not None
    return PetPeese(
        pet=pet,
        peese=peese,
        selected="PEESE" if chosen is peese else "PET",
        estimate=chosen.limit_estimate,
        se=chosen.limit_se,
        ci_lb=chosen.limit_ci_lb,
        ci_ub=chosen.limit_ci_ub,
        pet_one_sided_p=p_one,
        alpha=alpha,
        direction=direction,
    )


# ---- rank correlation --------------------------------------------------------------------------


def kendall_lower_tail(q: int, n: int) -> float:
    """``P(T <= q)`` for the number ``T`` of concordant pairs of ``n`` untied pairs (R's ``pkendall``):
    the Mahonian distribution ``prod_j (1 - x^j) / (1 - x) / n!``, built on ``0..q`` only."""
    if q < 0:
        return 0.0
    size = q + 1
    probs = np.zeros(size)
    probs[0] = 1.0
    for m in range(2, n + 1):  # multiply by (1 + x + ... + x^(m-1)) / m
        cs = np.cumsum(probs)
        shifted = np.zeros(size)
        if m < size:
            shifted[m:] = cs[: size - m]
        probs = (cs - shifted) / m
    return float(min(1.0, probs.sum()))


@dataclass(frozen=True, eq=False, repr=False)
class RankTest(ResultDisplay):
    """Begg & Mazumdar's rank correlation test: Kendall's tau and its p-value (``exact`` or normal)."""

    tau: float
    pval: float
    k: int
    exact: bool
    statistic: float

    def tidy(self) -> pd.DataFrame:
        return pd.DataFrame([self.to_dict()])

    def to_dict(self) -> dict[str, object]:
        return {"tau": self.tau, "pval": self.pval, "k": self.k, "exact": self.exact, "statistic": self.statistic}

    def summary(self) -> str:
        how = f"exact, T = {self.statistic:g}" if self.exact else f"normal approximation, z = {self.statistic:.4f}"
        return (
            f"Rank correlation test for funnel plot asymmetry, k = {self.k}: "
            f"Kendall's tau = {self.tau:.4f}, p {_p(self.pval)} ({how})"
        )


def _tie_sizes(values: Array) -> Array:
    _, counts = np.unique(values, return_counts=True)
    return counts[counts > 1].astype(np.float64)


def kendall_test(x: Array, y: Array, exact: bool = True) -> tuple[float, float, bool, float]:
    """Kendall's tau-b and its two-sided p-value as R's ``cor.test(x, y, method = "kendall", exact)``:
    exact without ties, otherwise ``z = S / sqrt(var S)`` with the tie-corrected variance."""
    from scipy.stats import kendalltau

    n = x.size
    tau = float(kendalltau(x, y).statistic)
    ties = min(np.unique(x).size, np.unique(y).size) < n
    if exact and not ties:
        pairs = n * (n - 1) / 4.0
        q = int(np.round((tau + 1.0) * pairs))
        total = n * (n - 1) // 2
        p = kendall_lower_tail(total - q, n) if q > pairs else kendall_lower_tail(q, n)
        return tau, min(2.0 * p, 1.0), True, float(q)
    tx, ty = _tie_sizes(x), _tie_sizes(y)
    t0 = n * (n - 1) / 2.0
    t1, t2 = float(np.sum(tx * (tx - 1))) / 2.0, float(np.sum(ty * (ty - 1))) / 2.0
    s = tau * np.sqrt((t0 - t1) * (t0 - t2))
    v0 = n * (n - 1) * (2 * n + 5)
    vt, vu = float(np.sum(tx * (tx - 1) * (2 * tx + 5))), float(np.sum(ty * (ty - 1) * (2 * ty + 5)))
    v1 = float(np.sum(tx * (tx - 1))) * float(np.sum(ty * (ty - 1)))
    v2 = float(np.sum(tx * (tx - 1) * (tx - 2))) * float(np.sum(ty * (ty - 1) * (ty - 2)))
    var_s = (v0 - vt - vu) / 18.0 + v1 / (2.0 * n * (n - 1)) + v2 / (9.0 * n * (n - 1) * (n - 2))
    z = float(s / np.sqrt(var_s))
    return tau, float(2.0 * t_sf(abs(z), float("inf"))), False, z


def ranktest(res: MetaResult, exact: bool = True) -> RankTest:
    """Rank correlation test (Begg & Mazumdar 1994; metafor ``ranktest``): Kendall's tau between the
    standardised deviates ``(y - b_EE) / sqrt(v - 1/sum w)`` and ``v`` (``w = 1/v``; moderators are
    ignored, as in metafor); exact p-value unless there are ties."""
    _require_univariate(res, "ranktest")
    y, v = res.state.y, res.state.v
    w = 1.0 / v
    theta = float(np.sum(w * y) / np.sum(w))
    ystar = (y - theta) / np.sqrt(v - 1.0 / np.sum(w))
    tau, pval, is_exact, stat = kendall_test(ystar, v, exact)
    return RankTest(tau=tau, pval=pval, k=res.k, exact=is_exact, statistic=stat)


# ---- trim and fill -----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class TrimFillResult(ResultDisplay):
    """Trim-and-fill: ``k0`` studies estimated missing on ``side``, the filled data (``data``: yi, vi,
    filled) and the model refitted to it (``fit``; the original model when ``k0 = 0``)."""

    estimator: str
    side: str
    k0: int
    se_k0: float
    p_k0: float | None
    original: MetaResult = field(repr=False)
    fit: MetaResult = field(repr=False)
    data: pd.DataFrame = field(repr=False)

    @property
    def estimate(self) -> float:
        return float(self.fit.coefficients.estimate[0])

    def tidy(self) -> pd.DataFrame:
        rows = []
        for label, model in (("original", self.original), ("filled", self.fit)):
            c = model.coefficients
            rows.append(
                {
                    "model": label,
                    "k": model.k,
                    "estimate": float(c.estimate[0]),
                    "se": float(c.se[0]),
                    "pval": float(c.pval[0]),
                    "ci_lb": float(c.ci_lb[0]),
                    "ci_ub": float(c.ci_ub[0]),
                    "tau2": float(model.variance[0]) if model.variance.size else 0.0,
                }
            )
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, object]:
        return {
            "estimator": self.estimator,
            "side": self.side,
            "k0": self.k0,
            "se_k0": _num(self.se_k0),
            "p_k0": self.p_k0,
            "models": self.tidy().to_dict(orient="records"),
            "filled": self.data[self.data.filled].drop(columns="filled").to_dict(orient="list"),
        }

    def summary(self) -> str:
        c = self.fit.coefficients
        level = f"{self.fit.level:g}%"
        lines = [
            f"Trim-and-fill ({self.estimator}): {self.k0} stud{'y' if self.k0 == 1 else 'ies'} estimated missing "
            f"on the {self.side} side (SE = {_fmt(self.se_k0)})",
            f"  adjusted estimate {_fmt(float(c.estimate[0]))} (SE = {_fmt(float(c.se[0]))}), {level} CI "
            f"[{_fmt(float(c.ci_lb[0]))}, {_fmt(float(c.ci_ub[0]))}], k = {self.fit.k}",
            f"  original estimate {_fmt(float(self.original.coefficients.estimate[0]))}, k = {self.original.k}",
        ]
        if self.p_k0 is not None:
            lines.append(f"  test of k0 = 0 (R0): p {_p(self.p_k0)}")
        return "\n".join(lines)

    def plot(self, contours: Sequence[float] = (0.10, 0.05, 0.01)) -> object:
        """Contour-enhanced funnel plot of the filled data (filled studies as open circles)."""
        from edueffects.report.plots import contour_funnel

        return contour_funnel(self, contours=contours)


def _pooled(y: Array, v: Array, res: MetaResult) -> float:
    return float(refit(res, y=y, v=v).coefficients.estimate[0])


def trimfill(
    res: MetaResult, estimator: TrimfillEstimator = "L0", side: TrimfillSide | None = None, maxiter: int = 100
) -> TrimFillResult:
    """Trim-and-fill (Duval & Tweedie 2000; metafor ``trimfill``) for univariate models without
    moderators. ``side`` of the missing studies: from the sign of the Egger-type slope (``sei`` as
    moderator; negative: right) unless given. Iterate: pool the ``k - k0`` least extreme effects,
    rank ``|y - b|``; L0: ``k0 = (4 S_r - k(k+1)) / (2k - 1)`` (``S_r``: sum of the positive signed
    ranks), R0: ``k0 = k - (largest rank of a negative deviation) - 1``, until ``k0`` repeats; then fill
    ``2b - y`` for the ``k0`` most extreme effects and refit."""
    _require_univariate(res, "trimfill")
    if not _is_intercept_only(res):
        raise InputError("{0} needs a model without moderators (intercept only)", "trim-and-fill")
    if estimator not in TRIMFILL_ESTIMATORS:
        raise InputError("trim-and-fill estimator '{0}' is not one of {1}", estimator, ", ".join(TRIMFILL_ESTIMATORS))
    if side is not None and side not in TRIMFILL_SIDES:
        raise InputError("side '{0}' is not one of {1}", side, ", ".join(TRIMFILL_SIDES))
    y0, v0 = res.state.y, res.state.v
    k = y0.size
    if k < 2:
        raise InputError("{0} needs at least 2 effects", "trim-and-fill")
    if side is None:
        slope = float(refit(res, {"sei": np.sqrt(v0)}).coefficients.estimate[1])
        side = "right" if slope < 0 else "left"
    sign = -1.0 if side == "right" else 1.0
    order = np.argsort(sign * y0, kind="stable")
    y, v = sign * y0[order], v0[order]
    k0, previous, iterations = 0, -1, 0
    beta = float("nan")
    se_k0 = float("nan")
    while k0 != previous:
        previous = k0
        iterations += 1
        if iterations > maxiter:
            raise InputError("trim-and-fill did not converge in {0} iterations", maxiter)
        beta = sign * _pooled(sign * y[: k - k0], v[: k - k0], res)
        dev = y - beta
        ranks = np.empty(k)
        ranks[np.argsort(np.abs(dev), kind="stable")] = np.arange(1, k + 1)
        signed = np.sign(dev) * ranks
        if estimator == "R0":
            negative = -signed[signed < 0]
            k0_raw = k - (float(negative.max()) if negative.size else 0.0) - 1.0
            se_k0 = float(np.sqrt(2.0 * max(0.0, k0_raw) + 2.0))
        else:
            s_r = float(signed[signed > 0].sum())
            k0_raw = (4.0 * s_r - k * (k + 1)) / (2.0 * k - 1.0)
            var_sr = (
                k * (k + 1) * (2 * k + 1)
                + 10 * k0_raw**3
                + 27 * k0_raw**2
                + 17 * k0_raw
                - 18 * k * k0_raw**2
                - 18 * k * k0_raw
                + 6 * k**2 * k0_raw
            ) / 24.0
            se_k0 = float(4.0 * np.sqrt(var_sr) / (2.0 * k - 1.0)) if var_sr >= 0 else float("nan")
        k0 = max(0, int(np.round(k0_raw)))  # R rounds half to even, as numpy
        se_k0 = max(0.0, se_k0) if np.isfinite(se_k0) else se_k0
    p_k0 = 0.5 ** (k0 + 1) if estimator == "R0" else None
    filled_y = sign * (2.0 * beta - y[k - k0 :])
    filled_v = v[k - k0 :]
    data = pd.DataFrame(
        {
            "yi": np.concatenate([y0, filled_y]),
            "vi": np.concatenate([v0, filled_v]),
            "filled": np.concatenate([np.zeros(k, dtype=bool), np.ones(k0, dtype=bool)]),
        }
    )
    fit = refit(res, y=data.yi.to_numpy(), v=data.vi.to_numpy()) if k0 > 0 else res
    return TrimFillResult(
        estimator=estimator, side=side, k0=k0, se_k0=se_k0, p_k0=p_k0, original=res, fit=fit, data=data
    )


def contour_levels(contours: Sequence[float]) -> Array:
    """Two-sided critical z values of the significance contours (``.10, .05, .01`` -> 1.645, 1.960, 2.576)."""
    levels = np.asarray(sorted(contours, reverse=True), dtype=np.float64)
    if levels.size == 0 or np.any((levels <= 0) | (levels >= 1)):
        raise InputError("contours must be significance levels between 0 and 1, such as 0.10, 0.05, 0.01")
    return norm_ppf(1.0 - levels / 2.0)
