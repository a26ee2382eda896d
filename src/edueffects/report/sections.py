"""Report sections built from results (never fitting): summary sentences, tables, figures, methods."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure as MplFigure

from edueffects.core.errors import translated
from edueffects.core.results import WaldTest
from edueffects.meta.result import MetaResult, RobustResult
from edueffects.recovery.result import RecoveryResult
from edueffects.report import plots
from edueffects.report.document import Figure, Section, Table
from edueffects.report.i18n import Language
from edueffects.soma.result import SomaResult

if TYPE_CHECKING:
    from edueffects.soma.sensitivity import SensitivityEstimate

SOMA_REFERENCES = (  # first two always; then Schmidt-Oh, overlap (CCA), AMSTAR 2, metafor
    "Cheung, M. W.-L. (2014). Modeling dependent effect sizes with three-level meta-analyses: "
    "A structural equation modeling approach. Psychological Methods, 19(2), 211-229.",
    "Pustejovsky, J. E., & Tipton, E. (2022). Meta-analysis with robust variance estimation: Expanding the range "
    "of working models. Prevention Science, 23, 425-438.",
    "Schmidt, F. L., & Oh, I.-S. (2013). Methods for second order meta-analysis and illustrative applications. "
    "Organizational Behavior and Human Decision Processes, 121(2), 204-218.",
    "Pieper, D., Antoine, S.-L., Mathes, T., Neugebauer, E. A. M., & Eikermann, M. (2014). Systematic review "
    "finds overlapping reviews were not mentioned in every other overview. "
    "Journal of Clinical Epidemiology, 67(4), 368-375.",
    "Shea, B. J., et al. (2017). AMSTAR 2: A critical appraisal tool for systematic reviews that include "
    "randomised or non-randomised studies of healthcare interventions, or both. BMJ, 358, j4008.",
    "Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. Journal of Statistical "
    "Software, 36(3), 1-48.",
)
SENSITIVITY_REFERENCES = (  # influence, Egger test, PET-PEESE, contour-enhanced funnel plot
    "Viechtbauer, W., & Cheung, M. W.-L. (2010). Outlier and influence diagnostics for meta-analysis. Research "
    "Synthesis Methods, 1(2), 112-125.",
    "Egger, M., Davey Smith, G., Schneider, M., & Minder, C. (1997). Bias in meta-analysis detected by a simple, "
    "graphical test. BMJ, 315(7109), 629-634.",
    "Stanley, T. D., & Doucouliagos, H. (2014). Meta-regression approximations to reduce publication selection "
    "bias. Research Synthesis Methods, 5(1), 60-78.",
    "Peters, J. L., Sutton, A. J., Jones, D. R., Abrams, K. R., & Rushton, L. (2008). Contour-enhanced "
    "meta-analysis funnel plots help distinguish publication bias from other causes of asymmetry. Journal of "
    "Clinical Epidemiology, 61(10), 991-996.",
)
RECOVERY_REFERENCES = (
    "Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects models using lme4. "
    "Journal of Statistical Software, 67(1), 1-48.",
    "Pustejovsky, J. E., & Tipton, E. (2018). Small-sample methods for cluster-robust variance estimation and "
    "hypothesis testing in fixed effects models. Journal of Business & Economic Statistics, 36(4), 672-683.",
    "Lakens, D. (2017). Equivalence tests: A practical primer for t tests, correlations, and meta-analyses. "
    "Social Psychological and Personality Science, 8(4), 355-362.",
    "Bloom, H. S. (1995). Minimum detectable effects: A simple way to report the statistical power of "
    "experimental designs. Evaluation Review, 19(5), 547-556.",
    "Schult, J., Fauth, B., Schneider, R., & Lindner, M. A. (2026). Learning and Instruction, 101, 102263.",
)


def _svg(lang: Language, fig: MplFigure) -> str:
    return plots.svg_text(plots.localize(fig, lang.code))


def _r(lang: Language, z: float | None) -> str:
    return lang.bounded(None if z is None else float(np.tanh(z)))


def _estimator(lang: Language, method: str) -> str:
    """The estimation method as the method paragraph names it."""
    _ = lang
    return _("maximum likelihood") if method == "ML" else _("restricted maximum likelihood")


def _moderator_name(res: SomaResult, test: object, lang: Language) -> str:
    """A moderator model as the table names it: the program's own models translated, data columns as they are."""
    _ = lang
    if test is res.cluster_test:
        return _("outcome cluster")
    if test is res.joint:
        return _("joint")
    name = str(getattr(test, "name", ""))
    if name == "quality" and res.quality is not None:
        return _("quality (AMSTAR 2 criteria met)")
    return name


def _second_order_set(name: str, lang: Language) -> str:
    """A set of the Schmidt-Oh analysis: all effects, or an outcome cluster (data label), bare-bones or
    with the artifact distribution."""
    _ = lang
    suffix = " (artifact distribution)"
    base = name.removesuffix(suffix)
    label = _("all effects") if base == "all effects" else base
    return _("{set} (artifact distribution)").format(set=label) if name.endswith(suffix) else label


