"""Reading user tables (one layer for every command) and writing outputs without loss.

The names below are imported on first use: the light modules of this package (``json_output``,
``outputs``) load without pandas.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edueffects.io.tables import (
        FORMATS,
        ReadOptions,
        Source,
        Table,
        checksum,
        database,
        drop_missing,
        holds_dates,
        load_table,
        missing_counts,
        open_source,
        read_table,
        register,
    )

__all__ = [
    "FORMATS",
    "ReadOptions",
    "Source",
    "Table",
    "checksum",
    "database",
    "drop_missing",
    "holds_dates",
    "load_table",
    "missing_counts",
    "open_source",
    "read_table",
    "register",
]


def __getattr__(name: str) -> object:
    """Import a public name (all from :mod:`edueffects.io.tables`) on first use."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module("edueffects.io.tables"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})
