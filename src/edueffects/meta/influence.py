"""Influence diagnostics, leave-one-out and cumulative meta-analysis (metafor's ``influence.rma.uni``,
``leave1out``, ``cumul``, ``cooks.distance.rma.mv``, ``hatvalues.rma.mv``, ``rstudent.rma.mv`` and
``dfbetas.rma.mv``).

Every deleted fit re-estimates the variance components by the model's own method, test and level,
Newton-started from the full fit's estimates (the core's ``maximize`` on an orthonormal basis of the
moderators, as ``meta()`` does). With ``b``, ``V_b`` of the full fit and ``b(-i)``, ``V_b(-i)``,
``tau^2(-i)`` of the fit without effect (or cluster) ``i``:

- hat values: ``diag(X (X'WX)^-1 X'W)``, ``W`` the inverse marginal covariance (``hatvalues``);
- externally studentized residuals: ``(y_i - x_i'b(-i)) / sqrt(s2w(-i) (v_i + tau^2(-i)) + x_i'V_b(-i)x_i)``
  (``rstudent``; ``s2w`` is the Knapp–Hartung factor, 1 otherwise);
- DFFITS: ``x_i'(b - b(-i)) / sqrt(s2w(-i) h_i (tau^2(-i) + v_i))``;
- Cook's distance: ``(b - b(-i))' V_b^-1 (b - b(-i))``; covariance ratio: ``det V_b(-i) / det V_b``;
- DFBETAS: ``(b - b(-i)) / sqrt(s2w(-i) diag((X'W(-i)X)^-1))``, ``W(-i)`` with ``tau^2(-i)`` on all rows.

Multilevel models (``rstudent.rma.mv``, ``dfbetas.rma.mv``), deleting effect or cluster ``c`` (rows ``c``):
``M(-c)`` is the full data's marginal covariance at the deleted fit's variance components,

- rstudent: ``e_c = y_c - X_c b(-c)``, ``se = sqrt(diag(S_c))``, ``z = e_c / se`` with
  ``S_c = M(-c)[c, c] + X_c V_b(-c) X_c'``; by cluster also ``X2 = e_c' S_c^-1 e_c`` on ``k`` (rows of ``c``) df;
- DFBETAS: ``(b - b(-c)) / sqrt(diag((X'M(-c)^-1 X)^-1))``.

The deleted fits of a result are computed once per deletion set and shared by all diagnostics.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import special

from edueffects.core.blocks import iter_blocks
from edueffects.core.deletion import deletion_refits, full_data_covariances
from edueffects.core.errors import InputError, Message, listed
from edueffects.core.inference import coefficient_table
from edueffects.core.jet import Array
from edueffects.core.linalg import weighted_ls
from edueffects.core.nested import IntArray, design_from_rows, evaluate, maximize
from edueffects.core.results import ResultDisplay, format_level
from edueffects.meta.design import mixed_type_position
from edueffects.meta.estimators import moment_tau2
from edueffects.meta.result import MetaResult
from edueffects.options import LIKELIHOOD_METHODS as LIKELIHOOD

__all__ = [
    "CumulativeResult",
    "InfluenceResult",
    "LeaveOneOut",
    "StudentizedResiduals",
    "cooks_distance",
    "cumul",
    "dfbetas",
    "hatvalues",
    "influence",
    "leave1out",
    "rstudent",
]


@dataclass(frozen=True)
class _Fit:
    """One (deleted or cumulative) fit: coefficients, their covariance, variance components, Q, and whether
    the optimiser converged (False where nothing was fitted: NaN)."""

    beta: Array
    cov: Array
    theta: Array
    s2w: float
    qe: float
    qe_df: int
    typical_v: float
    k: int
    converged: bool


@dataclass(frozen=True)
class _Fits:
    """Deleted (or cumulative) fits stacked over deletions: ``beta`` (d, p), ``cov`` (d, p, p), ``theta``
    (d, t), and per deletion ``s2w``, ``qe``, ``qe_df``, ``typical_v``, ``k`` and ``converged``."""

    beta: Array
    cov: Array
    theta: Array
    s2w: Array
    qe: Array
    qe_df: Array
    typical_v: Array
    k: Array
    converged: NDArray[np.bool_]


def _stack(fits: Sequence[_Fit]) -> _Fits:
    return _Fits(
        np.array([f.beta for f in fits]),
        np.array([f.cov for f in fits]),
        np.array([f.theta for f in fits]).reshape(len(fits), -1),
        np.array([f.s2w for f in fits]),
        np.array([f.qe for f in fits]),
        np.array([f.qe_df for f in fits], dtype=float),
        np.array([f.typical_v for f in fits]),
        np.array([f.k for f in fits], dtype=float),
        np.array([f.converged for f in fits], dtype=bool),
    )


def _check(res: object, what: str) -> MetaResult:
    if not isinstance(res, MetaResult):
        raise InputError("{0}: give the result of meta() (got {1})", what, type(res).__name__)
    res.require_independent_errors(what)  # deletion refits of the CHE model (rho) are not implemented
    return res


def _univariate(res: MetaResult, what: str) -> None:
    if res.model == "multilevel":
        raise InputError("{0} is for univariate models: fit meta() without cluster", what)


def _intercept_only(res: MetaResult, what: str) -> None:
    if res.state.x.shape[1] != 1 or not res.state.terms.has_intercept:
        raise InputError("{0} is for models without moderators", what)


def _column(res: MetaResult, name: object, key: str) -> pd.Series:
    """The column ``name`` of the fitted rows (``key`` names the argument): one value for every effect,
    all numbers or all text (``1`` and ``"1"`` would otherwise be two different clusters)."""
    frame = res.state.frame
    if not isinstance(name, str):
        raise InputError("{0} must be the name of a column (got {1})", key, type(name).__name__)
    if name not in frame.columns:
        raise InputError("column '{0}' not found (available: {1})", name, ", ".join(map(str, frame.columns)))
    values = frame[name].reset_index(drop=True)
    missing = np.flatnonzero(values.isna().to_numpy())
    if missing.size:
        raise InputError(
            "column '{0}' ({1}) is missing for effect {2}: every effect needs a value",
            name,
            key,
            int(missing[0]) + 1,
        )
    row = mixed_type_position(values)
    if row is not None:
        raise InputError("column '{0}' ({1}) mixes numbers and text (effect {2}): give one type", name, key, row + 1)
    return values


def _recode(codes: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.unique(c, return_inverse=True)[1].astype(np.intp) for c in codes]


def _nan_fit(p: int, n_theta: int, k: int) -> _Fit:
    nan = np.nan
    return _Fit(np.full(p, nan), np.full((p, p), nan), np.full(n_theta, nan), nan, nan, k - p, nan, k, False)


def _refit(res: MetaResult, keep: np.ndarray) -> _Fit:
    """The model refitted on the rows ``keep``: Newton from the full fit's variance components (multilevel:
    without the global search, the deleted fit's optimum lying next to the full one). Moderators no longer
    estimable without the rows give NaN (metafor: NA)."""
    st = res.state
    x, y, v = st.x[keep], st.y[keep], st.v[keep]
    k, p = x.shape
    if k < p or np.linalg.matrix_rank(x) < p:
        return _nan_fit(p, len(res.variance), k)
    basis, r_factor = np.linalg.qr(x)
    to_original = np.linalg.inv(r_factor)
    fe = weighted_ls(basis, y, 1.0 / v)
    qe_df = k - p
    method = res.method
    converged = True  # closed forms and moment estimators
    if res.model == "multilevel":
        codes = _recode([c[keep] for c in st.level_codes])
        design = design_from_rows(basis, y, v, codes, residual=False)
        held = list(res.variance_fixed)
        start = np.asarray(res.variance, dtype=float)
        ev, convergence = maximize(design, method, start, fixed=held, global_search=False)  # type: ignore[arg-type]
        converged = convergence.converged
    elif res.model == "fixed":
        ev = evaluate(design_from_rows(basis, y, v, [], residual=False), np.zeros(0), "ML")
    else:
        design = design_from_rows(basis, y, v, [], residual=True)
        tau2 = float(res.variance[0])
        if qe_df == 0 and not res.variance_fixed[0]:  # one effect: tau^2 = 0, as metafor
            ev = evaluate(design, np.zeros(1), "ML")
        elif res.variance_fixed[0]:
            ev = evaluate(design, np.array([tau2]), "ML")
        elif method in LIKELIHOOD:
            ev, convergence = maximize(design, method, np.array([tau2]))  # type: ignore[arg-type]
            converged = convergence.converged
        else:
            ev = evaluate(design, np.array([moment_tau2(method, basis, y, v)]), "ML")  # type: ignore[arg-type]
    cov = to_original @ ev.cov_beta @ to_original.T
    s2w = float(ev.rss / qe_df) if res.test == "knha" else 1.0
    return _Fit(
        to_original @ ev.beta,
        cov * s2w,
        np.asarray(ev.theta, dtype=float),
        s2w,
        fe.rss,
        qe_df,
        float(qe_df / fe.trace_p) if qe_df > 0 else np.nan,  # one effect: no heterogeneity to measure
        k,
        converged,
    )


def _summary_rows(res: MetaResult, fits: _Fits) -> pd.DataFrame:
    """metafor's ``leave1out``/``cumul`` columns for intercept-only models."""
    se = np.sqrt(fits.cov[:, 0, 0])
    df = fits.qe_df if res.test in ("t", "knha") else np.full(fits.k.size, np.inf)
    coef = coefficient_table(("intrcpt",), fits.beta[:, 0], se, df, res.level)
    with np.errstate(divide="ignore", invalid="ignore"):
        qp = np.where(fits.qe_df > 0, special.chdtrc(np.maximum(fits.qe_df, 1.0), fits.qe), 1.0)
        table: dict[str, Array] = {
            "k": fits.k,
            "estimate": fits.beta[:, 0],
            "se": se,
            "zval": coef.stat,
            "pval": coef.pval,
            "ci_lb": coef.ci_lb,
            "ci_ub": coef.ci_ub,
            "Q": fits.qe,
            "Qp": qp,
        }
        if res.model == "multilevel":
            for j, name in enumerate(res.variance_names):
                table[name.replace(" ", "_")] = fits.theta[:, j]
        elif res.model == "fixed":
            table["I2"] = np.where(fits.qe > 0, np.maximum(0.0, 100.0 * (fits.qe - fits.qe_df) / fits.qe), 0.0)
            table["H2"] = np.where(fits.qe_df > 0, fits.qe / fits.qe_df, 1.0)
        else:
            tau2 = fits.theta[:, 0]
            one = fits.qe_df == 0  # one effect
            table["tau2"] = tau2
            table["I2"] = np.where(one, 0.0, 100.0 * tau2 / (tau2 + fits.typical_v))
            table["H2"] = np.where(one, 1.0, (tau2 + fits.typical_v) / fits.typical_v)
    return pd.DataFrame(table)


