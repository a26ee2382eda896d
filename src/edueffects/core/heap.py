"""How the process's C heap treats the large temporaries of the numerical core (glibc only).

glibc's ``malloc`` hands freed memory back to the kernel as soon as more than ``M_TRIM_THRESHOLD``
sits free at the top of a heap; its default (128 KiB, raised only after a large block is freed) is far
below the few megabytes of temporaries one fit allocates and frees. Every fit then asks the kernel for
fresh pages again and pays one page fault per 4 KiB: about 870 faults, a fifth of the time, for a
three-level fit with CR2 at k = 5,000. :func:`keep_freed_memory` sets the threshold above which blocks
are mapped on their own to 8 MiB and the trim threshold to 16 MiB, the values glibc's own adjustment
sets after one 8 MiB block is freed: freed temporaries are reused from the heap, and each malloc arena
(the main heap, and one per thread that allocates) keeps up to 16 MiB of freed memory.

It is applied once, when the core is imported. Nothing changes when the user has set any of glibc's
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TOP_PAD_`` or a ``glibc.malloc``
tunable in ``GLIBC_TUNABLES`` (which also turns it off: ``MALLOC_TRIM_THRESHOLD_=131072`` keeps glibc's
defaults), or on other C libraries and systems.
"""

from __future__ import annotations

import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 16 << 20
MMAP_THRESHOLD = 8 << 20
USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def user_sets_malloc() -> bool:
    """Whether the user has set glibc's malloc parameters (environment variables or tunables)."""
    return any(name in os.environ for name in USER_SETTINGS) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (see the module docstring); ``True`` if both were set.

    The mmap threshold goes first: a value glibc refuses leaves the allocator untouched."""
    if not sys.platform.startswith("linux") or user_sets_malloc():
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):  # not glibc
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
