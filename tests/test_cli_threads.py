"""The command line runs BLAS on one thread unless the environment names a thread count (checked in
fresh interpreters: the setting only takes effect before numpy is first imported)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edueffects.cli_support import BLAS_THREAD_VARIABLES

PROBE = (
    "import os\n{before}from edueffects.cli import main\nmain(['--version'])\n"
    "print(os.environ.get('OPENBLAS_NUM_THREADS'), os.environ.get('MKL_NUM_THREADS'))"
)


def run(env: dict[str, str], before: str = "") -> str:
    clean = {k: v for k, v in os.environ.items() if k not in BLAS_THREAD_VARIABLES} | env
    out = subprocess.run([sys.executable, "-c", PROBE.format(before=before)], env=clean, check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return out.strip().splitlines()[-1]


def test_one_blas_thread_by_default() -> None:
    assert run({}) == "1 1"


@pytest.mark.parametrize("name", BLAS_THREAD_VARIABLES)
def test_a_thread_count_in_the_environment_wins(name: str) -> None:
    expected = {"OPENBLAS_NUM_THREADS": "4 None", "MKL_NUM_THREADS": "None 4"}.get(name, "None None")
    assert run({name: "4"}) == expected


def test_no_change_once_numpy_is_loaded() -> None:
    assert run({}, before="import numpy\n") == "None None"
