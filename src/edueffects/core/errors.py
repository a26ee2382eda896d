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
