"""``edueffects es``: a coded spreadsheet to yi/vi with the rule of every row, written atomically, never over
the input; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edueffects.cli import main

REF = Path(__file__).resolve().parent / "reference"
CASES = json.loads((REF / "metafor_escalc.json").read_text())


def test_es_writes_yi_vi_and_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES["normand1999_smd_t"]
    out = tmp_path / "es.csv"
    code = main(
        [
            "es",
            str(REF / case["data"]),
            "--measure",
            "SMD",
            "--map",
            "n1i=n_treat",
            "n2i=n_ctrl",
            "ti=t",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    table = pd.read_csv(out)
    original = pd.read_csv(REF / case["data"])
    assert list(table.columns) == [*original.columns, "yi", "vi", "es_rule"]
    np.testing.assert_allclose(table.yi, case["yi"], rtol=1e-12)
    np.testing.assert_allclose(table.vi, case["vi"], rtol=1e-12)
    assert set(table.es_rule) == {"d from t"}
    printed = capsys.readouterr().out
    assert "9 effect size(s) (SMD) written to" in printed and "d from t: 9" in printed
    assert not list(tmp_path.glob(".*partial"))


def test_es_excel_output_and_skipped_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    coded = pd.DataFrame({"ri": [0.3, None, 0.1], "ni": [50, 40, 80], "ti": [None, 2.0, None]})
    source = tmp_path / "coded.csv"
    coded.to_csv(source, index=False)
    out = tmp_path / "es.xlsx"
    assert main(["es", str(source), "--measure", "ZCOR", "--out", str(out), "--lang", "de"]) == 0
    table = pd.read_excel(out)
    assert table.es_rule.tolist() == ["r", "r from t", "r"]
    assert table.yi.iloc[0] == pytest.approx(np.arctanh(0.3)) and table.vi.iloc[1] == pytest.approx(1 / 37)
    assert "Effektgröße" in capsys.readouterr().out
    coded.assign(ti=np.nan).to_csv(source, index=False)
    assert main(["es", str(source), "--measure", "COR", "--out", str(tmp_path / "skip.csv"), "--skip-incomplete"]) == 0
    assert pd.isna(pd.read_csv(tmp_path / "skip.csv").yi.iloc[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--measure", "SMD", "--map", "n1i"], "--map: 'n1i' is not KEY=COLUMN"),
        (["--measure", "SMD", "--map", "size=n"], "unknown effect-size key 'size'"),
        (["--measure", "SMD"], "row 1: no rule for SMD applies"),
        (["--measure", "COR", "--map", "ni=n", "ri=r"], "column 'r' (for ri) not found"),
    ],
)
def test_es_bad_input_is_one_line_and_writes_nothing(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "es.csv"
    code = main(["es", str(REF / "data" / "escalc_normand1999_t_total.csv"), *args, "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_es_never_overwrites_the_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "coded.csv"
    pd.DataFrame({"ri": [0.3], "ni": [50]}).to_csv(source, index=False)
    before = source.read_bytes()
    assert main(["es", str(source), "--measure", "COR", "--out", str(source)]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert source.read_bytes() == before
    pd.DataFrame({"ri": [0.3], "ni": [50], "yi": [1.0]}).to_csv(source, index=False)
    assert main(["es", str(source), "--measure", "COR", "--out", str(tmp_path / "o.csv")]) == 2
    assert "column 'yi' is already in the input" in capsys.readouterr().err
    assert main(["es", str(source), "--measure", "COR", "--out", str(tmp_path / "o.json")]) == 2
    assert main(["es", str(source), "--measure", "COR", "--out", str(tmp_path / "nope" / "o.csv")]) == 2
    assert not (tmp_path / "o.csv").exists()
