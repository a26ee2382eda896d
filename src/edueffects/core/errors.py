"""The one error type for bad input: its message is a single line naming the column, row or key."""


class InputError(ValueError):
    """Raised for invalid user input; the CLI prints the message and exits non-zero."""
