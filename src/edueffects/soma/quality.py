"""AMSTAR 2 appraisal of meta-analyses (Shea et al. 2017, BMJ 358:j4008).

Sixteen items; critical domains are items 2, 4, 7, 9, 11, 13 and 15. An item rated "no" is a flaw
(critical domain) or a weakness (other items); "yes" and "partial yes" meet the item; "not
applicable" is neither. Overall confidence, by the published rule:

- High: no or one non-critical weakness (and no critical flaw);
- Moderate: more than one non-critical weakness (and no critical flaw);
- Low: one critical flaw, with or without non-critical weaknesses;
- Critically low: more than one critical flaw.

The quality score is the number of items met (yes or partial yes).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from edueffects.core.errors import InputError

ITEMS = tuple(f"item{i}" for i in range(1, 17))
CRITICAL = (2, 4, 7, 9, 11, 13, 15)
ANSWERS = {
    "yes": "yes",
    "y": "yes",
    "partial yes": "partial yes",
    "partial": "partial yes",
    "py": "partial yes",
    "no": "no",
    "n": "no",
    "not applicable": "na",
    "na": "na",
    "n/a": "na",
}


def overall_confidence(critical_flaws: int, weaknesses: int) -> str:
    """The AMSTAR 2 rating from counts of critical flaws and non-critical weaknesses."""
    if critical_flaws > 1:
        return "Critically low"
    if critical_flaws == 1:
        return "Low"
    return "High" if weaknesses <= 1 else "Moderate"


def appraise(table: pd.DataFrame, meta_analysis: str = "meta_analysis") -> pd.DataFrame:
    """One row per meta-analysis: answers normalised, flaws, weaknesses, score and confidence."""
    if meta_analysis not in table.columns:
        raise InputError("AMSTAR table: column '{0}' not found", meta_analysis)
    missing = [item for item in ITEMS if item not in table.columns]
    if missing:
        raise InputError("AMSTAR table: item column(s) {0} not found (expected item1 ... item16)", ", ".join(missing))
    dup = table[meta_analysis].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputError(
            "AMSTAR table row {0}: meta-analysis {1} is rated twice", row + 1, repr(table[meta_analysis].iloc[row])
        )
    answers = pd.DataFrame(index=table.index)
    for item in ITEMS:
        raw = table[item].astype(str).str.strip().str.lower()
        norm = raw.map(ANSWERS)
        bad = np.flatnonzero(norm.isna().to_numpy())
        if bad.size:
            row = int(bad[0])
            raise InputError(
                "AMSTAR table row {0}, {1}: {2} is not yes, partial yes, no or not applicable",
                row + 1,
                item,
                repr(table[item].iloc[row]),
            )
        answers[item] = norm
    critical_cols = [f"item{i}" for i in CRITICAL]
    other_cols = [c for c in ITEMS if c not in critical_cols]
    flaws = (answers[critical_cols] == "no").sum(axis=1)
    weaknesses = (answers[other_cols] == "no").sum(axis=1)
    score = answers.isin(["yes", "partial yes"]).sum(axis=1)
    out = pd.DataFrame(
        {
            meta_analysis: table[meta_analysis].to_numpy(),
            "critical_flaws": flaws.to_numpy(),
            "noncritical_weaknesses": weaknesses.to_numpy(),
            "criteria_met": score.to_numpy(),
            "confidence": [overall_confidence(int(f), int(w)) for f, w in zip(flaws, weaknesses, strict=True)],
        }
    )
    return pd.concat([out, answers.reset_index(drop=True)], axis=1)
