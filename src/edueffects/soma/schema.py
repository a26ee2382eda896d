"""One row per meta-analytic effect size -> Fisher z and its sampling variance, validated.

Uncertainty is taken from the first source a row has, and the rule used is recorded per row:

1. ``se``: the standard error on the scale of the effect. r: ``v_z = se^2 / (1 - r^2)^2`` (delta method);
   d: ``v_r = 16 se^2 / (d^2 + 4)^3``, then as r; z: ``v_z = se^2``.
2. ``ci_lb``/``ci_ub`` (95 %): bounds transformed to z, ``SE_z = (z_ub - z_lb) / (2 * 1.96)``; the CI must
   contain the estimate.
3. ``k`` and ``n`` (primary studies, students): ``v_z = 1 / (n - 3k)``, the variance of a
   fixed-effect mean z over k studies with n students in all.

d is converted to r with ``r = d / sqrt(d^2 + 4)``. Rows whose ``valence`` is negative (a negative
relationship, e.g. conflict) are sign-recoded so that all effects read "better relationship ->
better outcome"; the recoding is recorded.

Numbers outside what can be computed with meaningfully are refused with the row, before anything
overflows: effects beyond |z| = 10 (|r| = tanh 10, |d| = 2 sinh 10 = 22,026), and sampling variances
of z outside [1e-12, 1e6] (a standard error of 1e-300, or n = 1e300 students).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from edueffects.core.distributions import norm_ppf
from edueffects.core.errors import InputError
from edueffects.core.jet import Array

Measure = Literal["r", "z", "d"]
MEASURES = ("r", "z", "d")
Z95 = float(norm_ppf(0.975))
Z_LIMIT = 10.0
LIMITS = {"z": Z_LIMIT, "r": float(np.tanh(Z_LIMIT)), "d": float(2.0 * np.sinh(Z_LIMIT))}
VZ_RANGE = (1e-12, 1e6)


@dataclass(frozen=True)
class SomaColumns:
    """Names of the input columns (defaults follow the embedded example)."""

    meta_analysis: str = "meta_analysis"
    effect: str = "effect"
    se: str = "se"
    ci_lb: str = "ci_lb"
    ci_ub: str = "ci_ub"
    k: str = "k"
    n: str = "n"
    cluster: str = "outcome_cluster"
    valence: str = "valence"
    year: str = "year"
    citation: str = "citation"


def _to_r(value: Array, measure: Measure) -> Array:
    if measure == "r":
        return value
    if measure == "z":
        return np.tanh(value)
    return value / np.sqrt(value**2 + 4.0)


def _num(frame: pd.DataFrame, col: str, rows: NDArray[np.intp]) -> Array:
    if col not in frame.columns:
        return np.full(len(frame), np.nan)
    values = pd.to_numeric(frame[col], errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy() & frame[col].notna().to_numpy())
    if bad.size:
        raise InputError(
            "column '{0}' row {1}: value {2} is not a number", col, rows[bad[0]], repr(frame[col].iloc[bad[0]])
        )
    return values.to_numpy(dtype=np.float64)


def uncertainty_label(columns: SomaColumns) -> str:
    """The name under which rows without any uncertainty are counted."""
    return f"{columns.se} | {columns.ci_lb}, {columns.ci_ub} | {columns.k}, {columns.n}"


def incomplete_rows(data: pd.DataFrame, columns: SomaColumns) -> tuple[NDArray[np.bool_], dict[str, int]]:
    """Rows that miss a required value (meta-analysis, effect, outcome cluster) or every source of
    uncertainty, with the missing values counted per column."""

    def absent(col: str) -> NDArray[np.bool_]:
        if col not in data.columns:
            return np.ones(len(data), dtype=bool)
        return np.asarray(data[col].isna().to_numpy(), dtype=bool)

    counts: dict[str, int] = {}
    mask = np.zeros(len(data), dtype=bool)
    for col in (columns.meta_analysis, columns.effect, columns.cluster):
        if col in data.columns:
            missing = absent(col)
            counts[col] = int(missing.sum())
            mask |= missing
    none = (
        absent(columns.se) & (absent(columns.ci_lb) | absent(columns.ci_ub)) & (absent(columns.k) | absent(columns.n))
    )
    counts[uncertainty_label(columns)] = int(none.sum())
    return mask | none, counts


def _outside(values: Array, limit: float) -> NDArray[np.intp]:
    with np.errstate(invalid="ignore"):
        return np.flatnonzero(~np.isnan(values) & ~(np.abs(values) <= limit))


def prepare_effects(
    data: pd.DataFrame,
    columns: SomaColumns,
    measure: Measure,
    outcome_clusters: Sequence[str] | None,
    rows: NDArray[np.intp] | None = None,
) -> pd.DataFrame:
    """Validated effects with ``z``, ``vz``, ``sez``, ``r``, ``variance_rule``, ``recoded``, ``es_id``.

    ``rows`` are the 1-based numbers of the rows in the user's table (for messages; default 1, 2, ...)."""
    if not isinstance(data, pd.DataFrame):
        raise InputError("data must be a pandas DataFrame (got {0})", type(data).__name__)
    if measure not in MEASURES:
        raise InputError("measure '{0}' is not one of r, z, d", measure)
    frame = data.reset_index(drop=True).copy()
    row = np.arange(1, len(frame) + 1) if rows is None else np.asarray(rows)
    for col in (columns.meta_analysis, columns.effect, columns.cluster):
        if col not in frame.columns:
            raise InputError("column '{0}' not found (available: {1})", col, ", ".join(map(str, frame.columns)))
    if frame.empty:
        raise InputError("the effect-size table has no rows")
    for col in (columns.meta_analysis, columns.cluster):
        missing = np.flatnonzero(frame[col].isna().to_numpy())
        if missing.size:
            raise InputError("column '{0}' row {1} is missing", col, row[missing[0]])
    clusters = frame[columns.cluster].astype(str).str.strip()
    if outcome_clusters is not None:
        known = set(outcome_clusters)
        unknown = np.flatnonzero(~clusters.isin(known).to_numpy())
        if unknown.size:
            raise InputError(
                "column '{0}' row {1}: unknown outcome cluster {2} (known: {3})",
                columns.cluster,
                row[unknown[0]],
                repr(clusters.iloc[unknown[0]]),
                ", ".join(outcome_clusters),
            )
    frame[columns.cluster] = clusters
    value = _num(frame, columns.effect, row)
    nan = np.flatnonzero(np.isnan(value))
    if nan.size:
        raise InputError("column '{0}' row {1} is missing", columns.effect, row[nan[0]])
    if measure == "r":
        with np.errstate(invalid="ignore"):
            outside = np.flatnonzero(~(np.abs(value) < 1.0))
        if outside.size:
            raise InputError(
                "column '{0}' row {1}: r = {2:g} lies outside (-1, 1)",
                columns.effect,
                row[outside[0]],
                value[outside[0]],
            )
    se, lb, ub = _num(frame, columns.se, row), _num(frame, columns.ci_lb, row), _num(frame, columns.ci_ub, row)
    k, n = _num(frame, columns.k, row), _num(frame, columns.n, row)
    limit = LIMITS[measure]
    for col, values in ((columns.effect, value), (columns.ci_lb, lb), (columns.ci_ub, ub)):
        outside = _outside(values, limit)
        if outside.size:
            raise InputError(
                "column '{0}' row {1}: {2} = {3:g} lies outside the range this program can compute with "
                "(|{2}| <= {4:g})",
                col,
                row[outside[0]],
                measure,
                values[outside[0]],
                limit,
            )
    for col, values in ((columns.se, se), (columns.k, k), (columns.n, n)):
        infinite = np.flatnonzero(np.isinf(values))
        if infinite.size:
            raise InputError(
                "column '{0}' row {1}: value {2} is not finite", col, row[infinite[0]], values[infinite[0]]
            )
    r = _to_r(value, measure)
    z = np.arctanh(r)
    vz = np.full(len(frame), np.nan)
    rule = np.full(len(frame), "", dtype=object)
    has_se = ~np.isnan(se)
    bad = np.flatnonzero(has_se & (se <= 0))
    if bad.size:
        raise InputError("column '{0}' row {1}: a standard error must be > 0", columns.se, row[bad[0]])
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        if measure == "z":
            vz_se = se**2
        elif measure == "r":
            vz_se = se**2 / (1.0 - r**2) ** 2
        else:
            vz_se = 16.0 * se**2 / (value**2 + 4.0) ** 3 / (1.0 - r**2) ** 2
    vz[has_se], rule[has_se] = vz_se[has_se], "SE"
    has_ci = ~has_se & ~np.isnan(lb) & ~np.isnan(ub)
    outside_ci = np.flatnonzero(has_ci & ~((lb <= value) & (value <= ub)))
    if outside_ci.size:
        i = outside_ci[0]
        raise InputError(
            "row {0}: the CI [{1:g}, {2:g}] in '{3}'/'{4}' does not contain the estimate {5:g}",
            row[i],
            lb[i],
            ub[i],
            columns.ci_lb,
            columns.ci_ub,
            value[i],
        )
    if measure == "r":
        bad_ci = np.flatnonzero(has_ci & ((np.abs(lb) >= 1) | (np.abs(ub) >= 1)))
        if bad_ci.size:
            raise InputError("row {0}: CI bounds of r must lie inside (-1, 1)", row[bad_ci[0]])
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        z_lb, z_ub = np.arctanh(_to_r(lb, measure)), np.arctanh(_to_r(ub, measure))
        vz_ci = ((z_ub - z_lb) / (2.0 * Z95)) ** 2
    vz[has_ci], rule[has_ci] = vz_ci[has_ci], "95% CI"
    has_kn = ~has_se & ~has_ci & ~np.isnan(k) & ~np.isnan(n)
    small_k = np.flatnonzero(~np.isnan(k) & (k < 1))
    if small_k.size:
        raise InputError(
            "column '{0}' row {1}: k = {2:g}; a meta-analysis has k >= 1", columns.k, row[small_k[0]], k[small_k[0]]
        )
    fractional = np.flatnonzero(~np.isnan(k) & (k != np.round(k)))
    if fractional.size:
        raise InputError(
            "column '{0}' row {1}: k = {2:g} is not a whole number of studies",
            columns.k,
            row[fractional[0]],
            k[fractional[0]],
        )
    too_few = np.flatnonzero(has_kn & (n - 3.0 * k <= 0))
    if too_few.size:
        i = too_few[0]
        raise InputError(
            "row {0}: n = {1:g} students must exceed 3k = {2:g} for the variance of z", row[i], n[i], 3 * k[i]
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        vz[has_kn], rule[has_kn] = 1.0 / (n - 3.0 * k)[has_kn], "k and N"
    none = np.flatnonzero(np.isnan(vz))
    if none.size:
        raise InputError(
            "row {0}: no uncertainty given (fill '{1}', or '{2}' and '{3}', or '{4}' and '{5}')",
            row[none[0]],
            columns.se,
            columns.ci_lb,
            columns.ci_ub,
            columns.k,
            columns.n,
        )
    low, high = VZ_RANGE
    unusable = np.flatnonzero(~((vz >= low) & (vz <= high)))
    if unusable.size:
        i = unusable[0]
        raise InputError(
            "row {0}: the sampling variance of z from {1} is {2:g}, outside the range this program can compute "
            "with [{3:g}, {4:g}]",
            row[i],
            rule[i],
            vz[i],
            low,
            high,
        )
    recoded = np.zeros(len(frame), dtype=bool)
    if columns.valence in frame.columns:
        valence = frame[columns.valence].astype(str).str.strip().str.lower()
        unknown_valence = np.flatnonzero(~valence.isin(["positive", "negative"]).to_numpy())
        if unknown_valence.size:
            i = unknown_valence[0]
            raise InputError(
                "column '{0}' row {1}: {2} is not 'positive' or 'negative'",
                columns.valence,
                row[i],
                repr(frame[columns.valence].iloc[i]),
            )
        recoded = (valence == "negative").to_numpy()
        frame[columns.valence] = valence
    z = np.where(recoded, -z, z)
    frame["z"] = z
    frame["vz"] = vz
    frame["sez"] = np.sqrt(vz)
    frame["r"] = np.tanh(z)
    frame["variance_rule"] = rule
    frame["recoded"] = recoded
    frame["es_id"] = np.arange(1, len(frame) + 1)
    return frame
