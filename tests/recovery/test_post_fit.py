"""Post-fit tests of the recovery models against R: likelihood-ratio tests (lme4 ``anova``), model-based
joint F tests (lmerTest ``contest(joint = TRUE)``, contestMD) and cluster-robust joint tests (clubSandwich
``Wald_test`` on CR2 by school).

Values from ``tests/reference/lme4_recovery_lrt.R`` on ``data/recovery_small.csv``. Statistics, df,
log-likelihoods and information criteria agree to 1e-6 relative. p-values are compared at 1e-5: the
estimates of lme4's optimiser and ours differ in the 7th digit, and a p-value of 3e-8 moves about 20
times faster (relatively) than its F statistic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import edueffects as ee
from edueffects import InputError, recovery
from edueffects.recovery import RecoveryResult

REF = Path(__file__).resolve().parents[1] / "reference"
CASES: dict[str, Any] = json.loads((REF / "lme4_recovery_lrt.json").read_text())
COMMON: dict[str, Any] = {"school": "school", "cohort": "cohort", "pandemic_cohorts": [2018, 2019]}
FULL = ("ses", "nongerman")
# LRT case: (model, full moderators, reduced moderators)
LRT_CASES = {
    "gain_ml_nongerman": ("gain", FULL, ("ses",)),
    "gain_ml_dose": ("gain", (*FULL, "lost_days"), ("ses",)),
    "long_ml_nongerman": ("long", FULL, ("ses",)),
}
Fits = dict[tuple[str, str, tuple[str, ...]], RecoveryResult]


@pytest.fixture(scope="module")
def fits() -> Fits:
    """Fits by (model, method, moderators), each made once."""
    data = pd.read_csv(REF / "data" / "recovery_small.csv")
    long = pd.concat([data.assign(g8=0, y=data.score5), data.assign(g8=1, y=data.score8)], ignore_index=True)
    wanted = {("gain", "REML", FULL), ("gain", "ML", FULL), ("long", "REML", FULL)}
    for model, full, reduced in LRT_CASES.values():
        wanted |= {(model, "ML", full), (model, "ML", reduced)}
    out: Fits = {}
    for model, method, mods in sorted(wanted):
        if model == "gain":
            out[(model, method, mods)] = recovery(
                data, moderators=mods, method=method, pre="score5", post="score8", **COMMON
            )
        else:
            out[(model, method, mods)] = recovery(
                long, moderators=mods, method=method, student="student", long=True, occasion="g8", score="y", **COMMON
            )
    return out


@pytest.mark.parametrize("name", sorted(LRT_CASES))
def test_likelihood_ratio_test_matches_lme4_anova(name: str, fits: Fits) -> None:
    ref = CASES["lrt"][name]
    model, full_mods, reduced_mods = LRT_CASES[name]
    full, reduced = fits[(model, "ML", full_mods)], fits[(model, "ML", reduced_mods)]
    test = ee.anova(reduced, full)  # either order: the larger model is the full one
    assert [test.df_reduced, test.df_full] == ref["npar"] and test.df == ref["Df"]
    assert full.fit_record.n_obs == ref["nobs"]
    np.testing.assert_allclose([test.loglik_reduced, test.loglik_full], ref["logLik"], rtol=1e-6)
    np.testing.assert_allclose([test.aic_reduced, test.aic_full], ref["AIC"], rtol=1e-6)
    np.testing.assert_allclose([test.bic_reduced, test.bic_full], ref["BIC"], rtol=1e-6)
    assert test.statistic == pytest.approx(ref["Chisq"], rel=1e-6)
    assert test.pval == pytest.approx(ref["pval"], rel=1e-6)
    assert (full.aic, full.bic) == (test.aic_full, test.bic_full)


CONTEST_CASES = [(fit, name) for fit in sorted(CASES["contest"]) for name in sorted(CASES["contest"][fit]["tests"])]


@pytest.mark.parametrize(("fit", "name"), CONTEST_CASES)
def test_joint_wald_matches_lmertest_contest(fit: str, name: str, fits: Fits) -> None:
    model, method = fit.split("_")
    res = fits[(model, method.upper(), FULL)]
    ref = CASES["contest"][fit]
    np.testing.assert_allclose(res.coefficients.df, ref["coef_df"], rtol=1e-6)
    case = ref["tests"][name]
    test = res.wald(L=case["L"])
    assert test.df1 == case["NumDF"] and test.distribution == "F"
    assert test.statistic == pytest.approx(case["F"], rel=1e-6)
    assert test.df2 == pytest.approx(case["DenDF"], rel=1e-6)
    assert test.pval == pytest.approx(case["pval"], rel=1e-5)


ROBUST_CASES = [(fit, name) for fit in sorted(CASES["wald_cr2"]) for name in sorted(CASES["wald_cr2"][fit])]


@pytest.mark.parametrize(("fit", "name"), ROBUST_CASES)
@pytest.mark.parametrize("kind", ["HTZ", "Naive-F", "chi-sq"])
def test_robust_wald_matches_clubsandwich(fit: str, name: str, kind: str, fits: Fits) -> None:
    model, _ = fit.split("_")
    res = fits[(model, "REML", FULL)]
    case = CASES["wald_cr2"][fit][name]
    ref = case[kind]
    test = res.robust_wald(L=case["L"], test=kind)  # type: ignore[arg-type]
    assert test.df1 == ref["df_num"]
    # clubSandwich's Fstat is Q / q for chi-sq; ours reports Q there
    fstat = test.statistic / test.df1 if kind == "chi-sq" else test.statistic
    assert fstat == pytest.approx(ref["Fstat"], rel=1e-6)
    if kind == "chi-sq":
        assert test.df2 is None and test.distribution == "chi2"
    else:
        assert test.df2 == pytest.approx(ref["df_denom"], rel=1e-6)
    assert test.pval == pytest.approx(ref["p_val"], rel=1e-5)


@pytest.mark.parametrize("key", [("gain", "REML", FULL), ("gain", "ML", FULL), ("long", "REML", FULL)])
def test_one_hypothesis_reproduces_the_coefficient_t_tests(key: tuple[str, str, tuple[str, ...]], fits: Fits) -> None:
    res = fits[key]
    c, r = res.coefficients, res.robust
    for i, name in enumerate(c.names):
        model = res.wald(name)
        assert model.statistic == pytest.approx(c.stat[i] ** 2, rel=1e-10)
        assert model.df2 == pytest.approx(c.df[i], rel=1e-10) and model.pval == pytest.approx(c.pval[i], rel=1e-8)
        robust = res.robust_wald(name)
        assert robust.statistic == pytest.approx((c.estimate[i] / r.se[i]) ** 2, rel=1e-8)
        assert robust.df2 == pytest.approx(r.df[i], rel=1e-8) and robust.pval == pytest.approx(r.pval[i], rel=1e-6)
    # names or the matching identity rows give the same test
    by_name = res.wald(list(res.ddd_terms))
    rows = np.eye(len(c.names))[[list(c.names).index(t) for t in res.ddd_terms]]
    assert res.wald(L=rows).statistic == pytest.approx(by_name.statistic, rel=1e-12)
    assert by_name.contrasts is not None and list(by_name.contrasts.df) == pytest.approx(
        [c.df[list(c.names).index(t)] for t in res.ddd_terms], rel=1e-10
    )


def test_lrt_refuses_what_it_cannot_compare(fits: Fits) -> None:
    reml, ml = fits[("gain", "REML", FULL)], fits[("gain", "ML", FULL)]
    with pytest.raises(InputError, match="different methods"):
        ee.anova(reml, fits[("gain", "ML", ("ses",))])
    with pytest.raises(InputError, match="same number of parameters"):
        ee.anova(ml, ml)
    with pytest.raises(InputError, match="different data"):
        ee.anova(ml, fits[("long", "ML", ("ses",))])
    data = pd.read_csv(REF / "data" / "recovery_small.csv")
    fewer = recovery(data[data.school != 0], moderators=["ses"], method="ML", pre="score5", post="score8", **COMMON)
    with pytest.raises(InputError, match="different data"):
        ee.anova(ml, fewer)
    reml_reduced = recovery(data, moderators=["ses"], pre="score5", post="score8", **COMMON)
    with pytest.raises(InputError, match="REML likelihoods"):
        ee.anova(reml, reml_reduced)
    # the same data with the moderators rescaled is the same data (z-scores of the moderators)
    scaled = recovery(data, moderators=["ses"], method="ML", pre="score5", post="score8", standardize=True, **COMMON)
    assert ee.anova(ml, scaled).df == 2


def test_pooled_results_refuse_joint_and_likelihood_ratio_tests() -> None:
    data = pd.read_csv(REF / "data" / "recovery_small.csv")
    rng = np.random.default_rng(3)
    pv = data.assign(post_2=data.score8 + rng.normal(0, 0.2, len(data)))
    args: dict[str, Any] = {"pre": ["score5", "score5"], "post": ["score8", "post_2"], "method": "ML", **COMMON}
    full = recovery(pv, moderators=list(FULL), **args)
    reduced = recovery(pv, moderators=["ses"], **args)
    with pytest.raises(InputError, match="pooled over plausible values"):
        full.wald("pandemic:ses")
    with pytest.raises(InputError, match="pooled over plausible values"):
        full.robust_wald("pandemic:ses")
    with pytest.raises(InputError, match="need models fitted by ML or REML"):
        ee.anova(full, reduced)


def test_bad_hypotheses(fits: Fits) -> None:
    res = fits[("gain", "REML", FULL)]
    with pytest.raises(InputError, match="neither a coefficient"):
        res.wald("pandemic:lost_days")
    with pytest.raises(InputError, match="not both or neither"):
        res.robust_wald()
    with pytest.raises(InputError, match="column"):
        res.wald(L=[[1.0, 0.0]])
    with pytest.raises(InputError, match="not linearly independent"):
        res.wald(L=[[0, 1, 0, 0, 0, 0], [0, 2, 0, 0, 0, 0]])
    with pytest.raises(InputError, match="cluster-robustly"):
        res.robust_wald(L=[[0, 1, 0, 0, 0, 0], [0, 2, 0, 0, 0, 0]])
    with pytest.raises(InputError, match="robust test"):
        res.robust_wald("pandemic", test="Wilks")  # type: ignore[arg-type]


def test_display(fits: Fits) -> None:
    res = fits[("gain", "REML", FULL)]
    assert repr(res) == "<RecoveryResult: Learning recovery: gain model (grade-to-grade gain, linked students), REML>"
    html = res._repr_html_()
    assert html.startswith("<pre>") and "Fixed effects" in html and "pandemic:ses" in html
    assert "Satterthwaite" in res.wald(list(res.ddd_terms)).summary()


def test_the_data_identity_is_exact_from_run_to_run(fits: Fits) -> None:
    """DuckDB's threads add floating-point sums in varying order; the identity holds counts and checksums."""
    from edueffects.recovery.data import RecoverySpec, aggregate
    from edueffects.recovery.model import data_identity

    data = pd.read_csv(REF / "data" / "recovery_small.csv")
    long = pd.concat([data.assign(g8=0, y=data.score5), data.assign(g8=1, y=data.score8)], ignore_index=True)
    spec = RecoverySpec("school", "cohort", ("2018", "2019"), ("ses",), student="student", occasion="g8", score="y",
                        long=True)  # fmt: skip
    first = data_identity(aggregate(long, spec))
    for _ in range(10):
        assert np.array_equal(data_identity(aggregate(long, spec)), first)
    # a file and a DataFrame of the same numbers are the same data
    from_file = recovery(REF / "data" / "recovery_small.csv", moderators=["ses"], method="ML", pre="score5",
                         post="score8", **COMMON)  # fmt: skip
    assert ee.anova(fits[("gain", "ML", FULL)], from_file).df == 2
