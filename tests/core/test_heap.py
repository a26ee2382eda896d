"""The core keeps freed temporaries on the heap (glibc): repeated large temporaries do not fault in fresh pages."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edueffects.core import heap

# a process that imports the core (with or without its priming of glibc's thresholds), then allocates and frees
# three 1 MiB temporaries 50 times, and prints the page faults of those 50 rounds: with glibc's own adjustment
# alone the threshold stops at the size of the freed blocks, so blocks of that size are still mapped afresh
FAULTS = """
import resource
import numpy as np
import edueffects.core.heap as heap
if not {primed}:
    heap.keep_freed_memory = lambda: False
import edueffects.core.nested  # noqa: F401
def temporaries():
    a = np.ones(1 << 17); b = a * 2.0; c = a + b
    return float(c.sum())
temporaries()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    temporaries()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in (*heap.USER_SETTINGS, "GLIBC_TUNABLES")}


def _faults(primed: bool, env: dict[str, str] | None = None) -> int:
    out = subprocess.run(
        [sys.executable, "-c", FAULTS.format(primed=primed)],
        env=_clean_environment() if env is None else env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc parameters exist on Linux only")
def test_freed_temporaries_are_reused_not_faulted_in_again() -> None:
    pages = 50 * 3 * (1 << 20) // 4096
    assert _faults(primed=True) < 0.05 * pages
    assert _faults(primed=False) > 0.5 * pages
    # the user's own setting wins: the priming is skipped and glibc keeps the thresholds it was given
    assert _faults(primed=True, env={**_clean_environment(), "MALLOC_TRIM_THRESHOLD_": "131072"}) > 0.5 * pages


def test_the_users_malloc_settings_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in heap.USER_SETTINGS:
        monkeypatch.setenv(name, "131072")
        assert heap.keep_freed_memory() is False
        monkeypatch.delenv(name)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.elision.enable=1:glibc.malloc.mmap_threshold=65536")
    assert heap.keep_freed_memory() is False
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.elision.enable=1")
    assert not heap.user_sets_malloc()


def test_other_systems_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert heap.keep_freed_memory() is False