class _TableResult(ResultDisplay):
    """A diagnostics table (one row per effect, cluster or step) with notes: ``tidy()`` is the table,
    ``to_dict()`` its rows (NaN as null) after the result's own fields (:meth:`_fields`), ``summary()`` the
    table under :meth:`_heading`."""

    table: pd.DataFrame
    notes: tuple[str, ...]

    def _heading(self) -> str:  # pragma: no cover - every result defines it
        raise NotImplementedError

    def _fields(self) -> dict[str, object]:  # pragma: no cover - every result defines it
        raise NotImplementedError

    def tidy(self) -> pd.DataFrame:
        return self.table.copy()

    def to_dict(self) -> dict[str, object]:
        rows = self.table.replace({np.nan: None}).to_dict(orient="records")
        return {**self._fields(), "rows": rows, "notes": list(self.notes)}

    def summary(self) -> str:
        return self._heading() + "\n" + self.table.to_string(index=False) + _note_lines(self.notes)


@dataclass(frozen=True, eq=False, repr=False)
class LeaveOneOut(_TableResult):
    """Estimates with one effect, or one cluster, left out (metafor ``leave1out``)."""

    table: pd.DataFrame
    left_out: str
    level: float
    notes: tuple[str, ...] = ()

    def _fields(self) -> dict[str, object]:
        return {"left_out": self.left_out, "level": self.level}

    def _heading(self) -> str:
        return f"Leave-one-out estimates by {self.left_out} ({format_level(self.level)} CI)"


