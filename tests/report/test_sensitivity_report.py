"""The sensitivity subsection of the SOMA report: its table, verdict and figures in every language, a
method paragraph and references naming only what ran, and the figures as drawn."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from matplotlib.text import Text

from edueffects import InputError, simulate, soma
from edueffects.report import plots
from edueffects.report.document import Section, Table
from edueffects.report.i18n import Language
from edueffects.report.sections import SENSITIVITY_REFERENCES, soma_section
from edueffects.soma.result import SomaResult

TITLES = {"en": "Sensitivity analyses", "nl": "Gevoeligheidsanalyses", "de": "Sensitivitätsanalysen"}


@pytest.fixture(scope="module")
def example() -> simulate.SomaExample:
    return simulate.soma()


@pytest.fixture(scope="module")
def result(example: simulate.SomaExample) -> SomaResult:
    return soma(example.effects, studies=example.studies, amstar=example.amstar, synthetic=True)


@pytest.fixture(scope="module")
def sections(result: SomaResult) -> dict[str, Section]:
    return {code: soma_section(result, Language.of(code))[1] for code in ("en", "nl", "de")}


def table_of(section: Section) -> Table:
    return next(b for b in section.subsections[0].blocks if isinstance(b, Table) and b.name == "sensitivity")


def test_the_section_holds_table_verdict_and_figures(result: SomaResult, sections: dict[str, Section]) -> None:
    sens = result.sensitivity
    assert sens is not None
    for code, section in sections.items():
        (sub,) = section.subsections
        assert sub.title == TITLES[code]
        assert sub.paragraphs[0] == sens.verdict_message.translated(Language.of(code))
        tables = {t.name: t for t in sub.blocks if hasattr(t, "name")}
        table = tables["sensitivity"]
        labels = [row[0] for row in table.rows]
        assert len(table.header) == 7 and all(len(row) == 7 for row in table.rows)
        assert len(labels) == 11  # full, range, largest change, AMSTAR, overlap status, 4 CHE, PET-PEESE, Egger
        figures = [b for b in sub.blocks if not hasattr(b, "name")]
        assert len(figures) == 2 and all(f.svg.startswith("<svg") for f in figures)
        html = section.html()
        # the subsection comes before the method paragraph and the references of the section
        assert html.index(TITLES[code]) < html.index('class="method"') < html.index('class="refs"')
    en = {row[0]: row for row in table_of(sections["en"]).rows}
    full = en["all meta-analyses (main model)"]
    assert full[1:4] == [str(sens.full.k), str(sens.full.n_meta_analyses), Language.of("en").bounded(sens.full.r)]
    assert sens.amstar is not None
    assert en["without the 15 meta-analyses rated critically low (AMSTAR 2)"][1] == str(sens.amstar.k)
    assert "one of each dependent pair: no pair shares half of its primary studies" in en
    assert "CHE working model, rho = .6" in en and "CHE working model, rho = .2" in en
    assert not any("rho = 0" in label for label in en)  # the main model is not listed twice
    assert any("0,26" in cell for row in table_of(sections["nl"]).rows for cell in row)


@pytest.mark.parametrize("code", ["nl", "de"])
def test_no_english_left_in_the_translated_section(
    sections: dict[str, Section], code: str, english_words_of: Callable[..., dict[str, str]]
) -> None:
    page = sections[code].html()
    assert english_words_of(page, code) == {}
    assert english_words_of(sections["en"].subsections[0].html(), code)  # the check can fail


def test_method_and_references_name_only_what_ran(
    result: SomaResult, sections: dict[str, Section], example: simulate.SomaExample
) -> None:
    en = sections["en"]
    method = " ".join(en.method)
    assert "without each meta-analysis in turn" in method and "PET-PEESE" in method
    assert "critically low by AMSTAR 2" in method and "pair sharing at least half" in method
    assert "correlated-and-hierarchical-effects working model" in method
    assert "rho = .2, .4, .6, .8 (rho = 0 is the main model)" in method
    assert "p < .05; CR2 except PET-PEESE)" in method and "±.05 of the pooled r" in method
    assert "CHE working model, rho = .4" in en.html()
    assert "CHE-werkmodel, rho = 0,4" in sections["nl"].subsections[0].html()
    assert all(ref in en.references for ref in SENSITIVITY_REFERENCES)
    plain = soma(example.effects, synthetic=True)
    section = soma_section(plain, Language.of("en"))[1]
    method = " ".join(section.method)
    assert "AMSTAR 2" not in method and "pair sharing" not in method and "PET-PEESE" in method
    skipped = soma(example.effects, synthetic=True, sensitivity=False)
    section = soma_section(skipped, Language.of("en"))[1]
    assert not section.subsections and not set(SENSITIVITY_REFERENCES) & set(section.references)
    assert "Sensitivity analyses" not in " ".join(section.method)
    assert "Funnel plot of the effect sizes." in section.html()  # the plain funnel plot without them


def drawn(fig):  # type: ignore[no-untyped-def]
    plots.finish(fig)
    fig.canvas.draw()
    return [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize("code", ["en", "nl", "de"])
def test_leave_one_out_plot(result: SomaResult, code: str, decimal_points_in: Callable[[list[str]], list[str]]) -> None:
    sens = result.sensitivity
    assert sens is not None
    fig = plots.localize(plots.leave_one_out(result, Language.of(code)), code)
    texts = drawn(fig)
    assert all(e.dropped[0] in texts for e in sens.leave_one_out)  # one row per meta-analysis
    mid = fig.axes[1]
    references = [line for line in mid.get_lines() if list(line.get_xdata()) == [sens.full.r, sens.full.r]]
    assert len(references) == 1  # the pooled r of all meta-analyses as the reference line
    assert plots.tick_overlaps(fig) == []
    if code != "en":
        assert decimal_points_in(texts) == []
        lang = Language.of(code)
        ci = lang.interval(np.tanh(sens.full.ci_lb), np.tanh(sens.full.ci_ub), 2, False)
        assert f"{lang.number(sens.full.r)} {ci}" in texts


@pytest.mark.parametrize("code", ["en", "nl", "de"])
def test_contour_funnel(result: SomaResult, code: str, decimal_points_in: Callable[[list[str]], list[str]]) -> None:
    fig = plots.localize(plots.soma_contour_funnel(result, Language.of(code)), code)
    texts = drawn(fig)
    ax = fig.axes[0]
    contours = [t.get_text() for t in ax.get_legend().get_texts() if "p <" in t.get_text()]
    assert len(contours) == 3  # .10, .05, .01
    assert plots.tick_overlaps(fig) == []
    renderer = plots._renderer(fig)
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.y1 <= ax.xaxis.label.get_window_extent(renderer).y0 + 1.0  # below the axis label
    assert not legend.overlaps(ax.title.get_window_extent(renderer))
    if code != "en":
        assert decimal_points_in(texts) == []


def test_figures_are_written_and_refused_without_sensitivity(
    result: SomaResult, example: simulate.SomaExample, tmp_path: Path
) -> None:
    paths = plots.soma_figures(result, tmp_path / "figs", Language.of("de"))
    names = {p.name for p in paths}
    assert {"leave_one_out.svg", "contour_funnel.png"} <= names
    skipped = soma(example.effects, sensitivity=False)
    assert "leave_one_out.svg" not in {p.name for p in plots.soma_figures(skipped, tmp_path / "plain")}
    with pytest.raises(InputError, match="sensitivity analyses were skipped"):
        plots.leave_one_out(skipped)


def test_alpha_and_band_in_the_method_and_verdict(result: SomaResult) -> None:
    """The method paragraph and the verdict print the alpha and band applied, in every language."""
    from dataclasses import replace

    from edueffects.soma.sensitivity import soma_sensitivity

    strict = replace(result, sensitivity=soma_sensitivity(result, alpha=0.01, band=0.025))
    expected = {
        "en": ("p < .01", "±.025", ".05"),
        "nl": ("p < 0,01", "±0,025", "0,05"),
        "de": ("p < 0,01", "±0,025", "0,05"),
    }
    for code, (alpha, band, default) in expected.items():
        section = soma_section(strict, Language.of(code))[1]
        rule = section.method[1].split(". ")[-1]  # the sentence with the robustness rule
        assert alpha in rule and band in rule and default not in rule, rule
        verdict = section.subsections[0].paragraphs[0]
        assert alpha in verdict and default not in verdict


def test_two_meta_analyses_are_reported(example: simulate.SomaExample) -> None:
    """With two meta-analyses the leave-one-out models have model-based p values: the table labels, the
    method paragraph and a note say so, in every language without English left."""
    effects = example.effects
    two = effects[effects.meta_analysis.isin(["SYN-MA01", "SYN-MA02"])].assign(outcome_cluster="all outcomes")
    res = soma(two, moderators=[], synthetic=True)
    assert res.sensitivity is not None and res.sensitivity.loo_model_based
    en = soma_section(res, Language.of("en"))[1]
    method = " ".join(en.method)
    assert "leaving one out leaves a single one" in method and "those models were tested model-based" in method
    assert "CR2 except PET-PEESE and leaving one meta-analysis out" in method
    labels = [row[0] for row in table_of(en).rows]
    assert "without one meta-analysis at a time (2 models: range of r, largest model-based p)" in labels
    assert any(label.endswith("(largest change), model-based p") for label in labels)
    nl = soma_section(res, Language.of("nl"))[1]
    assert "modelgebaseerd" in " ".join(nl.method)


def test_dependent_pairs_table_shows_none_kept(result: SomaResult) -> None:
    """A pair whose members are both left out (through other pairs) shows "–" as kept, both as left out."""
    from dataclasses import replace

    import pandas as pd

    sens = result.sensitivity
    assert sens is not None
    pairs = pd.DataFrame(
        {
            "meta_analysis_a": ["SYN-MA01", "SYN-MA02", "SYN-MA01"],
            "meta_analysis_b": ["SYN-MA03", "SYN-MA04", "SYN-MA02"],
            "k_a": [10, 16, 10],
            "k_b": [20, 20, 16],
            "shared": [10, 10, 6],
            "share_percent": [100.0, 62.5, 60.0],
            "kept": pd.Series(["SYN-MA03", "SYN-MA04", None], dtype=object),
            "dropped": ["SYN-MA01", "SYN-MA02", "SYN-MA01, SYN-MA02"],
        }
    )
    res = replace(result, sensitivity=replace(sens, pairs=pairs))
    for code in ("en", "nl", "de"):
        sub = soma_section(res, Language.of(code))[1].subsections[0]
        table = next(b for b in sub.blocks if isinstance(b, Table) and b.name == "dependent_pairs")
        assert [row[4] for row in table.rows] == ["SYN-MA03", "SYN-MA04", "–"]
        assert table.rows[2][5] == "SYN-MA01, SYN-MA02"
