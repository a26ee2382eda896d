"""The shared post-fit layer: confidence levels, Wald tests, likelihood-ratio tests and their refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edueffects import InputError
from edueffects.core.results import FitRecord, likelihood_ratio_test, normalize_level, wald_test


@pytest.mark.parametrize(("given_level", "percent"), [(95, 95.0), (0.95, 95.0), (0.9, 90.0), (99.5, 99.5), (50, 50.0)])
def test_level_reads_percent_or_proportion(given_level: float, percent: float) -> None:
    assert normalize_level(given_level) == pytest.approx(percent)


@pytest.mark.parametrize("bad", [0, 1, 100, 120, -5, float("nan"), float("inf"), "high"])
def test_level_outside_the_open_interval_is_an_error(bad: object) -> None:
    with pytest.raises(InputError, match="level"):
        normalize_level(bad)  # type: ignore[arg-type]


def _record(loglik: float, n_params: int, method: str = "ML", x: np.ndarray | None = None) -> FitRecord:
    y = np.arange(10.0)
    return FitRecord(method, loglik, n_params, 10.0, 10, np.ones((10, 1)) if x is None else x, y)


def test_lrt_orders_models_and_computes_chi2() -> None:
    full, reduced = _record(-5.0, 3), _record(-7.5, 2)
    a = likelihood_ratio_test(full, reduced)
    b = likelihood_ratio_test(reduced, full)  # the larger model is the full one, as metafor
    assert a.statistic == pytest.approx(5.0) and b.statistic == pytest.approx(5.0)
    assert a.df == 1 and a.pval == pytest.approx(0.025347318677468, rel=1e-10)
    assert a.aicc_full == pytest.approx(10.0 + 6.0 + 2 * 3 * 4 / 6)


def test_lrt_refusals() -> None:
    with pytest.raises(InputError, match="same number of parameters"):
        likelihood_ratio_test(_record(-5.0, 2), _record(-6.0, 2))
    with pytest.raises(InputError, match="different methods"):
        likelihood_ratio_test(_record(-5.0, 3, "REML"), _record(-6.0, 2, "ML"))
    other_x = np.column_stack([np.ones(10), np.arange(10.0)])
    with pytest.raises(InputError, match="REML likelihoods"):
        likelihood_ratio_test(_record(-5.0, 3, "REML"), _record(-6.0, 2, "REML", other_x))
    shifted = FitRecord("ML", -6.0, 2, 10.0, 10, np.ones((10, 1)), np.arange(10.0) + 1)
    with pytest.raises(InputError, match="different data"):
        likelihood_ratio_test(_record(-5.0, 3), shifted)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 4), st.integers(0, 10_000), st.floats(0.1, 10.0))
def test_wald_is_invariant_to_rescaling_hypotheses(q: int, seed: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    p = 4
    beta = rng.normal(size=p)
    a = rng.normal(size=(p, p))
    cov = a @ a.T + p * np.eye(p)
    matrix = rng.normal(size=(q, p))
    names = tuple(f"b{i}" for i in range(p))
    base = wald_test(beta, cov, matrix, np.inf, names, "m")
    scaled = wald_test(beta, cov, scale * matrix, np.inf, names, "m")
    assert scaled.statistic == pytest.approx(base.statistic, rel=1e-9)
    assert base.df1 == q and base.df2 is None
    f = wald_test(beta, cov, matrix, 12.0, names, "m")
    assert f.statistic == pytest.approx(base.statistic / q, rel=1e-12) and f.df2 == 12.0


def test_wald_refuses_dependent_hypotheses() -> None:
    matrix = np.array([[0.0, 1.0, 0.0], [0.0, 2.0, 0.0]])
    with pytest.raises(InputError, match="not linearly independent"):
        wald_test(np.ones(3), np.eye(3), matrix, np.inf, ("a", "b", "c"), "m")
