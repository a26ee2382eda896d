"""``soma()``: the second-order meta-analysis workflow on top of :func:`edueffects.meta`.

All models are fitted on Fisher z with effect sizes nested in meta-analyses (three-level, REML or ML),
and pooled estimates are back-transformed to r.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import numpy as np
import pandas as pd

from edueffects.core.distributions import t_sf
from edueffects.core.errors import CollinearModerators, InputError, Message, Phrase, SingularRobustTest
from edueffects.core.inference import critical_value
from edueffects.core.results import WaldTest
from edueffects.io import holds_dates
from edueffects.meta import MetaResult, meta
from edueffects.meta.result import RobustResult
from edueffects.soma.overlap import overlap
from edueffects.soma.quality import appraise
from edueffects.soma.result import ClusterEstimate, ModeratorTest, SomaResult
from edueffects.soma.schema import MEASURES, Measure, SomaColumns, incomplete_rows, prepare_effects
from edueffects.soma.schmidt_oh import SecondOrder, schmidt_oh

FitMethod = Literal["REML", "ML"]
MissingPolicy = Literal["error", "drop"]
DEFAULT_MODERATORS = ("school_level", "valence", "year", "informant")


def _names(value: object, what: str) -> list[str] | None:
    """A list of names from the API or a study file (not a bare string, only strings)."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise InputError("{0} must be a list of names (got {1})", what, repr(value))
    return list(value)


def _check_options(
    measure: object,
    method: object,
    columns: object,
    var_r: object,
    study_column: object,
    missing: object,
    sensitivity: object = True,
) -> None:
    if measure not in MEASURES:
        raise InputError("measure '{0}' is not one of r, z, d", measure)
    if method not in ("REML", "ML"):
        raise InputError("method '{0}' is not REML or ML", method)
    if columns is not None and not isinstance(columns, SomaColumns):
        raise InputError("columns must be a SomaColumns (got {0})", type(columns).__name__)
    if var_r is not None and not isinstance(var_r, str):
        raise InputError("var_r must be a column name or None (got {0})", repr(var_r))
    if not isinstance(study_column, str):
        raise InputError("study_column must be a column name (got {0})", repr(study_column))
    if missing not in ("error", "drop"):
        raise InputError("missing must be 'error' or 'drop' (got {0})", repr(missing))
    if not isinstance(sensitivity, bool):
        raise InputError("sensitivity must be true or false (got {0})", repr(sensitivity))


def _check_tables(
    frame: pd.DataFrame,
    cols: SomaColumns,
    studies: pd.DataFrame | None,
    quality: pd.DataFrame | None,
    study_column: str,
) -> None:
    """The studies and AMSTAR tables name exactly the meta-analyses of the effect-size table."""
    known = set(frame[cols.meta_analysis])
    if quality is not None:
        rated = set(quality[cols.meta_analysis])
        unknown = rated - known
        if unknown:
            raise InputError(
                "AMSTAR table: meta-analysis {0} is not in the effect-size table", repr(sorted(map(str, unknown))[0])
            )
        unrated = known - rated
        if unrated:
            raise InputError(
                "AMSTAR table: meta-analysis {0} of the effect-size table is not rated "
                "(rate every meta-analysis, or leave the AMSTAR table out)",
                repr(sorted(map(str, unrated))[0]),
            )
    if studies is not None:
        for col in (cols.meta_analysis, study_column):
            if col not in studies.columns:
                raise InputError("studies table: column '{0}' not found", col)
        listed = set(studies[cols.meta_analysis].dropna())
        unknown = listed - known
        if unknown:
            raise InputError(
                "studies table: meta-analysis {0} is not in the effect-size table", repr(sorted(map(str, unknown))[0])
            )
        absent = known - listed
        if absent:
            raise InputError(
                "studies table: meta-analysis {0} of the effect-size table has no primary studies listed "
                "(list them, or leave the studies table out)",
                repr(sorted(map(str, absent))[0]),
            )


