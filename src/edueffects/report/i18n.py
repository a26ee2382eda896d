"""Languages of the report and the command line: gettext catalogues (``locale/*/LC_MESSAGES/*.po``,
compiled in memory with Babel) and locale-aware numbers (decimal comma in Dutch and German).

English reports follow APA: statistics bounded by 1 (r, p) drop the leading zero (r = .25); Dutch
and German reports keep it (r = 0,25) and separate interval bounds with a semicolon.
"""

from __future__ import annotations

import gettext
from dataclasses import dataclass
from functools import cache
from importlib import resources
from io import BytesIO
from typing import Literal, get_args

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

from edueffects.core.errors import InputError

LanguageCode = Literal["en", "nl", "de"]

# messages that reach gettext through variables (model kinds, ratings, levels): listed so that the
# catalogue test can check their translations like the literal ones
DYNAMIC_MESSAGES = (
    "three-level",
    "random-effects",
    "random-effects (one meta-analysis)",
    "single effect",
    "outcome cluster",
    "joint",
    "small-study effects (SE of z)",
    "slight",
    "moderate",
    "high",
    "very high",
    "High",
    "Moderate",
    "Low",
    "Critically low",
    "school",
    "school:cohort",
    "student",
    "residual",
    "school:cohort:occasion",
    "low tercile",
    "middle tercile",
    "high tercile",
    "SE",
    "95% CI",
    "k and N",
    "suppress",
    "merge",
    "(Intercept)",
    "pandemic",
)


@cache
def _translations(code: str) -> gettext.NullTranslations:
    if code == "en":
        return gettext.NullTranslations()
    po = resources.files("edueffects.report").joinpath(f"locale/{code}/LC_MESSAGES/edueffects.po")
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=code)
    buffer = BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


@dataclass(frozen=True)
class Language:
    """Translation and number formatting for one language."""

    code: LanguageCode = "en"

    @staticmethod
    def of(code: str) -> Language:
        if code not in get_args(LanguageCode):
            raise InputError("language '{0}' is not one of en, nl, de", code)
        return Language(code)  # type: ignore[arg-type]

    def __call__(self, message: str) -> str:
        """Translate a message (gettext)."""
        return _translations(self.code).gettext(message)

    def number(self, value: float | None, digits: int = 2) -> str:
        if value is None or value != value:
            return "–"
        if abs(value) < 0.5 * 10.0**-digits:  # rounds to zero: no sign ("-0.00")
            value = 0.0
        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return str(format_decimal(value, format=pattern, locale=self.code))

    def bounded(self, value: float | None, digits: int = 2) -> str:
        """A statistic in [-1, 1] (r, p): APA style without the leading zero in English."""
        text = self.number(value, digits)
        if self.code == "en" and value is not None and abs(value) < 1:
            text = text.replace("0.", ".", 1)
        return text

    def interval(self, lower: float | None, upper: float | None, digits: int = 2, bounded: bool = True) -> str:
        fmt = self.bounded if bounded else self.number
        sep = ", " if self.code == "en" else "; "
        return f"[{fmt(lower, digits)}{sep}{fmt(upper, digits)}]"

    def p_value(self, p: float) -> str:
        if p < 0.001:
            return "p < " + self.bounded(0.001, 3)
        return "p = " + self.bounded(p, 3)
