"""Invariants of meta(): row order, scale, translation, duplicated data (property-based)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edueffects import meta


def three_level_frame(seed: int, k: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    study = rng.integers(0, 15, size=k)
    v = rng.uniform(0.01, 0.1, size=k)
    x = rng.normal(size=k)
    y = 0.3 + 0.1 * x + rng.normal(0, 0.3, 15)[study] + rng.normal(0, np.sqrt(0.02 + v))
    return pd.DataFrame({"study": study, "esid": np.arange(k), "x": x, "yi": y, "vi": v})


SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(seed=st.integers(0, 10_000), perm_seed=st.integers(0, 10_000))
def test_row_order_is_irrelevant(seed: int, perm_seed: int) -> None:
    data = three_level_frame(seed)
    shuffled = data.sample(frac=1.0, random_state=perm_seed)
    a = meta(data, "yi", "vi", cluster="study", within="esid", mods=["x"], variance_ci=False)
    b = meta(shuffled, "yi", "vi", cluster="study", within="esid", mods=["x"], variance_ci=False)
    np.testing.assert_allclose(a.coefficients.estimate, b.coefficients.estimate, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(a.variance, b.variance, rtol=1e-7, atol=1e-10)
    assert a.loglik == np.float64(b.loglik) or abs(a.loglik - b.loglik) < 1e-9
    ra, rb = a.robust("study"), b.robust("study")
    np.testing.assert_allclose(ra.coefficients.se, rb.coefficients.se, rtol=1e-7)


@SETTINGS
@given(seed=st.integers(0, 10_000), exponent=st.floats(-3.0, 6.0))
def test_rescaling_effects_rescales_estimates(seed: int, exponent: float) -> None:
    """Units of y from 1e-3 to 1e6: the optimiser's rules are relative to the data's variance scale."""
    scale = 10.0**exponent
    data = three_level_frame(seed)
    scaled = data.assign(yi=data.yi * scale, vi=data.vi * scale**2)
    a = meta(data, "yi", "vi", cluster="study", within="esid", variance_ci=False)
    b = meta(scaled, "yi", "vi", cluster="study", within="esid", variance_ci=False)
    assert b.convergence.converged and b.convergence.iterations <= a.convergence.iterations + 5
    np.testing.assert_allclose(b.coefficients.estimate, a.coefficients.estimate * scale, rtol=1e-7, atol=1e-10 * scale)
    np.testing.assert_allclose(b.variance, a.variance * scale**2, rtol=1e-6, atol=1e-12 * scale**2)
    np.testing.assert_allclose(b.coefficients.pval, a.coefficients.pval, rtol=1e-6, atol=1e-12)
    assert abs(b.i2_total - a.i2_total) < 1e-6


@SETTINGS
@given(seed=st.integers(0, 10_000), shift=st.floats(-5.0, 5.0))
def test_shifting_effects_shifts_only_the_intercept(seed: int, shift: float) -> None:
    data = three_level_frame(seed)
    a = meta(data, "yi", "vi", method="REML", mods=["x"], variance_ci=False)
    b = meta(data.assign(yi=data.yi + shift), "yi", "vi", method="REML", mods=["x"], variance_ci=False)
    assert (
        b.coefficients.estimate[0] - a.coefficients.estimate[0] == np.float64(shift)
        or abs(b.coefficients.estimate[0] - a.coefficients.estimate[0] - shift) < 1e-8
    )
    assert abs(b.coefficients.estimate[1] - a.coefficients.estimate[1]) < 1e-8
    assert abs(b.variance[0] - a.variance[0]) < 1e-8


@SETTINGS
@given(seed=st.integers(0, 10_000))
def test_duplicating_rows_under_equal_effects(seed: int) -> None:
    data = three_level_frame(seed)
    a = meta(data, "yi", "vi", method="EE")
    b = meta(pd.concat([data, data]), "yi", "vi", method="EE")
    np.testing.assert_allclose(b.coefficients.estimate, a.coefficients.estimate, rtol=1e-12)
    np.testing.assert_allclose(b.coefficients.se, a.coefficients.se / np.sqrt(2.0), rtol=1e-12)
    assert abs(b.QE - 2 * a.QE) < 1e-8 * a.QE


def test_categorical_moderator_coding_is_r_style() -> None:
    data = three_level_frame(1).assign(group=lambda d: np.where(d.x > 0.5, "b", np.where(d.x < -0.5, "c", "a")))
    res = meta(data, "yi", "vi", mods=["group"])
    assert res.coefficients.names == ("intrcpt", "groupb", "groupc")
    coded = meta(
        data.assign(code=data.group.map({"a": 1, "b": 2, "c": 3})), "yi", "vi", mods=["code"], categorical=["code"]
    )
    assert coded.coefficients.names == ("intrcpt", "code2", "code3")
    np.testing.assert_allclose(coded.coefficients.estimate, res.coefficients.estimate, rtol=1e-10)
    assert res.QMdf == (2, None)


def test_result_outputs_agree() -> None:
    res = meta(three_level_frame(2), "yi", "vi", cluster="study", within="esid", mods=["x"])
    tidy = res.tidy()
    assert list(tidy.term) == ["intrcpt", "x"]
    np.testing.assert_array_equal(tidy.estimate.to_numpy(), res.coefficients.estimate)
    d = res.to_dict()
    assert d["sigma2"] == [float(s) for s in res.variance]
    assert [c["name"] for c in d["coefficients"]] == ["intrcpt", "x"]  # type: ignore[index]
    text = res.summary()
    assert "sigma2 study" in text and "intrcpt" in text and "converged" in text
    assert res.prediction is None  # moderators: no prediction interval
