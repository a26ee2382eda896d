"""Reading user tables: one function, clear errors, nothing dropped."""

from edueffects.io.tables import read_table

__all__ = ["read_table"]
