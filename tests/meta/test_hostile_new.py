"""Hostile and degenerate input for the CHE working model (``meta(..., rho=)``, ``rho_sensitivity``), the
influence diagnostics (``leave1out``, ``cooks_distance``, ``hatvalues``, ``rstudent``, ``dfbetas``,
``influence``, ``cumul``) and ``anova``: every case ends in correct numbers (checked against dense matrices
or metafor 3.8-1 literals) or in one clear :class:`InputError`.
"""

from __future__ import annotations

import decimal
import fractions
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edueffects
from edueffects.core.errors import InputError
from edueffects.meta import cooks_distance, cumul, hatvalues, influence, leave1out, meta, rho_sensitivity
from edueffects.meta.influence import dfbetas, rstudent
from edueffects.meta.result import MetaResult

HERE = Path(__file__).resolve().parents[1] / "reference" / "data"
ASSINK = pd.read_csv(HERE / "assink2016.csv")
BCG = pd.read_csv(HERE / "bcg.csv")
RTOL, ATOL = 1e-6, 1e-8


def _che(data: pd.DataFrame = ASSINK, **options: Any) -> MetaResult:
    return meta(data, "yi", "vi", cluster="study", within="esid", **options)


def _dense(data: pd.DataFrame, rho: float, theta: np.ndarray) -> dict[str, float]:
    """The REML fit at ``theta`` with every k x k matrix formed: V = sampling covariance (vcalc: (1 - rho) diag(v)
    + rho s s' within study) + sigma2_study (same study) + sigma2_esid I."""
    y, v, study = data["yi"].to_numpy(), data["vi"].to_numpy(), data["study"].to_numpy()
    k = y.size
    same = (study[:, None] == study[None, :]).astype(float)
    s = np.sqrt(v)
    sampling = same * rho * np.outer(s, s) + np.diag((1.0 - rho) * v)
    m = sampling + theta[0] * same + theta[1] * np.eye(k)
    x = np.ones((k, 1))
    w_m = np.linalg.inv(m)
    a = x.T @ w_m @ x
    beta = np.linalg.solve(a, x.T @ w_m @ y)
    r = y - x @ beta
    logdet = np.linalg.slogdet(m)[1] + np.linalg.slogdet(a)[1] - np.linalg.slogdet(x.T @ x)[1]  # metafor's REML
    loglik = -0.5 * (logdet + r @ w_m @ r + (k - 1) * np.log(2 * np.pi))
    w = np.linalg.inv(sampling)  # QE and I^2 use the sampling covariance alone
    b0 = np.linalg.solve(x.T @ w @ x, x.T @ w @ y)
    r0 = y - x @ b0
    p_mat = w - w @ x @ np.linalg.solve(x.T @ w @ x, x.T @ w)
    return {
        "beta": float(beta[0]),
        "se": float(np.sqrt(1.0 / a[0, 0])),
        "loglik": float(loglik),
        "QE": float(r0 @ w @ r0),
        "typical_v": float((k - 1) / np.trace(p_mat)),
    }


# ---- rho: types and values ---------------------------------------------------------------------------


@pytest.mark.parametrize("rho", [np.float64(0.6), np.float32(0.5), np.int64(0), 0])
def test_rho_numpy_scalars_are_numbers(rho: object) -> None:
    res = _che(rho=rho)
    assert isinstance(res.rho, float) and res.rho == pytest.approx(float(rho))  # type: ignore[arg-type]
    plain = _che(rho=float(rho))  # type: ignore[arg-type]
    np.testing.assert_array_equal(res.coefficients.estimate, plain.coefficients.estimate)


@pytest.mark.parametrize(
    "rho",
    [
        np.bool_(True),
        False,
        np.array(0.5),
        np.array([0.5]),
        decimal.Decimal("0.5"),
        fractions.Fraction(1, 2),
        "0.5",
        [0.5],
        float("nan"),
        -float("inf"),
        np.float64("nan"),
        -1e-300,
        1.0,
        np.float32(1.0),
    ],
)
def test_rho_that_is_not_a_number_in_range_is_refused(rho: object) -> None:
    with pytest.raises(InputError, match=r"rho must be a number in \[0, 1\)"):
        _che(rho=rho)


