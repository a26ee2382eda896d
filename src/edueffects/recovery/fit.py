"""``recovery()``: does learning recovery after the pandemic differ with school characteristics?"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from edueffects.core.equivalence import minimum_detectable_effect, tost
from edueffects.core.errors import InputError
from edueffects.core.inference import coefficient_table
from edueffects.core.jet import Array
from edueffects.core.nested import Evaluation, maximize
from edueffects.core.results import FitRecord
from edueffects.core.robust import RobustCovariance, cr2
from edueffects.recovery.data import CellTable, RecoverySpec, aggregate, domains, standardize_moderators
from edueffects.recovery.inference import ModelCovariance, satterthwaite_df
from edueffects.recovery.model import ModelFrame, build, data_identity, start_values
from edueffects.recovery.result import RecoveryResult

FitMethod = Literal["REML", "ML"]


def recovery(
    data: pd.DataFrame | str | Path,
    school: str,
    cohort: str,
    pandemic_cohorts: Sequence[str | int],
    moderators: Sequence[str],
    pre: str | Sequence[str] | None = None,
    post: str | Sequence[str] | None = None,
    student: str | None = None,
    long: bool = False,
    occasion: str | None = None,
    score: str | Sequence[str] | None = None,
    method: FitMethod = "REML",
    standardize: bool = False,
    sesoi: float = 0.05,
    alpha: float = 0.05,
    power: float = 0.8,
    level: float = 95.0,
    domain: tuple[str, str] | None = None,
) -> RecoveryResult:
    """Fit the gain model (``pre``/``post``) or the long model (``long=True``) of a DDD design.

    ``data`` is a DataFrame or a CSV/Parquet file read through DuckDB. ``pandemic_cohorts`` lists
    the cohorts affected by the pandemic; ``moderators`` are school-level columns (a column that is
    zero for every pre-pandemic student is treated as a dose). ``sesoi`` is the smallest effect of
    interest for the equivalence tests (score units per unit, or per SD with ``standardize``).
    Several ``pre``/``post`` (or ``score``) columns are plausible values: one fit each, pooled with
    Rubin's rules. ``domain = (column, value)`` restricts the fit to one domain's rows.
    The simulation check of the MDEs runs above the engine: ``edueffects.power.check_mdes(result, reps)``.
    """
    if method not in ("REML", "ML"):
        raise InputError("method '{0}' is not REML or ML", method)
    if not moderators:
        raise InputError("name at least one school-level moderator (--moderators)")
    if sesoi <= 0:
        raise InputError("sesoi must be positive (got {0})", sesoi)
    pres, posts, scores = _columns(pre), _columns(post), _columns(score)
    n_pv = max(len(pres), len(posts), len(scores), 1)
    for name, cols in (("pre", pres), ("post", posts), ("score", scores)):
        if cols and len(cols) != n_pv:
            raise InputError("'{0}' names {1} plausible value(s) but another score names {2}", name, len(cols), n_pv)
    fits = []
    for i in range(n_pv):
        spec = RecoverySpec(
            school=school,
            cohort=cohort,
            pandemic_cohorts=tuple(str(c) for c in pandemic_cohorts),
            moderators=tuple(moderators),
            pre=pres[i] if pres else None,
            post=posts[i] if posts else None,
            student=student,
            occasion=occasion,
            score=scores[i] if scores else None,
            long=long,
            domain=domain,
        )
        fits.append(_fit_one(data, spec, method, standardize, sesoi, alpha, power, level))
    return fits[0] if n_pv == 1 else pool_plausible_values(fits, sesoi, alpha, power, level)


def recovery_by_domain(data: pd.DataFrame | str | Path, domain: str, **kwargs: object) -> dict[str, RecoveryResult]:
    """One :func:`recovery` fit per value of the ``domain`` column (e.g. reading and maths separately)."""
    return {value: recovery(data, domain=(domain, value), **kwargs) for value in domains(data, domain)}  # type: ignore[arg-type]


def model_pvalues(cells: CellTable, moderators: Sequence[str], method: FitMethod) -> dict[str, float]:
    """Model-based (Satterthwaite) p-value of every coefficient of a model fitted to ``cells``."""
    mf = build(cells, moderators, method)
    ev, conv = maximize(mf.design, method, start_values(cells, mf))
    df = satterthwaite_df(ev, conv.at_boundary)
    table = coefficient_table(mf.names, ev.beta, np.sqrt(np.diag(ev.cov_beta)), df, 95.0)
    return dict(zip(mf.names, (float(p) for p in table.pval), strict=True))


def _columns(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _rubin(estimates: Array, variances: Array, df_complete: Array) -> tuple[Array, Array, Array]:
    """Rubin's rules with Barnard & Rubin (1999) df: pooled estimate, total SE and df per column."""
    m = estimates.shape[0]
    mean = estimates.mean(axis=0)
    within = variances.mean(axis=0)
    between = estimates.var(axis=0, ddof=1)
    total = within + (1.0 + 1.0 / m) * between
    gamma = np.where(total > 0, (1.0 + 1.0 / m) * between / total, 0.0)
    with np.errstate(divide="ignore"):
        df_old = np.where(gamma > 0, (m - 1) / gamma**2, np.inf)
    nu = df_complete
    df_obs = (nu + 1.0) / (nu + 3.0) * nu * (1.0 - gamma)
    df = 1.0 / (1.0 / df_old + 1.0 / df_obs)
    return mean, np.sqrt(total), df


