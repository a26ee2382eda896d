"""Read a user's table by file extension, turning every failure into one clear :class:`InputError`.

CSV/TSV/TXT (UTF-8), Parquet, Excel (.xlsx), SPSS (.sav) and Stata (.dta); value labels of SPSS and
Stata files are applied, so categories arrive as their labels.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from edueffects.core.errors import InputError

DELIMITED = {".csv": ",", ".tsv": "\t", ".txt": None}
FORMATS = (".csv", ".tsv", ".txt", ".parquet", ".xlsx", ".sav", ".dta")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def read_table(path: str | Path) -> pd.DataFrame:
    """Read one table; the format follows the file extension."""
    file = Path(path)
    if not file.exists():
        raise InputError(f"file '{file}' does not exist")
    if not file.is_file():
        raise InputError(f"'{file}' is not a file")
    suffix = file.suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"file '{file}': unsupported format '{suffix or '(none)'}' (use {', '.join(FORMATS)})")
    try:
        frame = _read(file, suffix)
    except InputError:
        raise
    except UnicodeDecodeError as exc:
        raise InputError(f"file '{file}' is not UTF-8 text (byte {exc.start}): save it as UTF-8") from exc
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"file '{file}' is empty") from exc
    except Exception as exc:  # parsers of five formats raise many types; one clear line for each
        raise InputError(f"file '{file}' could not be read as {suffix[1:].upper()}: {_first_line(exc)}") from exc
    if frame.empty:
        raise InputError(f"file '{file}' has a header but no rows")
    return frame


def _read(file: Path, suffix: str) -> pd.DataFrame:
    if suffix in DELIMITED:
        sep = DELIMITED[suffix]
        return pd.read_csv(file, sep=sep, engine="python" if sep is None else "c", encoding="utf-8")
    if suffix == ".parquet":
        return pd.read_parquet(file)
    if suffix == ".xlsx":
        return pd.read_excel(file, engine="openpyxl")
    import pyreadstat

    reader = pyreadstat.read_sav if suffix == ".sav" else pyreadstat.read_dta
    frame, _ = reader(str(file), apply_value_formats=True)
    for col in frame.columns:  # labelled numeric codes become categories: keep them as plain labels
        if isinstance(frame[col].dtype, pd.CategoricalDtype):
            frame[col] = frame[col].astype(object)
    return pd.DataFrame(frame)


def checksum(path: str | Path) -> str:
    """SHA-256 of a file, for the report's record of its inputs."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