def soma_section(res: SomaResult, lang: Language) -> tuple[str, Section]:
    """The one-sentence answer and the section of a second-order meta-analysis."""
    _ = lang
    o = res.overall
    r = res.overall_r()
    answer = _(
        "Across {k} effect sizes from {m} meta-analyses, the pooled correlation is r = {r} {ci} "
        "(95% prediction interval {pi})."
    ).format(
        k=o.k,
        m=o.n_groups[0],
        r=lang.bounded(r["r"]),
        ci=lang.interval(r["ci_lb"], r["ci_ub"]),
        pi=lang.interval(r["pi_lb"], r["pi_ub"]),
    )
    if res.cluster_test:
        t = res.cluster_test
        h = t.robust_test  # None when too few meta-analyses: then the model-based test alone
        if h is not None and t.robust_disagrees:  # it holds with few meta-analyses; say so when it disagrees
            stat = _("cluster-robust HTZ test, F({df1}, {df2}) = {f}, {p}").format(
                df1=lang.number(h.df1, 0),
                df2=lang.number(h.df2, 1),
                f=lang.number(h.statistic),
                p=lang.p_value(h.pval),
            )
            answer += " " + (
                _("The outcome clusters differ ({stat}; the model-based test disagrees).")
                if h.pval < 0.05
                else _("The outcome clusters do not differ significantly ({stat}; the model-based test disagrees).")
            ).format(stat=stat)
        elif t.QMp < 0.05:
            answer += " " + _("The outcome clusters differ (QM({df}) = {qm}, {p}).").format(
                df=t.QM_df, qm=lang.number(t.QM), p=lang.p_value(t.QMp)
            )
        else:
            answer += " " + _("The outcome clusters do not differ significantly ({p}).").format(p=lang.p_value(t.QMp))
    rob = res.overall_robust.coefficients
    overall = Table(
        _("Overall three-level model (Fisher z, back-transformed to r)"),
        [_("effect sizes"), _("meta-analyses"), "r", _("95% CI"), _("95% PI"), "I² (%)", _("CR2 p")],
        [
            [
                str(o.k),
                str(o.n_groups[0]),
                lang.bounded(r["r"]),
                lang.interval(r["ci_lb"], r["ci_ub"]),
                lang.interval(r["pi_lb"], r["pi_ub"]),
                lang.number(o.i2_total, 1),
                lang.p_value(float(rob.pval[0])),
            ]
        ],
        "overall",
    )
    clusters = Table(
        _("Pooled correlation per outcome cluster"),
        [_("outcome cluster"), "k", _("meta-analyses"), "r", _("95% CI"), _("95% PI"), _("model")],
        [
            [
                c.cluster,
                str(c.k),
                str(c.n_meta_analyses),
                _r(lang, c.z),
                lang.interval(_tanh(c.ci_lb), _tanh(c.ci_ub)),
                lang.interval(_tanh(c.pi_lb), _tanh(c.pi_ub)) if c.pi_lb is not None else "–",
                _(c.model),
            ]
            for c in res.clusters
        ],
        "clusters",
    )
    mods = [
        *([res.cluster_test] if res.cluster_test else []),
        *res.moderator_tests,
        *([res.joint] if res.joint else []),
    ]
    moderators = Table(
        _("Moderator tests (three-level models)"),
        [_("moderator"), "k", "QM", "df", "p", _("F (CR2, HTZ)"), "df", _("p (CR2)")],
        [
            [
                _moderator_name(res, t, lang),
                str(t.k),
                lang.number(t.QM),
                str(t.QM_df),
                lang.p_value(t.QMp),
                *(
                    [
                        lang.number(t.robust_test.statistic),
                        f"{lang.number(t.robust_test.df1, 0)}; {lang.number(t.robust_test.df2, 1)}",
                        lang.p_value(t.robust_test.pval),
                    ]
                    if t.robust_test is not None
                    else ["–", "–", "–"]  # too few meta-analyses: the notes say so
                ),
            ]
            for t in mods
        ],
        "moderators",
    )
    est, se, df, p = res.egger_slope
    sens = res.sensitivity
    blocks: list[Table | Figure] = [overall, clusters]
    blocks.append(
        Figure(
            _("Forest plot: effect sizes by outcome cluster with pooled estimates."),
            _svg(lang, plots.forest(res, lang)),
        )
    )
    blocks.append(
        Figure(
            _("Orchard plot: pooled estimates, confidence and prediction intervals."),
            _svg(lang, plots.orchard(res, lang)),
        )
    )
    blocks.append(moderators)
    blocks.append(
        Table(
            _("Small-study effects (standard error of z as moderator, CR2)"),
            [_("slope"), "SE", "df", "p"],
            [[lang.number(est, 3), lang.number(se, 3), lang.number(df, 1), lang.p_value(p)]],
            "egger",
        )
    )
    if sens is None:  # with the sensitivity analyses, the contour-enhanced funnel plot shows the effects
        blocks.append(Figure(_("Funnel plot of the effect sizes."), _svg(lang, plots.funnel(res, lang))))
    if res.second_order:
        blocks.append(
            Table(
                _("Schmidt-Oh second-order meta-analysis"),
                [
                    _("set"),
                    "L",
                    _("mean r"),
                    _("variance of means"),
                    _("% second-order sampling error"),
                    _("reliability"),
                ],
                [
                    [
                        _second_order_set(name, lang),
                        str(so.L),
                        lang.bounded(so.mean),
                        lang.number(so.var_means, 5),
                        lang.number(so.percent_var_e, 1),
                        lang.number(so.reliability),
                    ]
                    for name, so in res.second_order.items()
                ],
                "schmidt_oh",
            )
        )
    if res.overlap is not None:
        ov = res.overlap
        labels = ov.pairs.label.value_counts()
        blocks.append(
            Table(
                _("Overlap of primary studies (corrected covered area)"),
                [
                    _("primary studies"),
                    "CCA (%)",
                    _("rating"),
                    _("pairs: slight / moderate / high / very high"),
                    _("dependent pairs"),
                ],
                [
                    [
                        str(ov.citation_matrix.shape[0]),
                        lang.number(ov.cca, 1) if ov.cca is not None else "–",
                        _(ov.label) if ov.label else "–",
                        " / ".join(str(labels.get(k, 0)) for k in ("slight", "moderate", "high", "very high")),
                        str(int(ov.pairs.dependent.sum())),
                    ]
                ],
                "overlap",
            )
        )
    if res.quality is not None:
        q = res.quality
        blocks.append(
            Table(
                _("Methodological quality (AMSTAR 2)"),
                [_("meta-analysis"), _("criteria met"), _("critical flaws"), _("overall confidence")],
                [
                    [str(row.meta_analysis), str(row.criteria_met), str(row.critical_flaws), _(str(row.confidence))]
                    for row in q.itertuples()
                ],
                "amstar",
            )
        )
    blocks.append(Figure(_("Profile likelihood of the variance components."), _svg(lang, plots.profiles(res, lang))))
    method = [
        _(
            "Effect sizes were transformed to Fisher z and pooled in a three-level random-effects model with effect "
            "sizes nested in meta-analyses, estimated by {estimator}. Heterogeneity is reported as "
            "I² per level; prediction intervals describe the range of true effects. Estimates were back-transformed "
            "to r. Inference was checked with cluster-robust (CR2) standard errors and Satterthwaite degrees of "
            "freedom, clustering by meta-analysis. Moderators were tested one at a time and jointly, model-based "
            "(QM) and cluster-robust (CR2 Wald tests with the HTZ small-sample correction); small-study "
            "effects were tested with the standard error as a moderator."
        ).format(estimator=_estimator(lang, res.overall.method))
    ]
    if any(t.robust_test is None for t in mods):
        method[0] += " " + _(
            "Where the meta-analyses were too few for a cluster-robust test, only the model-based test is "
            "reported (see the notes)."
        )
    appraisal = [
        *([_("Schmidt and Oh's second-order meta-analysis")] if res.second_order else []),
        *([_("the corrected covered area of primary-study overlap")] if res.overlap is not None else []),
        *([_("AMSTAR 2 ratings")] if res.quality is not None else []),
    ]
    if appraisal:
        listed = (
            appraisal[0] if len(appraisal) == 1 else ", ".join(appraisal[:-1]) + " " + _("and") + " " + appraisal[-1]
        )
        method[0] += " " + _("{parts} complete the appraisal.").format(parts=listed[0].upper() + listed[1:])
    if sens is not None:
        method.append(_sensitivity_method(res, lang))
    references = (
        *SOMA_REFERENCES[:2],
        *(SOMA_REFERENCES[2:3] if res.second_order else ()),
        *(SOMA_REFERENCES[3:4] if res.overlap is not None else ()),
        *(SOMA_REFERENCES[4:5] if res.quality is not None else ()),
        SOMA_REFERENCES[5],
        *(SENSITIVITY_REFERENCES if sens is not None else ()),
    )
    notes = [_("Note: {note}").format(note=translated(n, _)) for n in (*res.notes, *(sens.notes if sens else ()))]
    section = Section(
        _("Second-order meta-analysis"),
        paragraphs=[answer],
        blocks=blocks,
        method=method + notes,
        references=references,
        subsections=[sensitivity_section(res, lang)] if sens is not None else [],
    )
    return answer, section


