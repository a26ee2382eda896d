"""A table as named one-dimensional numpy arrays: what the readers return and the engines read.

Commands that need no DataFrame (``edueffects meta`` with numeric moderators) run without importing
pandas; :meth:`Columns.to_frame` builds one when it is asked for. Missing values are ``NaN`` in
float columns, ``NaT`` in date columns and ``None`` in text (object) columns; integer and boolean
columns hold none (an integer column with a missing value is read as float, a boolean one as object).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
from numpy.typing import NDArray

from edueffects.core.errors import InputError

if TYPE_CHECKING:
    from typing import TypeAlias

    import pandas as pd
    from numpy.typing import ArrayLike

    TableLike: TypeAlias = "pd.DataFrame | Columns | Mapping[str, ArrayLike]"
    """What the engines read: a DataFrame, :class:`Columns`, or a mapping of column names to arrays."""

Column = NDArray[Any]


def missing_mask(values: Column) -> NDArray[np.bool_]:
    """Which entries of a column are missing (``NaN``, ``NaT``, ``None``, pandas' ``NA``)."""
    kind = values.dtype.kind
    if kind in "fc":
        return np.isnan(values)
    if kind in "mM":
        return np.isnat(values)
    if kind == "O":
        pandas = sys.modules.get("pandas")
        if pandas is not None:  # its NA does not compare; pandas' own test, in compiled code
            return np.asarray(pandas.isna(values), dtype=bool)
        # without pandas loaded no NA can be there: None, or a value unequal to itself (NaN, NaT)
        return np.asarray(np.equal(values, np.array(None)) | np.not_equal(values, values), dtype=bool)
    return np.zeros(values.shape, dtype=bool)


def from_masked(values: Column) -> Column:
    """A plain column from a masked array (DuckDB's numpy result): masked entries become missing."""
    mask = np.ma.getmaskarray(values)
    data = np.asarray(np.ma.getdata(values))
    if not mask.any():
        return data
    kind = data.dtype.kind
    if kind in "iu":
        out: Column = data.astype(np.float64)
        out[mask] = np.nan
    elif kind == "f":
        out = data.copy()
        out[mask] = np.nan
    elif kind in "mM":
        out = data.copy()
        out[mask] = np.datetime64("NaT")
    else:  # text, booleans and anything else: an object column with None
        out = data.astype(object)
        out[mask] = None
    return out


def column_values(series: pd.Series) -> Column:
    """A pandas column as a numpy array, as the readers give it: numpy dtypes as they are; nullable
    integers and floats as int64 (float64 with NaN when a value is missing); booleans as bool (object
    with None when a value is missing); text, categories and other extension types as objects with
    None where a value is missing."""
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, np.dtype):
        return series.to_numpy()
    missing = series.isna().to_numpy()
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        floating = bool(missing.any()) or pd.api.types.is_float_dtype(dtype)
        return series.to_numpy("float64" if floating else "int64", na_value=np.nan)
    if pd.api.types.is_bool_dtype(dtype) and not missing.any():
        return series.to_numpy(bool)
    values = series.to_numpy(object)
    values[missing] = None
    return values


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)


def _given_column(values: object) -> Column:
    """A column given as an array, a pandas Series or a sequence, as a reader gives it: a Series through
    :func:`column_values`; a sequence of numbers with missing values (``None``) as float64 with NaN; one of
    numbers and text as objects (not numpy's text of the numbers, which would merge ``1`` and ``"1"``)."""
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(values, pandas.Series):
        return column_values(values)
    if isinstance(values, np.ndarray):
        return values
    array = np.asarray(values)
    if array.dtype.kind == "U":
        array = np.asarray(values, dtype=object)
    if array.dtype.kind == "O" and array.ndim == 1:
        missing = missing_mask(array)
        present = array[~missing]
        if present.size and all(_is_number(v) for v in present):
            numbers = np.full(array.shape, np.nan)
            numbers[~missing] = present.astype(np.float64)
            return numbers
    return array


def is_data_frame(data: object) -> TypeGuard[pd.DataFrame]:
    """Whether ``data`` is a pandas DataFrame (without importing pandas: a DataFrame needs it loaded)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(data, pandas.DataFrame)


@dataclass(frozen=True, eq=False)
class Columns:
    """Named columns of one length; ``len()`` is the number of rows, ``columns`` the names in order,
    ``table[name]`` a column (as a DataFrame would answer)."""

    arrays: Mapping[str, Column]

    def __post_init__(self) -> None:
        if any(np.ndim(v) != 1 for v in self.arrays.values()):
            raise InputError("every column must be one-dimensional")
        lengths = {len(v) for v in self.arrays.values()}
        if len(lengths) > 1:
            raise InputError("columns must all have the same length (got {0})", ", ".join(map(str, sorted(lengths))))

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.arrays)

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values()))) if self.arrays else 0

    def __getitem__(self, name: str) -> Column:
        return self.arrays[name]

    def __contains__(self, name: object) -> bool:
        return name in self.arrays

    def __iter__(self) -> Iterator[str]:
        return iter(self.arrays)

    def take(self, rows: NDArray[np.intp]) -> Columns:
        """The given rows (0-based positions), in that order."""
        return Columns({name: values[rows] for name, values in self.arrays.items()})

    def select(self, names: Sequence[str]) -> Columns:
        return Columns({name: self.arrays[name] for name in names})

    def to_frame(self) -> pd.DataFrame:
        """The table as a pandas DataFrame (a default RangeIndex)."""
        import pandas as pd

        return pd.DataFrame(dict(self.arrays), columns=list(self.arrays))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Columns:
        """The columns of a DataFrame as numpy arrays (see :func:`column_values`)."""
        arrays = {str(name): column_values(series) for name, series in frame.items()}
        if len(arrays) < frame.shape[1]:
            names = [str(name) for name in frame.columns]
            repeated = next(name for name in names if names.count(name) > 1)
            raise InputError("column name '{0}' appears twice in the data; rename one", repeated)
        return cls(arrays)

    @classmethod
    def of(cls, data: object) -> Columns:
        """``data`` as columns: a :class:`Columns`, a pandas DataFrame or a mapping of names to 1-D arrays."""
        if isinstance(data, Columns):
            return data
        if isinstance(data, Mapping):
            return cls({str(name): _given_column(values) for name, values in data.items()})
        if is_data_frame(data):
            return cls.from_frame(data)
        raise InputError("data must be a pandas DataFrame or a mapping of column names to arrays (got {0})",
                         type(data).__name__)  # fmt: skip
