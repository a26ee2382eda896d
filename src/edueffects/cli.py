"""The ``edueffects`` command line: ``meta`` for a meta-analysis of a file, ``demo`` for the main job."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edueffects import __version__
from edueffects.cli_support import (
    Parser,
    argparse_language,
    check_outputs,
    guarded,
    language,
    missing_note,
    notes_lines,
    number,
    prescan_language,
    read_options,
    reading_parent,
    translated,
    whole,
)
from edueffects.core.errors import InputError, Message
from edueffects.io.json_output import dumps
from edueffects.options import (
    DEFAULT_LEVEL,
    DEFAULT_METHOD,
    DEFAULT_RHOS,
    DEFAULT_ROBUST_TEST,
    DEFAULT_TEST,
    EFFECT_MEASURES,
    ESTIMATION_METHODS,
    ROBUST_TESTS,
    SMD_CORRECTIONS,
    TEST_METHODS,
    TRANSFORMS,
)

if TYPE_CHECKING:
    import pandas as pd

    from edueffects.io import Source
    from edueffects.io.columns import Columns
    from edueffects.meta.dependence import RhoSensitivity


def write_json(payload: dict[str, object], target: str) -> None:
    """Write JSON to stdout (``-``) or atomically to a file (never a partial file)."""
    from edueffects.io.outputs import check_output_file, write_file

    text = dumps(payload)
    if target == "-":
        sys.stdout.write(text + "\n")
        return
    write_file(check_output_file(target, (), "--json"), text + "\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="edueffects", description="Evidence synthesis for education research.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    parser.add_argument("--version", action="version", version=f"edueffects {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    common = Parser(add_help=False)
    common.add_argument("--lang", choices=["en", "nl", "de"], help="language of messages (en, nl, de)")

    reading = reading_parent()
    m = sub.add_parser("meta", parents=[common, reading], help="fit a meta-analytic model to a table of effect sizes")
    m.add_argument("file", help="CSV/TSV file with one row per effect size")
    m.add_argument("--yi", required=True, help="column of effect sizes")
    m.add_argument("--vi", required=True, help="column of sampling variances")
    m.add_argument("--cluster", help="column of clusters (e.g. study or meta-analysis id): multilevel model")
    m.add_argument("--within", help="column identifying effects within clusters (three-level model)")
    m.add_argument("--method", default=DEFAULT_METHOD, choices=ESTIMATION_METHODS)
    m.add_argument(
        "--mods",
        nargs="+",
        default=[],
        metavar="COL",
        help="moderator columns, or one formula such as '~ a * b + C(c)' (interactions, C(), I(), center(), 0 +)",
    )
    m.add_argument("--categorical", nargs="+", default=[], metavar="COL", help="moderators to treat as categorical")
    m.add_argument("--test", default=DEFAULT_TEST, choices=TEST_METHODS)
    m.add_argument(
        "--level", type=float, default=DEFAULT_LEVEL, help="confidence level, in percent (95) or as a proportion (0.95)"
    )
    m.add_argument(
        "--sigma2",
        nargs="+",
        metavar="VALUE",
        help="fix variance components of a multilevel model, outer first (NA = estimate): '--sigma2 NA 0'",
    )
    m.add_argument("--tau2", type=float, help="fix tau^2 of a random-effects model")
    m.add_argument(
        "--rho",
        type=number(),
        help="known correlation of the sampling errors within a cluster (CHE model, 0 <= rho < 1)",
    )
    m.add_argument(
        "--rho-sensitivity",
        nargs="*",
        type=number(),
        metavar="RHO",
        help=f"refit at each rho (default {' '.join(f'{r:g}' for r in DEFAULT_RHOS)}) with CR2 tests by --cluster",
    )
    m.add_argument(
        "--predict",
        nargs="+",
        metavar="COL=V1,V2",
        help="predicted values (CI, prediction interval) at these moderator values, e.g. ablat=10,30,50",
    )
    m.add_argument("--transf", choices=TRANSFORMS, default="none", help="back-transform predictions (exp, tanh)")
    m.add_argument("--robust", metavar="COL", help="add CR2 cluster-robust inference clustered by COL")
    m.add_argument(
        "--robust-test", choices=ROBUST_TESTS, default=DEFAULT_ROBUST_TEST, help="cluster-robust Wald test of each term"
    )
    m.add_argument("--no-variance-ci", action="store_true", help="skip confidence intervals of variance components")
    m.add_argument("--json", metavar="PATH", help="write results as JSON to PATH, or '-' for stdout")
    m.add_argument(
        "--plots", metavar="DIR", help="write a forest (or, above 60 effects, caterpillar) and bubble plots into DIR"
    )
    m.add_argument("--labels", metavar="COL", help="column of row labels for the forest plot (e.g. author and year)")
    m.add_argument("--quiet", action="store_true", help="no progress display")

    es = sub.add_parser(
        "es", parents=[common], help="effect sizes (yi, vi) from a coded spreadsheet, as metafor's escalc"
    )
    es.add_argument("file", help="coded table (CSV, Excel, ...): one row per effect")
    es.add_argument("--measure", required=True, choices=EFFECT_MEASURES, help="effect-size measure")
    es.add_argument(
        "--map",
        nargs="+",
        default=[],
        metavar="KEY=COLUMN",
        help="columns for the keys m1i m2i sd1i sd2i n1i n2i ni ri ti fi chi2i d lor sign ai bi ci di "
        "(default: the column of that name)",
    )
    es.add_argument("--correction", choices=SMD_CORRECTIONS, default="exact", help="small-sample correction of d")
    es.add_argument("--out", required=True, help="output table (.csv or .xlsx); never the input file")
    es.add_argument("--skip-incomplete", action="store_true", help="leave rows that no rule fits empty")

    r = sub.add_parser(
        "recovery",
        parents=[common, reading],
        help="DDD model of learning recovery on a student table (CSV or Parquet) or on released cells",
        epilog="edueffects recovery aggregate FILE ... --out cells.parquet: per-cell statistics that identify "
        "no student, to release and fit with --cells (edueffects recovery aggregate -h)",
    )
    r.add_argument(
        "file", nargs="?", help="student table: one row per student (or per student and occasion with --long)"
    )
    r.add_argument("--cells", metavar="PATH", help="fit released cell statistics (from 'recovery aggregate')")
    r.add_argument("--school")
    r.add_argument("--cohort")
    r.add_argument("--pandemic-cohorts", nargs="+", metavar="COHORT")
    r.add_argument("--moderators", nargs="+", metavar="COL", help="school-level moderators")
    r.add_argument("--pre", nargs="+", help="score before (e.g. grade 5); several columns = plausible values")
    r.add_argument("--post", nargs="+", help="score after (e.g. grade 8); several columns = plausible values")
    r.add_argument("--student", help="student id (long format: links a student's occasions)")
    r.add_argument("--long", action="store_true", help="fit the long model (occasion x pandemic x moderators)")
    r.add_argument("--occasion", help="with --long on a long table: the occasion column (two values)")
    r.add_argument("--score", nargs="+", help="with --long on a long table: the score column(s)")
    r.add_argument("--domain", help="column of domains (e.g. reading, maths): one model per domain")
    r.add_argument("--method", default="REML", choices=["REML", "ML"])
    r.add_argument(
        "--sesoi", type=number(0.0), default=0.05, help="smallest effect size of interest for TOST (default 0.05)"
    )
    r.add_argument("--standardize", action="store_true", help="standardise moderators across schools")
    r.add_argument("--json", metavar="PATH", help="write results as JSON to PATH, or '-' for stdout")
    r.add_argument("--plots", metavar="DIR", help="write figures (SVG and PNG) into DIR")
    r.add_argument(
        "--mdes-sims", type=whole(0), default=0, metavar="N", help="check each MDE by N simulations (gain model)"
    )
    r.add_argument("--quiet", action="store_true", help="no progress display")

    pw = sub.add_parser("power", help="simulation-based power analysis")
    pw_sub = pw.add_subparsers(dest="what", required=True)
    pr = pw_sub.add_parser("recovery", parents=[common], help="power of the DDD effects on simulated states")
    pr.add_argument("--moderator", default="ses", choices=["ses", "nongerman", "lost_days"])
    pr.add_argument("--effects", nargs="+", type=number(), default=[0.0, 0.01, 0.02, 0.03], metavar="EFFECT")
    pr.add_argument("--reps", type=whole(1), default=100)
    pr.add_argument("--schools", type=whole(2), default=1100)
    pr.add_argument("--students-per-school", type=number(0.0), default=65.0)
    pr.add_argument("--alpha", type=number(0.0, 1.0), default=0.05)
    pr.add_argument("--seed", type=whole(0), default=1)
    pr.add_argument("--workers", type=whole(1), default=None, help="processes (default: all cores)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.add_argument("--json", metavar="PATH", help="write results as JSON to PATH, or '-' for stdout")

    so = sub.add_parser(
        "soma", parents=[common, reading], help="second-order meta-analysis of meta-analytic effect sizes"
    )
    so.add_argument("file", nargs="?", help="effect-size table (CSV): one row per meta-analytic effect size")
    so.add_argument("--studies", help="table of meta_analysis x study (primary studies included): overlap")
    so.add_argument("--amstar", help="table of AMSTAR 2 ratings (meta_analysis, item1 ... item16)")
    so.add_argument("--measure", default="r", choices=["r", "z", "d"], help="scale of the 'effect' column")
    so.add_argument(
        "--moderators",
        nargs="+",
        metavar="COL",
        help="moderator columns (default: those of school_level, valence, year, informant that the table has)",
    )
    so.add_argument("--clusters", nargs="+", metavar="LABEL", help="the allowed outcome-cluster labels")
    so.add_argument("--json", metavar="PATH", help="write results as JSON to PATH, or '-' for stdout")
    so.add_argument(
        "--plots",
        metavar="DIR",
        help="write forest, orchard, funnel and profile plots, and the leave-one-out and contour-enhanced funnel "
        "plots of the sensitivity analyses (SVG, PNG)",
    )
    so.add_argument(
        "--no-sensitivity",
        action="store_true",
        help="skip the sensitivity analyses (leave one meta-analysis out, AMSTAR 2 and overlap subsets, CHE, "
        "PET-PEESE)",
    )
    so.add_argument("--example", action="store_true", help="use the embedded SYNTHETIC example instead of FILE")
    so.add_argument("--quiet", action="store_true", help="no progress display")

    sim = sub.add_parser("simulate", help="write a simulated (synthetic) data set")
    sim_sub = sim.add_subparsers(dest="what", required=True)
    sr = sim_sub.add_parser("recovery", parents=[common], help="a simulated state: grade 5 -> 8, three cohorts")
    sr.add_argument("--out", required=True, help="output file (.csv or .parquet)")
    sr.add_argument("--schools", type=whole(2), default=1100)
    sr.add_argument("--students-per-school", type=number(0.0), default=65.0)
    sr.add_argument("--seed", type=whole(0), default=1)
    sr.add_argument("--ddd-ses", type=number(), default=0.0)
    sr.add_argument("--ddd-nongerman", type=number(), default=0.0)
    sr.add_argument("--ddd-lost-days", type=number(), default=0.0)
    sr.add_argument("--long", action="store_true", help="one row per student and occasion")
    ss = sim_sub.add_parser(
        "soma", parents=[common], help="a simulated SOMA shaped like the TSR review (three CSV files)"
    )
    ss.add_argument("--out", required=True, help="effects CSV; the studies and AMSTAR tables go beside it")
    ss.add_argument("--seed", type=whole(0), default=2025)

    d = sub.add_parser("demo", help="the main job: a report of the embedded example analyses")
    d.add_argument("--out", default="edueffects-demo", help="report folder (default ./edueffects-demo/)")
    d.add_argument("--lang", default="en", choices=["en", "nl", "de"], help="report and message language")
    d.add_argument("--quiet", action="store_true", help="no progress display")

    rp = sub.add_parser("report", parents=[reading], help="run a study file (TOML) and write its report")
    rp.add_argument("study", help="study file (see examples/study.toml)")
    rp.add_argument("--out", help="report folder (default: beside the study file, named after it)")
    rp.add_argument("--lang", choices=["en", "nl", "de"], help="report language (default: the study file's)")
    rp.add_argument("--quiet", action="store_true", help="no progress display")
    return parser


def _moderators(values: list[str]) -> str | list[str]:
    """``--mods``: one formula (``"~ a * b"``) or column names."""
    if len(values) == 1 and "~" in values[0]:
        return values[0]
    if any("~" in v for v in values):
        raise InputError("--mods: give one quoted formula ('~ a * b') or column names, not both")
    return values


def _fixed_variances(values: list[str] | None) -> list[float | None] | None:
    if values is None:
        return None
    out: list[float | None] = []
    for value in values:
        if value.upper() in ("NA", "NONE"):
            out.append(None)
            continue
        try:
            out.append(float(value))
        except ValueError:
            raise InputError("--sigma2: '{0}' is not a number or NA", value) from None
    return out


def _new_moderators(values: list[str]) -> dict[str, list[object]]:
    """``--predict ablat=10,30 alloc=random,random`` -> columns of new moderator values."""
    columns: dict[str, list[object]] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        if not sep or not name or not raw:
            raise InputError("--predict: '{0}' is not COLUMN=VALUE[,VALUE...]", item)
        parsed: list[object] = []
        for text in raw.split(","):
            try:
                parsed.append(float(text))
            except ValueError:
                parsed.append(text)
        columns[name] = parsed
    return columns


def _rho_sensitivity(args: argparse.Namespace, data: Columns, mods: str | list[str]) -> RhoSensitivity:
    """``--rho-sensitivity``: the model refitted at each rho, CR2 tests clustered by ``--cluster``."""
    from edueffects.meta import rho_sensitivity

    if args.cluster is None:
        raise InputError("--rho-sensitivity needs --cluster: rho correlates the sampling errors within clusters")
    options = {**_model_options(args, mods), "variance_ci": False}
    return rho_sensitivity(
        data, args.yi, args.vi, args.cluster, args.within, rhos=args.rho_sensitivity or DEFAULT_RHOS, **options
    )


def _model_options(args: argparse.Namespace, mods: str | list[str]) -> dict[str, Any]:
    """The options of ``meta --...`` that define the model, shared by the fit and its rho refits."""
    return {
        "method": args.method,
        "mods": mods,
        "categorical": args.categorical,
        "test": args.test,
        "level": args.level,
        "missing": "drop" if args.drop_missing else "error",
        "sigma2": _fixed_variances(args.sigma2),
    }


def _run_meta(args: argparse.Namespace) -> int:
    from edueffects.io import load_table, missing_counts
    from edueffects.meta import meta
    from edueffects.meta.design import used_columns
    from edueffects.progress import progress_reporter

    check_outputs([args.file], args.json, [("--plots", args.plots)])
    table = load_table(args.file, read_options(args))
    data = table.columns
    if args.labels is not None and args.labels not in data.columns:
        raise InputError("--labels: column '{0}' not found", args.labels)
    mods = _moderators(args.mods)
    missing = missing_counts(data, used_columns(data, args.yi, args.vi, args.cluster, args.within, mods,
                                                args.categorical)) if args.drop_missing else {}  # fmt: skip
    step, stop = progress_reporter(args.quiet)
    step("fitting (with profile-likelihood intervals of the variance components)")
    try:
        result = meta(
            data,
            yi=args.yi,
            vi=args.vi,
            cluster=args.cluster,
            within=args.within,
            variance_ci=not args.no_variance_ci,
            tau2=args.tau2,
            rho=args.rho,
            **_model_options(args, mods),
        )
        _ = result.variance_ci  # computed on first use: here, under the progress display
        sensitivity = _rho_sensitivity(args, data, mods) if args.rho_sensitivity is not None else None
    finally:
        stop()
    predictions = result.predict(_new_moderators(args.predict), transf=args.transf) if args.predict else None
    robust = result.robust(args.robust) if args.robust else None
    notes = [*table.notes, *([missing_note(missing, result.n_dropped)] if result.n_dropped else [])]
    if args.plots:
        from edueffects.io.outputs import new_folder
        from edueffects.report.plots import meta_figures

        with new_folder(args.plots, "--plots") as folder:
            meta_figures(result, folder, args.labels, language())
    if args.json:
        payload = result.to_dict()
        if predictions is not None:
            payload["predictions"] = predictions.to_dict()
        if robust is not None:
            payload["robust"] = robust.to_dict(args.robust_test)
        if sensitivity is not None:
            payload["rho_sensitivity"] = sensitivity.to_dict()
        payload["input"] = _input_record(args.file, len(data), result.n_dropped, missing, notes)
        write_json(payload, args.json)
        if args.json == "-":
            return 0
    print(result.summary())
    for test in result.term_tests():
        print(test.headline())
    if predictions is not None:
        print()
        print(predictions.summary())
    if robust is not None:
        print()
        print(robust.summary())
        for test in robust.term_tests(args.robust_test):
            print(test.headline())
    if sensitivity is not None:
        print()
        print(sensitivity.summary())
    for line in notes_lines(notes):
        print(line)
    return 0


def _input_record(
    file: str, rows: int, dropped: int, missing: dict[str, int], notes: Sequence[Message | str]
) -> dict[str, object]:
    """What reading the input found, for the JSON result (notes in the user's language)."""
    return {
        "file": file,
        "rows": rows,
        "rows_dropped": dropped,
        "missing": missing,
        "notes": translated(notes),
    }


def _run_es(args: argparse.Namespace) -> int:
    """``edueffects es``: yi, vi and the rule of every row appended to the table, written atomically."""
    from edueffects.io import read_table
    from edueffects.meta.effect_sizes import escalc
    from edueffects.report.i18n import Language

    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".xlsx"):
        raise InputError("--out: use a .csv or .xlsx file name (got '{0}')", out.name)
    if not out.parent.exists():
        raise InputError("--out: folder '{0}' does not exist", out.parent)
    if out.exists() and out.resolve() == Path(args.file).resolve():
        raise InputError("--out: '{0}' is the input file: write the effect sizes to another file", out)
    mapping: dict[str, str] = {}
    for item in args.map:
        key, sep, column = item.partition("=")
        if not sep or not key or not column:
            raise InputError("--map: '{0}' is not KEY=COLUMN", item)
        mapping[key] = column
    data = read_table(args.file)
    for name in ("yi", "vi", "es_rule"):
        if name in data.columns:
            raise InputError("column '{0}' is already in the input: rename it before computing effect sizes", name)
    table = escalc(data, args.measure, mapping, args.correction, incomplete="skip" if args.skip_incomplete else "error")
    result = data.reset_index(drop=True).assign(yi=table.yi, vi=table.vi, es_rule=table.rule)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        if out.suffix.lower() == ".csv":
            result.to_csv(tmp, index=False)
        else:
            result.to_excel(tmp, index=False, engine="openpyxl")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    lang = Language.of(args.lang or "en")
    done = int(table.rule.notna().sum())
    print(lang("{n} effect size(s) ({measure}) written to {path}").format(n=done, measure=args.measure, path=out))
    for rule, count in table.rule.value_counts(dropna=False).items():
        print(f"  {lang('not computed') if rule is None or rule != rule else rule}: {count}")
    return 0


