"""Redundant constraints are refused by the cluster-robust Wald test whatever the rounding of
``C V_CR2 C'`` (its smallest eigenvalue may land a hair above zero)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edueffects.core.robust import RobustCovariance, cr2_wald_test


def covariance(seed: int) -> RobustCovariance:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(40, 3))
    vcov = a.T @ a / 40.0
    return RobustCovariance(vcov=vcov, df=np.full(3, 20.0), n_clusters=40, bread=vcov,
                            cluster_var=np.zeros((40, 3, 3)), cluster_design=np.zeros((40, 3, 3)))  # fmt: skip


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.1, 10.0), st.sampled_from(["chi-sq", "Naive-F"]))
def test_redundant_constraints_are_refused(seed: int, factor: float, test: str) -> None:
    robust = covariance(seed)
    rows = np.array([[0.0, 1.0, 0.0], [0.0, factor, 0.0]])
    with pytest.raises(ValueError, match="redundant constraints"):
        cr2_wald_test(robust, [0.1, 0.2, 0.3], rows, test)  # type: ignore[arg-type]


def test_independent_constraints_are_tested() -> None:
    robust = covariance(1)
    res = cr2_wald_test(robust, [0.1, 0.2, 0.3], np.eye(3)[1:], "chi-sq")
    b = np.array([0.2, 0.3])
    assert res.wald == pytest.approx(float(b @ np.linalg.solve(robust.vcov[1:, 1:], b)), rel=1e-12)
