"""Difference-in-difference-in-difference models of learning recovery on the nested core.

Gain model (linked panel), one unit per school x cohort cell:
    gain = b0 + b1 pandemic + sum b Z + sum c pandemic:Z + u_school + u_school:cohort + e
Long model, score = occasion * pandemic * (Z ...) with all lower-order terms, plus u_school,
u_school:cohort and u_student (linked; students aggregated per cell and occasion pattern) or
u_school:cohort:occasion (unlinked cross-sections). Doses (zero before the pandemic) enter only
through their pandemic interactions. The DDD effect of Z is ``pandemic:Z`` (gain) or
``occasion:pandemic:Z`` (long). Fits are exact REML/ML with lme4's REML criterion.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edueffects.core.jet import Array
from edueffects.core.nested import IntArray, Method, NestedDesign, design_from_units, unit_statistics
from edueffects.recovery.data import CellTable
from edueffects.recovery.frame import CellFrame, as_cells, codes, floats


@dataclass(frozen=True, eq=False)
class ModelFrame:
    """The design of one recovery model: units, the core design and how to reduce it for CR2."""

    names: tuple[str, ...]
    ddd_terms: tuple[str, ...]
    variance_names: tuple[str, ...]
    design: NestedDesign
    # CR2 reduction: one row per block of identical rows, orthonormalised (see core.robust.cr2)
    block_x: Array
    block_sum_y: Array
    block_n: Array
    block_school: IntArray
    block_levels: tuple[IntArray, ...]
    block_loadings: tuple[Array, ...]


def term_list(factors: Sequence[str], moderators: Sequence[str], dose: Sequence[str]) -> list[tuple[str, ...]]:
    """R's expansion of ``f1 * f2 * (m1 + m2 ...)``: main effects, then 2-way, then 3-way terms.

    ``factors`` are the design indicators (``occasion``, ``pandemic``); doses appear only in terms
    that contain ``pandemic``.
    """
    ordered = [*factors, *moderators]
    terms: list[tuple[int, ...]] = []
    for order in range(1, len(factors) + 2):
        for combo in itertools.combinations(range(len(ordered)), order):
            mods = [i for i in combo if i >= len(factors)]
            if len(mods) > 1:
                continue
            if mods and ordered[mods[0]] in dose and "pandemic" not in [ordered[i] for i in combo]:
                continue
            terms.append(combo)
    return [tuple(ordered[i] for i in combo) for combo in terms]


def _columns(values: CellFrame, terms: Sequence[tuple[str, ...]], fixed: dict[str, float] | None = None) -> Array:
    """The design matrix of ``terms``; ``fixed`` gives factors one value in every row (an occasion)."""
    fixed = fixed or {}
    cols = [np.ones(len(values))]
    for term in terms:
        col = np.ones(len(values))
        for factor in term:
            col = col * (np.full(len(values), fixed[factor]) if factor in fixed else floats(values, factor))
        cols.append(col)
    return np.column_stack(cols)


CELL_COUNTS = {"gain": ("n",), "long_linked": ("r", "pre_n", "post_n"), "long_unlinked": ("occasion", "n")}


def data_identity(cells: CellTable) -> Array:
    """The data of a fit, whatever its moderators: per cell its school and cohort codes, counts and
    score checksum (exact, unlike the floating-point sums, whose last bits vary with DuckDB's threads).
    A likelihood-ratio test refuses fits whose identities differ."""
    frame = as_cells(cells.frame)
    school, cell = codes(frame)
    counts = np.column_stack([floats(frame, c) for c in (*CELL_COUNTS[cells.kind], "checksum")])
    return np.column_stack([school, cell, counts])


def build(cells: CellTable, moderators: Sequence[str], method: Method) -> ModelFrame:
    """Units, core design and CR2 blocks of the model named by ``cells.kind``."""
    del method
    frame = as_cells(cells.frame)
    dose = cells.dose
    occ = cells.occasion_label
    if cells.kind == "gain":
        terms = term_list(["pandemic"], moderators, dose)
        school, cell = codes(frame)
        return _cell_units(
            frame, _columns(frame, terms), ["(Intercept)", *(":".join(t) for t in terms)],
            tuple(f"pandemic:{m}" for m in moderators), ("school", "school:cohort", "residual"), (school, cell),
        )  # fmt: skip
    terms = term_list([occ, "pandemic"], moderators, dose)
    names = ["(Intercept)", *(":".join(t) for t in terms)]
    ddd = tuple(f"{occ}:pandemic:{m}" for m in moderators)
    if cells.kind == "long_unlinked":
        school, cell = codes(frame)
        occasion = np.asarray(frame["occasion"], dtype=np.intp)
        cell_occ = (cell * 2 + occasion).astype(np.intp)
        renamed = CellFrame({(occ if c == "occasion" else c): frame[c] for c in frame.columns})
        x = _columns(renamed, terms)
        variance_names = ("school", "school:cohort", "school:cohort:occasion", "residual")
        return _cell_units(frame, x, names, ddd, variance_names, (school, cell, cell_occ))
    return _linked(frame, terms, names, ddd, occ)


def _cell_units(
    frame: CellFrame,
    x: Array,
    names: list[str],
    ddd: tuple[str, ...],
    variance_names: tuple[str, ...],
    levels: tuple[IntArray, ...],
) -> ModelFrame:
    """Units of ``n`` students sharing ``x`` (columns ``n, sum, sumsq``), nested in ``levels``; each
    unit is also one CR2 block (loading ``sqrt(n)`` at every level)."""
    n = floats(frame, "n")
    total = floats(frame, "sum")
    stats = unit_statistics(x, total, floats(frame, "sumsq"), n)
    design = design_from_units(x.shape[1], stats, np.zeros(len(frame)), list(levels), True, reml_includes_xtx=False)
    root = np.sqrt(n)
    return ModelFrame(
        names=tuple(names),
        ddd_terms=ddd,
        variance_names=variance_names,
        design=design,
        block_x=x,
        block_sum_y=total,
        block_n=n,
        block_school=levels[0],
        block_levels=levels,
        block_loadings=tuple(root for _ in levels),
    )


def _linked(
    frame: CellFrame, terms: Sequence[tuple[str, ...]], names: list[str], ddd: tuple[str, ...], occ: str
) -> ModelFrame:
    """Linked long model: one unit per (school, cohort, occasion pattern) of ``r`` students."""
    x0, x1 = _columns(frame, terms, {occ: 0.0}), _columns(frame, terms, {occ: 1.0})
    has0, has1, r = floats(frame, "pre_n"), floats(frame, "post_n"), floats(frame, "r")
    s0, s1 = floats(frame, "s0"), floats(frame, "s1")
    ss0, ss1, s01 = floats(frame, "ss0"), floats(frame, "ss1"), floats(frame, "s01")
    p = x0.shape[1]
    # rows of both occasions: sum c c' = r (has0 x0 x0' + has1 x1 x1') etc.
    stats0 = unit_statistics(x0, s0, ss0, r * has0)
    stats1 = unit_statistics(x1, s1, ss1, r * has1)
    stats = stats0 + stats1
    xs = has0[:, None] * x0 + has1[:, None] * x1  # per-student sum of x over its rows
    ys = s0 + s1
    outer = unit_statistics(xs, ys, ss0 + ss1 + 2.0 * s01, r)[:, : (p + 1) * (p + 2) // 2]
    school, cell = codes(frame)
    design = design_from_units(
        p, stats, np.zeros(len(frame)), [school, cell], True, replicated=(outer, r), reml_includes_xtx=False
    )
    # CR2 blocks: (unit, occasion) with r students each, present where the pattern has that occasion
    keep0, keep1 = has0 > 0, has1 > 0
    unit = np.arange(len(frame), dtype=np.intp)
    block_x = np.vstack([x0[keep0], x1[keep1]])
    block_sum = np.concatenate([s0[keep0], s1[keep1]])
    block_n = np.concatenate([r[keep0], r[keep1]])
    b_school = np.concatenate([school[keep0], school[keep1]])
    b_cell = np.concatenate([cell[keep0], cell[keep1]])
    b_unit = np.concatenate([unit[keep0], unit[keep1]])
    root = np.sqrt(block_n)
    return ModelFrame(
        names=tuple(names),
        ddd_terms=ddd,
        variance_names=("school", "school:cohort", "student", "residual"),
        design=design,
        block_x=block_x,
        block_sum_y=block_sum,
        block_n=block_n,
        block_school=b_school,
        block_levels=(b_school, b_cell, b_unit),
        block_loadings=(root, root, np.ones_like(root)),
    )


def start_values(cells: CellTable, mf: ModelFrame) -> Array:
    """Moment estimates to start Newton near the optimum.

    Residual: pooled within-cell variance (linked: minus the within-cell covariance of the two
    occasions, which estimates the student variance). Block means around a weighted LS fit split
    into a within-school part (cohort-level variance) and a between-school part.
    """
    f = as_cells(cells.frame)
    if cells.kind == "long_linked":
        rows = (f["pre_n"] == 1) & (f["post_n"] == 1) & (f["r"] > 1)
        r = floats(f, "r")[rows]
        s0, s1 = floats(f, "s0")[rows], floats(f, "s1")[rows]
        var0 = (floats(f, "ss0")[rows] - s0**2 / r).sum() / max((r - 1).sum(), 1.0)
        var1 = (floats(f, "ss1")[rows] - s1**2 / r).sum() / max((r - 1).sum(), 1.0)
        cov = (floats(f, "s01")[rows] - s0 * s1 / r).sum() / max((r - 1).sum(), 1.0)
        student = max(float(cov), 0.05 * float(var0 + var1) / 2)
        residual = max(float(var0 + var1) / 2 - student, 0.05 * float(var0 + var1) / 2)
    else:
        n = floats(f, "n")
        residual = float((floats(f, "sumsq") - floats(f, "sum") ** 2 / n).sum() / max((n - 1).sum(), 1.0))
        student = 0.0
    n_b = mf.block_n
    means = mf.block_sum_y / n_b
    xw = mf.block_x * n_b[:, None]
    beta = np.linalg.lstsq(xw.T @ mf.block_x, xw.T @ means, rcond=None)[0]
    resid = means - mf.block_x @ beta
    group = mf.block_school
    school = (np.bincount(group, weights=resid) / np.bincount(group))[group]  # each school's mean residual
    noise = float(np.mean((residual + student) / n_b))
    within = max(float(np.mean((resid - school) ** 2)) - noise, 0.0)
    between = max(float(np.var(school)) - 0.5 * within, 0.0)
    floor = 1e-3 * residual
    start = [max(between, floor), max(within, floor)]
    if cells.kind == "long_linked":
        start.append(student)
    elif cells.kind == "long_unlinked":
        start = [start[0], 0.5 * start[1] + floor, 0.5 * start[1] + floor]
    start.append(residual)
    return np.asarray(start, dtype=np.float64)
