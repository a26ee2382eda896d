"""``meta()``: equal-effects, random-effects and multilevel (nested) meta-analysis at metafor parity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import pandas as pd

from edueffects.core.distributions import chi2_sf, f_sf
from edueffects.core.errors import InputError
from edueffects.core.inference import coefficient_table, critical_value, information_criteria
from edueffects.core.linalg import weighted_ls
from edueffects.core.nested import Convergence, Evaluation, design_from_rows, evaluate, maximize
from edueffects.core.profile import VarianceInterval, profile_interval, q_profile_interval
from edueffects.meta.design import MissingPolicy, prepare
from edueffects.meta.estimators import generalized_q, hedges, moment_tau2
from edueffects.meta.result import FittedState, MetaResult, Prediction

EstimationMethod = Literal["EE", "FE", "DL", "REML", "ML", "PM", "HS", "SJ", "EB", "HE"]
TestMethod = Literal["z", "t", "knha"]
LIKELIHOOD = ("REML", "ML")


def meta(
    data: pd.DataFrame,
    yi: str,
    vi: str,
    cluster: str | None = None,
    within: str | None = None,
    method: EstimationMethod = "REML",
    mods: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    test: TestMethod = "z",
    level: float = 95.0,
    missing: MissingPolicy = "error",
    variance_ci: bool = True,
) -> MetaResult:
    """Fit a meta-analytic model of effect sizes ``yi`` with known sampling variances ``vi``.

    Without ``cluster``: the equal-effects (``EE``/``FE``) or random-effects model with tau^2 by
    ``method``. With ``cluster`` (and ``within``): the multilevel model with random intercepts for
    clusters and for effects within clusters (``rma.mv(yi, vi, random = ~ 1 | cluster/within)``),
    fitted by REML or ML. ``mods`` are moderator columns (strings and ``categorical`` columns get
    treatment coding); ``test`` is ``z``, ``t`` (df = k - p) or ``knha`` (Knapp–Hartung, univariate).
    """
    if method not in get_args(EstimationMethod):
        raise InputError("method '{0}' is not one of {1}", method, ", ".join(get_args(EstimationMethod)))
    if test not in get_args(TestMethod):
        raise InputError("test '{0}' is not one of z, t, knha", test)
    if not 0.0 < level < 100.0:
        raise InputError("level must be between 0 and 100 (got {0})", level)
    if cluster is not None and method not in LIKELIHOOD:
        raise InputError("multilevel models are fitted by REML or ML, not '{0}'", method)
    if cluster is not None and test == "knha":
        raise InputError("test 'knha' is for univariate models; use test='t' for multilevel models")
    md = prepare(data, yi, vi, cluster, within, list(mods or []), list(categorical or []), missing)
    x, y, v = md.x, md.y, md.v
    k, p = x.shape
    warnings: list[str] = []
    if md.n_dropped:
        warnings.append(f"{md.n_dropped} row(s) with missing values dropped")

    fe = weighted_ls(x, y, 1.0 / v)
    qe_df = k - p
    typical_v = qe_df / fe.trace_p

    if cluster is not None:
        model: Literal["fixed", "univariate", "multilevel"] = "multilevel"
        design = design_from_rows(x, y, v, list(md.level_codes), residual=False)
        n_levels = len(md.level_codes)
        dl = max(0.0, (fe.rss - qe_df) / fe.trace_p)
        start = np.full(n_levels, max(dl, 1e-3 * float(np.var(y))) / n_levels)
        ev, conv = maximize(design, method, start)  # type: ignore[arg-type]
        variance_names = tuple(f"sigma2 {name}" for name in md.level_names)
        residual_variance = 0.0
        theta_levels = ev.theta
        ll_method = method
    elif method in ("EE", "FE"):
        model = "fixed"
        design = design_from_rows(x, y, v, [], residual=False)
        ev = evaluate(design, np.zeros(0), "ML")
        conv = Convergence(True, 0, 0.0, ())
        variance_names = ()
        residual_variance = 0.0
        theta_levels = np.zeros(0)
        ll_method = "ML"
    else:
        model = "univariate"
        design = design_from_rows(x, y, v, [], residual=True)
        if method in LIKELIHOOD:
            ev, conv = maximize(design, method, np.array([hedges(x, y, v)]))  # type: ignore[arg-type]
            ll_method = method
        else:
            tau2 = moment_tau2(method, x, y, v)  # type: ignore[arg-type]
            ev = evaluate(design, np.array([tau2]), "ML")
            conv = Convergence(True, 0, 0.0, (tau2 <= 0.0,))
            ll_method = "ML"
        variance_names = ("tau2",)
        residual_variance = float(ev.theta[0])
        theta_levels = np.zeros(0)
    if not conv.converged:
        warnings.append("the optimiser did not converge: treat the estimates with caution")
    for name, at_zero in zip(variance_names, conv.at_boundary, strict=False):
        if at_zero:
            warnings.append(f"{name} is estimated at the boundary (0)")

    theta = ev.theta
    cov = ev.cov_beta.copy()
    if test == "knha":
        cov = cov * (ev.rss / qe_df)
    df = float(qe_df) if test in ("t", "knha") else float("inf")
    coefs = coefficient_table(md.coef_names, ev.beta, np.sqrt(np.diag(cov)), df, level)

    qm = qmp = None
    qm_df: tuple[int, int | None] | None = None
    if p > 1:
        b = ev.beta[1:]
        qm_value = float(b @ np.linalg.solve(cov[1:, 1:], b))
        m = p - 1
        if test == "z":
            qm, qmp, qm_df = qm_value, chi2_sf(qm_value, m), (m, None)
        else:
            qm = qm_value / m
            qmp, qm_df = f_sf(qm, m, qe_df), (m, qe_df)

    fit_ev: Evaluation = ev if ll_method == method else evaluate(design, theta, "ML")
    n_var = theta.size
    parms = p + n_var
    loglik = fit_ev.loglik
    aic, bic = information_criteria(loglik, parms, k - p if ll_method == "REML" else k)

    total_var = float(np.sum(theta))
    i2_levels = tuple(float(100.0 * t / (total_var + typical_v)) for t in theta)
    if model == "fixed":  # metafor: from Q for the equal-effects model
        i2_total = max(0.0, 100.0 * (fe.rss - qe_df) / fe.rss)
        h2: float | None = fe.rss / qe_df
    else:
        i2_total = float(100.0 * total_var / (total_var + typical_v))
        h2 = (total_var + typical_v) / typical_v if model == "univariate" else None

    prediction = None
    if p == 1:
        se0 = float(coefs.se[0])
        crit = float(critical_value(df, level))
        half_pi = crit * np.sqrt(se0**2 + total_var)
        est = float(ev.beta[0])
        random = model != "fixed"
        prediction = Prediction(
            pred=est,
            se=se0,
            ci_lb=float(coefs.ci_lb[0]),
            ci_ub=float(coefs.ci_ub[0]),
            pi_lb=est - half_pi if random else None,
            pi_ub=est + half_pi if random else None,
        )

    intervals: list[VarianceInterval] = []
    if variance_ci and model == "univariate":
        lb, ub = q_profile_interval(lambda t: generalized_q(x, y, v, t), qe_df, float(theta[0]), level)
        intervals.append(VarianceInterval("tau2", float(theta[0]), lb, ub, "Q-profile"))
    elif variance_ci and model == "multilevel":
        for i, name in enumerate(variance_names):
            lb, ub = profile_interval(design, method, theta, ev.loglik, i, level)  # type: ignore[arg-type]
            intervals.append(VarianceInterval(name, float(theta[i]), lb, ub, f"profile likelihood ({method})"))

    fitted = FittedState(
        x=x,
        y=y,
        v=v,
        level_codes=md.level_codes,
        theta=theta_levels if model == "multilevel" else np.zeros(0),
        beta=ev.beta,
        cov_beta=ev.cov_beta,
        frame=md.frame,
        residual_variance=residual_variance,
    )
    return MetaResult(
        model=model,
        method="EE" if method == "FE" else method,
        test=test,
        level=level,
        k=k,
        n_groups=tuple(int(c.max()) + 1 for c in md.level_codes),
        coefficients=coefs,
        cov_beta=cov,
        variance_names=variance_names,
        variance=theta,
        QE=fe.rss,
        QEp=chi2_sf(fe.rss, qe_df),
        QE_df=qe_df,
        QM=qm,
        QMp=qmp,
        QMdf=qm_df,
        loglik=loglik,
        aic=float(aic),
        bic=float(bic),
        i2_total=i2_total,
        i2_levels=i2_levels,
        h2=h2,
        typical_v=float(typical_v),
        prediction=prediction,
        variance_ci=tuple(intervals),
        convergence=conv,
        n_dropped=md.n_dropped,
        warnings=tuple(warnings),
        fitted=fitted,
    )
