"""Benchmark of meta(): three-level REML with one moderator (+ CR2), univariate REML, the intervals
of the variance components, and the whole command against metafor + clubSandwich.

In-process figures are medians of runs after a warm-up (``--runs``; fewer at k = 1,000,000);
memory is the tracemalloc peak. ``meta()`` with defaults computes no variance-component intervals
until they are read; "intervals" times reading them from a fitted result (all profile-likelihood
bounds, or the Q-profile of tau^2), also as a multiple of the fit. Whole-process figures run
``edueffects meta FILE ... --json OUT`` and ``Rscript benchmarks/metafor_timing.R`` (metafor
``rma.mv(sparse = TRUE)`` + clubSandwich CR2, read CSV, write JSON) in alternating pairs on the same
CSV; the ratio is the median of the per-pair ratios, and the estimates of both are compared. The
package's bytecode is compiled first, as ``pip install`` does (an editable install under
``PYTHONDONTWRITEBYTECODE`` would otherwise compile every module on every start).

Targets: meta() with defaults < 0.03 s at k = 5,000 and < 1.5 s at k = 1,000,000; fit + CR2 < 0.01 s
at k = 5,000; fit < 0.5 s at k = 1,000,000 (peak < 1 GB with CR2); univariate REML < 0.5 s at
k = 1,000,000; intervals <= 3 fits; whole process >= 10x faster than R at k = 2,000.

Run: python benchmarks/bench_meta.py [--quick] [--skip-r] [--runs N]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

import edueffects as ee
from edueffects.cli_support import BLAS_THREAD_VARIABLES
from edueffects.core.linalg import weighted_ls
from edueffects.meta import fit as meta_fit
from edueffects.meta.design import prepare

HERE = Path(__file__).resolve().parent


def simulate(k: int, clusters: int, seed: int = 1) -> pd.DataFrame:
    """Three-level data: sigma2 = (0.05, 0.03), one moderator with slope 0.1, v ~ U(0.01, 0.1)."""
    rng = np.random.default_rng(seed)
    cluster = np.sort(rng.integers(0, clusters, size=k))
    x = rng.normal(size=k)
    v = rng.uniform(0.01, 0.1, size=k)
    y = 0.2 + 0.1 * x + rng.normal(0, np.sqrt(0.05), clusters)[cluster] + rng.normal(0, np.sqrt(0.03 + v))
    return pd.DataFrame({"cluster": cluster, "esid": np.arange(k), "x": x, "yi": y, "vi": v})


def three_level(data: pd.DataFrame, variance_ci: bool = True) -> ee.MetaResult:
    return ee.meta(data, "yi", "vi", cluster="cluster", within="esid", mods=["x"], variance_ci=variance_ci)


def variance_estimation(data: pd.DataFrame) -> None:
    """The step of meta() that estimates the variance components (design and optimiser), alone."""
    md = prepare(data, "yi", "vi", "cluster", "esid", ["x"], [], "error")
    basis, _ = np.linalg.qr(md.x)
    fe = weighted_ls(basis, md.y, 1.0 / md.v)
    meta_fit._estimate_variance(md, basis, "REML", fe, None, None)


def median_seconds(func: Callable[[], object], runs: int) -> float:
    func()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def peak_mib(func: Callable[[], object]) -> float:
    tracemalloc.start()
    func()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def row(label: str, seconds: float, target: str = "", ok: bool | None = None, extra: str = "") -> None:
    flag = "" if ok is None else ("ok" if ok else "MISSED")
    print(f"{label:<62} {seconds:>10.4f} {target:>10} {flag:>6} {extra}")


def in_process(k: int, clusters: int, runs: int, large: bool) -> None:
    data = simulate(k, clusters)
    fitted = three_level(data)
    profiles = fitted.variance_profiles
    assert profiles.design is not None
    fit_s = median_seconds(lambda: three_level(data, variance_ci=False), runs)
    defaults_s = median_seconds(lambda: three_level(data), runs)
    cr2_s = median_seconds(lambda: three_level(data, variance_ci=False).robust("cluster"), runs)
    lean = three_level(data, variance_ci=False)
    robust_s = median_seconds(lambda: lean.robust("cluster"), runs)
    intervals_s = median_seconds(profiles.intervals, runs)
    estimation_s = median_seconds(lambda: variance_estimation(data), runs)
    label = f"k = {k:,} ({clusters:,} clusters)"
    goal = 1.5 if large else 0.03
    row(f"meta() with defaults, {label}", defaults_s, f"< {goal:g}", defaults_s < goal)
    row(f"fit (meta(), no intervals), {label}", fit_s, "< 0.5" if large else "", fit_s < 0.5 if large else None)
    if large:
        mem = peak_mib(lambda: three_level(data, variance_ci=False).robust("cluster"))
        row(f"fit + CR2, {label}", cr2_s, "< 2", cr2_s < 2.0, f"peak {mem:.0f} MiB (< 1024)")
    else:
        row(f"fit + CR2, {label}", cr2_s, "< 0.01", cr2_s < 0.01)
    row(f"CR2 alone (robust() of a fitted result), {label}", robust_s)
    row(
        f"intervals: all profile bounds, {label}",
        intervals_s,
        "<= 3 fits",
        intervals_s <= 3.0 * fit_s,
        f"= {intervals_s / fit_s:.2f} x meta() fit, {intervals_s / estimation_s:.2f} x its variance estimation",
    )


def univariate(k: int, runs: int) -> None:
    data = simulate(k, 1)
    fitted = ee.meta(data, "yi", "vi", method="REML")
    fit_s = median_seconds(lambda: ee.meta(data, "yi", "vi", method="REML", variance_ci=False), runs)
    intervals_s = median_seconds(fitted.variance_profiles.intervals, runs)
    row(f"univariate REML fit, k = {k:,}", fit_s, "< 0.5", fit_s < 0.5)
    row(
        f"intervals: Q-profile of tau^2, k = {k:,}",
        intervals_s,
        "<= 3 fits",
        intervals_s <= 3.0 * fit_s,
        f"= {intervals_s / fit_s:.2f} x the fit",
    )


def edueffects_command() -> list[str]:
    script = Path(sys.executable).parent / "edueffects"
    return [str(script)] if script.exists() else [sys.executable, "-m", "edueffects"]


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def compile_package() -> None:
    """Compile the package's bytecode once (what ``pip install`` does), so that no run pays for it."""
    compileall.compile_dir(Path(ee.__file__).resolve().parent, quiet=1)


