"""Jets: first and second derivatives of a composite expression against finite differences."""

from __future__ import annotations

import numpy as np

from edueffects.core.jet import Jet


def composite(a: float, b: float) -> Jet:
    x = Jet.parameter(a, 0)
    y = Jet.parameter(b, 1)
    data = np.array([0.5, 1.5, 3.0])
    inner = (x * Jet.constant(data) + Jet.constant(1.0)).reciprocal()
    return (inner * y + (x * y).log()).segment_sum(np.array([0, 2])).total()


def value(a: float, b: float) -> float:
    data = np.array([0.5, 1.5, 3.0])
    return float(np.sum(b / (a * data + 1.0)) + 3 * np.log(a * b))


def test_jet_derivatives_match_finite_differences() -> None:
    a, b, h = 0.7, 1.3, 1e-5
    jet = composite(a, b)
    assert float(jet.value) == value(a, b) or abs(float(jet.value) - value(a, b)) < 1e-12
    grad = [(value(a + h, b) - value(a - h, b)) / (2 * h), (value(a, b + h) - value(a, b - h)) / (2 * h)]
    np.testing.assert_allclose(jet.d1, grad, rtol=1e-8)
    haa = (value(a + h, b) - 2 * value(a, b) + value(a - h, b)) / h**2
    hbb = (value(a, b + h) - 2 * value(a, b) + value(a, b - h)) / h**2
    hab = (value(a + h, b + h) - value(a + h, b - h) - value(a - h, b + h) + value(a - h, b - h)) / (4 * h * h)
    np.testing.assert_allclose(jet.d2, [[haa, hab], [hab, hbb]], rtol=1e-4)


def test_constants_carry_no_parameters() -> None:
    c = Jet.constant(np.ones(3)) * Jet.constant(2.0)
    assert c.params == ()
    p = Jet.parameter(2.0, 3) * Jet.constant(np.ones(4))
    assert p.params == (3,) and p.d1.shape == (1, 4) and p.d2.shape == (1, 1, 4)
