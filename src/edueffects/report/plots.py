"""Figures of results (matplotlib, no pyplot state): saved as SVG and PNG side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from edueffects.core.errors import InputError
from edueffects.recovery.result import RecoveryResult


def save(fig: Figure, folder: str | Path, name: str) -> list[Path]:
    """Write ``name.svg`` and ``name.png`` into ``folder`` (created if missing)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.svg", out / f"{name}.png"]
    fig.savefig(paths[0], bbox_inches="tight")
    fig.savefig(paths[1], dpi=150, bbox_inches="tight")
    return paths


def cell_gains(result: RecoveryResult) -> pd.DataFrame:
    """Per school x cohort cell: students and mean gain, from the aggregated cells of any model."""
    cells = result.cells
    if result.model == "gain":
        out = cells.assign(students=cells["n"], gain=cells["sum"] / cells["n"])
    elif result.model == "long_linked":
        both = cells[(cells.pre_n == 1) & (cells.post_n == 1)]
        out = both.assign(students=both["r"], gain=(both["s1"] - both["s0"]) / both["r"])
    else:
        wide = cells.pivot_table(index=["school", "cohort"], columns="occasion", values=["sum", "n"], aggfunc="sum")
        wide = wide.dropna()
        gain = wide[("sum", 1)] / wide[("n", 1)] - wide[("sum", 0)] / wide[("n", 0)]
        first = cells.drop_duplicates(["school", "cohort"]).set_index(["school", "cohort"])
        out = first.loc[gain.index].assign(students=wide[("n", 1)].to_numpy(), gain=gain.to_numpy()).reset_index()
    return out[["school", "cohort", "pandemic", "students", "gain", *result.moderators]]


def gain_by_tercile(result: RecoveryResult, moderator: str) -> Figure:
    """Mean gain (student-weighted) per cohort, one line per tercile of a school factor."""
    if moderator not in result.moderators:
        raise InputError(f"'{moderator}' is not a moderator of this model ({', '.join(result.moderators)})")
    cells = cell_gains(result)
    per_school = cells.groupby("school")[moderator].max()
    terciles = pd.qcut(per_school.rank(method="first"), 3, labels=["low", "middle", "high"])
    cells = cells.assign(tercile=cells.school.map(terciles))
    summary = (
        cells.assign(weighted=cells.gain * cells.students)
        .groupby(["tercile", "cohort"], observed=True)[["weighted", "students"]]
        .sum()
    )
    summary["mean"] = summary.weighted / summary.students
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    cohorts = sorted(cells.cohort.unique())
    positions = np.arange(len(cohorts), dtype=float)
    for tercile in ("low", "middle", "high"):
        values = [summary["mean"].get((tercile, c), np.nan) for c in cohorts]
        ax.plot(positions, values, marker="o", label=f"{moderator}: {tercile} tercile")
    ax.set_xticks(positions, [str(c) for c in cohorts])
    pandemic = [float(i) for i, c in enumerate(cohorts) if str(c) in result.pandemic_cohorts]
    if pandemic:
        ax.axvspan(pandemic[0] - 0.25, pandemic[-1] + 0.25, color="0.9", zorder=0, label="pandemic cohorts")
    ax.set_xlabel("cohort")
    ax.set_ylabel("mean gain (score units)")
    ax.set_title(f"Gain by cohort and {moderator} tercile")
    ax.legend(frameon=False, fontsize=8)
    return fig


def ddd_effects(result: RecoveryResult) -> Figure:
    """DDD effects with 95% CI (model-based), 90% CI (TOST) and the equivalence bounds."""
    eq = result.equivalence
    c = result.coefficients
    index = {name: i for i, name in enumerate(c.names)}
    fig = Figure(figsize=(6.5, 0.6 * len(eq) + 1.6))
    ax = fig.add_subplot()
    ys = np.arange(len(eq))[::-1]
    ax.axvspan(-result.sesoi, result.sesoi, color="#d9ead3", label=f"equivalence bounds (+/-{result.sesoi:g})")
    ax.axvline(0.0, color="0.4", lw=0.8)
    for y, test in zip(ys, eq, strict=True):
        i = index[test.term]
        ax.plot([c.ci_lb[i], c.ci_ub[i]], [y, y], color="#3d85c6", lw=1.5)
        ax.plot([test.ci90_lb, test.ci90_ub], [y, y], color="#0b5394", lw=4)
        ax.plot([test.estimate], [y], "o", color="black")
    ax.set_yticks(ys, [t.term for t in eq])
    unit = "per SD of the school factor" if result.standardized else "per unit of the school factor"
    ax.set_xlabel(f"DDD effect (score units {unit}); thin: 95% CI, thick: 90% CI")
    ax.set_title("Do school factors moderate the pandemic change in the gain?")
    ax.legend(frameon=False, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.08))
    return fig


def recovery_figures(result: RecoveryResult, folder: str | Path) -> list[Path]:
    """All recovery figures: DDD effects and, per moderator, gains by tercile."""
    paths = save(ddd_effects(result), folder, "ddd_effects")
    for mod in result.moderators:
        paths += save(gain_by_tercile(result, mod), folder, f"gain_by_{mod}_tercile")
    return paths
