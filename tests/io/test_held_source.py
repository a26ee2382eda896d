"""A checked source holds its parsed file in the process's DuckDB database while it lives: the engine's
views read the same rows as views of the file itself, and the table goes with the source."""

from __future__ import annotations

import gc
from pathlib import Path

import duckdb
import pytest

from edueffects.io import database, open_source, register


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    path = tmp_path / "students.csv"
    path.write_text(
        "school,score,label,\n1,0.5,a,\n,,,\n2,NA,b,\n3,1.5,,\n4,2.5,d,\n",
        encoding="utf-8",
    )
    return path


def _rows(con: duckdb.DuckDBPyConnection, name: str) -> list[tuple[object, ...]]:
    return con.execute(f"SELECT * FROM {name}").fetchall()


def test_held_and_streamed_sources_give_the_same_view(messy: Path) -> None:
    held = open_source(messy, drop_missing=["score"])
    streamed = open_source(messy, drop_missing=["score"], hold=False)
    assert held.table is not None and streamed.table is None
    for source in (held, streamed):
        assert (source.rows, source.rows_dropped, source.missing) == (4, 1, {"score": 1})
    con = database().cursor()
    register(con, "held", held)
    register(con, "streamed", streamed)
    assert _rows(con, "held") == _rows(con, "streamed") == [(1, 0.5, "a"), (3, 1.5, None), (4, 2.5, "d")]
    assert [r[0] for r in con.execute("DESCRIBE held").fetchall()] == ["school", "score", "label"]
    con.close()


def test_another_database_reads_the_file_instead(messy: Path) -> None:
    held = open_source(messy)
    con = duckdb.connect()  # a database of its own: the held table is not visible there
    register(con, "src", held)
    assert len(_rows(con, "src")) == 4
    con.close()


def test_the_table_goes_with_its_source(messy: Path) -> None:
    source = open_source(messy)
    table = source.table
    assert table is not None and database().execute(f"SELECT count(*) FROM {table}").fetchone() == (5,)
    del source
    gc.collect()
    names = {r[0] for r in database().execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert table not in names
