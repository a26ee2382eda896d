"""From a user's table to validated arrays: outcome, sampling variances, moderators, clusters.

Moderators are a Wilkinson formula (``"~ a * b + C(c) + center(d)"``, ``0 +`` or ``- 1`` drops the
intercept), read by formulaic, or a list of columns (``["a", "c"]`` is ``~ a + c``). Coding and names
follow R and metafor: a text (or ``categorical``/``C()``) column becomes one dummy per level except the
first in sorted order, named column + level (``deltypegeneral``); interactions are ``a:b``; the
intercept is ``intrcpt``; other columns keep formulaic's name (``I(year - 1960)``, ``center(d)``).
Every problem is reported as one line naming the column and the (1-based) row.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from edueffects.core.errors import CollinearModerators, InputError, listed
from edueffects.core.jet import Array
from edueffects.io.columns import Column, Columns, column_values, is_data_frame, missing_mask

if TYPE_CHECKING:
    import pandas as pd

    from edueffects.io.columns import (
        TableLike,  # pandas is imported where a DataFrame is needed (formulas, text read as numbers)
    )

MissingPolicy = Literal["error", "drop"]
# effects and sampling variances this program can compute with meaningfully (beyond them squares,
# weights and likelihoods overflow or lose every digit)
EFFECT_LIMIT = 1e8
VARIANCE_RANGE = (1e-12, 1e16)


@dataclass(frozen=True, eq=False)
class MetaData:
    """Validated model inputs; ``rows`` are the 0-based positions of the used rows in the input,
    ``table`` the used rows of every column; ``source`` the same rows of the user's DataFrame (None
    when the data came as columns)."""

    y: Array
    v: Array
    x: Array
    terms: ModelTerms
    level_names: tuple[str, ...]
    level_codes: tuple[NDArray[np.intp], ...]
    rows: NDArray[np.intp]
    n_dropped: int
    table: Columns
    source: pd.DataFrame | None = None


def _used_columns(given: Columns | None, source: pd.DataFrame | None, used: Sequence[str]) -> Columns:
    """The columns a model uses, by the user's labels: of a DataFrame (``source``) only these are
    converted (its other columns may repeat names or hold anything); ``given`` columns are kept whole."""
    if source is None:
        assert given is not None
        _require_columns(given, used)
        return given
    _require_columns(source, used)
    labels = list(source.columns)
    arrays: dict[str, Column] = {}
    for name in dict.fromkeys(used):
        if labels.count(name) > 1:
            raise InputError("column name '{0}' appears twice in the data; rename one", name)
        arrays[name] = column_values(source[name])
    return Columns(arrays)


def _is_text(value: object) -> bool:
    return isinstance(value, str)


def mixed_type_position(values: ArrayLike) -> int | None:
    """Position of the first value whose kind (text or number) differs from the first value's, when a
    grouping column mixes them (``1`` and ``"1"`` would otherwise be two groups); None otherwise."""
    array = np.asarray(values)
    if array.dtype.kind != "O" or array.size == 0:
        return None
    text = np.asarray(np.frompyfunc(_is_text, 1, 1)(array), dtype=bool)
    differs = np.flatnonzero(text != text[0])
    return int(differs[0]) if differs.size else None


def sorted_codes(values: ArrayLike) -> NDArray[np.intp]:
    """Integer codes 0..G-1 of a column, numbered in the sorted order of its distinct values.

    An integer column already in order (the usual layout: rows sorted by cluster) takes one pass of
    numpy (a running count of value changes); any other column is sorted (``np.unique``)."""
    array = np.asarray(values)
    if array.dtype.kind in "iu" and array.ndim == 1:
        change = np.empty(array.size, dtype=bool)
        if array.size:
            change[0] = True
            np.not_equal(array[1:], array[:-1], out=change[1:])
        if array.size < 2 or bool(np.all(array[1:] >= array[:-1])):
            codes = np.cumsum(change, dtype=np.intp)
            codes -= 1
            return codes
    pandas = sys.modules.get("pandas")
    if pandas is not None and array.dtype.kind == "O":  # text: pandas' hash table, ~2.5x faster than sorting objects
        codes, _ = pandas.factorize(array, sort=True)
        return np.asarray(codes, dtype=np.intp)
    _, codes = np.unique(array, return_inverse=True)
    return np.asarray(codes, dtype=np.intp).reshape(-1)


def _require_columns(data: pd.DataFrame | Columns, columns: Sequence[str]) -> None:
    for col in columns:
        if col not in data.columns:
            available = ", ".join(map(str, data.columns))
            raise InputError("column '{0}' not found (available: {1})", col, available)


def _numeric(data: Columns, col: str) -> Array:
    values = data[col]
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    import pandas as pd  # text, dates or mixed values: pandas' reading of numbers

    series = pd.Series(values)
    converted = pd.to_numeric(series, errors="coerce")
    bad = np.flatnonzero(converted.isna().to_numpy() & series.notna().to_numpy())
    if bad.size:
        value = series.iloc[int(bad[0])]
        raise InputError("column '{0}' row {1}: value {2} is not a number", col, int(bad[0]) + 1, repr(value))
    return converted.to_numpy(dtype=np.float64)


def _format_level(value: object) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


ALLOWED_FUNCTIONS = frozenset({"C", "I", "center", "scale", "log", "log2", "log10", "exp", "sqrt", "abs", "contr"})
_ALLOWED = "C(), I(), center(), scale(), log(), log2(), log10(), exp(), sqrt(), abs(), contr.treatment()"
_QUOTED = re.compile(r"`[^`]*`|'[^']*'|\"[^\"]*\"")
_IDENTIFIER = re.compile(r"(?<![\w.])([A-Za-z_][A-Za-z_0-9]*)")
_LEVEL = re.compile(r"^(?P<factor>.*)\[(?:T\.)?(?P<level>.*)\]$")
_CALL = re.compile(r"^C\((?P<column>[^,]*)(?:,.*)?\)$")


@dataclass(frozen=True, eq=False)
class ModelTerms:
    """The moderator formula of a fit and which model-matrix columns belong to which term.

    ``terms`` maps each term label (``intrcpt``, ``alloc``, ``ablat:year``, ``I(year - 1960)``) to its
    column positions; ``spec`` (formulaic's ``ModelSpec``) rebuilds the matrix for new data with the
    same coding, levels and centring.
    """

    formula: str
    coef_names: tuple[str, ...]
    terms: tuple[tuple[str, tuple[int, ...]], ...]
    spec: Any = field(repr=False)  # None: numeric columns used as they are
    columns: tuple[str, ...] = ()  # the data columns the formula reads

    @property
    def has_intercept(self) -> bool:
        return "intrcpt" in self.coef_names

    def moderator_columns(self) -> tuple[int, ...]:
        """Every column but the intercept (what QM tests)."""
        return tuple(i for i, name in enumerate(self.coef_names) if name != "intrcpt")

    def select(self, selection: Sequence[str]) -> tuple[int, ...]:
        """Column positions of coefficient names or term labels (``alloc`` selects every ``alloc`` dummy)."""
        by_term = dict(self.terms)
        chosen: list[int] = []
        for item in selection:
            if item in self.coef_names:
                chosen.append(self.coef_names.index(item))
            elif item in by_term:
                chosen.extend(by_term[item])
            else:
                known = ", ".join(dict.fromkeys([*self.coef_names, *by_term]))
                raise InputError("'{0}' is neither a coefficient nor a term of the model (known: {1})", item, known)
        return tuple(dict.fromkeys(chosen))

    def matrix(self, newdata: pd.DataFrame) -> Array:
        """The model matrix of ``newdata`` (original columns), coded exactly as in the fit."""
        import warnings

        if self.spec is None:  # numeric columns as they are, with the intercept
            columns = [name for name in self.coef_names if name != "intrcpt"]
            _require_columns(newdata, columns)
            try:
                values = newdata[columns].to_numpy(dtype=np.float64)
            except (TypeError, ValueError):
                raise InputError("new moderator values must be numbers ({0})", ", ".join(columns)) from None
            x = np.column_stack([np.ones(len(newdata)), values])
            if not np.isfinite(x).all():
                raise InputError("new moderator values cannot be coded like the data (missing or unseen values)")
            return x
        needed = sorted(self.spec.required_variables)
        _require_columns(newdata, needed)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                mm = self.spec.get_model_matrix(newdata.reset_index(drop=True), na_action="raise")
            except Exception as error:  # formulaic reports unseen levels and bad values in many types
                raise InputError(
                    "new moderator values cannot be coded like the data: {0}", _first_line(error)
                ) from None
        x = np.asarray(mm, dtype=np.float64)
        if x.shape[1] != len(self.coef_names) or not np.isfinite(x).all():
            raise InputError("new moderator values cannot be coded like the data (missing or unseen values)")
        return x


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _r_factor(factor: str, bool_columns: frozenset[str]) -> str:
    """One factor of a formulaic column name in R's style: ``C(alloc)[T.random]`` -> ``allocrandom``."""
    match = _LEVEL.match(factor)
    if match is None:
        name = factor.strip("`")
        return f"{name}TRUE" if name in bool_columns else name
    base, level = match.group("factor"), match.group("level")
    call = _CALL.match(base)
    column = (call.group("column") if call else base).strip().strip("`")
    try:
        number = float(level)
        level = str(int(number)) if number.is_integer() else level
    except ValueError:
        pass
    if level in ("True", "False"):
        level = level.upper()
    return f"{column}{level}"


def _split_interaction(name: str) -> list[str]:
    """Split ``a:b`` at colons outside brackets, parentheses and backticks."""
    parts, depth, quoted, current = [], 0, False, ""
    for ch in name:
        if ch == "`":
            quoted = not quoted
        elif not quoted and ch in "([":
            depth += 1
        elif not quoted and ch in ")]":
            depth -= 1
        if ch == ":" and depth == 0 and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def r_style_name(name: str, bool_columns: frozenset[str] = frozenset()) -> str:
    """metafor's coefficient name for a formulaic column: ``intrcpt``, ``x1:x2``, ``<col><level>``."""
    if name == "Intercept":
        return "intrcpt"
    return ":".join(_r_factor(part, bool_columns) for part in _split_interaction(name))


def _term_label(term: str) -> str:
    if term == "1":
        return "intrcpt"
    parts = []
    for part in _split_interaction(term):
        call = _CALL.match(part)
        parts.append((call.group("column") if call else part).strip().strip("`"))
    return ":".join(parts)


def _quote(column: str) -> str:
    if "`" in column:
        raise InputError("moderator column name {0} contains a backtick", repr(column))
    return f"`{column}`"


def moderator_formula(mods: str | Sequence[str] | None, categorical: Sequence[str]) -> tuple[str, bool]:
    """The formula of ``mods`` and whether the user wrote it: a formula string (``"~ a * b"``) is
    used as written; a column name or a list of column names becomes ``~ a + C(b)`` (text and
    ``categorical`` columns are treatment-coded)."""
    if mods is None:
        return "~ 1", False
    if isinstance(mods, str):
        if "~" in mods:
            if categorical:
                raise InputError("with a moderator formula, mark categorical columns inside it: C(column)")
            return mods.strip(), True
        mods = [mods]
    if not all(isinstance(m, str) for m in mods):
        raise InputError("mods must be a formula string or a list of column names")
    if not mods:
        return "~ 1", False
    for col in categorical:
        if col not in mods:
            raise InputError("categorical column '{0}' is not among the moderators ({1})", col, ", ".join(mods))
    return "~ " + " + ".join(f"C({_quote(m)})" if m in categorical else _quote(m) for m in mods), False


def _check_formula(formula: str, columns: Sequence[object]) -> None:
    """Only column names, numbers, operators and the documented transforms may appear in a formula
    (formulaic evaluates its terms as Python: no attribute access, no other names)."""
    if formula.count("~") != 1 or formula.split("~")[0].strip():
        raise InputError("moderator formula {0} must be one right-hand side such as '~ a * b + C(c)'", repr(formula))
    names = {str(c) for c in columns}
    bare = re.sub(r"contr\.treatment", "contr", _QUOTED.sub(" ", formula))
    if "__" in bare or re.search(r"\.\s*[A-Za-z_]", bare):
        raise InputError("moderator formula {0}: only columns, numbers and {1} are allowed", repr(formula), _ALLOWED)
    for token in _IDENTIFIER.findall(bare):
        if token not in names and token not in ALLOWED_FUNCTIONS:
            raise InputError(
                "moderator formula {0}: '{1}' is not a column (functions allowed: {2})", repr(formula), token, _ALLOWED
            )


def _plain_columns(formula: str) -> list[str] | None:
    """The columns of a formula that only adds backticked columns (a list of moderators), else None."""
    if formula == "~ 1":
        return []
    match = re.fullmatch(r"~ `[^`]+`(?: \+ `[^`]+`)*", formula)
    return None if match is None else re.findall(r"`([^`]+)`", formula)


def _formula_columns(formula: str, columns: Sequence[object]) -> list[str]:
    """The data columns a formula uses (formulaic's required variables, plus the arguments of
    stateful transforms such as ``center(x)``, which formulaic does not list)."""
    plain = _plain_columns(formula)
    if plain is not None:
        return sorted(plain)
    from formulaic import Formula
    from formulaic.errors import FormulaicError

    try:
        required = set(Formula(formula).required_variables)
    except FormulaicError as error:
        raise InputError("moderator formula {0} cannot be read: {1}", repr(formula), _first_line(error)) from None
    names = {str(c) for c in columns}
    quoted = {q.strip("`") for q in re.findall(r"`[^`]*`", formula)}
    bare = set(_IDENTIFIER.findall(_QUOTED.sub(" ", formula)))
    # formulaic cuts a quoted name at a dot (`a.b=1` -> 'a'): such fragments are not columns
    required = {r for r in required if r in names or not any(q != r and q.startswith(r) for q in quoted)}
    return sorted(required | quoted | (bare & names))


def used_columns(
    data: pd.DataFrame | Columns,
    yi: str,
    vi: str,
    cluster: str | None,
    within: str | None,
    mods: str | Sequence[str] | None,
    categorical: Sequence[str],
) -> list[str]:
    """The columns a model uses (effects, variances, clusters, moderators): where missing values count."""
    formula, _ = moderator_formula(mods, categorical)
    extra = _formula_columns(formula, list(data.columns))
    return list(dict.fromkeys([yi, vi, *([cluster] if cluster else []), *([within] if within else []), *extra]))


def _is_number_column(values: Column) -> bool:
    return values.dtype.kind in "iuf"


def moderator_matrix(
    data: Columns, formula: str, categorical: Sequence[str], source: pd.DataFrame | None = None
) -> tuple[Array, ModelTerms]:
    """The model matrix of a checked moderator formula (intercept unless it drops it) and its terms.

    Numeric columns added to each other need no formula machinery; any other formula is evaluated by
    formulaic on ``source`` (the user's DataFrame, same rows as ``data``) or on ``data`` as a DataFrame."""
    required = _formula_columns(formula, list(data.columns))
    _require_columns(data, required)
    from edueffects.io import holds_dates

    for col in required:
        values = data[col]
        # a column read as numbers holds no dates (dates arrive as datetime64, periods and text as objects)
        if values.dtype.kind not in "biuf" and holds_dates(values if source is None else source[col]):
            raise InputError(
                "moderator '{0}' holds dates (an Excel date format?): convert it to a number such as the year", col
            )
        if col in categorical or values.dtype.kind not in "biuf":
            levels = _distinct(values)
            if len(levels) < 2:
                raise InputError(
                    "moderator '{0}' has a single level ({1}): its effect cannot be estimated",
                    col,
                    repr(_format_level(levels[0])),
                )
    bools = frozenset(c for c in required if _is_bool_column(data[c], None if source is None else source[c]))
    plain = _plain_columns(formula)
    spec: Any = None
    if plain is not None and all(_is_number_column(data[c]) and c not in categorical for c in plain):
        # numeric columns as they are: the model matrix needs no formula machinery
        x = np.column_stack([np.ones(len(data)), *(data[c].astype(np.float64) for c in plain)])
        names = ("intrcpt", *plain)
        terms: tuple[tuple[str, tuple[int, ...]], ...] = (
            ("intrcpt", (0,)),
            *((c, (i + 1,)) for i, c in enumerate(plain)),
        )
    else:
        from formulaic import Formula
        from formulaic.errors import FormulaicError

        used = source[required] if source is not None else data.select(required).to_frame()
        try:
            mm = Formula(formula).get_model_matrix(used, na_action="raise")
        except FormulaicError as error:
            raise InputError(
                "moderator formula {0} cannot be evaluated: {1}", repr(formula), _first_line(error)
            ) from None
        x = np.asarray(mm, dtype=np.float64)
        names = tuple(r_style_name(str(c), bools) for c in mm.columns)
        spec = mm.model_spec
        terms = tuple((_term_label(str(t)), tuple(int(i) for i in idx)) for t, idx in spec.term_indices.items())
    for label, idx in terms:
        if not idx:
            raise InputError("moderator term '{0}' has no variation in the data: its effect cannot be estimated", label)
    finite = np.isfinite(x)
    if not finite.all():
        bad = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise InputError("moderators row {0}: a value is not finite (check {1})", bad + 1, ", ".join(required))
    if x.shape[1] == 0:
        raise InputError("moderator formula {0} leaves no coefficient to estimate", repr(formula))
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise CollinearModerators(
            "moderators are collinear (the model matrix is not of full rank): check {0}",
            ", ".join(n for n in names if n != "intrcpt"),
        )
    return x, ModelTerms(formula=formula, coef_names=names, terms=terms, spec=spec, columns=tuple(required))


def _is_bool_column(values: Column, original: pd.Series | None) -> bool:
    """A column of booleans: by the user's own column type when there is one (a nullable boolean with
    missing values is one, though its values arrive as objects), else by the array's."""
    if values.dtype.kind in "iuf":  # numbers (a nullable boolean arrives as bool or as objects)
        return False
    if original is not None:
        import pandas as pd

        return bool(pd.api.types.is_bool_dtype(original))
    return values.dtype.kind == "b"


def _distinct(values: Column) -> list[object]:
    """The distinct present values of a column, in order of first appearance."""
    present = values[~missing_mask(values)]
    try:
        _, first = np.unique(present, return_index=True)
    except TypeError:  # text mixed with numbers: compared as text only to find the distinct ones
        _, first = np.unique(present.astype(str), return_index=True)
    return [present[i] for i in np.sort(first)]


def prepare(
    data: TableLike,
    yi: str,
    vi: str,
    cluster: str | None,
    within: str | None,
    mods: str | Sequence[str] | None,
    categorical: Sequence[str],
    missing: MissingPolicy,
) -> MetaData:
    """Validate the table (a DataFrame, :class:`~edueffects.io.columns.Columns` or a mapping of
    column names to arrays) and build the arrays of one meta-analytic model."""
    source: pd.DataFrame | None = None
    given: Columns | None = None
    if is_data_frame(data):
        source = data.reset_index(drop=True)
        names = list(source.columns)
    else:
        given = Columns.of(data)
        names = list(given.columns)
    if within is not None and cluster is None:
        raise InputError("'within' needs 'cluster': effects are nested within clusters")
    formula, written = moderator_formula(mods, categorical)
    if written:
        _check_formula(formula, names)
    mod_columns = _formula_columns(formula, names)
    used = [yi, vi, *([cluster] if cluster else []), *([within] if within else []), *mod_columns]
    table = _used_columns(given, source, used)
    y_all = _numeric(table, yi)
    v_all = _numeric(table, vi)
    missing_by_column = {c: missing_mask(table[c]) for c in dict.fromkeys(used)}
    mask = np.logical_or.reduce(list(missing_by_column.values()))
    n_dropped = 0
    if mask.any():
        if missing == "error":
            first = int(np.flatnonzero(mask)[0])
            col = next(c for c in used if bool(missing_by_column[c][first]))
            raise InputError(
                "column '{0}' row {1} is missing; {2} row(s) have missing values "
                "(fix them, or drop them explicitly with missing='drop' / --drop-missing)",
                col,
                first + 1,
                int(mask.sum()),
            )
        n_dropped = int(mask.sum())
    rows = np.flatnonzero(~mask).astype(np.intp)
    if n_dropped:
        table = table.take(rows)
        source = None if source is None else source.iloc[rows].reset_index(drop=True)
        y, v = y_all[rows], v_all[rows]
    else:  # every row used: no copy of the table
        y, v = y_all, v_all
    for name, values in ((yi, y), (vi, v)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise InputError(
                "column '{0}' row {1}: value {2} is not finite", name, int(rows[bad[0]]) + 1, values[bad[0]]
            )
    large = np.flatnonzero(np.abs(y) > EFFECT_LIMIT)
    if large.size:
        r = int(large[0])
        raise InputError(
            "column '{0}' row {1}: effect {2:g} lies outside the range this program can compute with (|{0}| <= {3:g})",
            yi,
            int(rows[r]) + 1,
            y[r],
            EFFECT_LIMIT,
        )
    nonpositive = np.flatnonzero(v <= 0)
    if nonpositive.size:
        r = int(nonpositive[0])
        raise InputError(
            "column '{0}' row {1}: sampling variance must be > 0 (got {2:g}); {3} row(s) affected: {4}",
            vi,
            int(rows[r]) + 1,
            v[r],
            nonpositive.size,
            listed(rows[nonpositive] + 1),
        )
    low, high = VARIANCE_RANGE
    unusable = np.flatnonzero((v < low) | (v > high))
    if unusable.size:
        r = int(unusable[0])
        raise InputError(
            "column '{0}' row {1}: sampling variance {2:g} lies outside the range this program can compute with "
            "[{3:g}, {4:g}]",
            vi,
            int(rows[r]) + 1,
            v[r],
            low,
            high,
        )
    x, terms = moderator_matrix(table, formula, categorical, source)
    k, p = x.shape
    if k <= p:
        raise InputError("{0} usable row(s) for {1} coefficient(s): a model needs more rows than coefficients", k, p)
    level_names: list[str] = []
    codes: list[NDArray[np.intp]] = []
    for key, column in (("cluster", cluster), ("within", within)):
        position = None if column is None else mixed_type_position(table[column])
        if column is not None and position is not None:
            raise InputError(
                "column '{0}' ({1}) mixes numbers and text (effect {2}): give one type",
                column,
                key,
                int(rows[position]) + 1,
            )
    if cluster is not None:
        outer = sorted_codes(table[cluster])
        level_names.append(cluster)
        codes.append(outer)
        if within is not None:
            inner = sorted_codes(table[within]).astype(np.int64)
            combined = outer.astype(np.int64) * (int(inner.max()) + 1) + inner
            codes.append(sorted_codes(combined))
            level_names.append(f"{cluster}/{within}")
    return MetaData(
        y=y,
        v=v,
        x=x,
        terms=terms,
        level_names=tuple(level_names),
        level_codes=tuple(codes),
        rows=rows,
        n_dropped=n_dropped,
        table=table,
        source=source,
    )
