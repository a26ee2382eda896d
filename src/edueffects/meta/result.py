"""The frozen result of :func:`edueffects.meta` and of its robust (CR2) re-inference."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

from edueffects.core.blocks import constant_within
from edueffects.core.errors import InputError, SingularRobustTest
from edueffects.core.inference import CoefficientAccessors, CoefficientTable, coefficient_table
from edueffects.core.jet import Array
from edueffects.core.nested import Convergence, NestedDesign
from edueffects.core.profile import VarianceInterval, profile_curve
from edueffects.core.results import (
    FitRecord,
    FitStatistics,
    ResultDisplay,
    WaldTest,
    contrast_labels,
    format_level,
    normalize_level,
    wald_test,
)
from edueffects.core.results import (
    hypothesis_matrix as core_hypothesis_matrix,
)
from edueffects.core.robust import RobustCovariance, cr2
from edueffects.io.columns import Column, Columns, column_values, missing_mask
from edueffects.meta.dependence import che_loadings, multilevel_design
from edueffects.meta.design import ModelTerms, mixed_type_position, sorted_codes
from edueffects.meta.intervals import VarianceProfiles
from edueffects.meta.predict import (
    TRANSFORM_FUNCTIONS,
    Predictions,
    check_transform,
    multilevel_ranef,
    prediction_table,
    univariate_blup,
)
from edueffects.options import DEFAULT_ROBUST_TEST, ROBUST_TESTS, RobustTest

if TYPE_CHECKING:  # pandas is imported where a table is built
    import pandas as pd

ArrayLike = NDArray[np.float64] | Sequence[Sequence[float]] | Sequence[float]


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def _p_clause(p: float) -> str:
    return "< .0001" if p < 1e-4 else f"= {p:.4f}"


def _fmt_p(p: float) -> str:
    return "< .0001" if p < 1e-4 else f"{p:.4f}"


@dataclass(frozen=True)
class Prediction:
    """Pooled estimate with its CI and prediction interval (models without moderators)."""

    pred: float
    se: float
    ci_lb: float
    ci_ub: float
    pi_lb: float | None
    pi_ub: float | None

    def to_dict(self) -> dict[str, float | None]:
        return {
            "pred": self.pred,
            "se": self.se,
            "ci_lb": self.ci_lb,
            "ci_ub": self.ci_ub,
            "pi_lb": self.pi_lb,
            "pi_ub": self.pi_ub,
        }

    def transformed(self, transform: str) -> Prediction:
        """Back-transform to the reported metric (``tanh``/``z_to_r``: Fisher z to r; ``exp``: log ratios
        to ratios); se is dropped."""
        transform_values = TRANSFORM_FUNCTIONS[check_transform(transform)]

        def f(value: float) -> float:
            return float(transform_values(np.asarray(value, dtype=np.float64)))

        return Prediction(
            pred=f(self.pred),
            se=float("nan"),
            ci_lb=f(self.ci_lb),
            ci_ub=f(self.ci_ub),
            pi_lb=None if self.pi_lb is None else f(self.pi_lb),
            pi_ub=None if self.pi_ub is None else f(self.pi_ub),
        )


@dataclass(frozen=True, eq=False)
class FittedState:
    """What re-inference (CR2) needs from a fit: the data in model order and the estimates."""

    x: Array
    y: Array
    v: Array
    level_codes: tuple[NDArray[np.intp], ...]
    level_names: tuple[str, ...]
    theta: Array
    beta: Array
    cov_beta: Array
    table: Columns
    residual_variance: float
    terms: ModelTerms
    estimated: tuple[bool, ...]
    rho: float = 0.0  # known sampling correlation within the outer level (CHE); 0: independent
    source: pd.DataFrame | None = field(default=None, repr=False)

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The fitted rows as a DataFrame: the user's own (its column types kept), or built from ``table``."""
        return self.source if self.source is not None else self.table.to_frame()

    def column(self, name: str) -> Column | None:
        """The fitted rows of the column ``name`` as an array: a column the model used, else one of the user's
        DataFrame (any other column); ``None`` when there is none."""
        if name in self.table.columns:
            return self.table[name]
        if self.source is None or name not in self.source.columns:
            return None
        if list(self.source.columns).count(name) > 1:
            raise InputError("column name '{0}' appears twice in the data; rename one", name)
        return column_values(self.source[name])

    def working_levels(self) -> tuple[Array, list[NDArray[np.intp]], Array, list[Array] | None]:
        """The marginal covariance as :func:`edueffects.core.blocks.block_covariance` levels: row variance,
        level codes, variances and loadings (``None``: all 1); with ``rho`` the term ``rho s s'`` of the
        correlated sampling errors is one more level of the clusters with loading ``s = sqrt(v)``."""
        n_levels = len(self.level_codes)
        codes, variances = list(self.level_codes), np.asarray(self.theta[:n_levels], dtype=np.float64)
        if not self.rho:
            return self.v + self.residual_variance, codes, variances, None
        row_variance, extra_codes, extra_variances, loadings = che_loadings(self.v, self.level_codes, self.rho)
        return row_variance, codes + extra_codes, np.append(variances, extra_variances), loadings

    def design(self) -> NestedDesign:
        """The nested design of the multilevel fit (with the CHE term when ``rho``)."""
        return multilevel_design(self.x, self.y, self.v, self.level_codes, self.rho or None)


