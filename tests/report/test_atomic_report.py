"""A report run killed (SIGKILL) at random points leaves the previous report or the new one, whole."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _snapshot(folder: Path) -> dict[str, str] | None:
    if not folder.exists():
        return None
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_killed_report_runs_never_leave_a_half_written_report(tmp_path: Path) -> None:
    for name in ("tsr_effects.csv", "tsr_studies.csv", "tsr_amstar.csv", "state.csv", "study.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "edueffects", "report", str(tmp_path / "study.toml"), "--out", str(out), "--quiet"]
    rng = random.Random(7)
    for delay in (0.2, 0.6):  # killed before the first report exists: no folder at all
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _snapshot(out) is None
    start = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True)
    duration = time.monotonic() - start
    previous = _snapshot(out)
    assert previous is not None and {"index.html", "soma.json", "recovery.json"} <= set(previous)
    assert (out / "index.html").read_text().rstrip().endswith("</html>")
    for _ in range(4):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3 * duration, 1.1 * duration))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        now = _snapshot(out)
        # the previous report, or the new one (the same files; only the day in the footer may differ)
        assert now is not None and set(now) == set(previous)
        assert (out / "index.html").read_text().rstrip().endswith("</html>")
    subprocess.run(cmd, check=True, capture_output=True)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # leftovers cleared
