"""Bad input: one clear error naming the column or row, never a silently dropped row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edueffects import InputError, meta


@pytest.fixture
def data() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "study": [1, 1, 2, 2, 3, 3, 4],
            "esid": [1, 2, 1, 2, 1, 2, 1],
            "yi": [0.1, 0.3, 0.2, 0.5, -0.1, 0.4, 0.2],
            "vi": [0.02, 0.03, 0.02, 0.05, 0.04, 0.03, 0.02],
            "kind": ["a", "b", "a", "b", "a", "b", "a"],
        }
    )


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (None, {"yi": "effect"}, "column 'effect' not found"),
        (lambda d: d.assign(vi=d.vi.astype(object).where(d.index != 2, "abc")), {}, "column 'vi' row 3: value 'abc'"),
        (lambda d: d.assign(yi=d.yi.where(d.index != 4)), {}, "column 'yi' row 5 is missing"),
        (lambda d: d.assign(vi=d.vi.where(d.index != 1, -0.1)), {}, "column 'vi' row 2: sampling variance must be > 0"),
        (lambda d: d.assign(vi=d.vi.where(d.index != 1, 0.0)), {}, "column 'vi' row 2"),
        (
            lambda d: d.assign(study=d.study.where(d.index != 3)),
            {"cluster": "study"},
            "column 'study' row 4 is missing",
        ),
        (lambda d: d.assign(kind="a"), {"mods": ["kind"]}, "moderator 'kind' has a single level ('a')"),
        (lambda d: d.head(2), {"mods": ["kind"]}, "2 usable row(s) for 2 coefficient(s)"),
        (None, {"within": "esid"}, "'within' needs 'cluster'"),
        (None, {"cluster": "study", "test": "knha"}, "test 'knha' is for univariate models"),
        (None, {"cluster": "study", "method": "DL"}, "multilevel models are fitted by REML or ML"),
        (None, {"method": "XYZ"}, "method 'XYZ' is not one of"),
        (lambda d: d.assign(copy=d.yi * 2), {"mods": ["yi", "copy"]}, "moderators are collinear"),
        (None, {"mods": ["yi"], "categorical": ["kind"]}, "categorical column 'kind' is not among the moderators"),
        (lambda d: d.assign(yi=d.yi.where(d.index != 0, np.inf)), {}, "column 'yi' row 1: value inf is not finite"),
    ],
)
def test_bad_input_names_column_and_row(change, kwargs, message, data: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    frame = change(data) if change else data
    args = {"yi": "yi", "vi": "vi", **kwargs}
    with pytest.raises(InputError) as err:
        meta(frame, **args)
    text = str(err.value)
    assert message in text
    assert "\n" not in text


def test_missing_rows_dropped_only_on_request_and_counted(data: pd.DataFrame) -> None:
    frame = data.assign(yi=data.yi.where(~data.index.isin([1, 5])))
    res = meta(frame, "yi", "vi", missing="drop")
    assert res.k == 5 and res.n_dropped == 2
    assert any("2 row(s) with missing values dropped" in w for w in res.warnings)
    assert "2 row(s) with missing values were dropped" in res.summary()


def test_robust_cluster_must_not_split_model_clusters(data: pd.DataFrame) -> None:
    res = meta(data, "yi", "vi", cluster="study", within="esid")
    with pytest.raises(InputError, match="splits clusters of the model"):
        res.robust("esid")
    with pytest.raises(InputError, match="not found"):
        res.robust("nope")


def test_data_must_be_a_frame() -> None:
    with pytest.raises(InputError, match="pandas DataFrame"):
        meta([1, 2, 3], "yi", "vi")  # type: ignore[arg-type]