def test_negative_zero_rho_is_zero() -> None:
    res = _che(rho=-0.0)
    assert res.rho == 0.0 and not np.signbit(res.rho)  # type: ignore[arg-type]
    assert "-0" not in json.dumps(res.to_dict()).split('"rho":')[1][:6]


@pytest.mark.parametrize(("rho", "vi_equal"), [(0.999999, False), (0.999999, True), (0.9, True), (0.3, False)])
def test_che_near_one_and_equal_variances_match_dense_matrices(rho: float, vi_equal: bool) -> None:
    """rho = 0.999999 makes every V_j nearly singular; with all vi equal V_j = v((1 - rho) I + rho 11')."""
    data = ASSINK.assign(vi=0.05) if vi_equal else ASSINK
    res = _che(data, rho=rho)
    assert not res.warnings
    want = _dense(data, rho, np.asarray(res.variance))
    assert res.coefficients.estimate[0] == pytest.approx(want["beta"], rel=1e-9)
    assert res.coefficients.se[0] == pytest.approx(want["se"], rel=1e-8)
    assert res.loglik == pytest.approx(want["loglik"], rel=1e-10)
    assert pytest.approx(want["QE"], rel=1e-8) == res.QE
    assert res.typical_v == pytest.approx(want["typical_v"], rel=1e-8)
    for j in range(2):  # the reported components are the REML maximum of the dense likelihood
        for step in (1 - 1e-3, 1 + 1e-3):
            theta = np.asarray(res.variance, dtype=float).copy()
            theta[j] *= step
            assert _dense(data, rho, theta)["loglik"] <= want["loglik"] + 1e-10


def test_clusters_of_one_effect_make_rho_irrelevant() -> None:
    """Every cluster of size one: V_j = (1 - rho) v + rho v = v, the model without rho."""
    single = ASSINK.groupby("study").head(1).reset_index(drop=True)
    with_rho, without = _che(single, rho=0.8), _che(single)
    np.testing.assert_allclose(with_rho.coefficients.estimate, without.coefficients.estimate, rtol=1e-9)
    np.testing.assert_allclose(with_rho.coefficients.se, without.coefficients.se, rtol=1e-7)
    assert with_rho.loglik == pytest.approx(without.loglik, rel=1e-10)
    assert pytest.approx(without.QE, rel=1e-10) == with_rho.QE


def test_two_clusters_fit_and_robust_tests() -> None:
    two = ASSINK[ASSINK["study"].isin(ASSINK["study"].unique()[:2])].reset_index(drop=True)
    res = _che(two, rho=0.5)
    want = _dense(two, 0.5, np.asarray(res.variance))
    assert res.coefficients.estimate[0] == pytest.approx(want["beta"], rel=1e-9)
    rob = res.robust("study").coefficients
    assert np.all(np.isfinite(rob.se)) and np.all(rob.df > 0)


@pytest.mark.parametrize("value", [0.0, -0.01])
def test_cluster_with_zero_or_negative_variances_is_refused(value: float) -> None:
    data = ASSINK.copy()
    data.loc[data["study"] == data["study"].iloc[0], "vi"] = value
    with pytest.raises(InputError, match="column 'vi' row 1: sampling variance must be > 0"):
        _che(data, rho=0.5)


@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_che_is_equivariant_to_the_scale_of_the_effects(scale: float) -> None:
    base = _che(rho=0.6)
    scaled = _che(ASSINK.assign(yi=ASSINK["yi"] * scale, vi=ASSINK["vi"] * scale**2), rho=0.6)
    np.testing.assert_allclose(scaled.coefficients.estimate, base.coefficients.estimate * scale, rtol=1e-7)
    np.testing.assert_allclose(scaled.coefficients.se, base.coefficients.se * scale, rtol=1e-6)
    np.testing.assert_allclose(scaled.variance, base.variance * scale**2, rtol=1e-6)
    assert pytest.approx(base.QE, rel=1e-9) == scaled.QE


@pytest.mark.parametrize(("scale", "column"), [(1e-8, "vi"), (1e8, "yi")])
def test_scales_out_of_range_are_refused(scale: float, column: str) -> None:
    data = ASSINK.assign(yi=ASSINK["yi"] * scale, vi=ASSINK["vi"] * scale**2)
    with pytest.raises(InputError, match=f"column '{column}' row"):
        _che(data, rho=0.5)


