"""The report in a real browser (headless Debian Chromium): renders, requests nothing, runs no script;
every figure has a readable size, no two tick labels of an axis overlap on the page, and every text of
every figure of a Dutch or German report has decimal commas.

Screenshots are saved to ``test-artefacts/``. CI installs Chromium (``.ci/run``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

import edueffects as ee
from edueffects.report.i18n import Language
from edueffects.report.study import Study, add_recovery, add_soma, demo, run_study, write

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
              plots: [...document.querySelectorAll('figure svg')].map(svg => {
                const r = svg.getBoundingClientRect();
                const overlaps = [];
                for (const axis of svg.querySelectorAll('g[id^="matplotlib.axis_"]')) {
                  const boxes = [...axis.querySelectorAll('g[id^="xtick_"] text, g[id^="ytick_"] text')]
                    .filter(t => t.textContent.trim() !== '')
                    .map(t => [t.textContent, t.getBoundingClientRect()]);
                  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
                    const [a, p] = boxes[i], [b, q] = boxes[j];
                    if (p.left < q.right && q.left < p.right && p.top < q.bottom && q.top < p.bottom)
                      overlaps.push([a, b]);
                  }
                }
                return {width: r.width, height: r.height, overlaps: overlaps,
                        texts: [...svg.querySelectorAll('text')].map(t => t.textContent)};
              }),
              column: document.body.getBoundingClientRect().width,
            })"""
        )
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    state["errors"] = errors
    state["external"] = [u for u in requests if not u.startswith(("file:", "data:"))]
    return state


@pytest.mark.parametrize("code", ["en", "nl", "de"])
def test_demo_report_renders_in_the_browser(
    code: str, tmp_path: Path, decimal_points_in: Callable[[list[str]], list[str]]
) -> None:
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
    check_figures(state, code, decimal_points_in)


def check_figures(state: dict[str, Any], code: str, decimal_points: Callable[[list[str]], list[str]]) -> None:
    """Every figure is large enough to read and fits the page; no tick labels overlap as rendered; in
    Dutch and German no number of any figure text has a decimal point."""
    for plot in state["plots"]:
        assert 250 <= plot["width"] <= state["column"] + 1 and plot["height"] >= 150, plot["texts"][:3]
        assert plot["overlaps"] == [], plot["texts"][:3]
        if code in ("nl", "de"):
            assert decimal_points(plot["texts"]) == [], plot["texts"][:3]
    if code == "en":
        assert any(decimal_points(plot["texts"]) for plot in state["plots"])  # the check sees decimal points


def test_meta_report_renders_in_the_browser(
    tmp_path: Path, meta_study: Callable[..., Path], decimal_points_in: Callable[[list[str]], list[str]]
) -> None:
    for code, extra in (("de", 'mods = ["ablat"]\n'), ("nl", "")):
        index = run_study(meta_study(tmp_path, code, extra), tmp_path / code, None, quiet=True)
        state = open_report(index, ARTEFACTS / f"meta-report-{code}.png")
        assert state["errors"] == [] and state["external"] == [] and state["scripts"] == 0
        assert len(state["plots"]) == (2 if extra else 1)  # forest (+ bubble for the continuous moderator)
        check_figures(state, code, decimal_points_in)
        forest = state["plots"][0]["texts"]
        assert "Comstock & Webster, 1969" in forest and any("%" in t for t in forest)


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


def test_bidirectional_controls_are_neutralised_everywhere(tmp_path: Path) -> None:
    """A right-to-left override in a label (cluster, meta-analysis, moderator, title) cannot reorder the
    page: tables, headings and figures show it as its code point."""
    rlo, isolate = "\u202e", "\u2067"
    example = ee.simulate.soma()
    effects = example.effects.assign(
        outcome_cluster=example.effects.outcome_cluster.where(
            example.effects.outcome_cluster != "motivation", f"motivation{rlo}gpj.exe"
        ),
        meta_analysis=example.effects.meta_analysis.where(
            example.effects.meta_analysis != "SYN-MA01", f"SYN{isolate}-MA01"
        ),
    ).rename(columns={"informant": f"inform{rlo}ant"})
    study = Study(title=f"Report {rlo}fdp.exe", language=Language.of("en"))
    add_soma(study, effects, None, None, moderators=["school_level", f"inform{rlo}ant"])
    data = ee.simulate.recovery(seed=3, n_schools=60, students_per_school=10).rename(columns={"ses": f"s{rlo}es"})
    add_recovery(study, data, school="school", cohort="cohort", pandemic_cohorts=[2018, 2019],
                 moderators=[f"s{rlo}es"], pre="score5", post="score8")  # fmt: skip
    index = write(study, tmp_path / "bidi")
    page = index.read_text()
    assert not any(ch in page for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    for shown in ("motivation[U+202E]gpj.exe", "SYN[U+2067]-MA01", "inform[U+202E]ant", "Report [U+202E]fdp.exe",
                  "s[U+202E]es"):  # fmt: skip
        assert shown in page, shown
    state = open_report(index, ARTEFACTS / "bidi-report.png")
    assert "<h1>Report [U+202E]fdp.exe</h1>" in page and "Report [U+202E]fdp.exe" in state["text"]
    figure_text = " ".join(t for plot in state["plots"] for t in plot["texts"])
    assert "motivation[U+202E]gpj.exe" in figure_text and "s[U+202E]es" in figure_text