def _aggregate_parser() -> argparse.ArgumentParser:
    """``edueffects recovery aggregate``: student tables to released cell statistics."""
    a = argparse.ArgumentParser(
        prog="edueffects recovery aggregate",
        description="Per-cell sufficient statistics of student tables (counts, sums, sums of squares and "
        "cross-products per school x cohort x occasion pattern), with a disclosure rule; nothing identifies a student.",
    )
    a.add_argument("files", nargs="+", metavar="FILE", help="student tables (CSV or Parquet; all of one kind)")
    a.add_argument("--out", required=True, metavar="PATH", help="the cells file to write (Parquet); never an input")
    a.add_argument("--school", required=True)
    a.add_argument("--cohort", required=True)
    a.add_argument("--moderators", nargs="+", required=True, metavar="COL", help="school-level moderators")
    a.add_argument("--pre", nargs="+", help="score before (one row per student); several columns = plausible values")
    a.add_argument("--post", nargs="+", help="score after; several columns = plausible values")
    a.add_argument("--occasion", help="long table: the occasion column (two values)")
    a.add_argument("--score", nargs="+", help="long table: the score column(s)")
    a.add_argument("--student", help="long table: student id, links a student's occasions (never written)")
    a.add_argument("--domain", help="column of domains (e.g. reading, maths): statistics per domain")
    a.add_argument("--min-cell", type=int, default=10, metavar="N", help="withhold rows of fewer than N students")
    rule = a.add_mutually_exclusive_group()
    rule.add_argument("--suppress", dest="disclosure", action="store_const", const="suppress",
                      help="drop rows of fewer than N students (default)")  # fmt: skip
    rule.add_argument("--merge", dest="disclosure", action="store_const", const="merge",
                      help="first pool a school's cohorts of the same period (needs --pandemic-cohorts)")  # fmt: skip
    a.set_defaults(disclosure="suppress", command="recovery", aggregate=True)
    a.add_argument("--pandemic-cohorts", nargs="+", metavar="COHORT", help="recorded for the fit; needed by --merge")
    a.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb", help="where to aggregate")
    a.add_argument("--json", metavar="PATH", help="write the metadata block as JSON to PATH, or '-' for stdout")
    a.add_argument("--quiet", action="store_true", help="no progress display")
    a.add_argument("--lang", choices=["en", "nl", "de"], help="language of messages (en, nl, de)")
    return a


