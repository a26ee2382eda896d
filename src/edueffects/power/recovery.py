"""Simulation-based power of the DDD effects, above the recovery engine (it imports ``recovery`` and ``simulate``).

:func:`power_curve`: every replicate draws a new state from :func:`edueffects.simulate.recovery` with
the DDD effect of one moderator set to each grid value (the others 0) and fits the gain model; power
is the share of replicates with p < alpha (model-based Satterthwaite test), with its Monte-Carlo SE
``sqrt(power (1 - power) / reps)``. Replicates run in parallel over processes.

:func:`check_mdes`: the analytic MDEs of a fitted gain model checked by parametric simulation from it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from edueffects.core.equivalence import DetectableEffect
from edueffects.core.errors import InputError
from edueffects.recovery.data import CellTable
from edueffects.recovery.fit import model_pvalues, recovery
from edueffects.recovery.model import build
from edueffects.recovery.result import RecoveryResult
from edueffects.simulate import recovery as simulate_state

MODERATOR_FIELDS = {"ses": "ddd_ses", "nongerman": "ddd_nongerman", "lost_days": "ddd_lost_days"}


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
    if moderator not in MODERATOR_FIELDS:
        raise InputError("moderator '{0}' is not simulated (choose from {1})", moderator, ", ".join(MODERATOR_FIELDS))
    if reps < 2 or not effects:
        raise InputError("power needs at least 2 replicates and one effect size")
    jobs = [
        (float(e), seed + 10_000 * i + r, dict(design), moderator, alpha)
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


def check_mdes(result: RecoveryResult, reps: int, seed: int = 1) -> RecoveryResult:
    """``result`` with each MDE entry's ``simulated_power_at_mdes`` from ``reps`` simulations
    (:func:`simulated_power_at_mdes`; gain model); ``reps < 1`` returns ``result`` unchanged."""
    if reps < 1:
        return result
    return replace(result, mdes=simulated_power_at_mdes(result, reps=reps, seed=seed))
