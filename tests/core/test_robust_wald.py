"""Cluster-robust Wald tests (clubSandwich ``Wald_test``: HTZ, Naive-F, chi-sq) against R and a dense transcription."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edueffects
from edueffects.core.robust import RobustCovariance, cr2, cr2_wald_test

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = json.loads((ROOT / "tests/reference/clubsandwich_wald.json").read_text())
CASES = sorted(REFERENCE["cases"])
TESTS = ("HTZ", "Naive-F", "chi-sq")


def sym_power(mat: np.ndarray, power: float) -> np.ndarray:
    values, vectors = np.linalg.eigh(mat)
    scaled = np.where(values > 1e-12, np.abs(values) ** power, 0.0)
    return np.asarray((vectors * scaled) @ vectors.T, dtype=np.float64)


# --- R parity ----------------------------------------------------------------------------------


def fit_case(case: dict[str, Any]) -> tuple[edueffects.MetaResult, np.ndarray]:
    """The project's fit of a reference case and the robust cluster codes in model row order."""
    data = pd.read_csv(ROOT / case["data"])
    data["decade"] = 10 * (data["year"] // 10)  # bcg's robust cluster and konstantopoulos' centred year,
    data["year_c"] = data["year"] - 1990  # derived as in the R script
    model = case["model"]
    kwargs: dict[str, Any] = {"mods": list(model["mods"])}
    if model["kind"] == "multilevel":
        kwargs.update(cluster=model["cluster"], within=model["within"])
    else:
        kwargs.update(method=model["method"])
    res = edueffects.meta(data, yi="yi", vi="vi", **kwargs)
    assert list(res.coefficients.names) == case["coef_names"]
    codes = pd.factorize(res.state.frame[case["robust_cluster"]])[0].astype(np.intp)
    return res, codes


def robust_of(fit: Any, codes: np.ndarray, variances: np.ndarray | None = None) -> tuple[RobustCovariance, np.ndarray]:
    """``cr2`` called as ``MetaResult.robust`` does; with ``variances`` given, at those variance components
    (GLS re-solved densely), so that the Wald tests are compared without the optimisers' own noise."""
    n_levels = len(fit.level_codes)
    if variances is None:
        beta, cov_beta, row_var, level_var = fit.beta, fit.cov_beta, fit.v + fit.residual_variance, fit.theta[:n_levels]
    else:
        level_var = variances[:n_levels]
        row_var = fit.v + (variances[n_levels] if variances.size > n_levels else 0.0)
        theta = np.diag(row_var)
        for codes_l, s2 in zip(fit.level_codes, level_var, strict=True):
            theta = theta + s2 * (codes_l[:, None] == codes_l[None, :])
        w = np.linalg.inv(theta)
        cov_beta = np.linalg.inv(fit.x.T @ w @ fit.x)
        beta = cov_beta @ fit.x.T @ w @ fit.y
    rc = cr2(fit.x, fit.y - fit.x @ beta, cov_beta, row_var, fit.level_codes, level_var, codes)
    return rc, beta


def check_against_reference(case: dict[str, Any], rc: RobustCovariance, beta: np.ndarray, rtol: float) -> float:
    """Assert every Wald test of the case at ``rtol``; returns the largest relative difference."""
    worst = 0.0
    vcov = np.array(case["vcov_cr2"])
    np.testing.assert_allclose(beta, case["beta"], rtol=rtol)
    np.testing.assert_allclose(rc.vcov, vcov, rtol=rtol, atol=rtol * np.abs(vcov).max())
    np.testing.assert_allclose(rc.df, case["satterthwaite_df"], rtol=rtol)
    assert rc.n_clusters == case["n_clusters"]
    for hyp in case["tests"]:
        c = np.array(hyp["constraints"])
        for kind in TESTS:
            ref = hyp[kind]
            got = cr2_wald_test(rc, beta, c, kind)  # type: ignore[arg-type]
            assert (got.test, got.q, got.df_num) == (kind, c.shape[0], ref["df_num"])
            pairs = [(got.fstat, ref["Fstat"]), (got.pval, ref["p_val"])]
            if kind == "chi-sq":
                assert got.df_denom is None and ref["df_denom"] is None
                pairs.append((got.statistic, ref["Fstat"] * c.shape[0]))
            else:
                assert got.df_denom is not None
                pairs.append((got.df_denom, ref["df_denom"]))
            for value, expected in pairs:
                diff = abs(value - expected) / abs(expected)
                worst = max(worst, diff)
                assert diff <= rtol, (hyp["name"], kind, value, expected)
    return worst


@pytest.mark.parametrize("name", CASES)
def test_wald_matches_clubsandwich_at_r_variance_components(name: str) -> None:
    case = REFERENCE["cases"][name]
    res, codes = fit_case(case)
    variances = np.array(case["sigma2"] if "sigma2" in case else [case["tau2"]], dtype=np.float64)
    rc, beta = robust_of(res.state, codes, variances)
    check_against_reference(case, rc, beta, rtol=1e-8)


@pytest.mark.parametrize("name", CASES)
def test_wald_matches_clubsandwich_with_project_fit(name: str) -> None:
    """End to end from ``edueffects.meta``: limited by how closely the two optimisers agree (rma.mv's
    nlminb, BFGS and nlm differ from each other by up to ~1e-6 relative on konstantopoulos2011)."""
    case = REFERENCE["cases"][name]
    res, codes = fit_case(case)
    rc, beta = robust_of(res.state, codes)
    check_against_reference(case, rc, beta, rtol=1e-8 if case["model"]["kind"] == "univariate" else 1e-6)


# --- dense transcription and invariants -------------------------------------------------------


def random_problem(seed: int, p: int = 4) -> tuple[RobustCovariance, np.ndarray, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(40, 80))
    study = rng.integers(0, int(rng.integers(8, 16)), size=n)
    cols = [np.ones(n), rng.normal(size=n), (rng.uniform(size=n) < 0.3).astype(float)]
    cols += [rng.normal(size=n) for _ in range(p - 3)]
    x = np.column_stack(cols)
    v = rng.uniform(0.02, 0.2, size=n)
    s2 = np.array([rng.uniform(0.01, 0.3), rng.uniform(0.0, 0.1)])
    codes = [study, np.arange(n)]
    theta = np.diag(v) + s2[0] * (study[:, None] == study[None, :]) + s2[1] * np.eye(n)
    e = rng.normal(size=n)
    m = np.linalg.inv(x.T @ np.linalg.inv(theta) @ x)
    cluster = study // int(rng.integers(1, 3))
    rc = cr2(x, e, m, v, codes, s2, cluster)
    beta = rng.normal(size=p)
    return rc, beta, {"x": x, "theta": theta, "m": m, "cluster": cluster}


def dense_htz_nu(c: np.ndarray, x: np.ndarray, theta: np.ndarray, m: np.ndarray, cluster: np.ndarray) -> float:
    """clubSandwich's ``get_GH``, ``get_P_array(all_terms = TRUE)`` and ``total_variance_mat``, literally."""
    l_m = np.linalg.cholesky(m)
    g_list, h_list = [], []
    for lab in np.unique(cluster):
        idx = np.flatnonzero(cluster == lab)
        th = theta[np.ix_(idx, idx)]
        w = np.linalg.inv(th)
        xj = x[idx]
        r = np.linalg.cholesky(th).T
        g = r @ (np.eye(idx.size) - xj @ m @ xj.T @ w) @ th @ r.T
        me = m @ xj.T @ w @ (r.T @ sym_power(g, -0.5) @ r)
        g_list.append(c @ me @ r.T)
        h_list.append(c @ me @ xj @ l_m)
    q, n_cl = c.shape[0], len(g_list)
    h = np.array(h_list)  # (J, q, p)
    p_arr = np.empty((q, q, n_cl, n_cl))
    for i in range(q):
        for j in range(q):
            tmp = -h[:, i, :] @ h[:, j, :].T
            tmp[np.diag_indices(n_cl)] += [gj[i] @ gj[j] for gj in g_list]
            p_arr[i, j] = tmp
    ns = sym_power(np.einsum("abjj->ab", p_arr), -0.5)
    b = np.einsum("ia,abjk,bt->itjk", ns, p_arr, ns)
    var = np.array([[np.sum(b[s, t] * b[t, s]) + np.sum(b[s, s] * b[t, t]) for t in range(q)] for s in range(q)])
    return float(q * (q + 1) / var.sum())


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(seed=st.integers(0, 10_000), q=st.integers(1, 4))
def test_htz_matches_dense_transcription(seed: int, q: int) -> None:
    rc, beta, dense = random_problem(seed)
    c = np.random.default_rng(seed + 1).normal(size=(q, 4))
    got = cr2_wald_test(rc, beta, c, "HTZ")
    nu = dense_htz_nu(c, **dense)
    assert got.df_denom is not None
    np.testing.assert_allclose(got.df_denom + q - 1, nu, rtol=1e-9)


@SETTINGS
@given(seed=st.integers(0, 10_000), q=st.integers(1, 4))
def test_tests_invariant_to_reparametrising_the_constraints(seed: int, q: int) -> None:
    """``C -> A C`` (A nonsingular: row scaling, mixing, reordering) leaves Q and the HTZ df unchanged."""
    rc, beta, _ = random_problem(seed)
    rng = np.random.default_rng(seed + 2)
    c = rng.normal(size=(q, 4))
    a = np.linalg.qr(rng.normal(size=(q, q)))[0] * rng.uniform(0.5, 2.0, q)  # well conditioned: roundoff only
    for kind in TESTS:
        x1 = cr2_wald_test(rc, beta, c, kind)  # type: ignore[arg-type]
        x2 = cr2_wald_test(rc, beta, a @ c, kind)  # type: ignore[arg-type]
        x3 = cr2_wald_test(rc, beta, np.diag(rng.uniform(0.1, 10.0, q)) @ c, kind)  # type: ignore[arg-type]
        for other in (x2, x3):
            np.testing.assert_allclose(other.statistic, x1.statistic, rtol=1e-8)
            np.testing.assert_allclose(other.pval, x1.pval, rtol=1e-6, atol=1e-12)
            if x1.df_denom is None:
                assert other.df_denom is None
            else:
                assert other.df_denom is not None
                np.testing.assert_allclose(other.df_denom, x1.df_denom, rtol=1e-8)


@SETTINGS
@given(seed=st.integers(0, 10_000), coef=st.integers(0, 3), scale=st.floats(0.01, 100.0))
def test_single_constraint_htz_is_squared_satterthwaite_t(seed: int, coef: int, scale: float) -> None:
    rc, beta, _ = random_problem(seed)
    c = np.zeros((1, 4))
    c[0, coef] = scale
    got = cr2_wald_test(rc, beta, c, "HTZ")
    t = beta[coef] / np.sqrt(rc.vcov[coef, coef])
    assert got.df_denom is not None
    np.testing.assert_allclose(got.statistic, t**2, rtol=1e-10)
    np.testing.assert_allclose(got.df_denom, rc.df[coef], rtol=1e-10)


def test_naive_f_and_chi_square_conventions() -> None:
    rc, beta, _ = random_problem(7)
    c = np.eye(4)[1:]
    chi, naive = cr2_wald_test(rc, beta, c, "chi-sq"), cr2_wald_test(rc, beta, c, "Naive-F")
    assert chi.statistic == chi.wald and chi.fstat == pytest.approx(chi.wald / 3) and chi.df_denom is None
    assert naive.statistic == pytest.approx(chi.wald / 3) and naive.df_denom == rc.n_clusters - 1


def test_htz_without_positive_denominator_df() -> None:
    """clubSandwich's ``Hotelling_Tsq``: ``delta = pmax((nu - q + 1) / nu, 0)`` and ``p = NA`` when ``df <= 0``."""
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 6, size=5)
    cluster = np.repeat(np.arange(5), sizes)
    n, p = cluster.size, 4
    x = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1)) * rng.uniform(0.2, 3.0, size=(n, 1)) ** 2])
    v = rng.uniform(0.05, 0.2, size=n)
    m = np.asarray(np.linalg.inv(x.T @ (x / v[:, None])), dtype=np.float64)
    rc = cr2(x, rng.normal(size=n), m, v, [], np.zeros(0), cluster)
    got = cr2_wald_test(rc, rng.normal(size=p), np.eye(p)[1:], "HTZ")
    assert got.df_denom is not None and got.df_denom <= 0
    assert got.statistic == 0.0 and np.isnan(got.pval)