def test_cluster_with_missing_values_is_refused() -> None:
    data = ASSINK.assign(study=ASSINK["study"].astype(float))
    data.loc[3, "study"] = np.nan
    with pytest.raises(InputError, match="column 'study' row 4 is missing"):
        _che(data, rho=0.5)
    dropped = _che(data, rho=0.5, missing="drop")
    assert dropped.k == len(ASSINK) - 1 and dropped.n_dropped == 1


# ---- rho_sensitivity ----------------------------------------------------------------------------------


def test_rho_sensitivity_refuses_repeated_values() -> None:
    for rhos in ([0.2, 0.2], [0.0, None], [-0.0, 0.0]):
        with pytest.raises(InputError, match="rhos repeats"):
            rho_sensitivity(ASSINK, "yi", "vi", "study", rhos=rhos, robust=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rhos", "message"),
    [
        ("0.2", "non-empty list"),
        (0.2, "non-empty list"),
        ({0.2}, "non-empty list"),
        ([], "non-empty list"),
        (np.zeros((1, 1)), "non-empty list"),
        ([0.2, 1.0], "rho must be"),
        ([float("nan")], "rho must be"),
        ([True], "rho must be"),
        (["0.2"], "rho must be"),
    ],
)
def test_rho_sensitivity_refuses_bad_rhos(rhos: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        rho_sensitivity(ASSINK, "yi", "vi", "study", rhos=rhos, robust=False)  # type: ignore[arg-type]


def test_rho_sensitivity_takes_arrays_and_series_in_the_order_given() -> None:
    listed = rho_sensitivity(ASSINK, "yi", "vi", "study", rhos=[0.6, 0.2], robust=False)
    for rhos in (np.array([0.6, 0.2]), pd.Series([0.6, 0.2])):
        other = rho_sensitivity(ASSINK, "yi", "vi", "study", rhos=rhos, robust=False)
        assert other.rhos == (0.6, 0.2)
        pd.testing.assert_frame_equal(other.tidy(), listed.tidy())


def test_rho_sensitivity_refuses_a_robust_flag_that_is_not_boolean() -> None:
    with pytest.raises(InputError, match="robust must be True or False"):
        rho_sensitivity(ASSINK, "yi", "vi", "study", rhos=[0.5], robust="no")  # type: ignore[arg-type]


def test_rho_sensitivity_with_many_values() -> None:
    rhos = [round(r, 3) for r in np.linspace(0.0, 0.98, 40)]
    sens = rho_sensitivity(ASSINK, "yi", "vi", "study", "esid", rhos=rhos, robust=False)
    assert sens.tidy()["rho"].tolist() == rhos
    assert np.isfinite(sens.tidy()[["estimate", "se", "sigma2_study"]].to_numpy()).all()


def test_rho_sensitivity_says_when_rows_were_dropped() -> None:
    data = ASSINK.assign(yi=ASSINK["yi"].where(ASSINK.index != 3))
    sens = rho_sensitivity(data, "yi", "vi", "study", "esid", rhos=[0.5, 0.9], missing="drop")
    assert sens.warnings == ("1 row(s) with missing values dropped",)
    assert "Warning: 1 row(s) with missing values dropped" in sens.summary()
    assert json.loads(json.dumps(sens.to_dict()))["warnings"] == ["1 row(s) with missing values dropped"]
    with pytest.raises(InputError, match="row 4 is missing"):
        rho_sensitivity(data, "yi", "vi", "study", "esid", rhos=[0.5])


def test_rho_sensitivity_warning_of_one_fit_names_its_rho() -> None:
    from edueffects.meta.dependence import _fit_warnings

    res = _che(rho=0.5)
    flagged = _che(rho=0.2, sigma2=[None, 0.0])
    object.__setattr__(flagged, "warnings", ("sigma2 study is estimated at the boundary (0)",))
    assert _fit_warnings((0.5, 0.2), (res, flagged)) == (
        "with rho = 0.2: sigma2 study is estimated at the boundary (0)",
    )


def test_rho_sensitivity_on_a_single_cluster_is_refused_by_the_robust_tests() -> None:
    one = ASSINK[ASSINK["study"] == ASSINK["study"].iloc[0]].reset_index(drop=True)
    with pytest.raises(InputError, match="single cluster"):
        rho_sensitivity(one, "yi", "vi", "study", "esid", rhos=[0.5])


# ---- influence diagnostics -----------------------------------------------------------------------------

TWO = ASSINK[ASSINK["study"].isin(ASSINK["study"].unique()[:2])].reset_index(drop=True)


def test_deleting_one_of_two_clusters_fixes_the_single_level_at_zero_as_metafor() -> None:
    """metafor 3.8-1 fixes sigma2 of a single-level factor at 0 ("Single-level factor(s) found in 'random'
    argument"); its REML variance is not identified, so leaving out one of two clusters must do the same.
    R: two <- dat[dat$study %in% unique(dat$study)[1:2], ]   # dat = tests/reference/data/assink2016.csv
       res <- rma.mv(yi, vi, random = ~ 1 | study/esid, data = two)
       for (s in 1:2) r <- rma.mv(yi, vi, random = ~ 1 | study/esid, data = two[two$study != s, ])
       cooks.distance(res, cluster = two$study)"""
    res = _che(TWO)
    table = leave1out(res, cluster="study").tidy()
    np.testing.assert_allclose(table["estimate"], [0.433321153428928, 0.2825837898458527], rtol=RTOL)
    np.testing.assert_allclose(table["se"], [5.18210108694016e-02, 0.1095829650269145], rtol=RTOL)
    np.testing.assert_allclose(table["sigma2_study"], [0.0, 0.0], atol=ATOL)
    np.testing.assert_allclose(
        table["sigma2_study/esid"], [2.41742026487214e-11, 0.0268770397518978], rtol=RTOL, atol=ATOL
    )
    np.testing.assert_allclose(
        cooks_distance(res, cluster="study").tidy()["cook_d"], [0.717305381774192, 1.002704436190963], rtol=RTOL
    )


def test_single_cluster_deletion_equals_the_fit_with_the_component_fixed() -> None:
    three = ASSINK[ASSINK["study"].isin(ASSINK["study"].unique()[:1])].reset_index(drop=True)
    res = _che(three)
    table = leave1out(res).tidy()  # every deletion leaves the one study
    for i in (0, 3):
        direct = _che(three.drop(index=i).reset_index(drop=True), sigma2=[0.0, None])
        assert table["estimate"][i] == pytest.approx(direct.coefficients.estimate[0], rel=1e-8)
        assert table["se"][i] == pytest.approx(direct.coefficients.se[0], rel=1e-7)
        assert table["sigma2_study/esid"][i] == pytest.approx(direct.variance[1], rel=1e-7, abs=1e-10)
        assert table["sigma2_study"][i] == 0.0


def test_leaving_out_the_only_cluster_is_refused() -> None:
    one = ASSINK[ASSINK["study"] == ASSINK["study"].iloc[0]].reset_index(drop=True)
    res = _che(one)
    for run in (leave1out, cooks_distance, rstudent, dfbetas, influence):
        with pytest.raises(InputError, match="cluster 'study' has a single value"):
            run(res, cluster="study")


def test_univariate_with_two_effects_matches_metafor() -> None:
    """R: u <- rma(yi, vi, data = dat.bcg[1:2, ]); influence(u); leave1out(u)"""
    res = meta(BCG.head(2), "yi", "vi")
    inf = influence(res).tidy()
    np.testing.assert_allclose(inf["rstudent"], [0.965131637368268, -0.965131637368269], rtol=RTOL)
    np.testing.assert_allclose(inf["dffits"], [0.746113444423748, -1.2484416202533], rtol=RTOL)
    np.testing.assert_allclose(inf["cook_d"], [0.556685271949869, 1.55860647918068], rtol=RTOL)
    np.testing.assert_allclose(inf["cov_r"], [1.5976358303982, 2.67325978319224], rtol=RTOL)
    np.testing.assert_allclose(inf["hat"], [0.374075129655324, 0.625924870344676], rtol=RTOL)
    np.testing.assert_allclose(inf["weight"], [37.4075129655324, 62.5924870344676], rtol=RTOL)
    np.testing.assert_allclose(inf[["tau2_del", "QE_del"]].to_numpy(), 0.0, atol=ATOL)
    l1o = leave1out(res).tidy()
    np.testing.assert_allclose(l1o["estimate"], [-1.585388657201430, -0.889311333920205], rtol=RTOL)
    np.testing.assert_allclose(l1o["se"], [0.441113501718258, 0.570600354892950], rtol=RTOL)
    np.testing.assert_allclose(l1o["pval"], [0.000325564061477674, 0.119102032291585586], rtol=RTOL)
    np.testing.assert_allclose(l1o[["Q", "tau2", "I2"]].to_numpy(), 0.0, atol=ATOL)
    np.testing.assert_allclose(l1o[["Qp", "H2"]].to_numpy(), 1.0)


def test_every_cluster_of_one_effect_deletes_as_by_effect() -> None:
    single = ASSINK.groupby("study").head(1).reset_index(drop=True)
    res = _che(single)
    by_cluster, by_effect = leave1out(res, cluster="study").tidy(), leave1out(res).tidy()
    np.testing.assert_allclose(by_cluster["estimate"], by_effect["estimate"], rtol=1e-10)
    np.testing.assert_allclose(by_cluster["se"], by_effect["se"], rtol=1e-10)
    np.testing.assert_allclose(
        cooks_distance(res, cluster="study").tidy()["cook_d"], cooks_distance(res).tidy()["cook_d"], rtol=1e-10
    )


def test_deleting_the_only_cluster_with_a_level_gives_nan_and_says_so() -> None:
    data = ASSINK.copy()
    first = data["study"] == data["study"].iloc[0]
    data["grp"] = np.where(first, "a", np.where(data.index % 2 == 0, "b", "c"))
    res = _che(data, mods="~ C(grp)")
    for out in (cooks_distance(res, cluster="study"), dfbetas(res, cluster="study"), influence(res, cluster="study")):
        table = out.tidy()
        assert table.iloc[0, 1:].isna().drop(labels=["k"], errors="ignore").all()
        assert np.isfinite(table.iloc[1:, 1:].to_numpy(dtype=float)).all()
        assert "without study 1 the moderators cannot be estimated" in out.summary()
        assert out.to_dict()["notes"] == [out.notes[0]]
    rs = rstudent(res, cluster="study")
    assert rs.tidy()["z"][first.to_numpy()].isna().all() and rs.notes


def test_moderator_constant_after_a_deletion_gives_nan_without_numpy_warnings() -> None:
    data = BCG.assign(m=0.0)
    data.loc[5, "m"] = 1.0
    res = meta(data, "yi", "vi", mods="m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = influence(res).tidy()
    assert table.drop(columns=["effect", "hat", "weight"]).iloc[5].isna().all()
    assert np.isfinite(table.drop(index=5).to_numpy(dtype=float)).all()
    assert influence(res).notes == (
        "without effect 6 the moderators cannot be estimated (one is constant, or a level is gone): NaN",
    )
    multilevel = _che(ASSINK.assign(m=np.where(ASSINK.index == 5, 1.0, 0.0)), mods="m")
    assert influence(multilevel).tidy()["rstudent"].isna().sum() == 1


def _with_column(values: list[object]) -> MetaResult:
    return _che(ASSINK.assign(g=values))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([np.nan] * 5 + list(ASSINK["study"][5:]), "column 'g' \\(cluster\\) is missing for effect 1"),
        (["1"] * 5 + list(ASSINK["study"][5:]), "column 'g' \\(cluster\\) mixes numbers and text \\(effect 6\\)"),
    ],
)
def test_cluster_column_with_missing_or_mixed_values_is_refused(values: list[object], message: str) -> None:
    res = _with_column(values)
    for run in (leave1out, cooks_distance, rstudent, dfbetas, influence):
        with pytest.raises(InputError, match=message):
            run(res, cluster="g")


