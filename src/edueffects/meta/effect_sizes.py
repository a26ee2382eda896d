"""Effect-size conversions used in education meta-analysis.

- Fisher z (Fisher 1921): ``z = atanh(r)``, ``v = 1/(n - 3)``; back-transformation ``r = tanh(z)``.
- Standardized mean difference (Hedges 1981): ``d = (m1 - m2)/s_pooled``, Hedges' ``g = J d`` with
  ``J = 1 - 3/(4 (n1 + n2 - 2) - 1)``; ``v = (n1 + n2)/(n1 n2) + g^2 / (2 (n1 + n2))`` (metafor's
  large-sample ``vtype = "LS"``).
- r <-> d (Borenstein et al. 2009): ``d = 2r / sqrt(1 - r^2)``, ``r = d / sqrt(d^2 + a)`` with
  ``a = (n1 + n2)^2 / (n1 n2)`` (4 for equal groups).
- SE from a reported CI: ``(ub - lb) / (2 z_{1-alpha/2})`` on the scale where the CI is symmetric.

As metafor's ``escalc`` (Viechtbauer 2010) computes them:

- ``SMD``: ``g = J d`` with the exact correction ``J = G(m/2) / (sqrt(m/2) G((m-1)/2))``, ``m = n1 + n2 - 2``
  (Hedges 1981; ``correction="approx"``: ``1 - 3/(4m - 1)``), ``v = 1/n1 + 1/n2 + g^2 / (2 (n1 + n2))``.
  A d from other statistics goes through the same formula (escalc's ``di``/``ti`` arguments).
- ``SMCR`` (raw-score standardisation, Becker 1988): ``g = J (m1 - m2) / sd1``, ``m = n - 1``,
  ``v = 2 (1 - r)/n + g^2/(2n)``; ``SMCC`` (change-score): ``g = J (m1 - m2) / sd_d``,
  ``sd_d = sqrt(sd1^2 + sd2^2 - 2 r sd1 sd2)``, ``v = 1/n + g^2/(2n)``.
- ``COR``: ``r``, ``v = (1 - r^2)^2 / (n - 1)``; ``ZCOR``: ``atanh(r)``, ``v = 1/(n - 3)``.
- ``OR``/``RR``/``RD`` from 2x2 counts (``a, b`` events/non-events of group 1, ``c, d`` of group 2), 1/2 added
  to every cell of a table with a zero cell (``add = 1/2, to = "only0"``):
  ``log OR = log(ad/bc)``, ``v = 1/a + 1/b + 1/c + 1/d``; ``log RR = log(p1/p2)``,
  ``v = 1/a - 1/n1 + 1/c - 1/n2``; ``RD = p1 - p2``, ``v = p1(1-p1)/n1 + p2(1-p2)/n2``.

Conversions (psychmeta's ``convert_es``: Lipsey & Wilson 2001; Chinn 2000; Schmidt & Hunter 2015), with
``a = n^2 / (n1 n2)`` (4 for equal groups):

- d from t: ``t sqrt(1/n1 + 1/n2)``; from F(1, df): ``sign sqrt(F (1/n1 + 1/n2))``; from chi2(1):
  ``r = sign sqrt(chi2 / n)`` then r -> d; from a log odds ratio: ``log OR sqrt(3) / pi``;
  r -> d: ``sqrt(a) r / sqrt(1 - r^2)``.
- r from t: ``t / sqrt(t^2 + n - 2)``; from F(1, df): ``sign sqrt(F / (F + n - 2))``; from chi2(1):
  ``sign sqrt(chi2 / n)``; from d: ``d / sqrt(d^2 + a)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from edueffects.core.distributions import norm_ppf
from edueffects.core.errors import InputError, Phrase
from edueffects.core.jet import Array
from edueffects.options import SMD_CORRECTIONS, EffectMeasure, SmdCorrection


def _array(name: str, values: ArrayLike) -> Array:
    arr = np.asarray(values, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(np.atleast_1d(arr)))
    if bad.size:
        raise InputError("{0} row {1}: value is missing or not finite", name, int(bad[0]) + 1)
    return arr


def fisher_z(r: ArrayLike, n: ArrayLike) -> tuple[Array, Array]:
    """Fisher's z of correlations and its sampling variance ``1/(n - 3)``."""
    ra, na = _array("r", r), _array("n", n)
    if np.any(np.abs(ra) >= 1):
        raise InputError("r must lie strictly between -1 and 1")
    if np.any(na <= 3):
        raise InputError("n must exceed 3 for the variance of Fisher's z")
    return np.arctanh(ra), 1.0 / (na - 3.0)


