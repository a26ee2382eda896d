"""Sensitivity analyses of the SOMA workflow: each estimate against a fit of its own data computed here,
the dependent-pair rule, the verdict rules and bad options."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edueffects import InputError, meta, simulate
from edueffects.meta import pet_peese
from edueffects.options import DEFAULT_RHOS
from edueffects.report.i18n import Language
from edueffects.soma import soma
from edueffects.soma.quality import appraise
from edueffects.soma.result import SomaResult
from edueffects.soma.sensitivity import Bounded, SensitivityEstimate, SomaSensitivity, soma_sensitivity

MA = "meta_analysis"


@pytest.fixture(scope="module")
def example() -> simulate.SomaExample:
    return simulate.soma()


@pytest.fixture(scope="module")
def result(example: simulate.SomaExample) -> SomaResult:
    return soma(example.effects, studies=example.studies, amstar=example.amstar)


@pytest.fixture(scope="module")
def sens(result: SomaResult) -> SomaSensitivity:
    assert result.sensitivity is not None
    return result.sensitivity


def fit(effects: pd.DataFrame, **kwargs: object):  # type: ignore[no-untyped-def]
    return meta(effects, "z", "vz", cluster=MA, within="es_id", variance_ci=False, **kwargs)  # type: ignore[arg-type]


def assert_estimate(est: SensitivityEstimate, effects: pd.DataFrame) -> None:
    """The estimate equals a three-level fit of ``effects`` (with CR2 by meta-analysis) done here."""
    direct = fit(effects)
    c, rc = direct.coefficients, direct.robust(MA).coefficients
    assert est.k == len(effects) and est.n_meta_analyses == effects[MA].nunique()
    np.testing.assert_allclose(
        [est.z, est.se, est.ci_lb, est.ci_ub],
        [c.estimate[0], c.se[0], c.ci_lb[0], c.ci_ub[0]],
        rtol=1e-6,
    )
    assert est.robust_se == pytest.approx(float(rc.se[0]), rel=1e-6)
    assert est.robust_df == pytest.approx(float(rc.df[0]), rel=1e-6)
    assert est.robust_p == pytest.approx(float(rc.pval[0]), rel=1e-6, abs=1e-300)
    assert est.r == pytest.approx(float(np.tanh(c.estimate[0])), rel=1e-6)


def test_full_row_is_the_main_model(result: SomaResult, sens: SomaSensitivity) -> None:
    assert sens.full.z == float(result.overall.coefficients.estimate[0])
    assert sens.full.robust_p == float(result.overall_robust.coefficients.pval[0])
    assert sens.tidy().iloc[0].analysis == "full"


def test_leave_one_meta_analysis_out_equals_fits_without_it(result: SomaResult, sens: SomaSensitivity) -> None:
    effects = result.effects
    assert [e.dropped[0] for e in sens.leave_one_out] == list(pd.unique(effects[MA].astype(str)))
    for est in sens.leave_one_out[::5]:
        assert_estimate(est, effects[effects[MA] != est.dropped[0]])
    rs = [e.r for e in sens.leave_one_out]
    d = sens.to_dict()["leave_one_out"]
    assert d["r_min"] == min(rs) and d["r_max"] == max(rs)  # type: ignore[index]
    change = sens.largest_change
    assert abs(change.r - sens.full.r) == max(abs(r - sens.full.r) for r in rs)


def test_cooks_distance_by_meta_analysis(result: SomaResult, sens: SomaSensitivity) -> None:
    """(b - b(-i))^2 / Var(b) with b(-i) from a fit without meta-analysis i; flagged above qchisq(.5, 1)."""
    effects = result.effects
    b = float(result.overall.coefficients.estimate[0])
    vb = float(result.overall.coefficients.se[0]) ** 2
    for row in sens.cook.iloc[:4].itertuples():
        without = float(fit(effects[effects[MA] != row.meta_analysis]).coefficients.estimate[0])
        assert row.cook_d == pytest.approx((b - without) ** 2 / vb, rel=1e-5)
    assert sens.cook_cutoff == pytest.approx(0.4549364231195724, rel=1e-12)
    assert list(sens.influential) == list(sens.cook.meta_analysis[sens.cook.cook_d > sens.cook_cutoff])


def test_without_critically_low_equals_fit_on_filtered_rows(
    result: SomaResult, sens: SomaSensitivity, example: simulate.SomaExample
) -> None:
    quality = appraise(example.amstar)
    low = set(quality.loc[quality.confidence == "Critically low", MA])
    assert low and sens.amstar_status == "fitted" and sens.amstar is not None
    assert set(sens.amstar.dropped) == low
    effects = result.effects
    assert_estimate(sens.amstar, effects[~effects[MA].isin(low)])


def test_none_critically_low_is_said(example: simulate.SomaExample) -> None:
    amstar = example.amstar.copy()
    items = [f"item{i}" for i in range(1, 17)]
    amstar[items] = "yes"
    res = soma(example.effects, amstar=amstar)
    assert res.sensitivity is not None
    assert res.sensitivity.amstar is None and res.sensitivity.amstar_status == "none critically low"
    assert any("critically low" in n for n in res.sensitivity.notes)
    without = soma(example.effects)
    assert without.sensitivity is not None and without.sensitivity.amstar_status == "no AMSTAR table"
    assert without.sensitivity.overlap_status == "no studies table"


def test_too_few_left_without_critically_low(example: simulate.SomaExample) -> None:
    amstar = example.amstar.copy()
    items = [f"item{i}" for i in (2, 4, 7)]
    amstar[items] = "no"
    amstar.loc[0, items] = "yes"
    res = soma(example.effects, amstar=amstar)
    assert res.sensitivity is not None and res.sensitivity.amstar_status == "too few left"
    assert res.sensitivity.amstar is None


def overlapping_studies(example: simulate.SomaExample) -> pd.DataFrame:
    """MA02 includes every study of MA01 (and its own); MA04 and MA05 share all of MA05's studies."""
    studies = example.studies
    extra = [
        studies[studies[MA] == "SYN-MA01"].assign(**{MA: "SYN-MA02"}),
        studies[studies[MA] == "SYN-MA05"].assign(**{MA: "SYN-MA04"}),
    ]
    return pd.concat([studies, *extra], ignore_index=True)


