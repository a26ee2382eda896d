"""The SOMA report with too few meta-analyses for the cluster-robust test of the outcome clusters: the
moderator table shows "–", a translated note says why, and no text claims the robust result."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from edueffects import simulate, soma
from edueffects.report.document import Section, Table
from edueffects.report.i18n import Language
from edueffects.report.sections import soma_section

NOTES = {
    "en": "no cluster-robust test with 3 meta-analyses",
    "nl": "geen clusterrobuuste toets met 3 meta-analyses",
    "de": "kein clusterrobuster Test mit 3 Metaanalysen",
}


@pytest.fixture(scope="module")
def sections() -> dict[str, Section]:
    effects = simulate.soma().effects
    few = effects[effects.meta_analysis.isin(sorted(effects.meta_analysis.unique())[:3])]
    res = soma(few, synthetic=True)
    assert res.cluster_test is not None and res.cluster_test.robust_test is None
    return {code: soma_section(res, Language.of(code))[1] for code in ("en", "nl", "de")}


@pytest.mark.parametrize("code", ["en", "nl", "de"])
def test_the_table_shows_no_robust_result_and_the_note_says_why(sections: dict[str, Section], code: str) -> None:
    section = sections[code]
    table = next(b for b in section.blocks if isinstance(b, Table) and b.name == "moderators")
    assert table.rows[0][5:] == ["–", "–", "–"]
    assert all(cell != "–" for cell in table.rows[1][5:])  # a single moderator keeps its robust test
    method = " ".join(section.method)
    assert NOTES[code] in method
    assert "HTZ" not in section.paragraphs[0]  # the headline rests on the model-based test


def test_the_method_says_only_the_model_based_test_is_reported(sections: dict[str, Section]) -> None:
    assert "only the model-based test is reported" in sections["en"].method[0]


@pytest.mark.parametrize("code", ["nl", "de"])
def test_no_english_left(
    sections: dict[str, Section], code: str, english_words_of: Callable[..., dict[str, str]]
) -> None:
    assert english_words_of(sections[code].html(), code) == {}
