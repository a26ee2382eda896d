"""Shared linear algebra: products with a sparse matrix of kept pattern."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from edueffects.core import linalg
from edueffects.core.linalg import csr_product


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