def _run_aggregate(args: argparse.Namespace) -> int:
    from edueffects.progress import progress_reporter
    from edueffects.recovery import aggregate

    step, stop = progress_reporter(args.quiet)
    try:
        step(f"aggregating on {args.engine}")
        cells = aggregate(
            args.files,
            school=args.school,
            cohort=args.cohort,
            moderators=args.moderators,
            pre=args.pre,
            post=args.post,
            occasion=args.occasion,
            score=args.score,
            student=args.student,
            domain=args.domain,
            min_cell=args.min_cell,
            disclosure=args.disclosure,
            pandemic_cohorts=args.pandemic_cohorts,
            engine=args.engine,
        )
        target = cells.write(args.out)
    finally:
        stop()
    if args.json:
        write_json(cells.to_dict(), args.json)
        if args.json == "-":
            return 0
    print(cells.summary())
    print(f"wrote {target}")
    return 0


def _run_recovery(args: argparse.Namespace) -> int:
    from edueffects.recovery import recovery, recovery_by_domain

    if getattr(args, "aggregate", False):
        return _run_aggregate(args)
    options: dict[str, object] = {
        "school": args.school,
        "cohort": args.cohort,
        "pandemic_cohorts": args.pandemic_cohorts,
        "moderators": args.moderators,
        "pre": args.pre,
        "post": args.post,
        "student": args.student,
        "long": args.long,
        "occasion": args.occasion,
        "score": args.score,
        "method": args.method,
        "standardize": args.standardize,
        "sesoi": args.sesoi,
        "cells": args.cells,
        "missing": "drop" if args.drop_missing else "error",
    }
    from edueffects.progress import progress_reporter

    student_table, reading = _recovery_source(args)
    step, stop = progress_reporter(args.quiet)
    try:
        step("reading, aggregating and fitting")
        if args.domain:
            results = recovery_by_domain(student_table, args.domain, **options)
        else:
            results = {"": recovery(student_table, **options)}  # type: ignore[arg-type]
        if args.mdes_sims > 0:
            from edueffects.power import check_mdes

            step("checking each MDE by simulation")
            results = {name: check_mdes(res, args.mdes_sims) for name, res in results.items()}
    finally:
        stop()
    if args.plots:
        from edueffects.io.outputs import new_folder
        from edueffects.report.plots import recovery_figures

        with new_folder(args.plots, "--plots") as folder:
            for name, res in results.items():
                recovery_figures(res, folder / name if name else folder, language())
    if args.json:
        payload: dict[str, object] = (
            results[""].to_dict() if "" in results else {"domains": {k: v.to_dict() for k, v in results.items()}}
        )
        if reading is not None:
            # rows dropped on reading, and by the engine (a long model of a wide table: no score at all)
            missing = dict(reading.missing)
            for res in results.values():
                for column, n in res.missing.items():
                    missing[column] = missing.get(column, 0) + n
            dropped = reading.rows_dropped + sum(res.rows_dropped for res in results.values())
            payload["input"] = _input_record(args.file, reading.rows, dropped, missing, reading_notes(reading))
        write_json(payload, args.json)
        if args.json == "-":
            return 0
    for name, res in results.items():
        if name:
            print(f"== domain: {name} ==")
        print(res.summary())
    for line in notes_lines(reading_notes(reading) if reading is not None else []):
        print(line)
    return 0