@pytest.mark.parametrize("cluster", [["study"], 5, ("study",)])
def test_cluster_that_is_not_a_column_name_is_refused(cluster: object) -> None:
    res = _che()
    for run in (leave1out, cooks_distance, rstudent, dfbetas, influence):
        with pytest.raises(InputError, match="cluster must be the name of a column"):
            run(res, cluster=cluster)


def test_cumul_order_with_ties_is_stable_and_matches_the_sorted_fits() -> None:
    data = BCG.assign(period=np.where(BCG["year"] < 1950, 1, 2))
    res = meta(data, "yi", "vi")
    table = cumul(res, order="period").tidy()
    early = np.flatnonzero(data["period"] == 1)
    assert table["effect"].tolist() == [*(early + 1), *(np.flatnonzero(data["period"] == 2) + 1)]
    direct = meta(data.iloc[early], "yi", "vi")
    assert table["estimate"][early.size - 1] == pytest.approx(direct.coefficients.estimate[0], rel=1e-8)


def test_cumul_by_text_and_ordered_categories() -> None:
    data = BCG.assign(
        size=pd.Categorical(np.where(BCG.index % 3 == 0, "large", "small"), ["small", "large"], ordered=True)
    )
    table = cumul(meta(data, "yi", "vi"), order="size").tidy()
    assert table["size"].tolist() == sorted(data["size"].tolist(), key=["small", "large"].index)  # category order
    text = cumul(meta(data.assign(size=data["size"].astype(str)), "yi", "vi"), order="size").tidy()
    assert text["size"].tolist() == sorted(data["size"].astype(str).tolist())  # alphabetical
    assert text["effect"].iloc[0] == 1  # 'large' first, ties in data order


