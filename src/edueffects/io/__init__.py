"""Reading user tables: one function, clear errors, nothing dropped."""

from edueffects.io.tables import FORMATS, checksum, read_table

__all__ = ["FORMATS", "checksum", "read_table"]
