"""Confidence intervals for variance components: profile likelihood and the Q-profile.

**Profile likelihood.** The bound of ``theta[i]`` is where the profile log-likelihood
``pl(s) = max { l(theta) : theta[i] = s }`` (the other free components re-maximised) has dropped by
``chi2_1(level) / 2`` from the maximum. Every evaluation of the likelihood comes with its exact
gradient ``g`` and Hessian ``H`` (:func:`edueffects.core.nested.evaluate`), which give, at a point
near the constrained optimum (``o``: the other free components):

- the Newton correction of the others, ``d = (-H_oo)^-1 g_o``, and the profile value after it,
  ``l + g_o'd + d'H_oo d / 2``;
- the profile's slope, the gradient in ``theta[i]`` at the constrained optimum (envelope theorem):
  ``g_i + H_io d``;
- its curvature, the Schur complement ``H_ii - H_io H_oo^-1 H_oi``;
- how the constrained optimum moves with ``s``: ``d theta_o / ds = (-H_oo)^-1 H_oi``.

Each step solves the local quadratic model of the profile for the bound and moves the others
along with it (correction plus sensitivity): Newton on the joint system "others stationary,
profile at the critical value", one evaluation per step, converging quadratically. It starts at
the quadratic prediction in ``log s`` from the maximum (asymmetric like the profile of a variance),
keeps a bracket, bisects when a step leaves it, and steps to ``s = 0`` to test that boundary for
a lower bound. Should a bound not converge in ``MAX_STEPS`` (a profile with several maxima), it is
found the slow and sure way: Brent's method on constrained maximisations.

**Q-profile** (Viechtbauer 2007): the bounds of ``tau^2`` where the generalized
``Q(tau2) = sum w_i (y_i - x_i b)^2``, ``w = 1/(v + tau2)``, equals the chi-square quantiles. ``Q``
decreases in ``tau2`` with slope ``-sum w_i^2 (y_i - x_i b)^2`` (``b`` minimises it: envelope
theorem); Newton on ``log Q`` against ``log tau2``, nearly linear in both tails, with a bracket.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from edueffects.core.distributions import chi2_ppf
from edueffects.core.jet import Array
from edueffects.core.nested import Evaluation, Method, NestedDesign, evaluate, maximize

MAX_STEPS = 40
"""Steps of the profile-likelihood or Q-profile iteration for one bound before the fallback."""
STEP_TOLERANCE = 1e-11
"""A bound has converged when the last step moved it by less than this, relative."""
START_FACTOR = 10.0
"""The first point of the iteration for a bound is at most this factor from the estimate."""
RESTART_FRACTIONS = (0.01, 0.03, 0.1, 0.3, 1.0)
"""Values (fractions of the largest estimate) at which other components sitting at 0 at a bound
are tried, to detect a higher maximum inside."""


@dataclass(frozen=True)
class VarianceInterval:
    """A variance component with its confidence interval and how it was obtained."""

    component: str
    estimate: float
    ci_lb: float
    ci_ub: float
    kind: str

    def to_dict(self) -> dict[str, object]:
        return {
            "component": self.component,
            "estimate": self.estimate,
            "ci_lb": self.ci_lb,
            "ci_ub": self.ci_ub,
            "kind": self.kind,
        }


# --- the profile at one point ------------------------------------------------------------------


@dataclass(frozen=True)
class _Local:
    """The profile of ``theta[index]`` from one evaluation near the constrained optimum."""

    ev: Evaluation
    value: float
    slope: float
    curvature: float
    correction: Array
    sensitivity: Array
    decrement: float


def _local(design: NestedDesign, method: Method, theta: Array, index: int, movable: NDArray[np.bool_]) -> _Local:
    """Evaluate at ``theta`` and read off the profile there (see the module docstring). Movable
    components at 0 whose gradient points outward stay at 0 (their constraint is active)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ev = evaluate(design, theta, method)
    g, h = ev.gradient, ev.hessian
    free = movable & ~((theta <= 0.0) & (g <= 0.0))
    correction = np.zeros(theta.size)
    sensitivity = np.zeros(theta.size)
    if not free.any():
        return _Local(ev, ev.loglik, float(g[index]), float(h[index, index]), correction, sensitivity, 0.0)
    g_o = g[free]
    h_oo = h[np.ix_(free, free)]
    h_oi = h[free, index]
    eigval, eigvec = np.linalg.eigh(-h_oo)
    floor = 1e-12 * max(1.0, float(np.abs(eigval).max()))
    inverse = (eigvec / np.maximum(np.abs(eigval), floor)) @ eigvec.T  # (-H_oo)^-1, made definite
    d = inverse @ g_o
    s = inverse @ h_oi
    correction[free] = d
    sensitivity[free] = s
    value = ev.loglik + float(g_o @ d) + 0.5 * float(d @ h_oo @ d)
    slope = float(g[index] + h_oi @ d)
    curvature = float(h[index, index] + h_oi @ s)
    return _Local(ev, value, slope, curvature, correction, sensitivity, float(g_o @ d))