def test_bad_constraints() -> None:
    rc, beta, _ = random_problem(1)
    with pytest.raises(ValueError, match="positive definite"):
        cr2_wald_test(rc, beta, np.vstack([np.eye(4)[1], np.zeros(4)]))
    with pytest.raises(ValueError, match="constraints"):
        cr2_wald_test(rc, beta, np.eye(3))
    with pytest.raises(ValueError, match="unknown"):
        cr2_wald_test(rc, beta, np.eye(4)[:1], "HTA")  # type: ignore[arg-type]


# --- units of the moderators ------------------------------------------------------------------


def rescaled(rc: RobustCovariance, factors: np.ndarray) -> RobustCovariance:
    """The CR2 pieces of the model with column ``j`` of ``X`` multiplied by ``factors[j]`` (the same fit in
    other units: ``b_j``, ``V`` and ``M`` scale by ``1 / factors``)."""
    inv = 1.0 / factors
    outer = inv[:, None] * inv[None, :]
    return RobustCovariance(
        vcov=rc.vcov * outer,
        df=rc.df,
        n_clusters=rc.n_clusters,
        bread=rc.bread * outer,
        cluster_var=rc.cluster_var * outer[None],
        cluster_design=rc.cluster_design * inv[None, :, None] * factors[None, None, :],
    )


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    column=st.integers(1, 3),
    factor=st.sampled_from([10.0, 1e4, 1e6, 1e7, 1e-4]),
    q=st.integers(1, 3),
)
def test_tests_do_not_depend_on_the_units_of_a_moderator(seed: int, column: int, factor: float, q: int) -> None:
    """A moderator in other units (a sample size, x10, x1e4, ...) is the same model: the same F, df and p,
    never a refusal as redundant (the check and Omega^{-1/2} work on rows scaled to unit robust variance)."""
    rc, beta, _ = random_problem(seed)
    factors = np.ones(4)
    factors[column] = factor
    rows = np.random.default_rng(seed + 3).permutation(np.arange(1, 4))[:q]
    rows[0] = column
    c = np.eye(4)[np.sort(np.unique(rows))]  # coefficients tested, the rescaled one among them
    other = rescaled(rc, factors)
    for kind in TESTS:
        x1 = cr2_wald_test(rc, beta, c, kind)  # type: ignore[arg-type]
        x2 = cr2_wald_test(other, beta / factors, c, kind)  # type: ignore[arg-type]
        np.testing.assert_allclose(x2.statistic, x1.statistic, rtol=1e-8)
        np.testing.assert_allclose(x2.pval, x1.pval, rtol=1e-6, atol=1e-12)
        if x1.df_denom is not None:
            assert x2.df_denom is not None
            np.testing.assert_allclose(x2.df_denom, x1.df_denom, rtol=1e-8)


