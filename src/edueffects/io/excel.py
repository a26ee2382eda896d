"""Excel workbooks (.xlsx) checked before they are read: the sheet's size, as claimed and as used.

A workbook is a zip archive of XML parts; a reader pads every row to the widest one, so a sheet that
claims (``<dimension ref="A1:XFD1048576"/>``) or uses a far-away cell would fill memory with empty
cells before anything could go wrong. The first sheet (the one read) is streamed through expat, which
keeps no tree, and refused as soon as its extent passes :data:`MAX_CELLS`.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from pathlib import Path
from typing import IO
from xml.parsers import expat

from edueffects.core.errors import InputError, Phrase

MAX_CELLS = 20_000_000
MAX_PART_BYTES = 1 << 31
_REF = re.compile(r"\$?([A-Za-z]{1,3})\$?(\d{1,7})")


class _TooLarge(Exception):
    def __init__(self, rows: int, columns: int, ref: str) -> None:
        super().__init__(ref)
        self.rows, self.columns, self.ref = rows, columns, ref


def column_number(letters: str) -> int:
    """``A`` -> 1, ``Z`` -> 26, ``AA`` -> 27, ``XFD`` -> 16384."""
    number = 0
    for ch in letters.upper():
        number = number * 26 + (ord(ch) - 64)
    return number


def column_letters(number: int) -> str:
    letters = ""
    while number > 0:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters or "A"


def _local(name: str) -> str:
    return name.rsplit(":", 1)[-1].rsplit(" ", 1)[-1]


def _parse(archive: zipfile.ZipFile, part: str) -> dict[str, list[dict[str, str]]]:
    """Attributes of every element of a small XML part, by local name."""
    found: dict[str, list[dict[str, str]]] = {}
    parser = expat.ParserCreate()
    parser.StartElementHandler = lambda name, attrs: found.setdefault(_local(name), []).append(
        {_local(k): v for k, v in attrs.items()}
    )
    parser.Parse(archive.read(part), True)
    return found


def _first_sheet(archive: zipfile.ZipFile, file: Path) -> tuple[str, str]:
    """The archive path and name of the workbook's first sheet (the one pandas reads)."""
    names = set(archive.namelist())
    try:
        workbook = _parse(archive, "xl/workbook.xml")
        rels = _parse(archive, "xl/_rels/workbook.xml.rels")
        sheet = workbook["sheet"][0]
        targets = {r["Id"]: r["Target"] for r in rels.get("Relationship", [])}
        target = targets[sheet["id"]]
        path = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join("xl", target))
        if path in names:
            return path, sheet.get("name", "1")
    except (KeyError, IndexError, expat.ExpatError):
        pass
    sheets = sorted(n for n in names if n.startswith("xl/worksheets/") and n.endswith(".xml"))
    if not sheets:
        raise InputError("file '{0}' could not be read as {1}: {2}", file, "XLSX", Phrase("no worksheet found"))
    return sheets[0], posixpath.basename(sheets[0])[:-4]


def _check_extent(stream: IO[bytes]) -> None:
    state = {"row": 0, "col": 0, "max_row": 0, "max_col": 0}

    def check(rows: int, cols: int, ref: str) -> None:
        if rows * cols > MAX_CELLS:
            raise _TooLarge(rows, cols, ref)

    def start(name: str, attrs: dict[str, str]) -> None:
        tag = _local(name)
        if tag == "dimension":
            ref = attrs.get("ref", "")
            corners = _REF.findall(ref)
            if corners:
                rows = max(int(r) for _, r in corners)
                cols = max(column_number(c) for c, _ in corners)
                check(rows, cols, ref)
        elif tag == "row":
            row = attrs.get("r")
            state["row"] = int(row) if row and row.isdigit() else state["row"] + 1
            state["col"] = 0
            state["max_row"] = max(state["max_row"], state["row"])
            check(state["max_row"], max(state["max_col"], 1), f"A1:{column_letters(state['max_col'])}{state['row']}")
        elif tag == "c":
            match = _REF.fullmatch(attrs.get("r", ""))
            if match:
                state["col"] = column_number(match.group(1))
                state["max_row"] = max(state["max_row"], int(match.group(2)))
            else:
                state["col"] += 1
            state["max_col"] = max(state["max_col"], state["col"])
            check(
                max(state["max_row"], 1), state["max_col"], f"A1:{column_letters(state['max_col'])}{state['max_row']}"
            )

    parser = expat.ParserCreate()
    parser.StartElementHandler = start
    while block := stream.read(1 << 20):
        parser.Parse(block, False)
    parser.Parse(b"", True)


def check_workbook(file: Path) -> None:
    """Refuse, before reading, a workbook whose first sheet is larger than :data:`MAX_CELLS` cells."""
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(
            "file '{0}' could not be read as {1}: {2}", file, "XLSX", Phrase("not an Excel workbook")
        ) from exc
    with archive:
        part, sheet = _first_sheet(archive, file)
        for info in archive.infolist():
            if info.file_size > MAX_PART_BYTES:
                raise InputError(
                    "file '{0}': part '{1}' unpacks to {2:,} bytes; save the table as CSV", file, info.filename,
                    info.file_size,
                )  # fmt: skip
        try:
            with archive.open(part) as stream:
                _check_extent(stream)
        except _TooLarge as big:
            raise InputError(
                "file '{0}': sheet '{1}' spans {2} ({3:,} rows x {4:,} columns), more than {5:,} cells; "
                "delete the unused rows and columns, or save the table as CSV",
                file,
                sheet,
                big.ref,
                big.rows,
                big.columns,
                MAX_CELLS,
            ) from None
        except (expat.ExpatError, zipfile.BadZipFile, EOFError) as exc:
            raise InputError("file '{0}' could not be read as {1}: {2}", file, "XLSX", str(exc)) from None
