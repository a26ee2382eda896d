"""The same aggregation on Spark (PySpark, local mode): counts equal to DuckDB's, sums to 1e-12 relative.

The tests start one local Spark session (loopback only, no UI) and stop it. Without PySpark they are
skipped, except under CI, which installs the ``spark`` extra and must run them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from edueffects import InputError, simulate
from edueffects.cli import main
from edueffects.recovery import ReleasedCells, aggregate, read_cells, recovery

if os.environ.get("CI") != "true":
    pytest.importorskip("pyspark")

MODS = ["ses", "nongerman", "lost_days"]
STATS = ["s0", "s1", "ss0", "ss1", "s01", "sg", "ssg"]


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("edueffects-tests")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def assert_same_cells(a: ReleasedCells, b: ReleasedCells) -> None:
    fa, fb = a.frame, b.frame
    keys = [c for c in fa.columns if c not in STATS]
    pd.testing.assert_frame_equal(fa[keys], fb[keys], check_dtype=True)  # keys, counts, moderators: exact
    for stat in STATS:
        x, y = fa[stat].to_numpy(), fb[stat].to_numpy()
        assert np.array_equal(np.isnan(x), np.isnan(y)), stat
        np.testing.assert_allclose(y[~np.isnan(y)], x[~np.isnan(x)], rtol=1e-12, atol=0, err_msg=stat)
    assert a.disclosure == b.disclosure
    assert a.metadata["rows"] == b.metadata["rows"] and a.metadata["inputs"] == b.metadata["inputs"]
    assert (a.metadata["engine"], b.metadata["engine"]) == ("duckdb", "pyspark")


def test_wide_table_with_plausible_values_and_domains(spark: Any, tmp_path: Path) -> None:
    data = simulate.recovery(seed=5, n_schools=30, students_per_school=14, domains=("reading", "maths"))
    rng = np.random.default_rng(1)
    data = data.assign(pre_2=data.score5 + rng.normal(0, 0.3, len(data)), post_2=data.score8.where(data.index % 11 > 0))
    path = tmp_path / "state.parquet"
    data.to_parquet(path, index=False)
    args: dict[str, Any] = {"school": "school", "cohort": "cohort", "moderators": MODS, "pre": ["score5", "pre_2"],
                            "post": ["score8", "post_2"], "domain": "domain", "min_cell": 5}  # fmt: skip
    duck, sparked = aggregate(path, **args), aggregate(path, engine="spark", **args)
    assert_same_cells(duck, sparked)
    assert spark.getActiveSession() is not None  # a session the caller started is left running
    fits = [
        recovery(cells=c, long=True, domain=("domain", "maths"), pandemic_cohorts=[2018, 2019]) for c in (duck, sparked)
    ]
    np.testing.assert_allclose(fits[1].coefficients.estimate, fits[0].coefficients.estimate, rtol=1e-9, atol=1e-12)


def test_long_tables_and_errors_on_spark(spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = simulate.recovery(seed=6, n_schools=25, students_per_school=12)
    long = simulate.to_long(state)
    path = tmp_path / "long.csv"
    long.to_csv(path, index=False)
    args: dict[str, Any] = {"school": "school", "cohort": "cohort", "moderators": MODS, "occasion": "occasion",
                            "score": "score", "min_cell": 3}  # fmt: skip
    assert_same_cells(
        aggregate(path, student="student", **args), aggregate(path, student="student", engine="spark", **args)
    )
    assert_same_cells(aggregate(path, **args), aggregate(path, engine="spark", **args))
    holes = long.assign(ses=long.ses.where(long.index != 4))
    with pytest.raises(InputError, match="column 'ses' is missing in 1 row"):
        aggregate(holes, student="student", engine="spark", **args)
    out = tmp_path / "cells.parquet"
    code = main(["recovery", "aggregate", str(path), "--out", str(out), "--school", "school", "--cohort", "cohort",
                 "--moderators", "ses", "--occasion", "occasion", "--score", "score", "--student", "student",
                 "--engine", "spark", "--min-cell", "3", "--quiet"])  # fmt: skip
    assert code == 0 and read_cells(out).metadata["engine"] == "pyspark"
    assert "wrote" in capsys.readouterr().out
