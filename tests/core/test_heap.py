"""The core keeps freed temporaries on the heap (glibc): repeated large temporaries do not fault in fresh pages."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edueffects.core import heap

# a process that imports the core, then allocates and frees a 4 MiB temporary 50 times, and prints the
# page faults of those 50 rounds (4 MiB: below the 8 MiB mmap threshold, so from the heap)
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
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.elision.enable=1:glibc.malloc.mmap_threshold=65536")
    assert heap.keep_freed_memory() is False
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.elision.enable=1")
    assert not heap.user_sets_malloc()


def _retained_after_threads(env: dict[str, str]) -> int:
    """Resident kB after 8 threads allocated and freed 20 MB temporaries (blocks above the mmap threshold)."""
    script = """
import threading
import numpy as np
import edueffects.core.nested  # noqa: F401
def work():
    for _ in range(5):
        a = np.ones(2_500_000); b = a * 2; del a, b
threads = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS")))
"""
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc parameters exist on Linux only")
def test_blocks_above_the_mmap_threshold_are_still_given_back() -> None:
    kept = _retained_after_threads(_clean_environment())
    default = _retained_after_threads({**_clean_environment(), "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"})
    assert kept < default + 32 * 1024  # kB: not 8 threads x 20 MB kept


def test_other_systems_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert heap.keep_freed_memory() is False
