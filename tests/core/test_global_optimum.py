"""The optimiser reports the global maximum of the (restricted) likelihood over theta >= 0.

Newton alone can stop at a local maximum (typically a variance at 0 while a higher maximum lies
inside); ``maximize`` scans the log-likelihood around the optimum and restarts from what it finds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edueffects
from edueffects.core.nested import (
    NestedDesign,
    design_from_rows,
    design_from_units,
    evaluate,
    loglik_values,
    maximize,
    unit_statistics,
)

DATA = Path(__file__).parents[1] / "reference" / "data"

# metafor 3.8.1, once, by hand:
#   rma(yi, vi, mods = ~ alloc + year + ablat, method = "ML", data = read.csv("tests/reference/data/bcg.csv"),
#       control = list(threshold = 1e-12, maxiter = 100000, tol = 1e-13, stepadj = 0.5))
BCG_ML_TAU2 = 0.032903914948424276
BCG_ML_LOGLIK = -6.9205963645795521
BCG_ML_BETA = [
    -10.079712061476435,
    -0.28257534889145691,
    -0.11047832436698707,
    0.0053182627717313184,
    -0.027745309472048899,
]
# the same model with tau2 = 0 fixed (rma(..., tau2 = 0)): the boundary local maximum
BCG_ML_LOGLIK_AT_ZERO = -7.2085488603913124


def bcg_design() -> NestedDesign:
    """Treatment-coded alloc, year and ablat centred (1960, 30): the raw year column makes X'V^-1X
    so ill-conditioned that the log-likelihood carries ~1e-9 of rounding noise."""
    d = pd.read_csv(DATA / "bcg.csv")
    x = np.column_stack([np.ones(len(d)), d.alloc == "random", d.alloc == "systematic", d.year - 1960, d.ablat - 30])
    return design_from_rows(x.astype(float), d.yi.to_numpy(), d.vi.to_numpy(), [], residual=True)


def uncentred(beta: np.ndarray) -> np.ndarray:
    return np.array([beta[0] - 1960 * beta[3] - 30 * beta[4], *beta[1:]])


def test_bcg_ml_newton_alone_stops_at_the_boundary() -> None:
    ev, conv = maximize(bcg_design(), "ML", np.array([0.0]), global_search=False)
    assert ev.theta[0] == 0.0 and ev.gradient[0] < 0.0  # a genuine local maximum on the boundary
    assert ev.loglik == pytest.approx(BCG_ML_LOGLIK_AT_ZERO, rel=1e-10)
    assert conv.converged and conv.local_maxima == 1


@pytest.mark.parametrize("start", [0.0, 1e-4, 0.03, 1.0])
def test_bcg_ml_global_maximum_from_any_start(start: float) -> None:
    ev, conv = maximize(bcg_design(), "ML", np.array([start]))
    assert ev.theta[0] == pytest.approx(BCG_ML_TAU2, rel=1e-6)
    assert ev.loglik == pytest.approx(BCG_ML_LOGLIK, rel=1e-10)
    np.testing.assert_allclose(uncentred(ev.beta), BCG_ML_BETA, rtol=1e-6)
    assert conv.converged and not conv.at_boundary[0]
    assert conv.local_maxima == 2  # the boundary maximum at 0 and the interior one
    assert conv.to_dict()["local_maxima"] == 2


def test_bcg_ml_meta_reports_the_global_maximum_and_warns() -> None:
    res = edueffects.meta(pd.read_csv(DATA / "bcg.csv"), "yi", "vi", method="ML", mods=["alloc", "year", "ablat"])
    assert res.variance[0] == pytest.approx(BCG_ML_TAU2, rel=1e-6)
    assert res.loglik == pytest.approx(BCG_ML_LOGLIK, rel=1e-10)
    assert res.convergence.converged and res.convergence.local_maxima == 2
    assert any("2 local maxima" in w for w in res.warnings)


# Three-level ML (rma.mv(yi, vi, mods = ~ x, random = ~ 1 | study/es, method = "ML")) with two local
# maxima: all heterogeneity within studies, or all between studies (higher). metafor 3.8.1 from its
# default start stops at the lower one, sigma2 = (2.2e-10, 0.14462993840188171), logLik
# -7.976368235332659; with control = list(sigma2.init = c(0.5, 0.01)) it finds
# sigma2 = (0.42393778003057342, 3.0e-11), logLik -7.3717285375747936.
THREE_LEVEL = pd.DataFrame(
    {
        "study": [0, 0, 0, 0, 1, 1, 1, 2, 3, 3, 4],
        "es": range(11),
        "x": [0.73, 0.16, 1.72, 0.31, 0.34, -0.4, -0.17, -0.53, -1.38, -1.32, 0.42],
        "yi": [0.45, 1.41, -0.39, 0.57, -0.08, 0.11, 0.07, -0.29, 0.25, 0.18, 1.07],
        "vi": [0.151, 0.139, 0.133, 0.132, 0.047, 0.085, 0.145, 0.01, 0.02, 0.019, 0.114],
    }
)
LOWER_MAXIMUM = ([0.0, 0.14462993840188171], -7.976368235332659)
GLOBAL_MAXIMUM = ([0.42393778003057342, 0.0], -7.3717285375747936)


def three_level_design() -> NestedDesign:
    d = THREE_LEVEL
    x = np.column_stack([np.ones(len(d)), d.x])
    return design_from_rows(x, d.yi.to_numpy(), d.vi.to_numpy(), [d.study.to_numpy(), d.es.to_numpy()], False)


def meta_start(design: NestedDesign) -> np.ndarray:
    """meta()'s start for multilevel models: equal shares of the DerSimonian-Laird total."""
    d = THREE_LEVEL
    x, y, w = np.column_stack([np.ones(len(d)), d.x]), d.yi.to_numpy(), 1.0 / d.vi.to_numpy()
    xw = x * w[:, None]
    a_inv = np.linalg.inv(x.T @ xw)
    q = float(np.sum(w * (y - x @ (a_inv @ (xw.T @ y))) ** 2))
    trace_p = float(np.sum(w) - np.trace(a_inv @ (xw.T @ xw)))
    total = max(0.0, (q - (len(y) - x.shape[1])) / trace_p)
    return np.full(2, max(total, 1e-3 * float(np.var(y))) / 2)