def z_to_r(z: ArrayLike) -> Array:
    """Back-transform Fisher's z to r."""
    return np.tanh(_array("z", z))


def se_from_ci(lower: ArrayLike, upper: ArrayLike, level: float = 95.0) -> Array:
    """Standard error from a symmetric (normal-theory) confidence interval."""
    lo, hi = _array("lower", lower), _array("upper", upper)
    if np.any(hi <= lo):
        raise InputError("each CI upper bound must exceed its lower bound")
    z = float(norm_ppf(1.0 - (1.0 - level / 100.0) / 2.0))
    return np.asarray((hi - lo) / (2.0 * z))


def smd(
    m1: ArrayLike, m2: ArrayLike, sd1: ArrayLike, sd2: ArrayLike, n1: ArrayLike, n2: ArrayLike, hedges: bool = True
) -> tuple[Array, Array]:
    """Standardized mean difference (Hedges' g by default, Cohen's d otherwise) and its variance."""
    a1, a2 = _array("m1", m1), _array("m2", m2)
    s1, s2 = _array("sd1", sd1), _array("sd2", sd2)
    k1, k2 = _array("n1", n1), _array("n2", n2)
    if np.any(k1 < 2) or np.any(k2 < 2):
        raise InputError("group sizes must be at least 2")
    pooled = np.sqrt(((k1 - 1) * s1**2 + (k2 - 1) * s2**2) / (k1 + k2 - 2))
    d = (a1 - a2) / pooled
    if hedges:
        d = d * (1.0 - 3.0 / (4.0 * (k1 + k2 - 2) - 1.0))
    v = (k1 + k2) / (k1 * k2) + d**2 / (2.0 * (k1 + k2))
    return d, v


def r_to_d(r: ArrayLike, n1: ArrayLike | None = None, n2: ArrayLike | None = None) -> Array:
    """Correlation to d: ``sqrt(a) r / sqrt(1 - r^2)``, ``a = (n1+n2)^2/(n1 n2)`` (psychmeta
    ``convert_es``), 4 (equal groups: ``2r / sqrt(1 - r^2)``) without group sizes."""
    ra = _array("r", r)
    a = 4.0 if n1 is None or n2 is None else _group_factor(_array("n1", n1), _array("n2", n2))
    return np.asarray(np.sqrt(a) * ra / np.sqrt(1.0 - ra**2))


def _group_factor(n1: Array, n2: Array) -> Array:
    return np.asarray((n1 + n2) ** 2 / (n1 * n2))


def d_to_r(d: ArrayLike, n1: ArrayLike | None = None, n2: ArrayLike | None = None) -> Array:
    """d to a point-biserial correlation; ``a = (n1+n2)^2/(n1 n2)``, 4 without group sizes."""
    da = _array("d", d)
    a = (
        4.0
        if n1 is None or n2 is None
        else (_array("n1", n1) + _array("n2", n2)) ** 2 / (_array("n1", n1) * _array("n2", n2))
    )
    return np.asarray(da / np.sqrt(da**2 + a))


# ---- escalc-style measures ------------------------------------------------------------------------


def hedges_j(m: ArrayLike, correction: SmdCorrection = "exact") -> Array:
    """Small-sample correction of d with ``m`` degrees of freedom: exact ``G(m/2) / (sqrt(m/2) G((m-1)/2))``
    (metafor's ``.cmicalc``), or ``1 - 3/(4m - 1)`` (``"approx"``); undefined (NaN) for ``m <= 1``."""
    from scipy.special import gammaln

    ma = np.asarray(m, dtype=np.float64)
    if correction not in SMD_CORRECTIONS:
        raise InputError("correction '{0}' is not one of {1}", correction, ", ".join(SMD_CORRECTIONS))
    with np.errstate(invalid="ignore", divide="ignore"):
        if correction == "approx":
            out = 1.0 - 3.0 / (4.0 * ma - 1.0)
        else:
            out = np.exp(gammaln(ma / 2.0) - np.log(np.sqrt(ma / 2.0)) - gammaln((ma - 1.0) / 2.0))
    return np.asarray(np.where(ma > 1, out, np.nan))


