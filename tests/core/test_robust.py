"""CR2 + Satterthwaite against a literal, dense transcription of clubSandwich's formulas."""

from __future__ import annotations

import numpy as np
import pytest

from edueffects.core.robust import cr2


def sym_power(mat: np.ndarray, power: float) -> np.ndarray:
    values, vectors = np.linalg.eigh(mat)
    scaled = np.where(values > 1e-12, np.abs(values) ** power, 0.0)
    return (vectors * scaled) @ vectors.T


def clubsandwich_dense(x, e, theta_full, cluster):
    """vcovCR(type = 'CR2', inverse_var = TRUE) and coef_test's Satterthwaite df, cluster by cluster."""
    w_full = np.linalg.inv(theta_full)
    m = np.linalg.inv(x.T @ w_full @ x)
    labels = np.unique(cluster)
    est, g_list, h_list = [], [], []
    l_m = np.linalg.cholesky(m)
    for lab in labels:
        idx = np.flatnonzero(cluster == lab)
        th = theta_full[np.ix_(idx, idx)]
        w = np.linalg.inv(th)
        xj = x[idx]
        r = np.linalg.cholesky(th).T  # R'R = Theta (R's chol)
        ih = np.eye(idx.size) - xj @ m @ xj.T @ w
        g = r @ ih @ th @ r.T
        a = r.T @ sym_power(g, -0.5) @ r
        me = m @ xj.T @ w @ a
        est.append(me @ e[idx])
        g_list.append(me @ r.T)
        h_list.append(me @ xj @ l_m)
    b = np.array(est)
    vcov = b.T @ b
    p = x.shape[1]
    df = np.empty(p)
    for i in range(p):
        h = np.array([hj[i] for hj in h_list])  # J x p
        pmat = -h @ h.T + np.diag([float(gj[i] @ gj[i]) for gj in g_list])
        df[i] = 2 * np.trace(pmat) ** 2 / (2 * np.sum(pmat**2))
    return vcov, df