def test_one_of_each_dependent_pair(example: simulate.SomaExample) -> None:
    studies = overlapping_studies(example)
    res = soma(example.effects, studies=studies, amstar=example.amstar)
    sens = res.sensitivity
    assert sens is not None and sens.overlap_status == "fitted" and sens.overlap is not None
    pairs = sens.pairs
    dependent = res.overlap.pairs[res.overlap.pairs.dependent]  # type: ignore[union-attr]
    assert len(pairs) == len(dependent) >= 2
    counts = studies.drop_duplicates([MA, "study"]).groupby(MA).size()
    for row in pairs.itertuples():
        assert row.dropped in (row.meta_analysis_a, row.meta_analysis_b)
        assert row.kept == ({row.meta_analysis_a, row.meta_analysis_b} - {row.dropped}).pop()
        assert counts[row.kept] >= counts[row.dropped]  # the larger one is kept
        assert row.share_percent >= 50.0
    assert {"SYN-MA01", "SYN-MA05"} <= set(sens.overlap.dropped)
    effects = res.effects
    assert_estimate(sens.overlap, effects[~effects[MA].astype(str).isin(set(sens.overlap.dropped))])


def test_ties_keep_the_higher_quality_then_the_more_recent(example: simulate.SomaExample) -> None:
    effects, studies = example.effects, example.studies
    a_studies = studies[studies[MA] == "SYN-MA01"]
    twin = a_studies.assign(**{MA: "SYN-MA02"})  # MA02 lists exactly MA01's studies: a tie on size
    tied = pd.concat([studies[studies[MA] != "SYN-MA02"], twin], ignore_index=True)
    quality = appraise(example.amstar).set_index(MA).criteria_met
    res = soma(effects, studies=tied, amstar=example.amstar)
    assert res.sensitivity is not None
    row = res.sensitivity.pairs.set_index(["meta_analysis_a", "meta_analysis_b"]).loc[("SYN-MA01", "SYN-MA02")]
    if quality["SYN-MA01"] != quality["SYN-MA02"]:
        assert row.kept == quality[["SYN-MA01", "SYN-MA02"]].idxmax()
    no_quality = soma(effects, studies=tied)
    assert no_quality.sensitivity is not None
    years = effects.groupby(MA).year.first()
    row = no_quality.sensitivity.pairs.set_index(["meta_analysis_a", "meta_analysis_b"]).loc[("SYN-MA01", "SYN-MA02")]
    expected = "SYN-MA01" if years["SYN-MA01"] >= years["SYN-MA02"] else "SYN-MA02"
    assert row.kept == expected
    same_year = soma(effects.assign(year=2000), studies=tied)
    assert same_year.sensitivity is not None
    assert same_year.sensitivity.pairs.kept.iloc[0] == "SYN-MA01"  # then the first by name


