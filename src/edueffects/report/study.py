"""From a study (TOML file, or the embedded demo) to a report folder: index.html, JSON, CSV tables.

The report folder is checked before anything runs (never an input's folder, never a folder of other
files); everything is computed in memory first and then written into a fresh temporary folder that
replaces the report folder in one step (:mod:`edueffects.io.outputs`), so a failure or a killed run
leaves the previous report or the new one, never a partial one. The study file format is documented in
``examples/study.toml``.
"""

from __future__ import annotations

import math
import platform
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd

from edueffects.core.errors import InputError, Message, Phrase
from edueffects.io import ReadOptions, checksum, load_table
from edueffects.io import drop_missing as drop_missing_rows
from edueffects.io.json_output import dumps
from edueffects.io.outputs import check_output_folder, write_folder
from edueffects.progress import progress_reporter
from edueffects.report.document import Section, Table, document
from edueffects.report.i18n import Language
from edueffects.report.sections import MetaRun, meta_section, recovery_section, soma_section

SOMA_KEYS = {
    "effects": str,
    "studies": str,
    "amstar": str,
    "measure": str,
    "moderators": list,
    "clusters": list,
    "columns": dict,
    "decimal": str,
    "encoding": str,
    "drop_missing": bool,
}
RECOVERY_KEYS = {
    "data": str,
    "cells": str,
    "school": str,
    "cohort": str,
    "pandemic_cohorts": list,
    "moderators": list,
    "pre": (str, list),
    "post": (str, list),
    "student": str,
    "long": bool,
    "occasion": str,
    "score": (str, list),
    "method": str,
    "standardize": bool,
    "sesoi": (int, float),
    "decimal": str,
    "encoding": str,
    "drop_missing": bool,
}
META_KEYS = {
    "data": str,
    "yi": str,
    "vi": str,
    "labels": str,
    "cluster": str,
    "within": str,
    "method": str,
    "mods": (str, list),
    "categorical": list,
    "test": str,
    "level": (int, float),
    "rho": (int, float),
    "robust": str,
    "robust_test": str,
    "decimal": str,
    "encoding": str,
    "drop_missing": bool,
}
TOP_KEYS = {"title": str, "language": str, "meta": dict, "soma": dict, "recovery": dict}