def smd_from_d(d: ArrayLike, n1: ArrayLike, n2: ArrayLike, correction: SmdCorrection = "exact") -> tuple[Array, Array]:
    """Hedges' g and its variance from d (escalc ``SMD`` with ``di``): ``g = J d``,
    ``v = 1/n1 + 1/n2 + g^2 / (2 (n1 + n2))``, ``J`` with ``m = n1 + n2 - 2``."""
    da, k1, k2 = _array("d", d), _array("n1", n1), _array("n2", n2)
    g = hedges_j(k1 + k2 - 2.0, correction) * da
    return g, 1.0 / k1 + 1.0 / k2 + g**2 / (2.0 * (k1 + k2))


def smd_escalc(
    m1: ArrayLike,
    m2: ArrayLike,
    sd1: ArrayLike,
    sd2: ArrayLike,
    n1: ArrayLike,
    n2: ArrayLike,
    correction: SmdCorrection = "exact",
) -> tuple[Array, Array]:
    """Standardized mean difference as escalc ``measure="SMD"`` (exact small-sample correction by
    default): ``d = (m1 - m2) / s_pooled``, then :func:`smd_from_d`."""
    a1, a2, s1, s2 = _array("m1", m1), _array("m2", m2), _array("sd1", sd1), _array("sd2", sd2)
    k1, k2 = _array("n1", n1), _array("n2", n2)
    pooled = np.sqrt(((k1 - 1.0) * s1**2 + (k2 - 1.0) * s2**2) / (k1 + k2 - 2.0))
    return smd_from_d((a1 - a2) / pooled, k1, k2, correction)


def smcr(
    m1: ArrayLike, m2: ArrayLike, sd1: ArrayLike, n: ArrayLike, r: ArrayLike, correction: SmdCorrection = "exact"
) -> tuple[Array, Array]:
    """Standardized mean change, raw-score standardisation (escalc ``SMCR``): ``g = J (m1 - m2)/sd1``,
    ``m = n - 1``, ``v = 2 (1 - r)/n + g^2 / (2n)``."""
    a1, a2, s1, na, ra = _array("m1", m1), _array("m2", m2), _array("sd1", sd1), _array("n", n), _array("r", r)
    g = hedges_j(na - 1.0, correction) * (a1 - a2) / s1
    return g, 2.0 * (1.0 - ra) / na + g**2 / (2.0 * na)


def smcc(
    m1: ArrayLike,
    m2: ArrayLike,
    sd1: ArrayLike,
    sd2: ArrayLike,
    n: ArrayLike,
    r: ArrayLike,
    correction: SmdCorrection = "exact",
) -> tuple[Array, Array]:
    """Standardized mean change, change-score standardisation (escalc ``SMCC``): ``g = J (m1 - m2)/sd_d``,
    ``sd_d = sqrt(sd1^2 + sd2^2 - 2 r sd1 sd2)``, ``m = n - 1``, ``v = 1/n + g^2 / (2n)``."""
    a1, a2, s1, s2 = _array("m1", m1), _array("m2", m2), _array("sd1", sd1), _array("sd2", sd2)
    na, ra = _array("n", n), _array("r", r)
    sdd = np.sqrt(s1**2 + s2**2 - 2.0 * ra * s1 * s2)
    g = hedges_j(na - 1.0, correction) * (a1 - a2) / sdd
    return g, 1.0 / na + g**2 / (2.0 * na)


def cor(r: ArrayLike, n: ArrayLike) -> tuple[Array, Array]:
    """Raw correlation and its large-sample variance ``(1 - r^2)^2 / (n - 1)`` (escalc ``COR``)."""
    ra, na = _array("r", r), _array("n", n)
    return ra, (1.0 - ra**2) ** 2 / (na - 1.0)


def _two_by_two(a: ArrayLike, b: ArrayLike, c: ArrayLike, d: ArrayLike, add: float) -> tuple[Array, ...]:
    cells = [_array(name, x) for name, x in (("a", a), ("b", b), ("c", c), ("d", d))]
    zero = np.any(np.stack(cells) == 0, axis=0)
    return tuple(np.where(zero, x + add, x) for x in cells)


