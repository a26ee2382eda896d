"""Learning-recovery engine: multilevel difference-in-difference-in-difference models, fitted on student
tables or on released per-cell statistics (:func:`aggregate`, ``recovery(cells=...)``)."""

from edueffects.recovery.cells import ReleasedCells, read_cells
from edueffects.recovery.fit import recovery, recovery_by_domain
from edueffects.recovery.release import aggregate
from edueffects.recovery.result import RecoveryResult

__all__ = ["RecoveryResult", "ReleasedCells", "aggregate", "read_cells", "recovery", "recovery_by_domain"]
