"""Delimited text (CSV, TSV, TXT): encoding, delimiter and decimal mark first, then types from every row.

The layout (encoding, delimiter, decimal mark, header) is settled from the file's first 256 KiB; the
types of the columns are proposed from the same rows and then checked against every row by DuckDB: a
value that does not fit its column's type moves that column one step down the ladder (true/false ->
text, integer -> number -> text) and the file is read again, so a column is numeric only when every
one of its values is a number. Nothing is guessed silently: a detected decimal comma is stated in a
note, a column read as text although it began with numbers is stated with the line that made it text,
and bytes that are not text in the file's encoding stop the reading with the line and column.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

from edueffects.core.errors import InputError, Message
from edueffects.io.columns import Column, from_masked

if TYPE_CHECKING:
    import duckdb

# the missing-value markers of pandas (and Excel's #N/A), matched exactly
NA_TOKENS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
             "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")  # fmt: skip
DELIMITERS = (",", ";", "\t", "|")
HEAD_BYTES = 1 << 18
BLOCK = 1 << 20
INTEGER = re.compile(r"[+-]?\d{1,18}")
DIGITS = re.compile(r"[+-]?\d+")
NUMBER = {
    ".": re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"),
    ",": re.compile(r"[+-]?(?:\d+(?:,\d*)?|,\d+)(?:[eE][+-]?\d+)?"),
}
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
BOOLEAN = frozenset({"true", "false"})
# one step down when a value does not fit
LADDER = {"BOOLEAN": "VARCHAR", "BIGINT": "DOUBLE", "DOUBLE": "VARCHAR", "DATE": "VARCHAR"}
_NA = frozenset(NA_TOKENS)
_MARKERS = _NA - {""}

T = TypeVar("T")


@dataclass(frozen=True)
class Layout:
    """How a delimited file is read: its encoding, delimiter, decimal mark, header and column types."""

    file: Path
    encoding: str
    delimiter: str
    decimal: str
    names: tuple[str, ...]
    types: tuple[str, ...]
    notes: tuple[Message, ...]
    all_markers: bool = False  # every missing-value marker (not only empty fields) read as missing by DuckDB

    @property
    def utf8(self) -> bool:
        return self.encoding in ("utf-8", "utf-8-sig")

    def source_sql(self, path: Path | None = None) -> str:
        """``read_csv(...)`` of the file with these types (columns named c0, c1, ...)."""
        columns = ", ".join(f"'c{i}': '{t}'" for i, t in enumerate(self.types))
        nulls = ", ".join(_literal(t) for t in (NA_TOKENS if self.all_markers else ("",)))
        decimal = ", decimal_separator = ','" if self.decimal == "," else ""
        return (
            f"read_csv({_literal(str(path or self.file))}, delim = {_literal(self.delimiter)}, header = true, "
            f"auto_detect = false, columns = {{{columns}}}, quote = '\"', escape = '\"', "
            f"nullstr = [{nulls}]{decimal})"
        )

    def expr(self, i: int) -> str:
        """Column ``i`` with missing-value markers as NULL (text columns; typed ones never hold them)."""
        if self.types[i] != "VARCHAR":
            return f"c{i}"
        return f"CASE WHEN trim(c{i}) IN ({', '.join(_literal(t) for t in NA_TOKENS)}) THEN NULL ELSE c{i} END"

    def positional_sql(self, path: Path | None = None) -> str:
        """Every column, missing-value markers as NULL, named by position (c0, c1, ...: header names may
        be empty or repeat)."""
        columns = ", ".join(f"{self.expr(i)} AS c{i}" for i in range(len(self.names)))
        return f"SELECT {columns} FROM {self.source_sql(path)}"

    def empty_sql(self) -> str:
        """The condition of a row that is empty in every column."""
        return " AND ".join(f"({self.expr(i)}) IS NULL" for i in range(len(self.names)))

    def select_sql(self, path: Path | None = None, where: str = "", named_only: bool = False) -> str:
        """The typed table with the header's names (unnamed columns keep their c-name)."""
        cols = ", ".join(
            f"{self.expr(i)} AS {quote(name or f'c{i}')}" for i, name in enumerate(self.names) if name or not named_only
        )
        return f"SELECT {cols} FROM {self.source_sql(path)}" + (f" WHERE {where}" if where else "")


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _encoding(file: Path, requested: str | None) -> str:
    """The given encoding (checked), else UTF-8; a byte-order mark wins (UTF-8 or UTF-16 text)."""
    name = None
    if requested is not None:
        try:
            name = codecs.lookup(requested).name
        except LookupError:
            raise InputError(
                "--encoding: '{0}' is not an encoding this program knows (e.g. utf-8, cp1252)", requested
            ) from None
    with file.open("rb") as handle:
        start = handle.read(4)
    if start.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if requested is None or name == "utf-8":
        return "utf-8"
    return requested