def test_no_dependent_pairs_is_said(sens: SomaSensitivity) -> None:
    assert sens.overlap_status == "no dependent pairs" and sens.overlap is None and sens.pairs.empty
    assert any("half or more" in n for n in sens.notes)


def test_che_over_rho(result: SomaResult, sens: SomaSensitivity) -> None:
    """The CHE rows at the positive rho of DEFAULT_RHOS (rho = 0 is the main model: a fit with rho = 0 equals
    it, so it is no sensitivity estimate); each row equals a fit with that rho done here."""
    assert [e.rho for e in sens.che] == [0.2, 0.4, 0.6, 0.8] == [r for r in DEFAULT_RHOS if r > 0]
    zero = fit(result.effects, rho=0.0)
    assert float(zero.coefficients.estimate[0]) == pytest.approx(sens.full.z, rel=1e-6)
    assert float(zero.robust(MA).coefficients.pval[0]) == pytest.approx(sens.full.robust_p, rel=1e-6)
    for est in sens.che[1::2]:
        direct = fit(result.effects, rho=est.rho)
        c, rc = direct.coefficients, direct.robust(MA).coefficients
        np.testing.assert_allclose([est.z, est.se, est.ci_lb, est.ci_ub], [c.estimate[0], c.se[0], c.ci_lb[0],
                                   c.ci_ub[0]], rtol=1e-6)  # fmt: skip
        assert est.robust_p == pytest.approx(float(rc.pval[0]), rel=1e-6)
        assert est.k == result.overall.k and est.n_meta_analyses == result.overall.n_groups[0]
    assert str(sens.che[0].label) == "CHE working model, rho = .2"
    assert sens.to_dict()["che"]["rhos"] == [0.2, 0.4, 0.6, 0.8]  # type: ignore[index]


def test_rho_zero_is_not_counted_as_a_sensitivity_estimate(sens: SomaSensitivity) -> None:
    """The verdict's count, the table and the JSON hold the same estimates, none of them the main model
    again (the CHE model at rho = 0)."""
    assert all(e.rho != 0 for e in sens.che)
    n = len(sens.leave_one_out) + (sens.amstar is not None) + (sens.overlap is not None) + 4 + 1
    assert len(sens.estimates()) == n == len(sens.tidy()) - 1
    assert f"all {n} sensitivity estimates" in str(sens.verdict_message)
    record = sens.to_dict()
    assert record["n_estimates"] == n
    assert len(record["che"]["estimates"]) == 4  # type: ignore[index]
    assert not any(row["label"].endswith("rho = 0") for row in record["che"]["estimates"])  # type: ignore[index]


