"""Student tables to per-cell sufficient statistics, through DuckDB (files larger than memory work).

One SQL pass per model aggregates students into cells — school x cohort (gain model), school x
cohort x occasion pattern (linked long model), school x cohort x occasion (unlinked long model) —
keeping counts, sums and sums of squares/cross-products of the scores. Validation happens in SQL
too and ends in one :class:`InputError` line naming the column, the school or the student.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import numpy as np
from numpy.typing import NDArray

from edueffects.core.errors import InputError, Message, listed
from edueffects.core.jet import Array
from edueffects.io.columns import is_data_frame
from edueffects.recovery.frame import (
    CellFrame,
    Schools,
    as_cells,
    codes,
    distinct,
    first_per_group,
    floats,
    sorted_codes,
)

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

ModelKind = Literal["gain", "long_linked", "long_unlinked"]
# scores and moderators beyond +/-LARGEST are refused before their sums of squares lose meaning or overflow
LARGEST = 1e8
# a moderator whose mean across schools exceeds its SD this many times is refused: the design is too ill-conditioned
CENTRING_RATIO = 1e3
ROW = "__edueffects_row__"
NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
           "FLOAT", "DOUBLE", "REAL", "DECIMAL")  # fmt: skip


@dataclass(frozen=True)
class RecoverySpec:
    """Which columns mean what, and which cohorts were affected by the pandemic."""

    school: str
    cohort: str
    pandemic_cohorts: tuple[str, ...]
    moderators: tuple[str, ...]
    pre: str | None = None
    post: str | None = None
    student: str | None = None
    occasion: str | None = None
    score: str | None = None
    long: bool = False
    domain: tuple[str, str] | None = None
    # rows to drop for missing values: (label, SQL condition that is true when the row misses it)
    drop: tuple[tuple[str, str], ...] = ()

    @property
    def kind(self) -> ModelKind:
        if not self.long:
            return "gain"
        if self.student is not None or self.occasion is None:
            return "long_linked"
        return "long_unlinked"


@dataclass(frozen=True, eq=False)
class CellTable:
    """Aggregated cells with their school, cohort, moderators and score statistics.

    ``stats`` columns depend on the model: gain ``n, sum, sumsq`` of the gain; linked long ``r`` (students),
    ``pre_n, post_n`` (0/1 pattern flags), ``s0, s1, ss0, ss1, s01``; unlinked long ``occasion, n, sum, sumsq``.
    """

    kind: ModelKind
    frame: CellFrame | pd.DataFrame
    n_students: int
    n_rows: int
    dose: tuple[str, ...]
    occasion_label: str
    notes: tuple[str, ...]
    missing: dict[str, int] = field(default_factory=dict)  # missing values per column, rows dropped on request
    rows_dropped: int = 0


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connect(
    data: pd.DataFrame | str | Path, domain: tuple[str, str] | None = None
) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """A DuckDB connection with the student table as view ``src`` (one domain's rows if given), and the
    conditions that select those rows (see :func:`_scope`)."""
    con = _connect_all(data)
    conditions: list[str] = []
    if domain is not None:
        column, value = domain
        types = {str(r[0]) for r in con.execute("DESCRIBE src_all").fetchall()}
        if column not in types:
            raise InputError("domain column '{0}' not found", column)
        conditions.append(f"CAST({_quote(column)} AS VARCHAR) = {_literal(value)}")
    _scope(con, conditions)
    return con, conditions


def _scope(con: duckdb.DuckDBPyConnection, conditions: Sequence[str]) -> None:
    """Views of the rows that meet ``conditions``: ``src`` (the fit's rows) and ``src_rows`` (the same
    with their row numbers in the student table, for messages; computed only when asked)."""
    where = " AND ".join(f"({c})" for c in conditions) or "true"
    con.execute(f"CREATE OR REPLACE TEMP VIEW src AS SELECT * FROM src_all WHERE {where}")
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW src_rows AS SELECT * FROM "
        f"(SELECT row_number() OVER () AS {ROW}, * FROM src_all) WHERE {where}"
    )


def _rows(con: duckdb.DuckDBPyConnection, condition: str, limit: int = 1) -> list[int]:
    """Row numbers (1 = the first row of the student table) of the fit's rows that meet ``condition``."""
    found = con.execute(f"SELECT {ROW} FROM src_rows WHERE {condition} ORDER BY {ROW} LIMIT {limit}").fetchall()
    return [int(r[0]) for r in found]


def domains(data: pd.DataFrame | str | Path, column: str) -> tuple[list[str], int]:
    """The distinct values of a domain column (e.g. reading, maths), sorted, and the rows without one."""
    con = _connect_all(data)
    types = {str(r[0]) for r in con.execute("DESCRIBE src_all").fetchall()}
    if column not in types:
        raise InputError("domain column '{0}' not found", column)
    rows = con.execute(
        f"SELECT CAST({_quote(column)} AS VARCHAR) AS d, count(*) FROM src_all GROUP BY d ORDER BY d"
    ).fetchall()
    con.close()
    return [str(r[0]) for r in rows if r[0] is not None], sum(int(r[1]) for r in rows if r[0] is None)


def _connect_all(data: pd.DataFrame | str | Path) -> duckdb.DuckDBPyConnection:
    import duckdb

    from edueffects.io import database

    con = database().cursor()
    if is_data_frame(data):
        con.register("src_frame", data)
        con.execute("CREATE TEMP VIEW src_all AS SELECT * FROM src_frame")
        return con
    from edueffects.io import Source, register

    # the shared input layer: types checked on every row, ';' and decimal commas, encodings, value
    # labels; an edueffects.io.Source carries the reading options and the rows to drop
    register(con, "src_all", cast("str | Path", data))
    if isinstance(data, Source):
        return con  # open_source has read every row of the file already
    try:
        con.execute("SELECT * FROM src_all LIMIT 1").fetchall()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError("file '{0}' could not be read: {1}", data, first) from exc
    return con


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    row = con.execute(sql).fetchone()
    return None if row is None else row[0]


def _check_columns(con: duckdb.DuckDBPyConnection, spec: RecoverySpec) -> dict[str, str]:
    described = con.execute("DESCRIBE src").fetchall()
    types = {str(r[0]): str(r[1]).upper() for r in described}
    needed = [spec.school, spec.cohort, *spec.moderators]
    numeric = list(spec.moderators)
    if spec.long and spec.occasion is not None:
        needed += [spec.occasion, spec.score or ""]
        numeric += [spec.score or ""]
        if spec.student:
            needed.append(spec.student)
    else:
        needed += [spec.pre or "", spec.post or ""]
        numeric += [spec.pre or "", spec.post or ""]
        if spec.student:
            needed.append(spec.student)
    for col in needed:
        if col == "":
            raise InputError(
                "say which columns hold the scores: --pre and --post (one row per student), "
                "or --long with --occasion and --score"
            )
        if col not in types:
            raise InputError("column '{0}' not found (available: {1})", col, ", ".join(types))
    for col in numeric:
        if not types[col].startswith(NUMERIC):
            bad = con.execute(
                f"SELECT {_quote(col)} FROM src WHERE {_quote(col)} IS NOT NULL "
                f"AND TRY_CAST({_quote(col)} AS DOUBLE) IS NULL LIMIT 1"
            ).fetchone()
            if bad is not None:
                raise InputError("column '{0}' is not numeric (it holds {1})", col, repr(str(bad[0])))
    return types


def _check_nulls(con: duckdb.DuckDBPyConnection, columns: Sequence[str], spec: RecoverySpec) -> None:
    """One scan counting missing values in every required column; the first offender is named."""
    counts = con.execute(
        "SELECT " + ", ".join(f"count(*) FILTER (WHERE {_quote(c)} IS NULL)" for c in columns) + " FROM src"
    ).fetchone()
    assert counts is not None
    for col, n in zip(columns, counts, strict=True):
        if n:
            where = _scalar(
                con, f"SELECT CAST({_quote(spec.school)} AS VARCHAR) FROM src WHERE {_quote(col)} IS NULL LIMIT 1"
            )
            raise InputError(
                "column '{0}' is missing in {1} row(s) (first in school {2}); nothing was dropped "
                "(missing='drop' or --drop-missing drops them and counts them)",
                col,
                n,
                where,
            )


def _double(column: str | None) -> str:
    return f"CAST({_quote(column or '')} AS DOUBLE)"


def _largest(expression: str, alias: str) -> str:
    """A cell's largest |value| (NaN if one is NaN, 0 if all are missing)."""
    return f"coalesce(max(abs({expression})), 0) AS {alias}"


def drop_conditions(specs: Sequence[RecoverySpec]) -> tuple[tuple[str, str], ...]:
    """What drops a row under ``missing="drop"``: a missing value in a column the model needs, in any of
    the fits ``specs`` (one per plausible value: every fit keeps the same students). A long model of a
    wide table uses students with one score; it drops those with neither."""
    columns: list[str] = []
    pairs: list[tuple[str, str]] = []
    for spec in specs:
        columns += [spec.school, spec.cohort, *spec.moderators]
        columns += [c for c in (spec.student, spec.occasion, spec.score) if c]
        if spec.pre and spec.post:
            if spec.long:
                pairs.append((spec.pre, spec.post))
            else:
                columns += [spec.pre, spec.post]
    out = [(c, f"{_quote(c)} IS NULL") for c in dict.fromkeys(columns)]
    out += [(f"{pre} & {post}", f"{_quote(pre)} IS NULL AND {_quote(post)} IS NULL") for pre, post in pairs]
    return tuple(out)


def _drop_missing(
    con: duckdb.DuckDBPyConnection, conditions: list[str], spec: RecoverySpec, data: object
) -> tuple[dict[str, int], int]:
    """Under ``missing="drop"``: the missing values per column of the fit's rows (one scan) and the rows
    dropped; the views then hold the complete rows. A source read with these columns dropped
    (``--drop-missing``) has none left: it is not scanned again."""
    if not spec.drop:
        return {}, 0
    from edueffects.io import Source

    if isinstance(data, Source) and {label for label, _ in spec.drop} <= set(data.drop_missing):
        return {}, 0
    any_missing = " OR ".join(f"({condition})" for _, condition in spec.drop)
    parts = [f"count(*) FILTER (WHERE {condition})" for _, condition in spec.drop]
    row = con.execute(f"SELECT count(*), {', '.join(parts)}, count(*) FILTER (WHERE {any_missing}) FROM src").fetchone()
    assert row is not None
    total, dropped = int(row[0]), int(row[-1])
    counts = {label: int(n) for (label, _), n in zip(spec.drop, row[1:-1], strict=True)}
    if dropped and dropped == total:
        listed = ", ".join(f"{label} {n}" for label, n in counts.items() if n)
        raise InputError("every row misses a value the model needs ({0}): nothing is left to fit", listed)
    if dropped:
        conditions.append(f"NOT ({any_missing})")
        _scope(con, conditions)
    return counts, dropped


def _check_scores(con: duckdb.DuckDBPyConnection, frame: CellFrame, scores: Sequence[tuple[str, str]]) -> None:
    """Every score finite and within +/-LARGEST (``frame`` holds each cell's largest |score|), or one line
    naming the column and the first row beyond."""
    for column, alias in scores:
        largest = floats(frame, alias)
        if bool((largest <= LARGEST).all()):  # NaN compares False
            continue
        col = _double(column)
        # DuckDB orders NaN above every number, but may skip row groups of a Parquet file whose statistics
        # leave NaN out: isfinite and the text of the value are not judged from statistics
        rows = _rows(con, f"NOT isfinite({col}) OR CAST({col} AS VARCHAR) = 'nan' OR NOT (abs({col}) <= {LARGEST!r})")
        assert rows, column
        value = float(str(_scalar(con, f"SELECT {col} FROM src_rows WHERE {ROW} = {rows[0]}")))
        if not np.isfinite(value):
            raise InputError("column '{0}' row {1}: {2} is not a finite number", column, rows[0], value)
        raise InputError(
            "column '{0}' row {1}: {2:g} lies outside the range this program can compute with (|score| <= {3:g}); "
            "rescale the column",
            column,
            rows[0],
            value,
            LARGEST,
        )


def _check_one_row_per_student(con: duckdb.DuckDBPyConnection, spec: RecoverySpec) -> None:
    """A wide table with student ids holds each student once: a student counted twice makes the
    standard errors too small. One aggregate; the first repeated id and its rows are named."""
    if not spec.student:
        return
    student = _quote(spec.student)
    repeated = int(str(_scalar(con, f"SELECT count({student}) - count(DISTINCT {student}) FROM src")))
    if not repeated:
        return
    found = con.execute(
        f"SELECT CAST({student} AS VARCHAR), list({ROW} ORDER BY {ROW}) FROM src_rows WHERE {student} IS NOT NULL "
        f"GROUP BY {student} HAVING count(*) > 1 ORDER BY min({ROW}) LIMIT 1"
    ).fetchone()
    assert found is not None
    raise InputError(
        "column '{0}': student {1} appears in rows {2} ({3} repeated row(s) in all); a table with one row per "
        "student must hold each student once (or fit the long model: --long with --occasion and --score)",
        spec.student,
        found[0],
        listed(int(r) for r in found[1]),
        repeated,
    )


def cohort_label(value: object) -> str:
    """A cohort as text; integer-valued numbers print as integers (SPSS stores 2018 as 2018.0)."""
    try:
        number = float(str(value))
    except ValueError:
        return str(value)
    return str(int(number)) if number.is_integer() else str(value)


def _pandemic_flags(cohorts: Array, spec: RecoverySpec, merged: dict[str, tuple[str, ...]]) -> Array:
    """1 for pandemic-affected cohorts; errors for unknown cohorts or no comparison cohort.

    A pooled cohort (``merged``: label -> cohorts, see :mod:`edueffects.recovery.disclosure`) is
    affected when its cohorts are; pandemic cohorts that split one are an error."""
    values, first, code = distinct(cohorts)
    labels = [cohort_label(v) for v in values.tolist()]  # one per distinct cohort
    appearing = [labels[i] for i in np.argsort(first, kind="stable")]
    parts = {label: merged.get(label, (label,)) for label in appearing}
    found = sorted({c for group in parts.values() for c in group})
    if not spec.pandemic_cohorts:
        raise InputError("name the pandemic-affected cohorts (--pandemic-cohorts)")
    named = [cohort_label(c) for c in spec.pandemic_cohorts]
    unknown = [c for c in named if c not in found]
    if unknown:
        raise InputError(
            "pandemic cohort(s) {0} not found in column '{1}' (cohorts: {2})",
            ", ".join(unknown),
            spec.cohort,
            ", ".join(found),
        )
    if set(found) <= set(named):
        raise InputError(
            "every cohort in column '{0}' is marked as pandemic-affected: "
            "a pre-pandemic cohort is needed as the comparison",
            spec.cohort,
        )
    for label, group in parts.items():
        if len(group) > 1 and len({c in named for c in group}) > 1:
            raise InputError(
                "cohorts {0} were pooled into one cell before release, and --pandemic-cohorts splits them; "
                "aggregate again with these pandemic cohorts",
                label,
            )
    affected = {label for label, group in parts.items() if group[0] in named}
    flags = np.array([label in affected for label in labels], dtype=np.float64)
    return flags[code]


def _check_moderators(frame: CellFrame, spec: RecoverySpec, schools: Schools) -> tuple[str, ...]:
    """Moderators must be school-level; a moderator that is 0 for every pre-pandemic cell is a dose.
    ``schools``: the distinct schools in sorted order and each cell's index among them."""
    names, school = schools
    n_schools = len(names)
    pre = frame["pandemic"] == 0
    dose: list[str] = []
    for mod in spec.moderators:
        lo, hi = frame[f"min_{mod}"], frame[f"max_{mod}"]
        is_dose = bool((lo[pre] == 0).all() and (hi[pre] == 0).all()) and bool(hi[~pre].max() > lo[~pre].min())
        rows = ~pre if is_dose else np.ones(len(pre), dtype=bool)
        group = school[rows]
        low = np.full(n_schools, np.inf)
        high = np.full(n_schools, -np.inf)
        np.minimum.at(low, group, lo[rows].astype(np.float64))
        np.maximum.at(high, group, hi[rows].astype(np.float64))
        varying = np.flatnonzero((low != high) & (np.bincount(group, minlength=n_schools) > 0))
        if varying.size:
            i = int(varying[0])
            where = (names[i], low[i], high[i])
            if is_dose:
                raise InputError(
                    "moderator '{0}' varies within school among pandemic cohorts (school {1}: {2:g} to {3:g}); "
                    "moderators must be school-level",
                    mod,
                    *where,
                )
            raise InputError(
                "moderator '{0}' varies within school (school {1}: {2:g} to {3:g}); moderators must be school-level",
                mod,
                *where,
            )
        if is_dose:
            dose.append(mod)
        frame[mod] = hi
    return tuple(dose)


def _check_finite(frame: CellFrame, spec: RecoverySpec) -> None:
    """Moderators finite and within +/-LARGEST, cell statistics finite: one line naming the moderator or
    statistic and the school, before anything squares them."""
    for mod in spec.moderators:
        values = np.column_stack([floats(frame, f"min_{mod}"), floats(frame, f"max_{mod}")])
        inside = np.abs(values) <= LARGEST  # NaN compares False
        if inside.all():
            continue
        i, j = np.argwhere(~inside)[0]
        value, school = float(values[i, j]), frame["school"][i]
        if not np.isfinite(value):
            raise InputError("moderator '{0}' is not a finite number in school {1} ({2})", mod, school, value)
        raise InputError(
            "moderator '{0}' holds {1:g} in school {2}, outside the range this program can compute with "
            "(|moderator| <= {3:g}); rescale it (e.g. in thousands)",
            mod,
            value,
            school,
            LARGEST,
        )
    stats = [c for c in ("sum", "sumsq", "s0", "s1", "ss0", "ss1", "s01") if c in frame]
    finite = np.isfinite(np.column_stack([floats(frame, c) for c in stats]))
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        raise InputError("cell statistic '{0}' of school {1} is not a finite number", stats[j], frame["school"][i])


def _school_values(frame: CellFrame, mod: str, rows: Array | None, schools: Schools) -> NDArray[np.float64]:
    """A school-level moderator's value per school (its first cell among ``rows``), schools sorted."""
    names, school = schools
    values, group = frame[mod], school
    if rows is not None:
        values, group = values[rows], group[rows]
    return np.asarray(first_per_group(values, group, len(names)), dtype=np.float64)


def _check_design(frame: CellFrame, spec: RecoverySpec, dose: Sequence[str], schools: Schools) -> None:
    """Enough schools for the school-level coefficients (and the school variance and CR2 tests beside
    them); every moderator varying across schools, and not so far from zero for its spread that the
    design cannot be solved."""
    n_schools = len(schools[0])
    needed = len(spec.moderators) + 2
    if n_schools < needed:
        raise InputError(
            "{0} schools are too few for {1} school-level moderator(s): the model needs at least {2} schools "
            "(one more than its school-level coefficients, for the school variance and the cluster-robust tests)",
            n_schools,
            len(spec.moderators),
            needed,
        )
    pandemic = frame["pandemic"] == 1
    for mod in spec.moderators:
        values = _school_values(frame, mod, pandemic if mod in dose else None, schools)
        lo, hi = float(values.min()), float(values.max())
        if lo == hi:
            raise InputError(
                "moderator '{0}' has the same value ({1:g}) in every school: its effect cannot be estimated; "
                "leave it out",
                mod,
                lo,
            )
        mean, sd = float(values.mean()), float(values.std())
        if abs(mean) > CENTRING_RATIO * sd:
            raise InputError(
                "moderator '{0}' varies little across schools for its size (mean {1:g}, SD {2:g}): the model cannot "
                "be solved accurately; subtract a constant near its mean (centre it)",
                mod,
                mean,
                sd,
            )


def _checksum(*values: str) -> str:
    """A cell's ``checksum`` column: the sum of the rows' hashes of ``values`` (as DOUBLE, so that a
    file and a DataFrame of the same numbers agree), modulo a prime below 2^53.

    Integer sums do not depend on the order DuckDB's threads add rows in, unlike the floating-point
    sums, so the checksum identifies a cell's scores exactly from run to run (likelihood-ratio tests
    compare it to refuse fits of different data).
    """
    hashed = ", ".join(f"CAST({v} AS DOUBLE)" for v in values)
    return f"CAST(sum(hash({hashed})) % 9007199254740881 AS BIGINT) AS checksum"


def aggregate(data: pd.DataFrame | str | Path, spec: RecoverySpec) -> CellTable:
    """Validate the student table and aggregate it into the cells of the requested model."""
    con, conditions = connect(data, spec.domain)
    _check_columns(con, spec)
    missing, dropped = _drop_missing(con, conditions, spec, data)
    key_cols = [spec.school, spec.cohort, *spec.moderators]
    if spec.long and spec.occasion:
        key_cols += [spec.occasion, spec.score or ""] + ([spec.student] if spec.student else [])
    pivot = spec.kind == "long_linked" and bool(spec.occasion)
    if pivot:
        _check_nulls(con, key_cols, spec)  # the per-student pivot below would hide missing values
    school, cohort = _quote(spec.school), _quote(spec.cohort)
    # missing values are counted inside the one aggregation scan (a CSV is parsed once)
    counted = [] if pivot else [c for c in key_cols if c not in (spec.school, spec.cohort)]
    mods_sql = "".join(
        f", min({_quote(m)}) AS {_quote('min_' + m)}, max({_quote(m)}) AS {_quote('max_' + m)}" for m in spec.moderators
    ) + "".join(f", count(*) FILTER (WHERE {_quote(c)} IS NULL) AS {_quote('null_' + c)}" for c in counted)
    notes: list[str] = []
    if dropped:
        listed = ", ".join(f"{column} {n}" for column, n in missing.items() if n)
        notes.append(Message("{0} row(s) with missing values dropped (missing values per column: {1})", dropped,
                             listed))  # fmt: skip
    occasion_label = spec.occasion or "post"
    # scores as DOUBLE: integer columns would overflow in the squares; the largest |score| per cell is
    # kept to refuse values beyond LARGEST (and NaN or infinity) before anything is fitted
    scores: list[tuple[str, str]] = []  # (column, alias of its largest absolute value)
    if spec.kind == "gain":
        pre, post = _double(spec.pre), _double(spec.post)
        gain = f"({post} - {pre})"
        scores = [(spec.pre or "", "abs_0"), (spec.post or "", "abs_1")]
        fetched = con.execute(
            f"SELECT {school} AS school, {cohort} AS cohort, count(*) AS rows, count({gain}) AS n, "
            f"sum({gain}) AS sum, sum({gain} * {gain}) AS sumsq, {_checksum(gain)}, "
            f"{_largest(pre, 'abs_0')}, {_largest(post, 'abs_1')}{mods_sql} "
            f"FROM src GROUP BY {school}, {cohort} ORDER BY {school}, {cohort}"
        ).fetchnumpy()
        frame, nulls = CellFrame.fetched(fetched)
        lacking = int((frame["rows"] - frame["n"]).sum())
        if lacking:
            raise InputError(
                "{0} student(s) lack a score in '{1}' or '{2}': the gain model needs both "
                "(the long model, --long, uses students with one occasion); nothing was dropped "
                "(missing='drop' or --drop-missing drops them and counts them)",
                lacking,
                spec.pre,
                spec.post,
            )
        _check_scores(con, frame, scores)
        _check_one_row_per_student(con, spec)
        n_rows = n_students = int(frame["rows"].sum())
    elif spec.kind == "long_linked":
        if spec.occasion:
            occ, score, student = _quote(spec.occasion), _double(spec.score), _quote(spec.student or "")
            scores = [(spec.score or "", "abs_0"), (spec.score or "", "abs_1")]
            values = [r[0] for r in con.execute(f"SELECT DISTINCT {occ} FROM src ORDER BY 1").fetchall()]
            if len(values) != 2:
                raise InputError("column '{0}' must hold exactly two occasions (found {1})", spec.occasion, len(values))
            low = "'" + str(values[0]).replace("'", "''") + "'"
            is_low = f"CAST({occ} AS VARCHAR) = {low}"
            students_sql = (
                f"SELECT {student}, min({school}) AS {school}, min({cohort}) AS {cohort}, "
                f"count(DISTINCT {school}) + count(DISTINCT {cohort}) AS homes, "
                f"count(*) FILTER (WHERE {is_low}) AS n0, count(*) FILTER (WHERE NOT {is_low}) AS n1, "
                f"max(CASE WHEN {is_low} THEN {score} END) AS y0, max(CASE WHEN NOT {is_low} THEN {score} END) AS y1"
                + "".join(f", min({_quote(m)}) AS {_quote(m)}" for m in spec.moderators)
                + f" FROM src GROUP BY {student}"
            )
            notes.append(Message("occasion '{0}': {1} = before, {2} = after", spec.occasion, values[0], values[1]))
        else:
            pre, post = _double(spec.pre), _double(spec.post)
            students_sql = f"SELECT *, 2 AS homes, 1 AS n0, 1 AS n1, {pre} AS y0, {post} AS y1 FROM src"
            scores = [(spec.pre or "", "abs_0"), (spec.post or "", "abs_1")]
        fetched = con.execute(
            f"WITH s AS ({students_sql}) "
            f"SELECT {school} AS school, {cohort} AS cohort, "
            "CAST(y0 IS NOT NULL AS INTEGER) AS pre_n, CAST(y1 IS NOT NULL AS INTEGER) AS post_n, count(*) AS r, "
            "count(*) FILTER (WHERE homes > 2) AS moved, count(*) FILTER (WHERE n0 > 1 OR n1 > 1) AS repeated, "
            f"{_checksum('y0', 'y1')}, "
            "coalesce(sum(y0), 0) AS s0, coalesce(sum(y1), 0) AS s1, coalesce(sum(y0 * y0), 0) AS ss0, "
            f"coalesce(sum(y1 * y1), 0) AS ss1, coalesce(sum(y0 * y1), 0) AS s01, "
            f"{_largest('y0', 'abs_0')}, {_largest('y1', 'abs_1')}{mods_sql} "
            f"FROM s GROUP BY {school}, {cohort}, pre_n, post_n ORDER BY {school}, {cohort}, pre_n, post_n"
        ).fetchnumpy()
        frame, nulls = CellFrame.fetched(fetched)
        _linked_checks(con, frame, spec)
        _check_scores(con, frame, scores)
        if not spec.occasion:
            _check_one_row_per_student(con, spec)
        n_students = int(frame["r"].sum())
        n_rows = int(str(_scalar(con, "SELECT count(*) FROM src")))
        one = int(frame["r"][frame["pre_n"] + frame["post_n"] == 1].sum())
        if one:
            notes.append(
                Message("{0} student(s) with one occasion are used (they inform the student-level variance)", one)
            )
    else:
        occ, score = _quote(spec.occasion or ""), _double(spec.score)
        values = [r[0] for r in con.execute(f"SELECT DISTINCT {occ} FROM src ORDER BY 1").fetchall()]
        if len(values) != 2:
            raise InputError("column '{0}' must hold exactly two occasions (found {1})", spec.occasion, len(values))
        low = "'" + str(values[0]).replace("'", "''") + "'"
        fetched = con.execute(
            f"SELECT {school} AS school, {cohort} AS cohort, "
            f"CASE WHEN CAST({occ} AS VARCHAR) = {low} THEN 0 ELSE 1 END AS occasion, count(*) AS n, "
            f"sum({score}) AS sum, sum({score} * {score}) AS sumsq, {_checksum(score)}, "
            f"{_largest(score, 'abs_0')}{mods_sql} "
            f"FROM src GROUP BY {school}, {cohort}, occasion ORDER BY {school}, {cohort}, occasion"
        ).fetchnumpy()
        frame, nulls = CellFrame.fetched(fetched)
        scores = [(spec.score or "", "abs_0")]
        _check_scores(con, frame, scores)
        n_rows = n_students = int(frame["n"].sum())
        notes.append(Message("occasion '{0}': {1} = before, {2} = after", spec.occasion, values[0], values[1]))
    null_cols = [c for c in frame.columns if c.startswith("null_")]
    if (
        _holds_missing(frame, nulls, "school")
        or _holds_missing(frame, nulls, "cohort")
        or any(int(frame[c].sum()) for c in null_cols)
    ):
        _check_nulls(con, key_cols, spec)
    frame = frame.drop([*null_cols, *(alias for _, alias in scores)])
    con.close()
    cells = finish_cells(frame, spec, n_students, n_rows, occasion_label, notes)
    return replace(cells, missing=missing, rows_dropped=dropped)


def _holds_missing(frame: CellFrame, nulls: set[str], column: str) -> bool:
    """Whether a fetched key column held NULL (or NaN, which a DataFrame's float column may hold)."""
    values = frame[column]
    return column in nulls or (values.dtype.kind == "f" and bool(np.isnan(values).any()))


def finish_cells(
    frame: CellFrame | pd.DataFrame,
    spec: RecoverySpec,
    n_students: int,
    n_rows: int,
    occasion_label: str,
    notes: Sequence[str],
    merged: dict[str, tuple[str, ...]] | None = None,
) -> CellTable:
    """The checks and flags every cell table gets, from a student table or from released cells:
    schools, pandemic cohorts (``merged`` maps a pooled cohort label to its cohorts), school-level
    moderators and doses."""
    notes = list(notes)
    frame = as_cells(frame)
    if len(frame) == 0:
        raise InputError("the student table has no rows")
    schools = sorted_codes(frame["school"])
    if len(schools[0]) < 2:
        raise InputError("column '{0}' has a single school: school-level moderators need many schools", spec.school)
    frame["pandemic"] = _pandemic_flags(frame["cohort"], spec, merged or {})
    _check_finite(frame, spec)
    dose = _check_moderators(frame, spec, schools)
    _check_design(frame, spec, dose, schools)
    for mod in dose:
        notes.append(
            Message(
                "'{0}' is zero before the pandemic by definition: it enters as a dose within pandemic cohorts "
                "({1}), without a main effect",
                mod,
                f"pandemic:{mod}",
            )
        )
    school, cell = codes(frame)
    cell_school = first_per_group(school, cell, int(cell.max()) + 1)
    single = int((np.bincount(cell_school) == 1).sum())  # schools with one school x cohort cell
    if single:
        notes.append(Message("{0} school(s) appear in only one cohort; they are used", single))
    return CellTable(
        kind=spec.kind,
        frame=frame,
        n_students=n_students,
        n_rows=n_rows,
        dose=dose,
        occasion_label=occasion_label,
        notes=tuple(notes),
    )


def _linked_checks(con: duckdb.DuckDBPyConnection, frame: CellFrame, spec: RecoverySpec) -> None:
    moved, repeated = int(frame["moved"].sum()), int(frame["repeated"].sum())
    if moved:
        raise InputError("{0} student(s) appear in more than one school or cohort", moved)
    if repeated:
        raise InputError("{0} student(s) have more than one row for one occasion in '{1}'", repeated, spec.occasion)
    none = int(frame["r"][(frame["pre_n"] == 0) & (frame["post_n"] == 0)].sum())
    if none:
        raise InputError("{0} student(s) have no score at either occasion: nothing was dropped", none)
    del con


def standardize_moderators(
    frame: CellFrame | pd.DataFrame, moderators: Sequence[str], dose: Sequence[str]
) -> CellFrame:
    """z-scores of school-level moderators across schools (doses across schools' pandemic values)."""
    out = as_cells(frame).copy()
    schools = sorted_codes(out["school"])
    pandemic = out["pandemic"] == 1
    for mod in moderators:
        values = _school_values(out, mod, pandemic if mod in dose else None, schools)
        mean = values.mean()
        sd = float(values.std(ddof=1)) if values.size > 1 else np.nan
        if not np.isfinite(sd) or sd == 0.0:
            raise InputError("moderator '{0}' does not vary across schools: it cannot be standardised", mod)
        scaled = (out[mod] - float(mean)) / sd
        out[mod] = np.where(pandemic, scaled, 0.0) if mod in dose else scaled
    return out
