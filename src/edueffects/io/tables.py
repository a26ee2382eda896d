"""Read a user's table by file extension, turning every failure into one clear :class:`InputError`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from edueffects.core.errors import InputError

DELIMITED = {".csv": ",", ".tsv": "\t", ".txt": None}


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV/TXT file (UTF-8) into a DataFrame."""
    file = Path(path)
    if not file.exists():
        raise InputError(f"file '{file}' does not exist")
    if not file.is_file():
        raise InputError(f"'{file}' is not a file")
    suffix = file.suffix.lower()
    if suffix not in DELIMITED:
        raise InputError(f"file '{file}': unsupported format '{suffix or '(none)'}' (use .csv, .tsv or .txt)")
    try:
        sep = DELIMITED[suffix]
        frame = pd.read_csv(file, sep=sep, engine="python" if sep is None else "c", encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"file '{file}' is not UTF-8 text (byte {exc.start}): save it as UTF-8") from exc
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"file '{file}' is empty") from exc
    except pd.errors.ParserError as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"file '{file}' could not be parsed: {first}") from exc
    if frame.empty:
        raise InputError(f"file '{file}' has a header but no rows")
    return frame