def _sensitivity_method(res: SomaResult, lang: Language) -> str:
    """The method paragraph of the sensitivity analyses: only the analyses that ran."""
    _ = lang
    sens = res.sensitivity
    assert sens is not None
    parts = [
        _(
            "Sensitivity analyses refitted the three-level model without each meta-analysis in turn; Cook's "
            "distances by meta-analysis flag influential ones (above the median of the chi-square distribution "
            "with one degree of freedom)."
        )
    ]
    if sens.loo_model_based:
        parts.append(
            _(
                "With two meta-analyses, leaving one out leaves a single one, which cluster-robust (CR2) inference "
                "cannot cluster: those models were tested model-based."
            )
        )
    if sens.amstar_status != "no AMSTAR table":
        parts.append(_("A further model left out the meta-analyses rated critically low by AMSTAR 2."))
    if sens.overlap_status != "no studies table":
        parts.append(
            _(
                "Another left out one meta-analysis of each pair sharing at least half of the primary studies of the "
                "smaller one, keeping the one with more primary studies (on a tie the one meeting more AMSTAR 2 "
                "criteria, then the more recent one, then the first by name)."
            )
        )
    if sens.che:
        parts.append(
            _(
                "The correlated-and-hierarchical-effects working model correlated the sampling errors of effects from "
                "the same meta-analysis with rho = {rhos} (rho = 0 is the main model)."
            ).format(
                rhos=(", " if lang.code == "en" else "; ").join(
                    lang.bounded(e.rho, 1) for e in sens.che if e.rho is not None
                )
            )
        )
    parts.append(
        _(
            "Small-study effects were adjusted for with PET-PEESE: three-level meta-regressions on the standard error "
            "(PET) and on the sampling variance (PEESE) of z, with model-based tests; the funnel plot shows "
            "significance contours."
        )
    )
    alpha, band = sens.alpha_text, sens.band_text
    rule = (
        _(
            "The pooled estimate counts as robust when every sensitivity estimate keeps its sign and its "
            "significance decision (p < {alpha}; CR2 except PET-PEESE and leaving one meta-analysis out) and stays "
            "within ±{band} of the pooled r."
        )
        if sens.loo_model_based
        else _(
            "The pooled estimate counts as robust when every sensitivity estimate keeps its sign and its "
            "significance decision (p < {alpha}; CR2 except PET-PEESE) and stays within ±{band} of the pooled r."
        )
    )
    parts.append(rule.format(alpha=alpha.localized(lang), band=band.localized(lang)))
    return " ".join(parts)


