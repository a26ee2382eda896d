"""The frozen result of :func:`edueffects.recovery`."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from edueffects.core.equivalence import DetectableEffect, EquivalenceTest
from edueffects.core.inference import CoefficientAccessors, CoefficientTable
from edueffects.core.jet import Array
from edueffects.core.nested import Convergence

MODEL_LABELS = {
    "gain": "gain model (grade-to-grade gain, linked students)",
    "long_linked": "long model with student intercepts (linked students)",
    "long_unlinked": "long model with school-cohort-occasion intercepts (unlinked cross-sections)",
}


def _f(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}f}"


@dataclass(frozen=True, eq=False)
class RecoveryResult(CoefficientAccessors):
    """A fitted DDD recovery model with model-based, cluster-robust and equivalence inference."""

    model: str
    method: str
    n_students: int
    n_rows: int
    n_schools: int
    n_cells: int
    pandemic_cohorts: tuple[str, ...]
    moderators: tuple[str, ...]
    dose: tuple[str, ...]
    coefficients: CoefficientTable
    ddd_terms: tuple[str, ...]
    variance_names: tuple[str, ...]
    variance: Array
    loglik: float
    aic: float
    bic: float
    robust: CoefficientTable
    robust_clusters: int
    equivalence: tuple[EquivalenceTest, ...]
    mdes: tuple[DetectableEffect, ...]
    sesoi: float
    standardized: bool
    convergence: Convergence
    notes: tuple[str, ...]
    warnings: tuple[str, ...]
    cells: pd.DataFrame = field(repr=False)
    plausible_values: int = 1

    def tidy(self) -> pd.DataFrame:
        """Coefficients (model-based, Satterthwaite df) with CR2 columns beside them."""
        frame = self.coefficients.to_frame()
        frame["robust_se"] = self.robust.se
        frame["robust_df"] = self.robust.df
        frame["robust_pval"] = self.robust.pval
        frame["ddd"] = frame.term.isin(self.ddd_terms)
        return frame

    def variance_components(self) -> dict[str, float]:
        return {name: float(v) for name, v in zip(self.variance_names, self.variance, strict=True)}

    def to_dict(self) -> dict[str, object]:
        def records(table: CoefficientTable) -> list[dict[str, object]]:
            return table.to_records()

        return {
            "model": self.model,
            "method": self.method,
            "n_students": self.n_students,
            "n_rows": self.n_rows,
            "n_schools": self.n_schools,
            "n_cells": self.n_cells,
            "plausible_values": self.plausible_values,
            "pandemic_cohorts": list(self.pandemic_cohorts),
            "moderators": list(self.moderators),
            "dose_moderators": list(self.dose),
            "coefficients": records(self.coefficients),
            "ddd_terms": list(self.ddd_terms),
            "variance_components": self.variance_components(),
            "logLik": self.loglik,
            "AIC": self.aic,
            "BIC": self.bic,
            "robust": {
                "type": "CR2",
                "df_method": "Satterthwaite",
                "cluster": "school",
                "n_clusters": self.robust_clusters,
                "coefficients": records(self.robust),
            },
            "equivalence": {
                "sesoi": self.sesoi,
                "moderators_standardized": self.standardized,
                "tests": [e.to_dict() for e in self.equivalence],
            },
            "mdes": [m.to_dict() for m in self.mdes],
            "convergence": self.convergence.to_dict(),
            "notes": list(self.notes),
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        lines = [
            f"Learning recovery: {MODEL_LABELS.get(self.model, self.model)}, {self.method}",
            f"  {self.n_students:,} students in {self.n_schools:,} schools ({self.n_cells:,} school-cohort cells); "
            f"pandemic cohorts: {', '.join(self.pandemic_cohorts)}",
            "",
            "Variance components:",
        ]
        for name, value in self.variance_components().items():
            lines.append(f"  {name:<24} {_f(value, 5)}")
        lines.append("")
        lines.append("Fixed effects (model-based SE, Satterthwaite df; CR2 by school beside):")
        lines.append(
            f"  {'term':<28} {'estimate':>9} {'se':>8} {'df':>8} {'p':>7}   {'CR2 se':>8} {'CR2 df':>7} {'CR2 p':>7}"
        )
        c, r = self.coefficients, self.robust
        for i, name in enumerate(c.names):
            mark = " *" if name in self.ddd_terms else ""
            lines.append(
                f"  {name + mark:<28} {_f(c.estimate[i]):>9} {_f(c.se[i]):>8} {c.df[i]:>8.1f} {c.pval[i]:>7.4f}   "
                f"{_f(r.se[i]):>8} {r.df[i]:>7.1f} {r.pval[i]:>7.4f}"
            )
        lines.append("  (* DDD effect: does the pandemic change in the gain depend on this school factor?)")
        lines.append("")
        unit = "per SD of the school factor" if self.standardized else "per unit of the school factor"
        lines.append(
            f"Equivalence (TOST, bounds +/-{self.sesoi:g} score units {unit}) "
            "and minimum detectable effect (80% power):"
        )
        for eq, md in zip(self.equivalence, self.mdes, strict=True):
            verdict = "equivalent to zero" if eq.equivalent else "not shown equivalent"
            lines.append(
                f"  {eq.term:<28} 90% CI [{_f(eq.ci90_lb)}, {_f(eq.ci90_ub)}], p(TOST) = {eq.pval:.4f}: {verdict}; "
                f"MDE = {_f(md.mdes, 3)}"
                + (
                    f" (simulated power there: {md.simulated_power_at_mdes:.2f})"
                    if md.simulated_power_at_mdes is not None
                    else ""
                )
            )
        lines.append("")
        conv = self.convergence
        lines.append(
            f"logLik = {_f(self.loglik, 3)}, AIC = {_f(self.aic, 3)}, BIC = {_f(self.bic, 3)}; optimiser "
            f"{'converged' if conv.converged else 'did NOT converge'} in {conv.iterations} iterations "
            f"(max |gradient| = {conv.gradient_norm:.1e}, logLik still to gain = {conv.decrement:.1e})"
        )
        for note in self.notes:
            lines.append(f"Note: {note}")
        for warning in self.warnings:
            lines.append(f"Warning: {warning}")
        return "\n".join(lines)
