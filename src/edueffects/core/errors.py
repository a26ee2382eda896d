"""The one error type for bad input: its message is a single line naming the column, row or key.

The message is a template with positional fields (``"column '{0}' not found"``) and its values, so
the command line can show it in the user's language from the same catalogue as the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


class Phrase(str):
    """A fragment of an error message that is itself translated (e.g. a type name)."""


class InputError(ValueError):
    """Raised for invalid user input; the CLI prints the message and exits non-zero."""

    def __init__(self, template: str, *values: object) -> None:
        self.template = template
        self.values = values
        super().__init__(template.format(*values) if values else template)

    def translated(self, translate: object) -> str:
        """The message through ``translate`` (a gettext callable); nested errors are translated too."""
        assert callable(translate)
        values = [
            v.translated(translate) if isinstance(v, InputError) else translate(v) if isinstance(v, Phrase) else v
            for v in self.values
        ]
        text: str = translate(self.template)
        return text.format(*values) if values else text


def listed(values: Iterable[object], limit: int = 5) -> str:
    """The first ``limit`` values, comma-separated, and ``...`` when there are more (a message's list of rows)."""
    shown = list(values)
    return ", ".join(map(str, shown[:limit])) + (", ..." if len(shown) > limit else "")


class CollinearModerators(InputError):
    """The moderators' model matrix is not of full rank."""


class SingularRobustTest(InputError):
    """Hypotheses whose CR2 covariance is singular (redundant hypotheses or too few clusters)."""


class Quantity:
    """A number inside a :class:`Message`: English digits by default, the user's (``1.234,5``) when translated."""

    __slots__ = ("digits", "value")

    def __init__(self, value: float, digits: int = 0) -> None:
        self.value = float(value)
        self.digits = digits

    def __str__(self) -> str:
        return f"{self.value:,.{self.digits}f}"

    def __repr__(self) -> str:
        return f"Quantity({self.value!r}, {self.digits})"

    def localized(self, translate: object) -> str:
        number = getattr(translate, "number", None)
        return str(number(self.value, self.digits)) if callable(number) else str(self)


def _identity(text: str) -> str:
    return text


def _render(template: str, values: tuple[object, ...], translate: Callable[[str], str]) -> str:
    """``template`` through ``translate`` with its values: :class:`Phrase`, :class:`Message` and
    :class:`InputError` values translated too, :class:`Quantity` values in the translator's digits, a
    tuple of values listed with commas."""

    def one(value: object) -> object:
        if isinstance(value, Message | InputError):
            return value.translated(translate)
        if isinstance(value, Phrase):
            return translate(value)
        if isinstance(value, Quantity):
            return value.localized(translate)
        if isinstance(value, tuple):
            return ", ".join(str(one(v)) for v in value)
        return value

    text = translate(template)
    return text.format(*(one(v) for v in values)) if values else text


class Message(str):
    """A sentence for the user (a note, a warning) as a template with positional fields and its values,
    shown in the user's language like :class:`InputError`. It is also the English sentence itself (a
    ``str``), so results print and serialise it in English; reports call :meth:`translated`."""

    template: str
    values: tuple[object, ...]

    def __new__(cls, template: str, *values: object) -> Message:
        self = super().__new__(cls, _render(template, values, _identity))
        self.template = template
        self.values = values
        return self

    def __repr__(self) -> str:
        return f"Message({str(self)!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (Message, (self.template, *self.values))

    def translated(self, translate: object) -> str:
        """The sentence through ``translate`` (a gettext callable); :class:`Phrase` values are translated too."""
        assert callable(translate)
        return _render(self.template, self.values, translate)


def translated(text: str, translate: object) -> str:
    """A note or warning in the user's language: a :class:`Message` translated, other text as it is."""
    return text.translated(translate) if isinstance(text, Message) else text