def pool_plausible_values(
    fits: Sequence[RecoveryResult], sesoi: float, alpha: float, power: float, level: float
) -> RecoveryResult:
    """Combine fits to each plausible value (Rubin 1987) into one result."""
    first = fits[0]
    est = np.array([f.coefficients.estimate for f in fits])
    model_var = np.array([f.coefficients.se**2 for f in fits])
    robust_var = np.array([f.robust.se**2 for f in fits])
    mean, se, df = _rubin(est, model_var, np.mean([f.coefficients.df for f in fits], axis=0))
    _, rse, rdf = _rubin(est, robust_var, np.mean([f.robust.df for f in fits], axis=0))
    names = first.coefficients.names
    coefs = coefficient_table(names, mean, se, df, level)
    robust = coefficient_table(names, mean, rse, rdf, level)
    index = {name: i for i, name in enumerate(names)}
    terms = first.ddd_terms
    equivalence = tuple(
        tost(t, float(mean[index[t]]), float(se[index[t]]), float(df[index[t]]), sesoi, alpha) for t in terms
    )
    mdes = tuple(minimum_detectable_effect(t, float(se[index[t]]), float(df[index[t]]), alpha, power) for t in terms)
    record = first.fit_record
    loglik = float(np.mean([f.loglik for f in fits]))
    note = f"pooled over {len(fits)} plausible values with Rubin's rules (Barnard-Rubin df); logLik, AIC, BIC averaged"
    # an average of log-likelihoods is no likelihood: the method label keeps anova() from comparing it
    pooled = FitRecord(
        f"{record.method}, averaged over {len(fits)} plausible values",
        loglik,
        record.n_params,
        record.n_info,
        record.n_obs,
        record.x,
        record.y,
    )
    return RecoveryResult(
        model=first.model,
        method=first.method,
        n_students=first.n_students,
        n_rows=first.n_rows,
        n_schools=first.n_schools,
        n_cells=first.n_cells,
        pandemic_cohorts=first.pandemic_cohorts,
        moderators=first.moderators,
        dose=first.dose,
        coefficients=coefs,
        ddd_terms=terms,
        variance_names=first.variance_names,
        variance=np.mean([f.variance for f in fits], axis=0),
        fit_record=pooled,
        robust=robust,
        robust_clusters=first.robust_clusters,
        equivalence=equivalence,
        mdes=mdes,
        sesoi=sesoi,
        standardized=first.standardized,
        convergence=first.convergence
        if all(f.convergence.converged for f in fits)
        else next(f.convergence for f in fits if not f.convergence.converged),
        notes=(*first.notes, note),
        warnings=tuple(dict.fromkeys(w for f in fits for w in f.warnings)),
        cells=first.cells,
        plausible_values=len(fits),
    )


