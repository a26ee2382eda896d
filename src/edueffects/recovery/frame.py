"""Cell tables as named numpy columns: what DuckDB's ``fetchnumpy`` returns and the models read.

The command line fits a model without importing pandas: the cells of a fit are a :class:`CellFrame`
(ordered columns of equal length), grouped with numpy. :meth:`CellFrame.to_frame` builds the
pandas DataFrame a result's ``cells`` shows. Missing values are ``NaN`` in number columns and
``None`` in text (object) columns, as in a DataFrame read from DuckDB.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from edueffects.core.nested import IntArray
from edueffects.io.columns import Column, Columns

if TYPE_CHECKING:
    import pandas as pd

Schools = tuple[Column, IntArray]  # the distinct schools in sorted order and each row's index among them


class CellFrame(Columns):
    """The cells of a fit while the engine builds them: :class:`~edueffects.io.columns.Columns` to which
    columns are added (``frame[name] = values``) and from which they are dropped."""

    def __init__(self, columns: Mapping[str, Column]) -> None:
        super().__init__({str(name): np.asarray(values) for name, values in columns.items()})

    @classmethod
    def fetched(cls, result: Mapping[str, Any]) -> tuple[CellFrame, set[str]]:
        """The columns of a DuckDB ``fetchnumpy()`` result, and the names of those that held NULL
        (a masked column): numbers become float64 with NaN there, text None, as ``.df()`` gives."""
        columns: dict[str, Column] = {}
        nulls: set[str] = set()
        for name, values in result.items():
            if isinstance(values, np.ma.MaskedArray):
                mask = np.ma.getmaskarray(values)
                if mask.any():
                    nulls.add(str(name))
                    if values.dtype.kind in "biuf":
                        values = np.where(mask, np.nan, np.asarray(values.data, dtype=np.float64))
                    else:
                        data = np.asarray(values.data, dtype=object).copy()
                        data[mask] = None
                        values = data
                else:
                    values = values.data
            columns[str(name)] = np.asarray(values)
        return cls(columns), nulls

    def __setitem__(self, name: str, values: Column) -> None:
        self.arrays[name] = np.asarray(values)  # type: ignore[index]

    def drop(self, names: Iterable[str]) -> CellFrame:
        gone = set(names)
        return CellFrame({name: values for name, values in self.arrays.items() if name not in gone})

    def copy(self) -> CellFrame:
        return CellFrame({name: values.copy() for name, values in self.arrays.items()})


def as_cells(frame: CellFrame | pd.DataFrame) -> CellFrame:
    """A cell table as a :class:`CellFrame` (a DataFrame's columns as numpy arrays)."""
    if isinstance(frame, CellFrame):
        return frame
    return CellFrame({str(name): frame[name].to_numpy() for name in frame.columns})


def floats(frame: CellFrame, name: str) -> NDArray[np.float64]:
    return np.asarray(frame[name], dtype=np.float64)


def distinct(values: Column) -> tuple[Column, IntArray, IntArray]:
    """Sorted distinct values, the first position of each, and each value's index among them."""
    try:
        uniques, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    except TypeError:  # values of several types (an object column): no order, first appearance instead
        index: dict[object, int] = {}
        inverse = np.fromiter((index.setdefault(v, len(index)) for v in values.tolist()), np.intp, len(values))
        uniques = np.empty(len(index), dtype=object)
        uniques[:] = list(index)
        first = np.full(len(index), len(values), dtype=np.intp)
        np.minimum.at(first, inverse, np.arange(len(values), dtype=np.intp))
    return uniques, first.astype(np.intp), inverse.reshape(-1).astype(np.intp)


def sorted_codes(values: Column) -> Schools:
    """The distinct values in sorted order (as pandas' ``groupby`` orders groups) and each row's code."""
    uniques, _, inverse = distinct(values)
    return uniques, inverse


def factorize(values: Column) -> IntArray:
    """Codes in order of first appearance, as ``pandas.factorize``."""
    _, first, inverse = distinct(values)
    rank = np.empty(first.size, dtype=np.intp)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size, dtype=np.intp)
    return rank[inverse]


def codes(frame: CellFrame) -> tuple[IntArray, IntArray]:
    """School codes and school x cohort codes, each in order of first appearance."""
    school = factorize(frame["school"])
    _, cohort = sorted_codes(frame["cohort"])
    pair = school * (int(cohort.max(initial=0)) + 1) + cohort
    return school, factorize(pair)


def first_per_group(values: Column, group: IntArray, n_groups: int) -> Column:
    """The first value of each group that has rows (groups in code order)."""
    first = np.full(n_groups, group.size, dtype=np.intp)
    np.minimum.at(first, group, np.arange(group.size, dtype=np.intp))
    return values[first[first < group.size]]
