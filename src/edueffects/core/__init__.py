"""The numerical core shared by every engine: nested random-intercept likelihood, CR2, profiles.

The names below are imported on first use, so that light modules of the core (``errors``) load
without the numerical ones.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edueffects.core.errors import InputError
    from edueffects.core.nested import Convergence, Evaluation, NestedDesign, design_from_rows, evaluate, maximize
    from edueffects.core.robust import RobustCovariance, cr2

_SOURCES = {
    "InputError": "edueffects.core.errors",
    "Convergence": "edueffects.core.nested",
    "Evaluation": "edueffects.core.nested",
    "NestedDesign": "edueffects.core.nested",
    "design_from_rows": "edueffects.core.nested",
    "evaluate": "edueffects.core.nested",
    "maximize": "edueffects.core.nested",
    "RobustCovariance": "edueffects.core.robust",
    "cr2": "edueffects.core.robust",
}

__all__ = [
    "Convergence",
    "Evaluation",
    "InputError",
    "NestedDesign",
    "RobustCovariance",
    "cr2",
    "design_from_rows",
    "evaluate",
    "maximize",
]


def __getattr__(name: str) -> object:
    """Import a public name on first use."""
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(source), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})