def _model_step(f: float, slope: float, curvature: float, direction: float) -> float | None:
    """The step ``t`` solving ``f + slope t + curvature t^2 / 2 = 0`` nearest 0 in ``direction``
    (the side where the profile falls to the bound: ``f > 0`` means still above it), or the
    Newton step; ``None`` if neither points that way."""
    toward = direction if f > 0.0 else -direction
    candidates = []
    disc = slope * slope - 2.0 * curvature * f
    if curvature != 0.0 and disc >= 0.0:
        root = np.sqrt(disc)
        # numerically stable roots of the quadratic
        q = -0.5 * (slope + np.copysign(root, slope))
        candidates = [q / (0.5 * curvature)] if q == 0.0 else [q / (0.5 * curvature), f / q]
    elif slope != 0.0:
        candidates = [-f / slope]
    steps = [float(t) for t in candidates if np.isfinite(t) and t * toward > 0.0]
    if steps:
        return min(steps, key=abs)
    if slope != 0.0 and -f / slope * toward > 0.0:
        return -f / slope
    return None


class _Profile:
    """The profile likelihood of ``theta[index]`` around a maximum: its bounds and its values."""

    def __init__(
        self,
        design: NestedDesign,
        method: Method,
        theta_hat: Array,
        index: int,
        level: float,
        fixed: Sequence[bool] | None,
    ) -> None:
        self.design = design
        self.method = method
        self.index = index
        self.theta_hat = np.asarray(theta_hat, dtype=np.float64)
        self.crit = 0.5 * chi2_ppf(level / 100.0, 1)
        self.fixed = _held(self.theta_hat.size, index, fixed)
        self.movable = ~np.asarray(self.fixed, dtype=bool)
        self.at_optimum = _local(design, method, self.theta_hat, index, self.movable)
        self.loglik_hat = float(self.at_optimum.ev.loglik)
        self.resolution = 1e-12 * max(1.0, abs(self.loglik_hat))
        self.evaluations = 1
        # size of the variance components: the largest estimate, or the mean known variance
        known = float(np.mean(design.known_var)) if design.known_var.size else 0.0
        scale = max(float(self.theta_hat.max(initial=0.0)), known)
        self.scale = scale if np.isfinite(scale) and scale > 0.0 else 1.0

    def local(self, theta: Array) -> _Local:
        self.evaluations += 1
        return _local(self.design, self.method, theta, self.index, self.movable)

    def move(self, at: _Local, value: float) -> Array:
        """The predicted constrained optimum at ``theta[index] = value`` from the profile at ``at``."""
        theta = at.ev.theta
        out: Array = theta + at.correction + (value - theta[self.index]) * at.sensitivity
        # a linear prediction far out is no better than the point itself: at most double (+ scale)
        out = np.minimum(out, 2.0 * theta + self.scale)
        out[self.movable] = np.maximum(out[self.movable], 0.0)
        out[self.index] = value
        return out

    def start(self, direction: float) -> float:
        """Quadratic prediction of the bound in ``log s`` from the maximum (in ``s`` when the
        estimate is 0)."""
        s_hat = float(self.theta_hat[self.index])
        at = self.at_optimum
        step = _model_step(self.crit, at.slope, at.curvature, direction)
        if step is None or not np.isfinite(step):
            step = direction * max(s_hat, self.scale)
        if s_hat <= 0.0:
            return max(step, 0.0)
        # the same drop in log s: d pl / d log s = s slope, d2 = s^2 curvature + s slope; at most a
        # factor START_FACTOR away (the iteration expands from there if needed)
        log_step = _model_step(self.crit, s_hat * at.slope, s_hat * s_hat * at.curvature + s_hat * at.slope, direction)
        if log_step is None or not np.isfinite(log_step):
            return min(max(s_hat + step, 0.0), START_FACTOR * s_hat)
        return s_hat * float(np.exp(np.clip(log_step, -np.log(START_FACTOR), np.log(START_FACTOR))))

    def bound(self, direction: float) -> float | None:
        """The bound on the side ``direction`` (+1 upper, -1 lower) by the joint Newton iteration;
        ``None`` if it does not converge or if the constrained optimum it followed is not the
        highest at the bound (:meth:`_highest`)."""
        found = self._iterate(direction)
        if found is None or not self._highest(found[1]):
            return None
        return found[0]

    def _iterate(self, direction: float) -> tuple[float, _Local] | None:
        index, target = self.index, self.loglik_hat - self.crit
        s_hat = float(self.theta_hat[index])
        inside, outside = s_hat, float("nan")  # profile above / below the critical value
        at = self.at_optimum
        s_new = self.start(direction)
        for _ in range(MAX_STEPS):
            at = self.local(self.move(at, s_new))
            s = float(at.ev.theta[index])
            if not np.isfinite(at.value) or not np.isfinite(at.slope):
                return None
            f = at.value - target
            if at.decrement <= max(0.5 * abs(f), self.resolution):  # the side is certain: bracket it
                if f > 0.0:
                    inside = s
                else:
                    outside = s
            if s <= 0.0 and f >= -self.resolution and at.decrement <= self.resolution:
                return 0.0, at  # the profile stays above the critical value down to the boundary
            step = _model_step(f, at.slope, at.curvature, direction)
            tolerance = STEP_TOLERANCE * max(abs(s), abs(s_hat))
            if step is not None and abs(step) <= tolerance and at.decrement <= self.resolution:
                return s + step, at
            if abs(f) <= self.resolution and at.decrement <= self.resolution:
                return s, at
            s_new = s + step if step is not None else float("nan")
            s_new = self._safeguard(s_new, s, inside, outside, direction)
            if s_new == s and at.decrement <= self.resolution:
                return s, at
        return None

    def _highest(self, at: _Local) -> bool:
        """Whether the constrained optimum at a bound is the highest there, as far as a scan tells:
        the likelihood can have a maximum with a component at 0 and another inside, and the
        iteration follows one of them. Other components at 0 are scanned over positive values
        (``RESTART_FRACTIONS`` of the largest estimate); a higher point means the profile jumped."""
        theta = at.ev.theta
        zeros = self.movable & (theta <= 0.0)
        top = max(float(self.theta_hat.max()), float(theta[self.index]))
        if not zeros.any() or top <= 0.0:
            return True
        for fraction in RESTART_FRACTIONS:
            point = theta.copy()
            point[zeros] = fraction * top
            if self.local(point).ev.loglik > at.value + 1e3 * self.resolution:
                return False
        return True

    def _safeguard(self, s_new: float, s: float, inside: float, outside: float, direction: float) -> float:
        """Keep the next point inside the bracket: between the last points known above and below
        the critical value, or beyond the one above when none below is known yet; the lower bound
        is tried at 0 when a step would leave the parameter space."""
        if np.isfinite(outside):
            lo, hi = min(inside, outside), max(inside, outside)
            if np.isfinite(s_new) and lo < s_new < hi:
                return s_new
            if s_new == s:
                return s
            # bisect; geometrically across orders of magnitude
            return float(np.sqrt(lo * hi)) if lo > 0.0 and hi > 4.0 * lo else 0.5 * (lo + hi)
        if not np.isfinite(s_new) or (s_new - inside) * direction <= 0.0:
            s_hat = float(self.theta_hat[self.index])
            s_new = inside + direction * max(abs(inside - s_hat), abs(inside), self.scale)
        return max(s_new, 0.0)

    def slow_bound(self, direction: float) -> float:
        """The bound by Brent's method on constrained maximisations (the previous, sure way)."""

        def excess(value: float) -> float:
            start = self.theta_hat.copy()
            start[self.index] = value
            ev, _ = maximize(self.design, self.method, start, fixed=self.fixed)
            return self.loglik_hat - ev.loglik - self.crit

        estimate = float(self.theta_hat[self.index])
        if direction < 0:
            return 0.0 if estimate <= 0.0 or excess(0.0) < 0.0 else _root(excess, 0.0, estimate)
        return _root(excess, estimate, _upper_bracket(excess, 2.0 * max(estimate, self.scale)))

    def interval(self) -> tuple[float, float]:
        estimate = float(self.theta_hat[self.index])
        lower = 0.0 if estimate <= 0.0 else self.bound(-1.0)
        upper = self.bound(1.0)
        return (
            self.slow_bound(-1.0) if lower is None else lower,
            self.slow_bound(1.0) if upper is None else upper,
        )

    def maximise_at(self, at: _Local, value: float) -> _Local:
        """The constrained optimum at ``theta[index] = value``, climbed from the prediction of ``at``."""
        return self.climb(self.move(at, value))

    def climb(self, theta: Array) -> _Local:
        """The constrained optimum (``theta[index]`` held) from ``theta``: Newton steps on the others,
        each checked not to lose log-likelihood (halved otherwise)."""
        current = self.local(theta)
        for _ in range(MAX_STEPS):
            if current.decrement <= self.resolution or not current.correction.any():
                return current
            step = 1.0
            for _ in range(30):
                trial_theta = current.ev.theta + step * current.correction
                trial_theta[self.movable] = np.maximum(trial_theta[self.movable], 0.0)
                trial = self.local(trial_theta)
                if np.isfinite(trial.ev.loglik) and trial.ev.loglik >= current.ev.loglik - self.resolution:
                    break
                step *= 0.5
            else:
                return current
            moved = float(np.max(np.abs(trial.ev.theta - current.ev.theta) / (1.0 + np.abs(current.ev.theta))))
            current = trial
            if moved < 1e-15:
                return current
        return current


