"""``recovery()``: does learning recovery after the pandemic differ with school characteristics?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import numpy as np

from edueffects.core.equivalence import minimum_detectable_effect, tost
from edueffects.core.errors import InputError, Message, Phrase
from edueffects.core.inference import coefficient_table
from edueffects.core.jet import Array
from edueffects.core.nested import Evaluation, maximize
from edueffects.core.results import FitRecord, normalize_level
from edueffects.core.robust import RobustCovariance, cr2
from edueffects.recovery import checks
from edueffects.recovery.cells import ReleasedCells, cell_table, read_cells, released_note, score_names
from edueffects.recovery.data import (
    CellTable,
    RecoverySpec,
    aggregate,
    cohort_label,
    domains,
    drop_conditions,
    standardize_moderators,
)
from edueffects.recovery.frame import as_cells, codes, floats
from edueffects.recovery.inference import ModelCovariance, satterthwaite_df
from edueffects.recovery.model import ModelFrame, build, data_identity, start_values
from edueffects.recovery.result import RecoveryResult

if TYPE_CHECKING:
    import pandas as pd

FitMethod = Literal["REML", "ML"]
MissingPolicy = Literal["error", "drop"]
Options = tuple[FitMethod, bool, float, float, float, float]


def recovery(
    data: pd.DataFrame | str | Path | None = None,
    school: str | None = None,
    cohort: str | None = None,
    pandemic_cohorts: Sequence[str | int] | None = None,
    moderators: Sequence[str] | None = None,
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
    cells: str | Path | ReleasedCells | None = None,
    missing: MissingPolicy = "error",
) -> RecoveryResult:
    """Fit the gain model (``pre``/``post``) or the long model (``long=True``) of a DDD design.

    ``data`` is a DataFrame or a CSV/Parquet file read through DuckDB. ``pandemic_cohorts`` lists
    the cohorts affected by the pandemic; ``moderators`` are school-level columns (a column that is
    zero for every pre-pandemic student is treated as a dose). ``sesoi`` is the smallest effect of
    interest for the equivalence tests (score units per unit, or per SD with ``standardize``).
    Several ``pre``/``post`` (or ``score``) columns are plausible values: one fit each, pooled with
    Rubin's rules. ``domain = (column, value)`` restricts the fit to one domain's rows.
    ``missing="drop"`` drops the rows that miss a value the model needs (counted per column in the
    result's ``missing``, ``rows_dropped`` and notes) instead of refusing them. ``alpha`` (equivalence
    tests and MDEs) and ``power`` (MDEs) lie in (0, 1); ``level`` is a percent or a proportion.

    ``cells`` instead of ``data``: released cell statistics (a file written by
    ``edueffects recovery aggregate`` or :func:`edueffects.recovery.aggregate`). The fit is the one on
    the students the cells hold; columns, plausible values and occasions come from the file, the
    moderators default to all it holds, the pandemic cohorts to those it was released with.
    The simulation check of the MDEs runs above the engine: ``edueffects.power.check_mdes(result, reps)``.
    """
    options = _check_options(method, standardize, sesoi, alpha, power, level)
    long = checks.flag("long", long)
    if missing not in ("error", "drop"):
        raise InputError("missing must be 'error' or 'drop' (got {0})", repr(missing))
    school, cohort = checks.column("school", school), checks.column("cohort", cohort)
    student, occasion = checks.column("student", student), checks.column("occasion", occasion)
    moderators = checks.names("moderators", moderators)
    pandemic_cohorts = _cohorts(pandemic_cohorts)
    domain = _domain(domain)
    if (data is None) == (cells is None):
        raise InputError("give either a student table or a cells file (--cells), not both or neither")
    if cells is not None:
        released = cells if isinstance(cells, ReleasedCells) else read_cells(cells)
        return _recovery_from_cells(
            released, school, cohort, pandemic_cohorts, moderators, long, domain, options,
            {"pre": pre, "post": post, "student": student, "occasion": occasion, "score": score},
        )  # fmt: skip
    assert data is not None
    if not moderators:
        raise InputError("name at least one school-level moderator (--moderators)")
    if not school or not cohort:
        raise InputError("name the school and cohort columns (--school, --cohort)")
    pres, posts, scores = checks.names("pre", pre), checks.names("post", post), checks.names("score", score)
    n_pv = max(len(pres), len(posts), len(scores), 1)
    for name, cols in (("pre", pres), ("post", posts), ("score", scores)):
        if cols and len(cols) != n_pv:
            raise InputError("'{0}' names {1} plausible value(s) but another score names {2}", name, len(cols), n_pv)
    for before, after in zip(pres, posts, strict=False):
        if before == after:
            raise InputError("pre and post name the same column '{0}': every gain would be zero", before)
    specs = [
        RecoverySpec(
            school=school,
            cohort=cohort,
            pandemic_cohorts=tuple(str(c) for c in pandemic_cohorts),
            moderators=moderators,
            pre=pres[i] if pres else None,
            post=posts[i] if posts else None,
            student=student,
            occasion=occasion,
            score=scores[i] if scores else None,
            long=long,
            domain=domain,
        )
        for i in range(n_pv)
    ]
    if missing == "drop":
        drop = drop_conditions(specs)
        specs = [replace(spec, drop=drop) for spec in specs]
    fits = [_fit_cells(aggregate(data, spec), spec, *options) for spec in specs]
    return fits[0] if n_pv == 1 else pool_plausible_values(fits, *options[2:])


def _check_options(
    method: object, standardize: object, sesoi: object, alpha: object, power: object, level: object
) -> Options:
    """The fit's options, range-checked (``level`` as a percent)."""
    if method not in ("REML", "ML"):
        raise InputError("method '{0}' is not REML or ML", method)
    return (
        method,
        checks.flag("standardize", standardize),
        checks.positive_number("sesoi", sesoi),
        checks.probability("alpha", alpha),
        checks.probability("power", power),
        normalize_level(cast(float, level)),
    )