def _fit(frame: pd.DataFrame, cols: SomaColumns, method: FitMethod, **kwargs: object) -> MetaResult:
    return meta(frame, yi="z", vi="vz", cluster=cols.meta_analysis, within="es_id", method=method, **kwargs)  # type: ignore[arg-type]


def _cluster_estimate(label: str, frame: pd.DataFrame, cols: SomaColumns, method: FitMethod) -> ClusterEstimate:
    """Three-level model when the cluster has effects from two or more meta-analyses, else simpler."""
    n_ma = int(frame[cols.meta_analysis].nunique())
    k = len(frame)
    if n_ma >= 2 and k >= 3:
        res = _fit(frame, cols, method, variance_ci=False)
        kind = "three-level"
    elif k >= 2:
        res = meta(frame, yi="z", vi="vz", method=method, variance_ci=False)
        kind = "random-effects (one meta-analysis)" if n_ma == 1 else "random-effects"
    else:
        z, se = float(frame.z.iloc[0]), float(frame.sez.iloc[0])
        half = float(critical_value(np.inf, 95.0)) * se
        return ClusterEstimate(label, k, n_ma, "single effect", z, se, z - half, z + half, None, None, None)
    assert res.prediction is not None
    p = res.prediction
    return ClusterEstimate(
        cluster=label,
        k=k,
        n_meta_analyses=n_ma,
        model=kind,
        z=p.pred,
        se=p.se,
        ci_lb=p.ci_lb,
        ci_ub=p.ci_ub,
        pi_lb=p.pi_lb,
        pi_ub=p.pi_ub,
        i2=res.i2_total,
    )


def _robust_wald(robust: RobustResult, tested: list[str]) -> WaldTest | None:
    """The CR2 HTZ test of the tested coefficients, or None when too few meta-analyses make their robust
    covariance singular (any other error is raised)."""
    try:
        return robust.wald(tested, test="HTZ")
    except SingularRobustTest:
        return None


def _moderator_test(
    name: str,
    frame: pd.DataFrame,
    cols: SomaColumns,
    mods: list[str],
    method: FitMethod,
    notes: list[Message] | None = None,
    label: str | Phrase | None = None,
) -> ModeratorTest:
    """One moderator model; when its cluster-robust test cannot be computed, a note naming it (``label``,
    the name unless given) goes to ``notes``."""
    categorical = [m for m in mods if m in frame.columns and not pd.api.types.is_numeric_dtype(frame[m])]
    res = _fit(frame, cols, method, mods=mods, categorical=categorical, missing="drop", variance_ci=False)
    robust = res.robust(cols.meta_analysis)
    tested = [res.terms.coef_names[i] for i in res.terms.moderator_columns()]
    robust_test = _robust_wald(robust, tested)
    if robust_test is None and notes is not None:
        notes.append(
            Message(
                "{0}: no cluster-robust test with {1} meta-analyses for {2} hypotheses; the model-based test is "
                "reported",
                name if label is None else label,
                robust.n_clusters,
                len(tested),
            )
        )
    return ModeratorTest(
        name=name,
        moderators=tuple(mods),
        k=res.k,
        n_dropped=res.n_dropped,
        QM=float(res.QM) if res.QM is not None else float("nan"),
        QM_df=res.QMdf[0] if res.QMdf else 0,
        QMp=float(res.QMp) if res.QMp is not None else float("nan"),
        coefficients=res.tidy(),
        robust=robust.tidy(),
        sigma2=tuple(float(s) for s in res.variance),
        robust_test=robust_test,
    )