def _sensitivity_row(lang: Language, label: str, est: SensitivityEstimate, full_r: float) -> list[str]:
    return [
        label,
        str(est.k),
        str(est.n_meta_analyses),
        lang.bounded(est.r),
        lang.interval(_tanh(est.ci_lb), _tanh(est.ci_ub)),
        lang.p_value(est.decisive_p),
        lang.bounded(est.r - full_r) if est.analysis != "full" else "–",
    ]


def sensitivity_section(res: SomaResult, lang: Language) -> Section:
    """The sensitivity analyses: a table of every analysis (r with CI, k, meta-analyses, p, change in r),
    the verdict, the dependent pairs, the leave-one-out and the contour-enhanced funnel plot."""
    _ = lang
    sens = res.sensitivity
    assert sens is not None
    full_r = sens.full.r
    rows = [_sensitivity_row(lang, _("all meta-analyses (main model)"), sens.full, full_r)]
    loo = sens.leave_one_out

    def model_based(label: str, est: SensitivityEstimate) -> str:
        """A leave-one-out label with ", model-based p" when its p is not CR2 (two meta-analyses)."""
        return label if est.robust_p is not None else _("{label}, model-based p").format(label=label)

    lo, hi = min(e.r for e in loo), max(e.r for e in loo)
    ks = [e.k for e in loo]
    change = sens.largest_change
    rows.append(
        [
            (
                _("without one meta-analysis at a time ({n} models: range of r, largest model-based p)")
                if sens.loo_model_based
                else _("without one meta-analysis at a time ({n} models: range of r, largest p)")
            ).format(n=len(loo)),
            f"{min(ks)}–{max(ks)}",
            str(loo[0].n_meta_analyses),
            f"{lang.bounded(lo)} – {lang.bounded(hi)}",
            "–",
            lang.p_value(max(e.decisive_p for e in loo)),
            lang.bounded(change.r - full_r),
        ]
    )
    rows.append(
        _sensitivity_row(
            lang,
            model_based(_("{label} (largest change)").format(label=translated(change.label, _)), change),
            change,
            full_r,
        )
    )
    cook = sens.cook.set_index("meta_analysis").cook_d
    for est in loo:
        if est.dropped[0] in sens.influential and est is not change:
            rows.append(
                _sensitivity_row(
                    lang,
                    model_based(
                        _("{label} (Cook's distance {d})").format(
                            label=translated(est.label, _), d=lang.number(float(cook[est.dropped[0]]))
                        ),
                        est,
                    ),
                    est,
                    full_r,
                )
            )
    dashes = ["–"] * 6
    if sens.amstar is not None:
        rows.append(_sensitivity_row(lang, translated(sens.amstar.label, _), sens.amstar, full_r))
    elif sens.amstar_status == "none critically low":
        rows.append([_("without critically low meta-analyses (AMSTAR 2): none is rated critically low"), *dashes])
    elif sens.amstar_status == "too few left":
        rows.append([_("without critically low meta-analyses (AMSTAR 2): fewer than two remain"), *dashes])
    if sens.overlap is not None:
        rows.append(_sensitivity_row(lang, translated(sens.overlap.label, _), sens.overlap, full_r))
    elif sens.overlap_status == "no dependent pairs":
        rows.append([_("one of each dependent pair: no pair shares half of its primary studies"), *dashes])
    elif sens.overlap_status == "too few left":
        rows.append([_("one of each dependent pair: fewer than two meta-analyses remain"), *dashes])
    for est in sens.che:
        rows.append(_sensitivity_row(lang, translated(est.label, _), est, full_r))
    pp = sens.pet_peese
    rows.append(_sensitivity_row(lang, _("{label}, model-based p").format(label=translated(pp.label, _)), pp, full_r))
    slope, _se, _df, egger_p = sens.egger
    rows.append(
        [
            _("Egger test: slope of the standard error of z {slope} (CR2)").format(slope=lang.number(slope)),
            str(sens.full.k),
            str(sens.full.n_meta_analyses),
            "–",
            "–",
            lang.p_value(egger_p),
            "–",
        ]
    )
    header = [_("analysis"), "k", _("meta-analyses"), "r", _("95% CI"), _("p (CR2)"), _("change in r")]
    blocks: list[Table | Figure] = [
        Table(_("Sensitivity analyses of the pooled correlation"), header, rows, "sensitivity")
    ]
    if not sens.pairs.empty:
        blocks.append(
            Table(
                _("Dependent pairs of meta-analyses (at least half of the smaller one's primary studies shared)"),
                [
                    _("meta-analysis"),
                    _("meta-analysis"),
                    _("shared studies"),
                    _("% of the smaller"),
                    _("kept"),
                    _("left out"),
                ],
                [
                    [
                        str(a),
                        str(b),
                        str(n),
                        lang.number(float(share), 0),
                        kept if isinstance(kept, str) else "–",
                        str(left),
                    ]
                    for a, b, n, share, kept, left in zip(
                        *(sens.pairs[c] for c in ("meta_analysis_a", "meta_analysis_b", "shared")),
                        sens.pairs.share_percent.to_numpy(dtype=float),
                        sens.pairs.kept,
                        sens.pairs.dropped,
                        strict=True,
                    )
                ],
                "dependent_pairs",
            )
        )
    blocks.append(
        Figure(
            _(
                "Leave one meta-analysis out: the pooled correlation without each meta-analysis with its 95% CI; the "
                "vertical line is the estimate of all meta-analyses."
            ),
            _svg(lang, plots.leave_one_out(res, lang)),
        )
    )
    blocks.append(
        Figure(
            _(
                "Contour-enhanced funnel plot of the effect sizes: shaded where a two-sided test of zero is "
                "significant at .10, .05 and .01."
            ),
            _svg(lang, plots.soma_contour_funnel(res, lang)),
        )
    )
    influential = sens.influential
    paragraphs = [
        translated(sens.verdict_message, _),
        _(
            "Leaving out one meta-analysis at a time, r ranged from {lo} to {hi}; the largest change came without "
            "{name} ({change})."
        ).format(
            lo=lang.bounded(lo), hi=lang.bounded(hi), name=change.dropped[0], change=lang.bounded(change.r - full_r)
        )
        + " "
        + (
            _("By Cook's distance, {names} are influential.").format(names=", ".join(influential))
            if influential
            else _("By Cook's distance, no meta-analysis is influential.")
        ),
    ]
    return Section(_("Sensitivity analyses"), paragraphs=paragraphs, blocks=blocks)