def _fit_one(
    data: pd.DataFrame | str | Path,
    spec: RecoverySpec,
    method: FitMethod,
    standardize: bool,
    sesoi: float,
    alpha: float,
    power: float,
    level: float,
) -> RecoveryResult:
    moderators = spec.moderators
    cells = aggregate(data, spec)
    notes = list(cells.notes)
    if standardize:
        cells = type(cells)(
            kind=cells.kind,
            frame=standardize_moderators(cells.frame, moderators, cells.dose),
            n_students=cells.n_students,
            n_rows=cells.n_rows,
            dose=cells.dose,
            occasion_label=cells.occasion_label,
            notes=cells.notes,
        )
        notes.append("moderators standardised across schools: effects are per SD of the school factor")
    mf = build(cells, moderators, method)
    ev, conv = maximize(mf.design, method, start_values(cells, mf))
    warnings: list[str] = []
    if not conv.converged:
        warnings.append("the optimiser did not converge: treat the estimates with caution")
    for name, at_zero in zip(mf.variance_names, conv.at_boundary, strict=True):
        if at_zero:
            warnings.append(f"the {name} variance is estimated at the boundary (0)")
    se = np.sqrt(np.diag(ev.cov_beta))
    model_cov = ModelCovariance.from_evaluation(ev, conv.at_boundary)
    df = model_cov.contrast_df(np.eye(se.size))
    coefs = coefficient_table(mf.names, ev.beta, se, df, level)
    rc = _robust(mf, ev)
    robust = coefficient_table(mf.names, ev.beta, np.sqrt(np.diag(rc.vcov)), rc.df, level)
    index = {name: i for i, name in enumerate(mf.names)}
    equivalence = tuple(
        tost(t, float(ev.beta[index[t]]), float(se[index[t]]), float(df[index[t]]), sesoi, alpha) for t in mf.ddd_terms
    )
    mdes = tuple(
        minimum_detectable_effect(t, float(se[index[t]]), float(df[index[t]]), alpha, power) for t in mf.ddd_terms
    )
    # lme4's logLik df: fixed effects + variance components; BIC's n: rows of the student table
    record = FitRecord(
        method=method,
        loglik=ev.loglik,
        n_params=len(mf.names) + mf.design.n_params,
        n_info=float(mf.design.n_obs),
        n_obs=mf.design.n_obs,
        x=mf.block_x,
        y=data_identity(cells),
    )
    return RecoveryResult(
        model=cells.kind,
        method=method,
        n_students=cells.n_students,
        n_rows=cells.n_rows,
        n_schools=int(cells.frame["school"].nunique()),
        n_cells=int(cells.frame.groupby(["school", "cohort"]).ngroups),
        pandemic_cohorts=spec.pandemic_cohorts,
        moderators=tuple(moderators),
        dose=cells.dose,
        coefficients=coefs,
        ddd_terms=mf.ddd_terms,
        variance_names=mf.variance_names,
        variance=ev.theta,
        fit_record=record,
        robust=robust,
        robust_clusters=rc.n_clusters,
        equivalence=equivalence,
        mdes=mdes,
        sesoi=sesoi,
        standardized=standardize,
        convergence=conv,
        notes=tuple(notes),
        warnings=tuple(warnings),
        cells=cells.frame,
        model_covariance=model_cov,
        robust_covariance=rc,
    )


def _robust(mf: ModelFrame, ev: Evaluation) -> RobustCovariance:
    """CR2 by school on the orthonormalised blocks of identical rows (exact; see core.robust)."""
    root = np.sqrt(mf.block_n)
    x = mf.block_x * root[:, None]
    resid = (mf.block_sum_y - mf.block_n * (mf.block_x @ ev.beta)) / root
    n_levels = len(mf.block_levels)
    return cr2(
        x,
        resid,
        ev.cov_beta,
        np.full(root.size, ev.theta[-1]),
        mf.block_levels,
        ev.theta[:n_levels],
        mf.block_school.astype(np.intp),
        level_loadings=mf.block_loadings,
    )
