"""Columns: the reader's numpy table, its missing values, and the DataFrame built from it on demand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edueffects as ee
from edueffects import InputError
from edueffects.io import load_table
from edueffects.io.columns import Columns, column_values, from_masked, is_data_frame, missing_mask


def test_missing_values_of_every_kind() -> None:
    assert missing_mask(np.array([1.0, np.nan])).tolist() == [False, True]
    assert missing_mask(np.array(["2020-01-01", "NaT"], dtype="datetime64[D]")).tolist() == [False, True]
    assert missing_mask(np.array(["a", None, np.nan, pd.NA, 3], dtype=object)).tolist() == [
        False,
        True,
        True,
        True,
        False,
    ]
    assert not missing_mask(np.array([1, 2])).any() and not missing_mask(np.array([True, False])).any()


def test_masked_arrays_become_plain_columns() -> None:
    ints = from_masked(np.ma.masked_array([1, 2, 3], mask=[False, True, False]))
    assert ints.dtype == np.float64 and np.isnan(ints[1]) and ints[2] == 3.0
    text = from_masked(np.ma.masked_array(np.array(["a", "b"], dtype=object), mask=[True, False]))
    assert text.tolist() == [None, "b"]
    flags = from_masked(np.ma.masked_array([True, False], mask=[False, True]))
    assert flags.dtype == object and flags.tolist() == [True, None]
    whole = from_masked(np.ma.masked_array([4, 5], mask=[False, False]))
    assert whole.dtype.kind == "i" and whole.tolist() == [4, 5]


def test_nullable_pandas_columns_read_as_the_reader_gives_them() -> None:
    frame = pd.DataFrame(
        {
            "n": pd.array([1, None, 3], dtype="Int64"),
            "m": pd.array([1, 2, 3], dtype="Int64"),
            "flag": pd.array([True, None, False], dtype="boolean"),
            "label": pd.array(["a", None, "c"], dtype="string"),
            "group": pd.Categorical(["x", "y", None]),
        }
    )
    table = Columns.from_frame(frame)
    assert table["n"].dtype == np.float64 and np.isnan(table["n"][1])
    assert table["m"].dtype == np.int64
    assert table["flag"].tolist() == [True, None, False]
    assert table["label"].tolist() == ["a", None, "c"]
    assert table["group"].tolist() == ["x", "y", None]
    assert column_values(frame["m"]).tolist() == [1, 2, 3]
    assert is_data_frame(frame) and not is_data_frame(table) and not is_data_frame({"a": [1]})


def test_columns_refuse_ragged_or_foreign_data() -> None:
    with pytest.raises(InputError, match="same length"):
        Columns({"a": np.arange(3), "b": np.arange(4)})
    with pytest.raises(InputError, match="one-dimensional"):
        Columns({"a": np.zeros((2, 2))})
    with pytest.raises(InputError, match="one-dimensional"):
        ee.meta({"yi": 0.5, "vi": [0.1, 0.2]}, "yi", "vi")  # a single number is not a column
    with pytest.raises(InputError, match="DataFrame or a mapping"):
        Columns.of([1, 2, 3])
    with pytest.raises(InputError, match="'a' appears twice"):
        Columns.of(pd.DataFrame([[1, 2, 3]], columns=["a", "b", "a"]))


def test_table_frame_is_built_on_demand_and_matches_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id,score,label,when\n1,0.5,a,2020-01-02\n2,,b,\n3,1.5,,2021-03-04\n", encoding="utf-8")
    table = load_table(path)
    assert "frame" not in vars(table)  # nothing built yet
    assert table.columns.columns == ("id", "score", "label", "when")
    assert table.columns["id"].dtype == np.int64 and np.isnan(table.columns["score"][1])
    assert table.columns["label"].tolist() == ["a", "b", None]
    assert table.columns["when"].dtype.kind == "M"
    frame = table.frame
    assert frame is table.frame  # built once
    assert list(frame.columns) == ["id", "score", "label", "when"]
    assert frame["score"].isna().tolist() == [False, True, False]
    assert frame["when"].isna().tolist() == [False, True, False]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), text_clusters=st.booleans())
def test_meta_reads_a_frame_columns_and_a_mapping_alike(seed: int, text_clusters: bool) -> None:
    rng = np.random.default_rng(seed)
    k = 24
    cluster = rng.integers(0, 6, size=k)
    data = {
        "yi": rng.normal(0.2, 0.4, size=k),
        "vi": rng.uniform(0.01, 0.1, size=k),
        "x": rng.normal(size=k),
        "cluster": np.array([f"s{c}" for c in cluster], dtype=object) if text_clusters else cluster,
        "esid": np.arange(k),
    }
    fits = [
        ee.meta(source, "yi", "vi", cluster="cluster", within="esid", mods=["x"], variance_ci=False)
        for source in (pd.DataFrame(data), Columns(data), data)
    ]
    for fit in fits[1:]:
        np.testing.assert_array_equal(fit.coefficients.estimate, fits[0].coefficients.estimate)
        np.testing.assert_array_equal(fit.variance, fits[0].variance)
        robust, reference = fit.robust("cluster"), fits[0].robust("cluster")
        np.testing.assert_array_equal(robust.coefficients.se, reference.coefficients.se)


def test_missing_values_of_an_object_column_with_and_without_pandas_loaded() -> None:
    """pandas' own test when it is loaded (its NA does not compare), else None and values unequal to themselves."""
    import subprocess
    import sys

    from edueffects.io.columns import missing_mask

    values = (
        "[None, 1.5, float('nan'), np.float32('nan'), 'a', np.datetime64('NaT'), np.datetime64('2020-01-01'), True, 0]"
    )
    expected = [True, False, True, True, False, True, False, False, False]
    script = (
        "import sys; import numpy as np; from edueffects.io.columns import missing_mask\n"
        f"print('pandas' in sys.modules, missing_mask(np.array({values}, dtype=object)).tolist())"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"False {expected}"
    with_na = np.array([*eval(values), pd.NA, pd.NaT], dtype=object)  # the literal written above
    assert missing_mask(with_na).tolist() == [*expected, True, True]
