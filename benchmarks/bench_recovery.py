"""Benchmark of recovery() against lme4 on the same simulated state (215,000 students).

In-process: data in memory -> result with model-based and CR2 inference (median of runs), against
``lmer`` alone measured by R's ``system.time`` in the same run (``benchmarks/lmer_timing.R``).
Whole process: ``edueffects recovery FILE --json OUT`` against ``Rscript`` (start, read.csv, lmer),
in alternating pairs; the ratio is the median of the per-pair ratios. The package's bytecode is
compiled first, as ``pip install`` does.
Large: 10 million students from a Parquet file, whole process, peak memory from the OS.
Import floor: a Python process that only imports numpy, scipy.sparse, scipy.special, pandas and duckdb,
paired with the R gain model the same way: the ratio no whole process importing these can exceed on
this machine; and the same without pandas, which the recovery command no longer imports.
Targets: in-process >= 30x faster than lmer; whole process >= 10x; 10M < 60 s and < 2 GB.

Run: python benchmarks/bench_recovery.py [--skip-r] [--skip-large] [--runs N] [--models gain long]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import edueffects as ee
from bench_meta import compile_package  # the scripts run from benchmarks/
from edueffects.cli_support import BLAS_THREAD_VARIABLES

HERE = Path(__file__).resolve().parent
MODS = ["ses", "nongerman"]
IMPORTS = "import numpy, scipy.sparse, scipy.special, pandas, duckdb"
LEAN_IMPORTS = "import numpy, scipy.sparse, scipy.special, duckdb"  # what the command imports (no pandas)


def fit(data: object, model: str) -> None:
    kwargs: dict[str, object] = {"pre": "score5", "post": "score8", "long": model == "long"}
    ee.recovery(data, school="school", cohort="cohort", pandemic_cohorts=[2018, 2019], moderators=MODS, **kwargs)  # type: ignore[arg-type]


def median_in_process(data: object, model: str, runs: int) -> float:
    fit(data, model)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fit(data, model)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


WRAPPER = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
)


def median_process(cmd: list[str], runs: int) -> tuple[float, float]:
    """Median wall seconds and peak RSS (MiB) of a whole process, each run in a fresh wrapper."""
    times, peaks = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], check=True, capture_output=True, text=True)
        seconds, peak = out.stdout.split()
        times.append(float(seconds))
        peaks.append(float(peak))
    return statistics.median(times), max(peaks)


def command(cli: str, path: Path) -> list[str]:
    cohorts = ["--school", "school", "--cohort", "cohort", "--pandemic-cohorts", "2018", "2019"]
    return [cli, "recovery", str(path), *cohorts, "--moderators", *MODS]


def paired_processes(ours: list[str], theirs: list[str] | None, runs: int) -> tuple[float, float, float]:
    """Median wall seconds of both commands run in alternating pairs (same conditions for both), and
    the median of the per-pair ratios (NaN without a reference)."""
    mine: list[float] = []
    other: list[float] = []
    for i in range(runs):
        pair = [(ours, mine), (theirs, other)] if i % 2 == 0 else [(theirs, other), (ours, mine)]
        for cmd, times in pair:
            if cmd is not None:
                times.append(median_process(cmd, 1)[0])
    if not other:
        return statistics.median(mine), float("nan"), float("nan")
    ratio = statistics.median(t / o for t, o in zip(other, mine, strict=True))
    return statistics.median(mine), statistics.median(other), ratio


def row(label: str, ours: float, theirs: float, ratio: float | None = None) -> None:
    ratio = theirs / ours if ratio is None else ratio
    print(f"{label:<52} {ours:>11.3f} {theirs:>9.2f} {ratio:>6.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-r", action="store_true")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--models", nargs="+", choices=["gain", "long"], default=["gain", "long"])
    args = parser.parse_args()
    rscript = None if args.skip_r else shutil.which("Rscript")
    script = Path(sys.executable).parent / "edueffects"
    cli = str(script) if script.exists() else shutil.which("edueffects") or "edueffects"
    compile_package()
    with tempfile.TemporaryDirectory() as tmp:
        state = ee.simulate.recovery(seed=7, students_per_school=65.0)
        csv = Path(tmp) / "state.csv"
        state.to_csv(csv, index=False)
        print(f"simulated state: {len(state):,} students, {state.school.nunique():,} schools (synthetic)")
        print(f"{'figure':<52} {'edueffects':>11} {'lme4':>9} {'ratio':>7}")
        for model in args.models:
            ours = median_in_process(state, model, args.runs)
            theirs = float("nan")
            if rscript:
                out = subprocess.run(
                    [rscript, str(HERE / "lmer_timing.R"), str(csv), model, "3"],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                theirs = float(out.stdout.split()[-1])
            row(f"in-process fit + CR2, {model} model (median s)", ours, theirs)
        for model in args.models:
            flags = ["--pre", "score5", "--post", "score8"] + (["--long"] if model == "long" else [])
            cmd = [*command(cli, csv), *flags, "--json", str(Path(tmp) / "out.json"), "--quiet"]
            reference = [rscript, str(HERE / "lmer_timing.R"), str(csv), model, "once"] if rscript else None
            ours_p, theirs_p, ratio = paired_processes(cmd, reference, args.runs)
            row(f"whole process (read CSV, fit, write), {model} (median s)", ours_p, theirs_p, ratio)
            if model == "gain":
                floor, theirs_f, ratio_f = paired_processes([sys.executable, "-c", IMPORTS], reference, args.runs)
                row("import floor: numpy, scipy, pandas, duckdb (median s)", floor, theirs_f, ratio_f)
                lean, theirs_l, ratio_l = paired_processes([sys.executable, "-c", LEAN_IMPORTS], reference, args.runs)
                row("import floor without pandas (median s)", lean, theirs_l, ratio_l)
        if not args.skip_large:
            big = Path(tmp) / "state10m.parquet"
            large = ee.simulate.recovery(seed=8, n_schools=51_300, students_per_school=65.0)
            large.to_parquet(big, index=False)
            n = len(large)
            del large
            cmd = [*command(cli, big), "--pre", "score5", "--post", "score8", "--json", str(Path(tmp) / "big.json")]
            seconds, peak = median_process(cmd, 1)
            print(
                f"{f'{n / 1e6:.1f} M students from Parquet, gain model: s, peak MiB':<52} {seconds:>11.2f} {peak:>9.0f}"
            )


if __name__ == "__main__":
    if not any(os.environ.get(name) for name in BLAS_THREAD_VARIABLES):
        # in-process figures with one BLAS thread, as the command line runs (set before numpy loads)
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    main()