def _tanh(z: float | None) -> float | None:
    return None if z is None else float(np.tanh(z))


def recovery_answer(res: RecoveryResult, lang: Language) -> str:
    """The headline: each DDD effect is significant, significant but smaller than the SESOI, equivalent
    to zero, or inconclusive; where the model-based and cluster-robust (CR2) tests disagree at .05 the
    robust test decides, and the sentence says so."""
    _ = lang
    c, rb = res.coefficients, res.robust
    index = {n: i for i, n in enumerate(c.names)}
    equivalent = {e.term for e in res.equivalence if e.equivalent}
    groups: dict[str, list[str]] = {"significant": [], "smaller": [], "equivalent": [], "inconclusive": []}
    robust_decided = []
    for term in res.ddd_terms:
        model_p, robust_p = float(c.pval[index[term]]), float(rb.pval[index[term]])
        if (model_p < 0.05) != (robust_p < 0.05):
            robust_decided.append(plots.term_label(term, lang))
        significant = robust_p < 0.05 if (model_p < 0.05) != (robust_p < 0.05) else model_p < 0.05
        kind = (
            ("smaller" if term in equivalent else "significant")
            if significant
            else ("equivalent" if term in equivalent else "inconclusive")
        )
        groups[kind].append(plots.term_label(term, lang))
    bound = lang.number(res.sesoi)
    sentences = []
    if groups["significant"]:
        sentences.append(
            _("School factors moderated the pandemic change in learning gains: {terms}.").format(
                terms=", ".join(groups["significant"])
            )
        )
    if groups["smaller"]:
        sentences.append(
            _(
                "Significant but smaller than the smallest effect of interest (±{bound}), so practically "
                "negligible: {terms}."
            ).format(bound=bound, terms=", ".join(groups["smaller"]))
        )
    if not groups["significant"] and not groups["smaller"]:
        sentences.append(_("No school factor significantly moderated the pandemic change in learning gains."))
    if groups["equivalent"]:
        sentences.append(
            _("Equivalence to zero (bounds ±{bound}) is shown for: {terms}.").format(
                bound=bound, terms=", ".join(groups["equivalent"])
            )
        )
    if groups["inconclusive"]:
        sentences.append(
            _("For {terms} the data cannot tell no effect from a meaningful one.").format(
                terms=", ".join(groups["inconclusive"])
            )
        )
    if robust_decided:
        sentences.append(
            _(
                "For {terms} the model-based and the cluster-robust (CR2) test disagree; the cluster-robust "
                "test is used."
            ).format(terms=", ".join(robust_decided))
        )
    return " ".join(sentences)


def released_note(note: str) -> bool:
    """Whether a note of a recovery fit says that it ran on released cell statistics (and what was withheld)."""
    return str(getattr(note, "template", "")).startswith("fitted on released cell statistics")


