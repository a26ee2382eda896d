"""``meta()``: equal-effects, random-effects and multilevel (nested) meta-analysis at metafor parity.

The fit runs in named steps: check the options, prepare the data (:mod:`edueffects.meta.design`),
estimate the variance components, then the fixed effects and their tests, and heterogeneity; the
intervals of the variance components are computed when first asked for
(:mod:`edueffects.meta.intervals`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

from edueffects.core.distributions import chi2_sf
from edueffects.core.errors import InputError, Message
from edueffects.core.inference import coefficient_table
from edueffects.core.jet import Array
from edueffects.core.linalg import WeightedFit, weighted_ls
from edueffects.core.nested import Convergence, Evaluation, NestedDesign, design_from_rows, evaluate, maximize
from edueffects.core.results import FitRecord, normalize_level, wald_test
from edueffects.meta.dependence import che_heterogeneity, check_rho, check_within_unique, multilevel_design
from edueffects.meta.design import MetaData, MissingPolicy, prepare
from edueffects.meta.estimators import hedges, moment_tau2
from edueffects.meta.intervals import VarianceProfiles
from edueffects.meta.result import FittedState, MetaResult, Prediction
from edueffects.options import (
    DEFAULT_LEVEL,
    DEFAULT_METHOD,
    DEFAULT_TEST,
    ESTIMATION_METHODS,
    TEST_METHODS,
    EstimationMethod,
    TestMethod,
)
from edueffects.options import LIKELIHOOD_METHODS as LIKELIHOOD

if TYPE_CHECKING:
    from edueffects.io.columns import TableLike  # pandas is imported where a table is built


@dataclass(frozen=True, eq=False)
class VarianceFit:
    """The variance components of a fit and the likelihood evaluation at them."""

    model: Literal["fixed", "univariate", "multilevel"]
    design: NestedDesign
    evaluation: Evaluation
    convergence: Convergence
    names: tuple[str, ...]
    estimated: tuple[bool, ...]
    loglik_method: str


def _check_options(
    method: str, test: str, level: float, cluster: str | None, sigma2: Sequence[float | None] | None, tau2: float | None
) -> float:
    if method not in ESTIMATION_METHODS:
        raise InputError("method '{0}' is not one of {1}", method, ", ".join(ESTIMATION_METHODS))
    if test not in TEST_METHODS:
        raise InputError("test '{0}' is not one of z, t, knha", test)
    if cluster is not None and method not in LIKELIHOOD:
        raise InputError("multilevel models are fitted by REML or ML, not '{0}'", method)
    if cluster is not None and test == "knha":
        raise InputError("test 'knha' is for univariate models; use test='t' for multilevel models")
    if sigma2 is not None and cluster is None:
        raise InputError("sigma2 fixes variance components of multilevel models; use tau2 for a univariate model")
    if tau2 is not None and cluster is not None:
        raise InputError("tau2 is for univariate models; use sigma2 for the components of a multilevel model")
    if tau2 is not None and (not np.isfinite(tau2) or tau2 < 0):
        raise InputError("tau2 must be a finite number >= 0 (got {0})", tau2)
    if tau2 is not None and method in ("EE", "FE"):
        raise InputError("tau2 cannot be fixed in an equal-effects model")
    return normalize_level(level)


def _fixed_components(sigma2: Sequence[float | None] | None, names: tuple[str, ...]) -> list[float | None]:
    if sigma2 is None:
        return [None] * len(names)
    values = list(sigma2)
    if len(values) != len(names):
        raise InputError(
            "sigma2 has {0} value(s) for {1} variance component(s) ({2})", len(values), len(names), ", ".join(names)
        )
    for name, value in zip(names, values, strict=True):
        if value is not None and (not np.isfinite(value) or value < 0):
            raise InputError("sigma2 for '{0}' must be None (estimated) or a number >= 0 (got {1})", name, value)
    return values


def _univariate_tau2(
    x: Array, y: Array, v: Array, method: str, fixed: float | None
) -> tuple[NestedDesign, Evaluation, Convergence, str]:
    """tau^2 of the random-effects model by ``method`` (or held at ``fixed``)."""
    design = design_from_rows(x, y, v, [], residual=True)
    if fixed is not None:
        ll_method = method if method in LIKELIHOOD else "ML"
        ev = evaluate(design, np.array([fixed]), ll_method)  # type: ignore[arg-type]
        return design, ev, Convergence(True, 0, 0.0, (fixed <= 0.0,)), ll_method
    if method in LIKELIHOOD:
        ev, conv = maximize(design, method, np.array([hedges(x, y, v)]))  # type: ignore[arg-type]
        return design, ev, conv, method
    tau2 = moment_tau2(method, x, y, v)  # type: ignore[arg-type]
    return design, evaluate(design, np.array([tau2]), "ML"), Convergence(True, 0, 0.0, (tau2 <= 0.0,)), "ML"


def _nested_moments(basis: Array, y: Array, v: Array, outer: NDArray[np.intp]) -> Array | None:
    """Moment estimates of (sigma2 outer, sigma2 inner), Newton's start for two nested levels: with
    the unweighted least-squares residuals ``r`` (``basis`` orthonormal), the inner variance from the
    within-cluster sum of squares, ``E sum_j sum_i (r_ij - rbar_j)^2 ~ sum_j (n_j - 1)(sigma2_in +
    vbar_j)`` (``vbar_j`` the mean ``v`` of cluster ``j``), and the outer one from the total
    ``r'r / (k - p) ~ sigma2_out + sigma2_in + mean(v)``. Only a start: REML/ML are maximised
    exactly from it. ``None`` without clusters of several rows or when not finite."""
    resid = y - basis @ (basis.T @ y)
    n_clusters = int(outer.max()) + 1
    size = np.bincount(outer, minlength=n_clusters).astype(np.float64)
    df_within = float(np.sum(size - 1.0))
    if df_within <= 0.0:
        return None
    mean_resid = np.bincount(outer, resid, n_clusters) / size
    deviation = resid - mean_resid[outer]
    sampling = float(np.sum((size - 1.0) / size * np.bincount(outer, v, n_clusters)))
    inner = (float(deviation @ deviation) - sampling) / df_within
    total = float(resid @ resid) / (y.size - basis.shape[1])
    moments = np.array([total - inner - float(np.mean(v)), inner])
    return moments if bool(np.all(np.isfinite(moments))) else None


def _estimate_variance(
    md: MetaData,
    basis: Array,
    method: str,
    fe: WeightedFit,
    sigma2: Sequence[float | None] | None,
    tau2: float | None,
    rho: float | None = None,
) -> VarianceFit:
    """Variance components on ``basis``, an orthonormal basis of the moderators' column space: the
    (restricted) likelihood, with metafor's ``1/2 log|X'X|`` in REML, does not depend on the basis,
    and an orthonormal one keeps ``X'V^-1X`` well conditioned (uncentred interactions). ``rho``: the
    known sampling correlation within clusters (CHE), a rank-one term of the nested design."""
    x, y, v = basis, md.y, md.v
    if md.level_codes:
        names = tuple(f"sigma2 {name}" for name in md.level_names)
        fixed = _fixed_components(sigma2, names)
        design = multilevel_design(x, y, v, md.level_codes, rho)
        qe_df = x.shape[0] - x.shape[1]
        dl = max(0.0, (fe.rss - qe_df) / fe.trace_p)
        spread = 1e-3 * float(np.var(y))
        floor = spread / len(names)
        share = max(dl, spread) / len(names)
        start = np.array([share if f is None else f for f in fixed])
        if len(names) == 2 and not rho and fixed == [None, None]:
            moments = _nested_moments(x, y, v, md.level_codes[0])
            if moments is not None:
                start = np.maximum(moments, floor)
        held = [f is not None for f in fixed]
        ev, conv = maximize(design, method, start, fixed=held)  # type: ignore[arg-type]
        return VarianceFit("multilevel", design, ev, conv, names, tuple(not h for h in held), method)
    if method in ("EE", "FE"):
        design = design_from_rows(x, y, v, [], residual=False)
        ev = evaluate(design, np.zeros(0), "ML")
        return VarianceFit("fixed", design, ev, Convergence(True, 0, 0.0, ()), (), (), "ML")
    design, ev, conv, ll_method = _univariate_tau2(x, y, v, method, tau2)
    return VarianceFit("univariate", design, ev, conv, ("tau2",), (tau2 is None,), ll_method)


def _variance_se(fit: VarianceFit, md: MetaData, basis: Array, method: str) -> Array:
    """SEs of the variance components: metafor's expected information for the univariate ML/REML
    model (``2 / sum w^2``, ``2 / tr(P^2)``); the inverse observed information (exact Hessian) of
    the free, interior components of multilevel models; NaN where not defined."""
    theta = fit.evaluation.theta
    se = np.full(theta.size, np.nan)
    if fit.model == "univariate" and method in LIKELIHOOD and fit.estimated[0]:
        w = 1.0 / (md.v + theta[0])
        if method == "ML":
            info = 0.5 * float(np.sum(w * w))
        else:  # tr(P^2) = sum w^2 - 2 tr(A^-1 X'W^3X) + tr((A^-1 X'W^2X)^2), A = X'WX
            x = basis
            a_inv = np.linalg.inv((x * w[:, None]).T @ x)
            b = a_inv @ ((x * (w * w)[:, None]).T @ x)
            c = a_inv @ ((x * (w**3)[:, None]).T @ x)
            info = 0.5 * float(np.sum(w * w) - 2.0 * np.trace(c) + np.trace(b @ b))
        se[0] = np.sqrt(1.0 / info)
    elif fit.model == "multilevel":
        free = np.asarray(fit.estimated) & (theta > 0.0)
        if free.any():
            information = -fit.evaluation.hessian[np.ix_(free, free)]
            with np.errstate(invalid="ignore"):
                se[free] = np.sqrt(np.diag(np.linalg.inv(information)))
    return se


def _pseudo_r2(md: MetaData, method: str, fit: VarianceFit, tau2: float | None) -> float | None:
    """metafor's pseudo-R^2: ``max(0, 100 (tau2_0 - tau2) / tau2_0)`` against the intercept-only model
    fitted the same way (univariate models with an intercept and moderators)."""
    if fit.model != "univariate" or tau2 is not None or not md.terms.has_intercept or md.x.shape[1] < 2:
        return None
    ones = np.ones((md.x.shape[0], 1))
    _, ev0, _, _ = _univariate_tau2(ones, md.y, md.v, method, None)
    tau2_0 = float(ev0.theta[0])
    if tau2_0 <= 0.0:
        return None
    return max(0.0, 100.0 * (tau2_0 - float(fit.evaluation.theta[0])) / tau2_0)


def _variance_profiles(
    fit: VarianceFit, md: MetaData, basis: Array, method: str, level: float, qe_df: int, typical_v: float, enabled: bool
) -> VarianceProfiles:
    """What the intervals of the variance components need, for the result to compute them when
    first asked for: the Q-profile CI of tau^2 (univariate), profile-likelihood CIs of every
    estimated sigma^2 (multilevel)."""
    return VarianceProfiles(
        model=fit.model,
        method=method,
        names=fit.names,
        theta=fit.evaluation.theta,
        estimated=fit.estimated,
        level=level,
        enabled=enabled,
        design=fit.design if enabled and fit.model == "multilevel" else None,
        basis=basis if enabled and fit.model == "univariate" else None,
        y=md.y,
        v=md.v,
        qe_df=qe_df,
        typical_v=float(typical_v),
    )


def _single_group_levels(
    md: MetaData, sigma2: Sequence[float | None] | None, warnings: list[Message]
) -> Sequence[float | None] | None:
    """A level with a single group has no variance to estimate (the likelihood is flat in it): its
    sigma2 is fixed at 0, with a warning, as metafor's rma.mv does ("Single-level factor(s) found in
    'random' argument. Corresponding 'sigma2' value(s) fixed to 0.")."""
    single = [i for i, codes in enumerate(md.level_codes) if codes.size and int(codes.max()) == 0]
    if not single or (sigma2 is not None and len(sigma2) != len(md.level_codes)):
        return sigma2  # a wrong-length sigma2 gets its own error
    fixed: list[float | None] = list(sigma2) if sigma2 is not None else [None] * len(md.level_codes)
    for i in single:
        if fixed[i] is None:
            fixed[i] = 0.0
            warnings.append(
                Message("'{0}' has a single group: its variance is fixed at 0, as metafor does", md.level_names[i])
            )
    return fixed