def log_odds_ratio(a: ArrayLike, b: ArrayLike, c: ArrayLike, d: ArrayLike, add: float = 0.5) -> tuple[Array, Array]:
    """Log odds ratio of a 2x2 table (escalc ``OR``): ``log(a d / (b c))``, ``v = 1/a + 1/b + 1/c + 1/d``;
    ``add`` is added to each cell of tables with a zero cell."""
    aa, bb, cc, dd = _two_by_two(a, b, c, d, add)
    return np.log(aa / bb) - np.log(cc / dd), 1.0 / aa + 1.0 / bb + 1.0 / cc + 1.0 / dd


def log_risk_ratio(a: ArrayLike, b: ArrayLike, c: ArrayLike, d: ArrayLike, add: float = 0.5) -> tuple[Array, Array]:
    """Log risk ratio (escalc ``RR``): ``log(p1 / p2)``, ``v = 1/a - 1/n1 + 1/c - 1/n2``."""
    aa, bb, cc, dd = _two_by_two(a, b, c, d, add)
    n1, n2 = aa + bb, cc + dd
    return np.log(aa / n1) - np.log(cc / n2), 1.0 / aa - 1.0 / n1 + 1.0 / cc - 1.0 / n2


def risk_difference(a: ArrayLike, b: ArrayLike, c: ArrayLike, d: ArrayLike, add: float = 0.5) -> tuple[Array, Array]:
    """Risk difference (escalc ``RD``): ``p1 - p2``, ``v = p1 (1 - p1)/n1 + p2 (1 - p2)/n2``."""
    aa, bb, cc, dd = _two_by_two(a, b, c, d, add)
    n1, n2 = aa + bb, cc + dd
    p1, p2 = aa / n1, cc / n2
    return p1 - p2, p1 * (1.0 - p1) / n1 + p2 * (1.0 - p2) / n2


def d_from_t(t: ArrayLike, n1: ArrayLike, n2: ArrayLike) -> Array:
    """d from an independent-groups t: ``t sqrt(1/n1 + 1/n2)``."""
    return np.asarray(_array("t", t) * np.sqrt(1.0 / _array("n1", n1) + 1.0 / _array("n2", n2)))


def d_from_f(f: ArrayLike, n1: ArrayLike, n2: ArrayLike, sign: ArrayLike = 1.0) -> Array:
    """d from a two-group F(1, df): ``sign sqrt(F (1/n1 + 1/n2))`` (F carries no direction)."""
    return np.asarray(np.sign(_array("sign", sign)) * d_from_t(np.sqrt(_array("F", f)), n1, n2))


def r_from_chi2(chi2: ArrayLike, n: ArrayLike, sign: ArrayLike = 1.0) -> Array:
    """phi from a chi-square with 1 df: ``sign sqrt(chi2 / n)``."""
    return np.asarray(np.sign(_array("sign", sign)) * np.sqrt(_array("chi2", chi2) / _array("n", n)))


def d_from_chi2(chi2: ArrayLike, n1: ArrayLike, n2: ArrayLike, sign: ArrayLike = 1.0) -> Array:
    """d from a chi-square with 1 df: phi, then r -> d with the group sizes."""
    k1, k2 = _array("n1", n1), _array("n2", n2)
    return r_to_d(r_from_chi2(chi2, k1 + k2, sign), k1, k2)


def d_from_log_odds(lor: ArrayLike) -> Array:
    """d from a log odds ratio (logistic distribution, Chinn 2000): ``log OR sqrt(3) / pi``."""
    return np.asarray(_array("log OR", lor) * np.sqrt(3.0) / np.pi)


def r_from_t(t: ArrayLike, n: ArrayLike) -> Array:
    """r from a t with ``n - 2`` df: ``t / sqrt(t^2 + n - 2)``."""
    ta = _array("t", t)
    return np.asarray(ta / np.sqrt(ta**2 + _array("n", n) - 2.0))


def r_from_f(f: ArrayLike, n: ArrayLike, sign: ArrayLike = 1.0) -> Array:
    """r from F(1, n - 2): ``sign sqrt(F / (F + n - 2))``."""
    fa = _array("F", f)
    return np.asarray(np.sign(_array("sign", sign)) * np.sqrt(fa / (fa + _array("n", n) - 2.0)))


# ---- a coded spreadsheet to yi/vi -----------------------------------------------------------------

