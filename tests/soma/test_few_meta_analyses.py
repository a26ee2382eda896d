"""Few meta-analyses: a moderator test whose cluster-robust (CR2) version cannot be computed keeps its
model-based QM, reports no robust part and says so in a note; the run finishes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edueffects import meta, simulate
from edueffects.cli import main
from edueffects.soma import soma
from edueffects.soma.result import SomaResult

NOTE = (
    "outcome cluster: no cluster-robust test with {n} meta-analyses for {q} hypotheses; "
    "the model-based test is reported"
)


@pytest.fixture(scope="module")
def example() -> simulate.SomaExample:
    return simulate.soma()


def first(effects: pd.DataFrame, n: int) -> pd.DataFrame:
    return effects[effects.meta_analysis.isin(sorted(effects.meta_analysis.unique())[:n])]


@pytest.fixture(scope="module", params=[2, 3, 4])
def few(request: pytest.FixtureRequest, example: simulate.SomaExample) -> tuple[int, pd.DataFrame, SomaResult]:
    data = first(example.effects, request.param)
    return request.param, data, soma(data)


def test_the_run_finishes_with_a_model_based_cluster_test(few: tuple[int, pd.DataFrame, SomaResult]) -> None:
    n, data, res = few
    assert data.outcome_cluster.nunique() >= 6
    test = res.cluster_test
    assert test is not None and test.robust_test is None and not test.robust_disagrees
    direct = meta(
        res.effects,
        "z",
        "vz",
        cluster="meta_analysis",
        within="es_id",
        mods=["outcome_cluster"],
        categorical=["outcome_cluster"],
    ).wald("outcome_cluster")
    assert np.isfinite(test.QM)
    np.testing.assert_allclose(test.QM, direct.statistic, rtol=1e-10)
    np.testing.assert_allclose(test.QMp, direct.pval, rtol=1e-8)
    assert test.QM_df == direct.df1
    assert NOTE.format(n=n, q=test.QM_df) in res.notes
    # the single-moderator tests keep their robust part (one hypothesis each: it can be computed)
    assert res.moderator_tests and all(t.robust_test is not None and np.isfinite(t.QM) for t in res.moderator_tests)
    # the joint model of moderators at the meta-analyses' level is collinear: skipped, with its note
    assert res.joint is None
    assert f"joint moderator model skipped: its moderators are collinear in {n} meta-analyses" in map(str, res.notes)


def test_outputs_show_the_missing_robust_test(few: tuple[int, pd.DataFrame, SomaResult]) -> None:
    _, _, res = few
    row = res.tidy("moderators").iloc[0]
    assert row.moderator == "outcome cluster" and pd.isna(row.p_HTZ) and np.isfinite(row.QM)
    payload = json.loads(json.dumps(res.to_dict(), default=str))
    assert payload["cluster_test"]["p_HTZ"] is None and payload["cluster_test"]["F_HTZ"] is None
    summary = res.summary()
    assert "clusters differ? QM(" in summary and "no cluster-robust test (too few meta-analyses)" in summary


def test_the_cli_prints_the_model_based_test(
    example: simulate.SomaExample, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "few.csv"
    first(example.effects, 3).to_csv(path, index=False)
    assert main(["soma", str(path), "--quiet", "--no-sensitivity"]) == 0
    out = capsys.readouterr().out
    assert "no cluster-robust test (too few meta-analyses)" in out
    assert "outcome cluster: no cluster-robust test with 3 meta-analyses" in out


def test_the_full_example_keeps_every_robust_test(example: simulate.SomaExample) -> None:
    res = soma(example.effects, sensitivity=False)
    tests = [res.cluster_test, *res.moderator_tests, res.joint]
    assert all(t is not None and t.robust_test is not None for t in tests)
    assert not any("no cluster-robust test" in note for note in res.notes)
    assert res.tidy("moderators").p_HTZ.notna().all()