def _cohorts(value: object) -> tuple[str, ...]:
    """Pandemic cohorts: one cohort or a list of them."""
    if value is None:
        return ()
    if isinstance(value, str | Integral):
        return (cohort_label(value),)
    if not isinstance(value, Sequence) or not all(isinstance(v, str | Real) for v in value):
        raise InputError("{0} must be a list of names (got {1})", "pandemic_cohorts", repr(value))
    return tuple(v if isinstance(v, str) else cohort_label(v) for v in value)


def _domain(value: object) -> tuple[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, tuple | list) or len(value) != 2 or not isinstance(value[0], str):
        raise InputError("domain must be a pair (column, value) (got {0})", repr(value))
    return (value[0], str(value[1]))


def _recovery_from_cells(
    cells: ReleasedCells,
    school: str | None,
    cohort: str | None,
    pandemic_cohorts: Sequence[str | int] | None,
    moderators: Sequence[str] | None,
    long: bool,
    domain: tuple[str, str] | None,
    options: Options,
    student_columns: dict[str, object],
) -> RecoveryResult:
    """Every model the released cells support, fitted as on the students they hold."""
    roles = cells.roles
    given = [f"--{k}" for k, v in student_columns.items() if v not in (None, [], ())]
    if given:
        raise InputError("a cells file holds its scores already aggregated: drop {0}", ", ".join(given))
    for role, name, held in (("school", school, roles.school), ("cohort", cohort, roles.cohort)):
        if name is not None and name != held:
            raise InputError("the cells file's {0} column is '{1}', not '{2}'", Phrase(role), held, name)
    mods = tuple(moderators) if moderators else roles.moderators
    for mod in mods:
        if mod not in roles.moderators:
            held = ", ".join(roles.moderators)
            raise InputError("moderator '{0}' is not in the cells file (it holds: {1})", mod, held)
    cohorts = tuple(str(c) for c in pandemic_cohorts) if pandemic_cohorts else cells.pandemic_cohorts
    value = _cells_domain(cells, domain)
    linked = roles.layout != "long_unlinked"
    spec = RecoverySpec(
        school=roles.school,
        cohort=roles.cohort,
        pandemic_cohorts=cohorts,
        moderators=mods,
        student=roles.student if long and linked else None,
        occasion=None if linked else roles.occasion,
        long=long,
    )
    note = released_note(cells, value)
    fits = [
        _fit_cells(cell_table(cells, spec, pv, value, ()), spec, *options, released=note,
                   scores=_released_scores(cells, pv))
        for pv in range(1, roles.n_pv + 1)
    ]  # fmt: skip
    method, standardize, sesoi, alpha, power, level = options
    del method, standardize
    return fits[0] if len(fits) == 1 else pool_plausible_values(fits, sesoi, alpha, power, level)