KEYS: dict[str, str] = {
    "m1i": "mean of group 1 (or at time 1)",
    "m2i": "mean of group 2 (or at time 2)",
    "sd1i": "SD of group 1 (or at time 1)",
    "sd2i": "SD of group 2 (or at time 2)",
    "n1i": "size of group 1",
    "n2i": "size of group 2",
    "ni": "total sample size",
    "ri": "correlation (pre-post correlation for SMCR/SMCC)",
    "ti": "t statistic (independent groups)",
    "fi": "F statistic with 1 numerator df",
    "chi2i": "chi-square statistic with 1 df",
    "d": "Cohen's d",
    "lor": "log odds ratio",
    "sign": "direction of F or chi-square (1 or -1, + or -)",
    "ai": "events in group 1",
    "bi": "non-events in group 1",
    "ci": "events in group 2",
    "di": "non-events in group 2",
}


@dataclass(frozen=True)
class _Rule:
    label: str
    needs: tuple[str, ...]


_D_RULES = (
    _Rule("d from t", ("ti",)),
    _Rule("d from F(1, df)", ("fi",)),
    _Rule("d from chi-square(1)", ("chi2i",)),
    _Rule("d from r", ("ri",)),
    _Rule("d from log odds ratio", ("lor",)),
)
RULES: dict[str, tuple[_Rule, ...]] = {
    "SMD": (
        _Rule("means and SDs", ("m1i", "m2i", "sd1i", "sd2i", "n1i", "n2i")),
        _Rule("Cohen's d", ("d",)),
        *_D_RULES,
    ),
    "SMCR": (_Rule("means, SD at time 1 and r", ("m1i", "m2i", "sd1i", "ni", "ri")),),
    "SMCC": (_Rule("means, SDs and r", ("m1i", "m2i", "sd1i", "sd2i", "ni", "ri")),),
    "COR": (
        _Rule("r", ("ri",)),
        _Rule("r from t", ("ti",)),
        _Rule("r from F(1, df)", ("fi",)),
        _Rule("r from chi-square(1)", ("chi2i",)),
        _Rule("r from d", ("d",)),
        _Rule("r from log odds ratio", ("lor",)),
    ),
    "OR": (_Rule("2x2 counts", ("ai", "bi", "ci", "di")),),
    "RR": (_Rule("2x2 counts", ("ai", "bi", "ci", "di")),),
    "RD": (_Rule("2x2 counts", ("ai", "bi", "ci", "di")),),
}
RULES["ZCOR"] = RULES["COR"]
_SIZE_RULES = ("SMD", "COR", "ZCOR")  # conversions that also need sample sizes

_CHECKS: dict[str, tuple[str, Phrase]] = {
    "sd1i": ("nonneg", Phrase("a standard deviation must be >= 0")),
    "sd2i": ("nonneg", Phrase("a standard deviation must be >= 0")),
    "n1i": ("positive", Phrase("a sample size must be > 0")),
    "n2i": ("positive", Phrase("a sample size must be > 0")),
    "ni": ("positive", Phrase("a sample size must be > 0")),
    "ri": ("unit", Phrase("a correlation must lie between -1 and 1")),
    "fi": ("nonneg", Phrase("a test statistic must be >= 0")),
    "chi2i": ("nonneg", Phrase("a test statistic must be >= 0")),
    "ai": ("nonneg", Phrase("a count must be >= 0")),
    "bi": ("nonneg", Phrase("a count must be >= 0")),
    "ci": ("nonneg", Phrase("a count must be >= 0")),
    "di": ("nonneg", Phrase("a count must be >= 0")),
}


