"""Read a user's table by file extension, turning every failure into one clear :class:`InputError`.

CSV/TSV/TXT, Parquet, Excel (.xlsx), SPSS (.sav) and Stata (.dta); value labels of SPSS and Stata
files are applied, so categories arrive as their labels. Delimited text is read as described in
:mod:`edueffects.io.delimited` (encoding, ``;`` or ``,``, decimal commas, types checked on every row);
Excel sheets are measured before they are read (:mod:`edueffects.io.excel`). Every format then passes
the same checks: named and distinct columns, at least one row; rows that are empty in every column
are skipped and counted.

Engines that read files themselves (DuckDB, larger than memory) get a :class:`Source` from
:func:`open_source` and create their view with :func:`register`: the same types, the same checks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import os
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edueffects.core.errors import InputError, Message
from edueffects.io.columns import Column, Columns, column_values, missing_mask
from edueffects.io.delimited import NA_TOKENS, NUMBER, Layout, layout, quote, read_columns, read_typed

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

DELIMITED = (".csv", ".tsv", ".txt")
FORMATS = (".csv", ".tsv", ".txt", ".parquet", ".xlsx", ".sav", ".dta")
DATE_TEXT = re.compile(
    r"\d{4}-\d{1,2}-\d{1,2}(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}"
)
_NA = frozenset(NA_TOKENS)
MATERIALISE_BYTES = 256 << 20
"""Delimited files up to this size are parsed once, into a table of the process's DuckDB database: the
check of every row and then the engine's queries read that table. Larger files stay on disk, read by
every query (larger than memory)."""
_TABLE_NUMBERS = itertools.count(1)


@cache
def database() -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB database; readers and engines each work in a cursor of it."""
    import duckdb

    return duckdb.connect()


@dataclass(frozen=True)
class ReadOptions:
    """How to read delimited text: decimal mark (``.``/``,``), delimiter and encoding; None = detect."""

    decimal: str | None = None
    delimiter: str | None = None
    encoding: str | None = None

    def __post_init__(self) -> None:
        if self.decimal not in (None, ".", ","):
            raise InputError("--decimal: give '.' or ',' (got {0})", repr(self.decimal))
        if self.delimiter is not None and (len(self.delimiter) != 1 or self.delimiter in '"\r\n.0123456789'):
            raise InputError("--delimiter: give one character such as ';' or ',' (got {0})", repr(self.delimiter))
        if self.delimiter is not None and self.delimiter == self.decimal:
            raise InputError("the decimal mark and the delimiter are both '{0}'", self.delimiter)


@dataclass(frozen=True, eq=False)
class Table:
    """A table as read, with the notes a reader should see (detected decimal commas, skipped rows);
    ``frame`` is the same table as a pandas DataFrame, built when first asked for."""

    columns: Columns
    notes: tuple[Message, ...] = ()

    @cached_property
    def frame(self) -> pd.DataFrame:
        return self.columns.to_frame()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _checked_path(path: str | Path | os.PathLike[str]) -> tuple[Path, str]:
    file = Path(path)
    if not file.exists():
        raise InputError("file '{0}' does not exist", file)
    if not file.is_file():
        raise InputError("'{0}' is not a file", file)
    suffix = file.suffix.lower()
    if suffix not in FORMATS:
        raise InputError("file '{0}': unsupported format '{1}' (use {2})", file, suffix or "(none)", ", ".join(FORMATS))
    return file, suffix


def load_table(path: str | Path | os.PathLike[str], options: ReadOptions | None = None) -> Table:
    """Read one table (the format follows the file extension) with the notes of its reading."""
    file, suffix = _checked_path(path)
    opts = options or ReadOptions()
    try:
        if suffix in DELIMITED:
            named, notes = _read_delimited(file, opts)
        else:
            named, notes = _read_other(file, suffix, opts), ()
    except InputError:
        raise
    except MemoryError:
        raise InputError("file '{0}' is too large to be read into memory", file) from None
    except UnicodeDecodeError as exc:
        raise InputError("file '{0}' is not UTF-8 text (byte {1}): save it as UTF-8", file, exc.start) from exc
    except Exception as exc:  # parsers of five formats raise many types; one clear line for each
        raise InputError(
            "file '{0}' could not be read as {1}: {2}", file, suffix[1:].upper(), _first_line(exc)
        ) from exc
    columns, more = _finish(named, file)
    return Table(columns, (*notes, *more))