def _released_scores(cells: ReleasedCells, pv: int) -> str:
    before, after = score_names(cells.roles, pv)
    return after if cells.roles.occasion is not None else f"{after} - {before}"


def _cells_domain(cells: ReleasedCells, domain: tuple[str, str] | None) -> str | None:
    held = cells.domains
    if domain is None:
        if held:
            raise InputError("the cells file holds domains ({0}): choose one (--domain)", ", ".join(held))
        return None
    column, value = domain
    if not held:
        raise InputError("the cells file holds no domains: it was aggregated without --domain")
    if column != cells.roles.domain:
        raise InputError("the cells file's {0} column is '{1}', not '{2}'", Phrase("domain"), cells.roles.domain,
                         column)  # fmt: skip
    if str(value) not in held:
        raise InputError("domain '{0}' is not in the cells file (it holds: {1})", value, ", ".join(held))
    return str(value)


def recovery_by_domain(
    data: pd.DataFrame | str | Path | None = None, domain: str | None = None, **kwargs: object
) -> dict[str, RecoveryResult]:
    """One :func:`recovery` fit per value of the ``domain`` column (e.g. reading and maths separately);
    with ``cells=`` the domains of the cells file (``domain`` defaults to its domain column)."""
    cells = kwargs.pop("cells", None)
    if cells is not None:
        released = cells if isinstance(cells, ReleasedCells) else read_cells(cells)  # type: ignore[arg-type]
        column = domain or released.roles.domain
        if not released.domains or column is None:
            raise InputError("the cells file holds no domains: it was aggregated without --domain")
        return {
            value: recovery(data, cells=released, domain=(column, value), **kwargs)  # type: ignore[arg-type]
            for value in released.domains
        }
    if data is None or domain is None:
        raise InputError("give either a student table or a cells file (--cells), not both or neither")
    values, lacking = domains(data, domain)
    if lacking and kwargs.get("missing", "error") != "drop":
        raise InputError(
            "column '{0}' is missing in {1} row(s): they belong to no domain; nothing was dropped "
            "(missing='drop' or --drop-missing drops them and counts them)",
            domain,
            lacking,
        )
    fits = {value: recovery(data, domain=(domain, value), **kwargs) for value in values}  # type: ignore[arg-type]
    if not lacking:
        return fits
    note = Message("{0} row(s) without a value in the domain column '{1}' were dropped", lacking, domain)
    return {value: replace(res, notes=(*res.notes, note)) for value, res in fits.items()}


def model_pvalues(cells: CellTable, moderators: Sequence[str], method: FitMethod) -> dict[str, float]:
    """Model-based (Satterthwaite) p-value of every coefficient of a model fitted to ``cells``."""
    mf = build(cells, moderators, method)
    ev, conv = maximize(mf.design, method, start_values(cells, mf))
    df = satterthwaite_df(ev, conv.at_boundary)
    table = coefficient_table(mf.names, ev.beta, np.sqrt(np.diag(ev.cov_beta)), df, 95.0)
    return dict(zip(mf.names, (float(p) for p in table.pval), strict=True))


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
    note = Message(
        "pooled over {0} plausible values with Rubin's rules (Barnard-Rubin df); logLik, AIC, BIC averaged", len(fits)
    )
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
        cell_data=first.cell_data,
        plausible_values=len(fits),
        released_cells=first.released_cells,
        missing=dict(first.missing),
        rows_dropped=first.rows_dropped,
    )