@dataclass(frozen=True, eq=False, repr=False)
class RobustResult(ResultDisplay, CoefficientAccessors):
    """CR2 cluster-robust inference with Satterthwaite df (clubSandwich's ``coef_test``) and joint
    cluster-robust Wald tests (``Wald_test``, HTZ)."""

    coefficients: CoefficientTable
    vcov: Array
    cluster: str
    n_clusters: int
    covariance: RobustCovariance = field(repr=False)
    terms: ModelTerms = field(repr=False)

    def tidy(self) -> pd.DataFrame:
        return self.coefficients.to_frame()

    def wald(
        self,
        terms: str | Sequence[str] | None = None,
        L: ArrayLike | None = None,
        test: RobustTest = DEFAULT_ROBUST_TEST,
    ) -> WaldTest:
        """Cluster-robust test of ``L b = 0`` (or of the coefficients of ``terms``): clubSandwich's
        ``Wald_test(vcov = "CR2", test = "HTZ" | "Naive-F" | "chi-sq")``."""
        from edueffects.core.robust import cr2_wald_test

        if test not in ROBUST_TESTS:
            raise InputError("robust test '{0}' is not one of {1}", test, ", ".join(ROBUST_TESTS))
        matrix = hypothesis_matrix(self.terms, terms, L)
        try:
            out = cr2_wald_test(self.covariance, self.coefficients.estimate, matrix, test)
        except ValueError:
            raise SingularRobustTest(
                "the hypotheses cannot be tested cluster-robustly: their CR2 covariance is singular "
                "(redundant hypotheses or too few clusters)"
            ) from None
        labels = contrast_labels(matrix, self.terms.coef_names)
        return WaldTest(
            labels,
            float(out.statistic),
            float(out.df_num),
            None if out.df_denom is None else float(out.df_denom),
            float(out.pval),
            "chi2" if out.df_denom is None else "F",
            f"CR2, {test}, {self.n_clusters} clusters by {self.cluster}",
        )

    def term_tests(self, test: RobustTest = DEFAULT_ROBUST_TEST) -> tuple[WaldTest, ...]:
        """One cluster-robust joint test per moderator term of the formula."""
        return tuple(self.wald(label, test=test) for label in moderator_terms(self.terms))

    def to_dict(self, test: RobustTest = DEFAULT_ROBUST_TEST) -> dict[str, object]:
        return {
            "type": "CR2",
            "df_method": "Satterthwaite",
            "cluster": self.cluster,
            "n_clusters": self.n_clusters,
            "coefficients": self.coefficients.to_records(),
            "wald": [t.to_dict() for t in self.term_tests(test)],
        }

    def summary(self) -> str:
        lines = [f"Cluster-robust inference (CR2, Satterthwaite df), {self.n_clusters} clusters by {self.cluster}"]
        lines.append(_coef_block(self.coefficients, "t"))
        return "\n".join(lines)