def recovery_section(res: RecoveryResult, lang: Language) -> tuple[str, Section]:
    """The one-sentence answer and the section of a DDD learning-recovery model."""
    _ = lang
    c, rb = res.coefficients, res.robust
    answer = recovery_answer(res, lang)
    coefs = Table(
        _("Fixed effects (model-based SE with Satterthwaite df; CR2 by school; DDD effects marked)"),
        [_("term"), _("estimate"), "SE", "df", "p", _("CR2 SE"), _("CR2 p")],
        [
            [
                plots.term_label(name, lang) + (" (" + _("DDD effect") + ")" if name in res.ddd_terms else ""),
                lang.number(c.estimate[i], 4),
                lang.number(c.se[i], 4),
                lang.number(c.df[i], 1),
                lang.p_value(float(c.pval[i])),
                lang.number(rb.se[i], 4),
                lang.p_value(float(rb.pval[i])),
            ]
            for i, name in enumerate(c.names)
        ],
        "coefficients",
    )
    variance = Table(
        _("Variance components"),
        [_("level"), _("variance")],
        [[_(name), lang.number(v, 5)] for name, v in res.variance_components().items()],
        "variance",
    )
    equivalence = Table(
        _("Equivalence tests (TOST) and minimum detectable effects (80% power)"),
        [_("DDD effect"), _("estimate"), _("90% CI"), _("TOST p"), _("equivalent"), _("MDE")],
        [
            [
                plots.term_label(e.term, lang),
                lang.number(e.estimate, 4),
                lang.interval(e.ci90_lb, e.ci90_ub, 4, bounded=False),
                lang.p_value(e.pval),
                _("yes") if e.equivalent else _("no"),
                lang.number(m.mdes, 3),
            ]
            for e, m in zip(res.equivalence, res.mdes, strict=True)
        ],
        "equivalence",
    )
    blocks: list[Table | Figure] = [coefs, variance, equivalence]
    blocks.append(
        Figure(
            _("DDD effects with 95% and 90% confidence intervals and the equivalence bounds."),
            _svg(lang, plots.ddd_effects(res, lang)),
        )
    )
    for mod in res.moderators:
        blocks.append(
            Figure(
                _("Mean gain by cohort and tercile of {moderator}.").format(moderator=mod),
                _svg(lang, plots.gain_by_tercile(res, mod, lang)),
            )
        )
    unit = _("per SD of the school factor") if res.standardized else _("per unit of the school factor")
    method = [
        _(
            "Learning gains from the first to the second assessment were analysed with a multilevel "
            "difference-in-difference-in-difference model: random intercepts for schools and for school-by-cohort "
            "cells, fixed effects for the pandemic cohorts, the school factors and their interactions, estimated by "
            "{estimator}. The interaction of pandemic cohort and school factor (the DDD effect) "
            "tests whether the pandemic change in gains depends on the school factor. Standard errors are "
            "model-based with Satterthwaite degrees of freedom and, as a check, cluster-robust (CR2) by school. Two "
            "one-sided tests against the smallest effect of interest (±{bound} score units {unit}) show whether a "
            "null result is evidence of no meaningful effect; the minimum detectable effect gives the design's "
            "sensitivity."
        ).format(bound=lang.number(res.sesoi), unit=unit, estimator=_estimator(lang, res.method))
    ]
    released = [n for n in res.notes if released_note(n)]
    notes = [
        _("Note: {note}").format(note=translated(n, _)) for n in (*res.notes, *res.warnings) if not released_note(n)
    ]
    source = [_("Released aggregates: {note}.").format(note=translated(n, _)) for n in released]
    if res.released_cells:
        answer += " " + _("The model was fitted on released cell statistics, not on student records.")
    section = Section(
        _("Learning recovery after the pandemic"),
        paragraphs=[
            answer,
            *source,
            _("{students} students in {schools} schools; pandemic cohorts: {cohorts}.").format(
                students=lang.number(res.n_students, 0),
                schools=lang.number(res.n_schools, 0),
                cohorts=", ".join(res.pandemic_cohorts),
            ),
        ],
        blocks=blocks,
        method=method + notes,
        references=RECOVERY_REFERENCES,
    )
    return answer, section


# ---- meta-analysis --------------------------------------------------------------------------------

META_REFERENCES = {
    "metafor": SOMA_REFERENCES[5],
    "DL": "DerSimonian, R., & Laird, N. (1986). Meta-analysis in clinical trials. Controlled Clinical Trials, "
    "7(3), 177-188.",
    "PM": "Paule, R. C., & Mandel, J. (1982). Consensus values and weighting factors. Journal of Research of the "
    "National Bureau of Standards, 87(5), 377-385.",
    "SJ": "Sidik, K., & Jonkman, J. N. (2005). Simple heterogeneity variance estimation for meta-analysis. "
    "Journal of the Royal Statistical Society: Series C, 54(2), 367-384.",
    "HS": "Hunter, J. E., & Schmidt, F. L. (2004). Methods of meta-analysis: Correcting error and bias in "
    "research findings (2nd ed.). Sage.",
    "HE": "Hedges, L. V., & Olkin, I. (1985). Statistical methods for meta-analysis. Academic Press.",
    "EB": "Morris, C. N. (1983). Parametric empirical Bayes inference: Theory and applications. Journal of the "
    "American Statistical Association, 78(381), 47-55.",
    "multilevel": "Konstantopoulos, S. (2011). Fixed effects and variance components estimation in three-level "
    "meta-analysis. Research Synthesis Methods, 2(1), 61-76.",
    "knha": "Knapp, G., & Hartung, J. (2003). Improved tests for a random effects meta-regression with a single "
    "covariate. Statistics in Medicine, 22(17), 2693-2710.",
    "I2": "Higgins, J. P. T., & Thompson, S. G. (2002). Quantifying heterogeneity in a meta-analysis. Statistics "
    "in Medicine, 21(11), 1539-1558.",
    "PI": "Riley, R. D., Higgins, J. P. T., & Deeks, J. J. (2011). Interpretation of random effects "
    "meta-analyses. BMJ, 342, d549.",
    "CR2": RECOVERY_REFERENCES[1],
    "HTZ": "Tipton, E., & Pustejovsky, J. E. (2015). Small-sample adjustments for tests of moderators and model "
    "fit using robust variance estimation in meta-regression. Journal of Educational and Behavioral "
    "Statistics, 40(6), 604-634.",
    "clubSandwich": "Pustejovsky, J. E. clubSandwich: Cluster-robust (sandwich) variance estimators with "
    "small-sample corrections [R package]. https://CRAN.R-project.org/package=clubSandwich",
}


@dataclass(frozen=True)
class MetaRun:
    """What the report shows of a meta-analysis: the fit, its model-based term tests and, when asked for,
    the cluster-robust (CR2) results (all computed by the engine before the report is built)."""

    result: MetaResult
    term_tests: tuple[WaldTest, ...] = ()
    robust: RobustResult | None = None
    robust_test: str = "HTZ"
    robust_moderators: WaldTest | None = None  # all moderator columns jointly
    robust_terms: tuple[WaldTest, ...] = ()
    labels: str | None = None


def meta_term(name: str, lang: Language) -> str:
    """A coefficient of a meta-regression as the report names it (``intrcpt`` -> intercept, ``a:b`` -> ``a × b``)."""
    return lang("intercept") if name == "intrcpt" else name.replace(":", " × ")