def test_small_study_effects(result: SomaResult, sens: SomaSensitivity) -> None:
    assert sens.egger == result.egger_slope
    direct = pet_peese(fit(result.effects), model="rma")
    assert sens.pet_peese_fit.selected == direct.selected
    assert sens.pet_peese.z == pytest.approx(direct.estimate, rel=1e-6)
    assert sens.pet_peese.ci_lb == pytest.approx(direct.ci_lb, rel=1e-6)
    assert sens.to_dict()["small_study"]["pet_peese"]["model"].startswith("three-level")  # type: ignore[index]


def estimate(z: float, p: float, analysis: str = "pet-peese") -> SensitivityEstimate:
    from edueffects.core.errors import Message

    return SensitivityEstimate(analysis, Message("test {0}", z), 10, 3, z, 0.05, z - 0.1, z + 0.1, p, robust_p=p)


def test_verdict_rules(sens: SomaSensitivity) -> None:
    assert sens.verdict == "robust"
    assert "robust" in str(sens.verdict_message) and "±.05 of r = .26" in str(sens.verdict_message)
    z = sens.full.z
    shifted = replace(sens, pet_peese=estimate(float(np.arctanh(np.tanh(z) + 0.08)), 1e-4))
    assert shifted.verdict == "size-sensitive" and len(shifted.shifted) == 1
    assert "test" in str(shifted.verdict_message)
    assert replace(sens, band=0.1, pet_peese=shifted.pet_peese).verdict == "robust"
    lost = replace(sens, pet_peese=estimate(z, 0.2))
    assert lost.verdict == "not robust" and lost.changed == (lost.pet_peese,)
    flipped = replace(sens, pet_peese=estimate(-z, 1e-4))
    assert flipped.verdict == "not robust"
    # a pooled estimate that is not significant: keeping the conclusion means staying non-significant
    null_full = replace(sens.full, robust_p=0.3)
    null = replace(sens, full=null_full, leave_one_out=(), amstar=None, pet_peese=estimate(-z * 0.1, 0.6))
    assert null.keeps_conclusion(null.pet_peese)
    assert not null.keeps_conclusion(estimate(z, 0.01))
    frame = sens.tidy()
    assert frame.keeps_conclusion.all() and frame.within_band.all()
    assert len(frame) == 1 + len(sens.estimates())


def test_sensitivity_can_be_skipped_and_bad_options_are_refused(
    result: SomaResult, example: simulate.SomaExample
) -> None:
    res = soma(example.effects, sensitivity=False)
    assert res.sensitivity is None and res.tidy("sensitivity").empty and res.to_dict()["sensitivity"] is None
    assert "Sensitivity" not in res.summary() and "Sensitivity analyses" in result.summary()
    with pytest.raises(InputError, match="sensitivity must be true or false"):
        soma(example.effects, sensitivity="yes")  # type: ignore[arg-type]
    for kwargs in ({"band": 0.0}, {"band": -0.1}, {"band": True}, {"alpha": 1.5}, {"alpha": "0.05"}):
        with pytest.raises(InputError, match=r"sensitivity (band|alpha) must be a number"):
            soma_sensitivity(result, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="give the result of soma"):
        soma_sensitivity("result")  # type: ignore[arg-type]


