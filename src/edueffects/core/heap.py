"""How the process's C heap treats the large temporaries of the numerical core (glibc only).

glibc's ``malloc`` hands freed memory back to the kernel as soon as more than ``M_TRIM_THRESHOLD``
sits free at the top of the heap; its default (128 KiB, raised only after a large block is freed)
is far below the few megabytes of temporaries one fit allocates and frees. Every fit then asks the
kernel for fresh pages again and pays one page fault per 4 KiB: about 870 faults, a fifth of the
time, for a three-level fit with CR2 at k = 5,000. :func:`keep_freed_memory` raises the trim
threshold to 64 MiB and fixes the threshold above which blocks are mapped on their own at 32 MiB
(the largest value glibc's own adjustment reaches), so freed temporaries are reused from the heap:
the process keeps up to 64 MiB of freed memory for its next allocations.

It is applied once, when the core is imported. Nothing changes when the user has set any of
glibc's ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TOP_PAD_`` (which also
turns it off: ``MALLOC_TRIM_THRESHOLD_=131072`` keeps glibc's defaults), or on other C libraries
and systems.
"""

from __future__ import annotations

import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 64 << 20
MMAP_THRESHOLD = 32 << 20
USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_memory() -> bool:
    """Set glibc's trim and mmap thresholds (see the module docstring); ``True`` if both were set."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USER_SETTINGS):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):  # not glibc
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
