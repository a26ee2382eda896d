"""Model queries against metafor 3.8-1 / clubSandwich 0.5.8, driven by one parametrised test.

Formula moderators, predict(), fitted()/blup()/ranef(), Wald tests (anova btt / X), likelihood-ratio tests,
heterogeneity CIs and SEs, pseudo-R², and clubSandwich CR2 Wald tests (HTZ, Naive-F, chi-sq). Cases and data come from
``tests/reference/metafor_model_queries.R``; each case records its R call in ``r_call``. Tolerance: 1e-6 relative,
1e-8 absolute near zero.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import edueffects
from edueffects.meta.result import MetaResult

HERE = Path(__file__).resolve().parents[1] / "reference"
CASES: dict[str, dict[str, Any]] = json.loads((HERE / "metafor_model_queries.json").read_text())
RTOL, ATOL = 1e-6, 1e-8
Pairs = list[tuple[str, Any, Any]]


def _fit(spec: dict[str, Any]) -> MetaResult:
    return edueffects.meta(
        pd.read_csv(HERE / spec["data"]),
        yi=spec["yi"],
        vi=spec["vi"],
        cluster=spec["cluster"],
        within=spec["within"],
        method=spec["method"],
        mods=spec["mods"],
        test=spec["test"],
        level=spec["level"],
        sigma2=spec["sigma2_fixed"],
        variance_ci=spec["variance_ci"],
    )


def _names(x: str | list[str]) -> list[str]:
    return [x] if isinstance(x, str) else list(x)


def _labels(index: pd.Index) -> list[str]:
    """Group labels as metafor writes them: nested levels joined by '/'."""
    return ["/".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in index]


def _fit_pairs(ref: dict[str, Any], res: MetaResult) -> Pairs:
    c = res.coefficients
    assert list(c.names) == _names(ref["coef_names"])
    pairs: Pairs = [
        ("beta", ref["beta"], c.estimate),
        ("se", ref["se"], c.se),
        ("stat", ref["stat"], c.stat),
        ("pval", ref["pval"], c.pval),
        ("ci_lb", ref["ci_lb"], c.ci_lb),
        ("ci_ub", ref["ci_ub"], c.ci_ub),
        ("variance", ref["variance"], res.variance),
        ("logLik", ref["logLik"], res.loglik),
        ("AIC", ref["AIC"], res.aic),
        ("BIC", ref["BIC"], res.bic),
        ("AICc", ref["AICc"], res.aicc),
    ]
    if "df" in ref:
        pairs.append(("df", ref["df"], c.df))
    if "QM" in ref:
        assert res.QMdf is not None
        pairs += [("QM", ref["QM"], res.QM), ("QMp", ref["QMp"], res.QMp), ("QMdf1", ref["QMdf"][0], res.QMdf[0])]
        if ref["QMdf"][1] is not None:
            pairs.append(("QMdf2", ref["QMdf"][1], res.QMdf[1]))
    return pairs


def _frame_pairs(prefix: str, ref: dict[str, Any], frame: pd.DataFrame) -> Pairs:
    numeric = [key for key in ref if key not in ("level", "labels", "hypothesis")]
    return [(f"{prefix}{key}", ref[key], frame[key].to_numpy()) for key in numeric]


def _wald_pairs(prefix: str, ref: dict[str, Any], w: Any) -> Pairs:
    return [
        (f"{prefix}statistic", ref["statistic"], w.statistic),
        (f"{prefix}df1", ref["df1"], w.df1),
        (f"{prefix}df2", ref["df2"], w.df2),
        (f"{prefix}pval", ref["pval"], w.pval),
    ]


def _query_pairs(case: dict[str, Any], res: MetaResult) -> Pairs:
    q, ref = case["query"], case["result"]
    kind = q["type"]
    if kind == "fit":
        pairs: Pairs = []
        if "variance_se" in ref:
            pairs.append(("variance_se", ref["variance_se"], res.variance_se))
        if "r2" in ref:
            pairs.append(("r2", ref["r2"], res.r2))
        if "variance_ci" in ref:
            got = {vc.component: vc for vc in res.variance_ci}
            assert set(got) == set(ref["variance_ci"])
            for comp, r in ref["variance_ci"].items():
                pairs += [(f"{comp}_{key}", r[key], getattr(got[comp], key)) for key in ("estimate", "ci_lb", "ci_ub")]
        return pairs
    if kind == "predict":
        tidy = res.predict(newmods=q["newmods"], transf=q["transf"], level=q["level"]).tidy()
        return _frame_pairs("", ref, tidy)
    if kind == "fitted_blup":
        return [("fitted", ref["fitted"], res.fitted().to_numpy()), *_frame_pairs("blup_", ref["blup"], res.blup())]
    if kind == "ranef":
        levels = list(res.ranef().values())
        assert len(levels) == len(ref["ranef"])
        pairs = [("fitted", ref["fitted"], res.fitted().to_numpy())]
        for r, frame in zip(ref["ranef"], levels, strict=True):
            assert _labels(frame.index) == _names(r["labels"]), r["level"]
            pairs += _frame_pairs(f"{r['level']}_", r, frame)
        return pairs
    if kind == "wald":
        w = res.wald(terms=q["terms"]) if "terms" in q else res.wald(L=np.array(q["L"], dtype=float))
        pairs = _wald_pairs("", ref, w)
        if "contrasts" in ref:
            pairs += _frame_pairs(
                "contrast_", {k: v for k, v in ref["contrasts"].items() if k != "hypothesis"}, w.contrasts.tidy()
            )
        return pairs
    if kind == "robust_wald":
        rob = res.robust(q["cluster"])
        hyp = {"terms": q["terms"]} if "terms" in q else {"L": np.array(q["L"], dtype=float)}
        pairs = []
        for test, r in ref[
            "tests"
        ].items():  # statistic: F (HTZ: delta-scaled) or, for chi-sq, Q = q * clubSandwich's Fstat
            w = rob.wald(**hyp, test=test)
            expected = {"statistic": r["statistic"], "df1": r["df_num"], "df2": r["df_denom"], "pval": r["p_val"]}
            pairs += _wald_pairs(f"{test}_", expected, w)
        return pairs
    if kind == "lrt":
        reduced = _fit(q["reduced"])
        a = edueffects.anova(res, reduced)
        keys = [k for k in ref if not k.startswith("variance_")]
        return [
            *[(k, ref[k], getattr(a, k)) for k in keys],
            ("variance_full", ref["variance_full"], res.variance),
            ("variance_reduced", ref["variance_reduced"], reduced.variance),
        ]
    raise AssertionError(f"unknown query {kind}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_query_matches_metafor(name: str) -> None:
    case = CASES[name]
    res = _fit(case["model"])
    pairs = _fit_pairs(case["fit"], res) + _query_pairs(case, res)
    failures = []
    for label, expected, actual in pairs:
        if expected is None or actual is None:
            if expected is not actual:
                failures.append(f"{label}: expected {expected}, got {actual}")
            continue
        e = np.atleast_1d(np.asarray(expected, dtype=float))
        a = np.atleast_1d(np.asarray(actual, dtype=float))
        if e.shape != a.shape or not np.allclose(a, e, rtol=RTOL, atol=ATOL):
            failures.append(f"{label}: expected {e}, got {a}")
    assert not failures, "\n".join(failures)
    assert res.convergence.converged
