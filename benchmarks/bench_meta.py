"""Benchmark of meta(): three-level REML with one moderator + CR2, and univariate REML.

Targets: k = 5,000 in 1,000 clusters < 30 ms; k = 1,000,000 (200,000 clusters) < 2 s with peak
memory < 1 GB; univariate REML at k = 1,000,000 < 0.5 s. Times are medians of in-process runs
(variance-component CIs off: they are separate profile fits); memory is the tracemalloc peak.

Run: python benchmarks/bench_meta.py [--quick]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pandas as pd

import edueffects as ee


def simulate(k: int, clusters: int, seed: int = 1) -> pd.DataFrame:
    """Three-level data: sigma2 = (0.05, 0.03), one moderator with slope 0.1, v ~ U(0.01, 0.1)."""
    rng = np.random.default_rng(seed)
    cluster = np.sort(rng.integers(0, clusters, size=k))
    x = rng.normal(size=k)
    v = rng.uniform(0.01, 0.1, size=k)
    y = 0.2 + 0.1 * x + rng.normal(0, np.sqrt(0.05), clusters)[cluster] + rng.normal(0, np.sqrt(0.03 + v))
    return pd.DataFrame({"cluster": cluster, "esid": np.arange(k), "x": x, "yi": y, "vi": v})


def three_level(data: pd.DataFrame) -> None:
    res = ee.meta(data, "yi", "vi", cluster="cluster", within="esid", mods=["x"], variance_ci=False)
    res.robust("cluster")


def univariate(data: pd.DataFrame) -> None:
    ee.meta(data, "yi", "vi", method="REML", variance_ci=False)


def median_seconds(func: Callable[[], None], runs: int) -> tuple[float, float, float]:
    func()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), float(np.min(times)), float(np.max(times))


def peak_mib(func: Callable[[], None]) -> float:
    tracemalloc.start()
    func()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small runs only")
    args = parser.parse_args()
    cases: list[tuple[str, Callable[[pd.DataFrame], None], int, int, int, float, float | None]] = [
        ("three-level REML + moderator + CR2", three_level, 5_000, 1_000, 21, 0.030, None),
    ]
    if not args.quick:
        cases += [
            ("three-level REML + moderator + CR2", three_level, 1_000_000, 200_000, 5, 2.0, 1024.0),
            ("univariate REML", univariate, 1_000_000, 1, 5, 0.5, None),
        ]
    print(f"{'case':<38} {'k':>9} {'median s':>9} {'min':>8} {'max':>8} {'target s':>9} {'peak MiB':>9}")
    for name, func, k, clusters, runs, target, mem_target in cases:
        data = simulate(k, clusters)
        med, lo, hi = median_seconds(lambda f=func, d=data: f(d), runs)  # type: ignore[misc]
        mem = peak_mib(lambda f=func, d=data: f(d)) if mem_target else float("nan")  # type: ignore[misc]
        flag = "ok" if med < target and (mem_target is None or mem < mem_target) else "MISSED"
        print(f"{name:<38} {k:>9,} {med:>9.3f} {lo:>8.3f} {hi:>8.3f} {target:>9.3f} {mem:>9.0f}  {flag}")


if __name__ == "__main__":
    main()
