"""Wald inference shared by all engines: coefficient tables with z or t reference distributions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edueffects.core.distributions import t_ppf, t_sf
from edueffects.core.jet import Array

if TYPE_CHECKING:  # pandas is imported by the methods that return its objects
    import pandas as pd


def _none_if_inf(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


@dataclass(frozen=True, eq=False)
class CoefficientTable:
    """Estimates with standard errors, test statistics, df (``inf`` for z), p-values and CIs."""

    names: tuple[str, ...]
    estimate: Array
    se: Array
    stat: Array
    df: Array
    pval: Array
    ci_lb: Array
    ci_ub: Array
    level: float

    def to_records(self) -> list[dict[str, object]]:
        """One JSON-able dict per coefficient (``df`` is ``None`` for z tests)."""
        return [
            {
                "name": name,
                "estimate": float(self.estimate[i]),
                "se": float(self.se[i]),
                "stat": float(self.stat[i]),
                "df": _none_if_inf(float(self.df[i])),
                "pval": float(self.pval[i]),
                "ci_lb": float(self.ci_lb[i]),
                "ci_ub": float(self.ci_ub[i]),
            }
            for i, name in enumerate(self.names)
        ]

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            {
                "term": list(self.names),
                "estimate": self.estimate,
                "se": self.se,
                "stat": self.stat,
                "df": self.df,
                "pval": self.pval,
                "ci_lb": self.ci_lb,
                "ci_ub": self.ci_ub,
            }
        )


def critical_value(df: float | Array, level: float) -> Array:
    """Two-sided critical value of the normal (``df = inf``) or t distribution."""
    upper = 1.0 - (1.0 - level / 100.0) / 2.0
    return t_ppf(upper, df)


def coefficient_table(
    names: tuple[str, ...], estimate: Array, se: Array, df: float | Array, level: float
) -> CoefficientTable:
    """Wald tests ``estimate / se`` against N(0,1) (``df = inf``) or t(df), with two-sided CIs."""
    dfa = np.broadcast_to(np.asarray(df, dtype=np.float64), estimate.shape).copy()
    stat = estimate / se
    pval = 2.0 * t_sf(np.abs(stat), dfa)
    crit = critical_value(dfa, level)
    return CoefficientTable(
        names=names,
        estimate=estimate,
        se=se,
        stat=stat,
        df=dfa,
        pval=pval,
        ci_lb=estimate - crit * se,
        ci_ub=estimate + crit * se,
        level=level,
    )


class CoefficientAccessors:
    """``coef()``, ``se()`` and ``confint()`` for any result holding a ``coefficients`` table."""

    coefficients: CoefficientTable

    def coef(self) -> pd.Series:
        import pandas as pd

        return pd.Series(self.coefficients.estimate, index=list(self.coefficients.names), name="estimate")

    def se(self) -> pd.Series:
        import pandas as pd

        return pd.Series(self.coefficients.se, index=list(self.coefficients.names), name="se")

    def confint(self) -> pd.DataFrame:
        import pandas as pd

        c = self.coefficients
        return pd.DataFrame({"ci_lb": c.ci_lb, "ci_ub": c.ci_ub}, index=list(c.names))


def information_criteria(loglik: float, n_params: int, n_bic: float) -> tuple[float, float]:
    """AIC ``-2 l + 2 q`` and BIC ``-2 l + q log(n)`` (``n``: k - p under REML in metafor, rows in lme4)."""
    return -2.0 * loglik + 2.0 * n_params, -2.0 * loglik + n_params * float(np.log(n_bic))