@dataclass
class Study:
    """What goes into one report (collected while the analyses run)."""

    title: str
    language: Language
    summary: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    inputs: list[tuple[str, str, str, int]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    synthetic: bool = False
    notes: list[Message] = field(default_factory=list)


KIND_NAMES = {
    str: Phrase("text"),
    list: Phrase("a list"),
    bool: Phrase("true or false"),
    dict: Phrase("a table"),
    (int, float): Phrase("a number"),
    (str, list): Phrase("text or a list"),
}


def _check_keys(table: dict[str, Any], allowed: dict[str, Any], where: str) -> None:
    for key, value in table.items():
        full = f"{where}.{key}" if where else key
        if key not in allowed:
            raise InputError("study file: unknown key '{0}' (allowed: {1})", full, ", ".join(sorted(allowed)))
        expected = allowed[key]
        if not isinstance(value, expected) or (expected == (int, float) and isinstance(value, bool)):
            raise InputError("study file: key '{0}' must be {1} (got {2})", full, KIND_NAMES[expected], repr(value))
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError("study file: key '{0}' must be a finite number (got {1})", full, value)
        items = value if isinstance(value, list) else []
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            raise InputError("study file: key '{0}' must hold finite numbers (got {1})", full, repr(value))


def _input(study: Study, base: Path, key: str, name: str, options: ReadOptions) -> pd.DataFrame:
    path = (base / name).resolve()
    if not path.exists():
        raise InputError("study file: key '{0}': file '{1}' does not exist", key, name)
    table = load_table(path, options)
    study.inputs.append((key, path.name, checksum(path), len(table.frame)))
    study.notes += table.notes
    return table.frame


def _cells(study: Study, base: Path, name: str) -> Any:
    """Released cell statistics named by ``recovery.cells`` (read once; listed among the inputs)."""
    from edueffects.recovery import read_cells

    path = (base / name).resolve()
    if not path.exists():
        raise InputError("study file: key '{0}': file '{1}' does not exist", "recovery.cells", name)
    with _section("recovery"):
        cells = read_cells(path)
    study.inputs.append(("recovery.cells", path.name, checksum(path), len(cells.frame)))
    return cells


def _options(section: dict[str, Any], given: ReadOptions, where: str) -> ReadOptions:
    """The reading options of a section: the command line's, or the section's ``decimal``/``encoding``."""
    try:
        return ReadOptions(
            decimal=given.decimal or section.get("decimal"),
            delimiter=given.delimiter,
            encoding=given.encoding or section.get("encoding"),
        )
    except InputError as exc:
        raise InputError("[{0}] {1}", where, exc) from exc


def _dropped(study: Study, key: str, counts: dict[str, int], rows: int) -> None:
    if rows:
        listed = ", ".join(f"{column} {n}" for column, n in counts.items() if n)
        study.notes.append(
            Message("{0}: {1} row(s) with missing values dropped (missing values per column: {2})", key, rows, listed)
        )


@contextmanager
def _section(name: str) -> Iterator[None]:
    """Errors inside an analysis name the study-file table they come from."""
    try:
        yield
    except InputError as exc:
        raise InputError("[{0}] {1}", name, exc) from exc


def _versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for pkg in ("edueffects", "numpy", "scipy", "pandas", "duckdb", "matplotlib", "babel"):
        try:
            parts.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            continue
    return ", ".join(parts)


def _tables_csv(study: Study, prefix: str, frames: dict[str, pd.DataFrame]) -> None:
    for name, frame in frames.items():
        study.files[f"tables/{prefix}_{name}.csv"] = frame.to_csv(index=False)


def add_soma(
    study: Study, effects: pd.DataFrame, studies: pd.DataFrame | None, amstar: pd.DataFrame | None, **options: Any
) -> None:
    from edueffects.soma import soma

    with _section("soma"):
        result = soma(effects, studies=studies, amstar=amstar, **options)
    _dropped(study, "soma.effects", dict(result.missing), result.rows_dropped)
    study.synthetic |= result.synthetic
    answer, section = soma_section(result, study.language)
    study.summary.append(answer)
    study.sections.append(section)
    study.files["soma.json"] = dumps(result.to_dict())
    _tables_csv(
        study,
        "soma",
        {a: result.tidy(a) for a in ("overall", "clusters", "moderators", "egger", "schmidt_oh", "overlap", "amstar")},
    )


def add_meta(
    study: Study,
    data: pd.DataFrame,
    labels: str | None = None,
    robust: str | None = None,
    robust_test: str = "HTZ",
    **options: Any,
) -> None:
    """A meta-analysis (``meta()``) with its model-based term tests and, with ``robust``, CR2 inference
    clustered by that column (coefficients, every moderator jointly and each term)."""
    from edueffects.meta import meta

    with _section("meta"):
        if labels is not None and labels not in data.columns:
            raise InputError("labels column '{0}' not found", labels)
        result = meta(data, **options)
        terms = result.term_tests() if result.moderator_test is not None else ()
        rob = result.robust(robust) if robust else None
        joint = robust_terms = None
        if rob is not None and result.moderator_test is not None:
            tested = [result.terms.coef_names[i] for i in result.terms.moderator_columns()]
            joint = rob.wald(tested, test=robust_test)  # type: ignore[arg-type]
            robust_terms = rob.term_tests(robust_test)  # type: ignore[arg-type]
    run = MetaRun(result, terms, rob, robust_test, joint, robust_terms or (), labels)
    answer, section = meta_section(run, study.language)
    study.summary.append(answer)
    study.sections.append(section)
    payload = result.to_dict()
    if rob is not None:
        payload["robust"] = rob.to_dict(robust_test)  # type: ignore[arg-type]
    study.files["meta.json"] = dumps(payload)
    _tables_csv(study, "meta", {"coefficients": result.tidy(), **({"robust": rob.tidy()} if rob else {})})


def add_recovery(study: Study, data: pd.DataFrame | str | Path | None, synthetic: bool = False, **options: Any) -> None:
    """A learning-recovery model on a student table (``data``) or on released cell statistics
    (``cells=``, a path or a :class:`~edueffects.recovery.ReleasedCells`)."""
    from edueffects.recovery import recovery

    with _section("recovery"):
        result = recovery(data, **options)
    study.synthetic |= synthetic
    answer, section = recovery_section(result, study.language)
    study.summary.append(answer)
    study.sections.append(section)
    study.files["recovery.json"] = dumps(result.to_dict())
    _tables_csv(study, "recovery", {"coefficients": result.tidy()})


def render(study: Study) -> str:
    _ = study.language
    rows = [[key, name, digest[:16] + "…", str(n)] for key, name, digest, n in study.inputs]
    notes = [_("Note: {note}").format(note=note.translated(_)) for note in study.notes]
    inputs = Section(
        _("Inputs, software and warnings"),
        paragraphs=[_("Software: {versions}.").format(versions=_versions()), *notes],
        blocks=[Table(_("Input files"), [_("key"), _("file"), "SHA-256", _("rows")], rows, "inputs")],
    )
    banner = _("SYNTHETIC DATA: this report shows simulated data, not real students, schools or studies.")
    return document(
        title=study.title,
        lang=study.language.code,
        summary=study.summary,
        sections=[*study.sections, inputs],
        banner=banner if study.synthetic else None,
        footer=_("Made with edueffects on {day}.").format(day=date.today().isoformat()),
        summary_title=_("Summary"),
    )


def write(study: Study, out: Path) -> Path:
    """Render, then write the report folder in one step (a fresh folder replaces ``out``); returns
    the path of index.html."""
    page = render(study)
    write_folder(out, {**study.files, "index.html": page})
    return out / "index.html"


def demo(out: Path, language: Language, quiet: bool = False) -> Path:
    """The main job: the SYNTHETIC TSR-shaped SOMA and a simulated state's DDD model, in one report."""
    from edueffects import simulate

    check_output_folder(out, (), "--out")
    step, stop = progress_reporter(quiet)
    _ = language
    study = Study(title=_("edueffects demonstration report"), language=language, synthetic=True)
    try:
        step(_("second-order meta-analysis"))
        example = simulate.soma()
        study.inputs.append(("soma", _("embedded simulated meta-analyses (seed 2025)"), "-", len(example.effects)))
        add_soma(study, example.effects, example.studies, example.amstar, synthetic=True)
        step(_("learning-recovery model"))
        state = simulate.recovery(seed=2026)
        study.inputs.append(("recovery", _("embedded simulated state (seed 2026)"), "-", len(state)))
        add_recovery(
            study,
            state,
            synthetic=True,
            school="school",
            cohort="cohort",
            pandemic_cohorts=[2018, 2019],
            moderators=["ses", "nongerman", "lost_days"],
            pre="score5",
            post="score8",
            standardize=True,
        )
        step(_("writing the report"))
        index = write(study, out)
    finally:
        stop()
    for sentence in study.summary:
        print(sentence)
    return index


def _inputs_of(path: Path, spec: dict[str, Any]) -> list[Path]:
    """The study file and every table it names (that the report must never overwrite)."""
    names = [spec.get("soma", {}).get(k) for k in ("effects", "studies", "amstar")]
    names += [spec.get("recovery", {}).get("data"), spec.get("recovery", {}).get("cells")]
    names.append(spec.get("meta", {}).get("data"))
    return [path, *((path.parent / n) for n in names if isinstance(n, str))]


def _check_sections(spec: dict[str, Any]) -> None:
    """Every key of every section, before any analysis runs (a bad key of the second fails at once)."""
    if "soma" in spec:
        s = spec["soma"]
        _check_keys(s, SOMA_KEYS, "soma")
        if "effects" not in s:
            raise InputError("study file: key 'soma.effects' (the effect-size table) is missing")
        from edueffects.soma.schema import MEASURES

        if s.get("measure", "r") not in MEASURES:
            raise InputError("[{0}] {1}", "soma", InputError("measure '{0}' is not one of r, z, d", s["measure"]))
    if "meta" in spec:
        m = spec["meta"]
        _check_keys(m, META_KEYS, "meta")
        for key in ("data", "yi", "vi"):
            if key not in m:
                raise InputError("study file: key 'meta.{0}' is missing", key)
        from edueffects.options import ESTIMATION_METHODS, ROBUST_TESTS, TEST_METHODS

        for key, allowed in (("method", ESTIMATION_METHODS), ("test", TEST_METHODS), ("robust_test", ROBUST_TESTS)):
            if key in m and m[key] not in allowed:
                raise InputError("study file: key 'meta.{0}' must be one of {1} (got {2})", key, ", ".join(allowed),
                                 repr(m[key]))  # fmt: skip
    if "recovery" in spec:
        r = spec["recovery"]
        _check_keys(r, RECOVERY_KEYS, "recovery")
        if "cells" in r:
            if "data" in r:
                raise InputError("study file: give 'recovery.data' (student records) or 'recovery.cells' (released "
                                 "cell statistics), not both")  # fmt: skip
            for key in ("decimal", "encoding", "drop_missing", "pre", "post", "score", "student", "occasion"):
                if key in r:
                    raise InputError("study file: key 'recovery.{0}' does not apply to released cells "
                                     "('recovery.cells')", key)  # fmt: skip
            return
        for key in ("data", "school", "cohort", "pandemic_cohorts", "moderators"):
            if key not in r:
                raise InputError("study file: key 'recovery.{0}' is missing", key)


def _recovery_columns(r: dict[str, Any]) -> list[str]:
    """The columns of the student table that a recovery model uses (where missing values count)."""
    cols: list[str] = []
    for key in ("school", "cohort", "moderators", "pre", "post", "student", "occasion", "score"):
        value = r.get(key)
        cols += value if isinstance(value, list) else [value] if isinstance(value, str) else []
    return [str(c) for c in cols]


def run_study(
    path: Path,
    out: Path | None,
    language: str | None,
    quiet: bool = False,
    options: ReadOptions | None = None,
    drop_missing: bool = False,
) -> Path:
    """Run every analysis a study file names and write its report. ``options`` and ``drop_missing``
    (the command line's) apply to every input; a section's ``decimal``, ``encoding`` and
    ``drop_missing`` keys to its own."""
    if not path.exists():
        raise InputError("study file '{0}' does not exist", path)
    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError("study file '{0}' is not valid TOML: {1}", path, str(exc).splitlines()[0]) from exc
    _check_keys(spec, TOP_KEYS, "")
    if not any(name in spec for name in ("meta", "soma", "recovery")):
        raise InputError("study file: name at least one analysis ([meta], [soma] or [recovery])")
    lang = Language.of(language or spec.get("language", "en"))
    _check_sections(spec)
    target = out or path.with_suffix("")
    check_output_folder(target, _inputs_of(path, spec), "--out")
    given = options or ReadOptions()
    study = Study(title=spec.get("title", path.stem), language=lang)
    base = path.parent
    step, stop = progress_reporter(quiet)
    try:
        if "meta" in spec:
            step(lang("meta-analysis"))
            m = dict(spec["meta"])
            read = _options(m, given, "meta")
            drop = drop_missing or bool(m.pop("drop_missing", False))
            m.pop("decimal", None)
            m.pop("encoding", None)
            add_meta(
                study,
                _input(study, base, "meta.data", m.pop("data"), read),
                missing="drop" if drop else "error",
                **m,
            )
        if "soma" in spec:
            step(lang("second-order meta-analysis"))
            s = spec["soma"]
            from edueffects.soma.schema import SomaColumns

            columns = s.get("columns", {})
            try:
                cols = SomaColumns(**columns)
            except TypeError as exc:
                raise InputError("study file: table 'soma.columns' has an unknown key ({0})", exc) from exc
            read = _options(s, given, "soma")
            add_soma(
                study,
                _input(study, base, "soma.effects", s["effects"], read),
                _input(study, base, "soma.studies", s["studies"], read) if "studies" in s else None,
                _input(study, base, "soma.amstar", s["amstar"], read) if "amstar" in s else None,
                measure=s.get("measure", "r"),
                moderators=s.get("moderators"),
                outcome_clusters=s.get("clusters"),
                columns=cols,
                missing="drop" if drop_missing or s.get("drop_missing", False) else "error",
            )
        if "recovery" in spec:
            step(lang("learning-recovery model"))
            r = dict(spec["recovery"])
            if "cells" in r:
                add_recovery(study, None, cells=_cells(study, base, r.pop("cells")), **r)
            else:
                read = _options(r, given, "recovery")
                drop = drop_missing or bool(r.pop("drop_missing", False))
                r.pop("decimal", None)
                r.pop("encoding", None)
                data = _input(study, base, "recovery.data", r.pop("data"), read)
                if drop:
                    data, counts, rows = drop_missing_rows(data, _recovery_columns(r))
                    _dropped(study, "recovery.data", counts, rows)
                add_recovery(study, data, **r)
        step(lang("writing the report"))
        return write(study, target)
    finally:
        stop()