@dataclass(frozen=True, eq=False, repr=False)
class CumulativeResult(_TableResult):
    """Cumulative meta-analysis: the estimate after each effect in the given order (metafor ``cumul``)."""

    table: pd.DataFrame
    order: str
    level: float
    notes: tuple[str, ...] = ()

    def _fields(self) -> dict[str, object]:
        return {"order": self.order, "level": self.level}

    def _heading(self) -> str:
        return f"Cumulative meta-analysis ordered by {self.order} ({format_level(self.level)} CI)"


@dataclass(frozen=True, eq=False, repr=False)
class InfluenceResult(_TableResult):
    """Case-deletion diagnostics, one row per effect (or cluster); what the table holds is named in ``kind``."""

    table: pd.DataFrame
    kind: str
    notes: tuple[str, ...] = ()

    def _fields(self) -> dict[str, object]:
        return {"kind": self.kind}

    def _heading(self) -> str:
        return self.kind


@dataclass(frozen=True, eq=False, repr=False)
class StudentizedResiduals(_TableResult):
    """Externally studentized residuals (metafor ``rstudent``): ``table`` one row per effect (resid, se, z,
    and the cluster deleted with it); with ``cluster``, ``clusters`` one row per cluster with
    ``X2 = e_c' S_c^-1 e_c`` and ``k``, its degrees of freedom (the rows of the cluster)."""

    table: pd.DataFrame
    clusters: pd.DataFrame | None
    left_out: str
    notes: tuple[str, ...] = ()

    def _fields(self) -> dict[str, object]:
        return {"left_out": self.left_out}

    def _heading(self) -> str:
        return f"Externally studentized residuals, deleting each {self.left_out}"

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        if self.clusters is not None:
            out["clusters"] = self.clusters.replace({np.nan: None}).to_dict(orient="records")
        return out

    def summary(self) -> str:
        text = self._heading() + "\n" + self.table.to_string(index=False)
        if self.clusters is not None:
            text += f"\n\nBy {self.left_out}: X2 on k df\n" + self.clusters.to_string(index=False)
        return text + _note_lines(self.notes)


