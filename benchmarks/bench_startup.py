"""Benchmark of start-up: importing the command line and the shortest whole commands.

Each figure is the median over fresh interpreters (``--runs``): the time of ``import edueffects.cli``
measured inside the process (as ``-X importtime`` would), and the wall time of whole processes
(``edueffects --version``, ``edueffects meta --help``) next to ``python -c pass``, the floor.
The heavy packages a command loads are listed (none for these).

Target: import edueffects.cli < 0.2 s.

Run: python benchmarks/bench_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("pandas", "numpy", "scipy", "matplotlib", "duckdb", "rich", "babel", "formulaic", "ibis", "pyarrow")
PROBE = (
    "import sys, time\n"
    "start = time.perf_counter()\n"
    "import edueffects.cli\n"
    "seconds = time.perf_counter() - start\n"
    f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
    "print(seconds, ','.join(heavy) or '-')\n"
)


def edueffects_command() -> list[str]:
    script = Path(sys.executable).parent / "edueffects"
    return [str(script)] if script.exists() else [sys.executable, "-m", "edueffects"]


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    imports, loaded = [], set()
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True).stdout.split()
        imports.append(float(out[0]))
        loaded.add(out[1])
    cli = edueffects_command()
    commands = {
        "python -c pass (the floor)": [sys.executable, "-c", "pass"],
        "edueffects --version": [*cli, "--version"],
        "edueffects meta --help": [*cli, "meta", "--help"],
    }
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):  # interleaved: every command under the same conditions
        for name, cmd in commands.items():
            walls[name].append(wall(cmd))
    print(f"{'figure (median seconds)':<46} {'edueffects':>10} {'target':>8}")
    seconds = statistics.median(imports)
    flag = "ok" if seconds < 0.2 else "MISSED"
    label = "import edueffects.cli (in process)"
    print(f"{label:<46} {seconds:>10.3f} {'< 0.2':>8} {flag:>6}  heavy packages loaded: {'/'.join(loaded)}")
    for name, times in walls.items():
        print(f"{name + ' (whole process)':<46} {statistics.median(times):>10.3f}")


if __name__ == "__main__":
    main()
