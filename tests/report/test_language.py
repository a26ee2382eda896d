"""The Dutch and German reports of the embedded example speak only Dutch and German: no English word of
the program's own texts (notes, warnings, headings, figure texts) outside quoted data labels and the
reference list.

"English words" are the words of the catalogue's English messages that no translation into the
report's language uses; they are looked for in every visible text of the page, the text of every
figure included, after the data labels (outcome clusters, meta-analyses, moderators and the like) are
taken out. The English report must show many of them (else the check could not fail).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from edueffects.report.i18n import Language
from edueffects.report.study import demo


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("language")
    return {code: demo(out / code, Language.of(code), quiet=True).read_text() for code in ("en", "nl", "de")}


@pytest.mark.parametrize("code", ["nl", "de"])
def test_no_english_sentence_in_the_translated_report(
    pages: dict[str, str], code: str, english_words_of: Callable[..., dict[str, str]]
) -> None:
    assert english_words_of(pages[code], code) == {}


@pytest.mark.parametrize("code", ["nl", "de"])
def test_the_check_finds_english(
    pages: dict[str, str], code: str, english_words_of: Callable[..., dict[str, str]]
) -> None:
    found = english_words_of(pages["en"], code)
    assert len(found) > 50
    assert {"the", "across", "summary"} <= {w.lower() for w in found}
    note = pages[code].replace("</footer>", "<p>Note: sampling variances of z from SE</p></footer>")
    assert {"sampling", "variances", "from"} <= set(english_words_of(note, code))


def test_visible_text_includes_figures_and_skips_references(
    pages: dict[str, str], visible_text_of: Callable[[str], list[str]]
) -> None:
    text = " ".join(visible_text_of(pages["nl"]))
    assert "Forest plot per uitkomstcluster" in text  # a figure title (SVG text)
    assert "Viechtbauer" not in text


@pytest.mark.parametrize(
    ("code", "value", "expected"), [("en", -0.001, ".00"), ("nl", -0.004, "0,00"), ("de", -0.0049, "0,00")]
)
def test_numbers_that_round_to_zero_carry_no_sign(code: str, value: float, expected: str) -> None:
    lang = Language.of(code)
    assert lang.bounded(value) == expected
    assert lang.bounded(-0.006) in ("-.01", "-0,01")