def _fit_cells(
    cells: CellTable,
    spec: RecoverySpec,
    method: FitMethod,
    standardize: bool,
    sesoi: float,
    alpha: float,
    power: float,
    level: float,
    released: Message | None = None,
    scores: str | None = None,
) -> RecoveryResult:
    moderators = spec.moderators
    notes = list(cells.notes)
    if released is not None:
        notes.insert(0, released)
    if standardize:
        cells = replace(cells, frame=standardize_moderators(cells.frame, moderators, cells.dose))
        notes.append(Message("moderators standardised across schools: effects are per SD of the school factor"))
    mf = build(cells, moderators, method)
    _check_rank(mf, moderators)
    _check_variation(cells, scores or _score_label(spec))
    ev, conv = maximize(mf.design, method, start_values(cells, mf))
    warnings: list[Message] = []
    if not conv.converged:
        warnings.append(Message("the optimiser did not converge: treat the estimates with caution"))
    for name, at_zero in zip(mf.variance_names, conv.at_boundary, strict=True):
        if at_zero:
            warnings.append(Message("the {0} variance is estimated at the boundary (0)", Phrase(name)))
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
    school, cell = codes(as_cells(cells.frame))
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
        n_schools=int(school.max()) + 1,
        n_cells=int(cell.max()) + 1,
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
        cell_data=cells.frame,
        model_covariance=model_cov,
        robust_covariance=rc,
        released_cells=released is not None,
        missing=dict(cells.missing),
        rows_dropped=cells.rows_dropped,
    )


def _score_label(spec: RecoverySpec) -> str:
    if spec.pre and spec.post:
        return f"{spec.post} - {spec.pre}"
    return spec.score or ""


def _check_rank(mf: ModelFrame, moderators: Sequence[str]) -> None:
    """Every coefficient estimable: no column of the design a combination of the ones before it
    (moderators collinear across schools). One line naming the moderator."""
    x = mf.block_x
    norms = np.linalg.norm(x, axis=0)
    scaled = x / np.where(norms > 0, norms, 1.0)
    p = scaled.shape[1]
    if np.linalg.matrix_rank(scaled) == p:
        return
    j = next(j for j in range(1, p + 1) if np.linalg.matrix_rank(scaled[:, :j]) < j) - 1
    term = mf.names[j]
    named = [factor for factor in term.split(":") if factor in moderators]
    if named:
        raise InputError(
            "moderator '{0}' is a linear combination of the other moderators across schools: its effect cannot "
            "be separated from theirs; leave one of them out",
            named[-1],
        )
    raise InputError("term '{0}' is a linear combination of the terms before it: its effect cannot be estimated", term)


def _check_variation(cells: CellTable, scores: str) -> None:
    """Scores (gains, for two linked scores) that vary among the students of some school and cohort:
    without, the residual variance is zero and the model cannot be fitted."""
    f = as_cells(cells.frame)
    if cells.kind == "long_linked":
        both = (f["pre_n"] == 1) & (f["post_n"] == 1)
        ss0, ss1, s01 = floats(f, "ss0")[both], floats(f, "ss1")[both], floats(f, "s01")[both]
        s0, s1, r = floats(f, "s0")[both], floats(f, "s1")[both], floats(f, "r")[both]
        within = float((ss0 + ss1 - 2 * s01 - (s1 - s0) ** 2 / r).sum())
        size = float((ss0 + ss1).sum() / max(float(r.sum()), 1.0))
    else:
        total, sumsq, n = floats(f, "sum"), floats(f, "sumsq"), floats(f, "n")
        within = float((sumsq - total**2 / n).sum())
        size = float(sumsq.sum() / n.sum())
    if within > 1e-10 * max(size, 1e-300) * max(float(len(f)), 1.0):
        return
    raise InputError(
        "the scores ({0}) do not vary among the students of any school and cohort: there is no residual "
        "variation to estimate",
        scores,
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