def test_three_level_ml_newton_alone_lands_on_the_lower_maximum() -> None:
    design = three_level_design()
    ev, conv = maximize(design, "ML", meta_start(design), global_search=False)
    np.testing.assert_allclose(ev.theta, LOWER_MAXIMUM[0], rtol=1e-6, atol=1e-9)
    assert ev.loglik == pytest.approx(LOWER_MAXIMUM[1], rel=1e-9)
    assert conv.converged


@pytest.mark.parametrize("start", ["meta", "zero", "within"])
def test_three_level_ml_global_maximum(start: str) -> None:
    design = three_level_design()
    theta0 = {"meta": meta_start(design), "zero": np.zeros(2), "within": np.array([0.0, 0.15])}[start]
    ev, conv = maximize(design, "ML", theta0)
    np.testing.assert_allclose(ev.theta, GLOBAL_MAXIMUM[0], rtol=1e-6, atol=1e-9)
    assert ev.loglik == pytest.approx(GLOBAL_MAXIMUM[1], rel=1e-9)
    assert conv.converged and conv.at_boundary == (False, True)
    assert conv.local_maxima >= 2


def test_three_level_ml_meta_reports_the_global_maximum() -> None:
    res = edueffects.meta(THREE_LEVEL, "yi", "vi", cluster="study", within="es", method="ML", mods=["x"])
    np.testing.assert_allclose(res.variance, GLOBAL_MAXIMUM[0], rtol=1e-6, atol=1e-9)
    assert res.loglik == pytest.approx(GLOBAL_MAXIMUM[1], rel=1e-9)
    assert res.convergence.local_maxima == 2
    assert any("local maxima" in w for w in res.warnings)


