"""The nested likelihood against a dense-matrix oracle: values, exact gradient and Hessian, optimum."""

from __future__ import annotations

import numpy as np
import pytest

from edueffects.core.nested import design_from_rows, evaluate, maximize


def nested_codes(rng: np.random.Generator, n: int, depth: int) -> list[np.ndarray]:
    """Random nested group codes, outermost first (inner codes unique across outer groups)."""
    if depth == 0:
        return []
    codes = [rng.integers(0, 4, size=n)]
    for _ in range(depth - 1):
        codes.append(codes[-1] * 10 + rng.integers(0, 3, size=n))
    return [np.unique(c, return_inverse=True)[1] for c in codes]


def dense_loglik(x, y, v, codes, theta, residual, method):
    """Textbook ML/REML log-likelihood with the full n x n marginal covariance (metafor's constant)."""
    levels = len(codes)
    cov = np.diag(v + (theta[levels] if residual else 0.0))
    for c, s2 in zip(codes, theta[:levels], strict=True):
        cov = cov + s2 * (c[:, None] == c[None, :])
    return covariance_loglik(x, y, cov, method)


def covariance_loglik(x, y, cov, method):
    """The log-likelihood of ``y ~ N(X b, cov)`` (REML: of the residuals), the GLS ``b`` and its covariance."""
    n, p = x.shape
    w = np.linalg.inv(cov)
    a = x.T @ w @ x
    beta = np.linalg.solve(a, x.T @ w @ y)
    r = y - x @ beta
    value = np.linalg.slogdet(cov)[1] + r @ w @ r
    if method == "REML":
        value += np.linalg.slogdet(a)[1] - np.linalg.slogdet(x.T @ x)[1] + (n - p) * np.log(2 * np.pi)
    else:
        value += n * np.log(2 * np.pi)
    return -0.5 * value, beta, np.linalg.inv(a)


CASES = [
    # depth, residual, known variances, singleton innermost level
    (0, True, True, False),
    (1, False, True, False),
    (1, True, False, False),
    (2, False, True, False),
    (2, False, True, True),
    (2, True, True, False),
    (3, False, True, False),
    (3, True, False, False),
]


@pytest.mark.parametrize("method", ["ML", "REML"])
@pytest.mark.parametrize(("depth", "residual", "known", "singleton"), CASES)
def test_matches_dense_oracle(depth: int, residual: bool, known: bool, singleton: bool, method: str) -> None:
    rng = np.random.default_rng(depth * 10 + residual * 3 + known + singleton * 7)
    n = 40
    x = np.column_stack([np.ones(n), rng.normal(size=n), rng.integers(0, 2, size=n)])
    y = rng.normal(size=n)
    v = rng.uniform(0.05, 0.3, size=n) if known else np.zeros(n)
    codes = nested_codes(rng, n, depth)
    if singleton and codes:
        codes[-1] = np.arange(n)
    theta = rng.uniform(0.05, 0.5, size=depth + int(residual))
    design = design_from_rows(x, y, v, codes, residual)
    ev = evaluate(design, theta, method)  # type: ignore[arg-type]
    expected, beta, cov = dense_loglik(x, y, v, codes, theta, residual, method)
    assert ev.loglik == pytest.approx(expected, rel=1e-12, abs=1e-10)
    np.testing.assert_allclose(ev.beta, beta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ev.cov_beta, cov, rtol=1e-10, atol=1e-14)
    h = 1e-5
    for i in range(theta.size):
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        f_up = dense_loglik(x, y, v, codes, up, residual, method)[0]
        f_down = dense_loglik(x, y, v, codes, down, residual, method)[0]
        assert ev.gradient[i] == pytest.approx((f_up - f_down) / (2 * h), rel=1e-6, abs=1e-7)
        g_up = evaluate(design, up, method).gradient  # type: ignore[arg-type]
        g_down = evaluate(design, down, method).gradient  # type: ignore[arg-type]
        np.testing.assert_allclose(ev.hessian[i], (g_up - g_down) / (2 * h), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ev.hessian, ev.hessian.T, rtol=1e-12, atol=1e-12)


def test_row_order_does_not_matter() -> None:
    rng = np.random.default_rng(3)
    n = 60
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    y, v = rng.normal(size=n), rng.uniform(0.05, 0.2, size=n)
    codes = nested_codes(rng, n, 2)
    theta = np.array([0.2, 0.1])
    perm = rng.permutation(n)
    a = evaluate(design_from_rows(x, y, v, codes, False), theta, "REML")
    b = evaluate(design_from_rows(x[perm], y[perm], v[perm], [c[perm] for c in codes], False), theta, "REML")
    assert a.loglik == pytest.approx(b.loglik, rel=1e-13)
    np.testing.assert_allclose(a.gradient, b.gradient, rtol=1e-11)


