"""The frozen result of :func:`edueffects.soma`: one table per analysis, results in r."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from edueffects.core.results import ResultDisplay, WaldTest
from edueffects.meta.result import MetaResult, RobustResult
from edueffects.soma.overlap import Overlap
from edueffects.soma.schema import SomaColumns
from edueffects.soma.schmidt_oh import SecondOrder

if TYPE_CHECKING:
    from edueffects.soma.sensitivity import SomaSensitivity

SYNTHETIC_NOTE = "SYNTHETIC DATA: simulated meta-analyses shaped like the TSR review; not real studies."


def _r(z: float | None) -> float | None:
    return None if z is None else float(np.tanh(z))


def fmt_r(value: float | None) -> str:
    """An r as researchers report it: .25, -.08."""
    if value is None or not np.isfinite(value):
        return "-"
    text = f"{value:.2f}"
    return text.replace("0.", ".", 1) if abs(value) < 1 else text


@dataclass(frozen=True)
class ClusterEstimate:
    """The pooled effect of one outcome cluster (z scale; r by ``tanh``)."""

    cluster: str
    k: int
    n_meta_analyses: int
    model: str
    z: float
    se: float
    ci_lb: float
    ci_ub: float
    pi_lb: float | None
    pi_ub: float | None
    i2: float | None

    def row(self) -> dict[str, object]:
        return {
            "cluster": self.cluster,
            "k": self.k,
            "meta_analyses": self.n_meta_analyses,
            "model": self.model,
            "r": _r(self.z),
            "ci_lb": _r(self.ci_lb),
            "ci_ub": _r(self.ci_ub),
            "pi_lb": _r(self.pi_lb),
            "pi_ub": _r(self.pi_ub),
            "z": self.z,
            "se_z": self.se,
            "I2": self.i2,
        }


def _htz(t: ModeratorTest) -> str:
    r = t.robust_test
    if r is None:
        return "no cluster-robust test (too few meta-analyses)"
    df2 = float("nan") if r.df2 is None else r.df2
    return f"CR2 HTZ F({r.df1:g}, {df2:.1f}) = {r.statistic:.2f}, p = {r.pval:.3g}"


@dataclass(frozen=True, eq=False)
class ModeratorTest:
    """One three-level moderator model (z scale) with its omnibus test and CR2 inference."""

    name: str
    moderators: tuple[str, ...]
    k: int
    n_dropped: int
    QM: float
    QM_df: int
    QMp: float
    coefficients: pd.DataFrame
    robust: pd.DataFrame
    sigma2: tuple[float, ...]
    robust_test: WaldTest | None  # None when too few meta-analyses make the CR2 covariance singular

    @property
    def robust_disagrees(self) -> bool:
        """Model-based and cluster-robust (HTZ) tests fall on different sides of .05 (never without a robust test)."""
        if self.robust_test is None:
            return False
        return (self.QMp < 0.05) != (self.robust_test.pval < 0.05)

    def row(self) -> dict[str, object]:
        r = self.robust_test
        return {
            "moderator": self.name,
            "k": self.k,
            "dropped": self.n_dropped,
            "QM": self.QM,
            "df": self.QM_df,
            "p": self.QMp,
            "F_HTZ": None if r is None else r.statistic,
            "df1_HTZ": None if r is None else r.df1,
            "df2_HTZ": None if r is None else r.df2,
            "p_HTZ": None if r is None else r.pval,
        }

    def to_dict(self) -> dict[str, object]:
        return {
            **self.row(),
            "coefficients": self.coefficients.to_dict(orient="records"),
            "robust": self.robust.to_dict(orient="records"),
            "sigma2": list(self.sigma2),
        }


@dataclass(frozen=True, eq=False, repr=False)
class SomaResult(ResultDisplay):
    """Every analysis of a second-order meta-analysis."""

    effects: pd.DataFrame
    columns: SomaColumns
    overall: MetaResult
    overall_robust: RobustResult
    clusters: tuple[ClusterEstimate, ...]
    cluster_test: ModeratorTest | None
    moderator_tests: tuple[ModeratorTest, ...]
    joint: ModeratorTest | None
    egger: ModeratorTest
    egger_slope: tuple[float, float, float, float]
    second_order: dict[str, SecondOrder]
    overlap: Overlap | None
    quality: pd.DataFrame | None
    year_quality: tuple[float, float, int] | None
    notes: tuple[str, ...]
    synthetic: bool = False
    profiles: dict[str, pd.DataFrame] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)  # missing values per column (rows dropped on request)
    rows_dropped: int = 0
    sensitivity: SomaSensitivity | None = None  # None when soma(..., sensitivity=False)

    ANALYSES = (
        "overall",
        "clusters",
        "moderators",
        "egger",
        "schmidt_oh",
        "overlap",
        "amstar",
        "sensitivity",
        "effects",
    )

    def overall_r(self) -> dict[str, float | None]:
        p = self.overall.back_transform("z_to_r")
        return {"r": p.pred, "ci_lb": p.ci_lb, "ci_ub": p.ci_ub, "pi_lb": p.pi_lb, "pi_ub": p.pi_ub}

    def tidy(self, analysis: str = "overall") -> pd.DataFrame:
        """One table per analysis: ``overall``, ``clusters``, ``moderators``, ``egger``, ``schmidt_oh``,
        ``overlap``, ``amstar``, ``sensitivity`` or ``effects``."""
        if analysis == "overall":
            r = self.overall_r()
            o = self.overall
            return pd.DataFrame(
                [
                    {
                        "k": o.k,
                        "meta_analyses": o.n_groups[0],
                        **r,
                        "z": o.coefficients.estimate[0],
                        "se_z": o.coefficients.se[0],
                        "p": o.coefficients.pval[0],
                        "robust_se_z": self.overall_robust.coefficients.se[0],
                        "robust_df": self.overall_robust.coefficients.df[0],
                        "robust_p": self.overall_robust.coefficients.pval[0],
                        "sigma2_between": o.variance[0],
                        "sigma2_within": o.variance[1],
                        "I2_total": o.i2_total,
                        "I2_between": o.i2_levels[0],
                        "I2_within": o.i2_levels[1],
                    }
                ]
            )
        if analysis == "clusters":
            return pd.DataFrame([c.row() for c in self.clusters])
        if analysis == "moderators":
            tests = ([self.cluster_test] if self.cluster_test else []) + list(self.moderator_tests)
            tests += [self.joint] if self.joint else []
            return pd.DataFrame([t.row() for t in tests])
        if analysis == "egger":
            est, se, df, p = self.egger_slope
            return pd.DataFrame([{"term": "sei", "estimate": est, "robust_se": se, "robust_df": df, "robust_p": p}])
        if analysis == "schmidt_oh":
            return pd.DataFrame([{"set": name, **so.to_dict()} for name, so in self.second_order.items()])
        if analysis == "overlap":
            return self.overlap.pairs.copy() if self.overlap else pd.DataFrame()
        if analysis == "amstar":
            return self.quality.copy() if self.quality is not None else pd.DataFrame()
        if analysis == "sensitivity":
            return self.sensitivity.tidy() if self.sensitivity is not None else pd.DataFrame()
        if analysis == "effects":
            return self.effects.copy()
        raise KeyError(f"unknown analysis {analysis!r}; choose from {', '.join(self.ANALYSES)}")

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "synthetic": self.synthetic,
            "overall": {**self.tidy("overall").iloc[0].to_dict(), "model": self.overall.to_dict()},
            "clusters": [c.row() for c in self.clusters],
            "cluster_test": self.cluster_test.to_dict() if self.cluster_test else None,
            "moderators": [t.to_dict() for t in self.moderator_tests],
            "joint": self.joint.to_dict() if self.joint else None,
            "egger": self.tidy("egger").iloc[0].to_dict(),
            "schmidt_oh": {name: so.to_dict() for name, so in self.second_order.items()},
            "overlap": self.overlap.to_dict() if self.overlap else None,
            "amstar": self.quality.to_dict(orient="records") if self.quality is not None else None,
            "quality_year_correlation": (
                {"r": self.year_quality[0], "p": self.year_quality[1], "n": self.year_quality[2]}
                if self.year_quality
                else None
            ),
            "sensitivity": self.sensitivity.to_dict() if self.sensitivity is not None else None,
            "notes": list(self.notes),
            "rows_dropped": self.rows_dropped,
            "missing": dict(self.missing),
        }
        return out

    def summary(self) -> str:
        o = self.overall
        r = self.overall_r()
        lines = []
        if self.synthetic:
            lines += [SYNTHETIC_NOTE, ""]
        lines += [
            f"Second-order meta-analysis (three-level {o.method} on Fisher z; effects within meta-analyses)",
            f"  {o.k} effect sizes from {o.n_groups[0]} meta-analyses",
            f"  pooled r = {fmt_r(r['r'])} [{fmt_r(r['ci_lb'])}, {fmt_r(r['ci_ub'])}], "
            f"prediction interval [{fmt_r(r['pi_lb'])}, {fmt_r(r['pi_ub'])}], p = {o.coefficients.pval[0]:.2g}",
            f"  CR2 by meta-analysis: SE(z) = {self.overall_robust.coefficients.se[0]:.4f}, "
            f"df = {self.overall_robust.coefficients.df[0]:.1f}, p = {self.overall_robust.coefficients.pval[0]:.2g}",
            f"  I2: total {o.i2_total:.1f}% "
            f"(between meta-analyses {o.i2_levels[0]:.1f}%, within {o.i2_levels[1]:.1f}%)",
            "",
            "Outcome clusters (pooled r [95% CI], prediction interval):",
        ]
        for c in self.clusters:
            pi = f", PI [{fmt_r(_r(c.pi_lb))}, {fmt_r(_r(c.pi_ub))}]" if c.pi_lb is not None else ""
            lines.append(
                f"  {c.cluster:<40} k = {c.k:>3}, MAs = {c.n_meta_analyses:>2}: r = {fmt_r(_r(c.z))} "
                f"[{fmt_r(_r(c.ci_lb))}, {fmt_r(_r(c.ci_ub))}]{pi} ({c.model})"
            )
        if self.cluster_test:
            t = self.cluster_test
            lines.append(f"  clusters differ? QM({t.QM_df}) = {t.QM:.2f}, p = {t.QMp:.3g}; {_htz(t)}")
        lines.append("")
        lines.append("Moderators (three-level models, one at a time, then jointly):")
        for t in (*self.moderator_tests, *([self.joint] if self.joint else [])):
            dropped = f", {t.n_dropped} rows with missing values dropped" if t.n_dropped else ""
            lines.append(f"  {t.name:<24} QM({t.QM_df}) = {t.QM:7.2f}, p = {t.QMp:.3g}; {_htz(t)} (k = {t.k}{dropped})")
            for _, row in t.coefficients.iloc[1:].iterrows():
                lines.append(f"      {row.term:<30} b(z) = {row.estimate:+.4f} (SE {row.se:.4f}, p = {row.pval:.3g})")
        est, se, df, p = self.egger_slope
        lines += [
            "",
            f"Small-study effects (SE of z as moderator, CR2): slope = {est:+.3f} "
            f"(SE {se:.3f}, df {df:.1f}), p = {p:.3g}",
        ]
        if self.second_order:
            lines += ["", "Schmidt-Oh second-order meta-analysis (bare-bones, r):"]
            for name, so in self.second_order.items():
                lines.append(
                    f"  {name:<40} L = {so.L:>3}: mean r = {fmt_r(so.mean)}, var(means) = {so.var_means:.5f}, "
                    f"second-order sampling error {so.percent_var_e:.1f}%, reliability {so.reliability:.2f}"
                )
        if self.overlap:
            ov = self.overlap
            lines += ["", "Overlap of primary studies:"]
            if ov.cca is not None:
                lines.append(
                    f"  CCA = {ov.cca:.1f}% ({ov.label}); {ov.citation_matrix.shape[0]} primary studies in "
                    f"{ov.citation_matrix.shape[1]} meta-analyses"
                )
            dependent = ov.pairs[ov.pairs.dependent]
            lines.append(f"  {len(dependent)} pair(s) share at least half of the smaller meta-analysis's studies")
            labels = ov.pairs.label.value_counts()
            lines.append(
                "  pairs by overlap: "
                + ", ".join(f"{lab} {labels.get(lab, 0)}" for lab in ("slight", "moderate", "high", "very high"))
            )
        if self.quality is not None:
            counts = self.quality.confidence.value_counts()
            lines += [
                "",
                "Methodological quality (AMSTAR 2):",
                "  confidence: "
                + ", ".join(f"{lev} {counts.get(lev, 0)}" for lev in ("High", "Moderate", "Low", "Critically low")),
                f"  criteria met: mean {self.quality.criteria_met.mean():.1f} of 16",
            ]
            if self.year_quality:
                ry, py, n = self.year_quality
                lines.append(f"  correlation of quality with publication year: r = {fmt_r(ry)} (p = {py:.3g}, n = {n})")
        if self.sensitivity is not None:
            lines += ["", self.sensitivity.summary()]
        for note in self.notes:
            lines.append(f"Note: {note}")
        return "\n".join(lines)
