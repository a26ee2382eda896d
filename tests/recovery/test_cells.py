"""Released cell statistics: fits on the cells equal fits on the students they hold (1e-10), the disclosure
rule at its boundary, no student identifier in the file, and one clear line for what the cells cannot do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edueffects as ee
from edueffects import InputError, recovery, simulate
from edueffects.recovery import RecoveryResult, ReleasedCells, aggregate, read_cells
from edueffects.recovery.cells import METADATA_KEY

REF = Path(__file__).resolve().parents[1] / "reference"
MODS = ["ses", "nongerman"]
COMMON: dict[str, Any] = {"school": "school", "cohort": "cohort", "pandemic_cohorts": [2018, 2019]}


def assert_same_fit(a: RecoveryResult, b: RecoveryResult, tol: float = 1e-10) -> None:
    assert a.coefficients.names == b.coefficients.names and a.model == b.model
    np.testing.assert_allclose(b.coefficients.estimate, a.coefficients.estimate, rtol=tol, atol=tol)
    np.testing.assert_allclose(b.coefficients.se, a.coefficients.se, rtol=tol)
    np.testing.assert_allclose(b.coefficients.df, a.coefficients.df, rtol=1e-8)
    np.testing.assert_allclose(b.variance, a.variance, rtol=tol, atol=tol)
    assert b.loglik == pytest.approx(a.loglik, rel=tol)
    np.testing.assert_allclose(b.robust.se, a.robust.se, rtol=tol)
    np.testing.assert_allclose(b.robust.df, a.robust.df, rtol=1e-8)
    assert (b.n_students, b.n_rows, b.n_schools, b.n_cells) == (a.n_students, a.n_rows, a.n_schools, a.n_cells)
    assert b.aic == pytest.approx(a.aic, rel=tol) and b.bic == pytest.approx(a.bic, rel=tol)


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return pd.read_csv(REF / "data" / "recovery_small.csv")


@pytest.fixture(scope="module")
def state() -> pd.DataFrame:
    return simulate.recovery(seed=4, n_schools=40, students_per_school=12)


def release(data: object, tmp: Path | None = None, **kwargs: Any) -> ReleasedCells:
    args: dict[str, Any] = {"school": "school", "cohort": "cohort", "moderators": [*MODS, "lost_days"], "min_cell": 1}
    if "occasion" not in kwargs:
        args.update(pre="score5", post="score8")
    args.update(kwargs)
    cells = aggregate(data, **args)
    if tmp is None:
        return cells
    cells.write(tmp / "cells.parquet")
    return read_cells(tmp / "cells.parquet")


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_gain_and_long_models_from_cells_equal_the_student_fit(
    small: pd.DataFrame, tmp_path: Path, method: str
) -> None:
    cells = release(small, tmp_path, moderators=MODS)
    for long in (False, True):
        a = recovery(small, moderators=MODS, pre="score5", post="score8", long=long, method=method, **COMMON)  # type: ignore[arg-type]
        b = recovery(cells=tmp_path / "cells.parquet", long=long, method=method, pandemic_cohorts=[2018, 2019])  # type: ignore[arg-type]
        assert_same_fit(a, b)
        assert b.released_cells and b.to_dict()["data_source"] == "released cell statistics"
        assert "fitted on released cell statistics (cells.parquet)" in b.notes[0]
    assert cells.metadata["models"] == ["gain", "long_linked"]


def test_long_tables_linked_and_unlinked(small: pd.DataFrame, tmp_path: Path) -> None:
    long = pd.concat([small.assign(g8=0, y=small.score5), small.assign(g8=1, y=small.score8)], ignore_index=True)
    linked = release(long, tmp_path, moderators=MODS, occasion="g8", score="y", student="student")
    a = recovery(long, moderators=MODS, student="student", long=True, occasion="g8", score="y", **COMMON)
    b = recovery(cells=linked, long=True, pandemic_cohorts=[2018, 2019])
    assert_same_fit(a, b)
    assert a.notes == b.notes[1:]  # the occasion note, as from the student table
    cross = long.drop(columns="student")
    unlinked = release(cross, moderators=MODS, occasion="g8", score="y")
    a = recovery(cross, moderators=MODS, long=True, occasion="g8", score="y", **COMMON)
    b = recovery(cells=unlinked, long=True, pandemic_cohorts=[2018, 2019])
    assert b.model == "long_unlinked"
    assert_same_fit(a, b)
    assert unlinked.metadata["models"] == ["long_unlinked"]
    with pytest.raises(InputError, match="the gain model needs the cell statistic 'sg'"):
        recovery(cells=unlinked, pandemic_cohorts=[2018, 2019])


def test_plausible_values_and_domains(tmp_path: Path) -> None:
    data = simulate.recovery(seed=21, n_schools=50, students_per_school=14, domains=("reading", "maths"))
    rng = np.random.default_rng(0)
    pv = data.assign(
        pre_2=data.score5 + rng.normal(0, 0.3, len(data)), post_2=data.score8 + rng.normal(0, 0.3, len(data))
    )
    pv.loc[pv.index % 17 == 0, "post_2"] = np.nan  # the second plausible value is missing for some students
    cells = release(pv, tmp_path, pre=["score5", "pre_2"], post=["score8", "post_2"], domain="domain")
    assert cells.domains == ("maths", "reading") and cells.roles.n_pv == 2
    args: dict[str, Any] = {"moderators": MODS, "pre": ["score5", "pre_2"], "post": ["score8", "post_2"], **COMMON}
    for value in cells.domains:
        rows = pv[pv.domain == value]
        a = recovery(rows, long=True, **args)
        b = recovery(cells=cells, long=True, domain=("domain", value), moderators=MODS, pandemic_cohorts=[2018, 2019])
        assert a.plausible_values == b.plausible_values == 2
        np.testing.assert_allclose(b.coefficients.estimate, a.coefficients.estimate, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(b.coefficients.se, a.coefficients.se, rtol=1e-10)
        np.testing.assert_allclose(b.robust.se, a.robust.se, rtol=1e-10)
        np.testing.assert_allclose(b.variance, a.variance, rtol=1e-10, atol=1e-12)
    by_domain = ee.recovery_by_domain(cells=cells, moderators=MODS, pandemic_cohorts=[2018, 2019], long=True)
    assert sorted(by_domain) == ["maths", "reading"]
    with pytest.raises(InputError, match=r"holds domains \(maths, reading\): choose one"):
        recovery(cells=cells, pandemic_cohorts=[2018, 2019])
    with pytest.raises(InputError, match="domain 'art' is not in the cells file"):
        recovery(cells=cells, pandemic_cohorts=[2018, 2019], domain=("domain", "art"))
    # the gain model needs every student's two scores, as on the student table
    with pytest.raises(InputError, match="lack a score in 'pre_2' or 'post_2'"):
        recovery(cells=cells, pandemic_cohorts=[2018, 2019], domain=("domain", "maths"))


def test_the_file_holds_no_student_and_says_what_it_holds(small: pd.DataFrame, tmp_path: Path) -> None:
    named = small.assign(student="ID-" + small.student.astype(str) + "-X")  # identifiers that stand out
    long = pd.concat([named.assign(g8=0, y=named.score5), named.assign(g8=1, y=named.score8)], ignore_index=True)
    long.to_parquet(tmp_path / "long.parquet", index=False)
    cells = aggregate(tmp_path / "long.parquet", school="school", cohort="cohort", moderators=MODS, occasion="g8",
                      score="y", student="student")  # fmt: skip
    out = cells.write(tmp_path / "cells.parquet")
    assert b"ID-" not in out.read_bytes()  # no identifier anywhere: data, schema or metadata
    table = pq.read_table(out)
    expected = {"pv", "school", "cohort", "pre_n", "post_n", "n", "s0", "s1", "ss0", "ss1", "s01", "sg", "ssg", *MODS}
    assert set(table.column_names) == expected
    assert (table.column("n").to_numpy() >= 10).all()  # no row describes fewer than min_cell students
    metadata = json.loads(table.schema.metadata[METADATA_KEY.encode()])
    assert metadata["roles"]["student"] == "student"  # the column's name, never its values
    assert metadata["package_version"] == ee.__version__
    assert metadata["inputs"][0]["file"] == "long.parquet" and len(metadata["inputs"][0]["sha256"]) == 64
    assert metadata["rows"]["input_rows"] == len(long) and metadata["occasions"] == ["0", "1"]
    assert "every student" in cells.summary() and repr(cells).startswith("<ReleasedCells: Released cell statistics")


def cell_sizes(n_small: int) -> pd.DataFrame:
    data = simulate.recovery(seed=3, n_schools=30, students_per_school=20)
    first = data[(data.school == 0) & (data.cohort == 2019)]
    keep = first.index[:n_small]
    return data[(data.school != 0) | (data.cohort != 2019) | data.index.isin(keep)].reset_index(drop=True)


@pytest.mark.parametrize("size", [9, 10])
def test_suppression_at_the_boundary(size: int) -> None:
    data = cell_sizes(size)
    cells = release(data, min_cell=10, moderators=MODS)
    held = cells.frame[(cells.frame.school == 0) & (cells.frame.cohort == 2019)]
    disclosure = cells.disclosure
    others = data[(data.school != 0) | (data.cohort != 2019)]
    smallest_other = int(others.groupby(["school", "cohort"]).size().min())
    assert smallest_other >= 10
    if size == 9:
        assert held.empty and disclosure["students_suppressed"] == 9 and disclosure["suppressed_rows"] == 1
        assert disclosure["suppressed"] == [{"pv": 1, "school": 0, "cohort": 2019, "pre_n": 1, "post_n": 1}]
    else:
        assert int(held.n.iloc[0]) == 10 and disclosure["students_suppressed"] == 0
    fit = recovery(cells=cells, pandemic_cohorts=[2018, 2019], moderators=MODS)
    assert fit.n_students == len(data) - (9 if size == 9 else 0)
    direct = recovery(data if size == 10 else data[(data.school != 0) | (data.cohort != 2019)], moderators=MODS,
                      pre="score5", post="score8", **COMMON)  # fmt: skip
    assert_same_fit(direct, fit)
    if size == 9:
        assert "1 row(s) suppressed, 9 of" in fit.notes[0] and "fitted on the other" in fit.notes[0]


def test_merge_pools_cohorts_of_the_same_period() -> None:
    data = cell_sizes(6)
    with pytest.raises(InputError, match="name the pandemic cohorts"):
        release(data, min_cell=10, moderators=MODS, disclosure="merge")
    cells = release(data, min_cell=10, moderators=MODS, disclosure="merge", pandemic_cohorts=[2018, 2019])
    assert cells.disclosure["merged"] == [{"school": 0, "label": "2018+2019", "cohorts": ["2018", "2019"]}]
    assert cells.disclosure["students_suppressed"] == 0
    assert set(cells.frame.loc[cells.frame.school == 0, "cohort"]) == {"2015", "2018+2019"}
    fit = recovery(cells=cells, moderators=MODS)  # pandemic cohorts recorded in the file
    assert fit.n_students == len(data) and fit.pandemic_cohorts == ("2018", "2019")
    with pytest.raises(InputError, match="cohorts 2018\\+2019 were pooled into one cell before release"):
        recovery(cells=cells, moderators=MODS, pandemic_cohorts=[2019])


def test_what_the_cells_cannot_do(small: pd.DataFrame, tmp_path: Path) -> None:
    cells = release(small, moderators=MODS)
    with pytest.raises(InputError, match="moderator 'lost_days' is not in the cells file"):
        recovery(cells=cells, moderators=["lost_days"], pandemic_cohorts=[2018, 2019])
    with pytest.raises(InputError, match="drop --pre, --post"):
        recovery(cells=cells, pre="score5", post="score8", pandemic_cohorts=[2018, 2019])
    with pytest.raises(InputError, match="not both or neither"):
        recovery(small, cells=cells, pandemic_cohorts=[2018, 2019])
    with pytest.raises(InputError, match="cells file's school column is 'school', not 'schule'"):
        recovery(cells=cells, school="schule", pandemic_cohorts=[2018, 2019])
    with pytest.raises(InputError, match="no domains"):
        recovery(cells=cells, domain=("domain", "maths"), pandemic_cohorts=[2018, 2019])
    with pytest.raises(InputError, match="name the pandemic-affected cohorts"):
        recovery(cells=cells)
    plain = tmp_path / "plain.parquet"
    small.to_parquet(plain)
    with pytest.raises(InputError, match="is not a cells file of edueffects"):
        recovery(cells=plain, pandemic_cohorts=[2018, 2019])
    without = cells.frame.drop(columns=["s01"])
    with pytest.raises(InputError, match="the long_linked model needs the cell statistic 's01'"):
        recovery(cells=ReleasedCells(without, cells.metadata), long=True, pandemic_cohorts=[2018, 2019])


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (None, {"moderators": ["wealth"]}, "column 'wealth' not found"),
        (lambda d: d.assign(ses=d.ses.where(d.index != 7)), {}, "column 'ses' is missing in 1 row(s) (first in school"),
        (lambda d: d.assign(school=d.school.where(d.index != 2)), {}, "column 'school' is missing in 1 row(s)"),
        (lambda d: d.assign(ses=np.where(d.index == 4, 9.0, d.ses)), {}, "moderator 'ses' varies within school"),
        (
            lambda d: d.assign(score5=d.score5.astype(str).where(d.index != 3, "absent")),
            {},
            "column 'score5' is not numeric (it holds 'absent')",
        ),
        (lambda d: d.assign(score5=np.nan, score8=d.score8.where(d.index > 0)), {}, "have no score at either occasion"),
        (None, {"pre": None, "post": None}, "name the score columns"),
        (None, {"min_cell": 0}, "min_cell must be a whole number of at least 1"),
        (None, {"disclosure": "round"}, "disclosure rule 'round' is not suppress or merge"),
        (None, {"engine": "oracle"}, "engine 'oracle' is not duckdb, spark or an ibis back-end"),
        (None, {"moderators": ["n"]}, "column name 'n' is reserved"),
        (None, {"pandemic_cohorts": [2020]}, "pandemic cohort(s) 2020 not found"),
        (None, {"min_cell": 10_000}, "nothing to release: every cell has fewer than 10000 students"),
    ],
)
def test_bad_input(small: pd.DataFrame, change, kwargs, message) -> None:  # type: ignore[no-untyped-def]
    data = change(small) if change else small
    with pytest.raises(InputError) as err:
        release(data, **{"moderators": MODS, **kwargs})
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_long_tables_and_files(small: pd.DataFrame, tmp_path: Path) -> None:
    long = pd.concat([small.assign(g8=0, y=small.score5), small.assign(g8=1, y=small.score8)], ignore_index=True)
    args: dict[str, Any] = {"moderators": MODS, "occasion": "g8", "score": "y", "student": "student"}
    with pytest.raises(InputError, match="more than one row for one occasion"):
        release(pd.concat([long, long.head(1)], ignore_index=True), **args)
    with pytest.raises(InputError, match="exactly two occasions"):
        release(long.assign(g8=np.where(long.index < 5, 2, long.g8)), **args)
    moved = long.copy()
    moved.loc[0, "cohort"] = 2015 if moved.loc[0, "cohort"] != 2015 else 2018
    with pytest.raises(InputError, match="more than one school or cohort"):
        release(moved, **args)
    with pytest.raises(InputError, match="column 'y' is missing in 1 row"):
        release(long.assign(y=long.y.where(long.index != 9)), **args)
    with pytest.raises(InputError, match="does not exist"):
        release(tmp_path / "none.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not parquet")
    with pytest.raises(InputError, match="could not be read"):
        release(tmp_path / "bad.parquet")
    small.to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(InputError, match="different kinds"):
        release([tmp_path / "a.csv", tmp_path / "bad.parquet"])
    cells = release(small, moderators=MODS)
    with pytest.raises(InputError, match="folder"):
        cells.write(tmp_path / "nope" / "cells.parquet")


def test_several_files_are_one_table(small: pd.DataFrame, tmp_path: Path) -> None:
    half = len(small) // 2
    small.iloc[:half].to_csv(tmp_path / "a.csv", index=False)
    small.iloc[half:].to_csv(tmp_path / "b.csv", index=False)
    both = release([tmp_path / "a.csv", tmp_path / "b.csv"], moderators=MODS)
    whole = release(small, moderators=MODS)
    pd.testing.assert_frame_equal(both.frame, whole.frame, check_exact=False, rtol=1e-12)
    assert [i["file"] for i in both.metadata["inputs"]] == ["a.csv", "b.csv"]  # type: ignore[index]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), perm=st.integers(0, 1000), min_cell=st.integers(1, 15))
def test_cells_do_not_depend_on_row_order_and_never_show_small_rows(seed: int, perm: int, min_cell: int) -> None:
    data = simulate.recovery(seed=seed, n_schools=25, students_per_school=10)
    data = data.assign(score8=data.score8.where(data.index % 13 != 0))  # some students with one score
    shuffled = data.sample(frac=1.0, random_state=perm)
    try:
        a = release(data, min_cell=min_cell, moderators=MODS)
    except InputError as error:  # every cell too small (small schools drawn): so in any order
        assert "nothing to release" in str(error)
        with pytest.raises(InputError, match="nothing to release"):
            release(shuffled, min_cell=min_cell, moderators=MODS)
        return
    b = release(shuffled, min_cell=min_cell, moderators=MODS)
    pd.testing.assert_frame_equal(a.frame, b.frame, check_exact=False, rtol=1e-12, atol=1e-12)
    assert (a.frame.n >= min_cell).all()
    d = a.disclosure
    assert d["students_released"] + d["students_suppressed"] == len(data) == d["students_in_input"]
    assert int(a.frame.n.sum()) == d["students_released"]
