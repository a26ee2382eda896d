"""Seeded simulator of a state-wide grade-5 -> grade-8 assessment panel (SYNTHETIC data).

One row per student (and domain): ``student, school, cohort, pandemic, ses, nongerman, lost_days,
score5, score8`` (+ ``domain``). Defaults follow the design of Schult, Fauth, Schneider & Lindner
(2026): cohorts 2015 (pre-pandemic), 2018 and 2019 (pandemic), 1,100 schools, about 65 students per
school and cohort, a gain of about 1 SD over three years, a pandemic gain loss of -0.10 SD and true
moderator (DDD) effects of 0. Scores are in SD units. The generating model:

    score5 = u_school + u_school:cohort + ability + e5
    score8 = score5 - e5 + e8 + gain + 0.1 ability + e
    gain   = gain_mean + g_school + g_school:cohort
             + pandemic (loss + ddd_ses ses + ddd_nongerman nongerman + ddd_lost_days (lost - 60)/15)

so the school-level variance of the gain is ``sd_gain_school^2`` and of school x cohort
``sd_gain_cohort^2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from edueffects.core.errors import InputError


@dataclass(frozen=True)
class RecoveryDesign:
    """Parameters of a simulated state (defaults: the seed study's design, no moderator effects)."""

    n_schools: int = 1100
    students_per_school: float = 65.0
    cohorts: tuple[int, ...] = (2015, 2018, 2019)
    pandemic_cohorts: tuple[int, ...] = (2018, 2019)
    gain: float = 1.0
    pandemic_loss: float = -0.10
    ddd_ses: float = 0.0
    ddd_nongerman: float = 0.0
    ddd_lost_days: float = 0.0
    sd_school: float = 0.55
    sd_school_cohort: float = 0.12
    sd_gain_school: float = 0.06
    sd_gain_cohort: float = 0.08
    sd_ability: float = 0.75
    sd_noise: float = 0.45
    sd_gain_noise: float = 0.3
    domains: tuple[str, ...] = ("reading",)


def recovery(design: RecoveryDesign | None = None, seed: int = 1, **overrides: object) -> pd.DataFrame:
    """Simulate a state; keyword ``overrides`` replace fields of the default :class:`RecoveryDesign`."""
    base = design or RecoveryDesign()
    params = {**base.__dict__, **overrides}
    unknown = set(overrides) - set(base.__dict__)
    if unknown:
        raise InputError("unknown simulation setting(s): {0}", ", ".join(sorted(unknown)))
    d = RecoveryDesign(**params)
    if d.n_schools < 2 or d.students_per_school <= 0:
        raise InputError("a simulated state needs at least 2 schools and students in them")
    if not set(d.pandemic_cohorts) < set(d.cohorts):
        raise InputError("pandemic cohorts must be a proper subset of the cohorts")
    rng = np.random.default_rng(seed)
    ses = rng.normal(size=d.n_schools)
    nongerman = np.clip(rng.beta(2, 6, d.n_schools) - 0.05 * ses, 0, 1)
    lost = np.clip(rng.normal(60, 15, d.n_schools), 10, 120)
    frames = []
    next_id = 0
    for domain in d.domains:
        u_school = rng.normal(0, d.sd_school, d.n_schools) + 0.3 * ses
        g_school = rng.normal(0, d.sd_gain_school, d.n_schools)
        for cohort in d.cohorts:
            pandemic = int(cohort in d.pandemic_cohorts)
            u_sc = rng.normal(0, d.sd_school_cohort, d.n_schools)
            g_sc = rng.normal(0, d.sd_gain_cohort, d.n_schools)
            counts = rng.poisson(d.students_per_school, d.n_schools)
            school = np.repeat(np.arange(d.n_schools), counts)
            m = school.size
            ability = rng.normal(0, d.sd_ability, m)
            lost_days = lost[school] * pandemic
            score5 = u_school[school] + u_sc[school] + ability + rng.normal(0, d.sd_noise, m)
            gain = (
                d.gain
                + g_school[school]
                + g_sc[school]
                + pandemic * (d.pandemic_loss + d.ddd_ses * ses[school] + d.ddd_nongerman * nongerman[school])
                + d.ddd_lost_days * (lost_days - 60) / 15 * pandemic
                + 0.1 * ability
            )
            e5 = score5 - u_school[school] - u_sc[school] - ability
            score8 = score5 - e5 + rng.normal(0, d.sd_noise, m) + gain + rng.normal(0, d.sd_gain_noise, m)
            frames.append(
                pd.DataFrame(
                    {
                        "student": np.arange(next_id, next_id + m),
                        "school": school,
                        "cohort": cohort,
                        "pandemic": pandemic,
                        "ses": np.round(ses[school], 5),
                        "nongerman": np.round(nongerman[school], 5),
                        "lost_days": np.round(lost_days, 2),
                        "score5": score5,
                        "score8": score8,
                        **({"domain": domain} if len(d.domains) > 1 else {}),
                    }
                )
            )
            next_id += m
    return pd.concat(frames, ignore_index=True)


def to_long(
    wide: pd.DataFrame, occasion: str = "occasion", score: str = "score", columns: Sequence[str] = ("score5", "score8")
) -> pd.DataFrame:
    """One row per student and occasion (``occasion`` 0 = before, 1 = after)."""
    before, after = columns
    keep = [c for c in wide.columns if c not in (before, after)]
    first = wide[keep].copy()
    first[occasion], first[score] = 0, wide[before]
    second = wide[keep].copy()
    second[occasion], second[score] = 1, wide[after]
    return pd.concat([first, second], ignore_index=True)
