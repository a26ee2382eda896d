"""meta() reads a user's DataFrame by its own labels and types: only the columns the model uses are
converted, so other columns may repeat names or hold anything, and every kind of missing value counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import edueffects as ee
from edueffects import InputError

YI = [0.1, 0.3, 0.2, 0.5, 0.4, 0.6, 0.2, 0.3]
VI = [0.01, 0.02, 0.015, 0.03, 0.01, 0.02, 0.025, 0.02]


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"yi": YI, "vi": VI, "x": np.arange(8.0), "study": [1, 1, 2, 2, 3, 3, 4, 4]})


def test_a_nullable_boolean_with_a_missing_value_keeps_its_name(frame: pd.DataFrame) -> None:
    frame["b"] = pd.array([True, False, True, None, False, True, False, True], dtype="boolean")
    for mods in (["b"], "~ b + x"):
        fit = ee.meta(frame, "yi", "vi", mods=mods, missing="drop")
        assert "bTRUE" in fit.coefficients.names
    complete = frame.assign(b=pd.array([True, False] * 4, dtype="boolean"))
    assert "bTRUE" in ee.meta(complete, "yi", "vi", mods=["b"]).coefficients.names


def test_other_columns_may_repeat_names_or_not_be_text(frame: pd.DataFrame) -> None:
    reference = ee.meta(frame, "yi", "vi").coefficients.estimate
    repeated = pd.concat([frame, frame[["x"]]], axis=1)
    np.testing.assert_array_equal(ee.meta(repeated, "yi", "vi").coefficients.estimate, reference)
    labelled = frame.assign(**{"1": 0.0})
    labelled[1] = 0.0  # the labels 1 and "1" differ
    np.testing.assert_array_equal(ee.meta(labelled, "yi", "vi").coefficients.estimate, reference)
    numbered = frame.rename(columns={"yi": 0, "vi": 1})
    np.testing.assert_array_equal(ee.meta(numbered, 0, 1).coefficients.estimate, reference)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="'yi' appears twice"):
        ee.meta(pd.concat([frame, frame[["yi"]]], axis=1), "yi", "vi")


def test_robust_clusters_by_a_column_the_model_does_not_use(frame: pd.DataFrame) -> None:
    fit = ee.meta(frame.assign(region=[1, 1, 1, 1, 2, 2, 2, 2]), "yi", "vi", cluster="study")
    assert fit.robust("region").n_clusters == 2
    with pytest.raises(InputError, match="robust cluster column 'nowhere' not found"):
        fit.robust("nowhere")


@pytest.mark.parametrize("gap", [np.float32("nan"), np.datetime64("NaT"), pd.NA, None, float("nan")])
def test_every_kind_of_missing_value_in_an_object_column_counts(frame: pd.DataFrame, gap: object) -> None:
    frame["x"] = frame["x"].astype(object)
    frame.loc[2, "x"] = gap
    frame["x"] = frame["x"].astype(object)
    with pytest.raises(InputError, match="column 'x' row 3 is missing"):
        ee.meta(frame, "yi", "vi", mods=["x"])


def test_robust_by_a_column_whose_name_appears_twice_is_refused(frame: pd.DataFrame) -> None:
    regions = pd.DataFrame({"region": [1, 1, 1, 1, 2, 2, 2, 2]})
    fit = ee.meta(pd.concat([frame, regions, regions], axis=1), "yi", "vi", cluster="study")
    with pytest.raises(InputError, match="'region' appears twice"):
        fit.robust("region")


def test_a_mapping_of_lists_reads_as_a_data_frame_would(frame: pd.DataFrame) -> None:
    """Numbers with a missing value (None) stay numbers; numbers and text mixed stay apart (not numpy's text)."""
    gappy = frame.assign(x=[0.0, 1.0, None, 3.0, 4.0, 5.0, 6.0, 7.0])
    mapping = {name: list(gappy[name]) for name in gappy.columns}
    mapping["x"][2] = None
    from_mapping = ee.meta(mapping, "yi", "vi", mods=["x"], missing="drop")
    from_frame = ee.meta(gappy, "yi", "vi", mods=["x"], missing="drop")
    assert from_mapping.coefficients.names == from_frame.coefficients.names == ("intrcpt", "x")
    np.testing.assert_array_equal(from_mapping.coefficients.estimate, from_frame.coefficients.estimate)
    mixed = {**mapping, "study": [1, 1, "1", "1", 3, 3, 4, 4]}
    with pytest.raises(InputError, match="mixes numbers and text"):
        ee.meta(mixed, "yi", "vi", cluster="study")


def test_codes_of_text_are_numpys_sorted_codes_with_or_without_pandas() -> None:
    from edueffects.meta.design import sorted_codes

    rng = np.random.default_rng(0)
    values = np.array([f"s{i}" for i in rng.integers(0, 50, 500)] + ["b", "A", "é", "10", "9"], dtype=object)
    np.testing.assert_array_equal(sorted_codes(values), np.unique(values, return_inverse=True)[1].reshape(-1))
