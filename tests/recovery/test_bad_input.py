"""Bad student tables get one clear line; thin but legitimate data is used and reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edueffects import InputError, recovery, simulate


@pytest.fixture(scope="module")
def state() -> pd.DataFrame:
    return simulate.recovery(seed=4, n_schools=40, students_per_school=12)


def fit(data: pd.DataFrame | str | Path, **kwargs: object) -> object:
    args: dict[str, object] = {
        "school": "school",
        "cohort": "cohort",
        "pandemic_cohorts": [2018, 2019],
        "moderators": ["ses", "nongerman"],
        "pre": "score5",
        "post": "score8",
    }
    args.update(kwargs)
    return recovery(data, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (
            lambda d: d.assign(ses=np.where(d.cohort == 2019, d.ses + 1, d.ses)),
            {},
            "moderator 'ses' varies within school",
        ),
        (lambda d: d.assign(score8=d.score8.where(d.index != 5)), {}, "lack a score in 'score5' or 'score8'"),
        (None, {"pandemic_cohorts": [2020]}, "pandemic cohort(s) 2020 not found in column 'cohort'"),
        (None, {"pandemic_cohorts": [2015, 2018, 2019]}, "a pre-pandemic cohort is needed"),
        (lambda d: d.assign(school=0), {}, "has a single school"),
        (None, {"moderators": ["wealth"]}, "column 'wealth' not found"),
        (
            lambda d: d.assign(score5=d.score5.astype(str).where(d.index != 3, "absent")),
            {},
            "column 'score5' is not numeric",
        ),
        (lambda d: d.assign(ses=d.ses.where(d.index != 7)), {}, "column 'ses' is missing in 1 row(s)"),
        (None, {"pre": None, "post": None}, "say which columns hold the scores"),
        (None, {"moderators": []}, "at least one school-level moderator"),
        (None, {"method": "OLS"}, "method 'OLS' is not REML or ML"),
        (None, {"sesoi": 0.0}, "sesoi must be positive"),
    ],
)
def test_bad_input(state: pd.DataFrame, change, kwargs, message) -> None:  # type: ignore[no-untyped-def]
    data = change(state) if change else state
    with pytest.raises(InputError) as err:
        fit(data, **kwargs)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_long_table_errors(state: pd.DataFrame) -> None:
    long = simulate.to_long(state)
    dup = pd.concat([long, long.head(1)], ignore_index=True)
    with pytest.raises(InputError, match="more than one row for one occasion"):
        fit(dup, long=True, student="student", occasion="occasion", score="score", pre=None, post=None)
    moved = long.copy()
    moved.loc[0, "school"] = int(moved.loc[0, "school"]) + 1  # the same student in another school
    moved.loc[0, ["ses", "nongerman"]] = long.loc[long.school == moved.loc[0, "school"], ["ses", "nongerman"]].iloc[0]
    with pytest.raises(InputError, match="more than one school or cohort"):
        fit(moved, long=True, student="student", occasion="occasion", score="score", pre=None, post=None)
    three = long.assign(occasion=np.where(long.index < 10, 2, long.occasion))
    with pytest.raises(InputError, match="exactly two occasions"):
        fit(three, long=True, student="student", occasion="occasion", score="score", pre=None, post=None)


def test_thin_data_is_used_and_reported(state: pd.DataFrame) -> None:
    only_2019 = state[(state.school != 3) | (state.cohort == 2019)]
    res = fit(only_2019)
    assert res.n_students == len(only_2019)  # type: ignore[attr-defined]
    assert any("1 school(s) appear in only one cohort" in n for n in res.notes)  # type: ignore[attr-defined]
    one_occasion = state.assign(score8=state.score8.where(state.index % 10 != 0))
    res_long = fit(one_occasion, long=True)
    n_single = int((state.index % 10 == 0).sum())
    assert res_long.n_students == len(state)  # type: ignore[attr-defined]
    assert any(f"{n_single} student(s) with one occasion are used" in n for n in res_long.notes)  # type: ignore[attr-defined]


def test_dose_moderator_enters_only_with_the_pandemic(state: pd.DataFrame) -> None:
    res = fit(state, moderators=["ses", "lost_days"])
    names = res.coefficients.names  # type: ignore[attr-defined]
    assert "pandemic:lost_days" in names and "lost_days" not in names
    assert res.dose == ("lost_days",)  # type: ignore[attr-defined]
    assert any("dose within pandemic cohorts" in n for n in res.notes)  # type: ignore[attr-defined]


def test_files_and_frames_give_the_same_numbers(state: pd.DataFrame, tmp_path: Path) -> None:
    csv, parquet = tmp_path / "state.csv", tmp_path / "state.parquet"
    state.to_csv(csv, index=False)
    state.to_parquet(parquet, index=False)
    a, b, c = fit(state), fit(str(csv)), fit(parquet)
    np.testing.assert_allclose(b.coefficients.estimate, a.coefficients.estimate, rtol=1e-9, atol=1e-12)  # type: ignore[attr-defined]
    np.testing.assert_allclose(c.coefficients.estimate, a.coefficients.estimate, rtol=1e-12, atol=1e-14)  # type: ignore[attr-defined]
    with pytest.raises(InputError, match="does not exist"):
        fit(tmp_path / "missing.parquet")
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(InputError, match="could not be read"):
        fit(bad)


def test_missing_moderator_is_reported_in_every_model(state: pd.DataFrame) -> None:
    holes = state.assign(ses=state.ses.where(state.index != 11))
    for kwargs in ({}, {"long": True}):
        with pytest.raises(InputError, match="column 'ses' is missing in 1 row"):
            fit(holes, **kwargs)
    long = simulate.to_long(state).assign(nongerman=lambda d: d.nongerman.where(d.index != 3))
    with pytest.raises(InputError, match="column 'nongerman' is missing in 1 row"):
        fit(long, long=True, student="student", occasion="occasion", score="score", pre=None, post=None)
    cross = simulate.to_long(state).drop(columns=["student"]).assign(score=lambda d: d.score.where(d.index != 8))
    with pytest.raises(InputError, match="column 'score' is missing in 1 row"):
        fit(cross, long=True, occasion="occasion", score="score", pre=None, post=None)


def test_spss_and_stata_files_are_read(state: pd.DataFrame, tmp_path: Path) -> None:
    import pyreadstat

    small = state[["school", "cohort", "ses", "nongerman", "score5", "score8"]]
    pyreadstat.write_sav(small, str(tmp_path / "s.sav"))
    pyreadstat.write_dta(small, str(tmp_path / "s.dta"))
    a = fit(small)
    for name in ("s.sav", "s.dta"):
        b = fit(tmp_path / name)
        np.testing.assert_allclose(b.coefficients.estimate, a.coefficients.estimate, rtol=1e-9)  # type: ignore[attr-defined]
    (tmp_path / "bad.sav").write_bytes(b"$FL2 broken")
    with pytest.raises(InputError, match="could not be read as SAV"):
        fit(tmp_path / "bad.sav")