def test_maximize_reaches_zero_gradient_and_flags_boundary() -> None:
    rng = np.random.default_rng(5)
    n = 200
    cluster = rng.integers(0, 30, size=n)
    v = rng.uniform(0.02, 0.1, size=n)
    # between-cluster variance 0.1, no within-cluster heterogeneity beyond sampling error
    y = 0.3 + rng.normal(0, np.sqrt(0.1), 30)[cluster] + rng.normal(0, np.sqrt(v))
    design = design_from_rows(np.ones((n, 1)), y, v, [cluster, np.arange(n)], residual=False)
    ev, conv = maximize(design, "REML", np.array([0.05, 0.05]))
    assert conv.converged
    for i, at_zero in enumerate(conv.at_boundary):
        if at_zero:
            assert ev.theta[i] == 0.0 and ev.gradient[i] <= 0.0
        else:
            assert abs(ev.gradient[i]) < 1e-8
    # the optimum beats nearby feasible points
    for delta in (np.array([1e-4, 0.0]), np.array([0.0, 1e-4]), np.array([-1e-4, 0.0])):
        trial = np.maximum(ev.theta + delta, 0.0)
        assert evaluate(design, trial, "REML").loglik <= ev.loglik + 1e-12


def test_fixed_component_is_held() -> None:
    rng = np.random.default_rng(8)
    n = 80
    cluster = rng.integers(0, 10, size=n)
    v = rng.uniform(0.02, 0.1, size=n)
    y = rng.normal(0, np.sqrt(0.2), 10)[cluster] + rng.normal(0, np.sqrt(v + 0.05))
    design = design_from_rows(np.ones((n, 1)), y, v, [cluster, np.arange(n)], residual=False)
    ev, _ = maximize(design, "ML", np.array([0.5, 0.05]), fixed=[True, False])
    assert ev.theta[0] == 0.5
    assert abs(ev.gradient[1]) < 1e-8 or ev.theta[1] == 0.0


@pytest.mark.parametrize("method", ["ML", "REML"])
@pytest.mark.parametrize("shape", ["cluster/row", "cluster", "cluster+residual", "singleton clusters"])
def test_known_loading_matches_dense_oracle(shape: str, method: str) -> None:
    """``V = D + rho s s'`` within the first-level groups (correlated sampling errors, CHE) plus the
    random intercepts: value, exact gradient and Hessian, and the batched value path."""
    from edueffects.core.nested import loglik_values

    rng = np.random.default_rng(11)
    n, rho = 45, 0.6
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    y, v = rng.normal(size=n), rng.uniform(0.02, 0.3, size=n)
    cluster = np.arange(n) if shape == "singleton clusters" else rng.integers(0, 9, size=n)
    cluster = np.unique(cluster, return_inverse=True)[1]
    codes = [cluster] if shape in ("cluster", "cluster+residual") else [cluster, np.arange(n)]
    residual = shape == "cluster+residual"
    s = np.sqrt(v)
    same = cluster[:, None] == cluster[None, :]

    def dense(theta: np.ndarray) -> float:
        diag = (1 - rho) * v + (theta[len(codes)] if residual else 0.0)
        cov = np.diag(diag) + rho * np.outer(s, s) * same
        for c, s2 in zip(codes, theta[: len(codes)], strict=True):
            cov = cov + s2 * (c[:, None] == c[None, :])
        return float(covariance_loglik(x, y, cov, method)[0])

    perm = rng.permutation(n)
    design = design_from_rows(
        x[perm], y[perm], (1 - rho) * v[perm], [c[perm] for c in codes], residual, loading=s[perm], loading_variance=rho
    )
    theta = rng.uniform(0.02, 0.2, size=len(codes) + int(residual))
    ev = evaluate(design, theta, method)  # type: ignore[arg-type]
    assert ev.loglik == pytest.approx(dense(theta), rel=1e-12)
    h = 1e-5
    for i in range(theta.size):
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        assert ev.gradient[i] == pytest.approx((dense(up) - dense(down)) / (2 * h), rel=1e-6, abs=1e-6)
        g_up = evaluate(design, up, method).gradient  # type: ignore[arg-type]
        g_down = evaluate(design, down, method).gradient  # type: ignore[arg-type]
        np.testing.assert_allclose(ev.hessian[i], (g_up - g_down) / (2 * h), rtol=1e-5, atol=1e-5)
    points = np.vstack([theta, np.zeros_like(theta), 2 * theta])
    if residual:
        points[1, -1] = 0.01
    values = loglik_values(design, points, method)  # type: ignore[arg-type]
    np.testing.assert_allclose(values, [dense(t) for t in points], rtol=1e-12)


@pytest.mark.parametrize("n", [400, 5_000])
def test_weighted_group_sums_for_any_number_of_weight_columns(n: int) -> None:
    """The stacked sums (one kept sparse pattern, its leading rows for fewer columns) equal one product per
    weight column, whatever the order in which the numbers of columns come."""
    from edueffects.core.nested import design_from_rows

    rng = np.random.default_rng(n)
    cluster = np.sort(rng.integers(0, n // 5, size=n))
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    design = design_from_rows(x, rng.normal(size=n), rng.uniform(0.01, 0.1, n), [cluster, np.arange(n)], False)
    for columns in (3, 7, 1, 2, 12, 5):
        weights = rng.uniform(0.5, 2.0, size=(n, columns))
        got = design.weighted_unit_sums(weights)
        for b in range(columns):
            np.testing.assert_allclose(got[b], design.weighted_unit_sums(weights[:, b]), rtol=1e-13)
