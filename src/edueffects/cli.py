"""The ``edueffects`` command line: ``meta`` for a meta-analysis of a file, ``demo`` for the main job."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

from edueffects import __version__
from edueffects.core.errors import InputError
from edueffects.data import DESCRIPTIONS, load
from edueffects.io import read_table
from edueffects.meta import meta
from edueffects.meta.fit import EstimationMethod, TestMethod


def _json_safe(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_json(payload: dict[str, object], target: str) -> None:
    """Write JSON to stdout (``-``) or atomically to a file (never a partial file)."""
    text = json.dumps(_json_safe(payload), indent=2, allow_nan=False)
    if target == "-":
        sys.stdout.write(text + "\n")
        return
    path = Path(target)
    if not path.parent.exists():
        raise InputError(f"--json: folder '{path.parent}' does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".edueffects-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    os.replace(tmp, path)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edueffects", description="Evidence synthesis for education research.")
    parser.add_argument("--version", action="version", version=f"edueffects {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    m = sub.add_parser("meta", help="fit a meta-analytic model to a table of effect sizes")
    m.add_argument("file", help="CSV/TSV file with one row per effect size")
    m.add_argument("--yi", required=True, help="column of effect sizes")
    m.add_argument("--vi", required=True, help="column of sampling variances")
    m.add_argument("--cluster", help="column of clusters (e.g. study or meta-analysis id): multilevel model")
    m.add_argument("--within", help="column identifying effects within clusters (three-level model)")
    m.add_argument("--method", default="REML", choices=get_args(EstimationMethod))
    m.add_argument("--mods", nargs="+", default=[], metavar="COL", help="moderator columns")
    m.add_argument("--categorical", nargs="+", default=[], metavar="COL", help="moderators to treat as categorical")
    m.add_argument("--test", default="z", choices=get_args(TestMethod))
    m.add_argument("--level", type=float, default=95.0, help="confidence level in percent (default 95)")
    m.add_argument("--robust", metavar="COL", help="add CR2 cluster-robust inference clustered by COL")
    m.add_argument("--drop-missing", action="store_true", help="drop rows with missing values (and report how many)")
    m.add_argument("--no-variance-ci", action="store_true", help="skip confidence intervals of variance components")
    m.add_argument("--json", metavar="PATH", help="write results as JSON to PATH, or '-' for stdout")

    sub.add_parser("demo", help="the main job: a three-level meta-analysis of the embedded school-calendar data")
    return parser


def _run_meta(args: argparse.Namespace) -> int:
    data = read_table(args.file)
    result = meta(
        data,
        yi=args.yi,
        vi=args.vi,
        cluster=args.cluster,
        within=args.within,
        method=args.method,
        mods=args.mods,
        categorical=args.categorical,
        test=args.test,
        level=args.level,
        missing="drop" if args.drop_missing else "error",
        variance_ci=not args.no_variance_ci,
    )
    robust = result.robust(args.robust) if args.robust else None
    if args.json:
        payload = result.to_dict()
        if robust is not None:
            payload["robust"] = robust.coefficients.to_records()
            payload["robust_info"] = {k: v for k, v in robust.to_dict().items() if k != "coefficients"}
        write_json(payload, args.json)
        if args.json == "-":
            return 0
    print(result.summary())
    if robust is not None:
        print()
        print(robust.summary())
    return 0


def _run_demo() -> int:
    data = load("konstantopoulos2011")
    result = meta(data, yi="yi", vi="vi", cluster="district", within="school")
    print(DESCRIPTIONS["konstantopoulos2011"])
    print()
    print(result.summary())
    print()
    print(result.robust("district").summary())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "meta":
            return _run_meta(args)
        return _run_demo()
    except InputError as exc:
        print(f"edueffects: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
