"""Variance-component intervals: the Newton iteration on the profile likelihood and the Q-profile
against root finding on full maximisations, their cost in likelihood evaluations, and computing
them on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import edueffects
from edueffects.core import profile
from edueffects.core.distributions import chi2_ppf
from edueffects.core.nested import design_from_rows, maximize
from edueffects.meta.estimators import generalized_q

REF = Path(__file__).resolve().parents[1] / "reference" / "data"


def three_level(k: int, clusters: int, s3: float, s2: float, seed: int, scale: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cluster = np.sort(rng.integers(0, clusters, size=k))
    x = rng.normal(size=k)
    v = rng.uniform(0.01, 0.1, size=k)
    y = 0.2 + 0.1 * x + rng.normal(0, np.sqrt(s3), clusters)[cluster] + rng.normal(0, np.sqrt(s2 + v))
    return pd.DataFrame({"cluster": cluster, "esid": np.arange(k), "x": x, "yi": y * np.sqrt(scale), "vi": v * scale})


CASES = [
    # k, clusters, sigma2 outer, sigma2 inner, seed, scale of the data, method, fixed components
    (200, 40, 0.05, 0.03, 1, 1.0, "REML", None),
    (200, 40, 0.05, 0.03, 2, 1.0, "ML", None),
    (60, 12, 0.2, 0.01, 3, 1.0, "REML", None),
    (200, 40, 0.0, 0.03, 4, 1.0, "REML", None),  # outer estimated near or at 0
    (200, 40, 0.05, 0.0, 5, 1.0, "ML", None),  # inner estimated near or at 0
    (30, 6, 0.01, 0.01, 6, 1.0, "REML", None),
    (500, 20, 0.1, 0.001, 7, 1e-6, "REML", None),  # tiny variances
    (500, 20, 0.1, 0.001, 8, 1e4, "ML", None),  # large variances
    (200, 40, 0.05, 0.03, 9, 1.0, "REML", [None, 0.0]),
    (200, 40, 0.05, 0.03, 10, 1.0, "ML", [0.02, None]),
]


def slow_interval(design, method, theta, index, fixed) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """The interval by Brent's method on full constrained maximisations."""
    search = profile._Profile(design, method, theta, index, 95.0, fixed)
    lower = 0.0 if theta[index] <= 0.0 else search.slow_bound(-1.0)
    return lower, search.slow_bound(1.0)


