"""The input layer on messy files: types from every row, encodings, delimiters and decimal commas,
Excel sheets measured before reading, dates, names; the same for DuckDB sources (recovery)."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyreadstat
import pytest

from edueffects import InputError
from edueffects.io import ReadOptions, holds_dates, load_table, open_source, read_table, register


def notes(path: Path, **options: str) -> list[str]:
    return [str(n) for n in load_table(path, ReadOptions(**options)).notes]


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "study": [1, 1, 2, 3],
            "yi": [0.5, -1.25, 2.0, 0.125],
            "vi": [0.01, 0.02, 0.015, 0.03],
            "level": ["low", "high", "low", "mid"],
        }
    )


@pytest.mark.parametrize(("sep", "suffix"), [(";", ".csv"), ("\t", ".tsv"), ("\t", ".txt"), ("|", ".txt")])
def test_dutch_and_german_exports(table: pd.DataFrame, tmp_path: Path, sep: str, suffix: str) -> None:
    path = tmp_path / f"export{suffix}"
    table.to_csv(path, sep=sep, decimal=",", index=False)
    got = read_table(path)
    pd.testing.assert_frame_equal(got, table, check_dtype=False)
    assert got.yi.dtype == np.float64 and got.study.dtype == np.int64
    assert notes(path) == [f"file '{path}': decimal commas detected (columns yi, vi) and read as numbers"]
    assert notes(path, decimal=",") == []


def test_decimal_commas_need_a_word_when_mixed(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text("yi;vi\n0,5;0.01\n0,25;0.02\n")
    with pytest.raises(InputError, match="column 'yi' has decimal commas but column 'vi' decimal points"):
        read_table(path)
    got = read_table(path, ReadOptions(decimal="."))
    assert got.yi.tolist() == ["0,5", "0,25"] and got.vi.dtype == np.float64


def test_a_late_text_cell_makes_its_column_text_and_says_where(tmp_path: Path) -> None:
    rows = ["yi,vi,id"] + [f"{i / 1000},0.01,{i}" for i in range(30_000)] + ["oops,0.01,99999999999999999999"]
    path = tmp_path / "late.csv"
    path.write_text("\n".join(rows) + "\n")
    got = load_table(path)
    assert got.frame.vi.dtype == np.float64
    assert got.frame.yi.iloc[-1] == "oops" and got.frame.yi.iloc[0] == "0.0"
    assert got.frame.id.iloc[-1] == "99999999999999999999"  # too long for a number: text, not a rounded float
    assert [str(n) for n in got.notes] == [
        f"file '{path}': column 'yi' is read as text, not as numbers: line 30002 holds 'oops'",
        f"file '{path}': column 'id' is read as text, not as numbers: line 30002 holds '99999999999999999999'",
    ]


def test_late_missing_markers_and_decimals_keep_the_type(tmp_path: Path) -> None:
    rows = ["yi;vi;group"] + ["1;2;a"] * 30_000 + ["NA;2,5;#N/A", ";;"]
    path = tmp_path / "late.csv"
    path.write_text("\n".join(rows) + "\n")
    got = load_table(path, ReadOptions(decimal=","))
    assert got.frame.yi.dtype == np.float64 and got.frame.vi.dtype == np.float64
    assert np.isnan(got.frame.yi.iloc[-1]) and got.frame.vi.iloc[-1] == 2.5 and pd.isna(got.frame.group.iloc[-1])
    assert len(got.frame) == 30_001 and f"file '{path}': 1 empty row(s) skipped" in [str(n) for n in got.notes]


def test_encodings(table: pd.DataFrame, tmp_path: Path) -> None:
    labelled = table.assign(level=["gering", "hoch", "über", "mäßig"])
    path = tmp_path / "t.csv"
    text = labelled.to_csv(index=False, sep=";", decimal=",")
    path.write_bytes(text.encode("cp1252"))
    with pytest.raises(InputError) as err:
        read_table(path)
    assert str(err.value).startswith(f"file '{path}' line 4, column 'level': byte 0xfc is not UTF-8 text")
    assert read_table(path, ReadOptions(encoding="cp1252")).level.tolist() == ["gering", "hoch", "über", "mäßig"]
    path.write_bytes(text.encode("utf-16"))  # Excel's "Unicode text"
    assert read_table(path).level.tolist() == ["gering", "hoch", "über", "mäßig"]
    path.write_bytes(text.encode("utf-8-sig"))
    assert list(read_table(path).columns) == ["study", "yi", "vi", "level"]
    with pytest.raises(InputError, match="'klingon' is not an encoding"):
        read_table(path, ReadOptions(encoding="klingon"))


def test_latin1_bytes_late_in_a_large_file(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    body = "".join(f"{i},{i % 7},name{i}\n" for i in range(200_000))
    path.write_bytes(b"id,group,name\n" + body.encode() + b"200000,3,Jos\xe9\n")
    with pytest.raises(InputError, match=r"line 200002, column 'name': byte 0xe9 is not UTF-8 text"):
        read_table(path)


def test_a_latin1_byte_inside_a_number_is_named_not_misread(tmp_path: Path) -> None:
    """The byte swallows the delimiter after it, so DuckDB sees a garbled number: the line and the
    column are still named, by the table reader and by the checked source of the engines alike."""
    path = tmp_path / "late.csv"
    body = "".join(f"{i * 0.01:.2f},0.05,s{i}\n" for i in range(20_000))
    path.write_bytes(b"yi,vi,name\n" + body.encode() + b"0.5\xe9,0.05,x\n")
    expected = r"line 20002, column 'yi': byte 0xe9 is not UTF-8 text"
    with pytest.raises(InputError, match=expected):
        read_table(path)
    with pytest.raises(InputError, match=expected):
        open_source(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("yi,vi\n", "has a header but no rows"),
        ("yi;vi\n;\n;\n", "has a header but no rows"),
        ("yi,vi,yi\n1,2,3\n", "column name 'yi' appears twice (columns 1 and 3)"),
        ("yi, vi ,yi \n1,2,3\n", "column name 'yi' appears twice"),
        ("yi,,vi\n1,2,3\n", "column 2 has values but no name in the header"),
        ('yi,vi\n1,"2\n', "could not be read"),
        ("yi,vi\n1,2\n3,4,5\n", "line 3: 3 values where the header has 2"),
    ],
)
def test_malformed_text(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        read_table(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unnamed_empty_columns_of_exports_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("yi;vi;;\n0,1;0,2;;\n0,3;0,4;;\n")
    got = load_table(path)
    assert list(got.frame.columns) == ["yi", "vi"]
    assert f"file '{path}': 2 empty column(s) without a name ignored" in [str(n) for n in got.notes]


def test_duplicated_names_in_every_format(tmp_path: Path) -> None:
    frame = pd.DataFrame([[1, 2, 3]], columns=["yi", "vi", "yi"])
    frame.to_excel(tmp_path / "t.xlsx", index=False)
    with pytest.raises(InputError, match="column name 'yi' appears twice"):
        read_table(tmp_path / "t.xlsx")


def _workbook(path: Path, sheet: str) -> Path:
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    pkg = "http://schemas.openxmlformats.org/package/2006/relationships"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                   '<Default Extension="xml" ContentType="application/xml"/></Types>')  # fmt: skip
        z.writestr("xl/workbook.xml", f'<workbook {ns} xmlns:r="{rel}"><sheets><sheet name="Data" sheetId="1" '
                   'r:id="rId1"/></sheets></workbook>')  # fmt: skip
        z.writestr("xl/_rels/workbook.xml.rels", f'<Relationships xmlns="{pkg}"><Relationship Id="rId1" '
                   f'Type="{rel}/worksheet" Target="worksheets/data.xml"/></Relationships>')  # fmt: skip
        z.writestr("xl/worksheets/data.xml", f"<worksheet {ns}>{sheet}</worksheet>")
    return path


@pytest.mark.parametrize(
    ("sheet", "extent"),
    [
        ('<dimension ref="A1:XFD1048576"/><sheetData/>', "A1:XFD1048576 (1,048,576 rows x 16,384 columns)"),
        ('<sheetData><row r="1"><c r="A1"><v>1</v></c><c r="ZZ999999"><v>2</v></c></row></sheetData>', "A1:ZZ999999"),
        ('<sheetData><row r="900000"><c r="AB900000"><v>1</v></c></row></sheetData>', "900,000 rows x 28 columns"),
    ],
)
def test_sheets_are_measured_before_reading(tmp_path: Path, sheet: str, extent: str) -> None:
    path = _workbook(tmp_path / "t.xlsx", sheet)
    with pytest.raises(InputError) as err:
        read_table(path)
    assert f"file '{path}': sheet 'Data' spans" in str(err.value) and extent in str(err.value)


def test_excel_cells_typed_by_the_whole_column(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "yi": ["0,5", "0,25", "#N/A"],  # numbers stored as text with decimal commas, and an Excel error
            "vi": [0.01, 0.02, 0.03],
            "when": [dt.datetime(2020, 3, 1), dt.datetime(2021, 3, 1), dt.datetime(2022, 3, 1)],
            "mixed": [1, "two", 3],
        }
    )
    frame.to_excel(tmp_path / "t.xlsx", index=False)
    got = read_table(tmp_path / "t.xlsx", ReadOptions(decimal=","))
    assert got.yi.iloc[:2].tolist() == [0.5, 0.25] and np.isnan(got.yi.iloc[2])
    assert holds_dates(got.when) and not holds_dates(got.vi)
    assert got.mixed.tolist() == [1, "two", 3]
    assert read_table(tmp_path / "t.xlsx").yi.iloc[0] == "0,5"  # without --decimal , text stays text


def test_dates_are_recognised_in_every_form(tmp_path: Path) -> None:
    assert holds_dates(pd.Series(["01.03.2020", "15.04.2021", None]))
    assert holds_dates(pd.Series(["2020-03-01", "2021-04-15 10:30"]))
    assert holds_dates(pd.Series([dt.date(2020, 3, 1), dt.date(2021, 1, 1)], dtype=object))
    assert not holds_dates(pd.Series(["primary", "01.03.2020"]))
    assert not holds_dates(pd.Series([2020, 2021]))
    coded = pd.DataFrame({"when": [dt.datetime(2020, 1, 1), dt.datetime(2021, 5, 1)], "x": [1.0, 2.0]})
    pyreadstat.write_sav(coded, str(tmp_path / "t.sav"))
    assert holds_dates(read_table(tmp_path / "t.sav").when)


def test_sources_for_duckdb_read_the_same_table(table: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    messy = table.assign(yi=[str(v).replace(".", ",") for v in table.yi])
    messy.loc[2, "yi"] = "NA"
    messy.to_csv(path, sep=";", decimal=",", index=False)
    source = open_source(path, drop_missing=["yi", "level", "absent"])
    assert source.rows == 4 and source.rows_dropped == 1 and source.missing == {"yi": 1, "level": 0}
    assert [str(n) for n in source.notes] == [
        f"file '{path}': decimal commas detected (columns yi, vi) and read as numbers"
    ]
    con = duckdb.connect()
    register(con, "src", source)
    got = con.execute("SELECT * FROM src").df()
    assert got.yi.tolist() == [0.5, -1.25, 0.125] and got.level.tolist() == ["low", "high", "mid"]
    assert con.execute("SELECT typeof(yi) FROM src LIMIT 1").fetchall() == [("DOUBLE",)]
    table.to_parquet(tmp_path / "t.parquet")
    register(con, "pq", open_source(tmp_path / "t.parquet", drop_missing=["yi"]))
    assert con.execute("SELECT count(*) FROM pq").fetchall() == [(4,)]
    table.to_excel(tmp_path / "t.xlsx", index=False)
    register(con, "xl", tmp_path / "t.xlsx")
    assert con.execute("SELECT sum(yi) FROM xl").fetchall() == [(pytest.approx(1.375),)]


def test_sources_refuse_what_tables_refuse(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("school,score\n")
    with pytest.raises(InputError, match="has a header but no rows"):
        open_source(path)
    path.write_text("school,score,school\n1,2,3\n")
    with pytest.raises(InputError, match="appears twice"):
        open_source(path)
    path.write_bytes(b"school,name\n" + b"1,a\n" * 5000 + b"2,\xff\n")
    with pytest.raises(InputError, match="line 5002, column 'name'"):
        open_source(path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"decimal": ";"}, "--decimal: give '.' or ','"),
        ({"delimiter": ";;"}, "--delimiter: give one character"),
        ({"delimiter": ",", "decimal": ","}, "the decimal mark and the delimiter are both ','"),
    ],
)
def test_reading_options_are_checked(options: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        ReadOptions(**options)