@pytest.mark.parametrize("coarser", [True, False], ids=["robust-coarser", "robust-is-model-cluster"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cr2_matches_dense_transcription(seed: int, coarser: bool) -> None:
    rng = np.random.default_rng(seed)
    n = 70
    study = rng.integers(0, 12, size=n)
    x = np.column_stack([np.ones(n), rng.normal(size=n), (rng.uniform(size=n) < 0.3).astype(float)])
    v = rng.uniform(0.02, 0.2, size=n)
    s2 = np.array([0.15, 0.04])
    codes = [study, np.arange(n)]
    theta_full = np.diag(v) + s2[0] * (study[:, None] == study[None, :]) + s2[1] * np.eye(n)
    e = rng.normal(size=n)
    m = np.linalg.inv(x.T @ np.linalg.inv(theta_full) @ x)
    # coarser than the model clusters (Theta_j block-diagonal), or the model's clusters themselves
    robust_cluster = study // 2 if coarser else study
    got = cr2(x, e, m, v, codes, s2, robust_cluster)
    vcov, df = clubsandwich_dense(x, e, theta_full, robust_cluster)
    np.testing.assert_allclose(got.vcov, vcov, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got.df, df, rtol=1e-9)
    assert got.n_clusters == np.unique(robust_cluster).size


def test_cr2_with_diagonal_working_model() -> None:
    rng = np.random.default_rng(11)
    n = 40
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    d = rng.uniform(0.1, 0.5, size=n)
    cluster = rng.integers(0, 8, size=n)
    e = rng.normal(size=n)
    m = np.linalg.inv(x.T @ (x / d[:, None]))
    got = cr2(x, e, m, d, [], np.zeros(0), cluster)
    vcov, df = clubsandwich_dense(x, e, np.diag(d), cluster)
    np.testing.assert_allclose(got.vcov, vcov, rtol=1e-10)
    np.testing.assert_allclose(got.df, df, rtol=1e-9)


def _case(seed: int, n: int = 90) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    study = rng.integers(0, 15, size=n)
    x = np.column_stack([np.ones(n), rng.normal(size=n), (rng.uniform(size=n) < 0.3).astype(float)])
    return rng, study, x, rng.uniform(0.02, 0.2, size=n), rng.normal(size=n)


@pytest.mark.parametrize("seed", [4, 5])
def test_cr2_with_loadings_matches_dense_transcription(seed: int) -> None:
    """Rows standing for blocks of identical rows (loading sqrt(n), the recovery engine): Theta_j =
    D + sigma2 lambda lambda'."""
    rng, study, x, d, e = _case(seed)
    load = np.sqrt(rng.integers(1, 30, size=d.size).astype(float))
    s2 = 0.3
    theta_full = np.diag(d) + s2 * (study[:, None] == study[None, :]) * np.outer(load, load)
    m = np.linalg.inv(x.T @ np.linalg.solve(theta_full, x))
    got = cr2(x, e, m, d, [study], np.array([s2]), study, level_loadings=[load])
    vcov, df = clubsandwich_dense(x, e, theta_full, study)
    np.testing.assert_allclose(got.vcov, vcov, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got.df, df, rtol=1e-9)


def test_cr2_with_a_cluster_that_alone_determines_a_coefficient() -> None:
    """A dummy that is 1 in one cluster only makes g of that cluster singular: its eigenvalue 0 is cut,
    as clubSandwich's matrix_power does."""
    _, study, x, d, e = _case(6)
    x[:, 2] = (study == 3).astype(float)
    s2 = np.array([0.1, 0.05])
    theta_full = np.diag(d + s2[1]) + s2[0] * (study[:, None] == study[None, :])
    m = np.linalg.inv(x.T @ np.linalg.solve(theta_full, x))
    got = cr2(x, e, m, d, [study, np.arange(d.size)], s2, study)
    vcov, df = clubsandwich_dense(x, e, theta_full, study)
    np.testing.assert_allclose(got.vcov[:2, :2], vcov[:2, :2], rtol=1e-9)
    np.testing.assert_allclose(got.df[:2], df[:2], rtol=1e-8)


def test_constant_within_clusters_of_any_labels() -> None:
    from edueffects.core.blocks import constant_within

    cluster = np.array([7, 7, 1000003, 1000003, -5])
    assert constant_within(np.array([0, 0, 2, 2, 1]), cluster)
    assert not constant_within(np.array([0, 1, 2, 2, 1]), cluster)
    assert constant_within(np.array([3, 3, 3, 3, 3]), np.array([0, 0, 1, 1, 2]))
    assert not constant_within(np.array([3, 3, 4, 3, 3]), np.array([0, 0, 1, 1, 2]))


@pytest.mark.parametrize("labels", ["float", "bool-like", "text"])
def test_cr2_with_cluster_labels_that_are_not_integer_codes(labels: str) -> None:
    _, study, x, d, e = _case(9)
    s2 = np.array([0.1, 0.05])
    m = np.linalg.inv(x.T @ (x / (d + s2.sum())[:, None]))
    cluster = {"float": study * 1.5, "bool-like": study % 2 == 0, "text": study.astype(str).astype(object)}[labels]
    codes = np.unique(cluster, return_inverse=True)[1].reshape(-1)
    levels = [study, np.arange(d.size)] if labels != "bool-like" else [codes, np.arange(d.size)]
    expected = cr2(x, e, m, d, levels, s2, codes)
    got = cr2(x, e, m, d, levels, s2, cluster)  # type: ignore[arg-type]
    # text labels are ordered as numbers by the batching, not as text: the same sums in another order
    tolerance = 1e-13 if labels == "text" else 0.0
    np.testing.assert_allclose(got.vcov, expected.vcov, rtol=tolerance, atol=0.0)
    np.testing.assert_allclose(got.df, expected.df, rtol=tolerance, atol=0.0)
