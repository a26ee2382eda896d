"""Confidence intervals for variance components by inverting a test with a root finder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edueffects.core.distributions import chi2_ppf
from edueffects.core.jet import Array
from edueffects.core.nested import Method, NestedDesign, maximize


@dataclass(frozen=True)
class VarianceInterval:
    """A variance component with its confidence interval and how it was obtained."""

    component: str
    estimate: float
    ci_lb: float
    ci_ub: float
    kind: str

    def to_dict(self) -> dict[str, object]:
        return {
            "component": self.component,
            "estimate": self.estimate,
            "ci_lb": self.ci_lb,
            "ci_ub": self.ci_ub,
            "kind": self.kind,
        }


def _root(func: Callable[[float], float], lo: float, hi: float) -> float:
    return float(_brentq()(func, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500))


def _upper_bracket(func: Callable[[float], float], start: float) -> float:
    hi = max(start, 1e-4)
    for _ in range(200):
        if func(hi) > 0.0:
            return hi
        hi *= 2.0
    raise RuntimeError("could not bracket the upper confidence limit")


def profile_interval(
    design: NestedDesign,
    method: Method,
    theta_hat: Array,
    loglik_hat: float,
    index: int,
    level: float = 95.0,
    fixed: Sequence[bool] | None = None,
) -> tuple[float, float]:
    """Profile-likelihood CI of ``theta[index]``: where ``2 (l_hat - l_profile) = chi2_1(level)``
    (components marked in ``fixed`` stay at their values)."""
    crit = 0.5 * chi2_ppf(level / 100.0, 1)
    fixed = _held(theta_hat.size, index, fixed)

    def excess(value: float) -> float:
        start = theta_hat.copy()
        start[index] = value
        ev, _ = maximize(design, method, start, fixed=fixed)
        return loglik_hat - ev.loglik - crit

    estimate = float(theta_hat[index])
    lower = 0.0 if estimate <= 0.0 or excess(0.0) < 0.0 else _root(excess, 0.0, estimate)
    upper = _root(excess, estimate, _upper_bracket(excess, 2.0 * estimate))
    return lower, upper


def q_profile_interval(
    generalized_q: Callable[[float], float], df: int, start: float, level: float = 95.0
) -> tuple[float, float]:
    """Q-profile CI of tau^2 (Viechtbauer 2007): ``Q(tau2)`` equals the chi2_df quantiles."""
    alpha = 1.0 - level / 100.0
    q_for_lower = chi2_ppf(1.0 - alpha / 2.0, df)
    q_for_upper = chi2_ppf(alpha / 2.0, df)
    q0 = generalized_q(0.0)

    def bound(target: float) -> float:
        if q0 < target:
            return 0.0

        def gap(t: float) -> float:
            return target - generalized_q(t)

        return _root(gap, 0.0, _upper_bracket(gap, 2.0 * max(start, 1e-4)))

    return bound(q_for_lower), bound(q_for_upper)


def _held(n: int, index: int, fixed: Sequence[bool] | None) -> list[bool]:
    return [i == index or (fixed is not None and bool(fixed[i])) for i in range(n)]


def profile_curve(
    design: NestedDesign, method: Method, theta_hat: Array, index: int, grid: Array, fixed: Sequence[bool] | None = None
) -> Array:
    """Profile (restricted) log-likelihood of ``theta[index]`` at each grid value (others re-maximised)."""
    fixed = _held(theta_hat.size, index, fixed)
    out = np.empty(grid.size)
    for j, value in enumerate(grid):  # a handful of points for a plot, each a full refit
        start = theta_hat.copy()
        start[index] = value
        out[j] = maximize(design, method, start, fixed=fixed)[0].loglik
    return out


def _brentq() -> Callable[..., float]:
    """scipy's Brent root finder, imported on first use (keeps start-up fast)."""
    from scipy.optimize import brentq

    return brentq  # type: ignore[no-any-return]
