"""From a study (TOML file, or the embedded demo) to a report folder: index.html, JSON, CSV tables.

Everything is computed in memory first and only then written, so a failure never leaves a partial
report. The study file format is documented in ``examples/study.toml``.
"""

from __future__ import annotations

import os
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

from edueffects.core.errors import InputError, Phrase
from edueffects.io import checksum, read_table
from edueffects.io.json_output import dumps
from edueffects.progress import progress_reporter
from edueffects.report.document import Section, Table, document
from edueffects.report.i18n import Language
from edueffects.report.sections import recovery_section, soma_section

SOMA_KEYS = {
    "effects": str,
    "studies": str,
    "amstar": str,
    "measure": str,
    "moderators": list,
    "clusters": list,
    "columns": dict,
}
RECOVERY_KEYS = {
    "data": str,
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
}
TOP_KEYS = {"title": str, "language": str, "soma": dict, "recovery": dict}


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


def _input(study: Study, base: Path, key: str, name: str) -> pd.DataFrame:
    path = (base / name).resolve()
    if not path.exists():
        raise InputError("study file: key '{0}': file '{1}' does not exist", key, name)
    frame = read_table(path)
    study.inputs.append((key, path.name, checksum(path), len(frame)))
    return frame


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


def add_recovery(study: Study, data: pd.DataFrame | str | Path, synthetic: bool = False, **options: Any) -> None:
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
    inputs = Section(
        _("Inputs, software and warnings"),
        paragraphs=[_("Software: {versions}.").format(versions=_versions())],
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
    """Render, then write every file (each atomically); returns the path of index.html."""
    page = render(study)
    files = {**study.files, "index.html": page}
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.partial")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    return out / "index.html"


def demo(out: Path, language: Language, quiet: bool = False) -> Path:
    """The main job: the SYNTHETIC TSR-shaped SOMA and a simulated state's DDD model, in one report."""
    from edueffects import simulate

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


def run_study(path: Path, out: Path | None, language: str | None, quiet: bool = False) -> Path:
    """Run every analysis a study file names and write its report."""
    if not path.exists():
        raise InputError("study file '{0}' does not exist", path)
    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError("study file '{0}' is not valid TOML: {1}", path, str(exc).splitlines()[0]) from exc
    _check_keys(spec, TOP_KEYS, "")
    if "soma" not in spec and "recovery" not in spec:
        raise InputError("study file: name at least one analysis ([soma] or [recovery])")
    lang = Language.of(language or spec.get("language", "en"))
    study = Study(title=spec.get("title", path.stem), language=lang)
    base = path.parent
    step, stop = progress_reporter(quiet)
    try:
        if "soma" in spec:
            step(lang("second-order meta-analysis"))
            s = spec["soma"]
            _check_keys(s, SOMA_KEYS, "soma")
            if "effects" not in s:
                raise InputError("study file: key 'soma.effects' (the effect-size table) is missing")
            from edueffects.soma.schema import SomaColumns

            columns = s.get("columns", {})
            try:
                cols = SomaColumns(**columns)
            except TypeError as exc:
                raise InputError("study file: table 'soma.columns' has an unknown key ({0})", exc) from exc
            add_soma(
                study,
                _input(study, base, "soma.effects", s["effects"]),
                _input(study, base, "soma.studies", s["studies"]) if "studies" in s else None,
                _input(study, base, "soma.amstar", s["amstar"]) if "amstar" in s else None,
                measure=s.get("measure", "r"),
                moderators=s.get("moderators", ["school_level", "valence", "year", "informant"]),
                outcome_clusters=s.get("clusters"),
                columns=cols,
            )
        if "recovery" in spec:
            step(lang("learning-recovery model"))
            r = dict(spec["recovery"])
            _check_keys(r, RECOVERY_KEYS, "recovery")
            for key in ("data", "school", "cohort", "pandemic_cohorts", "moderators"):
                if key not in r:
                    raise InputError("study file: key 'recovery.{0}' is missing", key)
            data = _input(study, base, "recovery.data", r.pop("data"))
            add_recovery(study, data, **r)
        step(lang("writing the report"))
        return write(study, out or path.with_suffix(""))
    finally:
        stop()
