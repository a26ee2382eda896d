"""Simulation-based power above the recovery engine: the MDE check and the power curve."""

from __future__ import annotations

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
