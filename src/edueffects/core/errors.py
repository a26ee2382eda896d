"""The one error type for bad input: its message is a single line naming the column, row or key.

The message is a template with positional fields (``"column '{0}' not found"``) and its values, so
the command line can show it in the user's language from the same catalogue as the report.
"""

from __future__ import annotations


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


class Message:
    """A sentence for the user (a note, a warning) as a template with positional fields and its values,
    shown in the user's language like :class:`InputError`."""

    __slots__ = ("template", "values")

    def __init__(self, template: str, *values: object) -> None:
        self.template = template
        self.values = values

    def __str__(self) -> str:
        return self.template.format(*self.values) if self.values else self.template

    def __repr__(self) -> str:
        return f"Message({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and (self.template, self.values) == (other.template, other.values)

    def __hash__(self) -> int:
        return hash((self.template, tuple(map(str, self.values))))

    def translated(self, translate: object) -> str:
        """The sentence through ``translate`` (a gettext callable); :class:`Phrase` values are translated too."""
        assert callable(translate)
        values = [translate(v) if isinstance(v, Phrase) else v for v in self.values]
        text: str = translate(self.template)
        return text.format(*values) if values else text
