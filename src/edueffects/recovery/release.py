"""``aggregate()``: a student table to released cell statistics, computed where the data live.

The aggregation is one ibis expression, so it runs unchanged on DuckDB (the default: embedded, no
server, files larger than memory), on a Spark session (``engine="spark"``: PySpark in local mode, or
the session of a Spark application on a cluster) and on any other ibis back-end (pass an ibis table
or connection). It reads the student rows once (long tables with student ids: once more per student,
to pair a student's occasions) and returns per cell: counts, sums, sums of squares and
cross-products for each plausible value, grouped by domain x school x cohort x occasion pattern (see
:mod:`edueffects.recovery.cells`). Validation happens in the same engine and ends in one
:class:`InputError` line naming the column, school or count, as for student-level fits; the
disclosure rule (:mod:`edueffects.recovery.disclosure`) runs on the small result.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edueffects.core.errors import InputError
from edueffects.recovery import disclosure as sdc
from edueffects.recovery.cells import (
    FORMAT,
    FORMAT_VERSION,
    RESERVED,
    STATISTIC_MEANING,
    CellRoles,
    ReleasedCells,
    supported_models,
)
from edueffects.recovery.data import LARGEST, cohort_label

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import pandas as pd
    from ibis.backends import BaseBackend

    Source = str | Path | pd.DataFrame | Sequence[str | Path]

ENGINES = ("duckdb", "spark")
Engine = str | object  # "duckdb", "spark" or an ibis back-end (connection)


def aggregate(
    data: Source | object,
    school: str,
    cohort: str,
    moderators: Sequence[str],
    pre: str | Sequence[str] | None = None,
    post: str | Sequence[str] | None = None,
    occasion: str | None = None,
    score: str | Sequence[str] | None = None,
    student: str | None = None,
    domain: str | None = None,
    min_cell: int = 10,
    disclosure: sdc.DisclosureRule = "suppress",
    pandemic_cohorts: Sequence[str | int] | None = None,
    engine: Engine = "duckdb",
) -> ReleasedCells:
    """Per-cell sufficient statistics of a student table, safe to release (nothing identifies a student).

    ``data``: one or more CSV/Parquet files (read by the engine; SPSS, Stata and Excel files are read
    here), a DataFrame, or an ibis table (aggregated on its own back-end). Scores as in
    :func:`edueffects.recovery`: ``pre``/``post`` (one row per student; several columns = plausible
    values) or ``occasion`` and ``score`` (one row per student and occasion; with ``student`` the
    occasions are linked). ``domain`` keeps domains apart. Rows of fewer than ``min_cell`` students
    are withheld: ``disclosure="suppress"`` drops them, ``"merge"`` first pools a school's cohorts of
    the same period (needs ``pandemic_cohorts``). ``engine``: ``"duckdb"``, ``"spark"`` or an ibis
    back-end. Write the result with :meth:`ReleasedCells.write`; fit it with ``recovery(cells=...)``.
    """
    roles = _roles(school, cohort, moderators, pre, post, occasion, score, student, domain)
    if isinstance(min_cell, bool) or not isinstance(min_cell, int | np.integer) or min_cell < 1:
        raise InputError("min_cell must be a whole number of at least 1 (got {0})", min_cell)
    if disclosure not in sdc.DISCLOSURE_RULES:
        raise InputError("disclosure rule '{0}' is not suppress or merge", disclosure)
    if disclosure == "merge" and not pandemic_cohorts:
        raise InputError("--merge pools cohorts of the same period: name the pandemic cohorts (--pandemic-cohorts)")
    pandemic = [cohort_label(c) for c in pandemic_cohorts] if pandemic_cohorts else None
    con, close = _connect(engine, data)
    try:
        with ThreadPoolExecutor(1) as pool:
            table, paths = _read(con, data)
            checksums = pool.submit(_checksums, data, paths)
            _check_schema(table, roles)
            raw, input_rows, occasions, notes = _statistics(table, roles)
            inputs = checksums.result()
        engine_name = str(getattr(con, "name", type(con).__name__))
    finally:
        close()
    if pandemic is not None:
        found = set(raw["cohort"].map(cohort_label))
        unknown = [c for c in pandemic if c not in found]
        if unknown:
            raise InputError("pandemic cohort(s) {0} not found in column '{1}' (cohorts: {2})", ", ".join(unknown),
                             roles.cohort, ", ".join(sorted(found)))  # fmt: skip
    released, record = sdc.apply(raw, roles.moderators, int(min_cell), disclosure, pandemic)
    keys = [k for k in ("domain",) if k in released.columns]
    released = released.sort_values([*keys, "pv", "school", "cohort", "pre_n", "post_n"], kind="stable")
    metadata: dict[str, object] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package": "edueffects",
        "package_version": _package_version(),
        "engine": engine_name,
        "roles": roles.to_dict(),
        "layout": roles.layout,
        "models": list(supported_models(roles.layout)),
        "options": {
            "methods": ["REML", "ML"],
            "plausible_values": roles.n_pv,
            "domains": sorted(str(d) for d in released["domain"].unique()) if keys else [],
            "inference": ["model-based (Satterthwaite)", "CR2 by school", "TOST", "MDE", "standardised moderators"],
        },
        "occasions": occasions,
        "pandemic_cohorts": pandemic,
        "statistics": {k: v for k, v in STATISTIC_MEANING.items() if k in released.columns},
        "rows": {
            "input_rows": input_rows,
            "students": record.students_in,
            "released_students": record.students_released,
            "released_rows": len(released),
        },
        "inputs": inputs,
        "disclosure": record.to_dict(),
        "notes": notes,
    }
    return ReleasedCells(frame=released.reset_index(drop=True), metadata=metadata, inputs=tuple(paths))


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _roles(
    school: str,
    cohort: str,
    moderators: Sequence[str],
    pre: str | Sequence[str] | None,
    post: str | Sequence[str] | None,
    occasion: str | None,
    score: str | Sequence[str] | None,
    student: str | None,
    domain: str | None,
) -> CellRoles:
    if not school or not cohort:
        raise InputError("name the school and cohort columns (--school, --cohort)")
    if not moderators:
        raise InputError("name at least one school-level moderator (--moderators)")
    pres, posts, scores = _names(pre), _names(post), _names(score)
    wide = bool(pres or posts)
    long = bool(occasion or scores)
    if wide == long or (wide and not (pres and posts)) or (long and not (occasion and scores)):
        raise InputError(
            "name the score columns: --pre and --post (one row per student), "
            "or --occasion and --score (one row per student and occasion)"
        )
    if wide and len(pres) != len(posts):
        raise InputError("'{0}' names {1} plausible value(s) but another score names {2}", "pre", len(pres), len(posts))
    for before, after in zip(pres, posts, strict=True):
        if before == after:
            raise InputError("pre and post name the same column '{0}': every gain would be zero", before)
    for mod in moderators:
        if mod in RESERVED:
            raise InputError("column name '{0}' is reserved in the cells file: rename the moderator", mod)
    return CellRoles(
        school=school,
        cohort=cohort,
        moderators=tuple(moderators),
        pre=pres,
        post=posts,
        occasion=occasion if long else None,
        score=scores,
        student=student if long else None,
        domain=domain,
    )


def _noop() -> None:
    return None


def _connect(engine: Engine, data: object) -> tuple[BaseBackend, Callable[[], None]]:
    """The back-end to run on, and how to release it (only what this call started is stopped)."""
    import ibis
    import ibis.expr.types as ir

    if isinstance(data, ir.Table):
        return data.get_backend(), _noop
    if isinstance(engine, ibis.BaseBackend):
        return engine, _noop
    if engine == "duckdb":
        con = ibis.duckdb.connect()
        return con, con.disconnect
    if engine == "spark":
        session, stop = spark_session()
        return ibis.pyspark.connect(session), stop
    raise InputError("engine '{0}' is not duckdb, spark or an ibis back-end", engine)


def spark_session() -> tuple[Any, Callable[[], None]]:
    """The active Spark session, or a new one (and its ``stop``) from the usual Spark configuration
    (``spark-defaults.conf``, ``PYSPARK_SUBMIT_ARGS``); without a configured master: local mode,
    bound to the loopback interface."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise InputError('the Spark engine needs PySpark: pip install "edueffects[spark]"') from None
    active = SparkSession.getActiveSession()
    if active is not None:
        return active, _noop
    builder = SparkSession.builder.appName("edueffects").config("spark.ui.showConsoleProgress", "false")
    if not _master_configured():
        builder = (
            builder.master("local[*]")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.ui.enabled", "false")
        )
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # no Java, no free port...: one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError("the Spark engine could not start: {0}", first) from exc
    session.sparkContext.setLogLevel("ERROR")
    return session, session.stop


