"""Parameter recovery on simulated states, and invariants of the recovery models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from edueffects import recovery, simulate
from edueffects.recovery import RecoveryResult

MODS = ["ses", "nongerman"]


def gain(data: pd.DataFrame, **kwargs: object) -> RecoveryResult:
    base: dict[str, object] = {
        "school": "school",
        "cohort": "cohort",
        "pandemic_cohorts": [2018, 2019],
        "moderators": MODS,
        "pre": "score5",
        "post": "score8",
    }
    base.update(kwargs)
    return recovery(data, **base)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_parameters_are_recovered(seed: int) -> None:
    truth = {"pandemic": -0.10, "pandemic:ses": 0.06, "pandemic:nongerman": -0.25}
    data = simulate.recovery(seed=seed, n_schools=400, students_per_school=40, ddd_ses=0.06, ddd_nongerman=-0.25)
    for res in (gain(data), gain(data, long=True)):
        table = res.tidy().set_index("term")
        prefix = "" if res.model == "gain" else "post:"
        for term, value in truth.items():
            row = table.loc[prefix + term]
            assert abs(row.estimate - value) < 4.0 * row.se, (res.model, term, row.estimate, row.se)
        # gain variance at school level: 0.06^2; school x cohort: 0.08^2 (gain model only)
        if res.model == "gain":
            vc = res.variance_components()
            assert 0.0 <= vc["school:cohort"] < 0.02 and abs(vc["residual"] - 0.5) < 0.05


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), perm=st.integers(0, 1000))
def test_row_order_is_irrelevant(seed: int, perm: int) -> None:
    data = simulate.recovery(seed=seed, n_schools=30, students_per_school=10)
    a = gain(data)
    b = gain(data.sample(frac=1.0, random_state=perm))
    np.testing.assert_allclose(b.coefficients.estimate, a.coefficients.estimate, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(b.robust.se, a.robust.se, rtol=1e-6)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), shift=st.floats(-3, 3), scale=st.floats(0.2, 5))
def test_moderator_units_rescale_effects(seed: int, shift: float, scale: float) -> None:
    data = simulate.recovery(seed=seed, n_schools=30, students_per_school=10)
    a = gain(data)
    b = gain(data.assign(ses=data.ses * scale + shift))
    ia, ib = a.coefficients.names.index("pandemic:ses"), b.coefficients.names.index("pandemic:ses")
    assert b.coefficients.estimate[ib] == pytest.approx(a.coefficients.estimate[ia] / scale, rel=1e-6, abs=1e-10)
    assert b.coefficients.pval[ib] == pytest.approx(a.coefficients.pval[ia], rel=1e-6, abs=1e-12)
    std_a, std_b = gain(data, standardize=True), gain(data.assign(ses=data.ses * scale + shift), standardize=True)
    np.testing.assert_allclose(std_b.coefficients.estimate, std_a.coefficients.estimate, rtol=1e-6, atol=1e-10)


def test_long_model_from_wide_equals_long_table() -> None:
    data = simulate.recovery(seed=5, n_schools=50, students_per_school=15)
    wide = gain(data, long=True)
    table = simulate.to_long(data, occasion="post")
    long = recovery(
        table, school="school", cohort="cohort", pandemic_cohorts=[2018, 2019], moderators=MODS,
        student="student", long=True, occasion="post", score="score",
    )  # fmt: skip
    assert long.coefficients.names == wide.coefficients.names
    np.testing.assert_allclose(long.coefficients.estimate, wide.coefficients.estimate, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(long.robust.se, wide.robust.se, rtol=1e-8)


def test_equivalence_and_mdes_are_consistent() -> None:
    data = simulate.recovery(seed=9, n_schools=200, students_per_school=30)
    res = gain(data, standardize=True, sesoi=0.05)
    for eq, md in zip(res.equivalence, res.mdes, strict=True):
        assert eq.equivalent == (eq.ci90_lb > -0.05 and eq.ci90_ub < 0.05)
        assert eq.df is not None and md.df == eq.df
        expected = (stats.t.ppf(0.975, eq.df) + stats.t.ppf(0.8, eq.df)) * eq.se
        assert md.mdes == pytest.approx(expected, rel=1e-12)
    assert res.to_dict()["equivalence"]["moderators_standardized"] is True  # type: ignore[index]


def test_unlinked_long_model_runs_on_cross_sections() -> None:
    data = simulate.to_long(simulate.recovery(seed=6, n_schools=60, students_per_school=20))
    res = recovery(
        data.drop(columns=["student"]), school="school", cohort="cohort", pandemic_cohorts=[2018, 2019],
        moderators=MODS, long=True, occasion="occasion", score="score",
    )  # fmt: skip
    assert res.model == "long_unlinked"
    assert res.variance_names == ("school", "school:cohort", "school:cohort:occasion", "residual")
    assert "occasion:pandemic:ses" in res.ddd_terms and res.convergence.converged


def test_plausible_values_pool_with_rubins_rules() -> None:
    data = simulate.recovery(seed=21, n_schools=60, students_per_school=15)
    rng = np.random.default_rng(0)
    pv = data.assign(
        pre_1=data.score5, pre_2=data.score5, post_1=data.score8, post_2=data.score8,
        pre_3=data.score5 + rng.normal(0, 0.3, len(data)), post_3=data.score8 + rng.normal(0, 0.3, len(data)),
    )  # fmt: skip
    single = gain(data)
    same = gain(pv, pre=["pre_1", "pre_2"], post=["post_1", "post_2"])
    np.testing.assert_allclose(same.coefficients.estimate, single.coefficients.estimate, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(same.coefficients.se, single.coefficients.se, rtol=1e-10)
    assert same.plausible_values == 2
    mixed = gain(pv, pre=["pre_1", "pre_3"], post=["post_1", "post_3"])
    fits = [gain(pv, pre=p, post=q) for p, q in (("pre_1", "post_1"), ("pre_3", "post_3"))]
    est = np.array([f.coefficients.estimate for f in fits])
    within = np.mean([f.coefficients.se**2 for f in fits], axis=0)
    total = within + 1.5 * est.var(axis=0, ddof=1)
    np.testing.assert_allclose(mixed.coefficients.estimate, est.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(mixed.coefficients.se, np.sqrt(total), rtol=1e-12)
    assert any("Rubin" in n for n in mixed.notes)
    with pytest.raises(Exception, match="plausible value"):
        gain(pv, pre=["pre_1", "pre_2"], post=["post_1"])


def test_domains_are_analysed_separately() -> None:
    from edueffects.recovery import recovery_by_domain

    data = simulate.recovery(seed=31, n_schools=40, students_per_school=12, domains=("reading", "maths"))
    results = recovery_by_domain(
        data, "domain", school="school", cohort="cohort", pandemic_cohorts=[2018, 2019], moderators=MODS,
        pre="score5", post="score8",
    )  # fmt: skip
    assert sorted(results) == ["maths", "reading"]
    direct = gain(data[data.domain == "maths"])
    np.testing.assert_allclose(results["maths"].coefficients.estimate, direct.coefficients.estimate, rtol=1e-9)
