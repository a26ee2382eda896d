"""Step-function selection models (Hedges 1992; Vevea & Hedges 1995), metafor's
``selmodel(res, type = "stepfun", steps = ...)``, by maximum likelihood.

The one-sided p-values ``p_i = 1 - Phi(y_i / sqrt(v_i))`` (``alternative="greater"``) fall into the
intervals ``(s_{j-1}, s_j]`` of ``steps`` (``1`` appended); a study in interval ``j`` is published with
relative probability ``delta_j`` (``delta_1 = 1``). With ``y_i ~ N(x_i'b, v_i + tau^2)`` the
log-likelihood is

    l = sum_i [log delta_{j(i)} + log phi(y_i; x_i'b, v_i + tau^2) - log A_i],
    A_i = sum_j delta_j P(p_i in (s_{j-1}, s_j]),

maximised over ``b``, ``tau^2 >= 0`` and ``0 <= delta_j <= 100`` (metafor's bounds) with analytic
gradients (L-BFGS-B from several starts, then Newton steps). SEs come from the inverse Hessian of
``-l`` in the untransformed parameters (as metafor's). The LRT compares ``l`` with the ML
log-likelihood of the model without selection (``df`` = number of estimated ``delta``); a second LRT
tests ``tau^2 = 0`` under selection. With ``steps=(0.025,)`` this is the three-parameter selection
model (3PSM) of Iyengar & Greenhouse (1988) and McShane, Böckenholt & Hansen (2016).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

from edueffects.core.distributions import chi2_sf, norm_ppf
from edueffects.core.errors import InputError
from edueffects.core.inference import CoefficientAccessors, CoefficientTable, coefficient_table, critical_value
from edueffects.core.jet import Array
from edueffects.core.results import ResultDisplay
from edueffects.meta.bias import refit
from edueffects.meta.result import MetaResult
from edueffects.options import SELECTION_ALTERNATIVES, SelectionAlternative

DELTA_MAX = 100.0
_DELTA_MIN = 1e-10
_LOG_2PI = float(np.log(2.0 * np.pi))


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def _p(p: float | None) -> str:
    if p is None or not np.isfinite(p):
        return "-"
    return "< .0001" if p < 1e-4 else f"= {p:.4f}"


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


@dataclass(frozen=True, eq=False)
class _Problem:
    """The data of one fit: effects, variances, moderators, the cut points of each study's p-value
    intervals on the effect scale and which interval each observed p-value falls in."""

    y: Array
    v: Array
    x: Array
    alternative: str
    cuts: Array  # (k, N + 1): the effect-size bounds of p = s_0 .. s_N
    group: Array  # (k,) interval of each study, 0-based
    counts: Array  # (N,)

    @property
    def n_steps(self) -> int:
        return int(self.counts.size)


def _problem(y: Array, v: Array, x: Array, steps: Array, alternative: str) -> _Problem:
    z = y / np.sqrt(v)
    if alternative == "greater":
        pvals = special.ndtr(-z)
    elif alternative == "less":
        pvals = special.ndtr(z)
    else:
        pvals = 2.0 * special.ndtr(-np.abs(z))
    group = np.searchsorted(steps, pvals, side="left")
    counts = np.bincount(group, minlength=steps.size).astype(np.float64)
    bounds = np.concatenate([[0.0], steps])
    with np.errstate(divide="ignore"):
        if alternative == "greater":
            q = norm_ppf(1.0 - bounds)  # +inf at p = 0, -inf at p = 1
        elif alternative == "less":
            q = norm_ppf(bounds)
        else:
            q = norm_ppf(1.0 - bounds / 2.0)  # |y| bound: +inf at 0, 0 at 1
    cuts = np.sqrt(v)[:, None] * q[None, :]
    cuts[:, q == np.inf] = np.inf
    cuts[:, q == -np.inf] = -np.inf
    return _Problem(y, v, x, alternative, cuts, group, counts)


def _cdf_parts(prob: _Problem, mu: Array, s: Array) -> tuple[Array, Array, Array]:
    """``G_ij = P(p_i <= s_j)`` and its derivatives in ``mu_i`` and ``tau^2`` (``j = 0..N``)."""
    c = prob.cuts
    mu_, s_ = mu[:, None], s[:, None]

    def upper(bound: Array) -> tuple[Array, Array, Array]:  # P(y >= bound)
        with np.errstate(invalid="ignore"):
            u = (bound - mu_) / s_
        g = special.ndtr(-u)
        dens = np.where(np.isfinite(u), np.exp(-0.5 * np.where(np.isfinite(u), u, 0.0) ** 2), 0.0) / np.sqrt(2 * np.pi)
        uu = np.where(np.isfinite(u), u, 0.0)
        return g, dens / s_, dens * uu / (2.0 * s_**2)

    def lower(bound: Array) -> tuple[Array, Array, Array]:  # P(y <= bound)
        g, dmu, dt = upper(bound)
        return 1.0 - g, -dmu, -dt

    if prob.alternative == "greater":
        return upper(c)
    if prob.alternative == "less":
        return lower(c)
    g1, m1, t1 = upper(c)
    g2, m2, t2 = lower(-c)
    return g1 + g2, m1 + m2, t1 + t2


def _loglik(
    prob: _Problem, beta: Array, tau2: float, delta: Array, gradient: bool = True
) -> tuple[float, Array, float, Array]:
    """Log-likelihood and its gradient in ``beta``, ``tau^2`` and every ``delta_j``."""
    mu = prob.x @ beta
    s2 = prob.v + tau2
    s = np.sqrt(s2)
    g, g_mu, g_t = _cdf_parts(prob, mu, s)
    p_int = np.diff(g, axis=1)  # P(p in interval j), (k, N)
    a = p_int @ delta
    resid = prob.y - mu
    with np.errstate(divide="ignore"):
        ll = float(
            np.sum(np.log(delta[prob.group])) - 0.5 * np.sum(_LOG_2PI + np.log(s2) + resid**2 / s2) - np.sum(np.log(a))
        )
    if not gradient:
        return ll, np.zeros(0), 0.0, np.zeros(0)
    a_mu = np.diff(g_mu, axis=1) @ delta
    a_t = np.diff(g_t, axis=1) @ delta
    d_mu = resid / s2 - a_mu / a
    d_beta = prob.x.T @ d_mu
    d_tau2 = float(np.sum(-0.5 / s2 + 0.5 * resid**2 / s2**2 - a_t / a))
    d_delta = prob.counts / delta - (p_int / a[:, None]).sum(axis=0)
    return ll, d_beta, d_tau2, d_delta


@dataclass(frozen=True)
class _Layout:
    """Which parameters are free: ``beta`` always, ``tau^2`` unless fixed, ``delta_2..N``."""

    p: int
    n_steps: int
    tau2_fixed: float | None

    def unpack(self, theta: Array) -> tuple[Array, float, Array]:
        beta = theta[: self.p]
        i = self.p
        if self.tau2_fixed is None:
            tau2 = float(theta[i])
            i += 1
        else:
            tau2 = self.tau2_fixed
        delta = np.concatenate([[1.0], theta[i:]])
        return beta, tau2, delta

    def pack_gradient(self, d_beta: Array, d_tau2: float, d_delta: Array) -> Array:
        parts = [d_beta]
        if self.tau2_fixed is None:
            parts.append(np.array([d_tau2]))
        parts.append(d_delta[1:])
        return np.concatenate(parts)

    def bounds(self) -> list[tuple[float | None, float | None]]:
        out: list[tuple[float | None, float | None]] = [(None, None)] * self.p
        if self.tau2_fixed is None:
            out.append((0.0, None))
        out += [(_DELTA_MIN, DELTA_MAX)] * (self.n_steps - 1)
        return out


def _maximize(prob: _Problem, layout: _Layout, starts: list[Array]) -> tuple[Array, float, int]:
    """The best of L-BFGS-B runs from ``starts``, polished by Newton steps on the interior parameters."""
    from scipy.optimize import minimize

    def objective(theta: Array) -> tuple[float, Array]:
        beta, tau2, delta = layout.unpack(theta)
        ll, gb, gt, gd = _loglik(prob, beta, max(tau2, 0.0), delta)
        if not np.isfinite(ll):
            return 1e300, np.zeros_like(theta)
        return -ll, -layout.pack_gradient(gb, gt, gd)

    bounds = layout.bounds()
    best: Array | None = None
    best_value = np.inf
    for start in starts:
        out = minimize(
            objective,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 10000, "ftol": 1e-15, "gtol": 1e-11, "maxcor": 30},
        )
        if out.fun < best_value - 1e-12 or best is None:
            best, best_value = np.asarray(out.x, dtype=np.float64), float(out.fun)
    assert best is not None
    theta = best
    lower = np.array([-np.inf if b[0] is None else b[0] for b in bounds])
    upper = np.array([np.inf if b[1] is None else b[1] for b in bounds])
    newton = 0
    for _ in range(50):  # Newton steps on the interior parameters, halving until the likelihood improves
        interior = (theta > lower + 1e-9) & (theta < upper - 1e-7)
        value, grad = objective(theta)
        if not interior.any() or np.max(np.abs(grad[interior])) < 1e-12:
            break
        hess = _numeric_hessian(lambda t: objective(t)[1], theta)[np.ix_(interior, interior)]
        try:
            step = np.linalg.solve(hess, grad[interior])
        except np.linalg.LinAlgError:
            break
        improved = False
        for _halving in range(30):
            trial = theta.copy()
            trial[interior] -= step
            trial = np.clip(trial, lower, upper)
            if objective(trial)[0] <= value + 1e-13 * abs(value):
                theta, improved = trial, True
                break
            step = step / 2.0
        newton += 1
        if not improved:
            break
    return theta, -objective(theta)[0], newton


def _numeric_hessian(gradient: object, theta: Array) -> Array:
    """Central differences of an analytic gradient with one Richardson extrapolation
    (``(4 D(h/2) - D(h)) / 3``, error ``O(h^4)``; ``h = 1e-3 max(|theta|, 0.01)``), symmetrised."""
    assert callable(gradient)
    n = theta.size
    hess = np.empty((n, n))

    def central(i: int, h: float) -> Array:
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        return np.asarray((np.asarray(gradient(up)) - np.asarray(gradient(down))) / (2.0 * h), dtype=np.float64)

    for i in range(n):  # one column per parameter: n is the number of parameters, not of effects
        h = 1e-3 * max(abs(float(theta[i])), 0.01)
        hess[:, i] = (4.0 * central(i, h / 2.0) - central(i, h)) / 3.0
    return 0.5 * (hess + hess.T)


@dataclass(frozen=True, eq=False, repr=False)
class SelectionModelResult(ResultDisplay, CoefficientAccessors):
    """A fitted step-function selection model: adjusted coefficients (z tests), tau^2, the selection
    weights ``delta`` (``delta[0] = 1`` fixed) with Wald tests of ``delta_j = 1``, and the LRTs."""

    coefficients: CoefficientTable
    tau2: float
    tau2_se: float
    tau2_ci: tuple[float, float]
    tau2_fixed: bool
    steps: tuple[float, ...]
    alternative: str
    delta: Array
    delta_se: Array
    delta_ci_lb: Array
    delta_ci_ub: Array
    counts: tuple[int, ...]
    loglik: float
    loglik_no_selection: float
    lrt: float
    lrt_df: int
    lrt_pval: float
    lrt_tau2: float | None
    lrt_tau2_pval: float | None
    n_params: int
    k: int
    level: float
    newton_steps: int
    cov: Array = field(repr=False)

    @property
    def delta_stat(self) -> Array:
        return (self.delta - 1.0) / self.delta_se

    @property
    def delta_pval(self) -> Array:
        return np.asarray(2.0 * special.ndtr(-np.abs(self.delta_stat)), dtype=np.float64)

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + self.n_params * float(np.log(self.k))

    @property
    def aicc(self) -> float:
        n = max(self.k, self.n_params + 2)
        return -2.0 * self.loglik + 2.0 * self.n_params * n / (n - self.n_params - 1.0)

    def intervals(self) -> pd.DataFrame:
        """The p-value intervals with their number of studies and selection weights."""
        bounds = (0.0, *self.steps)
        return pd.DataFrame(
            {
                "interval": [f"{lo:g} < p <= {hi:g}" for lo, hi in itertools.pairwise(bounds)],
                "k": list(self.counts),
                "delta": self.delta,
                "se": self.delta_se,
                "stat": self.delta_stat,
                "pval": self.delta_pval,
                "ci_lb": self.delta_ci_lb,
                "ci_ub": self.delta_ci_ub,
            }
        )

    def tidy(self) -> pd.DataFrame:
        return self.coefficients.to_frame()

    def to_dict(self) -> dict[str, object]:
        return {
            "type": "stepfun",
            "steps": list(self.steps),
            "alternative": self.alternative,
            "k": self.k,
            "coefficients": self.coefficients.to_records(),
            "tau2": self.tau2,
            "tau2_se": _num(self.tau2_se),
            "tau2_ci": [_num(self.tau2_ci[0]), _num(self.tau2_ci[1])],
            "tau2_fixed": self.tau2_fixed,
            "intervals": self.intervals().to_dict(orient="records"),
            "logLik": self.loglik,
            "logLik_no_selection": self.loglik_no_selection,
            "LRT": self.lrt,
            "LRT_df": self.lrt_df,
            "LRT_pval": self.lrt_pval,
            "LRT_tau2": self.lrt_tau2,
            "LRT_tau2_pval": self.lrt_tau2_pval,
            "AIC": self.aic,
            "BIC": self.bic,
            "AICc": self.aicc,
        }

    def summary(self) -> str:
        c = self.coefficients
        level = f"{self.level:g}%"
        lines = [
            f"Step-function selection model (steps {', '.join(f'{s:g}' for s in self.steps)}, "
            f"{self.alternative}), k = {self.k}",
            f"  LRT for selection: X2({self.lrt_df}) = {_fmt(self.lrt)}, p {_p(self.lrt_pval)}",
            f"  tau2 = {_fmt(self.tau2)}"
            + (" (fixed)" if self.tau2_fixed else f" (SE = {_fmt(self.tau2_se)})")
            + (f"; LRT tau2 = 0: X2(1) = {_fmt(self.lrt_tau2)}, p {_p(self.lrt_tau2_pval)}" if self.lrt_tau2 else ""),
            "",
            f"Adjusted coefficients (z tests, {level} CI):",
        ]
        for i, name in enumerate(c.names):
            lines.append(
                f"  {name:<18} {_fmt(float(c.estimate[i])):>10} SE {_fmt(float(c.se[i]))}  z = "
                f"{_fmt(float(c.stat[i]), 3)}, p {_p(float(c.pval[i]))}, [{_fmt(float(c.ci_lb[i]))}, "
                f"{_fmt(float(c.ci_ub[i]))}]"
            )
        lines += ["", "Selection weights (relative probability of publication):"]
        lines.append(self.intervals().to_string(index=False, float_format=lambda x: f"{x:.4f}"))
        lines.append(f"logLik = {_fmt(self.loglik)}, AIC = {_fmt(self.aic)}")
        return "\n".join(lines)


def _check_steps(steps: float | Sequence[float]) -> Array:
    values = np.atleast_1d(np.asarray(steps, dtype=np.float64))
    if values.size == 0 or not np.isfinite(values).all() or np.any((values <= 0) | (values > 1)):
        raise InputError("steps must be p-value cut points between 0 and 1, such as 0.025")
    values = np.unique(values)
    return values if values[-1] == 1.0 else np.concatenate([values, [1.0]])


def selmodel(
    res: MetaResult, steps: float | Sequence[float] = (0.025,), alternative: SelectionAlternative = "greater"
) -> SelectionModelResult:
    """Step-function selection model (metafor ``selmodel(res, type = "stepfun", steps, alternative)``)
    for univariate models, by ML (a REML or moment fit is refitted by ML, as metafor does).
    ``steps=(0.025,)`` with ``alternative="greater"`` is the three-parameter selection model (3PSM)."""
    if not isinstance(res, MetaResult):
        raise InputError("{0}: give the result of meta() (got {1})", "selmodel", type(res).__name__)
    if res.model == "multilevel":
        raise InputError("{0} is for univariate models: fit meta() without cluster", "selmodel")
    if alternative not in SELECTION_ALTERNATIVES:
        raise InputError("alternative '{0}' is not one of {1}", alternative, ", ".join(SELECTION_ALTERNATIVES))
    cut = _check_steps(steps)
    state = res.state
    fixed_tau2: float | None
    if res.model == "fixed":
        fixed_tau2, base = 0.0, res
    elif res.variance_fixed[0]:
        fixed_tau2 = float(res.variance[0])
        base = res if res.method == "ML" else refit(res, method="ML")
    else:
        fixed_tau2 = None
        base = res if res.method == "ML" else refit(res, method="ML")
    prob = _problem(state.y, state.v, state.x, cut, alternative)
    p = state.x.shape[1]
    empty = np.flatnonzero(prob.counts[1:] == 0) + 1  # delta_1 = 1 is fixed: its interval may be empty
    if empty.size:
        lower, upper = format(float(cut[empty[0] - 1]), "g"), format(float(cut[empty[0]]), "g")
        raise InputError("no observed p-value lies in the interval {0} < p <= {1}: choose other steps", lower, upper)
    n_free = p + (fixed_tau2 is None) + (cut.size - 1)
    if res.k < n_free:
        raise InputError("{0} effect(s) are too few for a selection model with {1} parameters", res.k, n_free)
    layout = _Layout(p, cut.size, fixed_tau2)
    beta0 = base.coefficients.estimate
    tau2_ml = float(base.variance[0]) if base.variance.size else 0.0
    starts = []
    for d0 in (1.0, 0.25, 4.0):
        for t0 in [tau2_ml, 2.0 * tau2_ml + 0.01] if fixed_tau2 is None else [0.0]:
            parts = [beta0] + ([np.array([t0])] if fixed_tau2 is None else []) + [np.full(cut.size - 1, d0)]
            starts.append(np.concatenate(parts))
    theta, ll, newton = _maximize(prob, layout, starts)
    beta, tau2, delta = layout.unpack(theta)

    def gradient(t: Array) -> Array:
        b, s, d = layout.unpack(t)
        _, gb, gt, gd = _loglik(prob, b, max(s, 0.0), d)
        return -layout.pack_gradient(gb, gt, gd)

    hess = _numeric_hessian(gradient, theta)
    try:
        cov = np.linalg.inv(hess)
        if np.any(np.diag(cov) < 0):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        cov = np.full_like(hess, np.nan)
    se = np.sqrt(np.diag(cov))
    crit = float(critical_value(float("inf"), res.level))
    table = coefficient_table(res.coefficients.names, beta, se[:p], float("inf"), res.level)
    i = p
    tau2_se = float("nan")
    if fixed_tau2 is None:
        tau2_se = float(se[i])
        i += 1
    delta_se = np.concatenate([[np.nan], se[i:]])
    delta_lb = np.maximum(delta - crit * delta_se, 0.0)
    delta_ub = delta + crit * delta_se
    ll0 = base.fit_record.loglik
    lrt = max(0.0, 2.0 * (ll - ll0))
    lrt_df = cut.size - 1
    lrt_tau2 = lrt_tau2_p = None
    if fixed_tau2 is None:
        null = _Layout(p, cut.size, 0.0)
        starts0 = [np.concatenate([beta, theta[p + 1 :]]), np.concatenate([beta0, np.ones(cut.size - 1)])]
        _, ll_tau0, _ = _maximize(prob, null, starts0)
        lrt_tau2 = max(0.0, 2.0 * (ll - ll_tau0))
        lrt_tau2_p = chi2_sf(lrt_tau2, 1.0)
    return SelectionModelResult(
        coefficients=table,
        tau2=tau2,
        tau2_se=tau2_se,
        tau2_ci=(max(0.0, tau2 - crit * tau2_se), tau2 + crit * tau2_se),
        tau2_fixed=fixed_tau2 is not None,
        steps=tuple(float(s) for s in cut),
        alternative=alternative,
        delta=delta,
        delta_se=delta_se,
        delta_ci_lb=delta_lb,
        delta_ci_ub=delta_ub,
        counts=tuple(int(c) for c in prob.counts),
        loglik=ll,
        loglik_no_selection=ll0,
        lrt=lrt,
        lrt_df=lrt_df,
        lrt_pval=chi2_sf(lrt, float(lrt_df)),
        lrt_tau2=lrt_tau2,
        lrt_tau2_pval=lrt_tau2_p,
        n_params=n_free,
        k=res.k,
        level=res.level,
        newton_steps=newton,
        cov=np.asarray(cov, dtype=np.float64),
    )
