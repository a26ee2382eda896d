"""Messy and hostile inputs through the command line: every one ends in one clear line on stderr, a
non-zero exit code and no traceback; no output file is half-written, none is left behind, and no
input is overwritten. Honest but messy inputs (Dutch and German exports) are read and say so."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import edueffects as ee
from edueffects.cli import main

REF = Path(__file__).resolve().parent / "reference" / "data"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


# ---- inputs -----------------------------------------------------------------------------------------


def effects() -> pd.DataFrame:
    return pd.read_csv(REF / "assink2016.csv")


def soma_tables(folder: Path) -> tuple[Path, Path, Path]:
    example = ee.simulate.soma()
    paths = (folder / "tsr.csv", folder / "tsr_studies.csv", folder / "tsr_amstar.csv")
    for path, table in zip(paths, (example.effects, example.studies, example.amstar), strict=True):
        table.to_csv(path, index=False)
    return paths


def state(**overrides: object) -> pd.DataFrame:
    return ee.simulate.recovery(seed=5, n_schools=40, students_per_school=8, **overrides)


RECOVERY = ["--school", "school", "--cohort", "cohort", "--pandemic-cohorts", "2018", "2019", "--pre", "score5",
            "--post", "score8"]  # fmt: skip


def xlsx(path: Path, sheet_xml: str) -> Path:
    """A minimal workbook whose first sheet is ``sheet_xml`` (inline strings, no styles)."""
    main_ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel_ns = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    pkg_ns = "http://schemas.openxmlformats.org/package/2006/relationships"
    parts = {
        "[Content_Types].xml": '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.'
        'org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-'
        'package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName='
        '"/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"'
        '/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-'
        'officedocument.spreadsheetml.worksheet+xml"/></Types>',
        "_rels/.rels": f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{pkg_ns}"><Relationship '
        f'Id="rId1" Type="{rel_ns}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{main_ns}" xmlns:r="{rel_ns}">'
        '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{pkg_ns}">'
        f'<Relationship Id="rId1" Type="{rel_ns}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
        "xl/worksheets/sheet1.xml": f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{main_ns}">'
        f"{sheet_xml}</worksheet>",
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return path


HEADER_ROW = (
    '<row r="1"><c r="A1" t="inlineStr"><is><t>yi</t></is></c><c r="B1" t="inlineStr"><is><t>vi</t></is></c></row>'
)
DATA_ROW = '<row r="2"><c r="A2"><v>0.1</v></c><c r="B2"><v>0.01</v></c></row>'


def huge_claim(folder: Path) -> Path:
    return xlsx(folder / "claim.xlsx", f'<dimension ref="A1:XFD1048576"/><sheetData>{HEADER_ROW}{DATA_ROW}</sheetData>')


def far_cell(folder: Path) -> Path:
    far = '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>'
    return xlsx(folder / "far.xlsx", f'<dimension ref="A1:B2"/><sheetData>{HEADER_ROW}{DATA_ROW}{far}</sheetData>')


# ---- the cases: (id, build(folder) -> argv, expected part of the message) ----------------------------

Build = Callable[[Path], list[str]]


def _meta(file: Path, *extra: str) -> list[str]:
    return ["meta", str(file), "--yi", "yi", "--vi", "vi", *extra]


def late_text(folder: Path) -> list[str]:
    data = pd.DataFrame({"yi": np.linspace(-0.5, 0.5, 25_000), "vi": 0.02})
    text = data.to_csv(index=False).splitlines()
    text[20_482] = "n/a-ish,0.02"  # data row 20,482: after DuckDB's and pandas' sample
    (folder / "late.csv").write_text("\n".join(text) + "\n")
    return _meta(folder / "late.csv")


def latin1_late(folder: Path) -> list[str]:
    data = effects()
    body = data.to_csv(index=False).encode("utf-8")
    lines = body.split(b"\n")
    lines[90] += b"\xe9"  # the last column: deltype
    (folder / "latin1.csv").write_bytes(b"\n".join(lines))
    return _meta(folder / "latin1.csv", "--mods", "deltype")


def header_only(command: str) -> Build:
    def build(folder: Path) -> list[str]:
        if command == "meta":
            (folder / "h.csv").write_text("yi;vi;study\n")
            return _meta(folder / "h.csv")
        if command == "soma":
            (folder / "h.csv").write_text("meta_analysis,effect,se,outcome_cluster\n")
            return ["soma", str(folder / "h.csv")]
        (folder / "h.csv").write_text("school,cohort,ses,score5,score8\n")
        return ["recovery", str(folder / "h.csv"), *RECOVERY, "--moderators", "ses"]

    return build


def duplicated(command: str) -> Build:
    def build(folder: Path) -> list[str]:
        if command == "meta":
            (folder / "d.csv").write_text("yi,vi,yi\n0.1,0.01,0.2\n0.3,0.02,0.1\n")
            return _meta(folder / "d.csv")
        data = state()
        text = data.to_csv(index=False)
        header, rest = text.split("\n", 1)
        (folder / "d.csv").write_text(header.replace("nongerman", "ses") + "\n" + rest)
        return ["recovery", str(folder / "d.csv"), *RECOVERY, "--moderators", "ses"]

    return build


def huge_xlsx(command: str, maker: Callable[[Path], Path]) -> Build:
    def build(folder: Path) -> list[str]:
        path = maker(folder)
        return _meta(path) if command == "meta" else ["soma", str(path)]

    return build


def excel_date_moderator(command: str) -> Build:
    def build(folder: Path) -> list[str]:
        if command == "meta":
            data = effects().assign(published=pd.to_datetime("2001-01-01") + pd.to_timedelta(np.arange(100), "D"))
            data.to_excel(folder / "dated.xlsx", index=False)
            return _meta(folder / "dated.xlsx", "--mods", "published")
        example = ee.simulate.soma()
        dated = example.effects.assign(year=pd.to_datetime(example.effects.year.astype(str) + "-01-01"))
        dated.to_excel(folder / "dated.xlsx", index=False)
        return ["soma", str(folder / "dated.xlsx"), "--moderators", "year"]

    return build


def dates_as_text(folder: Path) -> list[str]:
    data = effects().assign(published=[f"{1 + i % 28:02d}.03.20{i % 20:02d}" for i in range(100)])
    data.to_csv(folder / "dated.csv", sep=";", decimal=",", index=False)
    return _meta(folder / "dated.csv", "--mods", "published")


def tiny_variance(folder: Path) -> list[str]:
    data = effects()
    data.loc[7, "vi"] = 1e-300
    data.to_csv(folder / "tiny.csv", index=False)
    return _meta(folder / "tiny.csv")


def huge_effect(folder: Path) -> list[str]:
    data = effects()
    data.loc[3, "yi"] = 1e300
    data.to_csv(folder / "huge.csv", index=False)
    return _meta(folder / "huge.csv")


def huge_d(folder: Path) -> list[str]:
    effects_csv, _, _ = soma_tables(folder)
    data = pd.read_csv(effects_csv)
    row = int(np.flatnonzero(data.se.isna() & data.ci_lb.isna())[0])
    data.loc[row, "effect"] = 1e300
    data.to_csv(effects_csv, index=False)
    return ["soma", str(effects_csv), "--measure", "d"]


def soma_measure(folder: Path) -> list[str]:
    study = _study(folder)
    text = study.read_text().replace('measure = "r"', 'measure = "odds"')
    study.write_text(text)
    return ["report", str(study), "--out", str(folder / "report"), "--quiet"]


def _study(folder: Path) -> Path:
    for name in ("tsr_effects.csv", "tsr_studies.csv", "tsr_amstar.csv", "state.csv", "study.toml"):
        shutil.copy(EXAMPLES / name, folder / name)
    return folder / "study.toml"


def sesoi(value: str) -> Build:
    def build(folder: Path) -> list[str]:
        study = _study(folder)
        study.write_text(study.read_text().replace("sesoi = 0.05", f"sesoi = {value}"))
        return ["report", str(study), "--out", str(folder / "report"), "--quiet"]

    return build


def studies_unknown(folder: Path) -> list[str]:
    effects_csv, studies_csv, _ = soma_tables(folder)
    studies = pd.read_csv(studies_csv)
    extra = pd.DataFrame({"meta_analysis": ["SYN-MA99"], "study": ["S-000001"]})
    pd.concat([studies, extra]).to_csv(studies_csv, index=False)
    return ["soma", str(effects_csv), "--studies", str(studies_csv)]


def amstar_twice(folder: Path) -> list[str]:
    effects_csv, _, amstar_csv = soma_tables(folder)
    amstar = pd.read_csv(amstar_csv)
    pd.concat([amstar, amstar.iloc[[3]]]).to_csv(amstar_csv, index=False)
    return ["soma", str(effects_csv), "--amstar", str(amstar_csv)]


def unknown_moderator(folder: Path) -> list[str]:
    effects_csv, _, _ = soma_tables(folder)
    return ["soma", str(effects_csv), "--moderators", "school_levle"]


def one_cluster(folder: Path) -> list[str]:
    data = effects().assign(study=1)
    data.to_csv(folder / "one.csv", index=False)
    return _meta(folder / "one.csv", "--robust", "study")


def one_meta_analysis(folder: Path) -> list[str]:
    effects_csv, _, _ = soma_tables(folder)
    data = pd.read_csv(effects_csv).assign(meta_analysis="SYN-MA01")
    data.to_csv(effects_csv, index=False)
    return ["soma", str(effects_csv)]


def constant_moderator(folder: Path) -> list[str]:
    effects().assign(const=1.0).to_csv(folder / "c.csv", index=False)
    return _meta(folder / "c.csv", "--mods", "const")


def ragged(folder: Path) -> list[str]:
    (folder / "r.csv").write_text("yi,vi\n0.1,0.01\n0.2,0.02,7\n0.3,0.01\n")
    return _meta(folder / "r.csv")


def ambiguous_decimal(folder: Path) -> list[str]:
    (folder / "a.csv").write_text("yi;vi\n0,1;0.01\n0,2;0.02\n0,3;0.01\n")
    return _meta(folder / "a.csv")


def json_is_input(folder: Path) -> list[str]:
    effects().to_csv(folder / "e.csv", index=False)
    return _meta(folder / "e.csv", "--json", str(folder / "e.csv"))


def json_is_folder(folder: Path) -> list[str]:
    effects().to_csv(folder / "e.csv", index=False)
    (folder / "out.json").mkdir()
    return _meta(folder / "e.csv", "--json", str(folder / "out.json"))


def report_into_inputs(folder: Path) -> list[str]:
    tables = folder / "tables"
    tables.mkdir()
    study = _study(tables)
    text = study.read_text()
    for name in ("tsr_effects.csv", "tsr_studies.csv", "tsr_amstar.csv", "state.csv"):
        text = text.replace(f'"{name}"', f'"tables/{name}"')
    (folder / "study.toml").write_text(text)
    study.unlink()
    return ["report", str(folder / "study.toml"), "--out", str(folder), "--quiet"]


def report_out_is_file(folder: Path) -> list[str]:
    study = _study(folder)
    (folder / "notes.txt").write_text("mine")
    return ["report", str(study), "--out", str(folder / "notes.txt"), "--quiet"]


def plots_into_other_files(folder: Path) -> list[str]:
    effects_csv, _, _ = soma_tables(folder)
    (folder / "figures").mkdir()
    (folder / "figures" / "mine.txt").write_text("mine")
    return ["soma", str(effects_csv), "--plots", str(folder / "figures")]


def read_only_folder(folder: Path) -> list[str]:
    effects().to_csv(folder / "e.csv", index=False)
    return _meta(folder / "e.csv", "--json", "/proc/edueffects.json")


def unknown_encoding(folder: Path) -> list[str]:
    effects().to_csv(folder / "e.csv", index=False)
    return _meta(folder / "e.csv", "--encoding", "klingon")


def recovery_decimal_late(folder: Path) -> list[str]:
    data = state()
    data.loc[len(data) - 3, "ses"] = np.nan
    text = data.to_csv(index=False, sep=";", decimal=",").replace(";;", ";NA;")
    (folder / "s.csv").write_text(text)
    return ["recovery", str(folder / "s.csv"), *RECOVERY, "--moderators", "ses"]


CASES: list[tuple[str, Build, str]] = [
    ("non-numeric cell after row 20,480", late_text, "row 20482: value 'n/a-ish' is not a number"),
    ("Latin-1 bytes late in the file", latin1_late, "line 91, column 'deltype': byte 0xe9 is not UTF-8 text"),
    ("header-only CSV, meta", header_only("meta"), "has a header but no rows"),
    ("header-only CSV, soma", header_only("soma"), "has a header but no rows"),
    ("header-only CSV, recovery", header_only("recovery"), "has a header but no rows"),
    ("duplicated columns, meta", duplicated("meta"), "column name 'yi' appears twice"),
    ("duplicated columns, recovery", duplicated("recovery"), "column name 'ses' appears twice"),
    ("xlsx claiming A1:XFD1048576, meta", huge_xlsx("meta", huge_claim), "spans A1:XFD1048576"),
    ("xlsx with a cell at XFD1048576, soma", huge_xlsx("soma", far_cell), "1,048,576 rows x 16,384 columns"),
    ("Excel date as moderator, meta", excel_date_moderator("meta"), "moderator 'published' holds dates"),
    ("Excel date as moderator, soma", excel_date_moderator("soma"), "moderator 'year' holds dates"),
    ("dates as text as moderator", dates_as_text, "moderator 'published' holds dates"),
    ("vi = 1e-300", tiny_variance, "column 'vi' row 8: sampling variance 1e-300 lies outside"),
    ("yi = 1e300", huge_effect, "column 'yi' row 4: effect 1e+300 lies outside"),
    ("d = 1e300 with k and n", huge_d, "d = 1e+300 lies outside"),
    ("soma.measure = 'odds' in a study file", soma_measure, "measure 'odds' is not one of r, z, d"),
    ("sesoi = inf in a study file", sesoi("inf"), "key 'recovery.sesoi' must be a finite number"),
    ("sesoi = nan in a study file", sesoi("nan"), "key 'recovery.sesoi' must be a finite number"),
    ("studies table names an absent meta-analysis", studies_unknown, "meta-analysis 'SYN-MA99' is not in the"),
    ("AMSTAR table rates a meta-analysis twice", amstar_twice, "is rated twice"),
    ("mistyped soma moderator", unknown_moderator, "moderator 'school_levle' is not a column"),
    ("robust inference with one cluster", one_cluster, "cluster"),
    ("soma with one meta-analysis", one_meta_analysis, "needs at least two"),
    ("constant moderator", constant_moderator, "const"),
    ("a row with a value too many", ragged, "line 3: 3 values where the header has 2"),
    ("decimal commas and points mixed", ambiguous_decimal, "say which is meant with --decimal"),
    ("--json equal to the input", json_is_input, "is an input; choose another name"),
    ("--json is a folder", json_is_folder, "is a folder; give a file name"),
    ("report --out . with inputs under tables/", report_into_inputs, "contains the input"),
    ("report --out is an existing file", report_out_is_file, "is a file, not a folder"),
    ("--plots into a folder of other files", plots_into_other_files, "already holds other files"),
    ("--json into a folder nobody can write", read_only_folder, "cannot use '/proc/edueffects.json'"),
    ("unknown --encoding", unknown_encoding, "'klingon' is not an encoding"),
]


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(("build", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_gives_one_line(
    build: Build, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = build(tmp_path)
    before = _digests(tmp_path)
    if "--json" not in argv and argv[0] != "report":
        argv += ["--json", str(tmp_path / "result.json")]
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (code, err)
    assert len(err.splitlines()) == 1 and err.startswith("edueffects: error: "), err
    assert message in err, err
    assert "Traceback" not in captured.err + captured.out
    after = _digests(tmp_path)
    assert after == before  # nothing written, nothing partial, no input touched
    assert not any(p.name.startswith(".") for p in tmp_path.rglob("*") if "partial" in p.name)


def test_errors_in_dutch_and_german(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    late_text(tmp_path)
    assert main(_meta(tmp_path / "late.csv", "--lang", "de")) == 2
    assert capsys.readouterr().err.strip() == (
        "edueffects: Fehler: Spalte 'yi' Zeile 20482: Wert 'n/a-ish' ist keine Zahl"
    )
    assert main(["meta", "--lang", "nl", "--yi", "yi"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edueffects: fout: de volgende argumenten zijn verplicht: file, --vi")
    assert len(err.splitlines()) == 1


# ---- messy but honest: read, and said ---------------------------------------------------------------


def test_dutch_csv_for_meta(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    effects().to_csv(tmp_path / "nl.csv", sep=";", decimal=",", index=False)
    args = _meta(tmp_path / "nl.csv", "--cluster", "study", "--within", "esid", "--mods", "deltype", "--json", "-")
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sigma2"] == pytest.approx([0.189890565648584, 0.0846878212486833], rel=1e-6)
    assert "decimal commas detected (columns yi, vi, year)" in out["input"]["notes"][0]
    assert main(_meta(tmp_path / "nl.csv", "--decimal", ",", "--json", "-")) == 0
    assert json.loads(capsys.readouterr().out)["input"]["notes"] == []  # an explicit --decimal needs no note


def test_german_csv_for_soma_and_recovery(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    effects_csv, studies_csv, amstar_csv = soma_tables(tmp_path)
    for path in (effects_csv, studies_csv, amstar_csv):
        pd.read_csv(path).to_csv(path, sep=";", decimal=",", index=False)
    args = ["soma", str(effects_csv), "--studies", str(studies_csv), "--amstar", str(amstar_csv), "--json", "-"]
    assert main(args) == 0
    german = json.loads(capsys.readouterr().out)
    reference = ee.soma(ee.simulate.soma().effects)
    assert german["overall"]["r"] == pytest.approx(reference.overall_r()["r"], rel=1e-9)
    assert any("decimal commas detected" in n for n in german["input"]["notes"])
    data = state()
    data.to_csv(tmp_path / "state.csv", sep=";", decimal=",", index=False)
    assert main(["recovery", str(tmp_path / "state.csv"), *RECOVERY, "--moderators", "ses", "--json", "-"]) == 0
    german = json.loads(capsys.readouterr().out)
    direct = ee.recovery(data, school="school", cohort="cohort", pandemic_cohorts=[2018, 2019], moderators=["ses"],
                         pre="score5", post="score8")  # fmt: skip
    assert german["coefficients"][-1]["estimate"] == pytest.approx(float(direct.coefficients.estimate[-1]), rel=1e-9)
    assert "decimal commas detected" in german["input"]["notes"][0]


def test_drop_missing_counts_per_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = effects()
    data.loc[[2, 5], "yi"] = np.nan
    data.loc[[5, 9], "deltype"] = np.nan
    data.to_csv(tmp_path / "m.csv", index=False)
    assert main(_meta(tmp_path / "m.csv", "--mods", "deltype", "--json", "-")) == 2
    assert "--drop-missing" in capsys.readouterr().err
    assert main(_meta(tmp_path / "m.csv", "--mods", "deltype", "--drop-missing", "--json", "-")) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["input"]["rows_dropped"] == 3 and out["k"] == 97
    assert out["input"]["missing"] == {"yi": 2, "vi": 0, "deltype": 2}
    recovery_decimal_late(tmp_path)
    args = ["recovery", str(tmp_path / "s.csv"), *RECOVERY, "--moderators", "ses"]
    assert main([*args, "--json", "-"]) == 2
    assert "missing" in capsys.readouterr().err
    assert main([*args, "--drop-missing", "--json", "-"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["input"]["rows_dropped"] == 1 and out["input"]["missing"]["ses"] == 1
    effects_csv, _, _ = soma_tables(tmp_path)
    table = pd.read_csv(effects_csv)
    table.loc[4, "effect"] = np.nan
    table.to_csv(effects_csv, index=False)
    assert main(["soma", str(effects_csv), "--drop-missing", "--json", "-"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows_dropped"] == 1 and out["missing"]["effect"] == 1 and out["overall"]["k"] == 118


def test_labels_are_text_and_file_names_are_slugs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    effects_csv, _, _ = soma_tables(tmp_path)
    table = pd.read_csv(effects_csv)
    table["outcome_cluster"] = table.outcome_cluster.replace({"motivation": "$x$", "well-being": "$5 and $10"})
    table.to_csv(effects_csv, index=False)
    assert main(["soma", str(effects_csv), "--plots", str(tmp_path / "plots")]) == 0
    forest = (tmp_path / "plots" / "forest.svg").read_text()
    assert "$5 and $10" in forest and "$x$" in forest
    data = state().rename(columns={"ses": "ses/income"})
    data.to_parquet(tmp_path / "s.parquet")
    args = ["recovery", str(tmp_path / "s.parquet"), *RECOVERY, "--moderators", "ses/income"]
    assert main([*args, "--plots", str(tmp_path / "rplots")]) == 0
    names = sorted(p.name for p in (tmp_path / "rplots").iterdir())
    assert all("/" not in n for n in names) and any(n.startswith("gain_by_ses_income_tercile-") for n in names)
    assert not (tmp_path / "rplots" / "gain_by_ses").exists()
    capsys.readouterr()


def test_plots_replace_an_earlier_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    effects_csv, _, _ = soma_tables(tmp_path)
    plots = tmp_path / "plots"
    assert main(["soma", str(effects_csv), "--plots", str(plots), "--quiet"]) == 0
    (plots / "stale.svg").write_text("<svg/>")  # a file of an earlier run
    assert main(["soma", str(effects_csv), "--plots", str(plots), "--quiet"]) == 0
    assert not (plots / "stale.svg").exists() and (plots / "forest.svg").exists()
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name or "previous" in p.name] == []
    capsys.readouterr()


def test_xlsx_dimensions_fail_fast_in_little_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for maker in (huge_claim, far_cell):
        path = maker(tmp_path)
        assert path.stat().st_size < 2_000
        tracemalloc.start()
        try:
            assert main(_meta(path)) == 2
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 50e6, peak
        assert "more than 20,000,000 cells" in capsys.readouterr().err


def test_program_faults_exit_3_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("float division by zero\nsecond line")

    effects().to_csv(tmp_path / "e.csv", index=False)
    monkeypatch.setattr(sys.modules["edueffects.meta"], "meta", broken)
    assert main(_meta(tmp_path / "e.csv")) == 3
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "internal error (ZeroDivisionError: float division by zero)" in err and "--debug" in err
    assert main([*_meta(tmp_path / "e.csv"), "--debug"]) == 3
    assert "Traceback" in capsys.readouterr().err
    assert main([*_meta(tmp_path / "e.csv"), "--lang", "de"]) == 3
    assert "interner Fehler" in capsys.readouterr().err


def test_warnings_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import warnings

    real = sys.modules["edueffects.meta"].meta

    def noisy(*args: object, **kwargs: object) -> object:
        warnings.warn("overflow encountered in square\nmore", RuntimeWarning, stacklevel=1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    effects().to_csv(tmp_path / "e.csv", index=False)
    monkeypatch.setattr(sys.modules["edueffects.meta"], "meta", noisy)
    assert main(_meta(tmp_path / "e.csv", "--json", "-")) == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == "edueffects: warning: overflow encountered in square"
    json.loads(captured.out)


def test_progress_goes_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    effects().to_csv(tmp_path / "e.csv", index=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(_meta(tmp_path / "e.csv", "--cluster", "study", "--within", "esid", "--json", "-")) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["k"] == 100  # stdout holds the JSON only


def test_console_script_has_no_traceback(tmp_path: Path) -> None:
    exe = shutil.which("edueffects")
    cmd = [exe] if exe else [sys.executable, "-m", "edueffects"]
    late_text(tmp_path)
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    proc = subprocess.run([*cmd, *_meta(tmp_path / "late.csv")], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "edueffects: error: column 'yi' row 20482: value 'n/a-ish' is not a number"
