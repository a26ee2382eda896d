"""Batched case-deletion refits (core.deletion) against one ``maximize`` run per deletion."""

from __future__ import annotations

import numpy as np
import pytest

from edueffects.core.deletion import deletion_refits, full_data_covariances
from edueffects.core.nested import design_from_rows, evaluate, maximize


def _data(levels: int, seed: int = 3, p: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    n_outer, per = 12, 6
    n = n_outer * per
    outer = np.repeat(np.arange(n_outer), per)
    codes = [outer]
    if levels == 3:
        codes.append(outer * 10 + np.tile(np.repeat([0, 1], per // 2), n_outer))
    codes.append(np.arange(n))
    x = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))])
    v = rng.uniform(0.01, 0.1, n)
    y = 0.3 + rng.normal(0, 0.25, n_outer)[outer] + rng.normal(0, 0.15, n) + rng.normal(0, np.sqrt(v))
    return np.linalg.qr(x)[0], y, v, codes


def _loop(x, y, v, codes, start, drop_sets, method):  # type: ignore[no-untyped-def]
    out = []
    for rows in drop_sets:
        keep = np.ones(y.size, dtype=bool)
        keep[rows] = False
        design = design_from_rows(x[keep], y[keep], v[keep], [c[keep] for c in codes], residual=False)
        ev, conv = maximize(design, method, start, global_search=False)
        assert conv.converged
        out.append(ev)
    return out