@pytest.mark.parametrize("factor", [10.0, 1e4])
def test_sample_size_moderator_is_tested_whatever_its_units(factor: float) -> None:
    """``mods=["x", "n3"]`` with ``n3`` a sample size times 10 (1e3..2e6, not redundant): the robust test of
    both moderators equals the one with ``n3`` in thousands, for every test."""
    rng = np.random.default_rng(1)
    k = 60
    data = pd.DataFrame({"study": np.repeat(np.arange(20), 3), "x": rng.normal(size=k)})
    data["n3"] = rng.uniform(1e2, 2e5, size=k) * 10
    data["vi"] = rng.uniform(0.02, 0.2, size=k)
    data["yi"] = 0.2 + 0.1 * data["x"] + rng.normal(size=k) * np.sqrt(data["vi"] + 0.05)
    base = edueffects.meta(data.assign(n3=data["n3"] / 1e3), yi="yi", vi="vi", mods=["x", "n3"]).robust("study")
    scaled = edueffects.meta(data.assign(n3=data["n3"] * factor), yi="yi", vi="vi", mods=["x", "n3"]).robust("study")
    for kind in TESTS:
        want = base.wald(["x", "n3"], test=kind)  # type: ignore[arg-type]
        got = scaled.wald(["x", "n3"], test=kind)  # type: ignore[arg-type]
        np.testing.assert_allclose(got.statistic, want.statistic, rtol=1e-7)
        np.testing.assert_allclose(got.pval, want.pval, rtol=1e-6)
        assert (got.df2 is None) == (want.df2 is None)
        if want.df2 is not None:
            np.testing.assert_allclose(got.df2, want.df2, rtol=1e-7)


