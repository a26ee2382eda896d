"""Figures checked as drawn (matplotlib's renderer): no overlapping tick labels, legends clear of the
title and the axes, visible swatches, decimal commas in every text of a Dutch or German figure, visible
bidirectional controls; forest plots with row labels, weights (metafor's), estimate [CI] column, pooled
diamond and prediction interval; caterpillar and bubble plots."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Polygon
from matplotlib.text import Text

from edueffects import InputError, meta, recovery, simulate, soma
from edueffects.recovery.result import RecoveryResult
from edueffects.report import plots
from edueffects.report.i18n import Language
from edueffects.soma.result import SomaResult

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[0] / "reference" / "data"
NL, DE, EN = Language.of("nl"), Language.of("de"), Language.of("en")
LONG_COHORTS = {
    2015: "Kohorte 2015/16 (Klasse 5 im Frühjahr 2016)",
    2018: "Kohorte 2018/19 (Klasse 5 im Frühjahr 2019)",
    2019: "Kohorte 2019/20 (Klasse 5 im Frühjahr 2020)",
}


@pytest.fixture(scope="module")
def soma_result() -> SomaResult:
    example = simulate.soma()
    return soma(example.effects, studies=example.studies, amstar=example.amstar, synthetic=True)


@pytest.fixture(scope="module")
def spss_labelled() -> RecoveryResult:
    """Cohorts with long value labels (as SPSS files carry them)."""
    data = simulate.recovery(seed=3, n_schools=60, students_per_school=10)
    data["cohort"] = data["cohort"].map(LONG_COHORTS)
    return recovery(data, school="school", cohort="cohort", pandemic_cohorts=[LONG_COHORTS[2018],
                    LONG_COHORTS[2019]], moderators=["ses", "lost_days"], pre="score5", post="score8")  # fmt: skip


@pytest.fixture(scope="module")
def bcg() -> pd.DataFrame:
    return pd.read_csv(DATA / "bcg.csv").assign(label=lambda d: d.author + ", " + d.year.astype(str))


def drawn_texts(fig: Figure) -> list[str]:
    """Every non-empty text of a finished figure as drawn (tick labels included)."""
    plots.finish(fig)
    fig.canvas.draw()
    return [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def figures(res: SomaResult, rec: RecoveryResult, tr: Language) -> dict[str, Figure]:
    code = tr.code
    out = {name: build(res, tr) for name, build in
           (("forest", plots.forest), ("orchard", plots.orchard), ("funnel", plots.funnel),
            ("profiles", plots.profiles), ("leave_one_out", plots.leave_one_out),
            ("contour_funnel", plots.soma_contour_funnel))}  # fmt: skip
    out["ddd"] = plots.ddd_effects(rec, tr)
    out["gain"] = plots.gain_by_tercile(rec, "ses", tr)
    return {name: plots.localize(fig, code) for name, fig in out.items()}


def test_long_cohort_labels_do_not_overlap(spss_labelled: RecoveryResult) -> None:
    raw = plots.gain_by_tercile(spss_labelled, "ses")
    assert plots.tick_overlaps(raw)  # as drawn without finishing, the SPSS labels collide
    fig = plots.finish(plots.gain_by_tercile(spss_labelled, "ses"))
    assert plots.tick_overlaps(fig) == []
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert [label.replace("\n", " ") for label in labels] == list(LONG_COHORTS.values())


@pytest.mark.parametrize("tr", [EN, NL, DE], ids=["en", "nl", "de"])
def test_no_overlapping_tick_labels(soma_result: SomaResult, spss_labelled: RecoveryResult, tr: Language) -> None:
    for name, fig in figures(soma_result, spss_labelled, tr).items():
        assert plots.tick_overlaps(plots.finish(fig)) == [], name


@pytest.mark.parametrize("tr", [NL, DE], ids=["nl", "de"])
def test_every_text_of_every_figure_has_decimal_commas(
    soma_result: SomaResult,
    spss_labelled: RecoveryResult,
    bcg: pd.DataFrame,
    tr: Language,
    decimal_points_in: Callable[[list[str]], list[str]],
) -> None:
    decimal_points = decimal_points_in
    found = {name: decimal_points(drawn_texts(fig)) for name, fig in figures(soma_result, spss_labelled, tr).items()}
    res = meta(bcg, "yi", "vi", mods=["ablat"])
    for name, fig in plots.meta_plots(res, "label", tr):
        found[name] = decimal_points(drawn_texts(plots.localize(fig, tr.code)))
    assert {name: bad for name, bad in found.items() if bad} == {}
    title = plots.funnel(soma_result, tr).axes[0].get_title()
    est, _, _, p = soma_result.egger_slope
    assert f"{est:+.2f}".replace(".", ",") in title and f"{p:.2g}".replace(".", ",") in title
    english = decimal_points(drawn_texts(plots.localize(plots.funnel(soma_result, EN), "en")))
    assert english  # the check finds decimal points where they belong


def test_profile_plot_marks_the_estimate(soma_result: SomaResult) -> None:
    fig = plots.finish(plots.localize(plots.profiles(soma_result, NL), "nl"))
    assert plots.tick_overlaps(fig) == []
    for ax, estimate in zip(fig.axes, soma_result.overall.variance, strict=True):
        marks = [line for line in ax.get_lines() if list(line.get_xdata()) == [estimate, estimate]]
        assert len(marks) == 1
        assert any("schatting" in t.get_text() for t in ax.get_legend().get_texts())


def test_legends_sit_below_the_axes_not_above_the_title(spss_labelled: RecoveryResult) -> None:
    for fig in (plots.ddd_effects(spss_labelled, NL), plots.gain_by_tercile(spss_labelled, "ses", NL)):
        plots.finish(fig)
        renderer = plots._renderer(fig)
        ax = fig.axes[0]
        legend = ax.get_legend().get_window_extent(renderer)
        title = ax.title.get_window_extent(renderer)
        below = ax.get_tightbbox(renderer, bbox_extra_artists=[])
        assert legend.y1 <= title.y0 and legend.y1 <= below.y0 + 1.0
        assert not legend.overlaps(ax.xaxis.label.get_window_extent(renderer))


def test_pandemic_swatch_is_visible(spss_labelled: RecoveryResult) -> None:
    fig = plots.gain_by_tercile(spss_labelled, "ses", EN)
    legend = fig.axes[0].get_legend()
    handles = dict(zip([t.get_text() for t in legend.get_texts()], legend.legend_handles, strict=True))
    swatch = handles["pandemic cohorts"]
    edge = np.array(to_rgb(swatch.get_edgecolor()))
    assert swatch.get_linewidth() > 0 and edge.mean() < 0.6  # a dark edge on the white legend background


def test_bidirectional_controls_are_shown_not_obeyed(spss_labelled: RecoveryResult) -> None:
    data = simulate.recovery(seed=3, n_schools=60, students_per_school=10).rename(columns={"ses": "ses\u202etxt.exe"})
    res = recovery(data, school="school", cohort="cohort", pandemic_cohorts=[2018, 2019],
                   moderators=["ses\u202etxt.exe"], pre="score5", post="score8")  # fmt: skip
    for fig in (plots.ddd_effects(res), plots.gain_by_tercile(res, "ses\u202etxt.exe")):
        texts = drawn_texts(fig)
        assert any("ses[U+202E]txt.exe" in t for t in texts)
        assert not any(re.search("[\u202a-\u202e\u2066-\u2069]", t) for t in texts)
        assert "\u202e" not in plots.svg_text(fig)


def test_meta_weights_are_metafors(bcg: pd.DataFrame) -> None:
    ref = json.loads((HERE / "reference" / "metafor_weights.json").read_text())
    np.testing.assert_allclose(plots.meta_weights(meta(bcg, "yi", "vi")), ref["bcg_reml"], rtol=1e-6)
    np.testing.assert_allclose(plots.meta_weights(meta(bcg, "yi", "vi", method="EE")), ref["bcg_ee"], rtol=1e-6)
    k11 = pd.read_csv(DATA / "konstantopoulos2011.csv")
    three = meta(k11, "yi", "vi", cluster="district", within="school")
    np.testing.assert_allclose(plots.meta_weights(three), ref["konstantopoulos2011_reml"], rtol=1e-5)


def dense_weights(data: pd.DataFrame, rho: float, sigma2: np.ndarray) -> np.ndarray:
    """metafor's ``weights(rma.mv(yi, vcalc(vi, study, obs = esid, rho), random = ~ 1 | study/esid))``
    from the dense marginal covariance: 100 diag(M^-1) / sum, M = V + sigma2_study [same study] + sigma2_esid I."""
    s = np.sqrt(data.vi.to_numpy(dtype=float))
    same = (data.study.to_numpy()[:, None] == data.study.to_numpy()[None, :]).astype(float)
    v = rho * same * np.outer(s, s)
    np.fill_diagonal(v, s**2)
    m = v + sigma2[0] * same + sigma2[1] * np.eye(len(data))
    w = np.diag(np.linalg.inv(m))
    return np.asarray(100.0 * w / w.sum())


def test_meta_weights_of_a_che_fit_use_its_working_covariance() -> None:
    """A CHE fit (rho = .6, dat.assink2016) weighs the effects by the inverse of its working covariance,
    the correlated sampling errors included."""
    assink = pd.read_csv(DATA / "assink2016.csv")
    res = meta(assink, "yi", "vi", cluster="study", within="esid", rho=0.6)
    expected = dense_weights(assink, 0.6, np.asarray(res.variance, dtype=float))
    weights = plots.meta_weights(res)
    np.testing.assert_allclose(weights, expected, rtol=1e-10)
    assert weights.sum() == pytest.approx(100.0)
    plain = meta(assink, "yi", "vi", cluster="study", within="esid")
    np.testing.assert_allclose(
        plots.meta_weights(plain), dense_weights(assink, 0.0, np.asarray(plain.variance, dtype=float)), rtol=1e-10
    )


def test_a_failing_save_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A figure that fails while it is written leaves neither a partial file nor a temporary one, and an
    earlier figure of the same name stays as it was."""
    fig = Figure()
    fig.add_subplot().plot([0, 1], [0, 1])
    folder = tmp_path / "figs"
    folder.mkdir()
    (folder / "line.svg").write_text("earlier figure")
    real = Figure.savefig

    def failing(self: Figure, fname: object, *args: object, **kwargs: object) -> None:
        if kwargs.get("format") == "png" or str(fname).endswith(".png"):
            if hasattr(fname, "write"):
                fname.write(b"\x89PNG partial")
            else:
                Path(str(fname)).write_bytes(b"\x89PNG partial")
            raise OSError("disk full")
        real(self, fname, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Figure, "savefig", failing)
    with pytest.raises(OSError, match="disk full"):
        plots.save(fig, folder, "line")
    assert sorted(p.name for p in folder.iterdir()) == ["line.svg"]
    assert (folder / "line.svg").read_text() == "earlier figure"
    monkeypatch.setattr(Figure, "savefig", real)
    paths = plots.save(fig, folder, "line")
    assert sorted(p.name for p in folder.iterdir()) == ["line.png", "line.svg"] == sorted(p.name for p in paths)
    assert (folder / "line.svg").read_text().lstrip().startswith("<?xml")