def _column(data: pd.DataFrame, key: str, name: str) -> Array:
    series = data[name]
    if key == "sign" and not pd.api.types.is_numeric_dtype(series):
        text = series.astype("string").str.strip()
        mapped = text.map({"+": 1.0, "-": -1.0, "1": 1.0, "-1": -1.0, "+1": 1.0}, na_action="ignore")
        bad = np.flatnonzero(text.notna().to_numpy() & mapped.isna().to_numpy())
        if bad.size:
            raise InputError(
                "column '{0}' row {1}: {2}", name, int(bad[0]) + 1, Phrase("sign must be 1 or -1 (or + or -)")
            )
        return np.asarray(mapped.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    converted = pd.to_numeric(series, errors="coerce")
    bad = np.flatnonzero(converted.isna().to_numpy() & series.notna().to_numpy())
    if bad.size:
        raise InputError(
            "column '{0}' row {1}: value {2} is not a number", name, int(bad[0]) + 1, repr(series.iloc[int(bad[0])])
        )
    values = converted.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite = np.flatnonzero(np.isinf(values))
    if infinite.size:
        row = int(infinite[0])
        raise InputError("column '{0}' row {1}: value {2} is not finite", name, row + 1, values[row])
    check = _CHECKS.get(key)
    if key == "sign":
        check = ("sign", Phrase("sign must be 1 or -1 (or + or -)"))
    if check is not None:
        kind, reason = check
        with np.errstate(invalid="ignore"):
            wrong = {
                "nonneg": values < 0,
                "positive": values <= 0,
                "unit": np.abs(values) > 1,
                "sign": np.abs(values) != 1,
            }[kind] & ~np.isnan(values)
        rows = np.flatnonzero(wrong)
        if rows.size:
            raise InputError("column '{0}' row {1}: {2}", name, int(rows[0]) + 1, reason)
    return values


def escalc(
    data: pd.DataFrame,
    measure: EffectMeasure = "SMD",
    columns: dict[str, str] | None = None,
    correction: SmdCorrection = "exact",
    incomplete: str = "error",
) -> pd.DataFrame:
    """``yi``, ``vi`` and the ``rule`` that produced them for every row of a coded table.

    ``columns`` maps the keys of :data:`KEYS` (metafor's argument names: ``m1i``, ``sd1i``, ``n1i``, ``ri``,
    ``ti``, ``ai`` ...; ``fi`` for F(1, df), ``chi2i``, ``d``, ``lor``, ``sign``) to column names; a key
    without a mapping uses the column of that name when there is one. Each row takes the first rule
    of :data:`RULES` for ``measure`` whose columns it has; d-based rules give Hedges' g as escalc's
    ``SMD`` (``correction``), r-based rules ``COR``/``ZCOR``. A row with only the total ``ni`` is taken
    as two equal groups; rows no rule fits are an error, or left empty with ``incomplete="skip"``.
    """
    from edueffects.options import EFFECT_MEASURES

    if measure not in EFFECT_MEASURES:
        raise InputError("measure '{0}' is not one of {1}", measure, ", ".join(EFFECT_MEASURES))
    if correction not in SMD_CORRECTIONS:
        raise InputError("correction '{0}' is not one of {1}", correction, ", ".join(SMD_CORRECTIONS))
    if incomplete not in ("error", "skip"):
        raise InputError("incomplete must be 'error' or 'skip' (got {0})", incomplete)
    mapping = dict(columns or {})
    for key, name in mapping.items():
        if key not in KEYS:
            raise InputError("unknown effect-size key '{0}' (known: {1})", key, ", ".join(KEYS))
        if name not in data.columns:
            raise InputError(
                "column '{0}' (for {1}) not found (available: {2})", name, key, ", ".join(map(str, data.columns))
            )
    frame = data.reset_index(drop=True)
    k = len(frame)
    values: dict[str, Array] = {}
    for key in KEYS:
        name = mapping.get(key, key)
        values[key] = _column(frame, key, name) if name in frame.columns else np.full(k, np.nan)
    have = {key: ~np.isnan(arr) for key, arr in values.items()}
    equal_groups = np.zeros(k, dtype=bool)
    if measure in _SIZE_RULES:
        n1, n2, n = values["n1i"], values["n2i"], values["ni"]
        groups = have["n1i"] & have["n2i"]
        equal_groups = ~groups & have["ni"]
        values["n1i"] = np.where(equal_groups, n / 2.0, n1)
        values["n2i"] = np.where(equal_groups, n / 2.0, n2)
        values["ni"] = np.where(have["ni"], n, values["n1i"] + values["n2i"])
        for key in ("n1i", "n2i", "ni"):
            have[key] = ~np.isnan(values[key])
        values["sign"] = np.where(have["sign"], values["sign"], 1.0)
    if measure in ("OR", "RR", "RD"):  # b and d from the group sizes
        for cell, events, size in (("bi", "ai", "n1i"), ("di", "ci", "n2i")):
            derived = ~have[cell] & have[events] & have[size]
            values[cell] = np.where(derived, values[size] - values[events], values[cell])
            have[cell] = ~np.isnan(values[cell])
            bad = np.flatnonzero(values[cell] < 0)
            if bad.size:
                raise InputError(
                    "column '{0}' row {1}: {2}",
                    mapping.get(events, events),
                    int(bad[0]) + 1,
                    Phrase("more events than cases in the group"),
                )
    sizes = ("n1i", "n2i") if measure == "SMD" else ("ni",)
    yi, vi = np.full(k, np.nan), np.full(k, np.nan)
    rule = np.full(k, "", dtype=object)
    pending = np.ones(k, dtype=bool)
    for r in RULES[measure]:
        needs = r.needs + (sizes if measure in _SIZE_RULES and r.needs != RULES["SMD"][0].needs else ())
        rows = pending & np.logical_and.reduce([have[key] for key in needs])
        if not rows.any():
            continue
        sub = {key: arr[rows] for key, arr in values.items()}
        y, v = _apply(measure, r.label, sub, correction)
        yi[rows], vi[rows], rule[rows] = y, v, r.label
        pending &= ~rows
    if pending.any() and incomplete == "error":
        row = int(np.flatnonzero(pending)[0])
        size_text = ("n1i, n2i (or ni)",) if measure == "SMD" else ("ni (or n1i, n2i)",)
        options = "; ".join(
            ", ".join(r.needs + (size_text if measure in _SIZE_RULES and r is not RULES["SMD"][0] else ()))
            for r in RULES[measure]
        )
        raise InputError("row {0}: no rule for {1} applies: give one of: {2}", row + 1, measure, options)
    uses_groups = np.isin(rule, [r.label for r in RULES["SMD"]] + ["r from d", "r from log odds ratio"])
    note = equal_groups & uses_groups
    rule = np.where(note, rule + " (equal groups assumed)", rule)
    if measure in ("SMD", "SMCR", "SMCC"):
        small = np.flatnonzero((rule != "") & np.isnan(yi))
        if small.size:
            raise InputError(
                "row {0}: too few cases for the small-sample correction (needs more than {1})",
                int(small[0]) + 1,
                3 if measure == "SMD" else 2,
            )
    labels = pd.Series(rule, dtype=object).where(rule != "", None)
    return pd.DataFrame({"yi": yi, "vi": vi, "rule": labels})


def _apply(measure: str, label: str, x: dict[str, Array], correction: SmdCorrection) -> tuple[Array, Array]:
    """One rule on the rows it applies to (vectorised over rows)."""
    if measure == "SMCR":
        return smcr(x["m1i"], x["m2i"], x["sd1i"], x["ni"], x["ri"], correction)
    if measure == "SMCC":
        return smcc(x["m1i"], x["m2i"], x["sd1i"], x["sd2i"], x["ni"], x["ri"], correction)
    if measure in ("OR", "RR", "RD"):
        cells = (x["ai"], x["bi"], x["ci"], x["di"])
        if measure == "OR":
            return log_odds_ratio(*cells)
        return log_risk_ratio(*cells) if measure == "RR" else risk_difference(*cells)
    n1, n2, n, sign = x["n1i"], x["n2i"], x["ni"], x["sign"]
    if measure == "SMD":
        if label == "means and SDs":
            return smd_escalc(x["m1i"], x["m2i"], x["sd1i"], x["sd2i"], n1, n2, correction)
        d_rules: dict[str, Callable[[], Array]] = {
            "Cohen's d": lambda: x["d"],
            "d from t": lambda: d_from_t(x["ti"], n1, n2),
            "d from F(1, df)": lambda: d_from_f(x["fi"], n1, n2, sign),
            "d from chi-square(1)": lambda: d_from_chi2(x["chi2i"], n1, n2, sign),
            "d from r": lambda: r_to_d(x["ri"], n1, n2),
            "d from log odds ratio": lambda: d_from_log_odds(x["lor"]),
        }
        d = d_rules[label]()
        return smd_from_d(d, n1, n2, correction)
    r_rules: dict[str, Callable[[], Array]] = {
        "r": lambda: x["ri"],
        "r from t": lambda: r_from_t(x["ti"], n),
        "r from F(1, df)": lambda: r_from_f(x["fi"], n, sign),
        "r from chi-square(1)": lambda: r_from_chi2(x["chi2i"], n, sign),
        "r from d": lambda: d_to_r(x["d"], n1, n2),
        "r from log odds ratio": lambda: d_to_r(d_from_log_odds(x["lor"]), n1, n2),
    }
    r = r_rules[label]()
    if measure == "ZCOR":
        if np.any(n <= 3):
            raise InputError("ZCOR needs sample sizes above 3 (the variance is 1/(n - 3))")
        return np.arctanh(r), 1.0 / (n - 3.0)
    return cor(r, n)
