"""Every metafor 3.8-1 / clubSandwich 0.5.8 reference case, driven by one parametrised test.

The cases and data were produced by ``tests/reference/metafor_reference.R`` on published data sets
(metadat). Tolerance: 1e-6 relative, 1e-8 absolute near zero.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from edueffects import meta
from edueffects.meta.result import MetaResult

HERE = Path(__file__).resolve().parents[1] / "reference"
CASES: dict[str, dict[str, Any]] = json.loads((HERE / "metafor_reference.json").read_text())
RTOL, ATOL = 1e-6, 1e-8


def _fit(spec: dict[str, Any]) -> MetaResult:
    data = pd.read_csv(HERE / spec["data"])
    return meta(
        data,
        yi=spec["yi"],
        vi=spec["vi"],
        cluster=spec.get("cluster"),
        within=spec.get("within"),
        method=spec["method"],
        mods=spec["mods"],
        test=spec["test"],
    )


def _expected_vs_actual(case: dict[str, Any], res: MetaResult) -> list[tuple[str, Any, Any]]:
    ref = case["metafor"]
    c = res.coefficients
    pairs: list[tuple[str, Any, Any]] = [
        ("beta", ref["beta"], c.estimate),
        ("se", ref["se"], c.se),
        ("stat", ref["stat"], c.stat),
        ("pval", ref["pval"], c.pval),
        ("ci_lb", ref["ci_lb"], c.ci_lb),
        ("ci_ub", ref["ci_ub"], c.ci_ub),
        ("k", ref["k"], res.k),
        ("QE", ref["QE"], res.QE),
        ("QEp", ref["QEp"], res.QEp),
        ("logLik", ref["logLik"], res.loglik),
        ("AIC", ref["AIC"], res.aic),
        ("BIC", ref["BIC"], res.bic),
    ]
    names = ref["coef_names"]
    assert list(c.names) == ([names] if isinstance(names, str) else names)
    if "ddf" in ref:
        pairs.append(("ddf", ref["ddf"], c.df[0]))
    if "QM" in ref:
        pairs += [("QM", ref["QM"], res.QM), ("QMp", ref["QMp"], res.QMp)]
        assert res.QMdf is not None
        pairs.append(("QMdf", ref["QMdf"][0], res.QMdf[0]))
    if "tau2" in ref:
        pairs += [("tau2", ref["tau2"], res.variance[0] if res.variance.size else 0.0), ("I2", ref["I2"], res.i2_total)]
        pairs.append(("H2", ref["H2"], res.h2))
        if res.method in ("REML", "ML"):  # metafor's se.tau2 (expected information)
            pairs.append(("se_tau2", ref["se_tau2"], res.variance_se[0]))
    if "sigma2" in ref:
        pairs.append(("sigma2", ref["sigma2"], res.variance))
        pairs.append(("I2_levels", ref["I2_multilevel"]["levels"], res.i2_levels))
        pairs.append(("I2_total", ref["I2_multilevel"]["total"], res.i2_total))
    pairs.append(("typical_v", ref["I2_multilevel"]["typical_v"], res.typical_v))
    pred = ref.get("pred")
    if pred is not None:
        assert res.prediction is not None
        pairs.append(("pred", pred["pred"], res.prediction.pred))
        if pred["pi_lb"] != []:
            pairs += [("pi_lb", pred["pi_lb"], res.prediction.pi_lb), ("pi_ub", pred["pi_ub"], res.prediction.pi_ub)]
        else:
            assert res.prediction.pi_lb is None
    if "tau2_ci_qprofile" in case:
        q = case["tau2_ci_qprofile"]
        vc = next(v for v in res.variance_ci if v.component == "tau2")
        pairs += [("tau2_ci_lb", q["ci.lb"], vc.ci_lb), ("tau2_ci_ub", q["ci.ub"], vc.ci_ub)]
    if "sigma2_profile_ci" in case:
        prof = case["sigma2_profile_ci"]
        outer, inner = res.variance_ci
        for label, vc in (("level3", outer), ("level2", inner)):
            pairs += [
                (f"{label}_ci_lb", prof[label]["ci.lb"], vc.ci_lb),
                (f"{label}_ci_ub", prof[label]["ci.ub"], vc.ci_ub),
            ]
    if "robust_cr2" in case:
        rob = case["robust_cr2"]
        rr = res.robust(case["model"]["cluster"]).coefficients
        pairs += [
            ("cr2_se", rob["se"], rr.se),
            ("cr2_stat", rob["stat"], rr.stat),
            ("cr2_df", rob["df"], rr.df),
            ("cr2_pval", rob["pval"], rr.pval),
            ("cr2_ci_lb", rob["ci_lb"], rr.ci_lb),
            ("cr2_ci_ub", rob["ci_ub"], rr.ci_ub),
        ]
    if "egger" in case:
        # metafor's regtest(): the intercept-only model of the case with sei = sqrt(vi) as moderator
        spec = case["model"]
        data = pd.read_csv(HERE / spec["data"])
        egger = meta(
            data.assign(sei=np.sqrt(data[spec["vi"]])), spec["yi"], spec["vi"], method=spec["method"], mods=["sei"]
        )
        pairs += [
            ("egger_z", case["egger"]["z"], egger.coefficients.stat[1]),
            ("egger_p", case["egger"]["p"], egger.coefficients.pval[1]),
        ]
    if "back_transformed_r" in case:
        bt = case["back_transformed_r"]
        r = res.back_transform("z_to_r")
        pairs += [(f"r_{key}", bt[key], getattr(r, key)) for key in ("pred", "ci_lb", "ci_ub", "pi_lb", "pi_ub")]
    return pairs


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_metafor(name: str) -> None:
    case = CASES[name]
    res = _fit(case["model"])
    failures = []
    pairs = _expected_vs_actual(case, res)
    assert len(pairs) >= 12
    for label, expected, actual in pairs:
        e = np.atleast_1d(np.asarray(expected, dtype=float))
        a = np.atleast_1d(np.asarray(actual, dtype=float))
        if e.shape != a.shape or not np.allclose(a, e, rtol=RTOL, atol=ATOL):
            failures.append(f"{label}: expected {e}, got {a}")
    assert not failures, "\n".join(failures)
    assert res.convergence.converged
