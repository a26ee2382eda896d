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


def _three_level(scale: float) -> pd.DataFrame:
    """Twelve studies of four effects, ``yi`` times ``scale`` and ``vi`` times ``scale^2`` (vi down to 2e-12)."""
    rng = np.random.default_rng(4)
    study = np.repeat(np.arange(12), 4)
    vi = rng.uniform(0.02, 0.2, study.size)
    yi = 0.3 + rng.normal(0, 0.3, 12)[study] + rng.normal(0, 0.2, study.size) + rng.normal(0, np.sqrt(vi))
    return pd.DataFrame({"study": study, "esid": np.arange(study.size), "yi": scale * yi, "vi": scale**2 * vi})


def _fit_three_level(data: pd.DataFrame) -> MetaResult:
    return edueffects.meta(data, "yi", "vi", cluster="study", within="esid")


@pytest.mark.parametrize("by", ["study", None])
def test_deletions_equal_one_fit_per_deletion_whatever_the_units(by: str | None) -> None:
    """leave1out and Cook's distances with ``y`` in units ``c = 1, 1e-3, 1e-5`` (``v`` times ``c^2``): one
    ``meta()`` per deletion, at 1e-8 on the variance components and the estimate, and equivariant (the
    variance components scale by ``c^2``, the estimate by ``c``, Cook's distances not at all)."""
    data = _three_level(1.0)
    groups = data["study"] if by else data["esid"]
    base: dict[str, Any] = {}
    for c in (1.0, 1e-3, 1e-5):
        scaled = _three_level(c)
        res = _fit_three_level(scaled)
        table = leave1out(res, cluster=by).tidy()
        cook = cooks_distance(res, cluster=by).tidy()["cook_d"].to_numpy()
        variances = table[["sigma2_study", "sigma2_study/esid"]].to_numpy()
        one_by_one = [_fit_three_level(scaled[groups != g]) for g in pd.unique(groups)]
        want_var = np.array([fit.variance for fit in one_by_one])
        want_est = np.array([fit.coefficients.estimate[0] for fit in one_by_one])
        diff = res.coefficients.estimate[0] - want_est
        want_cook = diff**2 / res.cov_beta[0, 0]
        np.testing.assert_allclose(variances, want_var, rtol=1e-8)
        np.testing.assert_allclose(table["estimate"], want_est, rtol=1e-8)
        np.testing.assert_allclose(cook, want_cook, rtol=1e-6)  # a difference of nearby estimates, squared
        if c == 1.0:
            base = {"variances": variances, "estimate": table["estimate"].to_numpy(), "cook": cook}
        np.testing.assert_allclose(variances / c**2, base["variances"], rtol=1e-8)
        np.testing.assert_allclose(table["estimate"] / c, base["estimate"], rtol=1e-8)
        np.testing.assert_allclose(cook, base["cook"], rtol=1e-6)


def test_result_and_its_deleted_fits_are_freed() -> None:
    """The shared deleted fits live as long as their result, no longer."""
    import gc
    import weakref

    from edueffects.meta.influence import _MEMO

    for make in (_assink, _bcg):
        res = make()
        leave1out(res, cluster="study" if res.model == "multilevel" else None)
        cooks_distance(res)
        alive = weakref.ref(res)
        n_memo = len(_MEMO)
        del res
        gc.collect()
        assert alive() is None
        assert len(_MEMO) == n_memo - 1


def test_unconverged_refits_are_noted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deleted (or cumulative) fit the optimiser did not bring to convergence is named in the notes."""
    import dataclasses
    import importlib

    import edueffects.core.deletion as deletion

    module = importlib.import_module("edueffects.meta.influence")  # the attribute is the function influence()

    def unconverged(maximize: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            ev, convergence = maximize(*args, **kwargs)
            return ev, dataclasses.replace(convergence, converged=False)

        return run

    bcg, assink = _bcg(), _assink()  # fitted before the optimiser is replaced
    for res in (bcg, assink):
        assert not [n for n in leave1out(res).notes if "converge" in n]
    bcg, assink = _bcg(), _assink()
    monkeypatch.setattr(module, "maximize", unconverged(module.maximize))
    monkeypatch.setattr(deletion, "maximize", unconverged(deletion.maximize))
    monkeypatch.setattr(deletion, "MAX_NEWTON", 1)  # one batched step: most deletions go on to maximize
    notes = leave1out(bcg).notes
    assert notes == ("the refit without effect 1, 2, 3, 4, 5, ... did not converge: treat its rows with caution",)
    assert cooks_distance(bcg).notes == notes and "Note: the refit without effect 1" in influence(bcg).summary()
    cumulative = cumul(bcg, order="year")
    assert cumulative.notes == ("the fit of the first 2, 3, 4, 5, 6, ... effects did not converge: treat its rows "
                                "with caution",)  # fmt: skip
    assert cumulative.to_dict()["notes"] == list(cumulative.notes) and "Note: the fit" in cumulative.summary()
    by_study = leave1out(assink, cluster="study")
    assert any(n.startswith("the refit without study ") and "did not converge" in n for n in by_study.notes)
    assert rstudent(assink, cluster="study").notes == by_study.notes
