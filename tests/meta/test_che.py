"""The correlated-and-hierarchical-effects (CHE) working model, ``meta(..., rho=)``, against metafor 3.8-1 and
clubSandwich 0.5.8.

Reference values come from ``tests/reference/metafor_che.R``: ``dat.assink2016`` with
``V = vcalc(vi, cluster = study, obs = esid, rho)`` and ``rma.mv(yi, V, random = ~ 1 | study/esid)`` at rho = 0.2
and 0.6, REML and ML, without and with ``~ deltype``, and one CE model (``sigma2 = c(NA, 0)``); fits polished;
``coef_test``/``Wald_test`` (CR2, HTZ) clustered by study. Tolerance: 1e-6 relative, 1e-8 absolute near zero.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edueffects.core.errors import InputError
from edueffects.meta import meta
from edueffects.meta.dependence import sampling_covariance
from edueffects.meta.result import MetaResult

HERE = Path(__file__).resolve().parents[1] / "reference"
REF: dict[str, Any] = json.loads((HERE / "metafor_che.json").read_text())["cases"]
DATA = pd.read_csv(HERE / "data" / "assink2016.csv")
RTOL, ATOL = 1e-6, 1e-8


def _fit(case: dict[str, Any], data: pd.DataFrame = DATA) -> MetaResult:
    return meta(
        data,
        "yi",
        "vi",
        cluster="study",
        within="esid",
        method=case["method"],
        mods="~ deltype" if case["mods"] else None,
        sigma2=[None, 0.0] if any(case["sigma2_fixed"]) else None,
        rho=case["rho"],
    )


_FITS: dict[str, MetaResult] = {}


def _cached(name: str) -> MetaResult:
    if name not in _FITS:
        _FITS[name] = _fit(REF[name])
    return _FITS[name]


Pairs = list[tuple[str, Any, Any]]


def _model(res: MetaResult, ref: dict[str, Any]) -> Pairs:
    c = res.coefficients
    assert list(c.names) == ref["coef_names"]
    return [
        ("b", c.estimate, ref["b"]),
        ("se", c.se, ref["se"]),
        ("zval", c.stat, ref["zval"]),
        ("pval", c.pval, ref["pval"]),
        ("ci_lb", c.ci_lb, ref["ci_lb"]),
        ("ci_ub", c.ci_ub, ref["ci_ub"]),
        ("sigma2", res.variance, ref["sigma2"]),
        ("logLik", res.loglik, ref["logLik"]),
        ("AIC", res.aic, ref["AIC"]),
        ("QE", res.QE, ref["QE"]),
        ("QEp", res.QEp, ref["QEp"]),
        ("I2", res.i2_total, ref["I2"]),
    ]


def _cr2(res: MetaResult, ref: dict[str, Any]) -> Pairs:
    rob = res.robust("study")
    out: Pairs = [
        ("cr2 se", rob.coefficients.se, ref["cr2"]["se"]),
        ("cr2 df", rob.coefficients.df, ref["cr2"]["df"]),
        ("cr2 pval", rob.coefficients.pval, ref["cr2"]["pval"]),
        ("cr2 t", rob.coefficients.stat, ref["cr2"]["tstat"]),
    ]
    if "wald_htz" in ref:
        test = rob.wald("deltype")
        w = ref["wald_htz"]
        out += [
            ("HTZ F", test.statistic, w["Fstat"]),
            ("HTZ df1", test.df1, w["df_num"]),
            ("HTZ df2", test.df2, w["df_denom"]),
            ("HTZ p", test.pval, w["pval"]),
        ]
    return out


def _predict(res: MetaResult, ref: dict[str, Any]) -> Pairs:
    r = ref["predict"]
    newmods = None if r["newmods"] is None else np.array([r["newmods"]])
    table = res.predict(newmods).tidy()
    return [(col, table[col], r[col]) for col in ("pred", "se", "ci_lb", "ci_ub", "pi_lb", "pi_ub")]


def _vcalc(res: MetaResult, ref: dict[str, Any]) -> Pairs:
    codes = res.state.level_codes[0]
    rows = np.flatnonzero(DATA["study"].to_numpy() == 1)
    block = sampling_covariance(res.state.v, codes, ref["rho"], rows)
    return [("V study 1", block, np.array(ref["V_study1"]))]


def _ranef(res: MetaResult, ref: dict[str, Any]) -> Pairs:
    tables = res.ranef()
    out: Pairs = []
    for name, key in (("study", "study"), ("study/esid", "esid")):
        table = tables[name].loc[ref["ranef"][key]["label"]]
        out += [
            (f"ranef {key}", table["intrcpt"], ref["ranef"][key]["intrcpt"]),
            (f"ranef {key} se", table["se"], ref["ranef"][key]["se"]),
        ]
    return out


CHECKS: dict[str, Callable[[MetaResult, dict[str, Any]], Pairs]] = {
    "model": _model,
    "cr2": _cr2,
    "predict": _predict,
    "vcalc": _vcalc,
}
PARAMS = [(name, kind) for name in REF for kind in CHECKS] + [("rho0.2-REML", "ranef")]


@pytest.mark.parametrize(("name", "kind"), PARAMS, ids=[f"{n}-{k}" for n, k in PARAMS])
def test_matches_metafor_and_clubsandwich(name: str, kind: str) -> None:
    check = _ranef if kind == "ranef" else CHECKS[kind]
    for label, got, expected in check(_cached(name), REF[name]):
        np.testing.assert_allclose(
            np.asarray(got, dtype=float), np.asarray(expected, dtype=float), rtol=RTOL, atol=ATOL, err_msg=label
        )


def test_profile_intervals_use_the_che_likelihood() -> None:
    """The profile CI bounds lie where the CHE profile log-likelihood has dropped by chi2_1(.95)/2."""
    res = _cached("rho0.6-REML")
    for i, interval in enumerate(res.variance_ci):
        curve = res.profile(i, points=3)
        assert curve["loglik"].max() <= res.loglik + 1e-8
        for bound in (interval.ci_lb, interval.ci_ub):
            if bound > 0.0:
                grid_curve = _profile_at(res, i, bound)
                assert grid_curve == pytest.approx(res.loglik - 1.920729410347062, abs=1e-6)


def _profile_at(res: MetaResult, index: int, value: float) -> float:
    from edueffects.core.profile import profile_curve

    design = res.state.design()
    return float(
        profile_curve(design, "REML", np.asarray(res.variance), index, np.array([value]), list(res.variance_fixed))[0]
    )


def test_rho_zero_is_the_model_without_rho() -> None:
    plain = meta(DATA, "yi", "vi", cluster="study", within="esid", mods="~ deltype")
    zero = meta(DATA, "yi", "vi", cluster="study", within="esid", mods="~ deltype", rho=0.0)
    a, b = plain.to_dict(), zero.to_dict()
    assert a.pop("rho") is None and b.pop("rho") == 0.0
    assert a == b
    np.testing.assert_array_equal(plain.robust("study").vcov, zero.robust("study").vcov)


def test_result_records_rho() -> None:
    res = _cached("rho0.6-REML")
    assert res.rho == 0.6
    assert res.to_dict()["rho"] == 0.6
    assert "rho = 0.6" in res.summary()
    assert json.loads(json.dumps(res.to_dict()))["rho"] == 0.6


@settings(max_examples=8, deadline=None)
@given(st.permutations(range(len(DATA))))
def test_invariant_to_row_order(order: list[int]) -> None:
    res = _cached("rho0.6-REML-deltype")
    shuffled = _fit(REF["rho0.6-REML-deltype"], DATA.iloc[order].reset_index(drop=True))
    np.testing.assert_allclose(shuffled.coefficients.estimate, res.coefficients.estimate, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(shuffled.variance, res.variance, rtol=1e-7, atol=1e-12)
    assert shuffled.loglik == pytest.approx(res.loglik, rel=1e-12)
    q_shuffled, q_original = shuffled.QE, res.QE
    assert q_shuffled == pytest.approx(q_original, rel=1e-12)
    np.testing.assert_allclose(shuffled.robust("study").coefficients.se, res.robust("study").coefficients.se, rtol=1e-7)


@pytest.mark.parametrize("rho", [-0.1, 1.0, 1.5, float("nan"), float("inf"), "0.5", True])
def test_bad_rho_is_refused(rho: object) -> None:
    with pytest.raises(InputError, match="rho must be a number"):
        meta(DATA, "yi", "vi", cluster="study", within="esid", rho=rho)  # type: ignore[arg-type]


def test_rho_needs_cluster() -> None:
    with pytest.raises(InputError, match="give cluster"):
        meta(DATA, "yi", "vi", rho=0.5)


def test_rho_needs_distinct_effects_within_clusters() -> None:
    data = DATA.assign(esid=1)
    with pytest.raises(InputError, match="must identify the effects"):
        meta(data, "yi", "vi", cluster="study", within="esid", rho=0.5)


def test_cluster_only_equals_ce_model() -> None:
    """``rho`` with clusters and no effect level is the CE model (sigma2 = c(NA, 0))."""
    ce = _cached("rho0.6-REML-CE")
    two = meta(DATA, "yi", "vi", cluster="study", rho=0.6)
    np.testing.assert_allclose(two.coefficients.estimate, ce.coefficients.estimate, rtol=1e-9)
    assert two.variance[0] == pytest.approx(ce.variance[0], rel=1e-7)
    assert two.loglik == pytest.approx(ce.loglik, rel=1e-12)
    np.testing.assert_allclose(two.robust("study").coefficients.se, ce.robust("study").coefficients.se, rtol=1e-7)


def test_methods_assuming_independent_errors_refuse() -> None:
    from edueffects.meta import cooks_distance, cumul, hatvalues, influence, leave1out, ranktest, selmodel, trimfill

    res = _cached("rho0.2-REML")
    with pytest.raises(InputError, match="rho"):
        res.require_independent_errors("leave1out")
    for deletion in (leave1out, cooks_distance, hatvalues, influence):
        with pytest.raises(InputError, match="independent sampling errors"):
            deletion(res)  # type: ignore[operator]
    with pytest.raises(InputError, match="independent sampling errors"):
        cumul(res, order="year")
    for method in (ranktest, trimfill, selmodel):  # univariate only
        with pytest.raises(InputError):
            method(res)  # type: ignore[operator]


def test_regtest_keeps_rho() -> None:
    """The regression test refits the CHE model with the standard error as a moderator."""
    from edueffects.meta import regtest

    res = _cached("rho0.6-REML")
    test = regtest(res)
    direct = meta(
        DATA.assign(sei=np.sqrt(DATA["vi"])), "yi", "vi", cluster="study", within="esid", rho=0.6, mods=["sei"]
    )
    assert test.slope == pytest.approx(float(direct.coefficients.estimate[1]), rel=1e-9)
    assert test.slope_se == pytest.approx(float(direct.coefficients.se[1]), rel=1e-9)


def test_rho_sensitivity_rows_match_single_fits() -> None:
    from edueffects.meta import RhoSensitivity, rho_sensitivity

    sens = rho_sensitivity(DATA, "yi", "vi", "study", "esid", rhos=(0.2, 0.6), mods="~ deltype")
    assert isinstance(sens, RhoSensitivity)
    table = sens.tidy()
    assert list(table.columns) == [
        "rho",
        "term",
        "estimate",
        "se",
        "ci_lb",
        "ci_ub",
        "pval",
        "sigma2_study",
        "sigma2_study/esid",
        "robust_se",
        "robust_df",
        "robust_pval",
    ]
    assert len(table) == 6 and len(sens.results) == 2
    for rho, name in ((0.2, "rho0.2-REML-deltype"), (0.6, "rho0.6-REML-deltype")):
        rows = table[table["rho"] == rho]
        ref = REF[name]
        np.testing.assert_allclose(rows["estimate"], ref["b"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(rows["se"], ref["se"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(rows["robust_se"], ref["cr2"]["se"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(rows["robust_df"], ref["cr2"]["df"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(rows["robust_pval"], ref["cr2"]["pval"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(
            rows.iloc[0][["sigma2_study", "sigma2_study/esid"]].to_numpy(dtype=float), ref["sigma2"], rtol=RTOL
        )
    payload = json.loads(json.dumps(sens.to_dict()))
    assert payload["rhos"] == [0.2, 0.6] and len(payload["rows"]) == 6
    assert "rho" in sens.summary() and "deltypeovert" in sens.summary()
    default = rho_sensitivity(DATA, "yi", "vi", "study", robust=False)
    assert default.rhos == (0.0, 0.2, 0.4, 0.6, 0.8)
    assert "robust_se" not in default.tidy().columns and "sigma2_study" in default.tidy().columns


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"rhos": ()}, "non-empty"), ({"rhos": (0.2, 1.0)}, "rho must be"), ({"rho": 0.5}, "give rhos")],
)
def test_rho_sensitivity_refuses_bad_input(kwargs: dict[str, Any], message: str) -> None:
    from edueffects.meta import rho_sensitivity

    with pytest.raises(InputError, match=message):
        rho_sensitivity(DATA, "yi", "vi", "study", **kwargs)


def test_cli_rho_and_sensitivity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edueffects.cli import main

    path = tmp_path / "assink.csv"
    DATA.to_csv(path, index=False)
    base = [
        "meta",
        str(path),
        "--yi",
        "yi",
        "--vi",
        "vi",
        "--cluster",
        "study",
        "--within",
        "esid",
        "--quiet",
    ]
    assert main([*base, "--rho", "0.6", "--rho-sensitivity", "0.2", "0.6", "--json", "-"]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = REF["rho0.6-REML"]
    assert out["rho"] == 0.6
    np.testing.assert_allclose(out["coefficients"][0]["estimate"], ref["b"], rtol=RTOL)
    rows = out["rho_sensitivity"]["rows"]
    assert [r["rho"] for r in rows] == [0.2, 0.6]
    np.testing.assert_allclose(rows[1]["robust_se"], ref["cr2"]["se"], rtol=RTOL)
    assert main([*base, "--rho-sensitivity"]) == 0
    text = capsys.readouterr().out
    assert "Sensitivity to the sampling correlation" in text and "0.8" in text


@pytest.mark.parametrize(
    "extra",
    [
        ["--rho", "1"],
        ["--rho", "-0.2"],
        ["--rho", "abc"],
        ["--rho", "0.5", "--cluster", ""],
        ["--rho-sensitivity", "2"],
    ],
)
def test_cli_bad_rho_exits_2(tmp_path: Path, extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from edueffects.cli import main

    path = tmp_path / "assink.csv"
    DATA.to_csv(path, index=False)
    args = ["meta", str(path), "--yi", "yi", "--vi", "vi", "--quiet", *extra]
    if "--cluster" not in extra:
        args += ["--cluster", "study"]
    else:
        args = [a for a in args if a not in ("--cluster", "")]
    assert main(args) == 2
    assert "rho" in capsys.readouterr().err


def test_study_file_takes_rho(tmp_path: Path) -> None:
    from edueffects.report.study import run_study

    DATA.to_csv(tmp_path / "assink.csv", index=False)
    (tmp_path / "study.toml").write_text(
        'title = "CHE"\n[meta]\ndata = "assink.csv"\nyi = "yi"\nvi = "vi"\ncluster = "study"\nwithin = "esid"\n'
        'rho = 0.6\nrobust = "study"\n'
    )
    report = run_study(tmp_path / "study.toml", tmp_path / "out", None, quiet=True).parent
    payload = json.loads((report / "meta.json").read_text())
    assert payload["rho"] == 0.6
    np.testing.assert_allclose(payload["robust"]["coefficients"][0]["se"], REF["rho0.6-REML"]["cr2"]["se"], rtol=RTOL)


def test_anova_refuses_fits_under_different_rho() -> None:
    """Fits under different sampling correlations model different data covariances: no LRT between them."""
    import edueffects

    full = meta(DATA, "yi", "vi", cluster="study", within="esid", method="ML", rho=0.6)
    two_level = meta(DATA, "yi", "vi", cluster="study", within="esid", method="ML", rho=0.2, sigma2=[None, 0])
    with pytest.raises(InputError, match="different sampling correlations"):
        edueffects.anova(full, two_level)
    same = meta(DATA, "yi", "vi", cluster="study", within="esid", method="ML", rho=0.6, sigma2=[None, 0])
    lrt = edueffects.anova(full, same)
    assert lrt.df_full - lrt.df_reduced == 1
    assert lrt.statistic == pytest.approx(2.0 * (full.loglik - same.loglik))