def _wald(lang: Language, test: WaldTest, chi2: str = "QM") -> str:
    if test.df2 is None:
        stat = f"{chi2}({lang.number(test.df1, 0)}) = {lang.number(test.statistic)}"
    else:
        sep = ", " if lang.code == "en" else "; "
        stat = f"F({lang.number(test.df1, 0)}{sep}{lang.number(test.df2, 1)}) = {lang.number(test.statistic)}"
    return f"{stat}, {lang.p_value(test.pval)}"


def _meta_estimator(lang: Language, method: str) -> str:
    _ = lang
    names = {
        "REML": _("restricted maximum likelihood"),
        "ML": _("maximum likelihood"),
        "DL": _("the DerSimonian-Laird estimator"),
        "PM": _("the Paule-Mandel estimator"),
        "SJ": _("the Sidik-Jonkman estimator"),
        "HS": _("the Hunter-Schmidt estimator"),
        "HE": _("the Hedges estimator"),
        "EB": _("the empirical Bayes estimator"),
    }
    return names.get(method, method)


def meta_answer(run: MetaRun, lang: Language) -> str:
    """The headline of a meta-analysis: the pooled effect (no moderators) or whether the moderators
    explain differences between effects; where the model-based and the cluster-robust test disagree at
    .05 the cluster-robust test decides, and the sentence says so."""
    _ = lang
    res, rob = run.result, run.robust
    c = res.coefficients
    sentences = []
    disagree = False
    if res.moderator_test is None:
        p = float(c.pval[0])
        if rob is not None:
            robust_p = float(rob.coefficients.pval[0])
            disagree = (p < 0.05) != (robust_p < 0.05)
            p = robust_p if disagree else p
        level = lang.number(res.level, 0)
        estimate = _("Across {k} effect sizes, the pooled effect is {est} {ci} ({p}).").format(
            k=res.k,
            est=lang.number(float(c.estimate[0])),
            ci=lang.interval(float(c.ci_lb[0]), float(c.ci_ub[0]), bounded=False),
            p=lang.p_value(p),
        )
        sentences.append(estimate)
        pr = res.prediction
        if res.model != "fixed" and pr is not None and pr.pi_lb is not None and pr.pi_ub is not None:
            sentences.append(
                _("The {level}% prediction interval of the true effects is {pi}.").format(
                    level=level, pi=lang.interval(pr.pi_lb, pr.pi_ub, bounded=False)
                )
            )
    else:
        test = res.moderator_test
        if rob is not None and run.robust_moderators is not None:
            disagree = (test.pval < 0.05) != (run.robust_moderators.pval < 0.05)
            test = run.robust_moderators if disagree else test
        terms = ", ".join(label for label, _cols in res.terms.terms if label != "intrcpt")
        sentences.append(
            (
                _("The moderators ({terms}) explain differences between the {k} effect sizes ({test}).")
                if test.pval < 0.05
                else _(
                    "The moderators ({terms}) do not significantly explain differences between the {k} effect "
                    "sizes ({test})."
                )
            ).format(terms=terms.replace(":", " × "), k=res.k, test=_wald(lang, test))
        )
    if disagree:
        sentences.append(
            _("The model-based and the cluster-robust (CR2) test disagree; the cluster-robust test is used.")
        )
    if res.model != "fixed":
        sentences.append(
            _("Heterogeneity: Q({df}) = {q}, {p}; I² = {i2}%.").format(
                df=res.QE_df, q=lang.number(res.QE), p=lang.p_value(res.QEp), i2=lang.number(res.i2_total, 1)
            )
        )
    return " ".join(sentences)


