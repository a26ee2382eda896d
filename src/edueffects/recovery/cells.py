"""Released cell statistics: the file that may leave the data centre, and the cells of each model built from it.

A cells file is Parquet, one row per domain x plausible value x school x cohort x occasion pattern
(``pre_n``, ``post_n``: whether the students have a score before and after), holding
``n`` (students), ``s0``, ``s1`` (sums of the scores before and after), ``ss0``, ``ss1`` (sums of
squares), ``s01`` (sum of products of a student's two scores), ``sg``, ``ssg`` (sum and sum of
squares of the gain ``after - before``) and the school-level moderators. Statistics a layout cannot
have are null (students of cross-sections are not linked: no ``s01``, ``sg``, ``ssg``). The file's
key-value metadata (``edueffects.cells``, JSON) holds the column roles, the models the statistics
support, row counts, checksums of the inputs, the disclosure rule and what it withheld, and the
package version. No student identifier is written.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from edueffects.core.errors import InputError, Message, Phrase, Quantity
from edueffects.core.results import ResultDisplay
from edueffects.io.json_output import json_safe
from edueffects.recovery.data import CellTable, RecoverySpec, finish_cells
from edueffects.recovery.disclosure import POOL_SEPARATOR, STATISTICS

if TYPE_CHECKING:
    import pandas as pd

METADATA_KEY = "edueffects.cells"
FORMAT = "edueffects recovery cells"
FORMAT_VERSION = 1
Layout = Literal["wide", "long_linked", "long_unlinked"]
KEYS = ("pv", "school", "cohort", "pre_n", "post_n")
RESERVED = frozenset({"domain", *KEYS, *STATISTICS})
STATISTIC_MEANING = {
    "n": "students in the row",
    "s0": "sum of the scores before",
    "s1": "sum of the scores after",
    "ss0": "sum of squared scores before",
    "ss1": "sum of squared scores after",
    "s01": "sum of the products of each student's two scores (linked students only)",
    "sg": "sum of the gains after - before (linked students with both scores)",
    "ssg": "sum of squared gains (linked students with both scores)",
}
# statistics each model needs (beyond the keys); see model.py for how they enter the likelihood
NEEDS = {"gain": ("n", "sg", "ssg"), "long_linked": ("n", "s0", "s1", "ss0", "ss1", "s01"),
         "long_unlinked": ("n", "s0", "s1", "ss0", "ss1")}  # fmt: skip


@dataclass(frozen=True)
class CellRoles:
    """Which student-table columns the statistics were made of."""

    school: str
    cohort: str
    moderators: tuple[str, ...]
    pre: tuple[str, ...] = ()
    post: tuple[str, ...] = ()
    occasion: str | None = None
    score: tuple[str, ...] = ()
    student: str | None = None
    domain: str | None = None

    @property
    def layout(self) -> Layout:
        if self.occasion is None:
            return "wide"
        return "long_linked" if self.student is not None else "long_unlinked"

    @property
    def n_pv(self) -> int:
        return len(self.score) if self.occasion is not None else len(self.post)

    def to_dict(self) -> dict[str, object]:
        return {
            "school": self.school,
            "cohort": self.cohort,
            "moderators": list(self.moderators),
            "pre": list(self.pre),
            "post": list(self.post),
            "occasion": self.occasion,
            "score": list(self.score),
            "student": self.student,
            "domain": self.domain,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> CellRoles:
        def names(key: str) -> tuple[str, ...]:
            value = data.get(key) or []
            assert isinstance(value, list)
            return tuple(str(v) for v in value)

        def optional(key: str) -> str | None:
            value = data.get(key)
            return None if value is None else str(value)

        return cls(
            school=str(data["school"]),
            cohort=str(data["cohort"]),
            moderators=names("moderators"),
            pre=names("pre"),
            post=names("post"),
            occasion=optional("occasion"),
            score=names("score"),
            student=optional("student"),
            domain=optional("domain"),
        )


def supported_models(layout: Layout) -> tuple[str, ...]:
    return ("long_unlinked",) if layout == "long_unlinked" else ("gain", "long_linked")


@dataclass(frozen=True, eq=False, repr=False)
class ReleasedCells(ResultDisplay):
    """Per-cell sufficient statistics that identify no student, with their metadata block.

    ``frame``: the released rows; ``metadata``: JSON-able (``to_dict``), also stored in the Parquet
    file. :meth:`write` writes the file atomically; :func:`read_cells` reads it back.
    """

    frame: pd.DataFrame
    metadata: dict[str, object]
    source: str = "aggregate()"
    inputs: tuple[Path, ...] = field(default=(), repr=False)

    @property
    def roles(self) -> CellRoles:
        roles = self.metadata["roles"]
        assert isinstance(roles, dict)
        return CellRoles.from_dict(roles)

    @property
    def disclosure(self) -> dict[str, object]:
        value = self.metadata["disclosure"]
        assert isinstance(value, dict)
        return value

    @property
    def domains(self) -> tuple[str, ...]:
        if "domain" not in self.frame.columns:
            return ()
        return tuple(sorted(str(d) for d in self.frame["domain"].unique()))

    @property
    def occasions(self) -> tuple[str, ...]:
        value = self.metadata.get("occasions") or []
        assert isinstance(value, list)
        return tuple(str(v) for v in value)

    @property
    def pooled(self) -> dict[str, tuple[str, ...]]:
        """Label of each pooled cohort -> its cohorts (``--merge``)."""
        merged = self.disclosure.get("merged") or []
        assert isinstance(merged, list)
        return {str(m["label"]): tuple(str(c) for c in m["cohorts"]) for m in merged}

    @property
    def pandemic_cohorts(self) -> tuple[str, ...]:
        value = self.metadata.get("pandemic_cohorts") or []
        assert isinstance(value, list)
        return tuple(str(v) for v in value)

    def to_dict(self) -> dict[str, object]:
        return dict(self.metadata)

    def summary(self) -> str:
        d = self.disclosure
        roles = self.roles
        rows = self.metadata["rows"]
        assert isinstance(rows, dict)
        lines = [
            f"Released cell statistics: {len(self.frame):,} rows (school x cohort x occasion pattern"
            + (", per domain" if roles.domain else "")
            + (f", {roles.n_pv} plausible values" if roles.n_pv > 1 else "")
            + f"), {self.frame['school'].nunique():,} schools",
            f"  input: {int(str(rows['input_rows'])):,} rows, {int(str(d['students_in_input'])):,} students "
            f"({roles.layout.replace('_', ' ')} table); models supported: {', '.join(supported_models(roles.layout))}",
            f"  disclosure: rows of fewer than {d['min_cell']} students are withheld ({d['rule']})",
        ]
        merged = d.get("merged") or []
        assert isinstance(merged, list)
        if merged:
            lines.append(
                f"  {len(merged)} group(s) of cohorts pooled within their school and period "
                "(each shares one school:cohort effect in the model)"
            )
        lines.append(f"  {_withheld(d)}")
        return "\n".join(lines)

    def write(self, path: str | Path) -> Path:
        """Write the cells and their metadata to a Parquet file, atomically; never over an input."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        target = Path(path)
        if not target.parent.exists():
            raise InputError("--out: folder '{0}' does not exist", target.parent)
        resolved = target.resolve()
        if any(resolved == p.resolve() for p in self.inputs):
            raise InputError("--out '{0}' is one of the input files: it would be overwritten", target)
        table = pa.Table.from_pandas(self.frame, preserve_index=False)
        meta = {**(table.schema.metadata or {}), METADATA_KEY.encode(): json.dumps(json_safe(self.metadata)).encode()}
        table = table.replace_schema_metadata(meta)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".edueffects-", suffix=".parquet")
        os.close(fd)
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target


