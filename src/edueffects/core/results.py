"""The post-fit layer shared by every engine: fit records, Wald and likelihood-ratio tests, display.

- :class:`FitRecord`: what a model comparison needs (log-likelihood, parameter count, the sample
  size of the information criteria, the data and fixed effects it was fitted to).
- :func:`wald_test`: joint Wald test of ``L b = 0`` with the model's reference distribution:
  ``Q = (Lb)'(L V L')^-1 (Lb)`` against chi2(q) (``df = inf``), or ``F = Q / q`` against F(q, df)
  (metafor ``anova(res, btt=)``, ``anova(res, X=)``).
- :func:`likelihood_ratio_test`: ``LRT = 2 (l_full - l_reduced)`` against chi2(parms_full - parms_reduced)
  (metafor ``anova(full, reduced)``), refusing REML comparisons of different fixed effects.
- :class:`ResultDisplay`: a short ``repr`` and an HTML ``_repr_html_`` (Jupyter) from ``summary()``.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from edueffects.core.distributions import chi2_sf, f_sf, t_sf
from edueffects.core.errors import InputError
from edueffects.core.jet import Array

if TYPE_CHECKING:  # pandas is imported by the methods that return its objects
    import pandas as pd


def normalize_level(level: float) -> float:
    """Confidence level in percent from a percent (``95``) or a proportion (``0.95``), as metafor reads it."""
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise InputError("level must be a number such as 95 or 0.95 (got {0})", repr(level)) from None
    if not np.isfinite(value) or not 0.0 < value < 100.0 or value == 1.0:
        raise InputError("level must be a confidence level such as 95 (percent) or 0.95 (proportion), got {0}", level)
    return value * 100.0 if value < 1.0 else value


def format_level(level: float) -> str:
    """``95`` -> ``95%`` (the label of every interval at that level)."""
    return f"{level:g}%"


class ResultDisplay:
    """``repr`` (first line of the summary) and ``_repr_html_`` (the whole summary) for notebooks."""

    def summary(self) -> str:  # pragma: no cover - every result defines it
        raise NotImplementedError

    def __repr__(self) -> str:
        first = self.summary().splitlines()[0] if self.summary() else ""
        return f"<{type(self).__name__}: {first}>"

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.summary())}</pre>"


def _fmt_p(p: float) -> str:
    return "< .0001" if p < 1e-4 else f"= {p:.4f}"


@dataclass(frozen=True, eq=False)
class ContrastTable:
    """Each hypothesis of a Wald test on its own: ``estimate`` = row of ``L b``, its ``se``, ``stat`` =
    estimate / se, ``df`` (``inf``: z) and the two-sided ``pval``."""

    hypothesis: tuple[str, ...]
    estimate: Array
    se: Array
    stat: Array
    df: Array
    pval: Array

    @classmethod
    def of(cls, hypothesis: tuple[str, ...], estimate: Array, se: Array, df: Array) -> ContrastTable:
        """The table of estimates with their standard errors, tested against t(df) (``inf``: N(0,1))."""
        stat = estimate / se
        return cls(hypothesis, estimate, se, stat, df, 2.0 * t_sf(np.abs(stat), df))

    def tidy(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            {
                "hypothesis": list(self.hypothesis),
                "estimate": self.estimate,
                "se": self.se,
                "stat": self.stat,
                "df": self.df,
                "pval": self.pval,
            }
        )

    def to_records(self) -> list[dict[str, object]]:
        columns = (self.estimate, self.se, self.stat, self.df, self.pval)
        names = ("estimate", "se", "stat", "df", "pval")
        return [
            {"hypothesis": label, **{n: float(c[i]) for n, c in zip(names, columns, strict=True)}}
            for i, label in enumerate(self.hypothesis)
        ]


@dataclass(frozen=True, eq=False, repr=False)
class WaldTest(ResultDisplay):
    """A joint Wald test of ``q`` linear hypotheses ``L b = 0``.

    ``distribution`` is ``chi2`` (``statistic`` = Q, ``df2`` None) or ``F`` (``statistic`` = F).
    ``contrasts`` holds each hypothesis on its own (estimate, se, stat, df, pval) when ``L`` was given.
    """

    hypotheses: tuple[str, ...]
    statistic: float
    df1: float
    df2: float | None
    pval: float
    distribution: str
    method: str
    contrasts: ContrastTable | None = field(default=None)

    def tidy(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "hypotheses": "; ".join(self.hypotheses),
                    "statistic": self.statistic,
                    "df1": self.df1,
                    "df2": self.df2,
                    "pval": self.pval,
                    "distribution": self.distribution,
                    "method": self.method,
                }
            ]
        )

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "hypotheses": list(self.hypotheses),
            "statistic": self.statistic,
            "df1": self.df1,
            "df2": self.df2,
            "pval": self.pval,
            "distribution": self.distribution,
            "method": self.method,
        }
        if self.contrasts is not None:
            out["contrasts"] = self.contrasts.to_records()
        return out

    def headline(self) -> str:
        """The test in one line: hypotheses, statistic with its df, p."""
        if self.df2 is None:
            stat = f"QM({self.df1:g}) = {self.statistic:.4f}"
        else:
            stat = f"F({self.df1:g}, {self.df2:.2f}) = {self.statistic:.4f}"
        return f"Wald test ({self.method}) of {'; '.join(self.hypotheses)}: {stat}, p {_fmt_p(self.pval)}"

    def summary(self) -> str:
        lines = [self.headline()]
        if self.contrasts is not None:
            lines.append(self.contrasts.tidy().to_string(index=False))
        return "\n".join(lines)


def contrast_labels(matrix: Array, names: tuple[str, ...]) -> tuple[str, ...]:
    """Readable hypotheses of the rows of ``L``: ``ablat = 0``, ``allocrandom - allocsystematic = 0``."""
    labels = []
    for row in matrix:
        parts = []
        for weight, name in zip(row, names, strict=True):
            if weight == 0:
                continue
            sign = "-" if weight < 0 else "+"
            size = abs(float(weight))
            term = name if size == 1 else f"{size:g}*{name}"
            parts.append(f"{sign} {term}")
        text = " ".join(parts).lstrip("+ ") if parts else "0"
        labels.append(f"{text} = 0")
    return tuple(labels)


MatrixLike = Array | Sequence[Sequence[float]] | Sequence[float]


def hypothesis_matrix(
    names: tuple[str, ...],
    selection: str | Sequence[str] | None,
    matrix: MatrixLike | None,
    select: Callable[[list[str]], Sequence[int]] | None = None,
) -> Array:
    """``L`` of a Wald test: rows of the identity for the selected coefficients (``select`` resolves
    names to columns, e.g. formula terms; default: coefficient names), or the user's contrast matrix
    (one row per hypothesis, one column per coefficient)."""
    p = len(names)
    if (selection is None) == (matrix is None):
        raise InputError("give either terms (coefficient or term names) or L (a contrast matrix), not both or neither")
    if selection is not None:
        items = [selection] if isinstance(selection, str) else list(selection)
        chosen = (select or (lambda wanted: _by_name(names, wanted)))(items)
        return np.eye(p)[list(dict.fromkeys(chosen))]
    try:
        out = np.atleast_2d(np.asarray(matrix, dtype=np.float64))
    except (TypeError, ValueError):
        raise InputError("L must be a numeric matrix with one column per coefficient ({0})", p) from None
    if out.ndim != 2 or out.shape[1] != p:
        raise InputError(
            "L has {0} column(s); the model has {1} coefficient(s) ({2})", out.shape[-1], p, ", ".join(names)
        )
    if not np.isfinite(out).all() or not np.any(out != 0, axis=1).all():
        raise InputError("L must be finite and each row must have a non-zero weight")
    return out


def _by_name(names: tuple[str, ...], wanted: list[str]) -> list[int]:
    for item in wanted:
        if item not in names:
            raise InputError(
                "'{0}' is neither a coefficient nor a term of the model (known: {1})", item, ", ".join(names)
            )
    return [names.index(item) for item in wanted]


def wald_test(beta: Array, cov_beta: Array, matrix: Array, df: float, names: tuple[str, ...], method: str) -> WaldTest:
    """Joint Wald test of ``matrix @ beta = 0`` (chi2 for ``df = inf``, else F(q, df)); ``q`` is the rank of ``L``."""
    estimate = matrix @ beta
    cov = matrix @ cov_beta @ matrix.T
    q = int(np.linalg.matrix_rank(matrix))
    if q < matrix.shape[0]:
        raise InputError("the {0} hypotheses are not linearly independent (rank {1})", matrix.shape[0], q)
    stat = float(estimate @ np.linalg.solve(cov, estimate))
    labels = contrast_labels(matrix, names)
    contrasts = ContrastTable.of(labels, estimate, np.sqrt(np.diag(cov)), np.full(estimate.shape, df))
    if np.isfinite(df):
        f = stat / q
        return WaldTest(labels, f, float(q), float(df), f_sf(f, q, df), "F", method, contrasts)
    return WaldTest(labels, stat, float(q), None, chi2_sf(stat, q), "chi2", method, contrasts)


@dataclass(frozen=True, eq=False)
class FitRecord:
    """What comparing two fits needs; ``n_info`` is the n of BIC/AICc (k - p under REML, as metafor);
    ``sampling_correlation`` is the known within-cluster correlation of sampling errors the fit assumed
    (0: independent), part of the data's covariance, so fits under different values are not nested;
    ``known_var`` the known sampling variances (meta-analysis) and ``correlation_groups`` the groups
    within which the sampling errors correlate: fits that differ in them model different data."""

    method: str
    loglik: float
    n_params: int
    n_info: float
    n_obs: int
    x: Array = field(repr=False)
    y: Array = field(repr=False)
    sampling_correlation: float = 0.0
    known_var: Array | None = field(default=None, repr=False)
    correlation_groups: NDArray[np.intp] | None = field(default=None, repr=False)

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + self.n_params * float(np.log(self.n_info))

    @property
    def aicc(self) -> float:
        """``AIC + 2 q (q + 1) / (n - q - 1)`` with ``n = max(n_info, q + 2)`` (metafor's ``fitstats``)."""
        n = max(self.n_info, self.n_params + 2.0)
        return -2.0 * self.loglik + 2.0 * self.n_params * n / (n - self.n_params - 1.0)


class FitStatistics:
    """``loglik``, ``aic``, ``bic`` and ``aicc`` of any result that holds a ``fit_record``."""

    fit_record: FitRecord

    @property
    def loglik(self) -> float:
        return self.fit_record.loglik

    @property
    def aic(self) -> float:
        return self.fit_record.aic

    @property
    def bic(self) -> float:
        """``-2 l + q log(n)``: ``n`` is k - p under REML in meta-analysis (metafor), the rows in lme4."""
        return self.fit_record.bic

    @property
    def aicc(self) -> float:
        return self.fit_record.aicc


@dataclass(frozen=True, eq=False, repr=False)
class LikelihoodRatioTest(ResultDisplay):
    """Likelihood-ratio test of a reduced model against the full model that nests it."""

    method: str
    df_full: int
    df_reduced: int
    loglik_full: float
    loglik_reduced: float
    aic_full: float
    aic_reduced: float
    bic_full: float
    bic_reduced: float
    aicc_full: float
    aicc_reduced: float
    statistic: float
    df: int
    pval: float

    def tidy(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            {
                "model": ["full", "reduced"],
                "df": [self.df_full, self.df_reduced],
                "logLik": [self.loglik_full, self.loglik_reduced],
                "AIC": [self.aic_full, self.aic_reduced],
                "BIC": [self.bic_full, self.bic_reduced],
                "AICc": [self.aicc_full, self.aicc_reduced],
                "LRT": [None, self.statistic],
                "pval": [None, self.pval],
            }
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "full": {
                "df": self.df_full,
                "logLik": self.loglik_full,
                "AIC": self.aic_full,
                "BIC": self.bic_full,
                "AICc": self.aicc_full,
            },
            "reduced": {
                "df": self.df_reduced,
                "logLik": self.loglik_reduced,
                "AIC": self.aic_reduced,
                "BIC": self.bic_reduced,
                "AICc": self.aicc_reduced,
            },
            "LRT": self.statistic,
            "df": self.df,
            "pval": self.pval,
        }

    def summary(self) -> str:
        return (
            f"Likelihood-ratio test ({self.method}): LRT({self.df}) = {self.statistic:.4f}, p {_fmt_p(self.pval)}\n"
            + self.tidy().to_string(index=False)
        )


def _same_array(a: NDArray[Any] | None, b: NDArray[Any] | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def likelihood_ratio_test(full: FitRecord, reduced: FitRecord) -> LikelihoodRatioTest:
    """LRT of two fits of the same data; the one with more parameters is the full model (as metafor)."""
    if full.n_params < reduced.n_params:
        full, reduced = reduced, full
    if full.method != reduced.method:
        raise InputError(
            "models were fitted by different methods ({0} and {1}): refit both alike", full.method, reduced.method
        )
    if full.method not in ("ML", "REML"):
        raise InputError("likelihood-ratio tests need models fitted by ML or REML (got {0})", full.method)
    if full.n_obs != reduced.n_obs or not np.array_equal(full.y, reduced.y):
        raise InputError("models were fitted to different data: a likelihood-ratio test needs the same effects")
    if not _same_array(full.known_var, reduced.known_var):
        raise InputError("models were fitted with different sampling variances: a likelihood-ratio test needs the same")
    if full.sampling_correlation != reduced.sampling_correlation:
        raise InputError(
            "models assume different sampling correlations (rho = {0} and {1}): a likelihood-ratio test needs the same",
            f"{full.sampling_correlation:g}",
            f"{reduced.sampling_correlation:g}",
        )
    if full.sampling_correlation and not _same_array(full.correlation_groups, reduced.correlation_groups):
        raise InputError(
            "models correlate the sampling errors within different clusters: a likelihood-ratio test needs the same"
        )
    if full.n_params == reduced.n_params:
        raise InputError("models have the same number of parameters: a likelihood-ratio test is not meaningful")
    if full.method == "REML" and (full.x.shape != reduced.x.shape or not np.array_equal(full.x, reduced.x)):
        raise InputError(
            "REML likelihoods of models with different fixed effects are not comparable: "
            "refit both with method='ML' to compare moderators"
        )
    statistic = max(0.0, 2.0 * (full.loglik - reduced.loglik))
    df = full.n_params - reduced.n_params
    return LikelihoodRatioTest(
        method=full.method,
        df_full=full.n_params,
        df_reduced=reduced.n_params,
        loglik_full=full.loglik,
        loglik_reduced=reduced.loglik,
        aic_full=full.aic,
        aic_reduced=reduced.aic,
        bic_full=full.bic,
        bic_reduced=reduced.bic,
        aicc_full=full.aicc,
        aicc_reduced=reduced.aicc,
        statistic=statistic,
        df=df,
        pval=chi2_sf(statistic, df),
    )


class HasFitRecord(Protocol):
    @property
    def fit_record(self) -> FitRecord: ...


def anova(full: HasFitRecord, reduced: HasFitRecord) -> LikelihoodRatioTest:
    """Likelihood-ratio test of two nested fits of the same data (metafor ``anova(full, reduced)``):
    any results with a ``fit_record`` (``meta()``, ``recovery()``)."""
    for name, result in (("full", full), ("reduced", reduced)):
        if not hasattr(result, "fit_record"):
            raise InputError("anova: '{0}' is not a fitted model (got {1})", name, type(result).__name__)
    return likelihood_ratio_test(full.fit_record, reduced.fit_record)
