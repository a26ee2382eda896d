"""The frozen result of :func:`edueffects.recovery`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from edueffects.core.equivalence import DetectableEffect, EquivalenceTest
from edueffects.core.errors import InputError
from edueffects.core.inference import CoefficientAccessors, CoefficientTable
from edueffects.core.jet import Array
from edueffects.core.nested import Convergence
from edueffects.core.results import (
    FitRecord,
    FitStatistics,
    MatrixLike,
    ResultDisplay,
    WaldTest,
    contrast_labels,
    hypothesis_matrix,
)
from edueffects.core.robust import RobustCovariance, cr2_wald_test
from edueffects.options import DEFAULT_ROBUST_TEST, ROBUST_TESTS, RobustTest
from edueffects.recovery.frame import CellFrame
from edueffects.recovery.inference import ModelCovariance, satterthwaite_wald_test

if TYPE_CHECKING:
    import pandas as pd

MODEL_LABELS = {
    "gain": "gain model (grade-to-grade gain, linked students)",
    "long_linked": "long model with student intercepts (linked students)",
    "long_unlinked": "long model with school-cohort-occasion intercepts (unlinked cross-sections)",
}


def _pooled() -> InputError:
    return InputError("joint tests are not available for results pooled over plausible values")


def _f(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}f}"


@dataclass(frozen=True, eq=False, repr=False)
class RecoveryResult(ResultDisplay, CoefficientAccessors, FitStatistics):
    """A fitted DDD recovery model with model-based, cluster-robust and equivalence inference.

    ``fit_record`` feeds likelihood-ratio tests (``edueffects.anova(full, reduced)``, as lme4's
    ``anova``); :meth:`wald` and :meth:`robust_wald` test several coefficients jointly. Results
    pooled over plausible values carry neither covariance (``model_covariance``, ``robust_covariance``).
    """

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
    fit_record: FitRecord
    robust: CoefficientTable
    robust_clusters: int
    equivalence: tuple[EquivalenceTest, ...]
    mdes: tuple[DetectableEffect, ...]
    sesoi: float
    standardized: bool
    convergence: Convergence
    notes: tuple[str, ...]
    warnings: tuple[str, ...]
    cell_data: CellFrame | pd.DataFrame = field(repr=False)  # the fitted cells (see ``cells``)
    plausible_values: int = 1
    model_covariance: ModelCovariance | None = field(default=None, repr=False)
    robust_covariance: RobustCovariance | None = field(default=None, repr=False)
    released_cells: bool = False  # fitted on released cell statistics (the notes say what was withheld)
    missing: dict[str, int] = field(default_factory=dict)  # missing values per column (rows dropped on request)
    rows_dropped: int = 0

    def wald(self, terms: str | Sequence[str] | None = None, L: MatrixLike | None = None) -> WaldTest:
        """Model-based joint F test of the coefficients ``terms`` (names) or of ``L b = 0``, with the
        multi-df Satterthwaite denominator df of lmerTest's ``contestMD`` (``contest(m, L, joint = TRUE)``)."""
        if self.model_covariance is None:
            raise _pooled()
        names = self.coefficients.names
        matrix = hypothesis_matrix(names, terms, L)
        return satterthwaite_wald_test(self.coefficients.estimate, self.model_covariance, matrix, names)

    def robust_wald(
        self,
        terms: str | Sequence[str] | None = None,
        L: MatrixLike | None = None,
        test: RobustTest = DEFAULT_ROBUST_TEST,
    ) -> WaldTest:
        """Cluster-robust (CR2 by school) joint test of the coefficients ``terms`` or of ``L b = 0``:
        clubSandwich ``Wald_test(m, constraints, vcov = "CR2", test = "HTZ" | "Naive-F" | "chi-sq")``."""
        if test not in ROBUST_TESTS:
            raise InputError("robust test '{0}' is not one of {1}", test, ", ".join(ROBUST_TESTS))
        if self.robust_covariance is None:
            raise _pooled()
        names = self.coefficients.names
        matrix = hypothesis_matrix(names, terms, L)
        try:
            out = cr2_wald_test(self.robust_covariance, self.coefficients.estimate, matrix, test)
        except ValueError:
            raise InputError(
                "the hypotheses cannot be tested cluster-robustly: their CR2 covariance is singular "
                "(redundant hypotheses or too few clusters)"
            ) from None
        return WaldTest(
            contrast_labels(matrix, names),
            float(out.statistic),
            float(out.df_num),
            None if out.df_denom is None else float(out.df_denom),
            float(out.pval),
            "chi2" if out.df_denom is None else "F",
            f"CR2, {test}, {self.robust_clusters} clusters by school",
        )

    @cached_property
    def cells(self) -> pd.DataFrame:
        """The aggregated cells the model was fitted to (school, cohort, counts, sums, moderators)."""
        data = self.cell_data
        return data.to_frame() if isinstance(data, CellFrame) else data

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
            "data_source": "released cell statistics" if self.released_cells else "student records",
            "rows_dropped": self.rows_dropped,
            "missing": dict(self.missing),
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