@pytest.mark.parametrize(("k", "clusters", "s3", "s2", "seed", "scale", "method", "sigma2"), CASES)
def test_profile_bounds_match_root_finding_on_refits(
    k: int,
    clusters: int,
    s3: float,
    s2: float,
    seed: int,
    scale: float,
    method: str,
    sigma2: list[float | None] | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = three_level(k, clusters, s3, s2, seed, scale)
    options: dict[str, Any] = {"method": method, "sigma2": sigma2}
    res = edueffects.meta(data, "yi", "vi", cluster="cluster", within="esid", mods=["x"], **options)
    state = res.variance_profiles
    assert state.design is not None
    fixed = [not e for e in state.estimated]
    expected = {
        name: slow_interval(state.design, state.likelihood, state.theta, i, fixed)
        for i, name in enumerate(res.variance_names)
        if state.estimated[i]
    }
    # the fast iteration alone: the fallback must not be needed on these data
    monkeypatch.setattr(profile._Profile, "slow_bound", lambda self, direction: pytest.fail("fallback used"))
    got = {vc.component: (vc.ci_lb, vc.ci_ub) for vc in res.variance_ci}
    assert set(got) == set(expected)
    for name, (lb, ub) in expected.items():
        tolerance = 1e-9 * float(np.max(state.theta)) + 1e-300
        assert got[name][0] == pytest.approx(lb, rel=1e-8, abs=tolerance), name
        assert got[name][1] == pytest.approx(ub, rel=1e-8, abs=tolerance), name
        assert got[name][0] <= state.theta[res.variance_names.index(name)] <= got[name][1]


def test_bounds_lie_where_the_profile_drops_by_the_critical_value() -> None:
    data = three_level(300, 60, 0.05, 0.03, 11, 1.0)
    res = edueffects.meta(data, "yi", "vi", cluster="cluster", within="esid", mods=["x"])
    design, theta = res.variance_profiles.design, res.variance
    assert design is not None
    crit = 0.5 * chi2_ppf(0.95, 1)
    for i, vc in enumerate(res.variance_ci):
        for bound in (vc.ci_lb, vc.ci_ub):
            start = theta.copy()
            start[i] = bound
            ev, _ = maximize(design, "REML", start, fixed=[j == i for j in range(theta.size)])
            assert res.loglik - ev.loglik == pytest.approx(crit, abs=1e-8)


def test_all_profile_bounds_cost_few_likelihood_evaluations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each bound of a well-identified three-level model takes a handful of evaluations (with exact
    gradient and Hessian), not a root search over full refits."""
    calls = {"n": 0}
    evaluate = profile.evaluate

    def counted(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        return evaluate(*args, **kwargs)  # type: ignore[arg-type]

    data = three_level(5000, 1000, 0.05, 0.03, 12, 1.0)
    res = edueffects.meta(data, "yi", "vi", cluster="cluster", within="esid", mods=["x"])
    monkeypatch.setattr(profile, "evaluate", counted)
    assert len(res.variance_ci) == 2
    assert calls["n"] <= 20  # two components, four bounds, the optimum re-read once per component


def old_q_bound(x: np.ndarray, y: np.ndarray, v: np.ndarray, target: float) -> float:
    if generalized_q(x, y, v, 0.0) < target:
        return 0.0
    hi = 1e-4
    while generalized_q(x, y, v, hi) > target:
        hi *= 2.0
    return profile._root(lambda t: target - generalized_q(x, y, v, t), 0.0, hi)


@pytest.mark.parametrize("seed", range(8))
def test_q_profile_matches_root_finding(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = [5, 13, 40, 300][seed % 4]
    x, _ = np.linalg.qr(np.column_stack([np.ones(k), rng.normal(size=k)]))
    v = rng.uniform(0.01, 0.2, size=k)
    y = rng.normal(0.0, np.sqrt(v + [0.0, 0.02, 0.3][seed % 3]))
    lower, upper = profile.q_profile_interval(x, y, v, k - 2, 0.05, 95.0)
    for bound, q in ((lower, chi2_ppf(0.975, k - 2)), (upper, chi2_ppf(0.025, k - 2))):
        assert bound == pytest.approx(old_q_bound(x, y, v, q), rel=1e-9, abs=1e-13)
        if bound > 0.0:
            assert generalized_q(x, y, v, bound) == pytest.approx(q, rel=1e-12)


def test_q_profile_slope_is_the_derivative() -> None:
    rng = np.random.default_rng(3)
    x = np.column_stack([np.ones(50), rng.normal(size=50)])
    v = rng.uniform(0.01, 0.2, size=50)
    y = rng.normal(0.0, np.sqrt(v + 0.1))
    for tau2 in (0.0, 0.01, 0.5):
        q, slope = profile.generalized_q_slope(x, y, v, tau2)
        h = 1e-6 * max(tau2, 0.01)
        numeric = (generalized_q(x, y, v, tau2 + h) - generalized_q(x, y, v, max(tau2 - h, 0.0))) / (
            tau2 + h - max(tau2 - h, 0.0)
        )
        assert q == pytest.approx(generalized_q(x, y, v, tau2), rel=1e-12)
        assert slope == pytest.approx(numeric, rel=1e-5)


def test_intervals_are_computed_on_first_use_and_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    interval = profile._Profile.interval

    def counted(self: profile._Profile) -> tuple[float, float]:
        calls["n"] += 1
        return interval(self)

    monkeypatch.setattr(profile._Profile, "interval", counted)
    data = pd.read_csv(REF / "konstantopoulos2011.csv")
    res = edueffects.meta(data, "yi", "vi", cluster="district", within="school")
    assert calls["n"] == 0
    assert repr(res).startswith("<MetaResult: 3-level model (REML), k = 56")
    assert calls["n"] == 0
    first = res.variance_ci
    assert calls["n"] == 2 and [vc.component for vc in first] == ["sigma2 district", "sigma2 district/school"]
    assert res.variance_ci is first and "95% CI" in res.summary() and len(res.to_dict()["variance_ci"]) == 2  # type: ignore[arg-type]
    assert calls["n"] == 2

    off = edueffects.meta(data, "yi", "vi", cluster="district", within="school", variance_ci=False)
    assert off.variance_ci == () and off.to_dict()["variance_ci"] == [] and "CI [" not in off.summary().split("\n")[3]
    assert off.profile(0, points=5).shape == (5, 3)
    assert calls["n"] == 2


def test_profile_curve_follows_full_maximisations() -> None:
    data = pd.read_csv(REF / "konstantopoulos2011.csv")
    res = edueffects.meta(data, "yi", "vi", cluster="district", within="school", method="ML")
    design = design_from_rows(res.state.x, res.state.y, res.state.v, list(res.state.level_codes), residual=False)
    for component in (0, 1):
        curve = res.profile(component, points=9)
        for s, loglik in zip(curve.sigma2, curve.loglik, strict=True):
            start = res.variance.copy()
            start[component] = s
            ev, _ = maximize(design, "ML", start, fixed=[j == component for j in range(2)])
            assert loglik == pytest.approx(ev.loglik, abs=1e-8)
        assert curve.deviance.min() == pytest.approx(0.0, abs=0.5)
