"""Shared linear algebra: the column rank from the QR factor, products with a sparse matrix of kept pattern."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse

from edueffects.core import linalg
from edueffects.core.linalg import column_rank, csr_product


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    p=st.integers(1, 6),
    deficient=st.integers(0, 3),
    scale=st.sampled_from([1e-8, 1.0, 1e6]),
    seed=st.integers(0, 2**32 - 1),
)
def test_column_rank_is_numpys_matrix_rank(n: int, p: int, deficient: int, scale: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) * scale
    for j in range(min(deficient, p - 1)):  # columns that repeat combinations of the first one
        x[:, p - 1 - j] = 2.0 * x[:, 0]
    assert column_rank(x) == np.linalg.matrix_rank(x)


def test_column_rank_of_a_zero_and_a_nearly_dependent_column() -> None:
    x = np.column_stack([np.ones(50), np.arange(50.0), np.zeros(50)])
    assert column_rank(x) == 2
    x[:, 2] = x[:, 1] + 1e-17 * np.arange(50.0) ** 2
    assert column_rank(x) == np.linalg.matrix_rank(x) == 2


@pytest.mark.parametrize("kernel", [True, False], ids=["compiled-kernel", "public-product"])
def test_csr_product_is_scipys_product(kernel: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not kernel:
        monkeypatch.setattr(linalg, "_csr_matvecs", None)
    rng = np.random.default_rng(3)
    matrix = sparse.random(30, 50, density=0.2, random_state=4, format="csr")
    dense = rng.normal(size=(50, 3))
    got = csr_product(matrix.indptr.astype(np.intp), matrix.indices.astype(np.intp), matrix.data, dense)
    np.testing.assert_array_equal(got, matrix @ dense)


def test_csr_product_refuses_a_pattern_of_other_sizes() -> None:
    with pytest.raises(ValueError, match="one sparse matrix"):
        csr_product(np.array([0, 2, 5]), np.array([0, 1, 2]), np.ones(3), np.ones((3, 1)))
