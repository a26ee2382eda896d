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
