"""Benchmark of leave-one-cluster-out for a three-level model: k = 5,000 effects in 1,000 clusters.

Simulated data (5 effects per cluster; sigma2 = 0.05 between clusters, 0.03 within, v ~ U(0.01, 0.1)),
fitted by ``meta(..., cluster=, within=)`` (REML). Figures are medians over ``--runs``: the full fit, and
``leave1out(res, cluster=)`` and ``cooks_distance(res, cluster=)`` (1,000 refits each, warm-started from
the full fit).

Target: all cluster-deletion diagnostics < 2 s.

Run: python benchmarks/bench_influence.py [--runs N] [--clusters C] [--per-cluster M]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

import edueffects
from edueffects.meta import MetaResult, cooks_distance, leave1out


def simulate(clusters: int, per_cluster: int, seed: int = 20261127) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    k = clusters * per_cluster
    cluster = np.repeat(np.arange(clusters), per_cluster)
    v = rng.uniform(0.01, 0.1, k)
    y = (
        0.3
        + rng.normal(0, np.sqrt(0.05), clusters)[cluster]
        + rng.normal(0, np.sqrt(0.03), k)
        + rng.normal(0, np.sqrt(v))
    )
    return pd.DataFrame({"cluster": cluster, "esid": np.arange(k), "yi": y, "vi": v})


def median_seconds(task: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        task()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--per-cluster", type=int, default=5)
    args = parser.parse_args()
    data = simulate(args.clusters, args.per_cluster)

    def fit() -> MetaResult:
        return edueffects.meta(data, "yi", "vi", cluster="cluster", within="esid", variance_ci=False)

    res = fit()
    print(f"k = {res.k:,} in {args.clusters:,} clusters, median of {args.runs} run(s)")
    print(f"full fit:                         {median_seconds(fit, args.runs):8.3f} s")
    loo = median_seconds(lambda: leave1out(res, cluster="cluster"), args.runs)
    cook = median_seconds(lambda: cooks_distance(res, cluster="cluster"), args.runs)
    print(f"leave1out(cluster=):              {loo:8.3f} s")
    print(f"cooks_distance(cluster=):         {cook:8.3f} s")
    print("target: all cluster-deletion diagnostics < 2 s")


if __name__ == "__main__":
    main()
