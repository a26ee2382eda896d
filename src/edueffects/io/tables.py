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
        raise InputError("file '{0}' does not exist", file)
    if not file.is_file():
        raise InputError("'{0}' is not a file", file)
    suffix = file.suffix.lower()
    if suffix not in FORMATS:
        raise InputError("file '{0}': unsupported format '{1}' (use {2})", file, suffix or "(none)", ", ".join(FORMATS))
    try:
        frame = _read(file, suffix)
    except InputError:
        raise
    except UnicodeDecodeError as exc:
        raise InputError("file '{0}' is not UTF-8 text (byte {1}): save it as UTF-8", file, exc.start) from exc
    except pd.errors.EmptyDataError as exc:
        raise InputError("file '{0}' is empty", file) from exc
    except Exception as exc:  # parsers of five formats raise many types; one clear line for each
        raise InputError(
            "file '{0}' could not be read as {1}: {2}", file, suffix[1:].upper(), _first_line(exc)
        ) from exc
    if frame.empty:
        raise InputError("file '{0}' has a header but no rows", file)
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
