"""Power of the DDD effects by simulation: simulate a state, fit, count rejections, over a grid.

Every replicate draws a new state from :func:`edueffects.simulate.recovery` with the DDD effect of
one moderator set to each grid value (the others 0) and fits the gain model; power is the share of
replicates with p < alpha (model-based Satterthwaite test), with its Monte-Carlo SE
``sqrt(power (1 - power) / reps)``. Replicates run in parallel over processes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from edueffects.core.errors import InputError

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
    from edueffects.recovery.fit import recovery
    from edueffects.simulate import recovery as simulate_state

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
        raise InputError(f"moderator '{moderator}' is not simulated (choose from {', '.join(MODERATOR_FIELDS)})")
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
    from rich.progress import Progress

    bar = Progress(transient=True)
    task = bar.add_task("simulating", total=None)
    bar.start()

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)
        if done >= total:
            bar.stop()

    return update