def _note_lines(notes: Sequence[str]) -> str:
    return "".join(f"\nNote: {note}" for note in notes)


def _unconverged(fits: _Fits) -> NDArray[np.bool_]:
    """Fits the optimiser left unconverged (rows not fitted at all, NaN, are noted apart)."""
    return np.asarray(~fits.converged & np.isfinite(fits.beta).all(axis=1), dtype=np.bool_)


class _Deletions:
    """The deleted fits of one result for one deletion set (each effect, or each cluster of a column),
    shared by every diagnostic: ``rows`` lists the rows each deletion removes (``members`` concatenated,
    ``owner`` the deletion of each), ``fits`` the refits. It refers to its result weakly: it is kept in
    :data:`_MEMO` under that result, which must stay free to go once the user drops it."""

    def __init__(self, res: MetaResult, cluster: str | None) -> None:
        self._res = weakref.ref(res)
        k = res.k
        if cluster is None:
            codes = np.arange(k, dtype=np.intp)
            self.labels = pd.DataFrame({"effect": np.arange(1, k + 1)})
            self.what = "effect"
        else:
            values = _column(res, cluster, "cluster")
            first = pd.unique(values)
            if len(first) < 2:
                raise InputError(
                    "cluster '{0}' has a single value ({1}): leaving it out leaves no effects", cluster, str(first[0])
                )
            codes = pd.Index(first).get_indexer(pd.Index(values)).astype(np.intp)
            self.labels = pd.DataFrame({cluster: first})
            self.what = cluster
        self.codes = codes
        self.members = np.argsort(codes, kind="stable").astype(np.intp)
        self.owner = codes[self.members]
        self.n = len(self.labels)

    @property
    def res(self) -> MetaResult:
        """The result (alive while any diagnostic of it runs: the caller holds it)."""
        res = self._res()
        if res is None:  # pragma: no cover - only reachable through the memo, keyed by a live result
            raise ReferenceError("the result of these deletions is gone")
        return res

    def keep(self, d: int) -> np.ndarray:
        return np.asarray(self.codes != d)

    @cached_property
    def notes(self) -> tuple[str, ...]:
        """Why rows of the diagnostics are NaN: deletions after which the moderators cannot be estimated
        (metafor: NA); and which deleted fits the optimiser did not bring to convergence."""
        labels = self.labels.iloc[:, 0].to_numpy()
        out: list[str] = []
        gone = np.flatnonzero(~np.isfinite(self.fits.beta).all(axis=1))
        if gone.size:
            out.append(
                Message(
                    "without {0} {1} the moderators cannot be estimated (one is constant, or a level is gone): NaN",
                    self.what,
                    listed(labels[gone]),
                )
            )
        unconverged = np.flatnonzero(_unconverged(self.fits))
        if unconverged.size:
            out.append(
                Message(
                    "the refit without {0} {1} did not converge: treat its rows with caution",
                    self.what,
                    listed(labels[unconverged]),
                )
            )
        return tuple(out)

    @cached_property
    def _basis(self) -> tuple[Array, Array]:
        """An orthonormal basis of the moderators and the map back to their coefficients."""
        basis, r_factor = np.linalg.qr(self.res.state.x)
        return basis, np.linalg.inv(r_factor)

    @cached_property
    def fits(self) -> _Fits:
        """The deleted fits: multilevel models all at once (:func:`edueffects.core.deletion.deletion_refits`),
        others one refit per deletion."""
        res = self.res
        if res.model != "multilevel":
            return _stack([_refit(res, self.keep(d)) for d in range(self.n)])
        st = res.state
        basis, to_original = self._basis
        out = deletion_refits(
            basis,
            st.y,
            st.v,
            list(st.level_codes),
            res.method,  # type: ignore[arg-type]
            np.asarray(res.variance, dtype=float),
            self.members,
            self.owner,
            self.n,
            fixed=list(res.variance_fixed),
        )
        p = basis.shape[1]
        return _Fits(
            beta=out.beta @ to_original.T,
            cov=np.einsum("ij,djk,lk->dil", to_original, out.cov_beta, to_original),
            theta=out.theta,
            s2w=np.ones(self.n),
            qe=out.qe,
            qe_df=out.k - p,
            typical_v=np.full(self.n, np.nan),
            k=out.k,
            converged=out.converged,
        )

    @cached_property
    def full_cov(self) -> Array:
        """``(X'M(-c)^-1 X)^-1 s2w(-c)``: the covariance of ``b`` on all rows at each deleted fit's variance
        components (the scale of DFBETAS)."""
        res, st, fits = self.res, self.res.state, self.fits
        p = st.x.shape[1]
        out = np.full((self.n, p, p), np.nan)
        ok = np.all(np.isfinite(fits.theta), axis=1) & np.isfinite(fits.s2w)
        if res.model == "multilevel":
            basis, to_original = self._basis
            cov = full_data_covariances(basis, st.y, st.v, list(st.level_codes), fits.theta)
            out = np.einsum("ij,djk,lk->dil", to_original, cov, to_original)
        else:
            tau2 = fits.theta[:, 0] if res.model == "univariate" else np.zeros(self.n)
            w = 1.0 / (st.v[None, :] + tau2[:, None])
            xtwx = np.einsum("dk,ki,kj->dij", w[ok], st.x, st.x)
            out[ok] = np.linalg.inv(xtwx)
        return out * fits.s2w[:, None, None]

    def marginal_blocks(self, rows: IntArray, owner: IntArray) -> Array:
        """``M(-c)[rows, rows]`` for deletions ``owner`` (n, s, s): the marginal covariance among ``rows``
        (each of shape (n, s)) at the deleted fit's variance components, times ``s2w``."""
        st, fits = self.res.state, self.fits
        s = rows.shape[1]
        block = np.zeros((rows.shape[0], s, s))
        diag = st.v[rows]
        if self.res.model == "multilevel":
            for level, codes in enumerate(st.level_codes):
                same = codes[rows][:, :, None] == codes[rows][:, None, :]
                block += fits.theta[owner, level][:, None, None] * same
        elif self.res.model == "univariate":
            diag = diag + fits.theta[owner, 0][:, None]
        block[:, np.arange(s), np.arange(s)] += diag
        return block * fits.s2w[owner][:, None, None]