@SETTINGS
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([1e-6, 1e-3, 1e3, 1e6]))
def test_cr2_is_equivariant_to_the_units_of_y(seed: int, scale: float) -> None:
    """``y`` times ``c`` (``v`` and the variance components times ``c^2``): ``V_CR2`` times ``c^2``, the same df
    and tests. The cut-off of ``g^{-1/2}`` is relative to the cluster's variances (a fixed 1e-12 set every
    ``g`` of data with ``v ~ 1e-8`` to zero, and with it ``V_CR2``)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(40, 80))
    study = rng.integers(0, int(rng.integers(8, 16)), size=n)
    x = np.column_stack([np.ones(n), rng.normal(size=n), (rng.uniform(size=n) < 0.3).astype(float)])
    v = rng.uniform(0.02, 0.2, size=n)
    s2 = np.array([rng.uniform(0.01, 0.3), rng.uniform(0.0, 0.1)])
    codes = [study, np.arange(n)]
    theta = np.diag(v) + s2[0] * (study[:, None] == study[None, :]) + s2[1] * np.eye(n)
    m = np.linalg.inv(x.T @ np.linalg.inv(theta) @ x)
    e = rng.normal(size=n)
    beta = rng.normal(size=3)
    base = cr2(x, e, m, v, codes, s2, study)
    other = cr2(x, scale * e, scale**2 * m, scale**2 * v, codes, scale**2 * s2, study)
    np.testing.assert_allclose(other.vcov / scale**2, base.vcov, rtol=1e-8, atol=1e-14 * np.abs(base.vcov).max())
    np.testing.assert_allclose(other.df, base.df, rtol=1e-8)
    for kind in TESTS:
        want = cr2_wald_test(base, beta, np.eye(3)[1:], kind)  # type: ignore[arg-type]
        got = cr2_wald_test(other, scale * beta, np.eye(3)[1:], kind)  # type: ignore[arg-type]
        np.testing.assert_allclose(got.statistic, want.statistic, rtol=1e-8)
        if want.df_denom is not None:
            assert got.df_denom is not None
            np.testing.assert_allclose(got.df_denom, want.df_denom, rtol=1e-8)
