"""Predicted values, fitted values and BLUPs of a meta-analytic model (metafor's ``predict``,
``fitted``, ``blup`` and ``ranef``).

- ``predict``: ``x'b`` with ``se = sqrt(x' V_b x)``, CI ``± crit se`` and prediction interval
  ``± crit sqrt(se^2 + tau^2)``, with the sum of the variance components for multilevel models
  (``predict.rma``); ``crit`` from the model's z or t distribution.
- ``blup`` (univariate): ``l = tau^2 / (tau^2 + v_i)``, ``pred = l y_i + (1 - l) x_i'b``,
  ``var = l v_i + (1 - l)^2 x_i' V_b x_i`` (``blup.rma.uni``).
- ``ranef`` (multilevel): for level ``l`` with indicator ``Z``, ``u = sigma2_l Z'W e`` and
  ``var(u - û) = sigma2_l - sigma2_l^2 diag(Z'PZ)``, ``P = W - W X V_b X'W`` (``ranef.rma.mv``);
  ``W`` is the inverse marginal covariance (with correlated sampling errors, the CHE one), computed
  per cluster block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edueffects.core.blocks import iter_blocks
from edueffects.core.errors import InputError
from edueffects.core.inference import critical_value
from edueffects.core.jet import Array
from edueffects.core.results import ResultDisplay, format_level
from edueffects.options import TRANSFORMS

if TYPE_CHECKING:  # pandas is imported where a table is built
    import pandas as pd


def _identity(values: Array) -> Array:
    return values


TRANSFORM_FUNCTIONS: dict[str, Callable[[Array], Array]] = {"none": _identity, "exp": np.exp, "tanh": np.tanh}


def check_transform(transf: str | None) -> str:
    """The transform's name (``None`` = none); anything unknown is an error, never a silent default."""
    name = "none" if transf is None else transf
    if name == "z_to_r":
        name = "tanh"
    if name not in TRANSFORMS:
        raise InputError("transform '{0}' is not one of {1}", name, ", ".join(TRANSFORMS))
    return name


@dataclass(frozen=True, eq=False, repr=False)
class Predictions(ResultDisplay):
    """Predicted values with SE, CI and prediction interval (PI) at given moderator values."""

    table: pd.DataFrame
    level: float
    transform: str
    model: str

    def tidy(self) -> pd.DataFrame:
        return self.table.copy()

    def to_dict(self) -> dict[str, object]:
        return {
            "level": self.level,
            "transform": self.transform,
            "rows": self.table.replace({np.nan: None}).to_dict(orient="records"),
        }

    def summary(self) -> str:
        note = "" if self.transform == "none" else f", back-transformed by {self.transform}"
        return f"Predicted values ({format_level(self.level)} CI and PI{note})\n" + self.table.to_string(index=False)


def prediction_table(
    x_new: Array,
    beta: Array,
    cov_beta: Array,
    total_variance: float | None,
    df: float,
    level: float,
    transform: str,
    labels: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``pred, se, ci_lb, ci_ub, pi_lb, pi_ub`` at the rows of ``x_new`` (PI only for random-effects models)."""
    import pandas as pd

    pred = x_new @ beta
    se = np.sqrt(np.einsum("ij,jk,ik->i", x_new, cov_beta, x_new))
    crit = float(critical_value(df, level))
    f = TRANSFORM_FUNCTIONS[transform]
    out = pd.DataFrame() if labels is None else labels.reset_index(drop=True).copy()
    out["pred"] = f(pred)
    out["se"] = se if transform == "none" else np.nan
    out["ci_lb"] = f(pred - crit * se)
    out["ci_ub"] = f(pred + crit * se)
    if total_variance is None:
        out["pi_lb"] = np.nan
        out["pi_ub"] = np.nan
    else:
        half = crit * np.sqrt(se**2 + total_variance)
        out["pi_lb"] = f(pred - half)
        out["pi_ub"] = f(pred + half)
    return out


def univariate_blup(
    x: Array, y: Array, v: Array, beta: Array, cov_beta: Array, tau2: float, df: float, level: float
) -> pd.DataFrame:
    """Best linear unbiased predictions of the true effects of a random-effects model."""
    import pandas as pd

    shrink = tau2 / (tau2 + v)
    fitted = x @ beta
    pred = shrink * y + (1.0 - shrink) * fitted
    var = shrink * v + (1.0 - shrink) ** 2 * np.einsum("ij,jk,ik->i", x, cov_beta, x)
    se = np.sqrt(var)
    crit = float(critical_value(df, level))
    return pd.DataFrame({"pred": pred, "se": se, "pi_lb": pred - crit * se, "pi_ub": pred + crit * se})


def multilevel_ranef(
    x: Array,
    y: Array,
    v: Array,
    beta: Array,
    cov_beta: Array,
    level_codes: tuple[np.ndarray, ...],
    theta: Array,
    df: float,
    level: float,
    working: tuple[Array, list[np.ndarray], Array, list[Array] | None] | None = None,
) -> list[pd.DataFrame]:
    """Predicted random effects of every level (outer first), one row per group code. ``working``: the
    marginal covariance as block levels (row variance, codes, variances, loadings) when it is not
    ``diag(v)`` plus the random intercepts (correlated sampling errors, :meth:`FittedState.working_levels`)."""
    import pandas as pd

    resid = y - x @ beta
    p = x.shape[1]
    n_groups = [int(c.max()) + 1 for c in level_codes]
    z_we = [np.zeros(g) for g in n_groups]
    z_wz = [np.zeros(g) for g in n_groups]
    z_wx = [np.zeros((g, p)) for g in n_groups]
    row_variance, codes_all, variances, loadings = working or (v, list(level_codes), theta, None)
    for rows, block in iter_blocks(level_codes[0], row_variance, codes_all, variances, loadings):
        w = np.linalg.inv(block)  # (C, s, s)
        we = np.einsum("cst,ct->cs", w, resid[rows])
        wx = w @ x[rows]
        for lev, codes in enumerate(level_codes):
            c = codes[rows]
            same = c[:, :, None] == c[:, None, :]
            flat = c.ravel()
            z_we[lev] += np.bincount(flat, we.ravel(), n_groups[lev])
            z_wz[lev] += np.bincount(flat, np.sum(w * same, axis=2).ravel(), n_groups[lev])
            for j in range(p):
                z_wx[lev][:, j] += np.bincount(flat, wx[:, :, j].ravel(), n_groups[lev])
    crit = float(critical_value(df, level))
    out = []
    for lev, sigma2 in enumerate(theta):
        u = sigma2 * z_we[lev]
        zpz = z_wz[lev] - np.einsum("gi,ij,gj->g", z_wx[lev], cov_beta, z_wx[lev])
        se = np.sqrt(np.maximum(sigma2 - sigma2**2 * zpz, 0.0))
        out.append(pd.DataFrame({"intrcpt": u, "se": se, "pi_lb": u - crit * se, "pi_ub": u + crit * se}))
    return out
