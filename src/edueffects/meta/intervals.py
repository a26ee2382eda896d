"""Confidence intervals and profiles of the variance components of a :func:`edueffects.meta` fit,
computed when first asked for (:attr:`edueffects.meta.result.MetaResult.variance_ci`).

The result keeps what they need (the fitted design and estimates) in a :class:`VarianceProfiles`:
the Q-profile CI of tau^2 with tau, I^2 and H^2 from it (univariate models) and profile-likelihood
CIs of every estimated sigma^2 (multilevel models).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from edueffects.core.jet import Array
from edueffects.core.nested import Method, NestedDesign
from edueffects.core.profile import VarianceInterval, profile_interval, q_profile_interval


@dataclass(frozen=True, eq=False)
class VarianceProfiles:
    """The variance components of one fit and what their intervals need.

    ``basis``, ``y``, ``v``: the data in model order on the orthonormal basis the fit used (the
    Q-profile of a univariate model); ``design``: the fitted nested design (multilevel models);
    ``enabled``: False when the fit was asked not to compute intervals (``variance_ci=False``).
    """

    model: Literal["fixed", "univariate", "multilevel"]
    method: str
    names: tuple[str, ...]
    theta: Array
    estimated: tuple[bool, ...]
    level: float
    enabled: bool
    design: NestedDesign | None = None
    basis: Array | None = None
    y: Array | None = None
    v: Array | None = None
    qe_df: int = 0
    typical_v: float = float("nan")

    @property
    def likelihood(self) -> Method:
        """The likelihood the multilevel model was fitted by (ML or REML)."""
        return "ML" if self.method == "ML" else "REML"

    def intervals(self) -> tuple[VarianceInterval, ...]:
        """The intervals (empty when disabled or when nothing is estimated)."""
        if not self.enabled:
            return ()
        theta = self.theta
        if self.model == "univariate" and self.estimated[0]:
            assert self.basis is not None and self.y is not None and self.v is not None
            t = float(theta[0])
            lb, ub = q_profile_interval(self.basis, self.y, self.v, self.qe_df, t, self.level)
            kind = "Q-profile"
            typical = self.typical_v

            def i2(s: float) -> float:
                return 100.0 * s / (s + typical)

            def h2(s: float) -> float:
                return (s + typical) / typical

            return (
                VarianceInterval("tau2", t, lb, ub, kind),
                VarianceInterval("tau", float(np.sqrt(t)), float(np.sqrt(lb)), float(np.sqrt(ub)), kind),
                VarianceInterval("I2", i2(t), i2(lb), i2(ub), kind),
                VarianceInterval("H2", h2(t), h2(lb), h2(ub), kind),
            )
        if self.model == "multilevel" and self.design is not None:
            fixed = [not e for e in self.estimated]
            out = []
            for i, name in enumerate(self.names):
                if self.estimated[i]:
                    lb, ub = profile_interval(self.design, self.likelihood, theta, i, self.level, fixed=fixed)
                    out.append(VarianceInterval(name, float(theta[i]), lb, ub, f"profile likelihood ({self.method})"))
            return tuple(out)
        return ()
