"""Simulation-based power above the recovery engine: the MDE check and the power curve."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from edueffects import InputError, recovery, simulate
from edueffects.power import check_mdes, power_curve
from edueffects.recovery import RecoveryResult

MODS = ["ses", "nongerman"]


def gain(data: pd.DataFrame, **kwargs: object) -> RecoveryResult:
    return recovery(  # type: ignore[arg-type]
        data, school="school", cohort="cohort", pandemic_cohorts=[2018, 2019], moderators=MODS,
        pre="score5", post="score8", **kwargs,
    )  # fmt: skip


def test_simulated_power_at_the_analytic_mdes_is_near_nominal() -> None:
    data = simulate.recovery(seed=41, n_schools=150, students_per_school=20)
    fitted = gain(data, standardize=True)
    res = check_mdes(fitted, 150)
    assert all(md.simulated_power_at_mdes is None for md in fitted.mdes)  # the fit itself is unchanged
    for md, before in zip(res.mdes, fitted.mdes, strict=True):
        assert md.simulated_power_at_mdes is not None and md.mdes == before.mdes
        # 80% nominal; Monte-Carlo SE at 150 reps is about 0.033
        assert 0.68 < md.simulated_power_at_mdes < 0.92, (md.term, md.simulated_power_at_mdes)
    assert "simulated power there" in res.summary()
    assert check_mdes(fitted, 0) is fitted
    with pytest.raises(InputError, match="gain model"):
        check_mdes(gain(data, long=True), 5)


def test_recovery_no_longer_simulates() -> None:
    data = simulate.recovery(seed=2, n_schools=20, students_per_school=6)
    with pytest.raises(TypeError, match="mdes_simulations"):
        gain(data, mdes_simulations=5)


def test_power_curve_counts_rejections() -> None:
    curve = power_curve("ses", [0.0, 0.3], reps=3, workers=1, n_schools=20, students_per_school=6)
    table = curve.tidy()
    assert sorted(table.effect.unique()) == [0.0, 0.3]
    assert set(table.term) == {"pandemic:ses", "pandemic:nongerman", "pandemic:lost_days"}
    assert ((table.power >= 0) & (table.power <= 1)).all()
    with pytest.raises(InputError, match="not simulated"):
        power_curve("iq", [0.1], reps=3)


# ---- the power engine checks its own inputs (API and command line alike) -------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("ses", [0.1]), {"reps": 3, "alpha": 2.0}, "alpha must lie between 0 and 1 (got 2.0)"),
        (("ses", [0.1]), {"reps": 3, "alpha": float("nan")}, "alpha must lie between 0 and 1"),
        (("ses", [0.1]), {"reps": 1}, "reps must be a whole number from 2 to 10000 (got 1)"),
        (("ses", [0.1]), {"reps": 2.5}, "reps must be a whole number from 2 to 10000 (got 2.5)"),
        (("ses", [0.1]), {"reps": True}, "reps must be a whole number"),
        (("ses", [0.1]), {"reps": 10**9}, "reps must be a whole number from 2 to 10000"),
        (("ses", []), {"reps": 3}, "effects must be a list of 1 to 1000 numbers (got [])"),
        (("ses", "0.1"), {"reps": 3}, "effects must be a list of 1 to 1000 numbers (got '0.1')"),
        (("ses", [0.1, float("nan")]), {"reps": 3}, "effect nan is not a finite number"),
        (("ses", [1e300]), {"reps": 3}, "effect 1e+300 lies outside +/-100"),
        (("ses", [0.1]), {"reps": 3, "seed": -1}, "seed must be a whole number from 0 to 4294967295 (got -1)"),
        (("ses", [0.1]), {"reps": 3, "seed": 1.5}, "seed must be a whole number"),
        (("ses", [0.1]), {"reps": 3, "workers": 0}, "workers must be a whole number from 1"),
        (("ses", [0.1]), {"reps": 3, "n_school": 5}, "unknown simulation setting(s): n_school"),
        (("ses", [0.1]), {"reps": 3, "cohorts": (2015,)}, "unknown simulation setting(s): cohorts"),
        (("ses", [0.1]), {"reps": 3, "n_schools": 1}, "n_schools must be a whole number from 2"),
        (("ses", [0.1]), {"reps": 3, "students_per_school": float("inf")}, "students_per_school must be a finite"),
        (("ses", [0.1]), {"reps": 3, "sd_noise": -1.0}, "sd_noise must be a number from 0 to 100 (got -1.0)"),
        (("ses", [0.1]), {"reps": 3, "progress": 5}, "progress must be a function"),
        ((["ses"], [0.1]), {"reps": 3}, "is not simulated"),
    ],
)
def test_power_curve_checks_its_inputs(args: tuple[object, object], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError) as err:
        power_curve(*args, **{"workers": 1, **kwargs})  # type: ignore[arg-type]
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_mde_check_checks_its_inputs() -> None:
    data = simulate.recovery(seed=2, n_schools=20, students_per_school=6)
    fitted = gain(data)
    for kwargs, message in (
        ({"reps": -1}, "reps must be a whole number from 0 to 1000000 (got -1)"),
        ({"reps": 1.5}, "reps must be a whole number"),
        ({"reps": 2, "seed": -3}, "seed must be a whole number from 0"),
    ):
        with pytest.raises(InputError) as err:
            check_mdes(fitted, **kwargs)  # type: ignore[arg-type]
        assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match="needs a fitted recovery model"):
        check_mdes("result", 2)  # type: ignore[arg-type]
    pooled = recovery(  # type: ignore[arg-type]
        data.assign(pv2=data.score8 + 0.01), school="school", cohort="cohort", pandemic_cohorts=[2018, 2019],
        moderators=MODS, pre=["score5", "score5"], post=["score8", "pv2"],
    )  # fmt: skip
    with pytest.raises(InputError, match="pooled over plausible values"):
        check_mdes(pooled, 2)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--reps", "1"], "reps must be a whole number from 2 to 10000 (got 1)"),
        (["--effects", "1e300"], "effect 1e+300 lies outside +/-100"),
        (["--seed", "5000000000"], "seed must be a whole number from 0 to 4294967295"),
        (["--alpha", "2"], "--alpha"),
    ],
)
def test_power_command_gives_one_line(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edueffects.cli import main

    out = tmp_path / "power.json"
    argv = ["power", "recovery", "--schools", "20", "--students-per-school", "6", "--workers", "1", "--quiet"]
    code = main([*argv, "--reps", "3", *flags, "--json", str(out)])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("edueffects: error: ") and message in err, err
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()