def read_table(path: str | Path | os.PathLike[str], options: ReadOptions | None = None) -> pd.DataFrame:
    """Read one table; the format follows the file extension."""
    return load_table(path, options).frame


NamedColumns = list[tuple[str, Column]]
"""The columns of a file in order, named as in its header (names may still be empty or repeated)."""


def _read_delimited(file: Path, opts: ReadOptions) -> tuple[NamedColumns, tuple[Message, ...]]:

    plan = layout(file, opts.encoding, opts.delimiter, opts.decimal)
    con = database().cursor()
    try:
        arrays, plan = read_columns(con, plan)
    finally:
        con.close()
    return list(zip(plan.names, arrays, strict=True)), plan.notes


def _read_other(file: Path, suffix: str, opts: ReadOptions) -> NamedColumns:
    import pandas as pd

    if suffix == ".parquet":
        frame = pd.read_parquet(file)
    elif suffix == ".xlsx":
        from edueffects.io.excel import check_workbook

        check_workbook(file)
        raw = pd.read_excel(file, engine="openpyxl", header=None, dtype=object)
        if raw.empty:
            raise InputError("file '{0}' is empty", file)
        frame = raw.iloc[1:].reset_index(drop=True)
        frame.columns = pd.Index([_header_name(v) for v in raw.iloc[0]])
    else:
        import pyreadstat

        reader = pyreadstat.read_sav if suffix == ".sav" else pyreadstat.read_dta
        frame, _ = reader(str(file), apply_value_formats=True)
        for col in frame.columns:  # labelled numeric codes become categories: keep them as plain labels
            if isinstance(frame[col].dtype, pd.CategoricalDtype):
                frame[col] = frame[col].astype(object)
    frame = pd.DataFrame(frame)
    named: NamedColumns = []
    for i in range(frame.shape[1]):
        series = frame.iloc[:, i]
        if series.dtype == object:
            series = _typed_objects(series, opts.decimal or ".")
        named.append((str(frame.columns[i]), column_values(series)))
    return named