@pytest.mark.parametrize(
    ("column", "order", "message"),
    [
        (BCG["year"].where(BCG.index != 2), "year", "column 'year' \\(order\\) is missing for effect 3"),
        (pd.Series([1948, "x", *BCG["year"][2:]], dtype=object), "year", "mixes numbers and text \\(effect 2\\)"),
        (BCG["year"], ["year"], "order must be the name of a column"),
    ],
)
def test_cumul_bad_order_is_refused(column: pd.Series, order: object, message: str) -> None:
    res = meta(BCG.assign(year=column), "yi", "vi")
    with pytest.raises(InputError, match=message):
        cumul(res, order=order)  # type: ignore[arg-type]


@settings(max_examples=10, deadline=None)
@given(st.floats(min_value=-3.0, max_value=3.0))
def test_influence_is_invariant_to_the_scale_of_the_effects(exponent: float) -> None:
    scale = 10.0**exponent
    base = influence(meta(BCG, "yi", "vi"))
    scaled = influence(meta(BCG.assign(yi=BCG["yi"] * scale, vi=BCG["vi"] * scale**2), "yi", "vi"))
    for col in ("rstudent", "dffits", "cook_d", "cov_r", "hat", "weight", "dfbetas_intrcpt"):
        np.testing.assert_allclose(scaled.tidy()[col], base.tidy()[col], rtol=1e-6, atol=1e-9, err_msg=col)
    np.testing.assert_allclose(scaled.tidy()["tau2_del"], base.tidy()["tau2_del"] * scale**2, rtol=1e-6)