_MEMO: weakref.WeakKeyDictionary[MetaResult, dict[str | None, _Deletions]] = weakref.WeakKeyDictionary()


def _deletions(res: MetaResult, cluster: str | None) -> _Deletions:
    """The shared deletion record of ``res`` for ``cluster`` (computed once, refits on first use)."""
    if cluster is not None and not isinstance(cluster, str):
        raise InputError("{0} must be the name of a column (got {1})", "cluster", type(cluster).__name__)
    memo = _MEMO.setdefault(res, {})
    if cluster not in memo:
        memo[cluster] = _Deletions(res, cluster)
    return memo[cluster]


def leave1out(res: MetaResult, cluster: str | None = None) -> LeaveOneOut:
    """Leave-one-out estimates (metafor ``leave1out``): the model without each effect, or (``cluster``,
    a column of the data) without each whole cluster, in order of first appearance; estimate, se,
    z (or t), p, CI, Q, Qp, and tau^2, I^2, H^2 (univariate) or the variance components (multilevel)."""
    res = _check(res, "leave1out")
    _intercept_only(res, "leave1out")
    dels = _deletions(res, cluster)
    table = pd.concat([dels.labels.copy(), _summary_rows(res, dels.fits)], axis=1)
    return LeaveOneOut(table, dels.what, res.level, dels.notes)