def profile_interval(
    design: NestedDesign,
    method: Method,
    theta_hat: Array,
    index: int,
    level: float = 95.0,
    fixed: Sequence[bool] | None = None,
) -> tuple[float, float]:
    """Profile-likelihood CI of ``theta[index]``: where ``2 (l_hat - l_profile) = chi2_1(level)``,
    ``theta_hat`` the maximum (components marked in ``fixed`` stay at their values)."""
    return _Profile(design, method, theta_hat, index, level, fixed).interval()


def profile_curve(
    design: NestedDesign,
    method: Method,
    theta_hat: Array,
    index: int,
    grid: Array,
    fixed: Sequence[bool] | None = None,
) -> Array:
    """Profile (restricted) log-likelihood of ``theta[index]`` at each grid value (the others
    re-maximised), followed outward from the maximum: each point starts from the prediction of the
    previous one."""
    profile = _Profile(design, method, theta_hat, index, 95.0, fixed)
    s_hat = float(theta_hat[index])
    out = np.empty(grid.size)
    order = np.argsort(grid, kind="stable")
    above = [j for j in order.tolist() if grid[j] >= s_hat]
    below = [j for j in order[::-1].tolist() if grid[j] < s_hat]
    for side in (above, below):
        at = profile.at_optimum
        for j in side:
            at = profile.maximise_at(at, float(grid[j]))
            out[j] = at.ev.loglik
    return out