def _recovery_source(args: argparse.Namespace) -> tuple[Any, Source | None]:
    """The student table through the shared input layer (reading options, --drop-missing), outputs
    checked first; released cells (--cells) are passed on as they are."""
    from edueffects.io import open_source

    check_outputs([args.file, args.cells], args.json, [("--plots", args.plots)])
    if args.file is None:
        return args.file, None
    columns: list[str] = []
    if args.drop_missing:
        # a long model of a wide table uses students with one score: the engine drops those with none
        scores = [] if args.long and not args.occasion else [args.pre, args.post]
        for value in (args.school, args.cohort, args.moderators, *scores, args.student,
                      args.occasion, args.score, args.domain):  # fmt: skip
            columns += value if isinstance(value, list) else [value] if value else []
    source = open_source(args.file, read_options(args), drop_missing=columns)
    return source, source


def reading_notes(source: Source) -> list[Message]:
    notes = list(source.notes)
    if source.rows_dropped:
        notes.append(missing_note(dict(source.missing), source.rows_dropped))
    return notes


def _run_power(args: argparse.Namespace) -> int:
    from edueffects.power import power_curve, terminal_progress

    curve = power_curve(
        args.moderator,
        args.effects,
        reps=args.reps,
        alpha=args.alpha,
        seed=args.seed,
        workers=args.workers,
        progress=terminal_progress(args.quiet),
        n_schools=args.schools,
        students_per_school=args.students_per_school,
    )
    if args.json:
        write_json(curve.to_dict(), args.json)
        if args.json == "-":
            return 0
    print(curve.summary())
    return 0


