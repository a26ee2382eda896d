"""AMSTAR 2 rule and corrected covered area on hand-checked cases, with edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edueffects import InputError
from edueffects.soma.overlap import cca_label, corrected_covered_area, overlap
from edueffects.soma.quality import ITEMS, appraise, overall_confidence


def ratings(**overrides: str) -> dict[str, str]:
    row = dict.fromkeys(ITEMS, "yes")
    row.update(overrides)
    return row


@pytest.mark.parametrize(
    ("answers", "flaws", "weak", "met", "level"),
    [
        (ratings(), 0, 0, 16, "High"),
        (ratings(item1="no"), 0, 1, 15, "High"),
        (ratings(item1="no", item3="partial yes", item5="no"), 0, 2, 14, "Moderate"),
        (ratings(item2="no"), 1, 0, 15, "Low"),
        (ratings(item2="no", item1="no", item3="no"), 1, 2, 13, "Low"),
        (ratings(item4="no", item15="no"), 2, 0, 14, "Critically low"),
        ({**dict.fromkeys(ITEMS, "no")}, 7, 9, 0, "Critically low"),  # all critical flaws
        (ratings(item11="not applicable", item12="NA", item15="n/a"), 0, 0, 13, "High"),
        (ratings(item9="Partial Yes", item6="PY"), 0, 0, 16, "High"),
    ],
)
def test_amstar_rule(answers: dict[str, str], flaws: int, weak: int, met: int, level: str) -> None:
    out = appraise(pd.DataFrame([{"meta_analysis": "A", **answers}]))
    row = out.iloc[0]
    assert (row.critical_flaws, row.noncritical_weaknesses, row.criteria_met, row.confidence) == (
        flaws,
        weak,
        met,
        level,
    )


def test_amstar_one_meta_analysis_and_errors() -> None:
    assert overall_confidence(0, 1) == "High" and overall_confidence(0, 2) == "Moderate"
    with pytest.raises(InputError, match="row 1, item7: 'maybe'"):
        appraise(pd.DataFrame([{"meta_analysis": "A", **ratings(item7="maybe")}]))
    with pytest.raises(InputError, match="item16"):
        appraise(pd.DataFrame([{"meta_analysis": "A", **{k: "yes" for k in ITEMS[:15]}}]))
    with pytest.raises(InputError, match="rated twice"):
        appraise(pd.DataFrame([{"meta_analysis": "A", **ratings()}, {"meta_analysis": "A", **ratings()}]))


def test_cca_hand_checked() -> None:
    # Pieper et al. style example: 3 reviews, 5 studies, 8 inclusions: (8 - 5) / (5*3 - 5) = 30 %
    table = pd.DataFrame({"meta_analysis": ["A", "A", "A", "B", "B", "C", "C", "C"], "study": [1, 2, 3, 1, 4, 1, 2, 5]})
    res = overlap(table)
    assert res.cca == pytest.approx(30.0)
    assert res.label == "very high"
    pairs = res.pairs.set_index(["meta_analysis_a", "meta_analysis_b"])
    assert pairs.loc[("A", "B"), "shared"] == 1
    assert pairs.loc[("A", "B"), "cca_percent"] == pytest.approx(100 * 1 / 4)
    assert pairs.loc[("A", "C"), "cca_percent"] == pytest.approx(100 * 2 / 4)
    assert bool(pairs.loc[("A", "C"), "dependent"]) and bool(pairs.loc[("A", "B"), "dependent"])
    assert res.citation_matrix.shape == (5, 3)


def test_cca_edge_cases() -> None:
    none = overlap(pd.DataFrame({"meta_analysis": ["A", "A", "B"], "study": [1, 2, 3]}))
    assert none.cca == 0.0 and none.label == "slight" and not none.pairs.dependent.any()
    one = overlap(pd.DataFrame({"meta_analysis": ["A", "A"], "study": [1, 2]}))
    assert one.cca is None and one.pairs.empty and "at least two" in one.notes[0]
    full = np.ones((4, 3))
    assert corrected_covered_area(full) == pytest.approx(100.0)
    assert [cca_label(x) for x in (4.99, 5.0, 10.0, 15.0)] == ["slight", "moderate", "high", "very high"]
    dup = overlap(pd.DataFrame({"meta_analysis": ["A", "A", "B"], "study": [1, 1, 1]}))
    assert dup.cca == pytest.approx(100.0) and "counted once" in dup.notes[0]
    with pytest.raises(InputError, match="column 'study' row 2 is missing"):
        overlap(pd.DataFrame({"meta_analysis": ["A", "B"], "study": [1, None]}))
