"""Schmidt-Oh second-order meta-analysis against psychmeta's ma_r_order2 formulas on Oh (2009), to 1e-10."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from edueffects import InputError
from edueffects.soma.schmidt_oh import schmidt_oh

REF = Path(__file__).resolve().parents[1] / "reference"
RESULTS: dict[str, Any] = json.loads((REF / "schmidt_oh_oh2009.json").read_text())["results"]
DATA = pd.read_csv(REF / "data" / "oh2009.csv")
CASES = [(p, kind) for p in sorted(RESULTS) for kind in ("bb", "ad")]


@pytest.mark.parametrize(("predictor", "kind"), CASES)
def test_matches_reference(predictor: str, kind: str) -> None:
    rows = DATA[DATA.Predictor == predictor]
    got = schmidt_oh(rows.k, rows.r_bar_i, rows.var_r, rows.rho_bar_i, kind=kind).to_dict()
    expected = RESULTS[predictor][kind]
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-10, abs=1e-12), key


def test_bad_input() -> None:
    with pytest.raises(InputError, match="at least two"):
        schmidt_oh([5], [0.2], [0.01])
    with pytest.raises(InputError, match="k >= 1"):
        schmidt_oh([0, 3], [0.2, 0.1], [0.01, 0.02])
    with pytest.raises(InputError, match="corrected means"):
        schmidt_oh([2, 3], [0.2, 0.1], [0.01, 0.02], kind="ad")


def test_embedded_oh_data_is_the_reference_data() -> None:
    from edueffects.data import load

    embedded = load("oh2009")
    pd.testing.assert_frame_equal(embedded, DATA)
