"""Benchmark of leave-one-cluster-out for a three-level model: k = 5,000 effects in 1,000 clusters.

Simulated data (5 effects per cluster; sigma2 = 0.05 between clusters, 0.03 within, v ~ U(0.01, 0.1)),
fitted by ``meta(..., cluster=, within=)`` (REML). Figures are medians over ``--runs``: the full fit, and
all cluster-deletion diagnostics of a fresh fit (``leave1out``, ``cooks_distance``, ``dfbetas`` and
``rstudent`` with ``cluster=``), which share one set of 1,000 deleted fits (batched Newton,
``core.deletion``); the first diagnostic pays for the refits. With ``--r-clusters C`` (R and metafor
installed), metafor's ``cooks.distance(res, cluster=)`` at C clusters is timed beside ours for a ratio.

Target: all cluster-deletion diagnostics < 2 s.

Run: python benchmarks/bench_influence.py [--runs N] [--clusters C] [--per-cluster M] [--r-clusters C]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

import edueffects
from edueffects.meta import MetaResult, cooks_distance, leave1out
from edueffects.meta.influence import dfbetas, rstudent


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


R_TIMING = """
suppressPackageStartupMessages(library(metafor))
d <- read.csv(commandArgs(TRUE)[1])
res <- rma.mv(yi, vi, random = ~ 1 | cluster/esid, data = d)
cat(system.time(cooks.distance(res, cluster = d$cluster))[["elapsed"]])
"""


def metafor_seconds(data: pd.DataFrame) -> float | None:
    """metafor's cooks.distance(res, cluster=) on ``data`` (one set of refits), or None without R."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.csv")
        data.to_csv(path, index=False)
        script = os.path.join(tmp, "time.R")
        with open(script, "w") as f:
            f.write(R_TIMING)
        try:
            out = subprocess.run(["Rscript", script, path], capture_output=True, text=True, check=True, timeout=600)
        except (OSError, subprocess.SubprocessError):
            return None
    return float(out.stdout.strip())


def diagnostics_seconds(data: pd.DataFrame, runs: int) -> tuple[float, float]:
    """Median seconds of the full fit and of all cluster-deletion diagnostics of a fresh fit."""

    def fit() -> MetaResult:
        return edueffects.meta(data, "yi", "vi", cluster="cluster", within="esid", variance_ci=False)

    fit_time = median_seconds(fit, runs)
    times = []
    for _ in range(runs):
        res = fit()
        start = time.perf_counter()
        leave1out(res, cluster="cluster")
        cooks_distance(res, cluster="cluster")
        dfbetas(res, cluster="cluster")
        rstudent(res, cluster="cluster")
        times.append(time.perf_counter() - start)
    return fit_time, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--per-cluster", type=int, default=5)
    parser.add_argument("--r-clusters", type=int, default=0, help="time metafor at this many clusters (0: skip)")
    args = parser.parse_args()
    data = simulate(args.clusters, args.per_cluster)
    fit_time, total = diagnostics_seconds(data, args.runs)
    print(f"k = {len(data):,} in {args.clusters:,} clusters, median of {args.runs} run(s)")
    print(f"full fit:                                   {fit_time:8.3f} s")
    print(f"leave1out + cooks + dfbetas + rstudent:     {total:8.3f} s  (one shared set of refits)")
    print("target: all cluster-deletion diagnostics < 2 s")
    if args.r_clusters:
        small = simulate(args.r_clusters, args.per_cluster)
        _, ours = diagnostics_seconds(small, args.runs)
        theirs = metafor_seconds(small)
        print(f"at {args.r_clusters:,} clusters: ours (all four) {ours:.3f} s", end="")
        if theirs is None:
            print(", metafor not available")
        else:
            print(f", metafor cooks.distance alone {theirs:.3f} s (ratio {theirs / ours:.0f}x)")


if __name__ == "__main__":
    main()