def _master_configured() -> bool:
    if "--master" in os.environ.get("PYSPARK_SUBMIT_ARGS", "") or os.environ.get("MASTER"):
        return True
    for folder in (os.environ.get("SPARK_CONF_DIR"), os.path.join(os.environ.get("SPARK_HOME", ""), "conf")):
        conf = Path(folder or "") / "spark-defaults.conf"
        if folder and conf.is_file() and "spark.master" in conf.read_text(encoding="utf-8", errors="replace"):
            return True
    return False


def _read(con: BaseBackend, data: object) -> tuple[ir.Table, list[Path]]:
    """The student table as an ibis table on ``con`` (files are read by the engine itself)."""
    import ibis
    import ibis.expr.types as ir
    import pandas as pd
    import pyarrow as pa

    if isinstance(data, ir.Table):
        return data, []
    if isinstance(data, pd.DataFrame):
        return ibis.memtable(pa.Table.from_pandas(data, preserve_index=False)), []
    if isinstance(data, str | Path):
        paths = [Path(data)]
    else:
        assert isinstance(data, Sequence)
        paths = [Path(p) for p in data]
    if not paths:
        raise InputError("give at least one student table")
    for path in paths:
        if not path.exists():
            raise InputError("file '{0}' does not exist", path)
    kinds = {_kind(p) for p in paths}
    if len(kinds) > 1:
        raise InputError("the input files are of different kinds ({0}): give files of one kind",
                         ", ".join(sorted({p.suffix or p.name for p in paths})))  # fmt: skip
    kind = kinds.pop()
    current = paths[0]
    try:
        if kind == "other":
            from edueffects.io import read_table

            frames = []
            for current in paths:  # Excel, SPSS, Stata: read whole here, value labels applied
                frames.append(read_table(current))
            table = ibis.memtable(pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False))
            return table, paths
        tables = []
        for current in paths:
            tables.append(con.read_parquet(current) if kind == "parquet" else con.read_csv(current))
            tables[-1].schema()
        table = tables[0] if len(tables) == 1 else ibis.union(*tables)
        table.limit(1).to_pyarrow()
    except InputError:
        raise
    except Exception as exc:  # each engine has its own errors for unreadable files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError("file '{0}' could not be read: {1}", current, first) from exc
    return table, paths


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    return "csv" if suffix in (".csv", ".tsv", ".txt") else "other"