def _withheld(d: dict[str, object]) -> Message:
    withheld = int(str(d["students_suppressed"]))
    if not withheld:
        return Message("no row was suppressed: the cells hold every student")
    total = int(str(d["students_in_input"]))
    return Message(
        "{0} row(s) suppressed, {1} of {2} students ({3}%): a model fitted on these cells is fitted on the other "
        "{4} students",
        d["suppressed_rows"],
        Quantity(withheld),
        Quantity(total),
        Quantity(100.0 * withheld / total, 2),
        Quantity(total - withheld),
    )


def read_cells(path: str | Path) -> ReleasedCells:
    """A cells file written by :meth:`ReleasedCells.write` (checked: metadata, format version, columns)."""
    import pyarrow.parquet as pq

    source = Path(path)
    if not source.exists():
        raise InputError("file '{0}' does not exist", source)
    try:
        table = pq.read_table(source)
    except Exception as exc:  # pyarrow raises several types for files that are not Parquet
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError("file '{0}' could not be read: {1}", source, first) from exc
    raw = (table.schema.metadata or {}).get(METADATA_KEY.encode())
    if raw is None:
        raise InputError("'{0}' is not a cells file of edueffects (no '{1}' metadata)", source, METADATA_KEY)
    metadata = json.loads(raw)
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError("'{0}' is a cells file of format version {1}; this edueffects reads version {2}", source,
                         version, FORMAT_VERSION)  # fmt: skip
    frame = table.to_pandas()
    missing = [c for c in ("school", "cohort", "pv", "pre_n", "post_n", "n") if c not in frame.columns]
    if missing:
        raise InputError("the cells file '{0}' lacks the column '{1}'", source, missing[0])
    return ReleasedCells(frame=frame, metadata=metadata, source=str(source))