def cumul(res: MetaResult, order: str) -> CumulativeResult:
    """Cumulative meta-analysis (metafor ``cumul``): the model refitted on the first 1, 2, ..., k effects,
    sorted by the column ``order`` (stable for ties)."""
    res = _check(res, "cumul")
    _univariate(res, "cumul")
    _intercept_only(res, "cumul")
    values = _column(res, order, "order")
    sort = values.sort_values(kind="stable").index.to_numpy()
    fits = []
    for n in range(1, res.k + 1):
        keep = np.zeros(res.k, dtype=bool)
        keep[sort[:n]] = True
        fits.append(_refit(res, keep))
    labels = pd.DataFrame({"effect": sort + 1, order: values.to_numpy()[sort]})
    stacked = _stack(fits)
    unconverged = np.flatnonzero(_unconverged(stacked)) + 1  # the number of effects of each fit
    notes: tuple[str, ...] = ()
    if unconverged.size:
        notes = (
            Message(
                "the fit of the first {0} effects did not converge: treat its rows with caution",
                listed(unconverged),
            ),
        )
    table = pd.concat([labels, _summary_rows(res, stacked)], axis=1)
    return CumulativeResult(table, order, res.level, notes)


def _hat_univariate(res: MetaResult) -> Array:
    st = res.state
    w = 1.0 / (st.v + st.residual_variance)
    hat: Array = np.einsum("ij,jk,ik->i", st.x, st.cov_beta, st.x * w[:, None])
    return hat


def _hat(res: MetaResult) -> Array:
    st = res.state
    if res.model != "multilevel":
        return _hat_univariate(res)
    hat = np.empty(res.k)
    for rows, block in iter_blocks(st.level_codes[0], st.v, st.level_codes, st.theta):
        wx = np.linalg.inv(block) @ st.x[rows]
        hat[rows] = np.einsum("csi,ij,csj->cs", st.x[rows], st.cov_beta, wx)
    return hat