@pytest.mark.parametrize("levels", [2, 3])
@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("by", ["effect", "cluster"])
def test_batched_refits_equal_the_loop(levels: int, method: str, by: str) -> None:
    x, y, v, codes = _data(levels, p=2)
    full, _ = maximize(design_from_rows(x, y, v, codes, residual=False), method, np.full(levels, 0.05))  # type: ignore[arg-type]
    owner = np.arange(y.size) if by == "effect" else codes[0]
    members = np.argsort(owner, kind="stable")
    n_del = int(owner.max()) + 1
    fits = deletion_refits(x, y, v, codes, method, full.theta, members, owner[members], n_del)  # type: ignore[arg-type]
    loop = _loop(x, y, v, codes, full.theta, [np.flatnonzero(owner == d) for d in range(n_del)], method)
    assert fits.batched.mean() > 0.5  # the rest (e.g. a component leaving theta > 0) went through maximize
    for d, ev in enumerate(loop):
        np.testing.assert_allclose(fits.theta[d], ev.theta, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(fits.beta[d], ev.beta, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(fits.cov_beta[d], ev.cov_beta, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(fits.loglik[d], ev.loglik, rtol=1e-10)
    # the full data at each deleted theta
    design = design_from_rows(x, y, v, codes, residual=False)
    cov = full_data_covariances(x, y, v, codes, fits.theta)
    for d in range(n_del):
        np.testing.assert_allclose(cov[d], evaluate(design, fits.theta[d], "ML").cov_beta, rtol=1e-10)


def test_boundary_and_general_path() -> None:
    """Deleted fits at sigma2 = 0 are held there (KKT) or handed to maximize; either way they equal the loop."""
    x, y, v, codes = _data(2, seed=11)
    y = 0.3 + np.random.default_rng(5).normal(0, np.sqrt(v))  # no heterogeneity: sigma2 at or near 0
    full, _ = maximize(design_from_rows(x, y, v, codes, residual=False), "REML", np.full(2, 0.01))
    owner = codes[0]
    members = np.argsort(owner, kind="stable")
    fits = deletion_refits(x, y, v, codes, "REML", full.theta, members, owner[members], 12)
    loop = _loop(x, y, v, codes, full.theta, [np.flatnonzero(owner == d) for d in range(12)], "REML")
    for d, ev in enumerate(loop):
        np.testing.assert_allclose(fits.theta[d], ev.theta, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(fits.beta[d], ev.beta, rtol=1e-8, atol=1e-10)


def test_not_estimable_gives_nan() -> None:
    x, y, v, codes = _data(2)
    x = np.column_stack([x, (codes[0] == 0).astype(float)])  # a moderator only the first cluster has
    owner = codes[0]
    members = np.argsort(owner, kind="stable")
    fits = deletion_refits(x, y, v, codes, "REML", np.full(2, 0.05), members, owner[members], 12)
    assert np.isnan(fits.beta[0]).all() and np.isfinite(fits.beta[1:]).all()
    assert not fits.converged[0] and fits.converged[1:].all()  # nothing fitted: not converged


def _scaled_refits(levels: int, by: str, scale: float):  # type: ignore[no-untyped-def]
    """Deleted fits of ``_data`` with ``y`` times ``scale`` and ``v`` times ``scale^2``, and the loop over
    deletions on the unscaled data."""
    x, y, v, codes = _data(levels, p=2)
    start = maximize(design_from_rows(x, y, v, codes, residual=False), "REML", np.full(levels, 0.05))[0].theta
    owner = np.arange(y.size) if by == "effect" else codes[0]
    members = np.argsort(owner, kind="stable")
    n_del = int(owner.max()) + 1
    drops = [np.flatnonzero(owner == d) for d in range(n_del)]
    fits = deletion_refits(x, scale * y, scale**2 * v, codes, "REML", scale**2 * start, members, owner[members], n_del)
    scaled = _loop(x, scale * y, scale**2 * v, codes, scale**2 * start, drops, "REML")
    return fits, _loop(x, y, v, codes, start, drops, "REML"), scaled


def _assert_scaled(fits, d: int, ev, scale: float) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_allclose(fits.theta[d] / scale**2, ev.theta / scale**2, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fits.beta[d] / scale, ev.beta / scale, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fits.cov_beta[d] / scale**2, ev.cov_beta / scale**2, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("levels", [2, 3])
@pytest.mark.parametrize("by", ["effect", "cluster"])
@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e-5])
def test_refits_are_equivariant_to_the_units_of_y(levels: int, by: str, scale: float) -> None:
    """``y`` times ``c`` and ``v`` times ``c^2`` (down to ``v ~ 1e-12``): every deletion equals one ``maximize``
    run on the scaled data, and the fit of the unscaled data with ``theta`` times ``c^2`` and ``beta`` times
    ``c``: a Newton step counts as negligible relative to each component or to the data's variance scale,
    not to 1."""
    fits, unscaled, scaled = _scaled_refits(levels, by, scale)
    assert fits.batched.mean() > 0.5 and fits.converged.all()
    for d, (ev, ev_scaled) in enumerate(zip(unscaled, scaled, strict=True)):
        _assert_scaled(fits, d, ev_scaled, scale)
        np.testing.assert_allclose(fits.theta[d] / scale**2, ev.theta, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(fits.beta[d] / scale, ev.beta, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(fits.cov_beta[d] / scale**2, ev.cov_beta, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("by", ["effect", "cluster"])
def test_batched_refits_in_large_units(by: str) -> None:
    """``y`` times 1e4: the Hessian's curvature is judged against ``1 / scale^2``, not 1, so the batched path
    still settles the deletions, at the unscaled fits times ``c^2`` (and ``c``)."""
    scale = 1e4
    fits, unscaled, _ = _scaled_refits(3, by, scale)
    assert fits.batched.mean() > 0.5 and fits.converged.all()
    for d in np.flatnonzero(fits.batched):
        ev = unscaled[d]
        np.testing.assert_allclose(fits.theta[d] / scale**2, ev.theta, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(fits.beta[d] / scale, ev.beta, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(fits.cov_beta[d] / scale**2, ev.cov_beta, rtol=1e-8, atol=1e-12)


def test_convergence_of_the_general_path_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deletions refitted by ``maximize`` carry its verdict."""
    import dataclasses

    import edueffects.core.deletion as deletion

    def unconverged(*args, **kwargs):  # type: ignore[no-untyped-def]
        ev, convergence = maximize(*args, **kwargs)
        return ev, dataclasses.replace(convergence, converged=False)

    monkeypatch.setattr(deletion, "maximize", unconverged)
    monkeypatch.setattr(deletion, "MAX_NEWTON", 1)  # one batched step: most deletions go on to maximize
    x, y, v, codes = _data(2)
    owner = codes[0]
    members = np.argsort(owner, kind="stable")
    fits = deletion_refits(x, y, v, codes, "REML", np.full(2, 0.05), members, owner[members], 12)
    assert (~fits.batched).any()
    np.testing.assert_array_equal(fits.converged, fits.batched)
