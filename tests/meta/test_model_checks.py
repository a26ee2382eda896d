"""Checks at the boundary of meta() and anova(): grouping columns of one type, levels with a single
group (metafor fixes their variance at 0), and likelihood-ratio tests only between fits of the same data
covariance (metafor's anova refuses 'Observed outcomes and/or sampling variances not equal')."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import edueffects
from edueffects.cli import main
from edueffects.core.errors import InputError
from edueffects.meta import meta

DATA = Path(__file__).resolve().parents[1] / "reference" / "data"
ASSINK = pd.read_csv(DATA / "assink2016.csv")
BCG = pd.read_csv(DATA / "bcg.csv")


@pytest.mark.parametrize("rho", [None, 0.5])
def test_grouping_column_mixing_numbers_and_text_is_refused(rho: float | None) -> None:
    data = ASSINK.assign(study=ASSINK["study"].astype(object))
    data.loc[3, "study"] = "x"
    with pytest.raises(InputError, match=r"column 'study' \(cluster\) mixes numbers and text \(effect 4\)"):
        meta(data, "yi", "vi", cluster="study", within="esid", rho=rho)


def test_single_cluster_fixes_its_variance_at_zero_as_metafor() -> None:
    """R: rma.mv(yi, vi, random = ~ 1 | study/esid, data = dat.assink2016[dat.assink2016$study == 1, ]) gives
    sigma2 = (0, 0.0268770397518978), b = 0.2825837898458527, se = 0.1095829650269145 and the warning
    'Single-level factor(s) found in random argument. Corresponding sigma2 value(s) fixed to 0.'"""
    one = ASSINK[ASSINK["study"] == 1].reset_index(drop=True)
    res = meta(one, "yi", "vi", cluster="study", within="esid")
    assert res.variance[0] == 0.0
    assert res.variance_fixed == (True, False)
    assert any("single group" in str(w) for w in res.warnings)
    assert res.variance[1] == pytest.approx(0.0268770397518978, rel=1e-6)
    assert res.coefficients.estimate[0] == pytest.approx(0.2825837898458527, rel=1e-6)
    assert res.coefficients.se[0] == pytest.approx(0.1095829650269145, rel=1e-6)
    assert [i.component for i in res.variance_ci] == ["sigma2 study/esid"]


def test_single_cluster_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "one.csv"
    ASSINK[ASSINK["study"] == 1].to_csv(path, index=False)
    assert main(["meta", str(path), "--yi", "yi", "--vi", "vi", "--cluster", "study", "--within", "esid"]) == 0
    assert "single group" in capsys.readouterr().out


def test_anova_refuses_fits_with_different_sampling_variances() -> None:
    full = meta(BCG, "yi", "vi", mods="ablat", method="ML")
    other = meta(BCG.assign(vi=BCG["vi"] * 2), "yi", "vi", method="ML")
    with pytest.raises(InputError, match="different sampling variances"):
        edueffects.anova(full, other)


def test_anova_refuses_rho_fits_correlated_within_different_clusters() -> None:
    full = meta(ASSINK, "yi", "vi", cluster="study", within="esid", method="ML", rho=0.5)
    other = meta(ASSINK, "yi", "vi", cluster="esid", method="ML", rho=0.5)
    with pytest.raises(InputError, match="within different clusters"):
        edueffects.anova(full, other)
    reduced = meta(ASSINK, "yi", "vi", cluster="study", within="esid", method="ML", rho=0.5, sigma2=[None, 0])
    lrt = edueffects.anova(full, reduced)
    assert (lrt.df_full, lrt.df_reduced) == (3, 2)
