"""Learning-recovery engine: multilevel difference-in-difference-in-difference models."""

from edueffects.recovery.fit import recovery
from edueffects.recovery.result import RecoveryResult

__all__ = ["RecoveryResult", "recovery"]
