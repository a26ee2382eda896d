"""Sensitivity analyses of a second-order meta-analysis (PRISMA 2020 item 13f, MARS): how much the
pooled estimate depends on single meta-analyses, on their quality, on overlapping primary studies,
on the working correlation of the sampling errors and on small-study effects.

Every model is the overall three-level model of :func:`edueffects.soma` (Fisher z, effects within
meta-analyses, same estimation method), refitted; inference is CR2 by meta-analysis (clubSandwich's
``coef_test(..., vcov = "CR2")``) unless stated.

- Leave one meta-analysis out: metafor's ``leave1out(res, cluster = meta_analysis)`` (estimate, SE,
  model-based CI) with the CR2 p of each deleted fit (with two meta-analyses each deleted fit holds a
  single one, which CR2 cannot cluster: these fits keep their model-based p, and a note says so);
  Cook's distance by meta-analysis
  (``cooks.distance(res, cluster = meta_analysis)``, Viechtbauer & Cheung 2010), flagged as influential
  when it exceeds the median of chi-square with p degrees of freedom (``qchisq(.5, p)``, metafor's
  ``influence`` rule; p = 1 coefficient: 0.455).
- Without the meta-analyses rated "critically low" by AMSTAR 2 (when a quality table was given).
- Without one meta-analysis of each dependent pair (sharing at least half of the primary studies of
  the smaller one; when a studies table was given). Of a pair the one kept is the one with more primary
  studies; on a tie the one meeting more AMSTAR 2 criteria (when rated), then the more recent one (the
  year column), then the first by name. Pairs are resolved in order of decreasing overlap, a pair one of
  whose members is already dropped needing nothing more. The table of pairs shows the outcome: the
  member kept (None when both are left out through other pairs) and the member(s) left out.
- The correlated-and-hierarchical-effects (CHE) working model at the positive rho of
  :data:`edueffects.options.DEFAULT_RHOS` (.2, .4, .6, .8; Pustejovsky & Tipton 2022): sampling errors of
  effects of one meta-analysis correlated with rho. Rho = 0 is the main model itself, so it is neither
  refitted, listed nor counted among the sensitivity estimates.
- Small-study effects: the multilevel Egger test (SE of z as moderator, CR2) of the main result and
  PET-PEESE as three-level meta-regressions (``pet_peese(res, model = "rma")``, Stanley &
  Doucouliagos 2014; model-based tests).

Verdict (one sentence). The main conclusion is the sign of the pooled estimate and whether its CR2 p
is below ``alpha``. A sensitivity estimate *keeps the conclusion* when its p (CR2; model-based for
PET-PEESE and for leave-one-out fits of a single meta-analysis) falls on the same side of ``alpha``
and, when significant, it has the same sign. It *stays close* when its r lies within ``band`` of the
pooled r. The verdict sentence and the report print the ``alpha`` and ``band`` used. The pooled
estimate is:

- ``robust``: every sensitivity estimate keeps the conclusion and stays close;
- ``size-sensitive``: every one keeps the conclusion, some move r by more than ``band``;
- ``not robust``: some sensitivity estimate leads to another conclusion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from edueffects.core.distributions import chi2_ppf
from edueffects.core.errors import InputError, Message, Quantity
from edueffects.options import DEFAULT_RHOS

if TYPE_CHECKING:
    from edueffects.meta.bias import PetPeese
    from edueffects.meta.result import MetaResult, RobustResult
    from edueffects.soma.result import SomaResult

Verdict = Literal["robust", "size-sensitive", "not robust"]
AmstarStatus = Literal["no AMSTAR table", "none critically low", "fitted", "too few left"]
OverlapStatus = Literal["no studies table", "no dependent pairs", "fitted", "too few left"]
DEFAULT_BAND = 0.05
DEFAULT_ALPHA = 0.05


class Bounded(Quantity):
    """A statistic bounded by 1 (r, a change in r) inside a :class:`Message`: APA style without the
    leading zero in English (.05), the language's bounded format when translated (0,05). The rule is the
    report's (:meth:`edueffects.report.i18n.Language.bounded`): always ``digits`` decimals, and a value
    that rounds to zero carries no sign (.00, never -.00)."""

    __slots__ = ()

    def __str__(self) -> str:
        from edueffects.report.i18n import Language

        return Language.of("en").bounded(self.value, self.digits)

    def localized(self, translate: object) -> str:
        bounded = getattr(translate, "bounded", None)
        return str(bounded(self.value, self.digits)) if callable(bounded) else str(self)


def decimals(value: float, least: int = 2, most: int = 6) -> int:
    """The decimals that show ``value`` exactly (at least ``least``): .05 -> 2, .005 -> 3."""
    for digits in range(least, most + 1):
        if abs(round(value, digits) - value) < 1e-12:
            return digits
    return most


def che_rhos() -> tuple[float, ...]:
    """The working correlations of the CHE sensitivity models: those of ``DEFAULT_RHOS`` above 0 (rho = 0
    is the main model)."""
    return tuple(float(rho) for rho in DEFAULT_RHOS if rho > 0)


def _r(z: float | None) -> float | None:
    return None if z is None or not np.isfinite(z) else float(np.tanh(z))


def _fmt_r(value: float | None) -> str:
    from edueffects.soma.result import fmt_r

    return fmt_r(value)


@dataclass(frozen=True)
class SensitivityEstimate:
    """One refitted pooled estimate (z scale; r by ``tanh``): ``p`` model-based, ``robust_p`` CR2 by
    meta-analysis (None where not computed); ``dropped`` the meta-analyses left out."""

    analysis: str  # leave-one-out, amstar, overlap, che, pet-peese, full
    label: Message
    k: int
    n_meta_analyses: int
    z: float
    se: float
    ci_lb: float
    ci_ub: float
    p: float
    robust_se: float | None = None
    robust_df: float | None = None
    robust_p: float | None = None
    dropped: tuple[str, ...] = ()
    rho: float | None = None  # the working correlation of a CHE model

    @property
    def r(self) -> float:
        return float(np.tanh(self.z))

    @property
    def decisive_p(self) -> float:
        """The p that decides significance: CR2 where computed, else model-based."""
        return self.p if self.robust_p is None else self.robust_p

    def row(self) -> dict[str, object]:
        return {
            "analysis": self.analysis,
            "label": str(self.label),
            "k": self.k,
            "meta_analyses": self.n_meta_analyses,
            "r": self.r,
            "ci_lb": _r(self.ci_lb),
            "ci_ub": _r(self.ci_ub),
            "z": self.z,
            "se_z": self.se,
            "p": self.p,
            "robust_se_z": self.robust_se,
            "robust_df": self.robust_df,
            "robust_p": self.robust_p,
            "dropped": ", ".join(self.dropped),
        }


@dataclass(frozen=True, eq=False, repr=False)
class SomaSensitivity:
    """Every sensitivity analysis of a second-order meta-analysis and the verdict on robustness."""

    full: SensitivityEstimate
    leave_one_out: tuple[SensitivityEstimate, ...]
    cook: pd.DataFrame  # meta-analysis, cook_d, influential
    cook_cutoff: float
    amstar: SensitivityEstimate | None
    amstar_status: AmstarStatus
    overlap: SensitivityEstimate | None
    overlap_status: OverlapStatus
    pairs: pd.DataFrame  # dependent pairs: meta_analysis_a, meta_analysis_b, shared, share_percent, kept, dropped
    che: tuple[SensitivityEstimate, ...]
    egger: tuple[float, float, float, float]  # slope, CR2 SE, df, p
    pet_peese: SensitivityEstimate
    pet_peese_fit: PetPeese = field(repr=False)
    band: float = DEFAULT_BAND
    alpha: float = DEFAULT_ALPHA
    notes: tuple[Message, ...] = ()

    # ---- derived ---------------------------------------------------------------------------------

    @property
    def influential(self) -> tuple[str, ...]:
        """Meta-analyses whose Cook's distance exceeds the cut-off."""
        return tuple(str(m) for m in self.cook.loc[self.cook.influential, "meta_analysis"])

    @property
    def largest_change(self) -> SensitivityEstimate:
        """The leave-one-out fit whose r differs most from the pooled r."""
        return max(self.leave_one_out, key=lambda e: abs(e.r - self.full.r))

    def estimates(self) -> tuple[SensitivityEstimate, ...]:
        """Every sensitivity estimate the verdict looks at."""
        subsets = tuple(e for e in (self.amstar, self.overlap) if e is not None)
        return (*self.leave_one_out, *subsets, *self.che, self.pet_peese)

    def keeps_conclusion(self, est: SensitivityEstimate) -> bool:
        main_sig = self.full.decisive_p < self.alpha
        sig = est.decisive_p < self.alpha
        return sig == main_sig and (not sig or np.sign(est.z) == np.sign(self.full.z))

    def stays_close(self, est: SensitivityEstimate) -> bool:
        return abs(est.r - self.full.r) <= self.band + 1e-12

    @property
    def changed(self) -> tuple[SensitivityEstimate, ...]:
        return tuple(e for e in self.estimates() if not self.keeps_conclusion(e))

    @property
    def shifted(self) -> tuple[SensitivityEstimate, ...]:
        return tuple(e for e in self.estimates() if self.keeps_conclusion(e) and not self.stays_close(e))

    @property
    def verdict(self) -> Verdict:
        if self.changed:
            return "not robust"
        return "size-sensitive" if self.shifted else "robust"

    @property
    def alpha_text(self) -> Bounded:
        """``alpha`` as a report number (.05, .01, .005)."""
        return Bounded(self.alpha, decimals(self.alpha))

    @property
    def band_text(self) -> Bounded:
        """``band`` as a report number (.05, .025)."""
        return Bounded(self.band, decimals(self.band))

    @property
    def loo_model_based(self) -> bool:
        """Whether the leave-one-out fits carry model-based p values (two meta-analyses: each deleted fit
        holds one, which cluster-robust inference cannot cluster)."""
        return any(e.robust_p is None for e in self.leave_one_out)

    @property
    def verdict_message(self) -> Message:
        """The verdict as one sentence (a translatable message)."""
        n = len(self.estimates())
        alpha, band = self.alpha_text, self.band_text
        if self.verdict == "robust":
            return Message(
                "The pooled estimate is robust: all {0} sensitivity estimates lead to the same conclusion (same sign "
                "and significance decision at p < {1}) and stay within ±{2} of r = {3}.",
                n,
                alpha,
                band,
                Bounded(self.full.r, 2),
            )
        if self.verdict == "size-sensitive":
            return Message(
                "The conclusion is robust (all {0} sensitivity estimates keep the sign and significance decision at "
                "p < {1}), but {2} move r by more than ±{3}.",
                n,
                alpha,
                tuple(e.label for e in self.shifted),
                band,
            )
        return Message(
            "The pooled estimate is not robust: {0} of {1} sensitivity estimates lead to another conclusion (sign "
            "or significance decision at p < {2} changed): {3}.",
            len(self.changed),
            n,
            alpha,
            tuple(e.label for e in self.changed),
        )

    # ---- output ----------------------------------------------------------------------------------

    def tidy(self) -> pd.DataFrame:
        """One row per estimate: the full model first, then each sensitivity estimate, with the change in r,
        whether it keeps the conclusion and whether it stays within the band."""
        rows = []
        for est in (self.full, *self.estimates()):
            row = est.row()
            row["change_r"] = est.r - self.full.r
            row["keeps_conclusion"] = self.keeps_conclusion(est)
            row["within_band"] = self.stays_close(est)
            rows.append(row)
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, object]:
        def records(frame: pd.DataFrame) -> list[dict[str, object]]:
            clean = frame.astype(object).where(frame.notna(), None)
            return [{str(k): v for k, v in rec.items()} for rec in clean.to_dict(orient="records")]

        change = self.largest_change
        return {
            "verdict": self.verdict,
            "verdict_sentence": str(self.verdict_message),
            "n_estimates": len(self.estimates()),
            "rules": {"alpha": self.alpha, "band_r": self.band},
            "full": self.full.row(),
            "leave_one_out": {
                "estimates": [e.row() for e in self.leave_one_out],
                "r_min": min(e.r for e in self.leave_one_out),
                "r_max": max(e.r for e in self.leave_one_out),
                "cook": records(self.cook),
                "cook_cutoff": self.cook_cutoff,
                "influential": list(self.influential),
                "largest_change": {"meta_analysis": change.dropped[0], "change_r": change.r - self.full.r},
            },
            "amstar": {"status": self.amstar_status, "estimate": self.amstar.row() if self.amstar else None},
            "overlap": {
                "status": self.overlap_status,
                "rule": "keep the meta-analysis with more primary studies; ties: more AMSTAR 2 criteria met, "
                "then more recent, then first by name",
                "pairs": records(self.pairs),
                "estimate": self.overlap.row() if self.overlap else None,
            },
            "che": {
                "rhos": [e.rho for e in self.che],
                "estimates": [e.row() for e in self.che],
                "rho_0": "the main model (full)",
            },
            "small_study": {
                "egger": dict(zip(("slope", "robust_se", "robust_df", "robust_p"), self.egger, strict=True)),
                "pet_peese": {
                    "model": "three-level meta-regression (rma.mv), model-based tests",
                    **self.pet_peese_fit.to_dict(),
                },
            },
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        def p_text(est: SensitivityEstimate) -> str:
            return f"{'p' if est.robust_p is None else 'CR2 p'} = {est.decisive_p:.3g}"

        f = self.full
        lo = [e.r for e in self.leave_one_out]
        change = self.largest_change
        lines = [
            "Sensitivity analyses (three-level models on Fisher z, CR2 by meta-analysis):",
            f"  all meta-analyses: r = {_fmt_r(f.r)} [{_fmt_r(_r(f.ci_lb))}, {_fmt_r(_r(f.ci_ub))}], "
            f"CR2 p = {f.decisive_p:.3g} (k = {f.k}, {f.n_meta_analyses} meta-analyses)",
            f"  leaving one meta-analysis out: r from {_fmt_r(min(lo))} to {_fmt_r(max(lo))}; largest change "
            f"without {change.dropped[0]} (r = {_fmt_r(change.r)}, {p_text(change)})",
            f"  Cook's distance by meta-analysis: cut-off {self.cook_cutoff:.3f} (qchisq(.5, 1)); influential: "
            + (", ".join(self.influential) or "none"),
        ]
        for est, status in ((self.amstar, self.amstar_status), (self.overlap, self.overlap_status)):
            name = "without critically low AMSTAR 2" if est is self.amstar else "one of each dependent pair"
            if est is not None:
                lines.append(
                    f"  {name}: r = {_fmt_r(est.r)} [{_fmt_r(_r(est.ci_lb))}, {_fmt_r(_r(est.ci_ub))}], "
                    f"CR2 p = {est.decisive_p:.3g} (k = {est.k}, {est.n_meta_analyses} meta-analyses; dropped "
                    f"{', '.join(est.dropped)})"
                )
            else:
                lines.append(f"  {name}: {status}")
        lines.append(
            "  CHE working model (rho 0: the main model): "
            + "; ".join(f"rho {e.rho:g}: r = {_fmt_r(e.r)}, {p_text(e)}" for e in self.che)
        )
        slope, se, df, p = self.egger
        pp = self.pet_peese
        lines += [
            f"  Egger test (SE of z, CR2): slope = {slope:+.3f} (SE {se:.3f}, df {df:.1f}), p = {p:.3g}",
            f"  PET-PEESE (three-level meta-regression): {self.pet_peese_fit.selected} r = {_fmt_r(pp.r)} "
            f"[{_fmt_r(_r(pp.ci_lb))}, {_fmt_r(_r(pp.ci_ub))}], p = {pp.p:.3g}",
            f"  verdict ({self.verdict}): {self.verdict_message}",
        ]
        lines += [f"  Note: {n}" for n in self.notes]
        return "\n".join(lines)


# ---- computation ---------------------------------------------------------------------------------


def _fit(frame: pd.DataFrame, result: SomaResult, sigma2: Sequence[float | None] | None = None) -> MetaResult:
    from edueffects.meta import meta

    return meta(
        frame,
        yi="z",
        vi="vz",
        cluster=result.columns.meta_analysis,
        within="es_id",
        method=result.overall.method,  # type: ignore[arg-type]
        variance_ci=False,
        sigma2=sigma2,
    )


def _estimate(
    analysis: str,
    label: Message,
    res: MetaResult,
    cluster: str,
    dropped: Sequence[str] = (),
    robust: RobustResult | None = None,
) -> SensitivityEstimate:
    """The pooled estimate of a three-level fit with its CR2 inference by meta-analysis (``robust``: that
    inference when already computed)."""
    c = res.coefficients
    rc = (robust if robust is not None else res.robust(cluster)).coefficients
    return SensitivityEstimate(
        analysis=analysis,
        label=label,
        k=res.k,
        n_meta_analyses=int(res.n_groups[0]),
        z=float(c.estimate[0]),
        se=float(c.se[0]),
        ci_lb=float(c.ci_lb[0]),
        ci_ub=float(c.ci_ub[0]),
        p=float(c.pval[0]),
        robust_se=float(rc.se[0]),
        robust_df=float(rc.df[0]),
        robust_p=float(rc.pval[0]),
        dropped=tuple(dropped),
    )


def _leave_one_out(result: SomaResult) -> tuple[tuple[SensitivityEstimate, ...], pd.DataFrame, float]:
    """metafor ``leave1out`` and ``cooks.distance`` by meta-analysis; the CR2 p of each deleted fit from the
    model with the deleted fit's variance components (same coefficients, same working weights). With two
    meta-analyses a deleted fit holds one, which CR2 cannot cluster: its p stays model-based."""
    from edueffects.meta import cooks_distance, leave1out

    overall, ma = result.overall, result.columns.meta_analysis
    table = leave1out(overall, cluster=ma).tidy()
    components = table[[n.replace(" ", "_") for n in overall.variance_names]].to_numpy(dtype=float)
    effects = result.effects
    labels = effects[ma]
    clustered = int(overall.n_groups[0]) - 1 >= 2
    estimates = []
    for i, left_out in enumerate(table[ma]):
        robust: dict[str, float | None] = {"robust_se": None, "robust_df": None, "robust_p": None}
        if clustered:
            refit = _fit(effects[labels != left_out], result, sigma2=[float(s) for s in components[i]])
            rc = refit.robust(ma).coefficients
            robust = {"robust_se": float(rc.se[0]), "robust_df": float(rc.df[0]), "robust_p": float(rc.pval[0])}
        estimates.append(
            SensitivityEstimate(
                analysis="leave-one-out",
                label=Message("without meta-analysis {0}", str(left_out)),
                k=int(table.k.iloc[i]),
                n_meta_analyses=int(overall.n_groups[0]) - 1,
                z=float(table.estimate.iloc[i]),
                se=float(table.se.iloc[i]),
                ci_lb=float(table.ci_lb.iloc[i]),
                ci_ub=float(table.ci_ub.iloc[i]),
                p=float(table.pval.iloc[i]),
                dropped=(str(left_out),),
                **robust,
            )
        )
    cook = cooks_distance(overall, cluster=ma).tidy().rename(columns={ma: "meta_analysis"})
    cutoff = float(chi2_ppf(0.5, float(len(overall.coefficients.names))))
    cook["meta_analysis"] = cook["meta_analysis"].astype(str)
    cook["influential"] = cook["cook_d"] > cutoff
    return tuple(estimates), cook, cutoff


def _dependent_pairs(result: SomaResult) -> tuple[pd.DataFrame, list[str]]:
    """The dependent pairs with the member kept (None when both are left out) and the member(s) left out,
    and every meta-analysis left out (see the module's rule)."""
    columns = ["meta_analysis_a", "meta_analysis_b", "k_a", "k_b", "shared", "share_percent", "kept", "dropped"]
    assert result.overlap is not None
    pairs = result.overlap.pairs
    pairs = pairs[pairs.dependent].copy()
    if pairs.empty:
        return pd.DataFrame(columns=columns), []
    pairs["share_percent"] = 100.0 * pairs.shared / np.minimum(pairs.k_a, pairs.k_b)
    pairs = pairs.sort_values(["share_percent", "shared"], ascending=False, kind="stable")
    effects, cols = result.effects, result.columns
    per_ma = effects.groupby(cols.meta_analysis, sort=False)
    quality = per_ma["quality"].first() if "quality" in effects.columns else None
    year = per_ma[cols.year].first() if cols.year in effects.columns else None

    def key(name: object, k: int) -> tuple[float, float, float]:
        q = float(quality.get(name, np.nan)) if quality is not None else np.nan
        y = pd.to_numeric(pd.Series([year.get(name, np.nan)]), errors="coerce").iloc[0] if year is not None else np.nan
        return (float(k), -np.inf if np.isnan(q) else q, -np.inf if np.isnan(y) else float(y))

    dropped: set[object] = set()
    sizes = zip(
        pairs.meta_analysis_a, pairs.meta_analysis_b, pairs.k_a.to_numpy(int), pairs.k_b.to_numpy(int), strict=True
    )
    for a, b, size_a, size_b in sizes:
        if a in dropped or b in dropped:
            continue
        ka, kb = key(a, int(size_a)), key(b, int(size_b))
        keep_a = ka > kb or (ka == kb and str(a) <= str(b))
        dropped.add(b if keep_a else a)
    # the outcome for each pair, after every pair is resolved: a member kept here may be left out by a later
    # pair, and both members of a pair may be left out through other pairs (then none is kept)
    kept_col: list[str | None] = []
    dropped_col: list[str] = []
    for a, b in zip(pairs.meta_analysis_a, pairs.meta_analysis_b, strict=True):
        left = [m for m in (a, b) if m in dropped]
        stays = [m for m in (a, b) if m not in dropped]
        kept_col.append(str(stays[0]) if stays else None)
        dropped_col.append(", ".join(str(m) for m in left))
    pairs["kept"] = pd.Series(kept_col, index=pairs.index, dtype=object)
    pairs["dropped"] = dropped_col

    pairs["meta_analysis_a"] = pairs.meta_analysis_a.astype(str)
    pairs["meta_analysis_b"] = pairs.meta_analysis_b.astype(str)
    return pairs[columns].reset_index(drop=True), sorted(str(m) for m in dropped)


def _subset(
    result: SomaResult, analysis: str, label: Message, drop: Sequence[str], notes: list[Message], too_few: Message
) -> tuple[SensitivityEstimate | None, Literal["fitted", "too few left"]]:
    """The model without the meta-analyses ``drop``, and whether it was fitted; when fewer than two
    remain, None and the note ``too_few``."""
    ma = result.columns.meta_analysis
    effects = result.effects
    keep = ~effects[ma].astype(str).isin(set(drop))
    if effects.loc[keep, ma].nunique() < 2:
        notes.append(too_few)
        return None, "too few left"
    return _estimate(analysis, label, _fit(effects[keep], result), ma, sorted(set(drop))), "fitted"


def _pet_peese(result: SomaResult) -> tuple[SensitivityEstimate, PetPeese]:
    from edueffects.meta import pet_peese

    pp = pet_peese(result.overall, model="rma")
    chosen = pp.peese if pp.selected == "PEESE" else pp.pet
    assert chosen.fit is not None and chosen.limit_pval is not None
    est = SensitivityEstimate(
        analysis="pet-peese",
        label=Message("PET-PEESE ({0} estimate)", pp.selected),
        k=chosen.k,
        n_meta_analyses=int(result.overall.n_groups[0]),
        z=pp.estimate,
        se=pp.se,
        ci_lb=pp.ci_lb,
        ci_ub=pp.ci_ub,
        p=chosen.limit_pval,
    )
    return est, pp


def _che(result: SomaResult) -> tuple[SensitivityEstimate, ...]:
    """The CHE working model at rho = .2, .4, .6, .8 (:func:`che_rhos`; ``rho_sensitivity``: metafor
    ``rma.mv(z, vcalc(vz, meta_analysis, obs = es_id, rho), random = ~ 1 | meta_analysis/es_id)``, CR2 by
    meta-analysis); rho = 0 is the main model."""
    from edueffects.meta import rho_sensitivity

    ma = result.columns.meta_analysis
    che = rho_sensitivity(
        result.effects,
        "z",
        "vz",
        ma,
        "es_id",
        rhos=che_rhos(),
        robust=True,
        method=result.overall.method,
        variance_ci=False,
    )
    table = che.tidy()
    rows = table[table.term == "intrcpt"].reset_index(drop=True)
    return tuple(
        SensitivityEstimate(
            analysis="che",
            label=Message("CHE working model, rho = {0}", Bounded(rho, 1)),
            k=fit.k,
            n_meta_analyses=int(fit.n_groups[0]),
            z=float(rows.estimate[i]),
            se=float(rows.se[i]),
            ci_lb=float(rows.ci_lb[i]),
            ci_ub=float(rows.ci_ub[i]),
            p=float(rows.pval[i]),
            robust_se=float(rows.robust_se[i]),
            robust_df=float(rows.robust_df[i]),
            robust_p=float(rows.robust_pval[i]),
            rho=float(rho),
        )
        for i, (rho, fit) in enumerate(zip(che.rhos, che.results, strict=True))
    )


def soma_sensitivity(result: SomaResult, band: float = DEFAULT_BAND, alpha: float = DEFAULT_ALPHA) -> SomaSensitivity:
    """Every sensitivity analysis of ``result`` (see the module) and the verdict: ``band`` is the largest
    change in r that counts as close to the pooled r, ``alpha`` the significance level of the conclusion."""
    from edueffects.soma.result import SomaResult

    if not isinstance(result, SomaResult):
        raise InputError("soma_sensitivity: give the result of soma() (got {0})", type(result).__name__)
    for name, value, upper in (("band", band, 2.0), ("alpha", alpha, 1.0)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < upper:
            raise InputError("sensitivity {0} must be a number between 0 and {1} (got {2})", name, upper, repr(value))
    ma = result.columns.meta_analysis
    notes: list[Message] = []
    full = _estimate(
        "full", Message("all meta-analyses (main model)"), result.overall, ma, robust=result.overall_robust
    )
    leave_one_out, cook, cutoff = _leave_one_out(result)
    if any(e.robust_p is None for e in leave_one_out):
        notes.append(
            Message(
                "sensitivity: with two meta-analyses, leaving one out leaves a single one, which cluster-robust "
                "(CR2) inference cannot cluster: the leave-one-out models have model-based p values"
            )
        )

    amstar: SensitivityEstimate | None = None
    amstar_status: AmstarStatus = "no AMSTAR table"
    if result.quality is not None:
        q = result.quality
        low = [str(m) for m in q.loc[q.confidence == "Critically low", ma]]
        if not low:
            amstar_status = "none critically low"
            notes.append(Message("sensitivity: no meta-analysis is rated critically low by AMSTAR 2"))
        else:
            label = Message("without the {0} meta-analyses rated critically low (AMSTAR 2)", len(low))
            too_few = Message("sensitivity: fewer than two meta-analyses are not rated critically low: not refitted")
            amstar, amstar_status = _subset(result, "amstar", label, low, notes, too_few)

    overlap: SensitivityEstimate | None = None
    overlap_status: OverlapStatus = "no studies table"
    pairs = pd.DataFrame(
        columns=["meta_analysis_a", "meta_analysis_b", "k_a", "k_b", "shared", "share_percent", "kept", "dropped"]
    )
    if result.overlap is not None:
        pairs, drop = _dependent_pairs(result)
        if pairs.empty:
            overlap_status = "no dependent pairs"
            notes.append(Message("sensitivity: no pair of meta-analyses shares half or more of its primary studies"))
        else:
            label = Message("without {0} overlapping meta-analyses (one of each dependent pair)", len(drop))
            too_few = Message("sensitivity: fewer than two meta-analyses remain without the overlapping ones")
            overlap, overlap_status = _subset(result, "overlap", label, drop, notes, too_few)

    pp_estimate, pp = _pet_peese(result)
    return SomaSensitivity(
        full=full,
        leave_one_out=leave_one_out,
        cook=cook,
        cook_cutoff=cutoff,
        amstar=amstar,
        amstar_status=amstar_status,
        overlap=overlap,
        overlap_status=overlap_status,
        pairs=pairs,
        che=_che(result),
        egger=result.egger_slope,
        pet_peese=pp_estimate,
        pet_peese_fit=pp,
        band=float(band),
        alpha=float(alpha),
        notes=tuple(notes),
    )


__all__ = ["SensitivityEstimate", "SomaSensitivity", "che_rhos", "soma_sensitivity"]