def moderator_terms(terms: ModelTerms) -> list[str]:
    """Term labels other than the intercept (each gets its own joint test)."""
    return [label for label, _ in terms.terms if label != "intrcpt"]


def hypothesis_matrix(terms: ModelTerms, selection: str | Sequence[str] | None, matrix: ArrayLike | None) -> Array:
    """``L`` of a Wald test on a meta-analytic model: coefficient names or formula terms (all dummies of a factor)."""
    return core_hypothesis_matrix(terms.coef_names, selection, matrix, terms.select)


def _coef_block(table: CoefficientTable, stat_name: str) -> str:
    header = f"  {'term':<18} {'estimate':>10} {'se':>9} {stat_name:>8} {'df':>8} {'p':>8} {'ci.lb':>9} {'ci.ub':>9}"
    rows = [header]
    for rec in table.to_records():
        df = rec["df"]
        rows.append(
            f"  {rec['name']!s:<18} {_fmt(float(rec['estimate'])):>10} {_fmt(float(rec['se'])):>9} "  # type: ignore[arg-type]
            f"{_fmt(float(rec['stat']), 3):>8} {('-' if df is None else _fmt(float(df), 2)):>8} "  # type: ignore[arg-type]
            f"{_fmt_p(float(rec['pval'])):>8} {_fmt(float(rec['ci_lb'])):>9} {_fmt(float(rec['ci_ub'])):>9}"  # type: ignore[arg-type]
        )
    return "\n".join(rows)


