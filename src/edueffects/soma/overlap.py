"""Overlap of primary studies between meta-analyses: citation matrix and corrected covered area.

Pieper, Antoine, Mathes, Neugebauer & Eikermann (2014): with ``N`` inclusions in all (a study counted
once per meta-analysis that includes it), ``r`` distinct primary studies and ``c`` meta-analyses,
``CCA = (N - r) / (r c - r)``. For a pair, ``CCA = |A and B| / |A or B|``. Labels: slight < 5 %,
moderate 5-10 %, high 10-15 %, very high >= 15 %. A pair is flagged as dependent when the studies
they share make up at least half of the smaller meta-analysis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from edueffects.core.errors import InputError, Message


def cca_label(percent: float) -> str:
    if percent < 5.0:
        return "slight"
    if percent < 10.0:
        return "moderate"
    if percent < 15.0:
        return "high"
    return "very high"


def corrected_covered_area(matrix: np.ndarray) -> float | None:
    """CCA in percent of a 0/1 citation matrix (studies x meta-analyses); None with one meta-analysis."""
    r, c = matrix.shape
    if c < 2 or r == 0:
        return None
    n = float(matrix.sum())
    return float(100.0 * (n - r) / (r * c - r))


@dataclass(frozen=True, eq=False)
class Overlap:
    """Citation matrix, overall CCA and pairwise overlap."""

    citation_matrix: pd.DataFrame
    cca: float | None
    label: str | None
    pairs: pd.DataFrame
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        return {
            "n_meta_analyses": int(self.citation_matrix.shape[1]),
            "n_primary_studies": int(self.citation_matrix.shape[0]),
            "n_inclusions": int(self.citation_matrix.to_numpy().sum()),
            "cca_percent": self.cca,
            "cca_label": self.label,
            "pairs": self.pairs.to_dict(orient="records"),
            "notes": list(self.notes),
        }


def overlap(studies: pd.DataFrame, meta_analysis: str = "meta_analysis", study: str = "study") -> Overlap:
    """Overlap from a table listing, per meta-analysis, the primary studies it included."""
    for col in (meta_analysis, study):
        if col not in studies.columns:
            raise InputError("studies table: column '{0}' not found", col)
        missing = np.flatnonzero(studies[col].isna().to_numpy())
        if missing.size:
            raise InputError("studies table: column '{0}' row {1} is missing", col, missing[0] + 1)
    notes: list[Message] = []
    dup = studies.duplicated([meta_analysis, study])
    if dup.any():
        notes.append(Message("{0} repeated (meta-analysis, study) row(s) counted once", int(dup.sum())))
    pairs_in = studies.loc[~dup, [meta_analysis, study]]
    matrix = pd.crosstab(pairs_in[study], pairs_in[meta_analysis]).clip(upper=1)
    values = matrix.to_numpy()
    cca = corrected_covered_area(values)
    if cca is None:
        notes.append(Message("CCA needs at least two meta-analyses"))
    names = list(matrix.columns)
    k = values.sum(axis=0)
    shared = values.T @ values
    rows = []
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            union = k[a] + k[b] - shared[a, b]
            pair_cca = 100.0 * shared[a, b] / union if union else 0.0
            rows.append(
                {
                    "meta_analysis_a": names[a],
                    "meta_analysis_b": names[b],
                    "k_a": int(k[a]),
                    "k_b": int(k[b]),
                    "shared": int(shared[a, b]),
                    "cca_percent": pair_cca,
                    "label": cca_label(pair_cca),
                    "dependent": bool(shared[a, b] >= 0.5 * min(k[a], k[b])),
                }
            )
    pairs = pd.DataFrame(
        rows,
        columns=["meta_analysis_a", "meta_analysis_b", "k_a", "k_b", "shared", "cca_percent", "label", "dependent"],
    )
    return Overlap(
        citation_matrix=matrix,
        cca=cca,
        label=None if cca is None else cca_label(cca),
        pairs=pairs,
        notes=tuple(notes),
    )
