"""Learning-recovery engine: multilevel difference-in-difference-in-difference models."""

from edueffects.recovery.fit import recovery, recovery_by_domain
from edueffects.recovery.result import RecoveryResult

__all__ = ["RecoveryResult", "recovery", "recovery_by_domain"]
