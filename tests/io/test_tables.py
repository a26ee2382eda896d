"""Every input format gives the same table; malformed files give one clear error."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyreadstat
import pytest

from edueffects import InputError
from edueffects.io import checksum, read_table


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame({"school": [1, 2, 3], "score": [0.5, -1.25, 2.0], "level": ["low", "high", "low"]})


def test_formats_round_trip(table: pd.DataFrame, tmp_path: Path) -> None:
    table.to_csv(tmp_path / "t.csv", index=False)
    table.to_parquet(tmp_path / "t.parquet", index=False)
    table.to_excel(tmp_path / "t.xlsx", index=False)
    for name in ("t.csv", "t.parquet", "t.xlsx"):
        got = read_table(tmp_path / name)
        pd.testing.assert_frame_equal(got.reset_index(drop=True), table, check_dtype=False)


def test_spss_and_stata_value_labels(tmp_path: Path) -> None:
    coded = pd.DataFrame({"school": [1.0, 2.0, 3.0], "level": [1.0, 2.0, 1.0], "score": [0.5, -1.25, 2.0]})
    labels = {"level": {1.0: "low", 2.0: "high"}}
    pyreadstat.write_sav(coded, str(tmp_path / "t.sav"), variable_value_labels=labels)
    pyreadstat.write_dta(coded, str(tmp_path / "t.dta"), variable_value_labels={"level": {1: "low", 2: "high"}})
    for name in ("t.sav", "t.dta"):
        got = read_table(tmp_path / name)
        assert list(got.level) == ["low", "high", "low"]
        assert list(got.score) == [0.5, -1.25, 2.0]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("t.parquet", b"PAR1 truncated", "could not be read as PARQUET"),
        ("t.sav", b"$FL2 corrupt spss", "could not be read as SAV"),
        ("t.dta", b"<stata_dta> nope", "could not be read as DTA"),
        ("t.csv", b"a,b\n1,\xe9\xff\n", "is not UTF-8"),
        ("t.xlsx", b"PK not a zip", "could not be read as XLSX"),
        ("t.json", b"{}", "unsupported format '.json'"),
    ],
)
def test_malformed_files(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        read_table(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_checksum_is_sha256(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_bytes(b"abc")
    assert checksum(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
