"""The core keeps freed temporaries on the heap (glibc): repeated large temporaries do not fault in fresh pages."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edueffects.core import heap

# a process that imports the core, then allocates and frees a 4 MiB temporary 50 times, and prints the
# page faults of those 50 rounds
FAULTS = """
import resource
import numpy as np
import edueffects.core.nested  # noqa: F401
np.ones(1 << 19).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    np.ones(1 << 19).sum()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(env: dict[str, str]) -> int:
    out = subprocess.run([sys.executable, "-c", FAULTS], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def _clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in heap.USER_SETTINGS}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc parameters exist on Linux only")
def test_freed_temporaries_are_reused_not_faulted_in_again() -> None:
    kept = _faults(_clean_environment())
    # the user's own setting wins: glibc's default trim threshold gives the kernel back every 4 MiB block
    default = _faults({**_clean_environment(), "MALLOC_TRIM_THRESHOLD_": "131072"})
    pages = 50 * (4 << 20) // 4096
    assert kept < 0.05 * pages
    assert default > 0.5 * pages


def test_the_users_malloc_settings_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in heap.USER_SETTINGS:
        monkeypatch.setenv(name, "131072")
        assert heap.keep_freed_memory() is False
        monkeypatch.delenv(name)


def test_other_systems_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert heap.keep_freed_memory() is False
