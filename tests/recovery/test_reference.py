"""lme4 1.1-31 / clubSandwich reference fits of the DDD models, driven by one parametrised test.

Data and values from ``tests/reference/lme4_reference.R`` on ``data/recovery_small.csv`` (simulated
state, seeded). Tolerances as agreed for lme4 parity: fixed effects, SEs and logLik 1e-6 relative
(1e-8 absolute near zero), variance components 1e-5, CR2 SE and df 1e-5.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from edueffects import recovery
from edueffects.recovery import RecoveryResult

REF = Path(__file__).resolve().parents[1] / "reference"
CASES: dict[str, dict[str, Any]] = json.loads((REF / "lme4_recovery_small.json").read_text())
VARCOMP_NAMES = {"school": "school", "sc": "school:cohort", "student": "student", "Residual": "residual"}


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return pd.read_csv(REF / "data" / "recovery_small.csv")


def _fit(name: str, data: pd.DataFrame) -> RecoveryResult:
    common = {
        "school": "school",
        "cohort": "cohort",
        "pandemic_cohorts": [2018, 2019],
        "moderators": ["ses", "nongerman"],
    }
    if name.startswith("gain"):
        return recovery(data, pre="score5", post="score8", method="ML" if name == "gain_ml" else "REML", **common)
    long = pd.concat([data.assign(g8=0, y=data.score5), data.assign(g8=1, y=data.score8)], ignore_index=True)
    return recovery(long, student="student", long=True, occasion="g8", score="y", **common)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_lme4(name: str, data: pd.DataFrame) -> None:
    ref = CASES[name]
    res = _fit(name, data)
    assert list(res.coefficients.names) == ref["fixed"]["names"]
    np.testing.assert_allclose(res.coefficients.estimate, ref["fixed"]["estimate"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(res.coefficients.se, ref["fixed"]["se"], rtol=1e-6, atol=1e-8)
    got = res.variance_components()
    for key, value in ref["varcomp"].items():
        assert got[VARCOMP_NAMES[key]] == pytest.approx(value, rel=1e-5)
    assert res.loglik == pytest.approx(ref["logLik"], rel=1e-6)
    if "cr2" in ref:
        np.testing.assert_allclose(res.robust.se, ref["cr2"]["se"], rtol=1e-5)
        np.testing.assert_allclose(res.robust.df, ref["cr2"]["df"], rtol=1e-5)
        np.testing.assert_allclose(res.robust.pval, ref["cr2"]["pval"], rtol=1e-5)
    assert res.convergence.converged and res.convergence.gradient_norm < 1e-6