def whole_process(k: int, clusters: int, runs: int, rscript: str | None, tmp: Path) -> None:
    csv = tmp / f"meta{k}.csv"
    simulate(k, clusters).to_csv(csv, index=False)
    ours_json, theirs_json = tmp / f"ours{k}.json", tmp / f"theirs{k}.json"
    flags = ["--cluster", "cluster", "--within", "esid", "--mods", "x", "--robust", "cluster", "--quiet"]
    ours = [*edueffects_command(), "meta", str(csv), "--yi", "yi", "--vi", "vi", *flags, "--json", str(ours_json)]
    lean = [*ours, "--no-variance-ci"]
    theirs = [rscript, str(HERE / "metafor_timing.R"), str(csv), str(theirs_json)] if rscript else None
    wall(lean)  # warm the file cache
    times: dict[str, list[float]] = {"lean": [], "ours": [], "theirs": []}
    for i in range(runs):  # alternating pairs: both tools under the same conditions
        order = ["lean", "ours", "theirs"] if i % 2 == 0 else ["theirs", "ours", "lean"]
        for name in order:
            cmd = {"lean": lean, "ours": ours, "theirs": theirs}[name]
            if cmd is not None:
                times[name].append(wall(cmd))
    lean_s, ours_s = statistics.median(times["lean"]), statistics.median(times["ours"])
    label = f"whole process, k = {k:,}"
    if theirs is None:
        row(f"{label}: edueffects meta --no-variance-ci", lean_s)
        row(f"{label}: edueffects meta (profile CIs of both sigma2)", ours_s)
        return
    theirs_s = statistics.median(times["theirs"])
    ratio = statistics.median(t / o for t, o in zip(times["theirs"], times["lean"], strict=True))
    target = ">= 10x" if k == 2_000 else ""
    row(f"{label}: edueffects meta --no-variance-ci", lean_s, target, ratio >= 10.0 if target else None,
        f"metafor + clubSandwich {theirs_s:.2f} s: {ratio:.1f}x faster")  # fmt: skip
    ratio_ci = statistics.median(t / o for t, o in zip(times["theirs"], times["ours"], strict=True))
    row(f"{label}: edueffects meta (profile CIs of both sigma2)", ours_s, "", None, f"{ratio_ci:.1f}x faster than R")
    a, b = json.loads(ours_json.read_text()), json.loads(theirs_json.read_text())
    beta = max(abs(c["estimate"] - r) / abs(r) for c, r in zip(a["coefficients"], b["beta"], strict=True))
    sigma2 = max(abs(s - r) / r for s, r in zip(a["sigma2"], b["sigma2"], strict=True))
    se = max(abs(c["se"] - r) / r for c, r in zip(a["robust"]["coefficients"], b["se_cr2"], strict=True))
    print(f"{'':<62} largest relative difference to R: beta {beta:.1e}, sigma2 {sigma2:.1e}, CR2 se {se:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="k = 5,000 and the whole process at k = 2,000 only")
    parser.add_argument("--skip-r", action="store_true", help="do not run the reference tool (Rscript)")
    parser.add_argument("--runs", type=int, default=21, help="runs per in-process figure at k = 5,000")
    args = parser.parse_args()
    rscript = None if args.skip_r else shutil.which("Rscript")
    print(f"{'figure (median seconds)':<62} {'edueffects':>10} {'target':>10}")
    in_process(5_000, 1_000, args.runs, large=False)
    if not args.quick:
        in_process(1_000_000, 200_000, 5, large=True)
        univariate(1_000_000, 5)
    compile_package()
    with tempfile.TemporaryDirectory() as tmp:
        whole_process(2_000, 400, 5, rscript, Path(tmp))
        if not args.quick:
            whole_process(5_000, 1_000, 3, rscript, Path(tmp))


if __name__ == "__main__":
    if not any(os.environ.get(name) for name in BLAS_THREAD_VARIABLES):
        # in-process figures with one BLAS thread, as the command line runs (set before numpy loads)
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    main()