# --- Q-profile ---------------------------------------------------------------------------------


def generalized_q_slope(x: Array, y: Array, v: Array, tau2: float) -> tuple[float, float]:
    """``Q(tau2) = sum w_i (y_i - x_i b)^2`` (``w = 1/(v + tau2)``, ``b`` the matching WLS fit) and
    its derivative ``-sum w_i^2 (y_i - x_i b)^2``."""
    w = 1.0 / (v + tau2)
    xw = x * w[:, None]
    beta = np.linalg.solve(xw.T @ x, xw.T @ y)
    r = y - x @ beta
    wr = w * r
    return float(wr @ r), -float(wr @ wr)


def q_profile_interval(x: Array, y: Array, v: Array, df: int, start: float, level: float = 95.0) -> tuple[float, float]:
    """Q-profile CI of tau^2 (Viechtbauer 2007): ``Q(tau2)`` equals the chi2_df quantiles; a
    bound is 0 when ``Q(0)`` is already below its quantile."""
    alpha = 1.0 - level / 100.0
    q0, _ = generalized_q_slope(x, y, v, 0.0)
    scale = max(float(start), float(np.median(v)))
    scale = scale if np.isfinite(scale) and scale > 0.0 else 1.0
    lower = _q_bound(x, y, v, chi2_ppf(1.0 - alpha / 2.0, df), q0, scale)
    upper = _q_bound(x, y, v, chi2_ppf(alpha / 2.0, df), q0, max(scale, lower))
    return lower, upper


