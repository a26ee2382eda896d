"""From a user's table to validated arrays: outcome, sampling variances, moderators, clusters.

Moderators follow R's treatment coding: a string (or ``categorical``) column becomes one dummy per
level except the first in sorted order, named column + level (``deltypegeneral``); the intercept is
``intrcpt``. Every problem is reported as one line naming the column and the (1-based) row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from edueffects.core.errors import InputError
from edueffects.core.jet import Array

MissingPolicy = Literal["error", "drop"]


@dataclass(frozen=True, eq=False)
class MetaData:
    """Validated model inputs; ``rows`` are the 0-based positions of the used rows in the input."""

    y: Array
    v: Array
    x: Array
    coef_names: tuple[str, ...]
    level_names: tuple[str, ...]
    level_codes: tuple[NDArray[np.intp], ...]
    rows: NDArray[np.intp]
    n_dropped: int
    frame: pd.DataFrame


def sorted_codes(values: pd.Series) -> NDArray[np.intp]:
    """Integer codes 0..G-1 of a column, numbered in the sorted order of its distinct values."""
    codes, uniques = pd.factorize(values)
    rank = np.empty(len(uniques), dtype=np.intp)
    rank[np.argsort(np.asarray(uniques), kind="stable")] = np.arange(len(uniques))
    return rank[codes]


def _require_columns(data: pd.DataFrame, columns: Sequence[str]) -> None:
    for col in columns:
        if col not in data.columns:
            available = ", ".join(map(str, data.columns))
            raise InputError("column '{0}' not found (available: {1})", col, available)


def _row_list(rows: NDArray[np.intp], limit: int = 5) -> str:
    shown = ", ".join(str(int(r) + 1) for r in rows[:limit])
    return shown + (", ..." if rows.size > limit else "")


def _numeric(data: pd.DataFrame, col: str) -> Array:
    series = data[col]
    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64)
    converted = pd.to_numeric(series, errors="coerce")
    bad = np.flatnonzero(converted.isna().to_numpy() & series.notna().to_numpy())
    if bad.size:
        value = series.iloc[int(bad[0])]
        raise InputError("column '{0}' row {1}: value {2} is not a number", col, int(bad[0]) + 1, repr(value))
    return converted.to_numpy(dtype=np.float64)


def _format_level(value: object) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def moderator_matrix(
    data: pd.DataFrame, mods: Sequence[str], categorical: Sequence[str]
) -> tuple[Array, tuple[str, ...]]:
    """Intercept plus moderator columns, with R-style names and treatment coding."""
    columns: list[Array] = [np.ones(len(data))]
    names: list[str] = ["intrcpt"]
    for col in mods:
        series = data[col]
        is_text = not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series))
        if col in categorical or is_text:
            levels = sorted(series.unique(), key=lambda v: (str(type(v)), v))
            if len(levels) < 2:
                raise InputError(
                    "moderator '{0}' has a single level ({1}): its effect cannot be estimated",
                    col,
                    repr(_format_level(levels[0])),
                )
            for level in levels[1:]:
                columns.append((series == level).to_numpy(dtype=np.float64))
                names.append(f"{col}{_format_level(level)}")
        elif pd.api.types.is_bool_dtype(series):
            columns.append(series.to_numpy(dtype=np.float64))
            names.append(f"{col}TRUE")
        else:
            columns.append(_numeric(data, col))
            names.append(col)
    x = np.column_stack(columns)
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise InputError(
            "moderators are collinear (the model matrix is not of full rank): check {0}", ", ".join(names[1:])
        )
    return x, tuple(names)


def prepare(
    data: pd.DataFrame,
    yi: str,
    vi: str,
    cluster: str | None,
    within: str | None,
    mods: Sequence[str],
    categorical: Sequence[str],
    missing: MissingPolicy,
) -> MetaData:
    """Validate the table and build the arrays of one meta-analytic model."""
    if not isinstance(data, pd.DataFrame):
        raise InputError("data must be a pandas DataFrame (got {0})", type(data).__name__)
    if within is not None and cluster is None:
        raise InputError("'within' needs 'cluster': effects are nested within clusters")
    for col in categorical:
        if col not in mods:
            raise InputError(
                "categorical column '{0}' is not among the moderators ({1})", col, ", ".join(mods) or "none"
            )
    used = [yi, vi, *([cluster] if cluster else []), *([within] if within else []), *mods]
    _require_columns(data, used)
    frame = data.reset_index(drop=True)
    y_all = _numeric(frame, yi)
    v_all = _numeric(frame, vi)
    mask = frame[list(dict.fromkeys(used))].isna().any(axis=1).to_numpy()
    n_dropped = 0
    if mask.any():
        if missing == "error":
            first = int(np.flatnonzero(mask)[0])
            col = next(c for c in used if bool(frame[c].isna().iloc[first]))
            raise InputError(
                "column '{0}' row {1} is missing; {2} row(s) have missing values "
                "(fix them, or drop them explicitly with missing='drop' / --drop-missing)",
                col,
                first + 1,
                int(mask.sum()),
            )
        n_dropped = int(mask.sum())
    rows = np.flatnonzero(~mask).astype(np.intp)
    frame = frame.iloc[rows].reset_index(drop=True)
    y, v = y_all[rows], v_all[rows]
    for name, values in ((yi, y), (vi, v)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise InputError(
                "column '{0}' row {1}: value {2} is not finite", name, int(rows[bad[0]]) + 1, values[bad[0]]
            )
    nonpositive = np.flatnonzero(v <= 0)
    if nonpositive.size:
        r = int(nonpositive[0])
        raise InputError(
            "column '{0}' row {1}: sampling variance must be > 0 (got {2:g}); {3} row(s) affected: {4}",
            vi,
            int(rows[r]) + 1,
            v[r],
            nonpositive.size,
            _row_list(rows[nonpositive]),
        )
    x, names = moderator_matrix(frame, mods, categorical)
    k, p = x.shape
    if k <= p:
        raise InputError("{0} usable row(s) for {1} coefficient(s): a model needs more rows than coefficients", k, p)
    level_names: list[str] = []
    codes: list[NDArray[np.intp]] = []
    if cluster is not None:
        outer = sorted_codes(frame[cluster])
        level_names.append(cluster)
        codes.append(outer)
        if within is not None:
            inner = sorted_codes(frame[within]).astype(np.int64)
            combined = outer.astype(np.int64) * (int(inner.max()) + 1) + inner
            codes.append(sorted_codes(pd.Series(combined)))
            level_names.append(f"{cluster}/{within}")
    return MetaData(
        y=y,
        v=v,
        x=x,
        coef_names=names,
        level_names=tuple(level_names),
        level_codes=tuple(codes),
        rows=rows,
        n_dropped=n_dropped,
        frame=frame,
    )
