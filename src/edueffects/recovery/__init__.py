"""Learning-recovery engine: multilevel difference-in-difference-in-difference models, fitted on student
tables or on released per-cell statistics (:func:`aggregate`, ``recovery(cells=...)``)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from edueffects.recovery.cells import ReleasedCells, read_cells
from edueffects.recovery.fit import recovery, recovery_by_domain
from edueffects.recovery.result import RecoveryResult

if TYPE_CHECKING:
    from edueffects.recovery.release import aggregate

__all__ = ["RecoveryResult", "ReleasedCells", "aggregate", "read_cells", "recovery", "recovery_by_domain"]


def __getattr__(name: str) -> object:
    """``aggregate`` (the release of cell statistics: ibis and its engines) is imported on first use."""
    if name != "aggregate":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = import_module("edueffects.recovery.release").aggregate
    globals()[name] = value
    return value
