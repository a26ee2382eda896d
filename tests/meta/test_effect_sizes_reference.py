"""Effect sizes of coded tables against metafor 3.8-1's escalc and psychmeta's convert_es formulas
(``tests/reference/metafor_escalc.R``): yi and vi at 1e-6 relative, and the rule each row used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from edueffects import InputError
from edueffects.meta import effect_sizes as es

HERE = Path(__file__).resolve().parents[1] / "reference"
CASES: dict[str, dict[str, Any]] = json.loads((HERE / "metafor_escalc.json").read_text())
RTOL, ATOL = 1e-6, 1e-12


@pytest.mark.parametrize("name", sorted(CASES))
def test_effect_sizes_match_escalc(name: str) -> None:
    case = CASES[name]
    data = pd.read_csv(HERE / case["data"])
    columns = case["columns"] if isinstance(case["columns"], dict) else {}
    out = es.escalc(data, case["measure"], columns)
    np.testing.assert_allclose(out.yi, case["yi"], rtol=RTOL, atol=ATOL, err_msg="yi")
    np.testing.assert_allclose(out.vi, case["vi"], rtol=RTOL, atol=ATOL, err_msg="vi")
    assert set(out.rule) == {case["rule"]}


def test_hand_computed_psychmeta_conversions() -> None:
    # psychmeta convert_es: r = .2, n1 = 100, n2 = 150 -> p = .4, a = 1/(p (1 - p)), d = sqrt(a) r / sqrt(1 - r^2)
    a = 1 / (0.4 * 0.6)
    assert float(es.r_to_d(0.2, 100, 150)) == pytest.approx(np.sqrt(a) * 0.2 / np.sqrt(0.96), rel=1e-12)
    assert float(es.r_to_d(0.2)) == pytest.approx(0.4 / np.sqrt(0.96), rel=1e-12)
    assert float(es.d_to_r(es.r_to_d(0.2, 100, 150), 100, 150)) == pytest.approx(0.2, rel=1e-12)
    # t = -1.3 with n = 240: r = t / sqrt(t^2 + 238); chi2 = 1.3, n = 200: phi = sqrt(1.3 / 200)
    assert float(es.r_from_t(-1.3, 240)) == pytest.approx(-1.3 / np.sqrt(1.69 + 238), rel=1e-12)
    assert float(es.r_from_chi2(1.3, 200, -1)) == pytest.approx(-np.sqrt(1.3 / 200), rel=1e-12)
    # F = 10.3 with groups 100 and 150: d = sqrt(F (1/100 + 1/150)); r = sqrt(F / (F + 248))
    assert float(es.d_from_f(10.3, 100, 150)) == pytest.approx(np.sqrt(10.3 * (1 / 100 + 1 / 150)), rel=1e-12)
    assert float(es.r_from_f(10.3, 250, -1)) == pytest.approx(-np.sqrt(10.3 / 258.3), rel=1e-12)
    # log OR = 1.47: d = 1.47 sqrt(3) / pi (Chinn 2000)
    assert float(es.d_from_log_odds(1.47)) == pytest.approx(0.81045348, rel=1e-7)
    chi_d = es.d_from_chi2(1.3, 100, 100)
    assert float(chi_d) == pytest.approx(2 * np.sqrt(1.3 / 200) / np.sqrt(1 - 1.3 / 200), rel=1e-12)


def test_exact_and_approximate_small_sample_corrections() -> None:
    # m = 10: exact J = Gamma(5) / (sqrt(5) Gamma(4.5)) = 0.92274560; approximate 1 - 3/39 = 0.92307692
    assert float(es.hedges_j(10.0)) == pytest.approx(0.9227456, rel=1e-7)
    assert float(es.hedges_j(10.0, "approx")) == pytest.approx(1 - 3 / 39, rel=1e-12)
    assert np.isnan(es.hedges_j(1.0))
    g_exact, _ = es.smd_escalc(103.0, 100.0, 5.5, 4.5, 6, 6)
    g_approx, v_approx = es.smd_escalc(103.0, 100.0, 5.5, 4.5, 6, 6, correction="approx")
    legacy_g, legacy_v = es.smd(103.0, 100.0, 5.5, 4.5, 6, 6)
    assert float(g_approx) == pytest.approx(float(legacy_g), rel=1e-12)
    assert float(v_approx) == pytest.approx(float(legacy_v), rel=1e-12)
    assert float(g_exact) < float(g_approx)


def test_rows_take_the_first_rule_they_can() -> None:
    table = pd.DataFrame(
        {
            "m1i": [10.0, None, None, None],
            "m2i": [8.0, None, None, None],
            "sd1i": [2.0, None, None, None],
            "sd2i": [2.5, None, None, None],
            "n1i": [20, 30, None, 15],
            "n2i": [25, 30, None, 15],
            "ni": [None, None, 80, None],
            "ti": [None, 2.1, 1.5, None],
            "ri": [0.9, 0.9, None, None],
        }
    )
    out = es.escalc(table, "SMD", incomplete="skip")
    assert out.rule.tolist()[:3] == ["means and SDs", "d from t", "d from t (equal groups assumed)"]
    assert pd.isna(out.rule.iloc[3]) and np.isnan(out.yi.iloc[3])
    with pytest.raises(InputError, match=r"row 4: no rule for SMD applies: give one of: m1i, m2i"):
        es.escalc(table, "SMD")


@pytest.mark.parametrize(
    ("column", "values", "key", "message"),
    [
        ("sd1i", [-1.0], "sd1i", r"column 'sd1i' row 1: a standard deviation must be >= 0"),
        ("n", [0.0], "ni", r"column 'n' row 1: a sample size must be > 0"),
        ("r", [1.2], "ri", r"column 'r' row 1: a correlation must lie between -1 and 1"),
        ("F", [-2.0], "fi", r"column 'F' row 1: a test statistic must be >= 0"),
        ("dir", ["up"], "sign", r"column 'dir' row 1: sign must be 1 or -1"),
        ("dir", [2.0], "sign", r"column 'dir' row 1: sign must be 1 or -1"),
        ("t", ["n/a"], "ti", r"column 't' row 1: value 'n/a' is not a number"),
    ],
)
def test_bad_values_name_column_and_row(column: str, values: list[object], key: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        es.escalc(pd.DataFrame({column: values}), "COR", {key: column})
    assert "\n" not in str(info.value)


def test_bad_options_and_counts() -> None:
    frame = pd.DataFrame({"ai": [5, 12], "n1i": [10, 10], "ci": [3, 4], "n2i": [10, 10]})
    with pytest.raises(InputError, match=r"column 'ai' row 2: more events than cases in the group"):
        es.escalc(frame, "OR")
    with pytest.raises(InputError, match="measure 'XYZ' is not one of"):
        es.escalc(frame, "XYZ")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="correction 'none' is not one of"):
        es.escalc(frame, "OR", correction="none")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="unknown effect-size key 'mean1'"):
        es.escalc(frame, "OR", {"mean1": "ai"})
    with pytest.raises(InputError, match=r"column 'events' \(for ai\) not found"):
        es.escalc(frame, "OR", {"ai": "events"})
    with pytest.raises(InputError, match="row 1: too few cases for the small-sample correction"):
        es.escalc(pd.DataFrame({"d": [0.5], "n1i": [1], "n2i": [2]}), "SMD")
    with pytest.raises(InputError, match="ZCOR needs sample sizes above 3"):
        es.escalc(pd.DataFrame({"ri": [0.5], "ni": [3]}), "ZCOR")