@dataclass(frozen=True, eq=False, repr=False)
class MetaResult(ResultDisplay, CoefficientAccessors, FitStatistics):
    """A fitted meta-analytic model: coefficients, heterogeneity, fit statistics and convergence."""

    model: Literal["fixed", "univariate", "multilevel"]
    method: str
    test: str
    level: float
    k: int
    n_groups: tuple[int, ...]
    coefficients: CoefficientTable
    cov_beta: Array
    variance_names: tuple[str, ...]
    variance: Array
    variance_se: Array
    variance_fixed: tuple[bool, ...]
    QE: float
    QEp: float
    QE_df: int
    moderator_test: WaldTest | None
    fit_record: FitRecord
    i2_total: float
    i2_levels: tuple[float, ...]
    h2: float | None
    r2: float | None
    typical_v: float
    prediction: Prediction | None
    variance_profiles: VarianceProfiles = field(repr=False)
    convergence: Convergence
    n_dropped: int
    warnings: tuple[str, ...]
    state: FittedState = field(repr=False)
    rho: float | None = None

    # --- variance components -----------------------------------------------------------------
    @cached_property
    def variance_ci(self) -> tuple[VarianceInterval, ...]:
        """Confidence intervals of the variance components, computed when first read: the
        profile-likelihood CI of every estimated sigma^2 (multilevel models), the Q-profile CI of
        tau^2 with tau, I^2 and H^2 from it (random-effects models); empty for a fit with
        ``variance_ci=False``."""
        return self.variance_profiles.intervals()

    # --- fit statistics ------------------------------------------------------------------------

    @property
    def QM(self) -> float | None:
        return None if self.moderator_test is None else self.moderator_test.statistic

    @property
    def QMp(self) -> float | None:
        return None if self.moderator_test is None else self.moderator_test.pval

    @property
    def QMdf(self) -> tuple[int, int | None] | None:
        t = self.moderator_test
        return None if t is None else (int(t.df1), None if t.df2 is None else int(t.df2))

    @property
    def terms(self) -> ModelTerms:
        return self.state.terms

    @property
    def _df(self) -> float:
        return float(self.coefficients.df[0])

    # --- coefficient accessors -------------------------------------------------------------
    def tidy(self) -> pd.DataFrame:
        """Coefficients as a DataFrame: term, estimate, se, stat, df, pval, ci_lb, ci_ub."""
        return self.coefficients.to_frame()

    # --- tests ---------------------------------------------------------------------------------
    def wald(self, terms: str | Sequence[str] | None = None, L: ArrayLike | None = None) -> WaldTest:
        """Wald test of the coefficients of ``terms`` (names of coefficients or of formula terms) or of
        the contrasts ``L b = 0``, with the model's z, t or Knapp–Hartung reference distribution
        (metafor ``anova(res, btt=)`` / ``anova(res, X=)``)."""
        matrix = hypothesis_matrix(self.terms, terms, L)
        return wald_test(
            self.coefficients.estimate, self.cov_beta, matrix, self._df, self.terms.coef_names, "model-based"
        )

    def term_tests(self) -> tuple[WaldTest, ...]:
        """One joint Wald test per moderator term of the formula (all dummies of a factor together)."""
        return tuple(self.wald(label) for label in moderator_terms(self.terms))

    def require_independent_errors(self, what: str) -> None:
        """Refuse a fit with correlated sampling errors (``rho``) in a method that assumes independent ones."""
        if self.rho:
            raise InputError(
                "{0} assumes independent sampling errors: it does not support a model fitted with rho", what
            )

    # --- re-inference ------------------------------------------------------------------------
    def robust(self, cluster: str | NDArray[np.generic] | pd.Series, level: float | None = None) -> RobustResult:
        """CR2 cluster-robust SEs with Satterthwaite df, clustering by a column name or a vector; the
        working covariance is the model's (with ``rho``: the CHE model, as clubSandwich on ``rma.mv``)."""
        fit = self.state
        if isinstance(cluster, str):
            found = fit.column(cluster)
            if found is None:
                raise InputError("robust cluster column '{0}' not found", cluster)
            values, label = found, cluster
        else:
            values = np.asarray(cluster)
            label = "cluster"
            if len(values) != self.k:
                raise InputError("robust cluster has {0} values for {1} rows", len(values), self.k)
        missing = missing_mask(values)
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise InputError("robust cluster '{0}' is missing in row {1}", label, row + 1)
        mixed = mixed_type_position(values)
        if mixed is not None:
            raise InputError(
                "column '{0}' ({1}) mixes numbers and text (effect {2}): give one type", label, "robust", mixed + 1
            )
        codes = sorted_codes(values)
        if fit.level_codes and not constant_within(codes, fit.level_codes[0]):  # one robust cluster per model cluster
            raise InputError(
                "robust cluster '{0}' splits clusters of the model: "
                "each model cluster must lie within one robust cluster",
                label,
            )
        n_clusters = int(codes.max()) + 1
        if n_clusters < 2:
            raise InputError("robust cluster '{0}' has a single cluster: cluster-robust inference needs several", label)
        residuals = fit.y - fit.x @ fit.beta
        row_variance, level_codes, level_variances, loadings = fit.working_levels()
        rc = cr2(fit.x, residuals, fit.cov_beta, row_variance, level_codes, level_variances, codes, loadings)
        table = coefficient_table(
            self.coefficients.names,
            fit.beta,
            np.sqrt(np.diag(rc.vcov)),
            rc.df,
            self.level if level is None else normalize_level(level),
        )
        return RobustResult(
            coefficients=table, vcov=rc.vcov, cluster=label, n_clusters=rc.n_clusters, covariance=rc, terms=self.terms
        )

    # --- predictions ---------------------------------------------------------------------------
    def predict(
        self,
        newmods: pd.DataFrame | Mapping[str, object] | ArrayLike | None = None,
        transf: str | None = None,
        level: float | None = None,
    ) -> Predictions:
        """Predicted values with SE, CI and prediction interval (metafor ``predict.rma``).

        ``newmods``: a DataFrame or dict of the data's moderator columns (coded through the formula,
        e.g. ``{"ablat": [10, 30]}``), or metafor's matrix of model columns without the intercept;
        ``None`` predicts the pooled effect (intercept-only models) or every row's fitted value.
        ``transf``: ``"exp"`` (log ratios), ``"tanh"`` (Fisher z to r) or ``None``.
        """
        transform = check_transform(transf)
        lev = self.level if level is None else normalize_level(level)
        x_new, labels = self._new_rows(newmods)
        total = None if self.model == "fixed" else float(np.sum(self.variance))
        table = prediction_table(
            x_new, self.coefficients.estimate, self.cov_beta, total, self._df, lev, transform, labels
        )
        return Predictions(table=table, level=lev, transform=transform, model=self.model)

    def _new_rows(self, newmods: object) -> tuple[Array, pd.DataFrame | None]:
        import pandas as pd

        terms = self.terms
        p = len(terms.coef_names)
        if newmods is None:
            if p == 1 and terms.has_intercept:
                return np.ones((1, 1)), None
            return self.state.x, None
        if isinstance(newmods, Mapping):
            lengths = {len(np.atleast_1d(np.asarray(v, dtype=object))) for v in newmods.values()}
            if len(lengths) > 1:
                raise InputError("newmods: every column needs the same number of values")
            newmods = pd.DataFrame({k: np.atleast_1d(np.asarray(v)) for k, v in newmods.items()})
        if isinstance(newmods, pd.DataFrame):
            if len(newmods) == 0:
                raise InputError("newmods has no rows")
            return terms.matrix(newmods), newmods
        try:
            values = np.asarray(newmods, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError("newmods must be a DataFrame, a dict of columns or a numeric matrix") from None
        width = p - int(terms.has_intercept)
        values = values.reshape(-1, 1) if values.ndim == 1 and width == 1 else np.atleast_2d(values)
        if values.shape[1] != width or not np.isfinite(values).all():
            raise InputError("newmods needs {0} finite value(s) per row (the model's moderator columns)", width)
        if terms.has_intercept:
            values = np.column_stack([np.ones(values.shape[0]), values])
        return values, None

    def fitted(self) -> pd.Series:
        """Fitted values ``x_i'b`` of the rows used in the fit (metafor ``fitted``)."""
        import pandas as pd

        return pd.Series(self.state.x @ self.coefficients.estimate, name="fitted")

    def blup(self) -> pd.DataFrame:
        """Best linear unbiased predictions of each effect's true value (random-effects models; metafor ``blup``)."""
        if self.model != "univariate":
            raise InputError("blup() is for univariate random-effects models; use ranef() for multilevel models")
        s = self.state
        return univariate_blup(
            s.x, s.y, s.v, self.coefficients.estimate, self.cov_beta, float(self.variance[0]), self._df, self.level
        )

    def ranef(self) -> dict[str, pd.DataFrame]:
        """Predicted random effects per level (outer first), indexed by group (metafor ``ranef``)."""
        import pandas as pd

        if self.model != "multilevel":
            raise InputError("ranef() is for multilevel models; use blup() for a random-effects model")
        s = self.state
        tables = multilevel_ranef(
            s.x,
            s.y,
            s.v,
            self.coefficients.estimate,
            self.cov_beta,
            s.level_codes,
            self.variance,
            self._df,
            self.level,
            working=s.working_levels(),
        )
        out: dict[str, pd.DataFrame] = {}
        columns = [name.split("/")[-1] for name in s.level_names]
        for depth, (name, table) in enumerate(zip(s.level_names, tables, strict=True)):
            codes = s.level_codes[depth]
            _, first = np.unique(codes, return_index=True)
            parts = [[_label(value) for value in s.table[c][first]] for c in columns[: depth + 1]]
            labels = np.array(["/".join(names) for names in zip(*parts, strict=True)], dtype=object)
            out[name] = table.set_axis(pd.Index(labels, name=name))
        return out

    # --- variance components -----------------------------------------------------------------
    def profile(self, component: int, points: int = 31) -> pd.DataFrame:
        """Profile log-likelihood of one variance component (multilevel models) over a grid from 0
        to beyond its profile CI: columns ``sigma2``, ``loglik``, ``deviance`` (2 x drop from the maximum)."""
        import pandas as pd

        if self.model != "multilevel":
            raise InputError("profile curves are computed for multilevel models")
        fit = self.state
        design = self.variance_profiles.design
        if design is None:  # a fit without intervals keeps no design
            design = fit.design()
        estimate = float(self.variance[component])
        upper = next((vc.ci_ub for vc in self.variance_ci if vc.component == self.variance_names[component]), None)
        top = 1.5 * (upper if upper is not None and np.isfinite(upper) else 3.0 * max(estimate, 1e-4))
        grid = np.linspace(0.0, max(top, 1e-6), points)
        loglik = profile_curve(
            design,
            self.variance_profiles.likelihood,
            np.asarray(self.variance),
            component,
            grid,
            list(self.variance_fixed),
        )
        return pd.DataFrame({"sigma2": grid, "loglik": loglik, "deviance": 2.0 * (self.loglik - loglik)})

    def back_transform(self, transform: str = "tanh") -> Prediction:
        """Pooled estimate, CI and prediction interval back-transformed (``tanh``: Fisher z to r, ``exp``)."""
        if self.prediction is None:
            raise InputError("back-transformation needs a model without moderators; use predict(transf=...)")
        return self.prediction.transformed(transform)

    # --- output ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, object]:
        """JSON-able dict of every reported quantity."""
        out: dict[str, object] = {
            "model": self.model,
            "method": self.method,
            "test": self.test,
            "level": self.level,
            "k": self.k,
            "rho": self.rho,
            "formula": self.terms.formula,
            "terms": {label: [self.terms.coef_names[i] for i in idx] for label, idx in self.terms.terms},
            "coefficients": self.coefficients.to_records(),
        }
        if self.model == "multilevel":
            out["sigma2"] = [float(s) for s in self.variance]
            out["sigma2_levels"] = list(self.variance_names)
            out["sigma2_se"] = [_num(s) for s in self.variance_se]
            out["sigma2_fixed"] = list(self.variance_fixed)
            out["n_groups"] = list(self.n_groups)
        else:
            out["tau2"] = float(self.variance[0]) if self.variance.size else 0.0
            out["tau2_se"] = _num(float(self.variance_se[0])) if self.variance_se.size else None
            out["tau2_fixed"] = bool(self.variance_fixed[0]) if self.variance_fixed else None
        out.update(
            {
                "QE": self.QE,
                "QEp": self.QEp,
                "QEdf": self.QE_df,
                "QM": self.QM,
                "QMp": self.QMp,
                "QMdf": list(self.QMdf) if self.QMdf is not None else None,
                "wald": [t.to_dict() for t in self.term_tests()],
                "logLik": self.loglik,
                "AIC": self.aic,
                "BIC": self.bic,
                "AICc": self.aicc,
                "n_parameters": self.fit_record.n_params,
                "I2": {"total": self.i2_total, "levels": list(self.i2_levels), "typical_v": self.typical_v},
                "H2": self.h2,
                "R2": self.r2,
                "prediction": self.prediction.to_dict() if self.prediction else None,
                "variance_ci": [vc.to_dict() for vc in self.variance_ci],
                "convergence": self.convergence.to_dict(),
                "n_dropped": self.n_dropped,
                "warnings": list(self.warnings),
            }
        )
        return out

    def _headline(self) -> str:
        kind = {
            "fixed": "Equal-effects model",
            "univariate": "Random-effects model",
            "multilevel": f"{len(self.variance) + 1}-level model",
        }[self.model]
        return f"{kind} ({self.method}), k = {self.k}" + (
            "" if self.terms.formula == "~ 1" else f", mods {self.terms.formula}"
        )

    def __repr__(self) -> str:
        # the first line of the summary, without computing the intervals the summary shows
        return f"<{type(self).__name__}: {self._headline()}>"

    def summary(self) -> str:
        """A readable text report in the spirit of metafor's print method."""
        ci_label = f"{format_level(self.level)} CI"
        lines = [self._headline()]
        if self.n_dropped:
            lines.append(f"  {self.n_dropped} row(s) with missing values were dropped")
        if self.rho:
            lines.append(
                f"  Sampling errors correlated within {self.state.level_names[0]}: rho = {self.rho:g} "
                "(correlated and hierarchical effects)"
            )
        if self.variance.size:
            lines.append("")
            lines.append("Variance components:")
            intervals = {vc.component: vc for vc in self.variance_ci}
            for i, (name, value) in enumerate(zip(self.variance_names, self.variance, strict=True)):
                groups = f"  ({self.n_groups[i]} groups)" if self.model == "multilevel" else ""
                se = f"  (SE = {_fmt(float(self.variance_se[i]))})" if np.isfinite(self.variance_se[i]) else ""
                fixed = "  (fixed)" if self.variance_fixed[i] else ""
                vc = intervals.get(name)
                ci = f"  {ci_label} [{_fmt(vc.ci_lb)}, {_fmt(vc.ci_ub)}] ({vc.kind})" if vc else ""
                lines.append(f"  {name:<24} {_fmt(float(value))}{se}{fixed}{groups}{ci}")
            levels = ", ".join(f"{_fmt(v, 2)}%" for v in self.i2_levels)
            i2_ci = intervals.get("I2")
            lines.append(
                f"  I2 total = {_fmt(self.i2_total, 2)}%"
                + (f" ({ci_label} [{_fmt(i2_ci.ci_lb, 2)}%, {_fmt(i2_ci.ci_ub, 2)}%])" if i2_ci else "")
                + (f" (by level: {levels})" if len(self.i2_levels) > 1 else "")
            )
            if self.r2 is not None:
                lines.append(f"  R2 (heterogeneity accounted for) = {_fmt(self.r2, 2)}%")
        lines.append("")
        lines.append(f"Test for heterogeneity: Q({self.QE_df}) = {_fmt(self.QE, 3)}, p {_p_clause(self.QEp)}")
        qm = self.moderator_test
        if qm is not None:
            stat = f"QM({qm.df1:g})" if qm.df2 is None else f"F({qm.df1:g}, {qm.df2:g})"
            lines.append(f"Test of moderators: {stat} = {_fmt(qm.statistic, 3)}, p {_p_clause(qm.pval)}")
        lines.append("")
        test_label = {"z": "z tests", "t": "t tests", "knha": "Knapp-Hartung t tests"}[self.test]
        lines.append(f"Coefficients ({test_label}, {ci_label}):")
        lines.append(_coef_block(self.coefficients, "z" if self.test == "z" else "t"))
        if self.prediction is not None:
            pr = self.prediction
            lines.append("")
            text = f"Pooled estimate {_fmt(pr.pred)}, {ci_label} [{_fmt(pr.ci_lb)}, {_fmt(pr.ci_ub)}]"
            if pr.pi_lb is not None and pr.pi_ub is not None:
                text += f", {format_level(self.level)} prediction interval [{_fmt(pr.pi_lb)}, {_fmt(pr.pi_ub)}]"
            lines.append(text)
        lines.append("")
        lines.append(
            f"logLik = {_fmt(self.loglik)}, AIC = {_fmt(self.aic)}, BIC = {_fmt(self.bic)}, AICc = {_fmt(self.aicc)} "
            f"({self.fit_record.method})"
        )
        conv = self.convergence
        state = "converged" if conv.converged else "did NOT converge"
        lines.append(
            f"Optimiser {state} in {conv.iterations} iterations "
            f"(max |gradient| = {conv.gradient_norm:.1e}, logLik still to gain = {conv.decrement:.1e})"
        )
        for w in self.warnings:
            lines.append(f"Warning: {w}")
        return "\n".join(lines)


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _label(value: object) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)