def _head_text(file: Path, encoding: str) -> tuple[str, bool]:
    """The first lines of the file (a partial last line cut off) and whether that is all of it."""
    with file.open("rb") as handle:
        raw = handle.read(HEAD_BYTES + 1)
    complete = len(raw) <= HEAD_BYTES
    raw = raw[:HEAD_BYTES]
    text = raw.decode(encoding, errors="replace")
    if not complete and "\n" in text:
        text = text[: text.rindex("\n") + 1]
    return text, complete


def _records(text: str, delimiter: str, limit: int | None = None) -> list[list[str]]:
    out: list[list[str]] = []
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
    try:
        for record in reader:
            if record and any(field.strip() for field in record):
                out.append(record)
            elif record and out:
                out.append(record)  # a row of empty fields is a row (dropped later, and counted)
            if limit is not None and len(out) >= limit:
                break
    except csv.Error:
        pass  # a malformed quote in the head: DuckDB reports it with its line
    return out


def _delimiter(text: str, suffix: str, requested: str | None) -> str:
    if requested is not None:
        return requested
    if suffix == ".tsv":
        return "\t"
    best: tuple[tuple[bool, int], str] | None = None
    for candidate in DELIMITERS:
        counts = [len(r) for r in _records(text, candidate, 200)]
        if not counts:
            continue
        width = counts[0] if counts[0] >= 2 else 0
        key = (width > 0 and all(c == counts[0] for c in counts), width)
        if best is None or key > best[0]:
            best = (key, candidate)
    return best[1] if best is not None and best[0][1] >= 2 else ","


def _values(records: Sequence[Sequence[str]], i: int) -> list[str]:
    out = []
    for record in records:
        if i < len(record):
            value = record[i].strip()
            if value not in _NA:
                out.append(value)
    return out


def _columns(records: Sequence[Sequence[str]], width: int) -> list[list[str]]:
    """``_values(records, i)`` for every column ``i < width`` (one transposition when rows are even)."""
    if records and all(len(r) == width for r in records):
        return [[v for v in map(str.strip, column) if v not in _NA] for column in zip(*records, strict=True)]
    return [_values(records, i) for i in range(width)]


_LISTS: dict[re.Pattern[str], re.Pattern[str]] = {}


def _all_match(pattern: re.Pattern[str], values: Sequence[str]) -> bool:
    """``all(pattern.fullmatch(v) for v in values)`` in one match over the values joined by newlines."""
    joined = "\n".join(values)
    if joined.count("\n") != len(values) - 1:  # a value holds a newline itself
        return all(pattern.fullmatch(v) for v in values)
    listed = _LISTS.get(pattern)
    if listed is None:
        listed = _LISTS[pattern] = re.compile(f"(?:{pattern.pattern})(?:\n(?:{pattern.pattern}))*")
    return listed.fullmatch(joined) is not None


def _decimal(
    file: Path, names: Sequence[str], columns: Sequence[Sequence[str]], requested: str | None
) -> tuple[str, tuple[Message, ...]]:
    if requested is not None:
        return requested, ()
    comma, point = [], []
    for i, name in enumerate(names):
        values = columns[i]
        text = "".join(values)
        if values and "," in text and _all_match(NUMBER[","], values):
            comma.append(name or f"c{i}")
        if values and "." in text and _all_match(NUMBER["."], values):
            point.append(name or f"c{i}")
    if comma and point:
        raise InputError(
            "file '{0}': column '{1}' has decimal commas but column '{2}' decimal points; "
            "say which is meant with --decimal , or --decimal .",
            file,
            comma[0],
            point[0],
        )
    if comma:
        return ",", (Message("file '{0}': decimal commas detected (columns {1}) and read as numbers", file,
                             ", ".join(comma)),)  # fmt: skip
    return ".", ()


