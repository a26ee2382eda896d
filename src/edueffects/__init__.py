"""edueffects: meta-analysis, second-order meta-analysis and learning-recovery models for education research.

The public names are imported on first use (module ``__getattr__``): ``import edueffects`` and the
command line's start-up stay light, and ``edueffects.meta(...)`` loads only the meta-analysis engine.
``edueffects.meta``, ``edueffects.soma`` and ``edueffects.recovery`` are the functions of the same
name (their subpackages are ``edueffects.meta.fit`` etc. in ``sys.modules``), as before.
"""

from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edueffects import power, simulate
    from edueffects.core.errors import InputError
    from edueffects.core.results import anova
    from edueffects.meta import (
        MetaResult,
        RobustResult,
        cooks_distance,
        cumul,
        dfbetas,
        escalc,
        hatvalues,
        influence,
        leave1out,
        meta,
        pet_peese,
        ranktest,
        regtest,
        rho_sensitivity,
        rstudent,
        selmodel,
        trimfill,
    )
    from edueffects.recovery import RecoveryResult, recovery, recovery_by_domain
    from edueffects.soma import SomaResult, soma

__version__ = "0.1.0"

_SOURCES = {
    "InputError": "edueffects.core.errors",
    "anova": "edueffects.core.results",
    "MetaResult": "edueffects.meta",
    "RobustResult": "edueffects.meta",
    "cooks_distance": "edueffects.meta",
    "cumul": "edueffects.meta",
    "dfbetas": "edueffects.meta",
    "escalc": "edueffects.meta",
    "hatvalues": "edueffects.meta",
    "influence": "edueffects.meta",
    "leave1out": "edueffects.meta",
    "meta": "edueffects.meta",
    "rho_sensitivity": "edueffects.meta",
    "rstudent": "edueffects.meta",
    "pet_peese": "edueffects.meta",
    "ranktest": "edueffects.meta",
    "regtest": "edueffects.meta",
    "selmodel": "edueffects.meta",
    "trimfill": "edueffects.meta",
    "RecoveryResult": "edueffects.recovery",
    "recovery": "edueffects.recovery",
    "recovery_by_domain": "edueffects.recovery",
    "SomaResult": "edueffects.soma",
    "soma": "edueffects.soma",
}
"""Public name -> the module that defines it."""
_SUBPACKAGES = ("power", "simulate")
"""Public names that are subpackages themselves."""

__all__ = [
    "InputError",
    "MetaResult",
    "RecoveryResult",
    "RobustResult",
    "SomaResult",
    "__version__",
    "anova",
    "cooks_distance",
    "cumul",
    "dfbetas",
    "escalc",
    "hatvalues",
    "influence",
    "leave1out",
    "meta",
    "pet_peese",
    "power",
    "ranktest",
    "recovery",
    "recovery_by_domain",
    "regtest",
    "rho_sensitivity",
    "rstudent",
    "selmodel",
    "simulate",
    "soma",
    "trimfill",
]


def __getattr__(name: str) -> object:
    """Import a public name on first use."""
    if name in _SUBPACKAGES:
        return import_module(f"{__name__}.{name}")
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(source), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})


class _Package(ModuleType):
    """The package module: importing the subpackage ``edueffects.meta`` (or ``soma``, ``recovery``)
    binds it as an attribute of the package; the public name stays the function of that name."""

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, ModuleType) and _SOURCES.get(name) == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
