"""Meta-analysis engine: ``meta()`` and its frozen result, small-study effects and publication bias,
effect sizes."""

from edueffects.meta.bias import (
    PetPeese,
    RankTest,
    RegressionTest,
    TrimFillResult,
    pet_peese,
    ranktest,
    regtest,
    trimfill,
)
from edueffects.meta.effect_sizes import escalc
from edueffects.meta.fit import meta
from edueffects.meta.result import MetaResult, Prediction, RobustResult
from edueffects.meta.selection import SelectionModelResult, selmodel

__all__ = [
    "MetaResult",
    "PetPeese",
    "Prediction",
    "RankTest",
    "RegressionTest",
    "RobustResult",
    "SelectionModelResult",
    "TrimFillResult",
    "escalc",
    "meta",
    "pet_peese",
    "ranktest",
    "regtest",
    "selmodel",
    "trimfill",
]