def hatvalues(res: MetaResult) -> InfluenceResult:
    """Hat values ``diag(X (X'WX)^-1 X'W)`` (metafor ``hatvalues.rma.uni``, ``hatvalues.rma.mv``), ``W``
    the inverse marginal covariance, computed per cluster block for multilevel models."""
    res = _check(res, "hatvalues")
    return InfluenceResult(pd.DataFrame({"effect": np.arange(1, res.k + 1), "hat": _hat(res)}), "Hat values")


def _cook(res: MetaResult, dels: _Deletions) -> Array:
    dfb = res.state.beta[None, :] - dels.fits.beta
    out: Array = np.asarray(np.einsum("di,ij,dj->d", dfb, np.linalg.inv(res.cov_beta), dfb), dtype=np.float64)
    return out


def cooks_distance(res: MetaResult, cluster: str | None = None) -> InfluenceResult:
    """Cook's distances ``(b - b(-i))' V_b^-1 (b - b(-i))`` of every effect or (``cluster``) every cluster,
    with the variance components re-estimated (metafor ``cooks.distance.rma.mv``, ``cooks.distance.rma.uni``)."""
    res = _check(res, "cooks_distance")
    dels = _deletions(res, cluster)
    labels = dels.labels.copy()
    labels["cook_d"] = _cook(res, dels)
    return InfluenceResult(labels, "Cook's distances", dels.notes)


def _dfbetas(res: MetaResult, dels: _Deletions) -> Array:
    dfb = res.state.beta[None, :] - dels.fits.beta
    out: Array = dfb / np.sqrt(np.diagonal(dels.full_cov, axis1=1, axis2=2))
    return out


def dfbetas(res: MetaResult, cluster: str | None = None) -> InfluenceResult:
    """DFBETAS of every effect or (``cluster``) every cluster: ``(b - b(-c)) / sqrt(diag((X'M(-c)^-1 X)^-1))``,
    ``M(-c)`` the marginal covariance of all rows at the deleted fit's variance components (metafor
    ``dfbetas.rma.mv``; ``dfbetas.rma.uni`` for univariate models, times the Knapp–Hartung factor)."""
    res = _check(res, "dfbetas")
    dels = _deletions(res, cluster)
    table = dels.labels.copy()
    for j, name in enumerate(res.coefficients.names):
        table[f"dfbetas_{name}"] = _dfbetas(res, dels)[:, j]
    return InfluenceResult(table, "DFBETAS", dels.notes)


def _rstudent(res: MetaResult, dels: _Deletions) -> tuple[Array, Array, Array]:
    """Deleted residuals, their standard errors (per row) and ``X2`` per deletion (see the module docstring)."""
    st, fits = res.state, dels.fits
    k = res.k
    resid, se, x2 = np.full(k, np.nan), np.full(k, np.nan), np.full(dels.n, np.nan)
    sizes = np.bincount(dels.owner, minlength=dels.n)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for size in np.unique(sizes[sizes > 0]).tolist():  # deletions of equal size as one batch of blocks
        which = np.flatnonzero(sizes == size)
        rows = dels.members[starts[which][:, None] + np.arange(size)[None, :]]
        xc = st.x[rows]  # (n, s, p)
        e = st.y[rows] - np.einsum("nsp,np->ns", xc, fits.beta[which])
        e[np.abs(e) < 100 * np.finfo(float).eps] = 0.0
        s_c = dels.marginal_blocks(rows, which) + np.einsum("nsp,npq,ntq->nst", xc, fits.cov[which], xc)
        resid[rows] = e
        se[rows] = np.sqrt(np.diagonal(s_c, axis1=1, axis2=2))
        ok = np.all(np.isfinite(s_c), axis=(1, 2)) & np.all(np.isfinite(e), axis=1)
        x2[which[ok]] = np.einsum("ns,ns->n", e[ok], np.linalg.solve(s_c[ok], e[ok][..., None])[..., 0])
    return resid, se, x2