def test_forest_plot_as_meta_analysts_know_it(bcg: pd.DataFrame) -> None:
    res = meta(bcg, "yi", "vi")
    fig = plots.meta_forest(res, "label", NL)
    texts = drawn_texts(fig)
    assert all(label in texts for label in bcg.label)  # row labels
    weights = plots.meta_weights(res)
    assert f"{weights[0]:.1f}%".replace(".", ",") in texts and "gewicht" in texts  # weights column
    c = res.coefficients
    pooled = f"{c.estimate[0]:.2f} [{c.ci_lb[0]:.2f}; {c.ci_ub[0]:.2f}]".replace(".", ",")
    assert pooled in texts  # estimate [CI] column, the pooled row too
    pi = res.prediction
    assert pi is not None and f"[{pi.pi_lb:.2f}; {pi.pi_ub:.2f}]".replace(".", ",") in texts
    assert "predictie-interval" in texts
    diamonds = [p for ax in fig.axes for p in ax.patches if isinstance(p, Polygon)]
    assert len(diamonds) == 1  # the pooled diamond
    assert plots.tick_overlaps(fig) == []
    with_mods = plots.meta_forest(meta(bcg, "yi", "vi", mods=["ablat"]), "label")
    assert not [p for ax in with_mods.axes for p in ax.patches if isinstance(p, Polygon)]  # no pooled effect


def test_large_k_gets_a_caterpillar_plot_and_continuous_moderators_a_bubble_plot(
    decimal_points_in: Callable[[list[str]], list[str]],
) -> None:
    decimal_points = decimal_points_in
    rng = np.random.default_rng(5)
    k = plots.CATERPILLAR_FROM
    data = pd.DataFrame({"yi": rng.normal(0.3, 0.3, k), "vi": rng.uniform(0.01, 0.1, k),
                         "dose": rng.uniform(0, 10, k), "arm": rng.choice(["a", "b"], k)})  # fmt: skip
    few = meta(data.iloc[: k - 1], "yi", "vi")
    assert [name for name, _fig in plots.meta_plots(few)] == ["forest"]
    many = meta(data, "yi", "vi", mods=["dose", "arm"])
    names = [name for name, _fig in plots.meta_plots(many)]
    assert names == ["caterpillar", "bubble_dose"]  # the categorical moderator gets none
    fig = plots.localize(plots.bubble(many, "dose", DE), "de")
    texts = drawn_texts(fig)
    assert "dose" in " ".join(texts) and decimal_points(texts) == []
    with pytest.raises(InputError, match="not a continuous moderator"):
        plots.bubble(many, "arm")
