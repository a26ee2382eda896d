"""Range checks of the options of the recovery engine and of the power analysis above it.

Each returns the value in its plain Python type or raises one :class:`InputError` line naming the
option (the API, study files and the command line all pass through them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

from edueffects.core.errors import InputError


def real(value: object) -> float | None:
    """A real number as float, None for anything else (True and False included)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    return float(value)


def positive_number(name: str, value: object) -> float:
    """A finite number > 0 (``sesoi``, students per school)."""
    number = real(value)
    if number is None or not math.isfinite(number) or number <= 0:
        raise InputError("{0} must be a finite number > 0 (got {1})", name, repr(value))
    return number


def probability(name: str, value: object) -> float:
    """A number strictly between 0 and 1 (``alpha``, ``power``)."""
    number = real(value)
    if number is None or not 0.0 < number < 1.0:
        raise InputError("{0} must lie between 0 and 1 (got {1})", name, repr(value))
    return number


def whole(name: str, value: object, low: int, high: int) -> int:
    """A whole number from ``low`` to ``high`` (seeds, numbers of simulations)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or not low <= int(value) <= high:
        raise InputError("{0} must be a whole number from {1} to {2} (got {3})", name, low, high, repr(value))
    return int(value)


def flag(name: str, value: object) -> bool:
    """True or False (not a string such as 'false', which Python would read as true)."""
    if not isinstance(value, bool):
        raise InputError("{0} must be True or False (got {1})", name, repr(value))
    return value


def names(name: str, value: object) -> tuple[str, ...]:
    """Column names: one name or a list of names."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise InputError("{0} must be a list of names (got {1})", name, repr(value))
    return tuple(value)


def column(option: str, value: object) -> str | None:
    """One column name, or None."""
    if value is not None and not isinstance(value, str):
        raise InputError("{0} must be a column name (got {1})", option, repr(value))
    return value