def released_note(cells: ReleasedCells, domain: str | None) -> Message:
    """The sentence a fit on released cells carries: where its data came from and what was withheld."""
    d = cells.disclosure
    name, rule = Path(cells.source).name, Phrase(str(d["rule"]))
    if domain is not None:
        return Message(
            "fitted on released cell statistics ({0}), not on student records; rows of fewer than {1} students "
            "were withheld ({2}): {3} (all domains; this fit: domain {4})",
            name, d["min_cell"], rule, _withheld(d), domain,
        )  # fmt: skip
    return Message(
        "fitted on released cell statistics ({0}), not on student records; rows of fewer than {1} students "
        "were withheld ({2}): {3}",
        name, d["min_cell"], rule, _withheld(d),
    )  # fmt: skip


def cell_table(
    cells: ReleasedCells, spec: RecoverySpec, pv: int, domain: str | None, notes: Sequence[str] = ()
) -> CellTable:
    """The cells of the model ``spec.kind`` for plausible value ``pv`` (1-based) of one domain, checked
    as the student-table path checks them (data.finish_cells)."""
    roles = cells.roles
    frame = cells.frame
    rows = frame["pv"].to_numpy() == pv
    if domain is not None:
        rows &= frame["domain"].astype(str).to_numpy() == domain
    part = frame.loc[rows].reset_index(drop=True)
    kind = spec.kind
    absent = [s for s in NEEDS[kind] if s not in part.columns]
    if roles.layout == "long_unlinked" and kind == "gain":
        absent.append("sg")  # cross-sections: no student has two scores
    if absent:
        raise InputError("the {0} model needs the cell statistic '{1}', which '{2}' does not hold", kind, absent[0],
                         Path(cells.source).name)  # fmt: skip
    both = (part["pre_n"] == 1) & (part["post_n"] == 1)
    out = part[["school", "cohort"]].copy()
    notes = list(notes)
    occasion_label = roles.occasion or "post"
    if kind == "gain":
        lacking = int(part.loc[~both, "n"].sum())
        if lacking:
            before, after = score_names(roles, pv)
            raise InputError(
                "{0} student(s) lack a score in '{1}' or '{2}': the gain model needs both "
                "(the long model, --long, uses students with one occasion); nothing was dropped",
                lacking,
                before,
                after,
            )
        out = out.assign(n=part["n"], sum=part["sg"], sumsq=part["ssg"])
        n_students = n_rows = int(part["n"].sum())
        if roles.layout == "long_linked":
            n_rows = 2 * n_students
    elif kind == "long_linked":
        stats = {s: part[s].fillna(0.0) for s in ("s0", "s1", "ss0", "ss1", "s01")}
        out = out.assign(pre_n=part["pre_n"], post_n=part["post_n"], r=part["n"], **stats)
        n_students = int(part["n"].sum())
        observations = int((part["n"] * (part["pre_n"] + part["post_n"])).sum())
        n_rows = observations if roles.layout == "long_linked" else n_students
        if roles.occasion is not None:
            notes.append(Message("occasion '{0}': {1} = before, {2} = after", roles.occasion, *cells.occasions[:2]))
        one = int(part.loc[~both, "n"].sum())
        if one:
            notes.append(
                Message("{0} student(s) with one occasion are used (they inform the student-level variance)", one)
            )
    else:
        after = part["post_n"].to_numpy() == 1
        out = out.assign(
            occasion=after.astype(np.int64),
            n=part["n"],
            sum=np.where(after, part["s1"], part["s0"]),
            sumsq=np.where(after, part["ss1"], part["ss0"]),
        )
        n_students = n_rows = int(part["n"].sum())
        notes.append(Message("occasion '{0}': {1} = before, {2} = after", roles.occasion, *cells.occasions[:2]))
    stat_cols = [c for c in out.columns if c not in ("school", "cohort")]
    import pandas as pd

    # a fixed file has fixed sums: they identify the data of a fit exactly (likelihood-ratio tests)
    out["checksum"] = pd.util.hash_pandas_object(out[stat_cols], index=False).to_numpy().astype(np.float64)
    for mod in spec.moderators:
        out[f"min_{mod}"] = out[f"max_{mod}"] = part[mod].to_numpy(np.float64)
    return finish_cells(out, spec, n_students, n_rows, occasion_label, notes, merged=cells.pooled)


def score_names(roles: CellRoles, pv: int) -> tuple[str, str]:
    if roles.occasion is None:
        return roles.pre[pv - 1], roles.post[pv - 1]
    return roles.score[pv - 1], roles.score[pv - 1]


def pooled_label(cohorts: Sequence[str]) -> str:
    return POOL_SEPARATOR.join(cohorts)
