"""Influence diagnostics, leave-one-out and cumulative meta-analysis against metafor 3.8-1.

Reference values come from ``tests/reference/metafor_influence.R`` (``dat.bcg`` by REML with a tightened control;
``dat.assink2016`` three-level with and without the moderator year, ``dat.konstantopoulos2011`` district/school,
refits polished; rstudent.rma.mv, dfbetas.rma.mv, cooks.distance.rma.mv and hatvalues.rma.mv by effect and by
cluster). Tolerance: 1e-6 relative, 1e-8 absolute near zero.
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
from edueffects.meta.influence import dfbetas, rstudent
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


MULTILEVEL: dict[str, Any] = REF["multilevel"]


def _multilevel(name: str) -> MetaResult:
    case = MULTILEVEL[name]
    data = pd.read_csv(HERE / "data" / f"{name.split('_')[0]}.csv")
    return edueffects.meta(data, "yi", "vi", cluster=case["cluster"], within=case["within"], mods=case["mods"])


def _multilevel_case(name: str, by: str) -> Callable[[], list[tuple[str, Any, Any]]]:
    """rstudent, dfbetas, Cook's distances, deleted variance components (and hat values, X2) of one case."""

    def run() -> list[tuple[str, Any, Any]]:
        case = MULTILEVEL[name]
        ref = case[f"by_{by}"]
        res = _multilevel(name)
        cluster = case["cluster"] if by == "cluster" else None
        rs = rstudent(res, cluster=cluster)
        db = dfbetas(res, cluster=cluster).tidy()
        inf = influence(res, cluster=cluster).tidy()
        names = res.coefficients.names
        want = dict(zip(names, ref["dfbetas"].values(), strict=True))  # model.matrix order ("(Intercept)", ...)
        pairs = [
            ("beta", res.coefficients.estimate, case["fit"]["beta"]),
            ("sigma2", res.variance, case["fit"]["sigma2"]),
            *((c, rs.tidy()[c], ref[c]) for c in ("resid", "se", "z")),
            *((f"dfbetas {n}", db[f"dfbetas_{n}"], want[n]) for n in names),
            *((f"influence dfbetas {n}", inf[f"dfbetas_{n}"], want[n]) for n in names),
            ("cook_d", cooks_distance(res, cluster=cluster).tidy()["cook_d"], ref["cook_d"]),
            ("influence cook_d", inf["cook_d"], ref["cook_d"]),
            ("sigma2_1", inf[f"sigma2_{case['cluster']}_del"], ref["sigma2_1"]),
            ("sigma2_2", inf[f"sigma2_{case['cluster']}/{case['within']}_del"], ref["sigma2_2"]),
        ]
        if by == "cluster":
            assert rs.clusters is not None
            pairs += [
                ("clusters", rs.clusters[case["cluster"]], case["clusters"]),
                ("X2", rs.clusters["X2"], ref["X2"]),
                ("k", rs.clusters["k"], ref["k"]),
                ("influence X2", inf["X2"], ref["X2"]),
            ]
        else:
            pairs += [("hat", inf["hat"], case["hat"]), ("influence rstudent", inf["rstudent"], ref["z"])]
        return pairs

    return run


CASES: dict[str, Callable[[], list[tuple[str, Any, Any]]]] = {
    "bcg-leave1out": _bcg_leave1out,
    "bcg-influence": _bcg_influence,
    "bcg-cumul-year": _bcg_cumul,
    "assink2016-leave1out-study": _assink_leave1out,
    "assink2016-cooks-study": _assink_cooks,
    "assink2016-hatvalues": _assink_hat,
    **{f"{name}-{by}": _multilevel_case(name, by) for name in MULTILEVEL for by in ("effect", "cluster")},
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
    with pytest.raises(InputError, match="influence by cluster is for multilevel models"):
        influence(_bcg(), cluster="author")
    with pytest.raises(InputError, match="univariate"):
        cumul(_assink(), order="year")
    moderated = edueffects.meta(pd.read_csv(HERE / "data" / "bcg.csv"), "yi", "vi", mods="ablat")
    with pytest.raises(InputError, match="without moderators"):
        leave1out(moderated)
    with pytest.raises(InputError, match="give the result of meta"):
        leave1out("bcg")  # type: ignore[arg-type]


def test_multilevel_results_display() -> None:
    res = _assink()
    rs = rstudent(res, cluster="study")
    assert rs.clusters is not None and len(rs.to_dict()["clusters"]) == 17  # type: ignore[arg-type]
    assert "X2 on k df" in rs.summary()
    for out in (rs, rstudent(res), dfbetas(res, cluster="study"), influence(res), influence(res, cluster="study")):
        assert out.summary().splitlines()[0] in repr(out)
        assert len(out.to_dict()["rows"]) in (res.k, 17)  # type: ignore[arg-type]


def test_deleted_fits_shared() -> None:
    """One set of refits per result and deletion set, whatever diagnostics ask for it."""
    from edueffects.meta.influence import _deletions

    res = _assink()
    leave1out(res, cluster="study")
    dels = _deletions(res, "study")
    fits = dels.fits
    cooks_distance(res, cluster="study")
    rstudent(res, cluster="study")
    assert _deletions(res, "study") is dels and dels.fits is fits
    assert _deletions(res, None) is not dels


def test_sampling_correlation_refused() -> None:
    data = pd.read_csv(HERE / "data" / "assink2016.csv")
    res = edueffects.meta(data, "yi", "vi", cluster="study", within="esid", rho=0.6)
    for run in (leave1out, cooks_distance, rstudent, dfbetas, influence):
        with pytest.raises(InputError, match="assumes independent sampling errors"):
            run(res)


def test_rstudent_unknown_cluster_column() -> None:
    with pytest.raises(InputError, match="column 'nope' not found"):
        rstudent(_assink(), cluster="nope")
    with pytest.raises(InputError, match="column 'nope' not found"):
        dfbetas(_assink(), cluster="nope")
