"""The column type proposal matches all values of a column in one regular-expression pass: it must
agree with matching them one by one, values holding newlines or delimiters included."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from edueffects.io.delimited import INTEGER, ISO_DATE, NUMBER, _all_match, _columns, _values

PATTERNS = [INTEGER, NUMBER["."], NUMBER[","], ISO_DATE]
TEXT = st.text(alphabet="0123456789+-.,eE \n-aT", max_size=12)


@given(st.lists(TEXT, max_size=8), st.sampled_from(PATTERNS))
def test_all_match_agrees_with_one_by_one(values: list[str], pattern: re.Pattern[str]) -> None:
    assert _all_match(pattern, values) == all(pattern.fullmatch(v) for v in values)


@given(st.lists(st.lists(st.sampled_from(["1", " 2 ", "", "NA", "x", "3.5"]), min_size=1, max_size=4), max_size=6))
def test_columns_agree_with_values(records: list[list[str]]) -> None:
    width = max((len(r) for r in records), default=0)
    assert _columns(records, width) == [_values(records, i) for i in range(width)]