def soma(
    data: pd.DataFrame,
    measure: Measure = "r",
    columns: SomaColumns | None = None,
    moderators: Sequence[str] | None = None,
    studies: pd.DataFrame | None = None,
    amstar: pd.DataFrame | None = None,
    study_column: str = "study",
    outcome_clusters: Sequence[str] | None = None,
    var_r: str | None = "var_r",
    method: FitMethod = "REML",
    synthetic: bool = False,
    missing: MissingPolicy = "error",
    sensitivity: bool = True,
) -> SomaResult:
    """Run every analysis of a second-order meta-analysis on one table of meta-analytic effects.

    ``data`` has one row per meta-analytic effect size (see :mod:`edueffects.soma.schema`);
    ``studies`` lists the primary studies of each meta-analysis (overlap); ``amstar`` holds the
    16 AMSTAR 2 items per meta-analysis (quality). ``var_r`` names the observed variance of r within
    each meta-analysis, needed for Schmidt & Oh's analysis (skipped when absent).
    ``moderators=None`` tests those of school_level, valence, year and informant that the table has;
    named moderators must be columns. ``missing="drop"`` drops rows without a meta-analysis, effect,
    outcome cluster or any uncertainty (counted per column in ``missing``) instead of refusing them.
    ``sensitivity``: the sensitivity analyses (:mod:`edueffects.soma.sensitivity`), ``False`` skips them.
    """
    _check_options(measure, method, columns, var_r, study_column, missing, sensitivity)
    named = _names(moderators, "moderators")
    outcome_clusters = _names(outcome_clusters, "outcome clusters")
    cols = columns or SomaColumns()
    if not isinstance(data, pd.DataFrame):
        raise InputError("data must be a pandas DataFrame (got {0})", type(data).__name__)
    rows = np.arange(1, len(data) + 1)
    missing_counts: dict[str, int] = {}
    rows_dropped = 0
    if missing == "drop":
        incomplete, missing_counts = incomplete_rows(data, cols)
        rows_dropped = int(incomplete.sum())
        data, rows = data.loc[~incomplete], rows[~incomplete]
        if data.empty:
            raise InputError("every row of the effect-size table misses a value: nothing is left to analyse")
    frame = prepare_effects(data, cols, measure, outcome_clusters, rows=rows)
    n_meta = int(frame[cols.meta_analysis].nunique())
    if n_meta < 2:
        raise InputError(
            "the effect-size table holds effects of {0} meta-analysis: a second-order meta-analysis (and its "
            "cluster-robust inference) needs at least two",
            n_meta,
        )
    if named is not None:
        named = [m for m in named if not (m == "quality" and amstar is not None)]  # added with the AMSTAR table
        for mod in named:
            if mod not in frame.columns or mod in ("z", "vz", "sez", "r", "variance_rule", "recoded", "es_id"):
                columns_list = ", ".join(str(c) for c in data.columns)
                raise InputError("moderator '{0}' is not a column of the effect-size table (available: {1})", mod,
                                 columns_list)  # fmt: skip
    chosen = named if named is not None else [m for m in DEFAULT_MODERATORS if m in frame.columns]
    for mod in chosen:
        if holds_dates(frame[mod]):
            raise InputError(
                "moderator '{0}' holds dates (an Excel date format?): convert it to a number such as the year", mod
            )
    quality = appraise(amstar, cols.meta_analysis) if amstar is not None else None
    _check_tables(frame, cols, studies, quality, study_column)
    synthetic = synthetic or bool("synthetic" in frame.columns and frame["synthetic"].astype(bool).all())
    notes: list[Message] = []
    rules = frame.variance_rule.value_counts()
    listed = tuple(Message("{0} ({1} rows)", Phrase(str(rule)), int(count)) for rule, count in rules.items())
    notes.append(Message("sampling variances of z from {0}", listed))
    if frame.recoded.any():
        notes.append(Message("{0} effect(s) of negative relationships sign-recoded", int(frame.recoded.sum())))
    overall = _fit(frame, cols, method)
    robust = overall.robust(cols.meta_analysis)
    clusters = tuple(_cluster_estimate(str(c), g, cols, method) for c, g in frame.groupby(cols.cluster))
    cluster_test = None
    if frame[cols.cluster].nunique() > 1:
        cluster_test = _moderator_test(
            "outcome cluster", frame, cols, [cols.cluster], method, notes, Phrase("outcome cluster")
        )
    if quality is not None:
        frame = frame.merge(
            quality[[cols.meta_analysis, "criteria_met"]].rename(columns={"criteria_met": "quality"}),
            on=cols.meta_analysis,
            how="left",
        )
    available = list(dict.fromkeys(chosen))
    if quality is not None:
        available.append("quality")
    tests = []
    for mod in available:
        if frame[mod].dropna().nunique() < 2:
            notes.append(Message("moderator '{0}' does not vary: skipped", mod))
            continue
        tests.append(_moderator_test(mod, frame, cols, [mod], method, notes))
    joint = None
    if len(tests) > 1:
        try:
            joint = _moderator_test("joint", frame, cols, [t.name for t in tests], method, notes, Phrase("joint"))
        except CollinearModerators:  # few meta-analyses: moderators at their level are easily collinear
            notes.append(
                Message("joint moderator model skipped: its moderators are collinear in {0} meta-analyses", n_meta)
            )
    egger = _moderator_test("small-study effects (SE of z)", frame.assign(sei=frame.sez), cols, ["sei"], method)
    egger_row = egger.robust[egger.robust.term == "sei"].iloc[0]
    second_order: dict[str, SecondOrder] = {}
    if var_r and var_r in frame.columns and cols.k in frame.columns:
        usable = frame.dropna(subset=[var_r, cols.k])
        corrected = "rho" in usable.columns and bool(usable["rho"].notna().all())
        for label, group in [("all effects", usable), *usable.groupby(cols.cluster)]:
            if len(group) >= 2:
                second_order[str(label)] = schmidt_oh(group[cols.k], group["r"], group[var_r])
                if corrected:
                    rho = np.where(group.recoded, -group["rho"], group["rho"])
                    second_order[f"{label} (artifact distribution)"] = schmidt_oh(
                        group[cols.k], group["r"], group[var_r], rho, kind="ad"
                    )
        notes.append(Message("Schmidt-Oh analyses treat each effect as an independent first-order meta-analysis"))
    elif var_r:
        notes.append(
            Message("Schmidt-Oh analysis skipped: no '{0}' column (observed variance of r per meta-analysis)", var_r)
        )
    overlap_result = overlap(studies, cols.meta_analysis, study_column) if studies is not None else None
    year_quality = None
    if quality is not None and cols.year in frame.columns:
        per_ma = frame.groupby(cols.meta_analysis).agg(year=(cols.year, "first"), quality=("quality", "first")).dropna()
        if len(per_ma) >= 3 and per_ma.year.nunique() > 1 and per_ma.quality.nunique() > 1:
            r_yq = float(np.corrcoef(per_ma.year, per_ma.quality)[0, 1])
            t = r_yq * np.sqrt((len(per_ma) - 2) / max(1e-300, 1 - r_yq**2))
            year_quality = (r_yq, float(2 * t_sf(abs(t), len(per_ma) - 2)), len(per_ma))
    notes += [Message("overall model: {0}", w) for w in overall.warnings]
    for test in (*tests, *([joint] if joint else [])):
        if test.n_dropped:
            name = Phrase(test.name) if test is joint else test.name
            notes.append(Message("moderator model '{0}': {1} row(s) with missing values dropped", name, test.n_dropped))
    if overlap_result is not None:
        notes += [Message("overlap of primary studies: {0}", n) for n in overlap_result.notes]
    profiles = {name: overall.profile(i, points=21) for i, name in enumerate(overall.variance_names)}
    result = SomaResult(
        profiles=profiles,
        effects=frame,
        columns=cols,
        overall=overall,
        overall_robust=robust,
        clusters=clusters,
        cluster_test=cluster_test,
        moderator_tests=tuple(tests),
        joint=joint,
        egger=egger,
        egger_slope=(float(egger_row.estimate), float(egger_row.se), float(egger_row.df), float(egger_row.pval)),
        second_order=second_order,
        overlap=overlap_result,
        quality=quality,
        year_quality=year_quality,
        notes=tuple(notes),
        synthetic=synthetic,
        missing=missing_counts,
        rows_dropped=rows_dropped,
    )
    if not sensitivity:
        return result
    from edueffects.soma.sensitivity import soma_sensitivity

    return replace(result, sensitivity=soma_sensitivity(result))
