"""edueffects: meta-analysis, second-order meta-analysis and learning-recovery models for education research."""

from edueffects import power, simulate
from edueffects.core.errors import InputError
from edueffects.core.results import anova
from edueffects.meta import (
    MetaResult,
    RobustResult,
    escalc,
    meta,
    pet_peese,
    ranktest,
    regtest,
    selmodel,
    trimfill,
)
from edueffects.recovery import RecoveryResult, recovery, recovery_by_domain
from edueffects.soma import SomaResult, soma

__version__ = "0.1.0"

__all__ = [
    "InputError",
    "MetaResult",
    "RecoveryResult",
    "RobustResult",
    "SomaResult",
    "__version__",
    "anova",
    "escalc",
    "meta",
    "pet_peese",
    "power",
    "ranktest",
    "recovery",
    "recovery_by_domain",
    "regtest",
    "selmodel",
    "simulate",
    "soma",
    "trimfill",
]
