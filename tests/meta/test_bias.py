"""Small-study effects and publication bias against metafor 3.8-1 (``tests/reference/metafor_bias.R``):
regtest (every predictor, models rma and lm; the multilevel version with CR2), ranktest, trim-and-fill (L0/R0,
each side) and the step-function selection model (estimates, SEs, LRTs at metafor's polished optimum).
Tolerance: 1e-6 relative, 1e-8 absolute near zero."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from edueffects import InputError, meta
from edueffects.meta import bias, pet_peese, ranktest, regtest, selmodel, trimfill
from edueffects.meta.result import MetaResult

HERE = Path(__file__).resolve().parents[1] / "reference"
CASES: dict[str, Any] = json.loads((HERE / "metafor_bias.json").read_text())
RTOL, ATOL = 1e-6, 1e-8


def _fit(spec: dict[str, Any]) -> MetaResult:
    data = pd.read_csv(HERE / spec["data"])
    return meta(
        data,
        yi=spec["yi"],
        vi=spec["vi"],
        cluster=spec.get("cluster"),
        within=spec.get("within"),
        method=spec["method"],
        mods=spec["mods"] or None,
        test=spec["test"],
    )


def _close(name: str, actual: Any, expected: Any) -> None:
    np.testing.assert_allclose(
        np.asarray(actual, dtype=float), np.asarray(expected, dtype=float), rtol=RTOL, atol=ATOL, err_msg=name
    )


@pytest.mark.parametrize("name", sorted(CASES["regtest"]))
def test_regtest_matches_metafor(name: str) -> None:
    case = CASES["regtest"][name]
    opts, ref = case["options"], case["result"]
    res = _fit(case["model"])
    out = regtest(res, predictor=opts["predictor"], model=opts["model"], ni=opts.get("ni"))
    _close("zval", out.statistic, ref["zval"])
    _close("pval", out.pval, ref["pval"])
    _close("slope", out.slope, ref["slope"]["estimate"])
    _close("slope se", out.slope_se, ref["slope"]["se"])
    assert (out.df is None) == (ref["ddf"] is None)
    if ref["ddf"] is not None:
        _close("ddf", out.df, ref["ddf"])
    if "limit" in ref:
        _close("limit", [out.limit_estimate, out.limit_ci_lb, out.limit_ci_ub], list(ref["limit"].values()))
    else:
        assert out.limit_estimate is None
    if "tau2" in ref:
        assert out.fit is not None
        _close("tau2", out.fit.variance[0] if out.fit.variance.size else 0.0, ref["tau2"])


def test_multilevel_regtest_with_cr2_matches_metafor_and_clubsandwich() -> None:
    case = CASES["multilevel_regtest"][0]
    ref = case["result"]
    out = regtest(_fit(case["model"]), predictor="sei", robust="study")
    assert out.fit is not None
    _close("zval", out.statistic, ref["zval"])
    _close("pval", out.pval, ref["pval"])
    _close("slope", out.slope, ref["slope"])
    _close("sigma2", out.fit.variance, ref["sigma2"])
    rob = ref["robust"]
    _close("CR2", [out.robust_statistic, out.robust_df, out.robust_pval, out.robust_se], list(rob.values()))
    assert "CR2 by study" in out.summary() and out.to_dict()["robust"]["cluster"] == "study"  # type: ignore[index]


@pytest.mark.parametrize("name", sorted(CASES["ranktest"]))
def test_ranktest_matches_metafor(name: str) -> None:
    case = CASES["ranktest"][name]
    out = ranktest(_fit(case["model"]))
    _close("tau", out.tau, case["result"]["tau"])
    _close("pval", out.pval, case["result"]["pval"])
    assert out.exact == (not case["result"]["ties"])


@pytest.mark.parametrize("name", sorted(CASES["trimfill"]))
def test_trimfill_matches_metafor(name: str) -> None:
    case = CASES["trimfill"][name]
    opts, ref = case["options"], case["result"]
    res = _fit(case["model"])
    out = trimfill(res, estimator=opts["estimator"], side=None if opts["side"] == "auto" else opts["side"])
    assert out.side == ref["side"]
    assert out.k0 == ref["k0"]
    if ref["se_k0"] is None:
        assert not np.isfinite(out.se_k0)
    else:
        _close("se_k0", out.se_k0, ref["se_k0"])
    assert (out.p_k0 is None) == (ref["p_k0"] is None)
    if ref["p_k0"] is not None:
        _close("p_k0", out.p_k0, ref["p_k0"])
    c = out.fit.coefficients
    for key, value in (("beta", c.estimate), ("se", c.se), ("ci_lb", c.ci_lb), ("ci_ub", c.ci_ub), ("pval", c.pval)):
        _close(key, value, ref[key])
    _close("tau2", out.fit.variance[0] if out.fit.variance.size else 0.0, ref["tau2"])
    assert out.fit.k == ref["k"]
    _close("filled yi", out.data.yi, ref["yi"])
    _close("filled vi", out.data.vi, ref["vi"])
    assert list(out.data.filled) == ref["fill"]


@pytest.mark.parametrize("name", sorted(CASES["selmodel"]))
def test_selection_model_matches_metafor(name: str) -> None:
    case = CASES["selmodel"][name]
    opts, ref = case["options"], case["result"]
    res = _fit(case["model"])
    out = selmodel(res, steps=opts["steps"], alternative=opts["alternative"])
    c = out.coefficients
    for key, value in (
        ("beta", c.estimate),
        ("se", c.se),
        ("zval", c.stat),
        ("pval", c.pval),
        ("ci_lb", c.ci_lb),
        ("ci_ub", c.ci_ub),
    ):
        _close(key, value, ref[key])
    _close("tau2", out.tau2, ref["tau2"])
    if ref["se_tau2"] is not None:
        _close("se_tau2", out.tau2_se, ref["se_tau2"])
    else:
        assert out.tau2_fixed
    _close("delta", out.delta, ref["delta"])
    _close("se_delta", out.delta_se[1:], ref["se_delta"][1:])
    _close("logLik", out.loglik, ref["ll"])
    _close("logLik without selection", out.loglik_no_selection, ref["ll0"])
    _close("LRT", out.lrt, ref["LRT"])
    _close("LRT p", out.lrt_pval, ref["LRTp"])
    assert out.lrt_df == ref["LRTdf"] and list(out.counts) == ref["ptable"] and out.n_params == ref["parms"]
    _close("AIC", out.aic, ref["AIC"])
    if "LRT_tau2" in ref:
        _close("LRT tau2", out.lrt_tau2, ref["LRT_tau2"])
        _close("LRT tau2 p", out.lrt_tau2_pval, ref["LRTp_tau2"])


# ---- behaviour beyond parity ----------------------------------------------------------------------


def _hackshaw() -> MetaResult:
    return meta(pd.read_csv(HERE / "data" / "bias_hackshaw1998.csv"), "yi", "vi")


def test_pet_peese_selects_by_one_sided_pet_test() -> None:
    res = _hackshaw()
    out = pet_peese(res)
    pet, peese = regtest(res, "sei", "lm"), regtest(res, "vi", "lm")
    assert out.pet.limit_estimate == pytest.approx(pet.limit_estimate)
    assert out.peese.limit_estimate == pytest.approx(peese.limit_estimate)
    p_one = pet.limit_one_sided_p(1.0)
    assert p_one is not None and out.pet_one_sided_p == pytest.approx(p_one)
    assert out.selected == ("PEESE" if p_one < 0.05 else "PET")
    chosen = peese if out.selected == "PEESE" else pet
    assert out.estimate == pytest.approx(chosen.limit_estimate)
    assert pet_peese(res, alpha=0.999).selected == "PEESE"
    assert set(out.tidy().estimator) == {"PET", "PEESE"} and out.to_dict()["selected"] == out.selected
    assert out.summary().startswith("PET-PEESE (lm), k = 37")


def test_results_are_frozen_and_displayable() -> None:
    res = _hackshaw()
    for result in (regtest(res), ranktest(res), trimfill(res), selmodel(res), pet_peese(res)):
        assert repr(result).startswith("<") and result.summary()
        assert isinstance(result.to_dict(), dict) and not result.tidy().empty
        with pytest.raises(AttributeError):
            result.k = 1  # type: ignore[misc,union-attr]
    tf = trimfill(res)
    assert tf.tidy().model.tolist() == ["original", "filled"] and tf.estimate == pytest.approx(0.174471110412184)
    assert len(tf.to_dict()["filled"]["yi"]) == tf.k0  # type: ignore[index]
    assert selmodel(res).intervals().k.tolist() == CASES["selmodel"]["hackshaw1998_reml"]["result"]["ptable"]


def test_kendall_exact_distribution_matches_small_enumeration() -> None:
    from itertools import permutations

    n = 6
    counts = np.zeros(n * (n - 1) // 2 + 1)
    for perm in permutations(range(n)):
        concordant = sum(perm[i] < perm[j] for i in range(n) for j in range(i + 1, n))
        counts[concordant] += 1
    cdf = np.cumsum(counts) / counts.sum()
    for q in range(len(cdf)):
        assert bias.kendall_lower_tail(q, n) == pytest.approx(cdf[q], rel=1e-12)


def test_contour_funnel_figures() -> None:
    from matplotlib.figure import Figure

    from edueffects.report.plots import contour_funnel

    res = _hackshaw()
    fig = contour_funnel(trimfill(res))
    assert isinstance(fig, Figure)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels[:3] == ["0.05 < p < 0.1", "0.01 < p < 0.05", "p < 0.01"] and "filled studies" in labels
    assert "filled" in fig.axes[0].get_title()
    assert isinstance(contour_funnel(res), Figure) and isinstance(trimfill(res).plot(), Figure)
    with pytest.raises(InputError, match="contours must be"):
        contour_funnel(res, contours=(0.0,))
    with pytest.raises(InputError, match="give a meta"):
        contour_funnel("not a result")


def test_bad_input_is_one_line_naming_the_option() -> None:
    res = _hackshaw()
    bcg = meta(pd.read_csv(HERE / "data" / "bias_bcg.csv"), "yi", "vi", mods=["ablat"])
    three = _fit(CASES["multilevel_regtest"][0]["model"])
    cases: list[tuple[Any, str]] = [
        (lambda: regtest(res, predictor="se"), "predictor 'se' is not one of"),  # type: ignore[arg-type]
        (lambda: regtest(res, model="glm"), "model 'glm' is not one of"),  # type: ignore[arg-type]
        (lambda: regtest(res, predictor="ni"), "needs sample sizes"),
        (lambda: regtest(res, predictor="ni", ni="nope"), "ni column 'nope' not found"),
        (lambda: regtest(res, predictor="ni", ni=[1.0, 2.0]), "ni has 2 values for 37 effects"),
        (lambda: regtest(res, predictor="ni", ni=np.zeros(37)), "ni row 1"),
        (lambda: regtest(res, model="lm", robust="study"), "robust"),
        (lambda: regtest(three, robust="nope"), "robust cluster column 'nope' not found"),
        (lambda: regtest("x"), "give the result of meta"),  # type: ignore[arg-type]
        (lambda: trimfill(bcg), "without moderators"),
        (lambda: trimfill(three), "univariate models"),
        (lambda: trimfill(res, estimator="Q0"), "estimator 'Q0'"),  # type: ignore[arg-type]
        (lambda: trimfill(res, side="up"), "side 'up'"),  # type: ignore[arg-type]
        (lambda: ranktest(three), "univariate models"),
        (lambda: pet_peese(bcg), "without moderators"),
        (lambda: pet_peese(res, alpha=2.0), "alpha must lie"),
        (lambda: selmodel(three), "univariate models"),
        (lambda: selmodel(res, steps=(1.5,)), "steps must be"),
        (lambda: selmodel(res, alternative="both"), "alternative 'both'"),  # type: ignore[arg-type]
        (lambda: selmodel(res, steps=(0.001, 0.0011)), "no observed p-value lies in the interval 0.001 < p <= 0.0011"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_regtest_on_collinear_predictor_is_refused() -> None:
    data = pd.read_csv(HERE / "data" / "bias_hackshaw1998.csv").assign(se=lambda d: np.sqrt(d.vi))
    res = meta(data, "yi", "vi", mods=["se"])
    with pytest.raises(InputError, match="collinear"):
        regtest(res, "sei")