def test_json_and_tables(result: SomaResult) -> None:
    from edueffects.io.json_output import dumps

    d = result.to_dict()["sensitivity"]
    assert isinstance(d, dict) and d["verdict"] == "robust"
    assert "rule" in d["overlap"] and d["rules"] == {"alpha": 0.05, "band_r": 0.05}
    dumps(result.to_dict())
    assert "sensitivity" in result.ANALYSES and not result.tidy("sensitivity").empty


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16))
def test_row_order_does_not_matter(example: simulate.SomaExample, seed: int) -> None:
    effects = example.effects[example.effects[MA].isin([f"SYN-MA{i:02d}" for i in range(1, 9)])]
    shuffled = effects.sample(frac=1.0, random_state=seed)
    a, b = soma(effects, moderators=[]), soma(shuffled, moderators=[])
    assert a.sensitivity is not None and b.sensitivity is not None
    loo_a = {e.dropped[0]: e for e in a.sensitivity.leave_one_out}
    for e in b.sensitivity.leave_one_out:
        assert e.z == pytest.approx(loo_a[e.dropped[0]].z, rel=1e-6)
        assert e.robust_p == pytest.approx(loo_a[e.dropped[0]].robust_p, rel=1e-5)
    assert b.sensitivity.pet_peese.z == pytest.approx(a.sensitivity.pet_peese.z, rel=1e-6)


def test_command_line_shows_the_section(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    import json

    from edueffects.cli import main

    assert main(["soma", "--example", "--quiet", "--json", str(tmp_path / "out.json")]) == 0
    printed = capsys.readouterr().out
    assert "Sensitivity analyses" in printed and "verdict (robust)" in printed and "PET-PEESE" in printed
    record = json.loads((tmp_path / "out.json").read_text())["sensitivity"]
    assert record["verdict"] == "robust" and len(record["leave_one_out"]["estimates"]) == 26
    assert main(["soma", "--example", "--quiet", "--no-sensitivity", "--plots", str(tmp_path / "p")]) == 0
    assert "Sensitivity analyses" not in capsys.readouterr().out
    assert not (tmp_path / "p" / "leave_one_out.svg").exists() and (tmp_path / "p" / "forest.svg").exists()


def test_against_metafor_and_clubsandwich(result: SomaResult, sens: SomaSensitivity) -> None:
    """tests/reference/soma_sensitivity.R on the example's z and vz (tests/reference/data/soma_example.csv)."""
    import json
    from pathlib import Path

    here = Path(__file__).resolve().parents[1] / "reference"
    ref = json.loads((here / "soma_sensitivity.json").read_text())
    data = pd.read_csv(here / "data" / "soma_example.csv")
    np.testing.assert_allclose(data.z, result.effects.z, rtol=1e-15)  # the same effects

    def close(est: SensitivityEstimate, r: dict[str, float]) -> None:
        assert est.k == r["k"]
        got = [est.z, est.se, est.ci_lb, est.ci_ub, est.robust_se, est.robust_df, est.robust_p]
        want = [r[key] for key in ("estimate", "se", "ci_lb", "ci_ub", "robust_se", "robust_df", "robust_p")]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-300)

    close(sens.full, ref["full"])
    by_name = {e.dropped[0]: e for e in sens.leave_one_out}
    assert [r["meta_analysis"] for r in ref["leave_one_out"]] == list(by_name)
    for r in ref["leave_one_out"]:
        close(by_name[r["meta_analysis"]], r)
    cook = sens.cook.set_index("meta_analysis").cook_d
    np.testing.assert_allclose(cook[ref["cook"]["meta_analysis"]], ref["cook"]["cook_d"], rtol=1e-6, atol=1e-8)
    assert sens.amstar is not None and list(sens.amstar.dropped) == ref["amstar"]["dropped"]
    close(sens.amstar, ref["amstar"])
    chosen = ref["peese"] if sens.pet_peese_fit.selected == "PEESE" else ref["pet"]
    assert sens.pet_peese.z == pytest.approx(chosen["estimate"], rel=1e-6)
    assert sens.pet_peese.se == pytest.approx(chosen["se"], rel=1e-6)
    assert sens.pet_peese_fit.pet.limit_estimate == pytest.approx(ref["pet"]["estimate"], rel=1e-6)
    close(next(e for e in sens.che if e.rho == 0.6), ref["che_0.6"])


def single_cluster(example: simulate.SomaExample, n: int) -> pd.DataFrame:
    """The effects of the first ``n`` meta-analyses, all in one outcome cluster."""
    effects = example.effects
    names = sorted(effects[MA].unique())[:n]
    return effects[effects[MA].isin(names)].assign(outcome_cluster="all outcomes")


