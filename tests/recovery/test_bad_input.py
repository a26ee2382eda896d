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
        (None, {"sesoi": 0.0}, "sesoi must be a finite number > 0 (got 0.0)"),
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


# ---- validation at the engine boundary: the API, cells files, study files and the command line -----------


def one_line(err: pytest.ExceptionInfo[InputError], *parts: str) -> None:
    text = str(err.value)
    assert "\n" not in text, text
    for part in parts:
        assert part in text, text


@pytest.mark.parametrize(
    ("kwargs", "parts"),
    [
        ({"sesoi": float("inf")}, ("sesoi must be a finite number > 0", "inf")),
        ({"sesoi": float("nan")}, ("sesoi must be a finite number > 0", "nan")),
        ({"sesoi": -0.1}, ("sesoi must be a finite number > 0", "-0.1")),
        ({"sesoi": "0.05"}, ("sesoi must be a finite number > 0", "'0.05'")),
        ({"alpha": 2.0}, ("alpha must lie between 0 and 1", "2.0")),
        ({"alpha": 0.0}, ("alpha must lie between 0 and 1",)),
        ({"alpha": float("nan")}, ("alpha must lie between 0 and 1",)),
        ({"power": 1.0}, ("power must lie between 0 and 1", "1.0")),
        ({"power": -0.8}, ("power must lie between 0 and 1",)),
        ({"level": 950}, ("level must be a confidence level", "950")),
        ({"level": 0.0}, ("level must be a confidence level",)),
        ({"standardize": "false"}, ("standardize must be True or False", "'false'")),
        ({"long": 1}, ("long must be True or False",)),
        ({"missing": "skip"}, ("missing must be 'error' or 'drop'", "'skip'")),
        ({"moderators": ["ses", 3]}, ("moderators must be a list of names",)),
        ({"school": 3}, ("school must be a column name",)),
        ({"domain": "reading"}, ("domain must be a pair (column, value)",)),
        ({"post": "score5"}, ("pre and post name the same column 'score5'",)),
        ({"post": "score5", "long": True}, ("pre and post name the same column 'score5'",)),
        ({"pre": ["score5", "ses"], "post": ["score8", "ses"]}, ("pre and post name the same column 'ses'",)),
        ({"moderators": ["ses", "sesx"]}, ("column 'sesx' not found",)),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_options_are_checked_in_the_engine(state: pd.DataFrame, kwargs: dict[str, object], parts: tuple[str]) -> None:
    with pytest.raises(InputError) as err:
        fit(state, **kwargs)
    one_line(err, *parts)


def test_level_as_proportion_or_percent(state: pd.DataFrame) -> None:
    a, b = fit(state, level=0.9), fit(state, level=90)
    np.testing.assert_allclose(a.coefficients.ci_lb, b.coefficients.ci_lb, rtol=1e-12)  # type: ignore[attr-defined]


def test_options_are_checked_before_a_cells_file_is_read(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        recovery(cells=tmp_path / "absent.parquet", sesoi=float("inf"))
    one_line(err, "sesoi must be a finite number > 0")


def test_constant_moderator_is_named(state: pd.DataFrame) -> None:
    for kwargs in ({}, {"long": True}):
        with pytest.raises(InputError) as err:
            fit(state.assign(nongerman=0.25), **kwargs)
        one_line(err, "moderator 'nongerman' has the same value (0.25) in every school")


def test_collinear_moderators_are_named(state: pd.DataFrame) -> None:
    with pytest.raises(InputError) as err:
        fit(state.assign(twice=2 * state.ses - state.nongerman), moderators=["ses", "nongerman", "twice"])
    one_line(err, "moderator 'twice' is a linear combination of the other moderators")


def test_moderator_far_from_zero_for_its_spread_is_refused(state: pd.DataFrame) -> None:
    with pytest.raises(InputError) as err:
        fit(state.assign(ses=state.ses + 1e6))
    one_line(err, "moderator 'ses' varies little across schools for its size", "centre it")
    fit(state.assign(ses=state.ses + 100.0))  # a moderator such as a year is fine


def test_too_few_schools_for_the_moderators(state: pd.DataFrame) -> None:
    for schools, message in ((2, "2 schools are too few for 2"), (3, "3 schools are too few for 2")):
        with pytest.raises(InputError) as err:
            fit(state[state.school < schools])
        one_line(err, message, "at least 4 schools")
    res = fit(state[state.school < 4])
    assert res.robust_clusters == 4  # type: ignore[attr-defined]


def test_duplicated_student_ids_in_the_gain_model(state: pd.DataFrame) -> None:
    doubled = pd.concat([state, state.iloc[[5, 9, 9]]], ignore_index=True)
    for kwargs in ({}, {"long": True}):
        with pytest.raises(InputError) as err:
            fit(doubled, student="student", **kwargs)
        sid = state.student.iloc[5]
        one_line(err, f"column 'student': student {sid} appears in rows 6, {len(state) + 1}", "3 repeated row(s)")
    assert fit(state, student="student").n_students == len(state)  # type: ignore[attr-defined]


def test_constant_gain_is_refused(state: pd.DataFrame) -> None:
    with pytest.raises(InputError) as err:
        fit(state.assign(score8=state.score5 + 1.0))
    one_line(err, "the scores (score8 - score5) do not vary among the students of any school and cohort")


@pytest.mark.parametrize(
    ("change", "parts"),
    [
        (lambda d: d.assign(score5=d.score5.where(d.index != 17, 1e300)), ("column 'score5' row 18: 1e+300 lies",)),
        (lambda d: d.assign(score8=d.score8.where(d.index != 4, -2e8)), ("column 'score8' row 5: -2e+08 lies",)),
        (lambda d: d.assign(score8=d.score8.where(d.index != 4, np.inf)), ("column 'score8' row 5: inf is not",)),
        (lambda d: d.assign(score5=(d.score5 * 1e9).round().astype("int64")), ("column 'score5' row ", "lies outside")),
        (lambda d: d.assign(ses=np.where(d.school == 3, 1e300, d.ses)), ("moderator 'ses' holds 1e+300 in school 3",)),
        (lambda d: d.assign(ses=np.where(d.school == 3, -np.inf, d.ses)), ("moderator 'ses' is not a finite number",)),
    ],
)
def test_numbers_beyond_the_computable_range_are_refused(state: pd.DataFrame, change, parts) -> None:  # type: ignore[no-untyped-def]
    for kwargs in ({}, {"long": True}):
        with pytest.raises(InputError) as err:
            fit(change(state), **kwargs)
        one_line(err, *parts)


def test_numbers_beyond_the_range_in_a_parquet_file(state: pd.DataFrame, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "s.parquet"
    nan = state.assign(score5=state.score5.where(state.index != 30, np.nan))
    pq.write_table(pa.table({c: pa.array(nan[c].to_numpy(), from_pandas=False) for c in nan.columns}), path)
    with pytest.raises(InputError) as err:
        fit(path)
    one_line(err, "column 'score5' row 31: nan is not a finite number")


def test_missing_values_are_dropped_on_request_and_counted(state: pd.DataFrame) -> None:
    holes = state.assign(
        ses=state.ses.where(state.index != 7),
        score5=state.score5.where(state.index % 50 != 1),
        score8=state.score8.where(state.index % 70 != 2),
    )
    with pytest.raises(InputError) as err:
        fit(holes)
    one_line(err, "missing='drop' or --drop-missing")
    res = fit(holes, missing="drop")
    complete = holes.dropna(subset=["ses", "score5", "score8"])
    ref = fit(complete)
    np.testing.assert_allclose(res.coefficients.estimate, ref.coefficients.estimate, rtol=1e-10)  # type: ignore[attr-defined]
    n5, n8 = int(holes.score5.isna().sum()), int(holes.score8.isna().sum())
    assert res.missing == {"school": 0, "cohort": 0, "ses": 1, "nongerman": 0, "score5": n5, "score8": n8}  # type: ignore[attr-defined]
    assert res.rows_dropped == len(holes) - len(complete) and res.n_students == len(complete)  # type: ignore[attr-defined]
    note = f"{len(holes) - len(complete)} row(s) with missing values dropped (missing values per column: ses 1, "
    assert any(str(n).startswith(note) for n in res.notes)  # type: ignore[attr-defined]
    assert res.to_dict()["rows_dropped"] == res.rows_dropped  # type: ignore[attr-defined]
    # the long model of a wide table uses students with one score: only those with neither are dropped
    both = holes.assign(score8=holes.score8.where(holes.index != 1))  # row 1 lacks score5 already
    long = fit(both, long=True, missing="drop")
    assert long.rows_dropped == 2 and long.missing["score5 & score8"] == 1  # type: ignore[attr-defined]
    assert long.n_students == len(both) - 2  # type: ignore[attr-defined]


def test_missing_values_dropped_in_long_tables_and_plausible_values(state: pd.DataFrame) -> None:
    long = simulate.to_long(state)
    long.loc[[3, 10], "score"] = np.nan
    res = fit(long, long=True, student="student", occasion="occasion", score="score", pre=None, post=None,
              missing="drop")  # fmt: skip
    assert res.rows_dropped == 2 and res.missing["score"] == 2  # type: ignore[attr-defined]
    pv = state.assign(pv2=state.score8 + 0.1, pv1=state.score8.where(state.index != 4))
    pooled = fit(pv, post=["pv1", "pv2"], pre=["score5", "score5"], missing="drop")
    assert pooled.rows_dropped == 1 and pooled.missing["pv1"] == 1  # type: ignore[attr-defined]
    assert pooled.n_students == len(state) - 1  # type: ignore[attr-defined]


def test_rows_without_a_domain(state: pd.DataFrame) -> None:
    from edueffects import recovery_by_domain

    data = state.assign(domain=np.where(state.index % 2 == 0, "reading", "maths")).astype({"domain": object})
    data.loc[[0, 3], "domain"] = None
    args = {"school": "school", "cohort": "cohort", "pandemic_cohorts": [2018, 2019], "moderators": ["ses"],
            "pre": "score5", "post": "score8"}  # fmt: skip
    with pytest.raises(InputError) as err:
        recovery_by_domain(data, "domain", **args)
    one_line(err, "column 'domain' is missing in 2 row(s): they belong to no domain")
    fits = recovery_by_domain(data, "domain", missing="drop", **args)
    assert sorted(fits) == ["maths", "reading"]
    assert all(any("2 row(s) without a value in the domain column" in str(n) for n in r.notes) for r in fits.values())


def test_cells_files_get_the_same_checks(state: pd.DataFrame, tmp_path: Path) -> None:
    from edueffects.recovery import aggregate

    cells = aggregate(state.assign(flat=2.0), school="school", cohort="cohort", moderators=["ses", "flat"],
                      pre="score5", post="score8", min_cell=1)  # fmt: skip
    with pytest.raises(InputError) as err:
        recovery(cells=cells, pandemic_cohorts=[2018, 2019])
    one_line(err, "moderator 'flat' has the same value (2) in every school")
    with pytest.raises(InputError) as err:
        recovery(cells=cells, pandemic_cohorts=[2018, 2019], moderators=["ses"], alpha=1.5)
    one_line(err, "alpha must lie between 0 and 1")
    res = recovery(cells=cells, pandemic_cohorts=[2018, 2019], moderators=["ses"], missing="drop")
    assert res.rows_dropped == 0


def test_released_statistics_are_checked(state: pd.DataFrame) -> None:
    from edueffects.recovery import aggregate

    args = {"school": "school", "cohort": "cohort", "moderators": ["ses"], "min_cell": 1}
    with pytest.raises(InputError) as err:
        aggregate(state, pre="score5", post="score5", **args)  # type: ignore[arg-type]
    one_line(err, "pre and post name the same column 'score5'")
    huge = state.assign(score8=state.score8.where(state.index != 6, 1e300))
    with pytest.raises(InputError) as err:
        aggregate(huge, pre="score5", post="score8", **args)  # type: ignore[arg-type]
    one_line(err, "column 'score8' holds 1e+300 in school", "rescale the column")
    long = simulate.to_long(state).assign(ses=lambda d: np.where(d.school == 2, np.inf, d.ses))
    with pytest.raises(InputError) as err:
        aggregate(long, occasion="occasion", score="score", student="student", **args)  # type: ignore[arg-type]
    one_line(err, "column 'ses' holds a value that is not a finite number (inf) in school 2")


# ---- the same through the command line: exit 2, one line, no traceback, no output -----------------------


def state_file(state: pd.DataFrame, folder: Path, **columns: object) -> str:
    path = folder / "state.csv"
    state.assign(**columns).to_csv(path, index=False)
    return str(path)


RECOVERY = ["--school", "school", "--cohort", "cohort", "--pandemic-cohorts", "2018", "2019"]


@pytest.mark.parametrize(
    ("columns", "flags", "message"),
    [
        ({}, ["--pre", "score5", "--post", "score5", "--moderators", "ses"], "pre and post name the same column"),
        ({}, ["--pre", "score5", "--post", "score8", "--moderators", "ses", "sesx"], "column 'sesx' not found"),
        (
            {},
            ["--pre", "score5", "--post", "score8", "--moderators", "sesx", "--drop-missing"],
            "column 'sesx' not found",
        ),
        (
            {"flat": 1.0},
            ["--pre", "score5", "--post", "score8", "--moderators", "ses", "flat"],
            "moderator 'flat' has the same value (1) in every school",
        ),
        (
            {"student": 7},
            ["--pre", "score5", "--post", "score8", "--moderators", "ses", "--student", "student"],
            "column 'student': student 7 appears in rows 1, 2, 3, 4, 5, ...",
        ),
        (
            {"score5": 1e300},
            ["--pre", "score5", "--post", "score8", "--moderators", "ses"],
            "column 'score5' row 1: 1e+300 lies outside the range",
        ),
        (
            {"ses": 1e30},
            ["--pre", "score5", "--post", "score8", "--moderators", "ses"],
            "moderator 'ses' holds 1e+30 in school 0",
        ),
        ({}, ["--pre", "score5", "--post", "score8", "--moderators", "ses", "--sesoi", "0"], "--sesoi"),
    ],
)
def test_command_line_gives_one_line(  # type: ignore[no-untyped-def]
    state: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str], columns, flags, message
) -> None:
    from edueffects.cli import main

    out = tmp_path / "out.json"
    code = main(["recovery", state_file(state, tmp_path, **columns), *RECOVERY, *flags, "--json", str(out)])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("edueffects: error: "), err
    assert message in err, err
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()


def test_command_line_drop_missing_in_the_long_model(
    state: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from edueffects.cli import main

    holes = {"score5": state.score5.where(state.index % 20 != 0), "score8": state.score8.where(state.index % 40 != 0)}
    path = state_file(state, tmp_path, **holes)
    argv = ["recovery", path, *RECOVERY, "--pre", "score5", "--post", "score8", "--moderators", "ses", "--long"]
    assert main([*argv, "--json", "-"]) == 2  # students with one score are used, those with neither are not
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "have no score at either occasion" in err, err
    assert main([*argv, "--drop-missing", "--json", "-"]) == 0  # ... and only those with neither dropped
    out = json.loads(capsys.readouterr().out)
    neither = int((state.index % 40 == 0).sum())
    assert out["rows_dropped"] == neither and out["input"]["rows_dropped"] == neither
    assert out["input"]["missing"]["score5 & score8"] == neither


def test_study_file_options_reach_the_engine_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from edueffects.cli import main

    examples = Path(__file__).resolve().parents[2] / "examples"
    for name in ("tsr_effects.csv", "tsr_studies.csv", "tsr_amstar.csv", "state.csv", "study.toml"):
        shutil.copy(examples / name, tmp_path / name)
    study = tmp_path / "study.toml"
    study.write_text(study.read_text().replace("sesoi = 0.05", "sesoi = -0.05"))
    assert main(["report", str(study), "--out", str(tmp_path / "report"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sesoi must be a finite number > 0 (got -0.05)" in err, err
    assert not (tmp_path / "report").exists()
