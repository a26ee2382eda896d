"""The command line: JSON shape, exit codes and one-line errors, no partial output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edueffects.cli import main

REF = Path(__file__).resolve().parent / "reference" / "data"


def test_meta_json_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "meta",
            str(REF / "assink2016.csv"),
            "--yi", "yi", "--vi", "vi",
            "--cluster", "study", "--within", "esid",
            "--mods", "deltype", "--robust", "study", "--json", "-",
        ]
    )  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("coefficients", "sigma2", "QE", "QEp", "QM", "QMp", "QMdf", "logLik", "AIC", "BIC", "k", "I2"):
        assert key in out
    assert [c["name"] for c in out["coefficients"]] == ["intrcpt", "deltypegeneral", "deltypeovert"]
    assert set(out["coefficients"][0]) == {"name", "estimate", "se", "stat", "df", "pval", "ci_lb", "ci_ub"}
    assert out["robust"]["coefficients"][1]["se"] == pytest.approx(0.0538568247545074, rel=1e-6)
    assert out["robust"]["coefficients"][1]["df"] == pytest.approx(2.27648132825752, rel=1e-6)
    assert out["sigma2"] == pytest.approx([0.189890565648584, 0.0846878212486833], rel=1e-6)
    assert len(out["variance_ci"]) == 2 and out["convergence"]["converged"] is True
    assert out["prediction"] is None


def test_meta_formula_predictions_and_robust_wald(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "meta", str(REF / "assink2016.csv"), "--yi", "yi", "--vi", "vi", "--cluster", "study", "--within", "esid",
            "--mods", "~ deltype + year", "--predict", "deltype=general,overt", "year=5,5",
            "--robust", "study", "--no-variance-ci", "--level", "0.9", "--json", "-",
        ]
    )  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["level"] == 90.0 and out["formula"] == "~ deltype + year"
    assert out["terms"]["deltype"] == ["deltypegeneral", "deltypeovert"]
    assert [w["df1"] for w in out["wald"]] == [2, 1]
    rows = out["predictions"]["rows"]
    assert [r["deltype"] for r in rows] == ["general", "overt"] and rows[0]["pi_lb"] < rows[0]["ci_lb"]
    robust_deltype = out["robust"]["wald"][0]
    assert robust_deltype["distribution"] == "F" and "HTZ" in robust_deltype["method"]
    assert robust_deltype["df2"] < 16  # HTZ denominator df, not the number of clusters


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mods", "~ year +* deltype"], "cannot be read"),
        (["--mods", "~ deltype", "year"], "one quoted formula"),
        (["--predict", "year"], "COLUMN=VALUE"),
        (["--cluster", "study", "--sigma2", "NA"], "1 value(s) for 2"),
        (["--cluster", "study", "--sigma2", "x", "0"], "not a number or NA"),
        (["--level", "1"], "level"),
    ],
)
def test_meta_new_options_refuse_bad_values(extra: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["meta", str(REF / "assink2016.csv"), "--yi", "yi", "--vi", "vi", "--within", "esid", *extra]
    if "--cluster" not in extra:
        args.remove("--within")
        args.remove("esid")
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_meta_univariate_json_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out.json"
    code = main(["meta", str(REF / "bcg.csv"), "--yi", "yi", "--vi", "vi", "--method", "DL", "--json", str(target)])
    assert code == 0
    out = json.loads(target.read_text())
    assert out["tau2"] == pytest.approx(0.308760262862376, rel=1e-9)
    assert out["prediction"]["pi_lb"] == pytest.approx(-1.85815375273217, rel=1e-9)
    assert "Random-effects model (DL)" in capsys.readouterr().out


def test_bad_input_gives_one_line_and_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out.json"
    code = main(["meta", str(REF / "bcg.csv"), "--yi", "effect", "--vi", "vi", "--json", str(target)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edueffects: error: column 'effect' not found")
    assert len(err.splitlines()) == 1
    assert not target.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("", "is empty"),
        ("yi,vi\n", "has a header but no rows"),
        (b"yi,vi\n0.1,\xff\xfe\n", "is not UTF-8"),
    ],
)
def test_unreadable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: object, message: str) -> None:
    path = tmp_path / "data.csv"
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    assert main(["meta", str(path), "--yi", "yi", "--vi", "vi"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_demo_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"Report written to {tmp_path / 'demo' / 'index.html'}" in out
    assert "pooled correlation is r = .26" in out
    names = {p.name for p in (tmp_path / "demo").iterdir()}
    assert {"index.html", "soma.json", "recovery.json", "tables"} <= names
    assert main(["demo", "--out", str(tmp_path / "de"), "--lang", "de", "--quiet"]) == 0
    assert "Bericht geschrieben nach" in capsys.readouterr().out


def test_console_script_exit_code() -> None:
    exe = shutil.which("edueffects")
    cmd = [exe] if exe else [sys.executable, "-m", "edueffects"]
    proc = subprocess.run([*cmd, "meta", "nope.csv", "--yi", "a", "--vi", "b"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "edueffects: error: file 'nope.csv' does not exist"
    assert proc.stdout == ""


def test_recovery_cli_json_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "state.parquet"
    assert main(["simulate", "recovery", "--out", str(data), "--schools", "40", "--students-per-school", "10"]) == 0
    assert "synthetic" in capsys.readouterr().out
    args = ["recovery", str(data), "--school", "school", "--cohort", "cohort", "--pandemic-cohorts", "2018", "2019"]
    assert main([*args, "--moderators", "ses", "nongerman", "--pre", "score5", "--post", "score8", "--json", "-"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("coefficients", "variance_components", "logLik", "robust", "equivalence", "mdes", "convergence"):
        assert key in out
    assert [c["name"] for c in out["coefficients"]][:2] == ["(Intercept)", "pandemic"]
    assert set(out["variance_components"]) == {"school", "school:cohort", "residual"}
    target = tmp_path / "out.json"
    code = main([*args, "--moderators", "ses", "--pre", "score5", "--post", "missing", "--json", str(target)])
    assert code == 2 and not target.exists()
    assert "column 'missing' not found" in capsys.readouterr().err


def test_recovery_plots_and_power(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "state.csv"
    assert main(["simulate", "recovery", "--out", str(data), "--schools", "30", "--students-per-school", "8"]) == 0
    plots = tmp_path / "plots"
    args = ["recovery", str(data), "--school", "school", "--cohort", "cohort", "--pandemic-cohorts", "2018", "2019"]
    assert (
        main([*args, "--moderators", "ses", "lost_days", "--pre", "score5", "--post", "score8", "--plots", str(plots)])
        == 0
    )
    names = sorted(p.name for p in plots.iterdir() if not p.name.startswith("."))
    assert names == sorted(
        f"{stem}.{ext}"
        for stem in ("ddd_effects", "gain_by_ses_tercile", "gain_by_lost_days_tercile")
        for ext in ("svg", "png")
    )
    assert (plots / "ddd_effects.svg").read_text().lstrip().startswith("<?xml")
    capsys.readouterr()
    code = main(["power", "recovery", "--effects", "0", "0.2", "--reps", "4", "--schools", "20",
                 "--students-per-school", "6", "--workers", "1", "--json", "-"])  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    rows = [r for r in out["power"] if r["term"] == "pandemic:ses"]
    assert [r["effect"] for r in rows] == [0.0, 0.2]
    assert all(0.0 <= r["power"] <= 1.0 for r in rows)


def test_recovery_mdes_simulations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "state.csv"
    assert main(["simulate", "recovery", "--out", str(data), "--schools", "30", "--students-per-school", "8"]) == 0
    args = ["recovery", str(data), "--school", "school", "--cohort", "cohort", "--pandemic-cohorts", "2018", "2019",
            "--moderators", "ses", "nongerman", "--pre", "score5", "--post", "score8"]  # fmt: skip
    capsys.readouterr()
    assert main([*args, "--mdes-sims", "3", "--json", "-"]) == 0
    mdes = json.loads(capsys.readouterr().out)["mdes"]
    assert [m["term"] for m in mdes] == ["pandemic:ses", "pandemic:nongerman"]
    assert all(m["simulated_power_at_mdes"] in (0.0, 1 / 3, 2 / 3, 1.0) for m in mdes)
    assert main([*args, "--long", "--mdes-sims", "2"]) == 2
    assert "simulation check of the MDE is available for the gain model" in capsys.readouterr().err


def test_cli_choices_match_the_api() -> None:
    from typing import get_args

    from edueffects.cli import ESTIMATION_METHODS, TEST_METHODS
    from edueffects.meta.fit import EstimationMethod, TestMethod

    assert get_args(EstimationMethod) == ESTIMATION_METHODS
    assert get_args(TestMethod) == TEST_METHODS


def test_soma_example_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plots = tmp_path / "plots"
    assert main(["soma", "--example", "--plots", str(plots), "--json", "-"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["synthetic"] is True
    for key in (
        "overall",
        "clusters",
        "cluster_test",
        "moderators",
        "joint",
        "egger",
        "schmidt_oh",
        "overlap",
        "amstar",
    ):
        assert out[key] is not None, key
    assert sorted(p.stem for p in plots.glob("*.svg")) == [
        "contour_funnel",
        "forest",
        "funnel",
        "leave_one_out",
        "orchard",
        "profiles",
    ]
    effects = tmp_path / "tsr.csv"
    assert main(["simulate", "soma", "--out", str(effects)]) == 0
    capsys.readouterr()
    code = main(["soma", str(effects), "--studies", str(tmp_path / "tsr_studies.csv"), "--clusters", "motivation"])
    assert code == 2
    assert "unknown outcome cluster" in capsys.readouterr().err


def test_errors_follow_the_language(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["meta", str(REF / "bcg.csv"), "--yi", "effect", "--vi", "vi", "--lang", "de"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edueffects: Fehler: Spalte 'effect' nicht gefunden (vorhanden: trial")
    assert main(["recovery", "nope.csv", "--school", "s", "--cohort", "c", "--pandemic-cohorts", "1",
                 "--moderators", "m", "--pre", "a", "--post", "b", "--lang", "nl"]) == 2  # fmt: skip
    assert capsys.readouterr().err.strip() == "edueffects: fout: bestand 'nope.csv' bestaat niet"


def test_meta_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``meta --plots DIR``: a forest plot (row labels from --labels) and a bubble plot per continuous
    moderator, in the language of --lang, written as a whole folder; a bad --labels writes nothing."""
    bcg = tmp_path / "bcg.csv"
    shutil.copy(REF / "bcg.csv", bcg)
    plots = tmp_path / "plots"
    args = ["meta", str(bcg), "--yi", "yi", "--vi", "vi", "--plots", str(plots)]
    assert main([*args, "--labels", "author", "--mods", "ablat", "--lang", "de"]) == 0
    assert sorted(p.name for p in plots.iterdir() if not p.name.startswith(".")) == sorted(
        f"{stem}.{ext}" for stem in ("forest", "bubble_ablat") for ext in ("svg", "png")
    )
    forest = (plots / "forest.svg").read_text()
    assert "Comstock &amp; Webster" in forest and "Gewicht" in forest
    assert main(args) == 0  # a second run replaces the folder
    assert sorted(p.stem for p in plots.glob("*.svg")) == ["forest"]
    capsys.readouterr()
    assert main([*args, "--labels", "nope"]) == 2
    assert "--labels: column 'nope' not found" in capsys.readouterr().err
    assert main([*args[:-1], str(bcg)]) == 2  # the plots folder may not be an input
    assert bcg.read_text().startswith('"trial"')


def test_soma_plots_follow_the_language(tmp_path: Path) -> None:
    folder = tmp_path / "plots"
    assert main(["soma", "--example", "--plots", str(folder), "--lang", "de", "--quiet"]) == 0
    forest = (folder / "forest.svg").read_text(encoding="utf-8")
    assert "Metaanalyse" in forest and "meta-analysis" not in forest
