"""Seeded simulator of a second-order meta-analysis shaped like the TSR review (SYNTHETIC data).

Emslander, Holzberger, Ofstad, Fischbach & Scherer (2025, Psychological Bulletin 151(3)) pooled 119
meta-analytic correlations from 26 meta-analyses (~2.64 million students) on teacher-student
relationships. The defaults reproduce the published *direction* of results, not the data: overall
r about .25; academic achievement lowest (about .20); appropriate student behaviour highest (about
.34); larger links in middle/high school than in elementary school; bullying weak. Each
meta-analysis gets a publication year (1980-2023), k and N, AMSTAR 2 ratings that improve with
year, and a list of included primary studies drawn with realistic overlap.

Returns three tables: ``effects`` (one row per meta-analytic effect; uncertainty given as SE, CI or
k and N in turn), ``studies`` (meta-analysis x primary study) and ``amstar`` (16 items).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from edueffects.soma.quality import ITEMS

CLUSTER_R = {
    "academic achievement": 0.20,
    "academic emotions": 0.26,
    "appropriate student behavior": 0.34,
    "behavior problems": 0.27,
    "executive functions and self-control": 0.22,
    "motivation": 0.29,
    "school belonging and engagement": 0.31,
    "well-being": 0.26,
    "bullying": 0.07,
}
SCHOOL_LEVEL_SHIFT = {"elementary": -0.03, "middle/high": 0.03, "mixed": 0.0}


@dataclass(frozen=True, eq=False)
class SomaExample:
    """The three tables of a simulated second-order meta-analysis."""

    effects: pd.DataFrame
    studies: pd.DataFrame
    amstar: pd.DataFrame


def soma(
    seed: int = 2025,
    n_meta_analyses: int = 26,
    n_effects: int = 119,
    total_students: float = 2.64e6,
    sd_between: float = 0.05,
    sd_within: float = 0.04,
    n_primary_pool: int = 1800,
) -> SomaExample:
    """Simulate a TSR-shaped SOMA (defaults: 26 meta-analyses, 119 effects, ~2.6 M students)."""
    rng = np.random.default_rng(seed)
    names = [f"SYN-MA{j + 1:02d}" for j in range(n_meta_analyses)]
    years = np.sort(rng.integers(1980, 2024, n_meta_analyses))
    k_ma = rng.integers(12, 160, n_meta_analyses)
    n_ma = np.round(k_ma / k_ma.sum() * total_students).astype(int)
    level = rng.choice(list(SCHOOL_LEVEL_SHIFT), n_meta_analyses, p=[0.35, 0.35, 0.30])
    informant = rng.choice(["student", "teacher", "mixed"], n_meta_analyses, p=[0.45, 0.25, 0.30])
    u_ma = rng.normal(0, sd_between, n_meta_analyses)
    # effects per meta-analysis: at least 2, summing to n_effects
    per_ma = 2 + rng.multinomial(n_effects - 2 * n_meta_analyses, np.full(n_meta_analyses, 1 / n_meta_analyses))
    clusters = list(CLUSTER_R)
    rows = []
    for j in range(n_meta_analyses):
        chosen = rng.choice(clusters, per_ma[j], replace=per_ma[j] > len(clusters), p=_cluster_weights(clusters))
        for i, cluster in enumerate(chosen):
            k = int(rng.integers(3, max(4, k_ma[j] // 2)))
            n = int(max(3 * k + 50, n_ma[j] * k / k_ma[j] * rng.uniform(0.6, 1.2)))
            true_z = np.arctanh(CLUSTER_R[cluster]) + SCHOOL_LEVEL_SHIFT[level[j]] + u_ma[j] + rng.normal(0, sd_within)
            vz = 1.0 / (n - 3 * k)
            z = true_z + rng.normal(0, np.sqrt(vz))
            negative = cluster in ("behavior problems", "bullying") or rng.uniform() < 0.1
            r = float(np.tanh(z)) * (-1 if negative else 1)
            source = (j + i) % 3
            se = (1 - r**2) * np.sqrt(vz) if source == 0 else np.nan
            lb = np.tanh(np.arctanh(r) - 1.959963984540054 * np.sqrt(vz)) if source == 1 else np.nan
            ub = np.tanh(np.arctanh(r) + 1.959963984540054 * np.sqrt(vz)) if source == 1 else np.nan
            rows.append(
                {
                    "meta_analysis": names[j],
                    "citation": f"Synthetic meta-analysis {j + 1} ({years[j]}) [simulated]",
                    "effect": round(r, 4),
                    "se": round(se, 5) if source == 0 else np.nan,
                    "ci_lb": round(lb, 4) if source == 1 else np.nan,
                    "ci_ub": round(ub, 4) if source == 1 else np.nan,
                    "k": k,
                    "n": n,
                    "outcome_cluster": cluster,
                    "valence": "negative" if negative else "positive",
                    "school_level": level[j],
                    "year": int(years[j]),
                    "informant": informant[j],
                    "var_r": round(0.012 + k / n + rng.uniform(0, 0.01), 5),
                    "ma_k": int(k_ma[j]),
                    "ma_n": int(n_ma[j]),
                    "synthetic": True,
                }
            )
    effects = pd.DataFrame(rows)
    effects.attrs["synthetic"] = True
    studies = _studies(rng, names, years, k_ma, n_primary_pool)
    amstar = _amstar(rng, names, years)
    return SomaExample(effects=effects, studies=studies, amstar=amstar)


def _cluster_weights(clusters: list[str]) -> np.ndarray:
    weights = np.array([3.0 if c == "academic achievement" else 0.6 if c == "bullying" else 1.6 for c in clusters])
    return np.asarray(weights / weights.sum())


def _studies(
    rng: np.random.Generator, names: list[str], years: np.ndarray, k_ma: np.ndarray, pool: int
) -> pd.DataFrame:
    """Primary studies published before each meta-analysis; popular (older) studies recur."""
    study_years = np.sort(rng.integers(1960, 2023, pool))
    popularity = rng.pareto(1.5, pool) + 1.0
    rows = []
    for name, year, k in zip(names, years, k_ma, strict=True):
        eligible = np.flatnonzero(study_years < year)
        if eligible.size == 0:
            eligible = np.arange(20)
        weights = popularity[eligible] / popularity[eligible].sum()
        chosen = rng.choice(eligible, size=min(int(k), eligible.size), replace=False, p=weights)
        rows += [{"meta_analysis": name, "study": f"S{idx + 1:04d}"} for idx in np.sort(chosen)]
    return pd.DataFrame(rows)


def _amstar(rng: np.random.Generator, names: list[str], years: np.ndarray) -> pd.DataFrame:
    """Answers improve with publication year (logistic in year)."""
    rows = []
    for name, year in zip(names, years, strict=True):
        p_yes = 1 / (1 + np.exp(-(year - 2005) / 7.0))
        answers = {}
        for item in ITEMS:
            u = rng.uniform()
            answers[item] = "yes" if u < p_yes else ("partial yes" if u < p_yes + 0.15 else "no")
        rows.append({"meta_analysis": name, **answers})
    return pd.DataFrame(rows)