def _proposed_type(values: Sequence[str], decimal: str) -> str:
    if not values:
        return "BIGINT"
    if all(v.lower() in BOOLEAN for v in values):
        return "BOOLEAN"
    if _all_match(INTEGER, values):
        return "BIGINT"
    if _all_match(NUMBER[decimal], values):
        return "DOUBLE"
    if _all_match(ISO_DATE, values):
        return "DATE"
    return "VARCHAR"


def _line_of(file: Path, position: int) -> tuple[int, bytes]:
    """1-based line number of a byte position and the bytes of that line up to the position."""
    line, start, offset = 1, 0, 0
    with file.open("rb") as handle:
        while offset < position:
            block = handle.read(min(BLOCK, position - offset))
            if not block:
                break
            count = block.count(b"\n")
            if count:
                line += count
                start = offset + block.rindex(b"\n") + 1
            offset += len(block)
        handle.seek(start)
        prefix = handle.read(position - start)
    return line, prefix


def check_decodes(file: Path, encoding: str, delimiter: str, names: Sequence[str]) -> None:
    """Every byte of the file is text in ``encoding``; else one line naming the line and the column."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    with file.open("rb") as handle:
        while True:
            block = handle.read(BLOCK)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                _not_text(file, encoding, delimiter, names, offset - pending + exc.start, exc)
            if not block:
                return
            offset += len(block)


def _not_text(
    file: Path, encoding: str, delimiter: str, names: Sequence[str], position: int, exc: UnicodeDecodeError
) -> None:
    byte = exc.object[exc.start : exc.start + 1].hex() if exc.start < len(exc.object) else "??"
    if "\n".encode(encoding, errors="ignore") != b"\n":
        raise InputError("file '{0}' is not {1} text (byte {2})", file, encoding, position) from None
    line, prefix = _line_of(file, position)
    fields = _records(prefix.decode(encoding, errors="replace") + "x", delimiter)
    index = len(fields[-1]) - 1 if fields else 0
    column = names[index] if index < len(names) and names[index] else str(index + 1)
    raise InputError(
        "file '{0}' line {1}, column '{2}': byte 0x{3} is not {4} text; save the file as UTF-8, "
        "or name its encoding (e.g. --encoding cp1252)",
        file,
        line,
        column,
        byte,
        "UTF-8" if encoding.startswith("utf-8") else encoding,
    ) from None


def layout(file: Path, encoding: str | None = None, delimiter: str | None = None, decimal: str | None = None) -> Layout:
    """Encoding, delimiter, decimal mark, header names and proposed types of a delimited file."""
    enc = _encoding(file, encoding)
    text, _complete = _head_text(file, enc)
    if not text.strip():
        raise InputError("file '{0}' is empty", file)
    sep = _delimiter(text, file.suffix.lower(), delimiter)
    records = _records(text, sep)
    if not records:
        raise InputError("file '{0}' is empty", file)
    names = tuple(n.strip() for n in records[0])
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name and name in seen:
            raise InputError(
                "file '{0}': column name '{1}' appears twice (columns {2} and {3}); rename one",
                file,
                name,
                seen[name] + 1,
                i + 1,
            )
        seen[name] = i
    if enc not in ("utf-8", "utf-8-sig"):  # UTF-8 is checked by DuckDB as it reads (see csv_error)
        check_decodes(file, enc, sep, names)
    rows = records[1:]
    columns = _columns(rows, len(names))
    dec, notes = _decimal(file, names, columns, decimal)
    if dec == sep:
        raise InputError("the decimal mark and the delimiter of file '{0}' are both '{1}'", file, sep)
    types = tuple(_proposed_type(values, dec) for values in columns)
    markers = not _MARKERS.isdisjoint(map(str.strip, chain.from_iterable(rows)))
    return Layout(file, enc, sep, dec, names, types, notes, all_markers=markers)


@contextmanager
def utf8_copy(plan: Layout) -> Iterator[Path]:
    """The file itself when it is UTF-8, else a UTF-8 copy in a private temporary folder."""
    if plan.utf8:
        yield plan.file
        return
    folder = Path(tempfile.mkdtemp(prefix="edueffects-"))
    try:
        target = folder / "utf8.csv"
        with (
            plan.file.open("r", encoding=plan.encoding, newline="") as src,
            target.open("w", encoding="utf-8", newline="") as dst,
        ):
            shutil.copyfileobj(src, dst, BLOCK)
        yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_LINE = re.compile(r"CSV Error on Line: (\d+)")
_CONVERT = re.compile(r'converting column "c(\d+)"\. Could not convert string "(.*?)" to')
_WIDTH = re.compile(r"Expected Number of Columns: (\d+) Found: (\d+)")


def read_typed(plan: Layout, run: Callable[[Layout], T]) -> tuple[T, Layout]:
    """Run ``run`` (a query over :meth:`Layout.source_sql`) until every value fits its column's type.

    Returns the result and the final layout (types, plus a note for each column that became text)."""
    import duckdb

    for _ in range(2 * len(plan.types) + 1):
        try:
            return run(plan), plan
        except duckdb.ConversionException as exc:
            message = str(exc)
            found = _CONVERT.search(message)
            line = _LINE.search(message)
            if found is None:
                raise csv_error(plan, exc) from None
            i, value = int(found.group(1)), found.group(2)
            if value.strip() in _NA and not plan.all_markers:
                plan = replace(plan, all_markers=True)
                continue
            types = list(plan.types)
            old = types[i]
            new = "VARCHAR" if old == "BIGINT" and DIGITS.fullmatch(value.strip()) else LADDER.get(old, "VARCHAR")
            types[i] = new
            notes = plan.notes
            if new == "VARCHAR" and old in ("BIGINT", "DOUBLE"):
                notes = (
                    *notes,
                    Message(
                        "file '{0}': column '{1}' is read as text, not as numbers: line {2} holds {3}",
                        plan.file,
                        plan.names[i] or f"c{i}",
                        line.group(1) if line else "?",
                        repr(value),
                    ),
                )
            plan = replace(plan, types=tuple(types), notes=notes)
        except duckdb.Error as exc:
            raise csv_error(plan, exc) from None
    raise InputError("file '{0}' could not be read as CSV", plan.file)


def csv_error(plan: Layout, exc: BaseException) -> InputError:
    """One line for a CSV that DuckDB could not parse (ragged rows, unterminated quotes, bytes that are
    not UTF-8: those are located by :func:`check_decodes`, which names the line and the column)."""
    if plan.utf8:  # a byte that is not UTF-8 garbles DuckDB's account of the line: name it first
        check_decodes(plan.file, plan.encoding, plan.delimiter, plan.names)
    message = str(exc)
    line = _LINE.search(message)
    width = _WIDTH.search(message)
    if line and width:
        return InputError(
            "file '{0}' line {1}: {2} values where the header has {3}; check the delimiter ('{4}') and the quotes",
            plan.file,
            line.group(1),
            width.group(2),
            width.group(1),
            "\\t" if plan.delimiter == "\t" else plan.delimiter,
        )
    first = next((p.strip() for p in message.splitlines() if p.strip() and not p.startswith("CSV Error")), message)
    if line:
        return InputError("file '{0}' line {1} could not be read: {2}", plan.file, line.group(1), first)
    return InputError("file '{0}' could not be read as {1}: {2}", plan.file, "CSV", first)


def read_columns(con: duckdb.DuckDBPyConnection, plan: Layout) -> tuple[list[Column], Layout]:
    """Every column of the file, in order, as numpy arrays with checked types (missing values as
    :mod:`edueffects.io.columns` holds them)."""

    def run(p: Layout) -> list[Column]:
        result = con.execute(p.positional_sql(path)).fetchnumpy()
        return [from_masked(cast("Column", result[f"c{i}"])) for i in range(len(p.names))]

    with utf8_copy(plan) as path:
        return read_typed(plan, run)