def _run_soma(args: argparse.Namespace) -> int:
    from edueffects import simulate
    from edueffects.io import load_table
    from edueffects.io.outputs import new_folder
    from edueffects.soma import soma

    studies: pd.DataFrame | None
    amstar: pd.DataFrame | None
    inputs = [args.file, args.studies, args.amstar]
    check_outputs(inputs, args.json, [("--plots", args.plots)])
    notes: list[Message] = []
    if args.example:
        example = simulate.soma()
        effects, studies, amstar = example.effects, example.studies, example.amstar
    else:
        if not args.file:
            raise InputError("give an effect-size FILE, or --example")
        options = read_options(args)
        tables = [load_table(path, options) if path else None for path in inputs]
        for table in tables:
            notes += table.notes if table is not None else ()
        effects = tables[0].frame  # type: ignore[union-attr]
        studies = tables[1].frame if tables[1] is not None else None
        amstar = tables[2].frame if tables[2] is not None else None
    from edueffects.progress import progress_reporter

    step, stop = progress_reporter(args.quiet)
    try:
        step("second-order meta-analysis (with profile likelihoods)")
        result = soma(
            effects,
            measure=args.measure,
            moderators=args.moderators,
            studies=studies,
            amstar=amstar,
            outcome_clusters=args.clusters,
            synthetic=bool(args.example),
            missing="drop" if args.drop_missing else "error",
            sensitivity=not args.no_sensitivity,
        )
    finally:
        stop()
    if result.rows_dropped:
        notes.append(missing_note(result.missing, result.rows_dropped))
    if args.plots:
        from edueffects.report.plots import soma_figures

        with new_folder(args.plots, "--plots") as folder:
            soma_figures(result, folder, language())
    if args.json:
        payload = result.to_dict()
        payload["input"] = _input_record(
            args.file or "example", len(effects), result.rows_dropped, dict(result.missing), notes
        )
        write_json(payload, args.json)
        if args.json == "-":
            return 0
    print(result.summary())
    for line in notes_lines(notes):
        print(line)
    return 0


