"""Benchmark of ``edueffects recovery aggregate``: N million student rows from Parquet to released cells.

The student table is SYNTHETIC, written by DuckDB (students spread evenly over ``--schools`` schools,
three cohorts, two school moderators, a dose, two scores). Figures: the whole aggregation process on
DuckDB (start, read, aggregate, checksum the input, disclosure rule, write the cells file) with its
peak memory, median of ``--runs``; the fit of the gain model from the cells file in-process (median); with ``--spark``
the same aggregation through PySpark in local mode (one run, JVM start included).
Goals (issue 12): 100 M rows on DuckDB under 60 s and 4 GB; the fit from the cells under 1 s.

Run: python benchmarks/bench_aggregate.py [--rows 5000000] [--schools 10000] [--runs 3] [--spark] [--dir TMPDIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from edueffects.recovery import read_cells, recovery

WRAPPER = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
)


def simulate(path: Path, rows: int, schools: int) -> None:
    """A synthetic student table of ``rows`` students in ``schools`` schools, written to Parquet by DuckDB."""
    con = duckdb.connect()
    unit = "(hash({x}) % 1000003) / 1000003.0"
    school = f"(i * {schools}) // {rows}"
    con.execute(
        f"""COPY (
        SELECT i AS student, {school} AS school, [2015, 2018, 2019][1 + i % 3] AS cohort,
               {unit.format(x=school)} - 0.5 AS ses, {unit.format(x=f"{school} * 7 + 1")} * 0.4 AS nongerman,
               CASE WHEN i % 3 > 0 THEN round({unit.format(x=f"{school} * 3 + 2")} * 60, 1) ELSE 0 END AS lost_days,
               {unit.format(x="i * 2")} + {unit.format(x="i * 5 + 3")} - 1.0 AS score5,
               {unit.format(x="i * 2")} + {unit.format(x="i * 5 + 3")} + {unit.format(x="i * 11 + 7")} - 1.0
                   AS score8
        FROM range({rows}) r(i)) TO '{path}' (FORMAT parquet)"""
    )
    con.close()


def median_process(cmd: list[str], runs: int) -> tuple[float, float]:
    """Median wall seconds and peak RSS (MiB) of a whole process, each run in a fresh wrapper."""
    times, peaks = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], check=True, capture_output=True, text=True)
        seconds, peak = out.stdout.split()
        times.append(float(seconds))
        peaks.append(float(peak))
    return statistics.median(times), max(peaks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5_000_000, help="students in the synthetic table")
    parser.add_argument("--schools", type=int, default=10_000, help="schools (three cohorts each)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--spark", action="store_true", help="also aggregate through PySpark in local mode")
    parser.add_argument("--dir", help="folder for the synthetic table (default: a temporary folder)")
    args = parser.parse_args()
    cli = shutil.which("edueffects")
    base = [cli] if cli else [sys.executable, "-m", "edueffects"]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        table, cells = Path(tmp) / "students.parquet", Path(tmp) / "cells.parquet"
        start = time.perf_counter()
        simulate(table, args.rows, args.schools)
        size = table.stat().st_size / 2**30
        took = time.perf_counter() - start
        print(f"synthetic student table: {args.rows:,} rows, {args.schools:,} schools, {size:.2f} GiB Parquet "
              f"(written in {took:.0f} s)")  # fmt: skip
        cmd = [*base, "recovery", "aggregate", str(table), "--out", str(cells), "--school", "school", "--cohort",
               "cohort", "--moderators", "ses", "nongerman", "lost_days", "--pre", "score5", "--post", "score8",
               "--quiet"]  # fmt: skip
        seconds, peak = median_process(cmd, args.runs)
        print(f"{'aggregate on DuckDB, whole process (median s, peak MiB)':<60} {seconds:>8.2f} {peak:>8.0f}")
        released = read_cells(cells)
        fits = []
        for _ in range(max(args.runs, 3)):
            t = time.perf_counter()
            recovery(cells=released, pandemic_cohorts=[2018, 2019], moderators=["ses", "lost_days"])
            fits.append(time.perf_counter() - t)
        n_cells = len(released.frame)
        print(f"{f'gain model + CR2 from the cells ({n_cells:,} rows), in-process (median s)':<60} "
              f"{statistics.median(fits):>8.3f}")  # fmt: skip
        if args.spark:
            seconds, peak = median_process([*cmd, "--engine", "spark"], 1)
            print(f"{'aggregate on Spark (local mode), whole process (s, peak MiB*)':<60} {seconds:>8.2f} {peak:>8.0f}")
            print("* peak of the Python process tree; the JVM's heap is Spark's (spark.driver.memory)")


if __name__ == "__main__":
    main()
