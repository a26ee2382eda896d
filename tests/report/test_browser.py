"""The report in a real browser (headless Debian Chromium): renders, requests nothing, runs no script.

Screenshots are saved to ``test-artefacts/``. CI installs Chromium (``.ci/run``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

import edueffects as ee
from edueffects.report.i18n import Language
from edueffects.report.study import Study, add_recovery, add_soma, demo, write

ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artefacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Chromium is needed for the browser tests: apt-get install chromium (.ci/run does this)"
    return path


def open_report(index: Path, screenshot: Path) -> dict[str, Any]:
    """Load the page; collect console errors, failed and external requests, and what rendered."""
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"failed request {r.url}"))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(index.resolve().as_uri())
        page.wait_for_load_state("load")
        state = page.evaluate(
            """() => ({
              figures: [...document.querySelectorAll('figure')].map(f => {
                const s = f.querySelector('svg'); if (!s) return 0;
                const r = s.getBoundingClientRect(); return Math.min(r.width, r.height); }),
              tables: [...document.querySelectorAll('table')].map(t => t.querySelectorAll('tbody tr').length),
              scripts: document.querySelectorAll('script').length,
              images: document.querySelectorAll('img').length,
              xss: window.__xss === undefined ? null : window.__xss,
              text: document.body.innerText,
              lang: document.documentElement.lang,
            })"""
        )
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    state["errors"] = errors
    state["external"] = [u for u in requests if not u.startswith(("file:", "data:"))]
    return state


@pytest.mark.parametrize("code", ["en", "nl", "de"])
def test_demo_report_renders_in_the_browser(code: str, tmp_path: Path) -> None:
    index = demo(tmp_path / code, Language.of(code), quiet=True)
    state = open_report(index, ARTEFACTS / f"demo-report-{code}.png")
    assert state["errors"] == [] and state["external"] == []
    assert state["lang"] == code
    assert len(state["figures"]) >= 8 and min(state["figures"]) > 100
    assert len(state["tables"]) >= 10 and min(state["tables"]) >= 1
    assert state["scripts"] == 0
    banner = {"en": "SYNTHETIC DATA", "nl": "SYNTHETISCHE GEGEVENS", "de": "SYNTHETISCHE DATEN"}[code]
    assert banner in state["text"]
    assert (ARTEFACTS / f"demo-report-{code}.png").stat().st_size > 50_000


def test_payloads_in_labels_do_not_execute(tmp_path: Path) -> None:
    script = "<script>window.__xss=1</script>"
    image = '<img src=x onerror="window.__xss=2">'
    svg = '<svg onload="window.__xss=3">'
    example = ee.simulate.soma()
    effects = example.effects.assign(
        outcome_cluster=example.effects.outcome_cluster.where(example.effects.outcome_cluster != "motivation", script),
        meta_analysis=example.effects.meta_analysis.where(example.effects.meta_analysis != "SYN-MA01", image),
    ).rename(columns={"informant": svg})
    amstar = example.amstar.assign(
        meta_analysis=example.amstar.meta_analysis.where(example.amstar.meta_analysis != "SYN-MA01", image)
    )
    studies = example.studies.assign(
        meta_analysis=example.studies.meta_analysis.where(example.studies.meta_analysis != "SYN-MA01", image)
    )
    study = Study(title=f"Report {script} {image}", language=Language.of("en"))
    add_soma(study, effects, studies, amstar, moderators=["school_level", svg])
    state_data = ee.simulate.recovery(seed=3, n_schools=60, students_per_school=10).rename(columns={"ses": svg})
    add_recovery(
        study,
        state_data,
        school="school",
        cohort="cohort",
        pandemic_cohorts=[2018, 2019],
        moderators=[svg],
        pre="score5",
        post="score8",
    )
    index = write(study, tmp_path / "xss")
    state = open_report(index, ARTEFACTS / "xss-report.png")
    assert state["xss"] is None
    assert state["scripts"] == 0 and state["images"] == 0
    assert state["errors"] == [] and state["external"] == []
    assert script in state["text"] and image in state["text"]