def _run_simulate(args: argparse.Namespace) -> int:
    from edueffects import simulate

    if args.what == "soma":
        out = Path(args.out)
        if out.suffix.lower() != ".csv" or not out.parent.exists():
            raise InputError("--out: give a .csv file in an existing folder (got '{0}')", out)
        example = simulate.soma(seed=args.seed)
        tables = {out: example.effects, out.with_name(out.stem + "_studies.csv"): example.studies,
                  out.with_name(out.stem + "_amstar.csv"): example.amstar}  # fmt: skip
        for path, table in tables.items():
            table.to_csv(path, index=False)
        print(f"wrote SYNTHETIC SOMA tables: {', '.join(str(p) for p in tables)}")
        return 0

    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise InputError("--out: use a .csv or .parquet file name (got '{0}')", out.name)
    if not out.parent.exists():
        raise InputError("--out: folder '{0}' does not exist", out.parent)
    data = simulate.recovery(
        seed=args.seed,
        n_schools=args.schools,
        students_per_school=args.students_per_school,
        ddd_ses=args.ddd_ses,
        ddd_nongerman=args.ddd_nongerman,
        ddd_lost_days=args.ddd_lost_days,
    )
    if args.long:
        data = simulate.to_long(data)
    tmp = out.with_name(f".{out.name}.partial")
    if out.suffix.lower() == ".csv":
        data.to_csv(tmp, index=False)
    else:
        data.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    print(f"wrote {len(data):,} rows of synthetic data to {out}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from edueffects.report.study import demo

    lang = language()
    index = demo(Path(args.out), lang, quiet=args.quiet)
    print(lang("Report written to {path}").format(path=index))
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from edueffects.report.study import run_study

    index = run_study(
        Path(args.study),
        Path(args.out) if args.out else None,
        args.lang,
        quiet=args.quiet,
        options=read_options(args),
        drop_missing=args.drop_missing,
    )
    print(language()("Report written to {path}").format(path=index))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code (0 done, 2 bad input, 3 a fault of the
    program). Every failure is one line on stderr; ``--debug`` shows the traceback."""
    words = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in words
    words = [w for w in words if w != "--debug"]
    code = prescan_language(words)

    def run() -> int:
        with argparse_language(code):
            if words[:2] == ["recovery", "aggregate"]:  # a file named 'aggregate': ./aggregate
                args = _aggregate_parser().parse_args(words[2:])
            else:
                args = _build_parser().parse_args(words)
        return _dispatch(args)

    return guarded(run, debug)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "meta":
        return _run_meta(args)
    if args.command == "recovery":
        return _run_recovery(args)
    if args.command == "es":
        return _run_es(args)
    if args.command == "simulate":
        return _run_simulate(args)
    if args.command == "power":
        return _run_power(args)
    if args.command == "soma":
        return _run_soma(args)
    if args.command == "report":
        return _run_report(args)
    return _run_demo(args)


if __name__ == "__main__":
    raise SystemExit(main())
