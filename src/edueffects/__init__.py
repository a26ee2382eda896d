"""edueffects: meta-analysis, second-order meta-analysis and learning-recovery models for education research.

Engines are imported on first use, so the command line starts quickly.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from edueffects.core.errors import InputError

__version__ = "0.1.0"

_LAZY = {
    "meta": ("edueffects.meta", "meta"),
    "MetaResult": ("edueffects.meta", "MetaResult"),
    "RobustResult": ("edueffects.meta", "RobustResult"),
    "recovery": ("edueffects.recovery", "recovery"),
    "recovery_by_domain": ("edueffects.recovery", "recovery_by_domain"),
    "RecoveryResult": ("edueffects.recovery", "RecoveryResult"),
    "simulate": ("edueffects.simulate", None),
}

if TYPE_CHECKING:
    from edueffects import simulate
    from edueffects.meta import MetaResult, RobustResult, meta
    from edueffects.recovery import RecoveryResult, recovery, recovery_by_domain


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'edueffects' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = import_module(module) if attribute is None else getattr(import_module(module), attribute)
    globals()[name] = value
    return value


__all__ = [
    "InputError",
    "MetaResult",
    "RecoveryResult",
    "RobustResult",
    "__version__",
    "meta",
    "recovery",
    "recovery_by_domain",
    "simulate",
]
