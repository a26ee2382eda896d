"""Hostile input for ``edueffects meta --rho`` and ``--rho-sensitivity``: every bad value ends in exit code 2
with one line on stderr naming the option or value, no traceback and no output file; odd but valid values
give the right numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edueffects.cli import main
from edueffects.meta import meta, rho_sensitivity

DATA = pd.read_csv(Path(__file__).resolve().parent / "reference" / "data" / "assink2016.csv")


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "assink.csv"
    DATA.to_csv(path, index=False)
    return path


def _args(path: Path, *extra: str, cluster: bool = True) -> list[str]:
    base = ["meta", str(path), "--yi", "yi", "--vi", "vi", "--quiet"]
    return [*base, *(["--cluster", "study", "--within", "esid"] if cluster else []), *extra]


def _refused(args: list[str], capsys: pytest.CaptureFixture[str], needle: str, out: Path | None = None) -> None:
    assert main(args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err
    assert captured.out == ""
    if out is not None:
        assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [(["--rho", "nan"], "--rho"), (["--rho", "inf"], "--rho"), (["--rho", "0,5"], "--rho"),
     (["--rho", "true"], "--rho"), (["--rho", ""], "--rho"), (["--rho", "1"], "rho must be"),
     (["--rho", "-0.2"], "rho must be"), (["--rho", "0.9999999999999999999"], "rho must be"),
     (["--rho-sensitivity", "0.2", "0.2"], "rhos repeats 0.2"), (["--rho-sensitivity", "0", "-0"], "rhos repeats 0"),
     (["--rho-sensitivity", "0.2", "abc"], "--rho-sensitivity"), (["--rho-sensitivity", "nan"], "--rho-sensitivity"),
     (["--rho-sensitivity", "-0.1"], "rho must be"), (["--rho-sensitivity", "0.5", "1.5"], "rho must be"),
     (["--rho-sensitivity", "--method", "DL"], "REML or ML"), (["--rho-sensitivity", "--test", "knha"], "knha"),
     (["--rho", "0.5", "--tau2", "0.1"], "tau2"), (["--rho", "0.5", "--robust", "nope"], "nope")],
)  # fmt: skip
def test_bad_rho_options_exit_2_without_output(
    table: Path, tmp_path: Path, extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "result.json"
    _refused(_args(table, *extra, "--json", str(out)), capsys, needle, out)


def test_rho_options_need_cluster(table: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _refused(_args(table, "--rho", "0.5", cluster=False), capsys, "give cluster")
    _refused(_args(table, "--rho-sensitivity", cluster=False), capsys, "--rho-sensitivity needs --cluster")


def test_repeated_within_values_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dup.csv"
    DATA.assign(esid=1).to_csv(path, index=False)
    _refused(_args(path, "--rho", "0.5"), capsys, "'esid' must identify the effects within each 'study': row 2")
    _refused(_args(path, "--rho-sensitivity", "0.5"), capsys, "row 2 repeats a value")


def test_missing_cluster_exit_2_unless_dropped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "missing.csv"
    DATA.assign(study=DATA["study"].astype(float).where(DATA.index != 3)).to_csv(path, index=False)
    _refused(_args(path, "--rho-sensitivity", "0.5"), capsys, "column 'study' row 4 is missing")
    assert main(_args(path, "--rho-sensitivity", "0.5", "--drop-missing", "--json", "-")) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["rho_sensitivity"]["warnings"] == ["1 row(s) with missing values dropped"]
    assert payload["k"] == len(DATA) - 1


def test_zero_variance_in_a_cluster_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "zero.csv"
    DATA.assign(vi=DATA["vi"].where(DATA["study"] != DATA["study"].iloc[0], 0.0)).to_csv(path, index=False)
    _refused(_args(path, "--rho", "0.5"), capsys, "column 'vi' row 1: sampling variance must be > 0")


def test_odd_but_valid_rho_values(table: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_args(table, "--rho", "-0", "--json", "-")) == 0
    text = capsys.readouterr().out
    assert json.loads(text)["rho"] == 0.0 and '"rho": -0' not in text
    assert main(_args(table, "--rho", "1e-400", "--json", "-")) == 0  # underflows to 0
    assert json.loads(capsys.readouterr().out)["rho"] == 0.0
    assert main(_args(table, "--rho", "0.999999", "--json", "-")) == 0
    payload = json.loads(capsys.readouterr().out)
    direct = meta(DATA, "yi", "vi", cluster="study", within="esid", rho=0.999999)
    assert payload["coefficients"][0]["estimate"] == pytest.approx(direct.coefficients.estimate[0], rel=1e-12)


def test_many_sensitivity_values_in_the_order_given(table: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rhos = [f"{r:.3f}" for r in np.linspace(0.98, 0.0, 30)]
    assert main(_args(table, "--rho-sensitivity", *rhos, "--json", "-")) == 0
    rows = json.loads(capsys.readouterr().out)["rho_sensitivity"]["rows"]
    assert [row["rho"] for row in rows] == [float(r) for r in rhos]
    direct = rho_sensitivity(DATA, "yi", "vi", "study", "esid", rhos=[0.98], variance_ci=False).tidy()
    assert rows[0]["robust_se"] == pytest.approx(float(direct["robust_se"].iloc[0]), rel=1e-12)


def test_sensitivity_on_every_cluster_of_one_effect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Clusters of one effect: rho changes nothing, every row of the table is the same fit."""
    path = tmp_path / "single.csv"
    DATA.groupby("study").head(1).to_csv(path, index=False)
    assert main(_args(path, "--rho-sensitivity", "0", "0.9", "--json", "-")) == 0
    rows = json.loads(capsys.readouterr().out)["rho_sensitivity"]["rows"]
    assert rows[0]["estimate"] == pytest.approx(rows[1]["estimate"], rel=1e-9)
    assert rows[0]["robust_se"] == pytest.approx(rows[1]["robust_se"], rel=1e-7)
