"""Reading user tables (one layer for every command) and writing outputs without loss."""

from edueffects.io.tables import (
    FORMATS,
    ReadOptions,
    Source,
    Table,
    checksum,
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
    "drop_missing",
    "holds_dates",
    "load_table",
    "missing_counts",
    "open_source",
    "read_table",
    "register",
]
