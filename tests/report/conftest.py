"""Checks shared by the report tests (as fixtures): the visible text of a page and the English words in
it, numbers with decimal points in figure texts, and a meta-analysis study file of the BCG trials."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest
from babel.messages.pofile import read_po

from edueffects import simulate

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "data"
WORD = re.compile(r"[^\W\d_]+")
PLACEHOLDER = re.compile(r"\{[^}]*\}")


class _Text(HTMLParser):
    """Visible text segments of a report page: body text, table cells and SVG text; not the style sheet
    not the SVG metadata and not the reference list (titles of the cited works are quoted as published)."""

    def __init__(self) -> None:
        super().__init__()
        self.segments: list[str] = []
        self._skip: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        hidden = tag in ("style", "title", "metadata") or (tag == "ul" and ("class", "refs") in attrs)
        if hidden or (self._skip and tag == self._skip[-1]):  # nested tags of the same name count too
            self._skip.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._skip and tag == self._skip[-1]:
            self._skip.pop()

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.segments.append(data.strip())


def visible_text(page: str) -> list[str]:
    parser = _Text()
    parser.feed(page)
    return parser.segments


@cache
def english_only(code: str) -> frozenset[str]:
    """Words of the English messages that no message of ``code`` uses."""
    po = resources.files("edueffects.report").joinpath(f"locale/{code}/LC_MESSAGES/edueffects.po")
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=code)
    english: set[str] = set()
    translated: set[str] = set()
    for message in catalog:
        if not message.id or not message.string:
            continue
        english |= {w.lower() for w in WORD.findall(PLACEHOLDER.sub(" ", str(message.id)))}
        translated |= {w.lower() for w in WORD.findall(PLACEHOLDER.sub(" ", str(message.string)))}
    return frozenset(w for w in english - translated if len(w) > 1)


def data_labels() -> list[str]:
    """The labels of the embedded example's data, as the report quotes them (longest first)."""
    example = simulate.soma()
    effects = example.effects
    labels = {str(v) for column in ("outcome_cluster", "meta_analysis") for v in effects[column].unique()}
    labels |= {"school_level", "valence", "year", "informant", "ses", "nongerman", "lost_days"}
    labels |= {"meta_analysis", "es_id", "soma", "recovery"}  # column names and study-file keys
    return sorted(labels, key=len, reverse=True)


def english_words(page: str, code: str, labels: list[str] | None = None) -> dict[str, str]:
    """English words of the page outside data labels (those of the embedded example unless given) with
    the text they were found in."""
    found: dict[str, str] = {}
    labels = data_labels() if labels is None else sorted(labels, key=len, reverse=True)
    for segment in visible_text(page):
        text = segment
        for label in labels:
            text = text.replace(label, " ")
        if text.startswith("Software:"):  # package names
            continue
        for word in WORD.findall(text):
            if word.lower() in english_only(code):
                found.setdefault(word, segment)
    return found


def decimal_points(texts: list[str]) -> list[str]:
    """Texts holding a number with a decimal point (thousands separators 1.100 aside)."""
    bad = []
    for text in texts:
        for token in re.findall(r"\d[\d.,]*\d", text):
            if "." in token and not re.fullmatch(r"\d{1,3}(\.\d{3})+(,\d+)?", token):
                bad.append(text)
    return bad


def write_meta_study(folder: Path, language: str, extra: str = "") -> Path:
    bcg = pd.read_csv(REFERENCE / "bcg.csv")
    bcg.assign(label=bcg.author + ", " + bcg.year.astype(str)).to_csv(folder / "bcg.csv", index=False)
    study = folder / "meta.toml"
    study.write_text(
        f'title = "BCG trials"\nlanguage = "{language}"\n[meta]\ndata = "bcg.csv"\nyi = "yi"\nvi = "vi"\n'
        f'labels = "label"\n{extra}'
    )
    return study


@pytest.fixture
def english_words_of() -> Callable[..., dict[str, str]]:
    return english_words


@pytest.fixture
def decimal_points_in() -> Callable[[list[str]], list[str]]:
    return decimal_points


@pytest.fixture
def meta_study() -> Callable[..., Path]:
    return write_meta_study


@pytest.fixture
def visible_text_of() -> Callable[[str], list[str]]:
    return visible_text