def meta_section(run: MetaRun, lang: Language) -> tuple[str, Section]:
    """The one-sentence answer and the section of a meta-analysis (metafor's rma / rma.mv)."""
    _ = lang
    res, rob = run.result, run.robust
    c = res.coefficients
    answer = meta_answer(run, lang)
    stat = "z" if res.test == "z" else "t"
    level = lang.number(res.level, 0) + "%"
    header = [_("term"), _("estimate"), "SE", stat, "p", _("{level} CI").format(level=level)]
    if res.test != "z":
        header.insert(4, "df")
    if rob is not None:
        header += [_("CR2 SE"), "df (CR2)", _("CR2 p")]
    rows = []
    for i, name in enumerate(c.names):
        row = [
            meta_term(name, lang),
            lang.number(float(c.estimate[i]), 4),
            lang.number(float(c.se[i]), 4),
            lang.number(float(c.stat[i])),
            lang.p_value(float(c.pval[i])),
            lang.interval(float(c.ci_lb[i]), float(c.ci_ub[i]), 4, bounded=False),
        ]
        if res.test != "z":
            row.insert(4, lang.number(float(c.df[i]), 0))
        if rob is not None:
            r = rob.coefficients
            row += [lang.number(float(r.se[i]), 4), lang.number(float(r.df[i]), 1), lang.p_value(float(r.pval[i]))]
        rows.append(row)
    blocks: list[Table | Figure] = [
        Table(_("Coefficients ({model})").format(model=_meta_model(res, lang)), header, rows, "meta_coefficients")
    ]
    intervals = {vc.component: vc for vc in res.variance_ci}
    het: list[list[str]] = []
    for i, (name, value) in enumerate(zip(res.variance_names, res.variance, strict=True)):
        vc = intervals.get(name)
        groups = str(res.n_groups[i]) if res.model == "multilevel" else "–"
        fixed = " (" + _("fixed") + ")" if res.variance_fixed[i] else ""
        ci = lang.interval(vc.ci_lb, vc.ci_ub, 4, bounded=False) if vc else "–"
        het.append([name + fixed, lang.number(float(value), 4), ci, groups])
    if res.model != "fixed":
        i2 = intervals.get("I2")
        het.append(
            ["I² (%)", lang.number(res.i2_total, 1), lang.interval(i2.ci_lb, i2.ci_ub, 1, False) if i2 else "–", "–"]
        )
        if len(res.i2_levels) > 1:
            for name, value in zip(res.variance_names, res.i2_levels, strict=True):
                het.append([f"I² {name} (%)", lang.number(value, 1), "–", "–"])
    if res.r2 is not None:
        het.append(["R² (%)", lang.number(res.r2, 1), "–", "–"])
    het.append([f"Q({res.QE_df})", lang.number(res.QE), lang.p_value(res.QEp), "–"])
    blocks.append(
        Table(
            _("Heterogeneity"),
            [_("statistic"), _("value"), _("{level} CI or p").format(level=level), _("groups")],
            het,
            "meta_heterogeneity",
        )
    )
    if run.term_tests:
        robust_by = {t.hypotheses: t for t in run.robust_terms}
        test_rows = []
        for label, test in zip(
            [lbl for lbl, _cols in res.terms.terms if lbl != "intrcpt"], run.term_tests, strict=True
        ):
            row = [label.replace(":", " × "), _wald(lang, test)]
            if rob is not None:
                rt = robust_by.get(test.hypotheses)
                row.append(_wald(lang, rt, "chi²") if rt is not None else "–")
            test_rows.append(row)
        header = [_("term"), _("model-based test")] + (
            [_("cluster-robust test (CR2, {test})").format(test=run.robust_test)] if rob is not None else []
        )
        blocks.append(Table(_("Tests of the moderator terms"), header, test_rows, "meta_terms"))
    for name, fig in plots.meta_plots(res, run.labels, lang):
        if name == "forest":
            caption = _("Forest plot: effect sizes with {level} confidence intervals and weights.").format(level=level)
            if res.moderator_test is None:
                caption += " " + _("The diamond is the pooled estimate; the line below it the prediction interval.")
        elif name == "caterpillar":
            caption = _(
                "Caterpillar plot: the {k} effect sizes sorted by size with {level} confidence intervals."
            ).format(k=res.k, level=level)
        else:
            moderator = name.removeprefix("bubble_")
            caption = _(
                "Bubble plot: effect sizes against {moderator}, sized by weight, with the model's predictions."
            ).format(moderator=moderator)
        blocks.append(Figure(caption, _svg(lang, fig)))
    method, references = _meta_method(run, lang)
    notes = [_("Note: {note}").format(note=translated(n, _)) for n in res.warnings]
    return answer, Section(
        _("Meta-analysis"), paragraphs=[answer], blocks=blocks, method=[method, *notes], references=references
    )


def _meta_model(res: MetaResult, lang: Language) -> str:
    _ = lang
    if res.model == "fixed":
        return _("equal-effects model")
    if res.model == "univariate":
        return _("random-effects model")
    return _("{levels}-level model").format(levels=len(res.variance) + 1)


def _meta_method(run: MetaRun, lang: Language) -> tuple[str, tuple[str, ...]]:
    """The method paragraph and the references of what ran."""
    _ = lang
    res, rob = run.result, run.robust
    refs = ["metafor"]
    estimator = _meta_estimator(lang, res.method)
    if res.model == "fixed":
        parts = [_("Effect sizes were pooled in an equal-effects model with inverse-variance weights.")]
    elif res.model == "univariate":
        parts = [
            _(
                "Effect sizes were pooled in a random-effects model; the between-study variance τ² was estimated "
                "by {estimator}."
            ).format(estimator=estimator)
        ]
        refs.append(res.method)
    else:
        levels = ", ".join(res.state.level_names)
        parts = [
            _(
                "Effect sizes were pooled in a multilevel random-effects model with random intercepts for {levels}, "
                "estimated by {estimator}."
            ).format(levels=levels, estimator=estimator)
        ]
        refs += [res.method, "multilevel"]
    if res.moderator_test is not None:
        parts.append(
            _("Moderators entered as a meta-regression ({formula}).").format(formula=res.terms.formula.replace("`", ""))
        )
    parts.append(
        {
            "z": _("Tests and confidence intervals use the normal distribution."),
            "t": _("Tests and confidence intervals use the t distribution."),
            "knha": _("Tests and confidence intervals use the Knapp-Hartung adjustment."),
        }[res.test]
    )
    if res.test == "knha":
        refs.append("knha")
    if res.model != "fixed":
        parts.append(_("Heterogeneity is reported as Q, the variance components and I²."))
        refs.append("I2")
        if res.moderator_test is None and res.prediction is not None:
            parts.append(_("The prediction interval describes the range of true effects."))
            refs.append("PI")
    if rob is not None:
        parts.append(
            _(
                "Inference was checked with cluster-robust (CR2) standard errors and Satterthwaite degrees of freedom, "
                "clustering by {cluster} ({n} clusters)."
            ).format(cluster=rob.cluster, n=rob.n_clusters)
        )
        refs.append("CR2")
        if res.moderator_test is not None:
            parts.append(
                _("Moderators were also tested with cluster-robust Wald tests ({test}).").format(test=run.robust_test)
            )
            if run.robust_test == "HTZ":
                refs.append("HTZ")
        refs.append("clubSandwich")
    references = tuple(META_REFERENCES[k] for k in dict.fromkeys(refs) if k in META_REFERENCES)
    return " ".join(parts), references