def meta(
    data: TableLike,
    yi: str,
    vi: str,
    cluster: str | None = None,
    within: str | None = None,
    method: EstimationMethod = DEFAULT_METHOD,
    mods: str | Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    test: TestMethod = DEFAULT_TEST,
    level: float = DEFAULT_LEVEL,
    missing: MissingPolicy = "error",
    variance_ci: bool = True,
    sigma2: Sequence[float | None] | None = None,
    tau2: float | None = None,
    rho: float | None = None,
) -> MetaResult:
    """Fit a meta-analytic model of effect sizes ``yi`` with known sampling variances ``vi``.

    Without ``cluster``: the equal-effects (``EE``/``FE``) or random-effects model with tau^2 by
    ``method`` (``tau2`` fixes it). With ``cluster`` (and ``within``): the multilevel model with
    random intercepts for clusters and for effects within clusters (``rma.mv(yi, vi, random = ~ 1 |
    cluster/within)``), fitted by REML or ML; ``sigma2`` fixes components (outer first, ``None`` =
    estimated; ``[None, 0]`` is the two-level model without the effect level). ``mods`` is a
    formula (``"~ a * b + C(c)"``), a column, or a list of columns (text and ``categorical`` columns get
    treatment coding); ``test`` is ``z``, ``t`` (df = k - p) or ``knha`` (Knapp–Hartung, univariate);
    ``level`` is in percent (95) or a proportion (0.95). ``variance_ci``: confidence intervals of
    the variance components (profile likelihood; Q-profile for tau^2), computed when first read
    (``result.variance_ci``, ``summary()``, ``to_dict()``); ``False``: never computed.

    ``rho`` (needs ``cluster``; ``0 <= rho < 1``): the sampling errors of the effects of one cluster
    correlate with this known ``rho``, the correlated-and-hierarchical-effects (CHE) working model:
    ``V_j = (1 - rho) diag(v) + rho s s'``, ``s = sqrt(v)`` (metafor ``rma.mv(yi, vcalc(vi, cluster,
    obs = within, rho = rho), random = ~ 1 | cluster/within)``). ``QE`` and ``I^2`` use this ``V``;
    ``robust()``, ``ranef()`` and the profile intervals use the CHE working covariance.
    ``None`` or 0: independent sampling errors.
    """
    level = _check_options(method, test, level, cluster, sigma2, tau2)
    rho = check_rho(rho, cluster)
    md = prepare(data, yi, vi, cluster, within, mods, list(categorical or []), missing)
    if rho and cluster is not None:
        check_within_unique(md, cluster, within)
    x, y, v = md.x, md.y, md.v
    k, p = x.shape
    warnings: list[Message] = []
    if md.n_dropped:
        warnings.append(Message("{0} row(s) with missing values dropped", md.n_dropped))
    sigma2 = _single_group_levels(md, sigma2, warnings)

    basis, r_factor = np.linalg.qr(x)  # x = basis @ r_factor
    to_original = np.linalg.inv(r_factor)
    fe = weighted_ls(basis, y, 1.0 / v)
    qe_df = k - p
    typical_v = qe_df / fe.trace_p
    fit = _estimate_variance(md, basis, method, fe, sigma2, tau2, rho)
    qe = fe.rss
    if rho:  # Q and the typical sampling variance under the correlated sampling errors
        qe, typical_v = che_heterogeneity(basis, y, v, md.level_codes[0], rho)
    ev, conv = fit.evaluation, fit.convergence
    beta = to_original @ ev.beta
    cov_model = to_original @ ev.cov_beta @ to_original.T
    if not conv.converged:
        warnings.append(Message("the optimiser did not converge: treat the estimates with caution"))
    if conv.local_maxima > 1:
        warnings.append(Message("the likelihood has {0} local maxima: the highest is reported", conv.local_maxima))
    for name, at_zero, free in zip(fit.names, conv.at_boundary, fit.estimated, strict=False):
        if at_zero and free:
            warnings.append(Message("{0} is estimated at the boundary (0)", name))

    theta = ev.theta
    cov = cov_model.copy()
    if test == "knha":
        cov = cov * (ev.rss / qe_df)
    df = float(qe_df) if test in ("t", "knha") else float("inf")
    names = md.terms.coef_names
    coefs = coefficient_table(names, beta, np.sqrt(np.diag(cov)), df, level)

    tested = md.terms.moderator_columns() if md.terms.has_intercept else tuple(range(p))
    qm = None
    if tested:
        selection = np.eye(p)[list(tested)]
        qm = wald_test(beta, cov, selection, df, names, "model-based")

    fit_ev: Evaluation = ev if fit.loglik_method == method else evaluate(fit.design, theta, "ML")
    n_params = p + int(sum(fit.estimated))
    record = FitRecord(
        method="EE" if method == "FE" else method,
        loglik=fit_ev.loglik,
        n_params=n_params,
        n_info=float(k - p if fit.loglik_method == "REML" else k),
        n_obs=k,
        x=x,
        y=y,
        sampling_correlation=rho or 0.0,
        known_var=v,
        correlation_groups=md.level_codes[0] if rho else None,
    )

    total_var = float(np.sum(theta))
    i2_levels = tuple(float(100.0 * t / (total_var + typical_v)) for t in theta)
    if fit.model == "fixed":  # metafor: from Q for the equal-effects model
        i2_total = max(0.0, 100.0 * (fe.rss - qe_df) / fe.rss)
        h2: float | None = fe.rss / qe_df
    else:
        i2_total = float(100.0 * total_var / (total_var + typical_v))
        h2 = (total_var + typical_v) / typical_v if fit.model == "univariate" else None

    prediction = None
    if p == 1 and md.terms.has_intercept:
        est, se0 = float(beta[0]), float(coefs.se[0])
        random = fit.model != "fixed"
        half_pi = float(coefs.ci_ub[0] - est) / se0 * np.sqrt(se0**2 + total_var)
        prediction = Prediction(
            pred=est,
            se=se0,
            ci_lb=float(coefs.ci_lb[0]),
            ci_ub=float(coefs.ci_ub[0]),
            pi_lb=est - half_pi if random else None,
            pi_ub=est + half_pi if random else None,
        )

    profiles = _variance_profiles(fit, md, basis, method, level, qe_df, typical_v, variance_ci)
    state = FittedState(
        x=x,
        y=y,
        v=v,
        level_codes=md.level_codes,
        level_names=md.level_names,
        theta=theta if fit.model == "multilevel" else np.zeros(0),
        beta=beta,
        cov_beta=cov_model,
        table=md.table,
        source=md.source,
        residual_variance=float(theta[0]) if fit.model == "univariate" else 0.0,
        terms=md.terms,
        estimated=fit.estimated,
        rho=rho or 0.0,
    )
    return MetaResult(
        model=fit.model,
        method="EE" if method == "FE" else method,
        test=test,
        level=level,
        k=k,
        n_groups=tuple(int(c.max()) + 1 for c in md.level_codes),
        coefficients=coefs,
        cov_beta=cov,
        variance_names=fit.names,
        variance=theta,
        variance_se=_variance_se(fit, md, basis, method),
        variance_fixed=tuple(not e for e in fit.estimated),
        QE=qe,
        QEp=chi2_sf(qe, qe_df),
        QE_df=qe_df,
        moderator_test=qm,
        fit_record=record,
        i2_total=i2_total,
        i2_levels=i2_levels,
        h2=h2,
        r2=_pseudo_r2(md, method, fit, tau2),
        typical_v=float(typical_v),
        prediction=prediction,
        variance_profiles=profiles,
        convergence=conv,
        n_dropped=md.n_dropped,
        warnings=tuple(warnings),
        state=state,
        rho=rho,
    )