def random_design(seed: int, three_level: bool) -> tuple[NestedDesign, np.ndarray, float]:
    """A small random meta-analytic data set (univariate or three-level), heavy-tailed at times;
    returns the design, a start and the scale of y. (Toy data with fewer than 10 effects and three
    or four coefficients can hide a maximum off every scanned slice: not generated here.)"""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(10, 40))
    p = int(rng.integers(1, 3))
    x = np.column_stack([np.ones(k)] + [rng.normal(size=k) * 10 ** rng.uniform(-1, 1) for _ in range(p - 1)])
    v = np.exp(rng.uniform(np.log(1e-3), 0.0, size=k)) * 10 ** rng.uniform(-1, 1)
    y = (
        x @ rng.normal(size=p)
        + rng.normal(size=k) * rng.uniform(0.1, 1)
        + rng.standard_t(2, size=k) * rng.uniform(0, 1)
    )
    codes: list[np.ndarray] = []
    if three_level:
        cluster = rng.integers(0, int(rng.integers(2, max(3, k // 2))), size=k)
        y = y + rng.normal(size=k)[cluster] * rng.uniform(0, 1)
        codes = [np.unique(cluster, return_inverse=True)[1], np.arange(k)]
    design = design_from_rows(x, y, v, codes, residual=not three_level)
    scale = float(np.var(y))
    start = scale * 10 ** rng.uniform(-4, 0.5, size=design.n_params)
    return design, start, scale


@pytest.mark.parametrize("method", ["ML", "REML"])
@pytest.mark.parametrize("three_level", [False, True])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**63 - 1), hold_first=st.booleans())
def test_no_grid_point_beats_the_reported_optimum(seed: int, hold_first: bool, three_level: bool, method: str) -> None:
    design, start, scale = random_design(seed, three_level)
    held = three_level and hold_first  # a profile: the first variance fixed at its start value
    ev, conv = maximize(design, method, start, fixed=[True, False] if held else None)  # type: ignore[arg-type]
    assert conv.converged
    values = np.concatenate([[0.0], scale * np.logspace(-4, 1.3, 11 if three_level else 40)])
    if three_level:
        first = [start[0]] if held else values
        grid = [np.array([a, b]) for a in first for b in values]
    else:
        grid = [np.array([t]) for t in values]
    best = max(evaluate(design, theta, method).loglik for theta in grid)  # type: ignore[arg-type]
    assert best <= ev.loglik + 1e-8 * max(1.0, abs(ev.loglik))
    if held:
        assert ev.theta[0] == start[0]


def replicated_design(rng: np.random.Generator) -> tuple[NestedDesign, np.ndarray, list[np.ndarray], np.ndarray]:
    """Units of students with two rows each, all rows of a unit sharing x, units nested in schools;
    the student level is aggregated inside units (a replicated level). Returns the design and the
    rows (x, codes per row: school and student) with their y, for a dense oracle."""
    n_units, p = 9, 2
    school = np.sort(rng.integers(0, 3, n_units))
    school = np.unique(school, return_inverse=True)[1]
    x_unit = np.column_stack([np.ones(n_units), rng.normal(size=n_units)])
    students = rng.integers(1, 4, n_units)
    ia, ib = np.triu_indices(p + 1)
    outer = np.zeros((n_units, ia.size))
    y_sum, y_sumsq = np.zeros(n_units), np.zeros(n_units)
    rows_x, rows_y, rows_school, rows_student = [], [], [], []
    student_id = 0
    for u in range(n_units):
        for _ in range(students[u]):
            y = rng.normal(size=2) + rng.normal()
            c = np.append(2 * x_unit[u], y.sum())
            outer[u] += np.outer(c, c)[ia, ib]
            y_sum[u] += y.sum()
            y_sumsq[u] += float(y @ y)
            for value in y:
                rows_x.append(x_unit[u])
                rows_y.append(value)
                rows_school.append(school[u])
                rows_student.append(student_id)
            student_id += 1
    count = np.asarray(2.0 * students, dtype=np.float64)
    stats = unit_statistics(x_unit, y_sum, y_sumsq, count)
    design = design_from_units(
        p, stats, np.zeros(n_units), [school], residual=True, replicated=(outer, students.astype(float))
    )
    return design, np.array(rows_x), [np.array(rows_school), np.array(rows_student)], np.array(rows_y)


def dense_loglik(x: np.ndarray, y: np.ndarray, codes: list[np.ndarray], theta: np.ndarray, method: str) -> float:
    n, p = x.shape
    cov = np.diag(np.full(n, theta[len(codes)]))
    for c, s2 in zip(codes, theta, strict=False):
        cov = cov + s2 * (c[:, None] == c[None, :])
    w = np.linalg.inv(cov)
    a = x.T @ w @ x
    r = y - x @ np.linalg.solve(a, x.T @ w @ y)
    value = np.linalg.slogdet(cov)[1] + r @ w @ r
    if method == "REML":
        value += np.linalg.slogdet(a)[1] - np.linalg.slogdet(x.T @ x)[1] + (n - p) * np.log(2 * np.pi)
    else:
        value += n * np.log(2 * np.pi)
    return float(-0.5 * value)


@pytest.mark.parametrize("method", ["ML", "REML"])
def test_value_only_scan_matches_evaluate(method: str) -> None:
    """The scan's batched value-only likelihood agrees with the jets (and, for the replicated
    level, with a dense oracle), including points that share the unit level."""
    rng = np.random.default_rng(4)
    n = 30
    for depth, residual in [(0, True), (1, True), (2, True), (2, False), (3, False)]:
        x = np.column_stack([np.ones(n), rng.normal(size=n)])
        outer = rng.integers(0, 4, size=n)
        codes = [
            np.unique(c, return_inverse=True)[1] for c in (outer, outer * 10 + rng.integers(0, 3, n), np.arange(n))
        ]
        codes = codes[:depth] if residual else [*codes[: depth - 1], codes[2]]  # no residual: singleton level
        design = design_from_rows(x, rng.normal(size=n), rng.uniform(0.05, 0.3, n), codes, residual=residual)
        thetas = rng.uniform(0.0, 0.5, size=(8, design.n_params))
        thetas[1, -1] = thetas[0, -1]  # same residual: one unit level for both
        thetas[2, 0] = 0.0
        expected = [evaluate(design, t, method).loglik for t in thetas]  # type: ignore[arg-type]
        np.testing.assert_allclose(loglik_values(design, thetas, method), expected, rtol=1e-12, atol=1e-10)  # type: ignore[arg-type]
    design, rows_x, row_codes, rows_y = replicated_design(rng)
    thetas = rng.uniform(0.05, 0.5, size=(6, 3))
    thetas[1, 1:] = thetas[0, 1:]
    values = loglik_values(design, thetas, method)  # type: ignore[arg-type]
    for theta, value in zip(thetas, values, strict=True):
        assert value == pytest.approx(evaluate(design, theta, method).loglik, rel=1e-12)  # type: ignore[arg-type]
        assert value == pytest.approx(dense_loglik(rows_x, rows_y, row_codes, theta, method), rel=1e-10)