def test_two_meta_analyses_leave_one_out_model_based(example: simulate.SomaExample) -> None:
    """With two meta-analyses each leave-one-out fit holds one, which CR2 cannot cluster: the fits keep their
    model-based p (metafor's leave1out), a note says so, and the verdict decides on those p values."""
    res = soma(single_cluster(example, 2), moderators=[])
    effects, sens = res.effects, res.sensitivity
    assert sens is not None and len(sens.leave_one_out) == 2 and sens.loo_model_based
    for est in sens.leave_one_out:
        assert est.robust_p is None and est.robust_se is None and est.robust_df is None
        assert est.decisive_p == est.p and est.n_meta_analyses == 1
        direct = fit(effects[effects[MA] != est.dropped[0]])
        assert est.z == pytest.approx(float(direct.coefficients.estimate[0]), rel=1e-5)
    assert any("leaving one out leaves a single one" in str(n) for n in sens.notes)
    assert "model-based p" in str(sens.notes[-1])
    assert sens.full.robust_p is not None and all(e.robust_p is not None for e in sens.che)
    assert "p = " in sens.summary() and sens.verdict in ("robust", "size-sensitive", "not robust")
    assert sens.to_dict()["leave_one_out"]["estimates"][0]["robust_p"] is None  # type: ignore[index]


def test_three_meta_analyses_leave_one_out_cr2(example: simulate.SomaExample) -> None:
    res = soma(single_cluster(example, 3), moderators=[])
    effects, sens = res.effects, res.sensitivity
    assert sens is not None and not sens.loo_model_based
    assert not any("leaving one out" in str(n) for n in sens.notes)
    for est in sens.leave_one_out:
        rest = effects[effects[MA] != est.dropped[0]]
        direct = fit(rest).robust(MA).coefficients
        assert est.n_meta_analyses == 2
        assert est.robust_p == pytest.approx(float(direct.pval[0]), rel=1e-5)


def test_alpha_and_band_are_printed_as_used(result: SomaResult) -> None:
    """The verdict sentence names the alpha and band it applied, in every language."""
    strict = soma_sensitivity(result, alpha=0.01, band=0.025)
    en = str(strict.verdict_message)
    assert "p < .01" in en and ".05" not in en
    nl = strict.verdict_message.translated(Language.of("nl"))
    de = strict.verdict_message.translated(Language.of("de"))
    assert "p < 0,01" in nl and "0,05" not in nl and "p < 0,01" in de and "0,05" not in de
    if strict.verdict == "robust":
        assert "±.025" in en and "±0,025" in nl
    for verdict in ("size-sensitive", "not robust"):
        z = strict.full.z
        changed = (
            replace(strict, pet_peese=estimate(float(np.arctanh(np.tanh(z) + 0.08)), 1e-4))
            if verdict == "size-sensitive"
            else replace(strict, pet_peese=estimate(-z, 1e-4))
        )
        assert changed.verdict == verdict
        text = str(changed.verdict_message)
        assert "p < .01" in text and ".05" not in text
        assert "p < 0,01" in changed.verdict_message.translated(Language.of("de"))
    assert "p < .05" in str(soma_sensitivity(result).verdict_message)
    assert strict.to_dict()["rules"]["alpha"] == 0.01  # type: ignore[index]


