"""Meta-analysis engine: ``meta()`` and its frozen result, influence diagnostics, small-study effects
and publication bias, effect sizes.

The names below are imported on first use: ``meta()`` loads neither the bias tests nor the
selection models nor the effect-size rules.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
    from edueffects.meta.dependence import RhoSensitivity, rho_sensitivity
    from edueffects.meta.effect_sizes import escalc
    from edueffects.meta.fit import meta
    from edueffects.meta.influence import (
        CumulativeResult,
        InfluenceResult,
        LeaveOneOut,
        StudentizedResiduals,
        cooks_distance,
        cumul,
        dfbetas,
        hatvalues,
        influence,
        leave1out,
        rstudent,
    )
    from edueffects.meta.result import MetaResult, Prediction, RobustResult
    from edueffects.meta.selection import SelectionModelResult, selmodel

_SOURCES = {
    "PetPeese": "bias",
    "RankTest": "bias",
    "RegressionTest": "bias",
    "TrimFillResult": "bias",
    "pet_peese": "bias",
    "ranktest": "bias",
    "regtest": "bias",
    "trimfill": "bias",
    "RhoSensitivity": "dependence",
    "rho_sensitivity": "dependence",
    "escalc": "effect_sizes",
    "meta": "fit",
    "CumulativeResult": "influence",
    "InfluenceResult": "influence",
    "LeaveOneOut": "influence",
    "StudentizedResiduals": "influence",
    "cooks_distance": "influence",
    "cumul": "influence",
    "dfbetas": "influence",
    "rstudent": "influence",
    "hatvalues": "influence",
    "influence": "influence",
    "leave1out": "influence",
    "MetaResult": "result",
    "Prediction": "result",
    "RobustResult": "result",
    "SelectionModelResult": "selection",
    "selmodel": "selection",
}

__all__ = [
    "CumulativeResult",
    "InfluenceResult",
    "LeaveOneOut",
    "MetaResult",
    "PetPeese",
    "Prediction",
    "RankTest",
    "RegressionTest",
    "RhoSensitivity",
    "RobustResult",
    "SelectionModelResult",
    "StudentizedResiduals",
    "TrimFillResult",
    "cooks_distance",
    "cumul",
    "dfbetas",
    "escalc",
    "hatvalues",
    "influence",
    "leave1out",
    "meta",
    "pet_peese",
    "ranktest",
    "regtest",
    "rho_sensitivity",
    "rstudent",
    "selmodel",
    "trimfill",
]


def __getattr__(name: str) -> object:
    """Import a public name on first use."""
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = import_module(f"{__name__}.{source}")
    # every name of the module at once: importing ``influence.py`` binds the submodule as the package's
    # ``influence``, which the function of that name must replace
    globals().update({n: getattr(module, n) for n, s in _SOURCES.items() if s == source})
    return globals()[name]


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})