def _q_bound(x: Array, y: Array, v: Array, target: float, q0: float, start: float) -> float:
    """The root of ``Q(tau2) = target`` (``Q`` decreasing): Newton on ``log Q`` in ``log tau2``
    within a bracket, bisected (geometrically) when a step leaves it; Brent's method if that fails."""
    if q0 < target:
        return 0.0
    lo, hi = 0.0, float("inf")  # Q above / below the target
    t = start
    for _ in range(MAX_STEPS):
        q, slope = generalized_q_slope(x, y, v, t)
        if not (np.isfinite(q) and q > 0.0):
            break
        if q > target:
            lo = t
        else:
            hi = t
        gap = np.log(q / target)
        elasticity = t * slope / q  # d log Q / d log tau2 (< 0)
        step = -gap / elasticity if elasticity < 0.0 else float("inf")
        if abs(step) <= STEP_TOLERANCE or q == target:
            return float(t * np.exp(step)) if np.isfinite(step) else t
        new = t * float(np.exp(np.clip(step, -50.0, 50.0)))
        if not lo < new < hi:
            new = np.sqrt(lo * hi) if lo > 0.0 and np.isfinite(hi) else (4.0 * lo if not np.isfinite(hi) else 0.25 * hi)
        if new == t:
            return t

        t = float(new)

    def gap_of(value: float) -> float:
        return target - generalized_q_slope(x, y, v, value)[0]

    return _root(gap_of, 0.0, _upper_bracket(gap_of, 2.0 * start))


# --- helpers -----------------------------------------------------------------------------------


def _held(n: int, index: int, fixed: Sequence[bool] | None) -> list[bool]:
    return [i == index or (fixed is not None and bool(fixed[i])) for i in range(n)]


def _root(func: Callable[[float], float], lo: float, hi: float) -> float:
    """Brent's method to full precision, relative to the size of the bracket."""
    xtol = 1e-15 * max(abs(lo), abs(hi), np.finfo(float).tiny)
    return float(_brentq()(func, lo, hi, xtol=xtol, rtol=4 * np.finfo(float).eps, maxiter=500))


def _upper_bracket(func: Callable[[float], float], start: float) -> float:
    hi = start
    for _ in range(2000):
        if func(hi) > 0.0:
            return hi
        hi *= 2.0
    raise RuntimeError("could not bracket the upper confidence limit")


def _brentq() -> Callable[..., float]:
    """scipy's Brent root finder, imported on first use (keeps start-up fast)."""
    from scipy.optimize import brentq

    return brentq  # type: ignore[no-any-return]
