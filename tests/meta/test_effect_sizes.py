"""Effect-size conversions: against metafor's escalc values shipped with the reference data, and round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edueffects import InputError
from edueffects.meta import effect_sizes as es

REF = Path(__file__).resolve().parents[1] / "reference" / "data"


def test_fisher_z_matches_escalc_zcor() -> None:
    data = pd.read_csv(REF / "molloy2014.csv")
    z, v = es.fisher_z(data.ri, data.ni)
    np.testing.assert_allclose(z, data.yi, rtol=1e-12)
    np.testing.assert_allclose(v, data.vi, rtol=1e-12)
    np.testing.assert_allclose(es.z_to_r(z), data.ri, rtol=1e-12)


def test_hedges_g_textbook_example() -> None:
    # m1 = 103, m2 = 100, sd = 5.5 and 4.5, n = 50 and 50: d = 0.5970, J = 0.99232, g = 0.5924
    g, v = es.smd(103.0, 100.0, 5.5, 4.5, 50, 50)
    pooled = np.sqrt((49 * 5.5**2 + 49 * 4.5**2) / 98)
    d = 3.0 / pooled
    j = 1 - 3 / (4 * 98 - 1)
    assert float(g) == pytest.approx(j * d, rel=1e-12)
    assert float(v) == pytest.approx(100 / 2500 + (j * d) ** 2 / 200, rel=1e-12)
    d_only, _ = es.smd(103.0, 100.0, 5.5, 4.5, 50, 50, hedges=False)
    assert float(d_only) == pytest.approx(d, rel=1e-12)


def test_r_d_round_trip_and_ci_se() -> None:
    r = np.array([-0.6, -0.1, 0.0, 0.25, 0.8])
    np.testing.assert_allclose(es.d_to_r(es.r_to_d(r)), r, atol=1e-12)
    se = es.se_from_ci(np.array([0.1]), np.array([0.1 + 2 * 1.959963984540054 * 0.05]))
    np.testing.assert_allclose(se, [0.05], rtol=1e-12)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: es.fisher_z([0.2, 1.0], [20, 30]), "strictly between -1 and 1"),
        (lambda: es.fisher_z([0.2], [3]), "n must exceed 3"),
        (lambda: es.fisher_z([0.2, np.nan], [20, 30]), "r row 2"),
        (lambda: es.se_from_ci([0.3], [0.1]), "upper bound must exceed"),
        (lambda: es.smd(1, 0, 1, 1, 1, 5), "group sizes"),
    ],
)
def test_conversion_errors(call, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=message):
        call()