def _checksums(data: object, paths: Sequence[Path]) -> list[dict[str, object]]:
    """SHA-256 and size of each input file (a DataFrame: of its hashed rows)."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        hashed = pd.util.hash_pandas_object(data, index=False).to_numpy()
        return [{"file": "DataFrame", "rows": len(data), "sha256": hashlib.sha256(hashed.tobytes()).hexdigest()}]
    out: list[dict[str, object]] = []
    for path in paths:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
        out.append({"file": path.name, "bytes": path.stat().st_size, "sha256": digest.hexdigest()})
    if not paths:
        out.append({"file": "ibis table", "sha256": None})
    return out


def _check_schema(t: ir.Table, roles: CellRoles) -> None:
    schema = t.schema()
    names = list(schema.names)
    needed = [roles.school, roles.cohort, *roles.moderators, *roles.pre, *roles.post, *roles.score]
    needed += [c for c in (roles.occasion, roles.student, roles.domain) if c]
    for col in needed:
        if col not in names:
            raise InputError("column '{0}' not found (available: {1})", col, ", ".join(names))
    for col in dict.fromkeys([*roles.moderators, *roles.pre, *roles.post, *roles.score]):
        if not schema[col].is_numeric():
            column = t[col]
            bad = t.filter(column.notnull() & column.try_cast("float64").isnull()).select(col).limit(1).to_pandas()
            if len(bad):
                raise InputError("column '{0}' is not numeric (it holds {1})", col, repr(str(bad.iloc[0, 0])))


def _statistics(t: ir.Table, roles: CellRoles) -> tuple[pd.DataFrame, int, list[str] | None, list[str]]:
    """The cells of every plausible value (before disclosure), the input rows, occasions and notes."""
    n_mods = len(roles.moderators)
    checked = [roles.school, roles.cohort, *roles.moderators]  # missing values here are errors
    if roles.layout == "wide":
        cols = _common(t, roles)
        for k, (before, after) in enumerate(zip(roles.pre, roles.post, strict=True), 1):
            cols[f"y0_{k}"] = t[before].cast("float64")
            cols[f"y1_{k}"] = t[after].cast("float64")
        for j, mod in enumerate(roles.moderators):
            cols[f"m{j}"] = cols[f"mh{j}"] = t[mod].cast("float64")
        s = t.select(**cols)
        agg = _key_counts(
            _cells(
                s, roles, lambda c: {"rows": c.count(), **{f"nn_{j + 2}": c[f"m{j}"].count() for j in range(n_mods)}}
            )
        )
        _check_missing(t, agg, roles, checked)
        return _linked_rows(agg, roles), int(agg["rows"].sum()), None, []
    occasion = t[roles.occasion]
    summary = t.aggregate(k=occasion.nunique(), lo=occasion.min(), hi=occasion.max()).to_pandas()
    found = int(summary["k"].iloc[0])
    if found != 2:
        raise InputError("column '{0}' must hold exactly two occasions (found {1})", roles.occasion, found)
    low, high = (_plain(summary[c].iloc[0]) for c in ("lo", "hi"))
    occasions = [str(low), str(high)]
    notes = [f"occasion '{roles.occasion}': {low} = before, {high} = after"]
    is0 = occasion == low
    scores = [t[c].cast("float64") for c in roles.score]
    mods = [t[c].cast("float64") for c in roles.moderators]
    checked += [roles.occasion or "", *roles.score]
    if roles.layout == "long_unlinked":
        cols = _common(t, roles)
        cols["o"] = is0.ifelse(0, 1)
        cols["occasion"] = occasion
        cols.update({f"y_{k}": y for k, y in enumerate(scores, 1)})
        cols.update({f"m{j}": x for j, x in enumerate(mods)})
        s = t.select(**cols)
        aggs: dict[str, Any] = {"n": s.count(), "rows": s.count()}
        aggs.update({f"nn_{j + 2}": s[f"m{j}"].count() for j in range(n_mods)})
        aggs[f"nn_{n_mods + 2}"] = s["occasion"].count()
        for k in range(1, roles.n_pv + 1):
            y = s[f"y_{k}"]
            aggs.update({f"sum_{k}": y.sum(), f"sumsq_{k}": (y * y).sum(), f"nn_{n_mods + 2 + k}": y.count()})
            aggs[f"a0_{k}"] = aggs[f"a1_{k}"] = y.abs().max().fill_null(0)
        for j in range(n_mods):
            aggs.update({f"lo{j}": s[f"m{j}"].min(), f"hi{j}": s[f"m{j}"].max()})
        keys = [*(["domain"] if roles.domain else []), "school", "cohort", "o"]
        agg = _key_counts(s.group_by(keys).aggregate(**aggs).to_pandas())
        _check_missing(t, agg, roles, checked)
        return _unlinked_rows(agg, roles), int(agg["rows"].sum()), occasions, notes
    assert roles.student is not None
    checked.append(roles.student)
    by_student = {**({"domain": t[roles.domain].cast("string")} if roles.domain else {}), "student": t[roles.student]}
    s = t.group_by(**by_student).aggregate(
        school=t[roles.school].min(),
        school_hi=t[roles.school].max(),
        cohort=t[roles.cohort].min(),
        cohort_hi=t[roles.cohort].max(),
        n0=t.count(where=is0),
        n1=t.count(where=~is0),
        rows=t.count(),
        **{f"nn_{j}": t[c].count() for j, c in enumerate(checked)},
        **{f"y0_{k}": y.max(where=is0) for k, y in enumerate(scores, 1)},
        **{f"y1_{k}": y.max(where=~is0) for k, y in enumerate(scores, 1)},
        **{f"m{j}": x.min() for j, x in enumerate(mods)},
        **{f"mh{j}": x.max() for j, x in enumerate(mods)},
    )

    def counted(c: ir.Table) -> dict[str, Any]:
        return {
            "rows": c.rows.sum(),
            **{f"nn_{j}": c[f"nn_{j}"].sum() for j in range(len(checked))},
            "moved": c.count(where=(c.school != c.school_hi) | (c.cohort != c.cohort_hi)),
            "repeated": c.count(where=(c.n0 > 1) | (c.n1 > 1)),
        }

    agg = _cells(s, roles, counted)
    _check_missing(t, agg, roles, checked)
    moved, repeated = int(agg["moved"].sum()), int(agg["repeated"].sum())
    if moved:
        raise InputError("{0} student(s) appear in more than one school or cohort", moved)
    if repeated:
        raise InputError("{0} student(s) have more than one row for one occasion in '{1}'", repeated, roles.occasion)
    return _linked_rows(agg, roles), int(agg["rows"].sum()), occasions, notes


def _key_counts(agg: pd.DataFrame) -> pd.DataFrame:
    """Non-missing counts of the school and cohort columns, which are group keys of the rows."""
    agg["nn_0"] = np.where(agg["school"].isna(), 0, agg["rows"])
    agg["nn_1"] = np.where(agg["cohort"].isna(), 0, agg["rows"])
    return agg


def _plain(value: object) -> object:
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _common(t: ir.Table, roles: CellRoles) -> dict[str, Any]:
    cols: dict[str, Any] = {}
    if roles.domain:
        cols["domain"] = t[roles.domain].cast("string")
    cols["school"] = t[roles.school]
    cols["cohort"] = t[roles.cohort]
    return cols


def _cells(s: ir.Table, roles: CellRoles, counted: Callable[[ir.Table], dict[str, Any]]) -> pd.DataFrame:
    """Students (one row each in ``s``: ``y0_k``, ``y1_k``, moderators ``m``/``mh``) into cells of
    school x cohort x occasion pattern of every plausible value; executed on the back-end. ``counted``:
    the row and non-missing counts (and checks) to add, as expressions on the table it is given."""
    m = roles.n_pv
    patterns = {f"p{k}": s[f"y0_{k}"].notnull().ifelse(2, 0) + s[f"y1_{k}"].notnull().ifelse(1, 0) for k in
                range(1, m + 1)}  # fmt: skip
    s = s.mutate(**patterns)
    keys = [*(["domain"] if roles.domain else []), "school", "cohort", *patterns]
    aggs: dict[str, Any] = {"n": s.count(), **counted(s)}
    for k in range(1, m + 1):
        y0, y1 = s[f"y0_{k}"], s[f"y1_{k}"]
        gain = y1 - y0
        aggs.update({
            f"s0_{k}": y0.sum(), f"s1_{k}": y1.sum(), f"ss0_{k}": (y0 * y0).sum(), f"ss1_{k}": (y1 * y1).sum(),
            f"s01_{k}": (y0 * y1).sum(), f"sg_{k}": gain.sum(), f"ssg_{k}": (gain * gain).sum(),
            f"a0_{k}": y0.abs().max().fill_null(0), f"a1_{k}": y1.abs().max().fill_null(0),
        })  # fmt: skip
    for j in range(len(roles.moderators)):
        aggs[f"lo{j}"] = s[f"m{j}"].min()
        aggs[f"hi{j}"] = s[f"mh{j}"].max()
    out: pd.DataFrame = s.group_by(keys).aggregate(**aggs).to_pandas()
    return out


def _check_missing(t: ir.Table, agg: pd.DataFrame, roles: CellRoles, checked: Sequence[str]) -> None:
    """Missing values in a required column: one line with their count and the first school that has one."""
    if roles.domain:
        checked = [*checked, roles.domain]
        agg[f"nn_{len(checked) - 1}"] = np.where(agg["domain"].isna(), 0, agg["rows"])
    for j, col in enumerate(checked):
        missing = int((agg["rows"] - agg[f"nn_{j}"]).sum())
        if missing:
            first = t.filter(t[col].isnull()).select(t[roles.school].cast("string")).limit(1).to_pandas()
            raise InputError(
                "column '{0}' is missing in {1} row(s) (first in school {2}); nothing was dropped",
                col,
                missing,
                first.iloc[0, 0] if len(first) else None,
            )


def _check_values(agg: pd.DataFrame, roles: CellRoles) -> None:
    """Scores and moderators finite and within +/-LARGEST (the largest |score| and the moderators' range
    per cell), before the statistics are released: one line naming the column and a school."""
    before = roles.pre if roles.layout == "wide" else roles.score
    after = roles.post if roles.layout == "wide" else roles.score
    checked = [(col, f"a0_{k}") for k, col in enumerate(before, 1)]
    checked += [(col, f"a1_{k}") for k, col in enumerate(after, 1)]
    checked += [(mod, f"{side}{j}") for j, mod in enumerate(roles.moderators) for side in ("lo", "hi")]
    for col, stat in checked:
        values = agg[stat].to_numpy(np.float64)
        inside = np.abs(values) <= LARGEST  # NaN compares False
        if inside.all():
            continue
        i = int(np.argmin(inside))
        value, school = float(values[i]), agg["school"].iloc[i]
        if not np.isfinite(value):
            raise InputError("column '{0}' holds a value that is not a finite number ({1}) in school {2}", col, value,
                             school)  # fmt: skip
        raise InputError(
            "column '{0}' holds {1:g} in school {2}, outside the range this program can compute with "
            "(|value| <= {3:g}); rescale the column",
            col,
            value,
            school,
            LARGEST,
        )


def _check_school_level(agg: pd.DataFrame, roles: CellRoles) -> None:
    _check_values(agg, roles)
    keys = [*(["domain"] if roles.domain else []), "school", "cohort"]
    for j, mod in enumerate(roles.moderators):
        spread = agg.groupby(keys, sort=True).agg(lo=(f"lo{j}", "min"), hi=(f"hi{j}", "max"))
        varying = spread[spread["lo"] != spread["hi"]]
        if len(varying):
            school = varying.index.get_level_values("school")[0]
            raise InputError(
                "moderator '{0}' varies within school (school {1}: {2:g} to {3:g}); moderators must be school-level",
                mod,
                school,
                float(varying["lo"].iloc[0]),
                float(varying["hi"].iloc[0]),
            )


def _keys(agg: pd.DataFrame, roles: CellRoles) -> pd.DataFrame:
    import pandas as pd

    out = agg[[*(["domain"] if roles.domain else []), "school", "cohort"]].copy()
    for key in ("school", "cohort"):
        if pd.api.types.is_integer_dtype(out[key]):
            out[key] = out[key].astype(np.int64)
    if roles.domain:
        out["domain"] = out["domain"].astype(str)
    return out


def _moderators(agg: pd.DataFrame, roles: CellRoles) -> dict[str, Any]:
    return {mod: agg[f"lo{j}"].to_numpy(np.float64) for j, mod in enumerate(roles.moderators)}


def _linked_rows(agg: pd.DataFrame, roles: CellRoles) -> pd.DataFrame:
    """One row per plausible value and occasion pattern (students with both scores, before only, after only)."""
    import pandas as pd

    _check_school_level(agg, roles)
    parts = []
    for k in range(1, roles.n_pv + 1):
        pattern = agg[f"p{k}"].to_numpy(np.int64)
        none = int(agg.loc[pattern == 0, "n"].sum())
        if none:
            raise InputError("{0} student(s) have no score at either occasion: nothing was dropped", none)
        stats = {s: agg[f"{s}_{k}"].to_numpy(np.float64) for s in ("s0", "s1", "ss0", "ss1", "s01", "sg", "ssg")}
        part = _keys(agg, roles).assign(
            pv=np.int16(k),
            pre_n=(pattern // 2).astype(np.int8),
            post_n=(pattern % 2).astype(np.int8),
            n=agg["n"].to_numpy(np.int64),
            **stats,
            **_moderators(agg, roles),
        )
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    rows = [*(["domain"] if roles.domain else []), "pv", "school", "cohort", "pre_n", "post_n"]
    if roles.n_pv > 1 and frame.duplicated(rows).any():  # plausible values missing for different students
        grouped = frame.groupby(rows, sort=False)
        stats_cols = [c for c in sdc.STATISTICS if c in frame.columns]
        frame = grouped[stats_cols].sum(min_count=1).join(grouped[list(roles.moderators)].first()).reset_index()
        frame["n"] = frame["n"].astype(np.int64)
    return _column_order(frame, roles)


def _unlinked_rows(agg: pd.DataFrame, roles: CellRoles) -> pd.DataFrame:
    """Cross-sections: one row per occasion (pattern before-only or after-only), no cross-products."""
    import pandas as pd

    _check_school_level(agg, roles)
    after = agg["o"].to_numpy(np.int64) == 1
    parts = []
    for k in range(1, roles.n_pv + 1):
        total, squares = agg[f"sum_{k}"].to_numpy(np.float64), agg[f"sumsq_{k}"].to_numpy(np.float64)
        part = _keys(agg, roles).assign(
            pv=np.int16(k),
            pre_n=(~after).astype(np.int8),
            post_n=after.astype(np.int8),
            n=agg["n"].to_numpy(np.int64),
            s0=np.where(after, np.nan, total),
            s1=np.where(after, total, np.nan),
            ss0=np.where(after, np.nan, squares),
            ss1=np.where(after, squares, np.nan),
            s01=np.nan,
            sg=np.nan,
            ssg=np.nan,
            **_moderators(agg, roles),
        )
        parts.append(part)
    return _column_order(pd.concat(parts, ignore_index=True), roles)


def _column_order(frame: pd.DataFrame, roles: CellRoles) -> pd.DataFrame:
    first = [*(["domain"] if roles.domain else []), "pv", "school", "cohort", "pre_n", "post_n", *sdc.STATISTICS]
    return frame[[*first, *roles.moderators]]


def _package_version() -> str:
    from importlib.metadata import version

    return version("edueffects")