def test_multilevel_deletions_are_invariant_to_the_scale_of_the_effects() -> None:
    base = _che()
    scaled = _che(ASSINK.assign(yi=ASSINK["yi"] * 1e3, vi=ASSINK["vi"] * 1e6))
    for run in (cooks_distance, dfbetas):
        a, b = run(base, cluster="study").tidy(), run(scaled, cluster="study").tidy()
        np.testing.assert_allclose(b.iloc[:, 1:].to_numpy(float), a.iloc[:, 1:].to_numpy(float), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(hatvalues(scaled).tidy()["hat"], hatvalues(base).tidy()["hat"], rtol=1e-7)


# ---- anova ---------------------------------------------------------------------------------------------


def test_anova_rho_zero_equals_no_rho() -> None:
    zero = _che(method="ML", rho=0.0)
    none = _che(method="ML", sigma2=[None, 0.0])
    lrt = edueffects.anova(zero, none)
    assert lrt.statistic == pytest.approx(2.0 * (zero.loglik - none.loglik))


def test_anova_refuses_rho_against_no_rho_and_different_rows() -> None:
    che = _che(method="ML", rho=0.5)
    with pytest.raises(InputError, match="different sampling correlations"):
        edueffects.anova(che, _che(method="ML", sigma2=[None, 0.0]))
    fewer = _che(ASSINK.iloc[1:].reset_index(drop=True), method="ML", rho=0.5, sigma2=[None, 0.0])
    with pytest.raises(InputError, match="different data"):
        edueffects.anova(che, fewer)
