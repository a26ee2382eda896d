"""The SOMA workflow: agreement with the estimation core run directly, conversions, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edueffects import InputError, meta, simulate
from edueffects.soma import soma
from edueffects.soma.schema import SomaColumns, prepare_effects


@pytest.fixture(scope="module")
def example() -> simulate.SomaExample:
    return simulate.soma()


@pytest.fixture(scope="module")
def result(example: simulate.SomaExample):  # type: ignore[no-untyped-def]
    return soma(example.effects, studies=example.studies, amstar=example.amstar)


def test_agrees_with_the_core_run_directly(result, example) -> None:  # type: ignore[no-untyped-def]
    effects = result.effects
    direct = meta(effects, "z", "vz", cluster="meta_analysis", within="es_id")
    np.testing.assert_allclose(result.overall.coefficients.estimate, direct.coefficients.estimate, rtol=1e-12)
    np.testing.assert_allclose(result.overall.variance, direct.variance, rtol=1e-10)
    for c in result.clusters:
        sub = effects[effects.outcome_cluster == c.cluster]
        fit = meta(sub, "z", "vz", cluster="meta_analysis", within="es_id", variance_ci=False)
        assert c.z == pytest.approx(float(fit.coefficients.estimate[0]), rel=1e-12)
        assert c.pi_lb == pytest.approx(fit.prediction.pi_lb, rel=1e-12)  # type: ignore[union-attr]
    by_cluster = meta(
        effects, "z", "vz", cluster="meta_analysis", within="es_id", mods=["outcome_cluster"], variance_ci=False
    )
    assert pytest.approx(by_cluster.QM, rel=1e-12) == result.cluster_test.QM
    year = meta(effects, "z", "vz", cluster="meta_analysis", within="es_id", mods=["year"], variance_ci=False)
    test = next(t for t in result.moderator_tests if t.name == "year")
    assert test.QMp == pytest.approx(year.QMp, rel=1e-10)
    egger = meta(
        effects.assign(sei=effects.sez),
        "z",
        "vz",
        cluster="meta_analysis",
        within="es_id",
        mods=["sei"],
        variance_ci=False,
    )
    robust = egger.robust("meta_analysis").coefficients
    assert result.egger_slope[0] == pytest.approx(float(robust.estimate[1]), rel=1e-12)
    assert result.egger_slope[3] == pytest.approx(float(robust.pval[1]), rel=1e-10)


def test_example_is_calibrated_and_labelled(result, example) -> None:  # type: ignore[no-untyped-def]
    assert len(example.effects) == 119 and example.effects.meta_analysis.nunique() == 26
    per_ma = example.effects.drop_duplicates("meta_analysis")
    assert 2.4e6 < per_ma.ma_n.sum() < 2.9e6
    assert example.effects.year.min() >= 1980 and example.effects.year.max() <= 2023
    r = {c.cluster: float(np.tanh(c.z)) for c in result.clusters}
    assert 0.20 < result.overall_r()["r"] < 0.30
    assert r["academic achievement"] < r["appropriate student behavior"]
    assert r["bullying"] < 0.15
    assert result.synthetic and "SYNTHETIC DATA" in result.summary()
    assert result.year_quality[0] > 0.3  # newer meta-analyses meet more AMSTAR 2 criteria
    assert set(result.tidy("clusters").columns) >= {"cluster", "r", "ci_lb", "ci_ub", "pi_lb", "pi_ub"}
    for analysis in result.ANALYSES:
        assert isinstance(result.tidy(analysis), pd.DataFrame)


def test_uncertainty_rules_and_recoding() -> None:
    data = pd.DataFrame(
        {
            "meta_analysis": ["A", "B", "C", "D"],
            "effect": [0.3, -0.2, 0.25, 0.1],
            "se": [0.05, np.nan, np.nan, np.nan],
            "ci_lb": [np.nan, -0.3, np.nan, np.nan],
            "ci_ub": [np.nan, -0.1, np.nan, np.nan],
            "k": [10, 5, 8, 4],
            "n": [2000, 900, 1000, np.nan],
            "outcome_cluster": ["x", "x", "y", "y"],
            "valence": ["positive", "Negative", "positive", "positive"],
        }
    )
    with pytest.raises(InputError, match="row 4: no uncertainty given"):
        prepare_effects(data, SomaColumns(), "r", None)
    frame = prepare_effects(data.assign(n=[2000, 900, 1000, 400]), SomaColumns(), "r", None)
    assert list(frame.variance_rule) == ["SE", "95% CI", "k and N", "k and N"]
    assert frame.vz[0] == pytest.approx(0.05**2 / (1 - 0.09) ** 2)
    assert frame.vz[1] == pytest.approx(((np.arctanh(-0.1) - np.arctanh(-0.3)) / (2 * 1.959963984540054)) ** 2)
    assert frame.vz[2] == pytest.approx(1 / (1000 - 24))
    assert frame.z[1] == pytest.approx(-np.arctanh(-0.2)) and bool(frame.recoded[1])
    as_d = data.assign(
        effect=[0.5, -0.4, 0.3, 0.2],
        se=[0.1, np.nan, np.nan, np.nan],
        n=[2000, 900, 1000, 400],
        ci_lb=[np.nan, -0.6, np.nan, np.nan],
        ci_ub=[np.nan, -0.2, np.nan, np.nan],
    )
    d = prepare_effects(as_d, SomaColumns(), "d", None)
    r = 0.5 / np.sqrt(0.25 + 4)
    assert d.r[0] == pytest.approx(r)
    assert d.vz[0] == pytest.approx(16 * 0.01 / (4.25) ** 3 / (1 - r**2) ** 2)


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (
            lambda d: d.assign(outcome_cluster=d.outcome_cluster.where(d.index != 4, "grades")),
            {"outcome_clusters": "known"},
            "row 5: unknown outcome cluster 'grades'",
        ),
        (lambda d: d.assign(ci_lb=d.ci_lb.where(d.ci_lb.isna(), d.effect + 0.05)), {}, "does not contain the estimate"),
        (lambda d: d.assign(effect=d.effect.where(d.index != 2, 1.3)), {}, "row 3: r = 1.3 lies outside (-1, 1)"),
        (lambda d: d.assign(k=d.k.where(d.index != 6, 0), se=np.nan, ci_lb=np.nan, ci_ub=np.nan), {}, "row 7: k = 0"),
        (
            lambda d: d.assign(valence=d.valence.where(d.index != 0, "mixed")),
            {},
            "row 1: 'mixed' is not 'positive' or 'negative'",
        ),
        (lambda d: d.drop(columns=["outcome_cluster"]), {}, "column 'outcome_cluster' not found"),
    ],
)
def test_bad_input_names_the_row(example, change, kwargs, message) -> None:  # type: ignore[no-untyped-def]
    data = change(example.effects)
    if kwargs.get("outcome_clusters") == "known":
        kwargs = {"outcome_clusters": sorted(example.effects.outcome_cluster.unique())}
    with pytest.raises(InputError) as err:
        soma(data, **kwargs)
    assert message in str(err.value)


def test_amstar_must_match_effects(example) -> None:  # type: ignore[no-untyped-def]
    amstar = example.amstar.assign(meta_analysis=example.amstar.meta_analysis.where(example.amstar.index != 0, "ZZZ"))
    with pytest.raises(InputError, match="'ZZZ' is not in the effect-size table"):
        soma(example.effects, amstar=amstar)
