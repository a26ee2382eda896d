"""How the process's C heap treats the large temporaries of the numerical core (glibc only).

glibc's ``malloc`` hands freed memory back to the kernel as soon as more than its trim threshold sits free
at the top of a heap, and serves every block above its mmap threshold with fresh pages of its own. Both
start at 128 KiB and rise only once a large mapped block has been freed: then the mmap
threshold becomes that block's size and the trim threshold twice it. Until then, the few megabytes of
temporaries a fit allocates and frees are faulted in afresh on every call, one page fault per 4 KiB:
about 870 faults, a fifth of the time, for a three-level fit with CR2 at k = 5,000.

:func:`keep_freed_memory` frees one 16 MiB block (allocated and never touched), so that glibc's own
adjustment sets the thresholds to 16 and 32 MiB at once, as it would after the first 16 MiB array of a
session: freed temporaries are reused from the heap, each malloc arena keeps up to 32 MiB of freed memory
for its next allocations, and the thresholds go on adjusting as glibc's do.

It is applied once, when the core is imported. Nothing is done when the user has set any of glibc's
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TOP_PAD_`` or a ``glibc.malloc``
tunable in ``GLIBC_TUNABLES`` (which also turns it off: ``MALLOC_TRIM_THRESHOLD_=131072`` keeps glibc's
first thresholds for good), or on other systems.
"""

from __future__ import annotations

import os
import sys

PRIMING_BLOCK = 16 << 20
"""Bytes of the freed block that sets glibc's thresholds (below its 32 MiB limit of the adjustment)."""
USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def user_sets_malloc() -> bool:
    """Whether the user has set glibc's malloc parameters (environment variables or tunables)."""
    return any(name in os.environ for name in USER_SETTINGS) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")


def keep_freed_memory() -> bool:
    """Free one :data:`PRIMING_BLOCK` through the C library (see the module docstring); ``True`` if done."""
    if not sys.platform.startswith("linux") or user_sets_malloc():
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        malloc, free = libc.malloc, libc.free
    except (AttributeError, OSError):
        return False
    malloc.argtypes, malloc.restype = (ctypes.c_size_t,), ctypes.c_void_p
    free.argtypes, free.restype = (ctypes.c_void_p,), None
    block = malloc(PRIMING_BLOCK)
    if not block:
        return False
    free(block)
    return True
