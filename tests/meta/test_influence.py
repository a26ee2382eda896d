"""Influence diagnostics, leave-one-out and cumulative meta-analysis against metafor 3.8-1.

Reference values come from ``tests/reference/metafor_influence.R`` (``dat.bcg`` by REML with a tightened control;
``dat.assink2016`` three-level, refits polished). Tolerance: 1e-6 relative, 1e-8 absolute near zero.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import edueffects
from edueffects.core.errors import InputError
from edueffects.meta import cooks_distance, cumul, hatvalues, influence, leave1out
from edueffects.meta.result import MetaResult

HERE = Path(__file__).resolve().parents[1] / "reference"
REF: dict[str, Any] = json.loads((HERE / "metafor_influence.json").read_text())
RTOL, ATOL = 1e-6, 1e-8


def _bcg() -> MetaResult:
    return edueffects.meta(pd.read_csv(HERE / "data" / "bcg.csv"), "yi", "vi", method="REML")


def _assink() -> MetaResult:
    return edueffects.meta(pd.read_csv(HERE / "data" / "assink2016.csv"), "yi", "vi", cluster="study", within="esid")


UNI = ["estimate", "se", "zval", "pval", "ci_lb", "ci_ub", "Q", "Qp", "tau2", "I2", "H2"]
INFLUENCE = ["rstudent", "dffits", "cook_d", "cov_r", "tau2_del", "QE_del", "hat", "weight"]
MV = ["estimate", "se", "zval", "pval", "ci_lb", "ci_ub", "Q", "Qp"]


def _bcg_leave1out() -> list[tuple[str, Any, Any]]:
    table = leave1out(_bcg()).tidy()
    return [(c, table[c], REF["bcg"]["leave1out"][c]) for c in UNI]


def _bcg_influence() -> list[tuple[str, Any, Any]]:
    table = influence(_bcg()).tidy()
    pairs = [(c, table[c], REF["bcg"]["influence"][c]) for c in INFLUENCE]
    return [*pairs, ("dfbetas", table["dfbetas_intrcpt"], REF["bcg"]["influence"]["dfbetas"])]


def _bcg_cumul() -> list[tuple[str, Any, Any]]:
    res = _bcg()
    table = cumul(res, order="year").tidy()
    trial = res.state.frame["trial"].to_numpy()[table["effect"].to_numpy() - 1]
    return [("order", trial, REF["bcg"]["cumul"]["order"]), *((c, table[c], REF["bcg"]["cumul"][c]) for c in UNI)]


def _assink_leave1out() -> list[tuple[str, Any, Any]]:
    ref = REF["assink2016"]
    table = leave1out(_assink(), cluster="study").tidy()
    pairs = [("study", table["study"], ref["clusters"]), *((c, table[c], ref["leave1out"][c]) for c in MV)]
    return [
        *pairs,
        ("sigma2_1", table["sigma2_study"], ref["leave1out"]["sigma2_1"]),
        ("sigma2_2", table["sigma2_study/esid"], ref["leave1out"]["sigma2_2"]),
    ]


def _assink_cooks() -> list[tuple[str, Any, Any]]:
    table = cooks_distance(_assink(), cluster="study").tidy()
    return [("cook_d", table["cook_d"], REF["assink2016"]["cooks_distance"])]


def _assink_hat() -> list[tuple[str, Any, Any]]:
    return [("hat", hatvalues(_assink()).tidy()["hat"], REF["assink2016"]["hatvalues"])]


CASES: dict[str, Callable[[], list[tuple[str, Any, Any]]]] = {
    "bcg-leave1out": _bcg_leave1out,
    "bcg-influence": _bcg_influence,
    "bcg-cumul-year": _bcg_cumul,
    "assink2016-leave1out-study": _assink_leave1out,
    "assink2016-cooks-study": _assink_cooks,
    "assink2016-hatvalues": _assink_hat,
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_metafor(case: str) -> None:
    for name, got, want in CASES[case]():
        np.testing.assert_allclose(
            np.asarray(got, dtype=float), np.asarray(want, dtype=float), RTOL, ATOL, err_msg=name
        )


def test_results_display() -> None:
    res = _bcg()
    for out in (leave1out(res), influence(res), cumul(res, order="year"), hatvalues(res)):
        assert out.summary().splitlines()[0] in repr(out)
        assert len(out.to_dict()["rows"]) == res.k  # type: ignore[arg-type]


def test_unknown_cluster_column() -> None:
    with pytest.raises(InputError, match="column 'nope' not found"):
        leave1out(_assink(), cluster="nope")
    with pytest.raises(InputError, match="column 'nope' not found"):
        cooks_distance(_assink(), cluster="nope")


def test_cumul_order_column_missing() -> None:
    with pytest.raises(InputError, match="column 'when' not found"):
        cumul(_bcg(), order="when")


def test_model_kinds() -> None:
    with pytest.raises(InputError, match="univariate"):
        influence(_assink())
    with pytest.raises(InputError, match="univariate"):
        cumul(_assink(), order="year")
    moderated = edueffects.meta(pd.read_csv(HERE / "data" / "bcg.csv"), "yi", "vi", mods="ablat")
    with pytest.raises(InputError, match="without moderators"):
        leave1out(moderated)
    with pytest.raises(InputError, match="give the result of meta"):
        leave1out("bcg")  # type: ignore[arg-type]
