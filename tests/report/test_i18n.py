"""Catalogues: every message of the report and every error message is translated into Dutch and German,
placeholders intact."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file

from edueffects import InputError
from edueffects.report.i18n import DYNAMIC_MESSAGES, Language

SRC = Path(__file__).resolve().parents[2] / "src" / "edueffects"


def messages() -> list[str]:
    found: list[str] = []
    keywords = {
        "_": None,
        "tr": None,
        "lang": None,
        "InputError": (1,),
        "CollinearModerators": (1,),
        "SingularRobustTest": (1,),
        "Phrase": (1,),
        "Message": (1,),
    }
    for path in sorted(SRC.rglob("*.py")):
        for _line, msg, _comments, _ctx in extract_from_file("python", str(path), keywords=keywords):
            text = msg[0] if isinstance(msg, tuple) else msg
            if text not in found:
                found.append(text)
    return [*found, *(m for m in DYNAMIC_MESSAGES if m not in found)]


MESSAGES = messages()


def placeholders(text: str) -> list[str]:
    return sorted(re.findall(r"\{[0-9a-z_]*(?::[^}]*)?\}", text))


@pytest.mark.parametrize("code", ["nl", "de"])
def test_every_message_is_translated(code: str) -> None:
    lang = Language.of(code)
    assert len(MESSAGES) > 200
    same_in_all = {
        "CR2 p",
        "CR2 SE",
        "SE",
        "TOST p",
        "MDE",
        "Software: {versions}.",
        "cohort",
        "model",
        "moderator",
        "meta-analyses",
        "school",
        "school:cohort",
        "term",
        "equivalent",
        "[{0}] {1}",
        "{model} (k = {k})",
        "effect",  # Dutch
        "effect {n}",  # Dutch
        "intercept",  # Dutch
        "Forest plot",  # Dutch
        "Caterpillar plot (k = {k})",  # Dutch
    }
    untranslated = [m for m in MESSAGES if lang(m) == m and m not in same_in_all]
    assert not untranslated, untranslated
    for m in MESSAGES:
        assert placeholders(lang(m)) == placeholders(m), m


def test_numbers_follow_the_locale() -> None:
    en, nl, de = Language.of("en"), Language.of("nl"), Language.of("de")
    assert en.bounded(0.2512) == ".25" and en.bounded(-0.05) == "-.05"
    assert nl.bounded(0.2512) == "0,25" and de.number(1234.5, 1) == "1.234,5"
    assert en.interval(0.18, 0.32) == "[.18, .32]" and de.interval(0.18, 0.32) == "[0,18; 0,32]"
    assert en.p_value(0.0004) == "p < .001" and nl.p_value(0.034) == "p = 0,034"
    with pytest.raises(InputError, match="language 'fr'"):
        Language.of("fr")
