"""Equivalence testing and design sensitivity for single coefficients.

- TOST (Schuirmann 1987; Lakens 2017): with bounds ``-delta, delta``,
  ``p = max(P(T >= (b + delta)/se), P(T <= (b - delta)/se))``; equivalence at ``alpha`` when
  ``p < alpha``, i.e. when the ``1 - 2 alpha`` CI lies inside the bounds.
- Minimum detectable effect (Bloom 1995): ``MDE = (t_{1-alpha/2, df} + t_{power, df}) * se``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edueffects.core.distributions import t_ppf, t_sf


@dataclass(frozen=True)
class EquivalenceTest:
    """TOST of one coefficient against ``[-bound, bound]``."""

    term: str
    estimate: float
    se: float
    df: float | None
    bound: float
    p_lower: float
    p_upper: float
    pval: float
    ci90_lb: float
    ci90_ub: float
    equivalent: bool
    alpha: float

    def to_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def tost(term: str, estimate: float, se: float, df: float, bound: float, alpha: float = 0.05) -> EquivalenceTest:
    """Two one-sided tests of ``|beta| < bound``."""
    p_lower = float(t_sf((estimate + bound) / se, df))
    p_upper = float(t_sf((bound - estimate) / se, df))
    crit = float(t_ppf(1.0 - alpha, df))
    p = max(p_lower, p_upper)
    return EquivalenceTest(
        term=term,
        estimate=estimate,
        se=se,
        df=None if not np.isfinite(df) else df,
        bound=bound,
        p_lower=p_lower,
        p_upper=p_upper,
        pval=p,
        ci90_lb=estimate - crit * se,
        ci90_ub=estimate + crit * se,
        equivalent=p < alpha,
        alpha=alpha,
    )


@dataclass(frozen=True)
class DetectableEffect:
    """Smallest true effect the design detects with the given power (two-sided alpha)."""

    term: str
    se: float
    df: float | None
    alpha: float
    power: float
    mdes: float
    simulated_power_at_mdes: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def minimum_detectable_effect(
    term: str, se: float, df: float, alpha: float = 0.05, power: float = 0.8
) -> DetectableEffect:
    """Analytic MDE ``(t_{1-alpha/2} + t_power) se`` (normal quantiles when ``df`` is infinite)."""
    mdes = float((t_ppf(1.0 - alpha / 2.0, df) + t_ppf(power, df)) * se)
    return DetectableEffect(term, se, None if not np.isfinite(df) else df, alpha, power, mdes)
