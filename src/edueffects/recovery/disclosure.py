"""Statistical disclosure control of released cells: no released row describes fewer than ``min_cell`` students.

Every released row (school x cohort x occasion pattern, per plausible value and domain) is a group of
students whose counts, sums and sums of squares go out. ``suppress`` drops each row with fewer than
``min_cell`` students; the fit on the rest is a fit on fewer students. ``merge`` first pools a school's
cohorts of the same period (all pre-pandemic or all pandemic) when one of them has fewer than
``min_cell`` students in all: the pooled cohorts then share one school:cohort effect (their students
stay in the fit); rows still below ``min_cell`` after pooling are suppressed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from edueffects.core.errors import InputError
from edueffects.recovery.data import cohort_label

if TYPE_CHECKING:
    import pandas as pd

DisclosureRule = Literal["suppress", "merge"]
DISCLOSURE_RULES: tuple[DisclosureRule, ...] = ("suppress", "merge")
STATISTICS = ("n", "s0", "s1", "ss0", "ss1", "s01", "sg", "ssg")
POOL_SEPARATOR = "+"


@dataclass(frozen=True)
class Disclosure:
    """What the rule did: suppressed rows (keys only, no counts), pooled cohorts, students withheld."""

    min_cell: int
    rule: DisclosureRule
    suppressed: pd.DataFrame
    merged: tuple[dict[str, object], ...]
    students_in: int
    students_released: int

    @property
    def students_suppressed(self) -> int:
        return self.students_in - self.students_released

    def to_dict(self) -> dict[str, object]:
        return {
            "min_cell": self.min_cell,
            "rule": self.rule,
            "students_in_input": self.students_in,
            "students_released": self.students_released,
            "students_suppressed": self.students_suppressed,
            "suppressed_rows": len(self.suppressed),
            "suppressed": self.suppressed.astype(object).to_dict(orient="records"),
            "merged": list(self.merged),
        }


def students(frame: pd.DataFrame, keys: Sequence[str]) -> int:
    """Students in ``frame``: the count of the plausible value with the most (each PV repeats the students)."""
    if frame.empty:
        return 0
    per_pv = frame.groupby([*keys, "pv"], sort=False)["n"].sum()
    if keys:
        return int(per_pv.groupby(level="domain").max().sum())
    return int(per_pv.max())


def apply(
    frame: pd.DataFrame,
    moderators: Sequence[str],
    min_cell: int,
    rule: DisclosureRule,
    pandemic_cohorts: Sequence[str] | None,
) -> tuple[pd.DataFrame, Disclosure]:
    """The released rows of ``frame`` (columns ``[domain], pv, school, cohort, pre_n, post_n`` and statistics)."""
    keys = [k for k in ("domain",) if k in frame.columns]
    students_in = students(frame, keys)
    merged: list[dict[str, object]] = []
    if rule == "merge":
        if not pandemic_cohorts:
            raise InputError("--merge pools cohorts of the same period: name the pandemic cohorts (--pandemic-cohorts)")
        frame, merged = _merge(frame, keys, moderators, min_cell, {cohort_label(c) for c in pandemic_cohorts})
    small = frame["n"].to_numpy() < min_cell
    order = [*keys, "pv", "school", "cohort", "pre_n", "post_n"]
    suppressed = frame.loc[small, order].sort_values(order, kind="stable").reset_index(drop=True)
    released = frame.loc[~small].reset_index(drop=True)
    if released.empty:
        raise InputError("nothing to release: every cell has fewer than {0} students", min_cell)
    return released, Disclosure(min_cell, rule, suppressed, tuple(merged), students_in, students(released, keys))


def _merge(
    frame: pd.DataFrame, keys: list[str], moderators: Sequence[str], min_cell: int, pandemic: set[str]
) -> tuple[pd.DataFrame, list[dict[str, object]]]:
    """Pool the cohorts of a school and period when one of its cells has fewer than ``min_cell`` students."""
    cell = [*keys, "school", "cohort"]
    work = frame.assign(cohort=frame["cohort"].map(cohort_label))
    size = work.groupby([*cell, "pv"], sort=False)["n"].sum().groupby(level=cell, sort=False).min()
    sizes = size.rename("size").reset_index()
    sizes["period"] = sizes["cohort"].isin(pandemic).astype(np.int8)
    sizes["small"] = sizes["size"] < min_cell
    group = [*keys, "school", "period"]
    flags = sizes.groupby(group, sort=False).agg(small=("small", "any"), cohorts=("cohort", "nunique")).reset_index()
    pooled = flags.loc[flags["small"] & (flags["cohorts"] > 1), group]
    if pooled.empty:
        return frame, []
    members = sizes.merge(pooled, on=group)
    ordered = members.sort_values("cohort", kind="stable").groupby(group, sort=False)["cohort"]
    members = members.merge(ordered.agg(POOL_SEPARATOR.join).rename("label").reset_index(), on=group)
    work = work.merge(members[[*cell, "period", "label"]], on=cell, how="left")
    pool = work["label"].notna().to_numpy()
    _check_pooled_moderators(work.loc[pool], group, moderators)
    work.loc[pool, "cohort"] = work.loc[pool, "label"]
    rows = [*keys, "pv", "school", "cohort", "pre_n", "post_n"]
    grouped = work.groupby(rows, sort=False, dropna=False)
    stats = [s for s in STATISTICS if s in work.columns]
    out = grouped[stats].sum(min_count=1).join(grouped[list(moderators)].first()).reset_index()
    out["n"] = out["n"].astype(np.int64)
    record = members.groupby([*keys, "school", "label"], sort=False)["cohort"].agg(list).reset_index()
    record = record.rename(columns={"cohort": "cohorts"}).sort_values([*keys, "school"], kind="stable")
    return out, [{str(k): v for k, v in r.items()} for r in record.astype(object).to_dict(orient="records")]


def _check_pooled_moderators(rows: pd.DataFrame, group: list[str], moderators: Sequence[str]) -> None:
    """Pooled cohorts must share their moderators (school-level; a dose is constant among pandemic cohorts)."""
    for mod in moderators:
        spread = rows.groupby(group, sort=False)[mod].agg(["min", "max"])
        varying = spread[spread["min"] != spread["max"]]
        if len(varying):
            index = varying.index[0]
            school = index[group.index("school")] if isinstance(index, tuple) else index
            raise InputError(
                "moderator '{0}' varies within school (school {1}: {2:g} to {3:g}); moderators must be school-level",
                mod,
                school,
                float(varying["min"].iloc[0]),
                float(varying["max"].iloc[0]),
            )
