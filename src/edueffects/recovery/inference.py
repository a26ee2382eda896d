"""Model-based Satterthwaite inference of the recovery models, as lmerTest computes it.

With ``V(theta)`` the covariance of the fixed effects, its exact gradient ``dV/dtheta`` (core jets)
and ``A`` the inverse observed information of the (restricted) likelihood over the variance
components off the boundary, a contrast ``l`` has ``nu = 2 (l'Vl)^2 / (g'Ag)``, ``g_t = l' dV/dtheta_t l``
(lmerTest ``contest1D``). A joint test of ``L b = 0`` follows lmerTest ``contestMD``: with
``L V L' = P D P'``, ``F = sum_m (P_m'L b)^2 / d_m / q`` and one ``nu_m`` per eigen-direction
``P_m'L``; the denominator df is ``2E / (E - q)`` with ``E = sum nu_m / (nu_m - 2)`` (2 when some
``nu_m <= 2``; the mean of ``nu`` when all are equal within 1e-8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edueffects.core.distributions import f_sf
from edueffects.core.errors import InputError
from edueffects.core.jet import Array
from edueffects.core.nested import Evaluation
from edueffects.core.results import ContrastTable, WaldTest, contrast_labels

"""A contrast matrix: one row per hypothesis, one column per coefficient (a single row may be flat)."""
EIGEN_TOLERANCE = float(np.sqrt(np.finfo(np.float64).eps))  # lmerTest contestMD's eps


@dataclass(frozen=True, eq=False)
class ModelCovariance:
    """``cov(b)``, its gradient over the free variance components ``(t, p, p)`` and their covariance ``A``."""

    cov_beta: Array
    cov_beta_grad: Array
    cov_theta: Array

    @classmethod
    def from_evaluation(cls, ev: Evaluation, at_boundary: Sequence[bool]) -> ModelCovariance:
        """``A = I^-1`` over the components not at the boundary (``I``: observed information)."""
        free = np.flatnonzero(~np.asarray(at_boundary, dtype=bool))
        info = -ev.hessian[np.ix_(free, free)]
        return cls(ev.cov_beta, ev.cov_beta_grad[free], np.asarray(np.linalg.inv(info), dtype=np.float64))

    def contrast_df(self, matrix: Array) -> Array:
        """Satterthwaite df ``2 (l'Vl)^2 / (g'Ag)`` of each row ``l`` of ``matrix``."""
        variance = np.einsum("qp,pu,qu->q", matrix, self.cov_beta, matrix)
        grads = np.einsum("qp,tpu,qu->qt", matrix, self.cov_beta_grad, matrix)
        spread = np.einsum("qt,ts,qs->q", grads, self.cov_theta, grads)
        return np.asarray(2.0 * variance**2 / spread, dtype=np.float64)


def satterthwaite_df(ev: Evaluation, at_boundary: Sequence[bool]) -> Array:
    """Model-based Satterthwaite df per coefficient (lmerTest): ``2 V_ii^2 / (g'Ag)``, ``g = dV_ii/dtheta``."""
    mc = ModelCovariance.from_evaluation(ev, at_boundary)
    return mc.contrast_df(np.eye(mc.cov_beta.shape[0]))


def fstat_ddf(nu: Array) -> float:
    """Denominator df of an F built from ``q`` independent t statistics (lmerTest ``get_Fstat_ddf``)."""
    if nu.size == 1:
        return float(nu[0])
    if bool(np.all(np.abs(np.diff(nu)) < 1e-8)):
        return float(nu.mean())
    if bool(np.any(nu <= 2.0)):
        return 2.0
    e = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * e / (e - nu.size)


def satterthwaite_wald_test(beta: Array, mc: ModelCovariance, matrix: Array, names: tuple[str, ...]) -> WaldTest:
    """Joint F test of ``matrix @ b = 0`` with multi-df Satterthwaite df (lmerTest ``contestMD``)."""
    vlv = matrix @ mc.cov_beta @ matrix.T
    values, vectors = np.linalg.eigh(0.5 * (vlv + vlv.T))
    order = np.argsort(values)[::-1]  # decreasing, as R's eigen
    values, vectors = values[order], vectors[:, order]
    q = int(np.sum(values > max(EIGEN_TOLERANCE * values[0], 0.0)))
    if q < matrix.shape[0]:
        raise InputError("the {0} hypotheses are not linearly independent (rank {1})", matrix.shape[0], q)
    directions = vectors.T @ matrix
    fvalue = float(np.sum((directions @ beta) ** 2 / values) / q)
    ddf = fstat_ddf(mc.contrast_df(directions))
    estimate = matrix @ beta
    se = np.sqrt(np.diag(vlv))
    df = mc.contrast_df(matrix)
    contrasts = ContrastTable.of(contrast_labels(matrix, names), estimate, se, df)
    return WaldTest(
        contrasts.hypothesis,
        fvalue,
        float(q),
        ddf,
        f_sf(fvalue, q, ddf),
        "F",
        "model-based, Satterthwaite df (lmerTest)",
        contrasts,
    )