def _header_name(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _typed_objects(series: pd.Series, decimal: str) -> pd.Series:
    """A column of mixed cells (Excel): missing markers become missing; numbers stored as text become
    numbers when every cell of the column is a number; otherwise the column is left as it is."""
    values = series.map(lambda v: np.nan if isinstance(v, str) and v.strip() in _NA else v)
    present = values.dropna()
    if present.empty:
        return values.astype("float64")

    def number(v: object) -> bool:
        if isinstance(v, bool):
            return False
        if isinstance(v, int | float | np.integer | np.floating):
            return True
        return isinstance(v, str) and NUMBER[decimal].fullmatch(v.strip()) is not None

    if all(number(v) for v in present):
        return values.map(lambda v: float(v.strip().replace(",", ".")) if isinstance(v, str) else v).astype("float64")
    return values.infer_objects()


def _finish(named: NamedColumns, file: Path) -> tuple[Columns, tuple[Message, ...]]:
    """The checks every table gets, whatever its format."""
    notes: list[Message] = []
    kept: NamedColumns = []
    unnamed = 0
    for i, (raw_name, values) in enumerate(named):
        name = raw_name.strip()
        if name:
            kept.append((name, values))
        elif missing_mask(values).all():
            unnamed += 1
        else:
            raise InputError("file '{0}': column {1} has values but no name in the header", file, i + 1)
    if unnamed:
        notes.append(Message("file '{0}': {1} empty column(s) without a name ignored", file, unnamed))
    seen: set[str] = set()
    for name, _ in kept:
        if name in seen:
            raise InputError("file '{0}': column name '{1}' appears twice; rename one", file, name)
        seen.add(name)
    if not kept:
        raise InputError("file '{0}' is empty", file)
    table = Columns(dict(kept))
    if len(table) == 0:
        raise InputError("file '{0}' has a header but no rows", file)
    empty = np.logical_and.reduce([missing_mask(values) for _, values in kept])
    if empty.any():
        table = table.take(np.flatnonzero(~empty))
        notes.append(Message("file '{0}': {1} empty row(s) skipped", file, int(empty.sum())))
        if len(table) == 0:
            raise InputError("file '{0}' has a header but no rows", file)
    return table, tuple(notes)


def missing_counts(table: pd.DataFrame | Columns, columns: Sequence[str]) -> dict[str, int]:
    """Missing values per column (columns absent from the table are left out)."""
    return {c: int(missing_mask(np.asarray(table[c])).sum()) for c in dict.fromkeys(columns) if c in table.columns}


def _drop_rows(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[pd.DataFrame, dict[str, int], int]:
    """The rows without a missing value in ``columns``, the missing values per column, rows dropped."""
    cols = [c for c in dict.fromkeys(columns) if c in frame.columns]
    counts = missing_counts(frame, cols)
    mask = frame[cols].isna().any(axis=1).to_numpy() if cols else np.zeros(len(frame), dtype=bool)
    return frame.loc[~mask].reset_index(drop=True), counts, int(mask.sum())


drop_missing = _drop_rows


def holds_dates(values: pd.Series | Column) -> bool:
    """Whether a column holds dates (an Excel date format, SPSS dates, or date text such as 01.03.2020)."""
    if not isinstance(values, np.ndarray):  # a pandas column
        import pandas as pd

        if pd.api.types.is_datetime64_any_dtype(values.dtype) or isinstance(values.dtype, pd.PeriodDtype):
            return True
        values = column_values(values)
    kind = values.dtype.kind
    if kind == "M":
        return True
    if kind != "O":
        return False
    present = values[~missing_mask(values)]
    if present.size == 0:
        return False
    if all(isinstance(v, dt.date | dt.time) for v in present):
        return True
    return all(DATE_TEXT.fullmatch(str(v).strip()) is not None for v in present)


def checksum(path: str | Path | os.PathLike[str]) -> str:
    """SHA-256 of a file, for the report's record of its inputs."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- sources for DuckDB-based engines -------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Source(os.PathLike[str]):
    """A table file for an engine that reads through DuckDB, checked and counted once.

    UTF-8 delimited text up to :data:`MATERIALISE_BYTES` is parsed once into ``table`` (dropped with
    the Source); larger delimited files and Parquet stay on disk (read lazily, larger than memory);
    other formats are held as a DataFrame. ``drop_missing`` names the columns whose missing values drop a row;
    ``missing`` counts them per column and ``rows_dropped`` the rows dropped."""

    path: Path
    plan: Layout | None = None
    frame: pd.DataFrame | None = None
    notes: tuple[Message, ...] = ()
    rows: int = 0
    drop_missing: tuple[str, ...] = ()
    missing: dict[str, int] = field(default_factory=dict)
    rows_dropped: int = 0
    columns: tuple[str, ...] = ()
    table: str | None = None  # the parsed file in the process's DuckDB database (columns c0, c1, ...)

    def __fspath__(self) -> str:
        return str(self.path)

    def summary(self) -> dict[str, object]:
        """What reading found, for a JSON result."""
        return {
            "file": str(self.path),
            "rows": self.rows,
            "rows_dropped": self.rows_dropped,
            "missing": dict(self.missing),
            "notes": [str(n) for n in self.notes],
        }


def _duck_error(file: Path, exc: BaseException) -> InputError:
    return InputError("file '{0}' could not be read: {1}", file, _first_line(exc))


def open_source(
    path: str | Path | os.PathLike[str],
    options: ReadOptions | None = None,
    drop_missing: Sequence[str] = (),
    hold: bool = True,
) -> Source:
    """Check a table file once for :func:`register`: types from every row, missing values counted.

    ``hold``: a delimited file up to :data:`MATERIALISE_BYTES` is kept parsed in the process's DuckDB
    database for as long as the Source lives (False: every query reads the file)."""
    if isinstance(path, Source):
        return path
    file, suffix = _checked_path(path)
    opts = options or ReadOptions()
    drop = tuple(dict.fromkeys(drop_missing))
    if suffix in DELIMITED:
        plan = layout(file, opts.encoding, opts.delimiter, opts.decimal)
        if plan.utf8:
            return _csv_source(plan, drop, hold)
    if suffix == ".parquet":
        return _parquet_source(file, drop)
    table = load_table(file, opts)
    frame, counts, dropped = _drop_rows(table.frame, drop)
    return Source(
        path=file,
        frame=frame,
        notes=table.notes,
        rows=len(table.frame),
        drop_missing=drop,
        missing=counts,
        rows_dropped=dropped,
        columns=tuple(table.frame.columns),
    )


def _csv_source(plan: Layout, drop: tuple[str, ...], hold: bool) -> Source:
    index = {name: i for i, name in enumerate(plan.names) if name}
    dropped = [index[c] for c in drop if c in index]
    n = len(plan.names)
    held = hold and plan.file.stat().st_size <= MATERIALISE_BYTES
    table = f"edueffects_source_{next(_TABLE_NUMBERS)}" if held else None

    def scan(p: Layout) -> tuple[int, ...]:
        con = database().cursor()
        try:
            if table is None:
                source, expr = p.source_sql(), p.expr
            else:  # parsed once: the counts below and the engine read the table
                con.execute(f"CREATE OR REPLACE TABLE {table} AS {p.positional_sql()}")
                source, expr = table, _stored_column
            empty = " AND ".join(f"({expr(i)}) IS NULL" for i in range(n))
            any_missing = " OR ".join(f"({expr(i)}) IS NULL" for i in dropped) or "false"
            parts = [
                f"count(*) FILTER (WHERE NOT ({empty}))",
                f"count(*) FILTER (WHERE {empty})",
                *(f"count({expr(i)})" for i in range(n)),
                *(f"count(*) FILTER (WHERE NOT ({empty}) AND ({expr(i)}) IS NULL)" for i in dropped),
                f"count(*) FILTER (WHERE NOT ({empty}) AND ({any_missing}))",
            ]
            row = con.execute(f"SELECT {', '.join(parts)} FROM {source}").fetchone()
        finally:
            con.close()
        assert row is not None
        return tuple(int(v) for v in row)

    try:
        counts, plan = read_typed(plan, scan)
    except BaseException:
        _drop_table(table)
        raise
    rows, empty_rows = counts[0], counts[1]
    filled = counts[2 : 2 + n]
    notes = list(plan.notes)
    if empty_rows:
        notes.append(Message("file '{0}': {1} empty row(s) skipped", plan.file, empty_rows))
    missing = {plan.names[i]: counts[2 + n + j] for j, i in enumerate(dropped)}
    source = Source(
        path=plan.file,
        plan=plan,
        notes=tuple(notes),
        rows=rows,
        drop_missing=drop,
        missing=missing,
        rows_dropped=counts[-1],
        columns=tuple(name for name in plan.names if name),
        table=table,
    )
    if table is not None:
        weakref.finalize(source, _drop_table, table).atexit = False  # the process's memory goes at exit
    for i, name in enumerate(plan.names):
        if not name and filled[i]:
            raise InputError("file '{0}': column {1} has values but no name in the header", plan.file, i + 1)
    if rows == 0:
        raise InputError("file '{0}' has a header but no rows", plan.file)
    return source


def _stored_column(i: int) -> str:
    """Column ``i`` of a parsed file's table (missing-value markers already NULL)."""
    return f"c{i}"


def _drop_table(table: str | None) -> None:
    if table is not None:
        database().execute(f"DROP TABLE IF EXISTS {table}")


def _parquet_source(file: Path, drop: tuple[str, ...]) -> Source:
    import duckdb

    con = duckdb.connect()
    try:
        source = f"read_parquet({_sql_text(str(file))})"
        names = [str(r[0]) for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
        present = [c for c in drop if c in names]
        any_missing = " OR ".join(f"{quote(c)} IS NULL" for c in present) or "false"
        parts = ["count(*)", *(f"count(*) FILTER (WHERE {quote(c)} IS NULL)" for c in present)]
        row = con.execute(f"SELECT {', '.join(parts)}, count(*) FILTER (WHERE {any_missing}) FROM {source}").fetchone()
    except duckdb.Error as exc:
        raise _duck_error(file, exc) from None
    finally:
        con.close()
    assert row is not None
    if len(set(names)) != len(names):
        raise InputError("file '{0}': column name '{1}' appears twice; rename one", file,
                         next(n for n in names if names.count(n) > 1))  # fmt: skip
    if int(row[0]) == 0:
        raise InputError("file '{0}' has a header but no rows", file)
    return Source(
        path=file,
        rows=int(row[0]),
        drop_missing=drop,
        missing={c: int(v) for c, v in zip(present, row[1:-1], strict=True)},
        rows_dropped=int(row[-1]),
        columns=tuple(names),
    )


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _visible(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether ``con`` sees ``table`` (a cursor of :func:`database`; another database does not)."""
    import duckdb

    try:
        con.execute(f"SELECT * FROM {table} LIMIT 0")
    except duckdb.CatalogException:
        return False
    return True


def register(con: duckdb.DuckDBPyConnection, name: str, data: str | Path | os.PathLike[str]) -> Source:
    """Create the temporary view ``name`` of a table file (or :class:`Source`) in ``con``."""
    import duckdb

    source = data if isinstance(data, Source) else open_source(data, hold=False)  # nobody would hold it
    try:
        if source.table is not None and source.plan is not None and _visible(con, source.table):
            plan = source.plan
            index = {c: i for i, c in enumerate(plan.names) if c}
            empty = " AND ".join(f"c{i} IS NULL" for i in range(len(plan.names)))
            conditions = [f"NOT ({empty})", *(f"c{index[c]} IS NOT NULL" for c in source.drop_missing if c in index)]
            columns = ", ".join(f"c{i} AS {quote(c)}" for c, i in index.items())
            where = " AND ".join(conditions)
            con.execute(f"CREATE TEMP VIEW {quote(name)} AS SELECT {columns} FROM {source.table} WHERE {where}")
        elif source.plan is not None:
            plan = source.plan
            index = {c: i for i, c in enumerate(plan.names) if c}
            conditions = [f"NOT ({plan.empty_sql()})"]
            conditions += [f"({plan.expr(index[c])}) IS NOT NULL" for c in source.drop_missing if c in index]
            con.execute(
                f"CREATE TEMP VIEW {quote(name)} AS {plan.select_sql(where=' AND '.join(conditions), named_only=True)}"
            )
        elif source.frame is not None:
            con.register(f"{name}_frame", source.frame)
            con.execute(f"CREATE TEMP VIEW {quote(name)} AS SELECT * FROM {quote(name + '_frame')}")
        else:
            present = [c for c in source.drop_missing if c in source.columns]
            where = " AND ".join(f"{quote(c)} IS NOT NULL" for c in present)
            con.execute(
                f"CREATE TEMP VIEW {quote(name)} AS SELECT * FROM read_parquet({_sql_text(str(source.path))})"
                + (f" WHERE {where}" if where else "")
            )
    except duckdb.Error as exc:
        raise _duck_error(source.path, exc) from None
    return source


__all__ = [
    "DELIMITED",
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
