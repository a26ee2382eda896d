"""The recovery command reads a student file, fits and writes its JSON without pandas, pyarrow,
matplotlib or formulaic (checked in a fresh interpreter through ``sys.modules``), and its result is the
Python API's on the same table as a DataFrame."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import edueffects as ee

HEAVY = ("pandas", "pyarrow", "matplotlib", "formulaic")


def loaded_after(code: str) -> set[str]:
    """The packages of ``HEAVY`` in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out.strip().splitlines()[-1])) & set(HEAVY)


def assert_same(ours: object, theirs: object, path: str = "") -> None:
    """Equal structures; numbers equal to 1e-12 (relative)."""
    if isinstance(ours, dict):
        assert isinstance(theirs, dict) and set(ours) == set(theirs), path
        for key in ours:
            assert_same(ours[key], theirs[key], f"{path}/{key}")
    elif isinstance(ours, list):
        assert isinstance(theirs, list) and len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(ours, float) and isinstance(theirs, float):
        assert (math.isnan(ours) and math.isnan(theirs)) or ours == pytest.approx(theirs, rel=1e-12, abs=1e-300), path
    else:
        assert ours == theirs, path


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    frame = ee.simulate.recovery(seed=11, n_schools=40, students_per_school=20.0)
    frame["school"] = "s" + frame["school"].astype(str)  # text labels, as most state files hold them
    frame["dose"] = np.where(frame["cohort"].isin([2018, 2019]), frame["ses"].round(1), 0.0)
    path = tmp_path_factory.mktemp("lean") / "state.csv"
    frame.to_csv(path, index=False)
    return path, pd.read_csv(path)


CASES = {
    "gain": (["--moderators", "ses", "nongerman"], {"moderators": ["ses", "nongerman"]}),
    "long, dose, standardised": (
        ["--moderators", "ses", "dose", "--long", "--standardize"],
        {"moderators": ["ses", "dose"], "long": True, "standardize": True},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_recovery_command_runs_without_pandas(state: tuple[Path, pd.DataFrame], tmp_path: Path, case: str) -> None:
    path, frame = state
    flags, options = CASES[case]
    out = tmp_path / "out.json"
    words = ["recovery", str(path), "--school", "school", "--cohort", "cohort", "--pandemic-cohorts", "2018", "2019",
             "--pre", "score5", "--post", "score8", *flags, "--json", str(out), "--quiet"]  # fmt: skip
    loaded = loaded_after(f"from edueffects.cli import main\nassert main({words!r}) == 0")
    assert not loaded, loaded
    written = json.loads(out.read_text(encoding="utf-8"))
    result = ee.recovery(
        frame, school="school", cohort="cohort", pandemic_cohorts=[2018, 2019], pre="score5", post="score8", **options
    )
    expected = json.loads(json.dumps(result.to_dict(), default=str))
    assert written.pop("input")["rows"] == len(frame)
    assert_same(written, expected)