@pytest.mark.parametrize(
    ("value", "digits", "expected"),
    [
        (-0.001, 2, (".00", "0,00")),
        (0.0, 2, (".00", "0,00")),
        (-0.0, 1, (".0", "0,0")),
        (0.004, 2, (".00", "0,00")),
        (0.2512, 2, (".25", "0,25")),
        (-0.0512, 2, ("-.05", "-0,05")),
        (-0.004, 3, ("-.004", "-0,004")),
        (-0.3, 1, ("-.3", "-0,3")),
        (1.0, 3, ("1.000", "1,000")),
    ],
)
def test_bounded_follows_the_report_rule(value: float, digits: int, expected: tuple[str, str]) -> None:
    """Bounded prints as the report does: a value that rounds to zero carries no sign, always ``digits``
    decimals (exact zeros too), no leading zero in English below 1, a decimal comma in Dutch and German."""
    english, comma = expected
    assert str(Bounded(value, digits)) == english
    assert Bounded(value, digits).localized(Language.of("en")) == english
    for code in ("nl", "de"):
        assert Bounded(value, digits).localized(Language.of(code)) == comma


def pairs_studies(example: simulate.SomaExample, ma02_from_ma04: int) -> pd.DataFrame:
    """MA01's 10 studies all in MA03 (20); MA02 shares 6 of MA01's studies and ``ma02_from_ma04`` of MA04's
    20 (its own size: 6 + that); the other meta-analyses have studies of their own."""
    rows = [("SYN-MA01", f"S{i}") for i in range(10)]
    rows += [("SYN-MA03", f"S{i}") for i in range(20)]
    rows += [("SYN-MA02", f"S{i}") for i in range(6)] + [("SYN-MA02", f"T{i}") for i in range(ma02_from_ma04)]
    rows += [("SYN-MA04", f"T{i}") for i in range(20)]
    for name in sorted(set(example.effects[MA]) - {"SYN-MA01", "SYN-MA02", "SYN-MA03", "SYN-MA04"}):
        rows += [(name, f"{name}-{i}") for i in range(5)]
    return pd.DataFrame(rows, columns=[MA, "study"])


def test_dependent_pairs_show_the_outcome(example: simulate.SomaExample) -> None:
    """A pair whose members are both left out through other pairs has none kept; a member kept in one pair
    but left out by a later one is not shown as kept."""
    # MA01-MA03 100 %, MA02-MA04 10 of 16 (62.5 %), MA01-MA02 6 of 10 (60 %): MA01 and MA02 both left out
    res = soma(example.effects, studies=pairs_studies(example, 10), moderators=[])
    sens = res.sensitivity
    assert sens is not None and sens.overlap is not None
    pairs = sens.pairs.set_index(["meta_analysis_a", "meta_analysis_b"])
    assert list(sens.pairs.meta_analysis_a + "-" + sens.pairs.meta_analysis_b) == [
        "SYN-MA01-SYN-MA03",
        "SYN-MA02-SYN-MA04",
        "SYN-MA01-SYN-MA02",
    ]
    assert pairs.loc[("SYN-MA01", "SYN-MA02")].kept is None
    assert pairs.loc[("SYN-MA01", "SYN-MA02")].dropped == "SYN-MA01, SYN-MA02"
    assert pairs.loc[("SYN-MA01", "SYN-MA03")].kept == "SYN-MA03"
    assert pairs.loc[("SYN-MA02", "SYN-MA04")].kept == "SYN-MA04"
    assert sorted(sens.overlap.dropped) == ["SYN-MA01", "SYN-MA02"]
    record = sens.to_dict()["overlap"]["pairs"]  # type: ignore[index]
    assert [row["kept"] for row in record] == ["SYN-MA03", "SYN-MA04", None]
    # MA02-MA04 8 of 14 (57 %) after MA01-MA02 (60 %): MA02 looks kept there but MA04's pair leaves it out
    later = soma(example.effects, studies=pairs_studies(example, 8), moderators=[]).sensitivity
    assert later is not None
    pairs = later.pairs.set_index(["meta_analysis_a", "meta_analysis_b"])
    assert pairs.loc[("SYN-MA01", "SYN-MA02")].kept is None
    assert pairs.loc[("SYN-MA02", "SYN-MA04")].kept == "SYN-MA04"
    kept = set(later.pairs.kept.dropna())
    assert not kept & set(later.overlap.dropped)  # type: ignore[union-attr]
