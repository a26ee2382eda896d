"""Simulation-based power of the DDD effects, above the recovery engine (it imports ``recovery`` and ``simulate``).

:func:`power_curve`: every replicate draws a new state from :func:`edueffects.simulate.recovery` with
the DDD effect of one moderator set to each grid value (the others 0) and fits the gain model; power
is the share of replicates with p < alpha (model-based Satterthwaite test), with its Monte-Carlo SE
``sqrt(power (1 - power) / reps)``. Replicates run in parallel over processes.

:func:`check_mdes`: the analytic MDEs of a fitted gain model checked by parametric simulation from it.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields, replace

import numpy as np
import pandas as pd

from edueffects.core.equivalence import DetectableEffect
from edueffects.core.errors import InputError
from edueffects.recovery import checks
from edueffects.recovery.data import CellTable
from edueffects.recovery.fit import model_pvalues, recovery
from edueffects.recovery.model import build
from edueffects.recovery.result import RecoveryResult
from edueffects.simulate import recovery as simulate_state
from edueffects.simulate.recovery import RecoveryDesign

MODERATOR_FIELDS = {"ses": "ddd_ses", "nongerman": "ddd_nongerman", "lost_days": "ddd_lost_days"}
MAX_REPS = 1_000_000  # simulations per MDE
SEED_STRIDE = 10_000  # replicate r of effect i has seed + SEED_STRIDE i + r: at most this many replicates
MAX_EFFECTS = 1_000  # effect sizes of one power curve
MAX_SEED = 2**32 - 1
# true DDD effects beyond this many score SDs per unit of the moderator are not a question of power
MAX_EFFECT = 100.0


@dataclass(frozen=True)
class PowerCurve:
    """Rejection rates per effect size and DDD term."""

    moderator: str
    effects: tuple[float, ...]
    reps: int
    alpha: float
    table: pd.DataFrame

    def tidy(self) -> pd.DataFrame:
        return self.table.copy()

    def to_dict(self) -> dict[str, object]:
        return {
            "moderator": self.moderator,
            "effects": list(self.effects),
            "reps": self.reps,
            "alpha": self.alpha,
            "power": self.table.to_dict(orient="records"),
        }

    def summary(self) -> str:
        lines = [f"Simulated power (SYNTHETIC states), {self.reps} replicates per effect, alpha = {self.alpha:g}"]
        target = f"pandemic:{self.moderator}"
        rows = self.table[self.table.term == target]
        for _, row in rows.iterrows():
            lines.append(f"  true {target} = {row.effect:+.3f}: power {row.power:.3f} (MC SE {row.mc_se:.3f})")
        return "\n".join(lines)


def _replicate(job: tuple[float, int, dict[str, object], str, float]) -> list[tuple[float, str, bool]]:
    effect, seed, design, moderator, alpha = job
    settings = {**design, MODERATOR_FIELDS[moderator]: effect}
    state = simulate_state(None, seed, **settings)
    res = recovery(
        state,
        school="school",
        cohort="cohort",
        pandemic_cohorts=[2018, 2019],
        moderators=list(MODERATOR_FIELDS),
        pre="score5",
        post="score8",
    )
    index = {n: i for i, n in enumerate(res.coefficients.names)}
    return [(effect, t, bool(res.coefficients.pval[index[t]] < alpha)) for t in res.ddd_terms]


def power_curve(
    moderator: str,
    effects: Sequence[float],
    reps: int = 100,
    alpha: float = 0.05,
    seed: int = 1,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    **design: object,
) -> PowerCurve:
    """Power of each DDD effect for a grid of true effects of ``moderator`` (``design``: simulator settings)."""
    if not isinstance(moderator, str) or moderator not in MODERATOR_FIELDS:
        raise InputError("moderator '{0}' is not simulated (choose from {1})", moderator, ", ".join(MODERATOR_FIELDS))
    effects = _effects(effects)
    reps = checks.whole("reps", reps, 2, SEED_STRIDE)
    alpha = checks.probability("alpha", alpha)
    seed = checks.whole("seed", seed, 0, MAX_SEED)
    if workers is not None:
        workers = checks.whole("workers", workers, 1, 4096)
    if progress is not None and not callable(progress):
        raise InputError("progress must be a function of (done, total) or None (got {0})", repr(progress))
    _check_design(design)
    jobs = [
        (float(e), seed + SEED_STRIDE * i + r, dict(design), moderator, alpha)
        for i, e in enumerate(effects)
        for r in range(reps)
    ]
    outcomes: list[tuple[float, str, bool]] = []
    n_workers = workers or os.cpu_count() or 1
    if n_workers == 1:
        for done, job in enumerate(jobs, 1):
            outcomes += _replicate(job)
            if progress:
                progress(done, len(jobs))
    else:
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            for done, result in enumerate(
                pool.map(_replicate, jobs, chunksize=max(1, len(jobs) // (8 * n_workers))), 1
            ):
                outcomes += result
                if progress:
                    progress(done, len(jobs))
    frame = pd.DataFrame(outcomes, columns=["effect", "term", "reject"])
    table = frame.groupby(["effect", "term"], sort=True)["reject"].mean().rename("power").reset_index()
    table["mc_se"] = np.sqrt(table.power * (1 - table.power) / reps)
    return PowerCurve(
        moderator=moderator, effects=tuple(float(e) for e in effects), reps=reps, alpha=alpha, table=table
    )


def _effects(effects: object) -> list[float]:
    """True DDD effects: a non-empty list of finite numbers within +/-MAX_EFFECT."""
    if isinstance(effects, str) or not isinstance(effects, Sequence) or not 1 <= len(effects) <= MAX_EFFECTS:
        raise InputError("effects must be a list of 1 to {0} numbers (got {1})", MAX_EFFECTS, repr(effects))
    out = []
    for value in effects:
        number = checks.real(value)
        if number is None or not math.isfinite(number):
            raise InputError("effect {0} is not a finite number", repr(value))
        if abs(number) > MAX_EFFECT:
            raise InputError(
                "effect {0:g} lies outside +/-{1:g} (score SDs per unit of the moderator)", number, MAX_EFFECT
            )
        out.append(number)
    return out


def _check_design(design: dict[str, object]) -> None:
    """The simulator's settings, checked here once instead of in every worker process. The cohorts and
    domains are those the replicates are fitted with; they are not settings of a power curve."""
    known = {f.name for f in fields(RecoveryDesign)} - {"cohorts", "pandemic_cohorts", "domains"}
    unknown = sorted(set(design) - known)
    if unknown:
        raise InputError("unknown simulation setting(s): {0}", ", ".join(unknown))
    for key, value in design.items():
        if key == "n_schools":
            checks.whole(key, value, 2, 10_000_000)
            continue
        if key == "students_per_school":
            checks.positive_number(key, value)
        low, high = (0.0, 1e5) if key == "students_per_school" else (0.0 if key.startswith("sd_") else -MAX_EFFECT,
                                                                      MAX_EFFECT)  # fmt: skip
        number = checks.real(value)
        if number is None or not low <= number <= high:
            raise InputError("{0} must be a number from {1:g} to {2:g} (got {3})", key, low, high, repr(value))


def terminal_progress(quiet: bool = False) -> Callable[[int, int], None] | None:
    """A rich progress bar on a terminal; nothing when piped or quiet."""
    if quiet or not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(transient=True, console=Console(stderr=True))
    task = bar.add_task("simulating", total=None)
    bar.start()

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)
        if done >= total:
            bar.stop()

    return update


def simulated_power_at_mdes(result: RecoveryResult, reps: int = 200, seed: int = 1) -> tuple[DetectableEffect, ...]:
    """Check each analytic MDE by simulation from the fitted gain model (parametric, cell level).

    For each DDD term, ``reps`` data sets of cell statistics are drawn from the fitted model with that
    term set to its analytic MDE — cell mean ``~ N(x b + u_school + u_cell, s2_e / n)``, within-cell sum
    of squares ``~ s2_e chi2(n - 1)`` — refitted, and the share of p < alpha is reported.
    """
    _check_result(result)
    reps = checks.whole("reps", reps, 1, MAX_REPS)
    seed = checks.whole("seed", seed, 0, MAX_SEED)
    if result.model != "gain":
        raise InputError("the simulation check of the MDE is available for the gain model")
    rng = np.random.default_rng(seed)
    cells = result.cells
    n = cells["n"].to_numpy(np.float64)
    school = pd.factorize(cells["school"])[0]
    n_school = int(school.max()) + 1
    s2_school, s2_cell, s2_e = (float(v) for v in result.variance)
    names = list(result.coefficients.names)
    out = []
    for md in result.mdes:
        beta = result.coefficients.estimate.copy()
        beta[names.index(md.term)] = md.mdes
        rejections = 0
        template = CellTable("gain", cells, result.n_students, result.n_rows, result.dose, "post", ())
        x = build(template, result.moderators, "REML").block_x
        for _ in range(reps):
            mean = (
                x @ beta
                + rng.normal(0, np.sqrt(s2_school), n_school)[school]
                + rng.normal(0, np.sqrt(s2_cell), len(n))
                + rng.normal(0, np.sqrt(s2_e / n))
            )
            within = s2_e * rng.chisquare(np.maximum(n - 1, 1))
            frame = cells.assign(sum=n * mean, sumsq=within + n * mean**2)
            simulated = CellTable("gain", frame, result.n_students, result.n_rows, result.dose, "post", ())
            p = model_pvalues(simulated, result.moderators, result.method)[md.term]  # type: ignore[arg-type]
            rejections += int(p < md.alpha)
        out.append(replace(md, simulated_power_at_mdes=rejections / reps))
    return tuple(out)


def _check_result(result: object) -> None:
    if not isinstance(result, RecoveryResult):
        raise InputError("the MDE check needs a fitted recovery model (got {0})", type(result).__name__)
    if result.plausible_values > 1:
        raise InputError("the simulation check of the MDE is not available for results pooled over plausible values")


def check_mdes(result: RecoveryResult, reps: int, seed: int = 1) -> RecoveryResult:
    """``result`` with each MDE entry's ``simulated_power_at_mdes`` from ``reps`` simulations
    (:func:`simulated_power_at_mdes`; gain model); ``reps = 0`` returns ``result`` unchanged."""
    _check_result(result)
    if checks.whole("reps", reps, 0, MAX_REPS) == 0:
        return result
    return replace(result, mdes=simulated_power_at_mdes(result, reps=reps, seed=seed))