def rstudent(res: MetaResult, cluster: str | None = None) -> StudentizedResiduals:
    """Externally studentized residuals (metafor ``rstudent.rma.mv``, ``rstudent.rma.uni``): every effect
    against the fit without it, or (``cluster``) without its whole cluster; by cluster also the
    Mahalanobis-type ``X2 = e_c' S_c^-1 e_c`` of each cluster with its ``k`` degrees of freedom."""
    res = _check(res, "rstudent")
    dels = _deletions(res, cluster)
    resid, se, x2 = _rstudent(res, dels)
    table = pd.DataFrame({"effect": np.arange(1, res.k + 1)})
    clusters = None
    if cluster is not None:
        table[cluster] = dels.labels[cluster].to_numpy()[dels.codes]
        clusters = dels.labels.copy()
        clusters["X2"] = x2
        clusters["k"] = np.bincount(dels.codes, minlength=dels.n)
    table["resid"], table["se"], table["z"] = resid, se, resid / se
    return StudentizedResiduals(table, clusters, dels.what, dels.notes)


def influence(res: MetaResult, cluster: str | None = None) -> InfluenceResult:
    """Case-deletion diagnostics. Univariate models (metafor ``influence.rma.uni``): rstudent, dffits,
    cook_d, cov_r, tau2_del, QE_del, hat, weight (percent) and one DFBETAS column per coefficient.
    Multilevel models, by effect or (``cluster``) by cluster, from one set of deleted fits: rstudent
    (by effect: z, resid, se; by cluster: X2 on k df), cook_d, the variance components of the deleted
    fit, hat (by effect) and one DFBETAS column per coefficient (``rstudent.rma.mv``,
    ``cooks.distance.rma.mv``, ``hatvalues.rma.mv``, ``dfbetas.rma.mv``)."""
    res = _check(res, "influence")
    if res.model == "multilevel":
        return _influence_multilevel(res, cluster)
    if cluster is not None:
        raise InputError("influence by cluster is for multilevel models: fit meta() with cluster")
    st = res.state
    x, v = st.x, st.v
    k = res.k
    tau2 = st.residual_variance
    hat = _hat_univariate(res)
    w = 1.0 / (v + tau2)
    weight = 100.0 * w / np.sum(w)
    dels = _deletions(res, None)
    fits = dels.fits
    tau2_del = fits.theta[:, 0] if res.model == "univariate" else np.zeros(k)
    delpred = np.einsum("ip,ip->i", x, fits.beta)
    with np.errstate(invalid="ignore"):  # not estimable without the effect: NaN (metafor NA)
        cov_r = np.linalg.det(fits.cov) / np.linalg.det(res.cov_beta)
    resid, se, _ = _rstudent(res, dels)
    table = pd.DataFrame(
        {
            "effect": np.arange(1, k + 1),
            "rstudent": resid / se,
            "dffits": (x @ st.beta - delpred) / np.sqrt(fits.s2w * hat * (tau2_del + v)),
            "cook_d": _cook(res, dels),
            "cov_r": cov_r,
            "tau2_del": tau2_del,
            "QE_del": fits.qe,
            "hat": hat,
            "weight": weight,
        }
    )
    for j, name in enumerate(res.coefficients.names):
        table[f"dfbetas_{name}"] = _dfbetas(res, dels)[:, j]
    return InfluenceResult(table, "Influence diagnostics", dels.notes)


def _influence_multilevel(res: MetaResult, cluster: str | None) -> InfluenceResult:
    dels = _deletions(res, cluster)
    resid, se, x2 = _rstudent(res, dels)
    table = dels.labels.copy()
    if cluster is None:
        table["rstudent"], table["resid"], table["se"] = resid / se, resid, se
    else:
        table["X2"] = x2
        table["k"] = np.bincount(dels.codes, minlength=dels.n)
    table["cook_d"] = _cook(res, dels)
    for j, name in enumerate(res.variance_names):
        table[name.replace(" ", "_") + "_del"] = dels.fits.theta[:, j]
    if cluster is None:
        table["hat"] = _hat(res)
    values = _dfbetas(res, dels)
    for j, name in enumerate(res.coefficients.names):
        table[f"dfbetas_{name}"] = values[:, j]
    by = "effect" if cluster is None else cluster
    return InfluenceResult(table, f"Influence diagnostics by {by}", dels.notes)
