"""Study files: the same numbers from CSV, SPSS and Parquet inputs; bad study files name the key."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest

from edueffects import InputError
from edueffects.cli import main
from edueffects.report.study import run_study

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("tsr_effects.csv", "tsr_studies.csv", "tsr_amstar.csv", "state.csv", "study.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    return tmp_path


def _numbers(report: Path) -> tuple[object, object]:
    soma = json.loads((report / "soma.json").read_text())
    rec = json.loads((report / "recovery.json").read_text())
    return soma["overall"], rec["coefficients"]


def test_spss_and_parquet_inputs_give_the_csv_numbers(folder: Path) -> None:
    csv_report = run_study(folder / "study.toml", folder / "csv", None, quiet=True).parent
    effects = pd.read_csv(folder / "tsr_effects.csv")
    pyreadstat.write_sav(effects, str(folder / "tsr_effects.sav"))
    pd.read_csv(folder / "state.csv").to_parquet(folder / "state.parquet", index=False)
    toml = (folder / "study.toml").read_text().replace('"tsr_effects.csv"', '"tsr_effects.sav"')
    toml = toml.replace('"state.csv"', '"state.parquet"')
    (folder / "other.toml").write_text(toml)
    other_report = run_study(folder / "other.toml", folder / "other", None, quiet=True).parent
    assert _numbers(csv_report) == _numbers(other_report)
    page = (other_report / "index.html").read_text()
    assert "tsr_effects.sav" in page and "state.parquet" in page
    assert (other_report / "tables" / "soma_clusters.csv").exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('school = "school"', 'schol = "school"'), "unknown key 'recovery.schol'"),
        (
            lambda t: t.replace('data = "state.csv"', 'data = "missing.csv"'),
            "key 'recovery.data': file 'missing.csv' does not exist",
        ),
        (lambda t: t.replace("sesoi = 0.05", 'sesoi = "small"'), "key 'recovery.sesoi' must be a number"),
        (lambda t: t.replace('school = "school"', 'school = "campus"'), "[recovery] column 'campus' not found"),
        (lambda t: t.replace('cluster = "outcome_cluster"', 'cluster = "domain"'), "[soma] column 'domain' not found"),
        (lambda t: t.replace("standardize = true", "standardize = yes"), "is not valid TOML"),
        (lambda t: t.replace('language = "en"', 'language = "fr"'), "language 'fr'"),
    ],
)
def test_bad_study_file_gives_one_line_and_no_report(folder: Path, edit, message) -> None:  # type: ignore[no-untyped-def]
    (folder / "bad.toml").write_text(edit((folder / "study.toml").read_text()))
    with pytest.raises(InputError) as err:
        run_study(folder / "bad.toml", folder / "report", None, quiet=True)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (folder / "report").exists()


def test_report_command_exit_codes(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(folder / "study.toml"), "--out", str(folder / "r"), "--lang", "nl", "--quiet"]) == 0
    assert "Rapport geschreven" in capsys.readouterr().out
    assert '<html lang="nl">' in (folder / "r" / "index.html").read_text()
    assert main(["report", str(folder / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_meta_section_of_a_study_file(tmp_path: Path, meta_study: Callable[..., Path]) -> None:
    report = run_study(meta_study(tmp_path, "en"), tmp_path / "report", None, quiet=True).parent
    page = (report / "index.html").read_text()
    result = json.loads((report / "meta.json").read_text())
    assert result["k"] == 13 and (report / "tables" / "meta_coefficients.csv").exists()
    assert "<h2>Meta-analysis</h2>" in page
    assert "Across 13 effect sizes, the pooled effect is -0.71 [-1.07, -0.36] (p &lt; .001)." in page
    assert "The 95% prediction interval of the true effects is [-1.87, 0.44]." in page
    assert "Heterogeneity: Q(12) = 152.23, p &lt; .001; I² = 92.2%." in page
    assert "restricted maximum likelihood" in page and "Comstock &amp; Webster, 1969" in page  # forest labels
    assert "Viechtbauer" in page and "Higgins" in page and "Riley" in page
    assert "clubSandwich" not in page and "Pustejovsky" not in page and "Knapp" not in page  # not run
    robust = run_study(meta_study(tmp_path, "en", 'mods = ["ablat"]\nrobust = "alloc"\ntest = "knha"\n'),
                       tmp_path / "robust", None, quiet=True).read_text()  # fmt: skip
    assert "The moderators (ablat) explain differences between the 13 effect sizes (F(1, 11.0) = " in robust
    assert "clubSandwich" in robust and "Knapp, G." in robust and "Pustejovsky" in robust
    assert "cluster-robust test (CR2, HTZ)" in robust and "Bubble plot" in robust
    assert "Riley" not in robust  # no prediction interval of a meta-regression is shown


@pytest.mark.parametrize("code", ["nl", "de"])
def test_meta_report_speaks_the_language(
    tmp_path: Path, code: str, meta_study: Callable[..., Path], english_words_of: Callable[..., dict[str, str]]
) -> None:
    study = meta_study(tmp_path, code, 'mods = ["ablat"]\nrobust = "alloc"\n')
    page = run_study(study, tmp_path / "report", None, quiet=True).read_text()
    labels = [*pd.read_csv(tmp_path / "bcg.csv").label, "ablat", "alloc", "tau2", "bcg.csv", "meta.data", "BCG trials"]
    assert english_words_of(page, code, labels) == {}
    assert {"nl": "Meta-analyse", "de": "Meta-Analyse"}[code] in page


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('method = "XL"\n', "key 'meta.method' must be one of"),
        ('labels2 = "x"\n', "unknown key 'meta.labels2'"),
        ('robust = "nope"\n', "[meta] robust cluster column 'nope' not found"),
        ('mods = ["nope"]\n', "[meta]"),
    ],
)
def test_bad_meta_section_gives_one_line(
    tmp_path: Path, extra: str, message: str, meta_study: Callable[..., Path]
) -> None:
    with pytest.raises(InputError) as err:
        run_study(meta_study(tmp_path, "en", extra), tmp_path / "report", None, quiet=True)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "report").exists()


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edueffects import simulate
    from edueffects.recovery import aggregate

    folder = tmp_path_factory.mktemp("released")
    data = simulate.recovery(seed=4, n_schools=40, students_per_school=12)
    cells = aggregate(data, school="school", cohort="cohort", moderators=["ses", "nongerman"], pre="score5",
                      post="score8", min_cell=10)  # fmt: skip
    cells.write(folder / "cells.parquet")
    (folder / "study.toml").write_text(
        'title = "Released cells"\n[recovery]\ncells = "cells.parquet"\npandemic_cohorts = [2018, 2019]\n'
    )
    return folder


def test_report_on_released_cells_says_so(released: Path, tmp_path: Path) -> None:
    from edueffects.recovery import read_cells

    disclosure = read_cells(released / "cells.parquet").disclosure
    rows, withheld = disclosure["suppressed_rows"], disclosure["students_suppressed"]
    assert isinstance(rows, int) and rows > 0
    page = run_study(released / "study.toml", tmp_path / "en", None, quiet=True).read_text()
    summary = page[page.index('<div class="summary">') : page.index("</div>")]
    assert "The model was fitted on released cell statistics, not on student records." in summary
    assert (
        "Released aggregates: fitted on released cell statistics (cells.parquet), not on student records; rows of "
        f"fewer than 10 students were withheld (suppress): {rows} row(s) suppressed, {withheld} of " in page
    )
    assert "<td>recovery.cells</td><td>cells.parquet</td>" in page
    assert page.count("fitted on released cell statistics (cells.parquet)") == 1  # not repeated among the notes
    dutch = run_study(released / "study.toml", tmp_path / "nl", "nl", quiet=True).read_text()
    assert "Vrijgegeven aggregaten: geschat op vrijgegeven celstatistieken (cells.parquet)" in dutch
    assert f"{rows} rij(en) onderdrukt" in dutch and "(onderdrukken)" in dutch


def test_a_student_report_does_not_claim_released_cells(folder: Path) -> None:
    page = run_study(folder / "study.toml", folder / "report", None, quiet=True).read_text()
    assert "released cell statistics" not in page and "Released aggregates" not in page


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[recovery]\ncells = "cells.parquet"\ndata = "x.csv"\n', "give 'recovery.data' (student records) or"),
        ('[recovery]\ncells = "cells.parquet"\npre = "score5"\n', "key 'recovery.pre' does not apply"),
        ('[recovery]\ncells = "missing.parquet"\n', "key 'recovery.cells': file 'missing.parquet' does not exist"),
        ('[recovery]\ncells = "study.toml"\n', "[recovery] file"),
    ],
)
def test_bad_cells_keys_give_one_line(released: Path, tmp_path: Path, toml: str, message: str) -> None:
    (released / "bad.toml").write_text(toml)
    with pytest.raises(InputError) as err:
        run_study(released / "bad.toml", tmp_path / "report", None, quiet=True)
    assert message in str(err.value) and "\n" not in str(err.value)
