"""Figures of results (matplotlib, no pyplot state): saved as SVG and PNG side by side."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from edueffects.core.errors import InputError
from edueffects.recovery.result import RecoveryResult
from edueffects.soma.result import SomaResult

Translate = Callable[[str], str]


def _same(text: str) -> str:
    return text


def _decimal(tr: Translate, value: float) -> str:
    """A short number in the translator's locale (decimal comma for nl/de)."""
    code = getattr(tr, "code", "en")
    return f"{value:g}".replace(".", ",") if code in ("nl", "de") else f"{value:g}"


def plain_text(fig: Figure) -> Figure:
    """Every text of the figure shown as written: labels from data (``$x$``, ``$5 and $10``) are not
    read as mathtext, which would render them as formulas or fail."""
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        text.set_parse_math(False)
    return fig


def save(fig: Figure, folder: str | Path, name: str) -> list[Path]:
    """Write ``name.svg`` and ``name.png`` into ``folder`` (created if missing); the file name is a
    safe slug of ``name`` (a moderator called ``ses/income`` names no sub-folder)."""
    from matplotlib import rc_context

    from edueffects.io.outputs import slug

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    stem = slug(name)
    paths = [out / f"{stem}.svg", out / f"{stem}.png"]
    with rc_context({"text.parse_math": False}):
        plain_text(fig)
        fig.savefig(paths[0], bbox_inches="tight")
        fig.savefig(paths[1], dpi=150, bbox_inches="tight")
    return paths


def cell_gains(result: RecoveryResult) -> pd.DataFrame:
    """Per school x cohort cell: students and mean gain, from the aggregated cells of any model."""
    cells = result.cells
    if result.model == "gain":
        out = cells.assign(students=cells["n"], gain=cells["sum"] / cells["n"])
    elif result.model == "long_linked":
        both = cells[(cells.pre_n == 1) & (cells.post_n == 1)]
        out = both.assign(students=both["r"], gain=(both["s1"] - both["s0"]) / both["r"])
    else:
        wide = cells.pivot_table(index=["school", "cohort"], columns="occasion", values=["sum", "n"], aggfunc="sum")
        wide = wide.dropna()
        gain = wide[("sum", 1)] / wide[("n", 1)] - wide[("sum", 0)] / wide[("n", 0)]
        first = cells.drop_duplicates(["school", "cohort"]).set_index(["school", "cohort"])
        out = first.loc[gain.index].assign(students=wide[("n", 1)].to_numpy(), gain=gain.to_numpy()).reset_index()
    return out[["school", "cohort", "pandemic", "students", "gain", *result.moderators]]


def gain_by_tercile(result: RecoveryResult, moderator: str, tr: Translate = _same) -> Figure:
    """Mean gain (student-weighted) per cohort, one line per tercile of a school factor."""
    if moderator not in result.moderators:
        raise InputError("'{0}' is not a moderator of this model ({1})", moderator, ", ".join(result.moderators))
    cells = cell_gains(result)
    per_school = cells.groupby("school")[moderator].max()
    terciles = pd.qcut(per_school.rank(method="first"), 3, labels=["low", "middle", "high"])
    cells = cells.assign(tercile=cells.school.map(terciles))
    summary = (
        cells.assign(weighted=cells.gain * cells.students)
        .groupby(["tercile", "cohort"], observed=True)[["weighted", "students"]]
        .sum()
    )
    summary["mean"] = summary.weighted / summary.students
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    cohorts = sorted(cells.cohort.unique())
    positions = np.arange(len(cohorts), dtype=float)
    for tercile in ("low", "middle", "high"):
        values = [summary["mean"].get((tercile, c), np.nan) for c in cohorts]
        ax.plot(positions, values, marker="o", label=f"{moderator}: {tr(tercile + ' tercile')}")
    ax.set_xticks(positions, [str(c) for c in cohorts])
    pandemic = [float(i) for i, c in enumerate(cohorts) if str(c) in result.pandemic_cohorts]
    if pandemic:
        ax.axvspan(pandemic[0] - 0.25, pandemic[-1] + 0.25, color="0.9", zorder=0, label=tr("pandemic cohorts"))
    ax.set_xlabel(tr("cohort"))
    ax.set_ylabel(tr("mean gain (score units)"))
    ax.set_title(tr("Gain by cohort and tercile of {moderator}").format(moderator=moderator))
    ax.legend(frameon=False, fontsize=8)
    return fig


def ddd_effects(result: RecoveryResult, tr: Translate = _same) -> Figure:
    """DDD effects with 95% CI (model-based), 90% CI (TOST) and the equivalence bounds."""
    eq = result.equivalence
    c = result.coefficients
    index = {name: i for i, name in enumerate(c.names)}
    fig = Figure(figsize=(6.5, 0.6 * len(eq) + 1.6))
    ax = fig.add_subplot()
    ys = np.arange(len(eq))[::-1]
    ax.axvspan(
        -result.sesoi,
        result.sesoi,
        color="#d9ead3",
        label=tr("equivalence bounds (+/-{bound})").format(bound=_decimal(tr, result.sesoi)),
    )
    ax.axvline(0.0, color="0.4", lw=0.8)
    for y, test in zip(ys, eq, strict=True):
        i = index[test.term]
        ax.plot([c.ci_lb[i], c.ci_ub[i]], [y, y], color="#3d85c6", lw=1.5)
        ax.plot([test.ci90_lb, test.ci90_ub], [y, y], color="#0b5394", lw=4)
        ax.plot([test.estimate], [y], "o", color="black")
    ax.set_yticks(ys, [t.term for t in eq])
    unit = tr("per SD of the school factor") if result.standardized else tr("per unit of the school factor")
    ax.set_xlabel(tr("DDD effect (score units {unit}); thin: 95% CI, thick: 90% CI").format(unit=unit))
    ax.set_title(tr("Do school factors moderate the pandemic change in the gain?"))
    ax.legend(frameon=False, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.08))
    return fig


def recovery_figures(result: RecoveryResult, folder: str | Path) -> list[Path]:
    """All recovery figures: DDD effects and, per moderator, gains by tercile."""
    paths = save(ddd_effects(result), folder, "ddd_effects")
    for mod in result.moderators:
        paths += save(gain_by_tercile(result, mod), folder, f"gain_by_{mod}_tercile")
    return paths


def localize(fig: Figure, code: str) -> Figure:
    """Decimal commas on numeric axes for Dutch and German (categorical tick labels are left alone)."""
    if code in ("nl", "de"):
        from matplotlib.ticker import FuncFormatter, ScalarFormatter

        comma = FuncFormatter(lambda value, _pos: f"{value:g}".replace(".", ","))
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                if isinstance(axis.get_major_formatter(), ScalarFormatter):
                    axis.set_major_formatter(comma)
    return fig


def svg_text(fig: Figure) -> str:
    """The figure as an inline ``<svg>`` element (text kept as escaped text, no XML prolog)."""
    from io import StringIO

    from matplotlib import rc_context

    buffer = StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "edueffects", "text.parse_math": False}):
        plain_text(fig)
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


# ---- second-order meta-analysis -------------------------------------------------------------------


def forest(result: SomaResult, tr: Translate = _same) -> Figure:
    """Effect sizes (r, 95% CI) grouped by outcome cluster, with each cluster's pooled estimate."""
    cols = result.columns
    effects = result.effects.sort_values([cols.cluster, "r"])
    pooled = {c.cluster: c for c in result.clusters}
    n_rows = len(effects) + 2 * len(pooled)
    fig = Figure(figsize=(7.5, 0.16 * n_rows + 1.5))
    ax = fig.add_subplot()
    y = n_rows
    labels, ticks = [], []
    for cluster, group in effects.groupby(cols.cluster, sort=True):
        for _, row in group.iterrows():
            y -= 1
            lo, hi = np.tanh(row.z - 1.96 * row.sez), np.tanh(row.z + 1.96 * row.sez)
            ax.plot([lo, hi], [y, y], color="0.45", lw=0.8)
            ax.plot([row.r], [y], "s", color="0.2", ms=2.5)
        y -= 1
        c = pooled[str(cluster)]
        ax.fill(
            [np.tanh(c.ci_lb), np.tanh(c.z), np.tanh(c.ci_ub), np.tanh(c.z)],
            [y, y + 0.4, y, y - 0.4],
            color="#0b5394",
        )
        labels.append(f"{cluster} (k = {c.k})")
        ticks.append(y)
        y -= 1
    overall = result.overall_r()
    ax.axvline(float(overall["r"] or 0.0), color="#cc0000", lw=0.8, ls="--", label=tr("overall pooled r"))
    ax.axvline(0.0, color="0.6", lw=0.6)
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set_xlabel(tr("correlation r (95% CI); diamonds: pooled per cluster (three-level)"))
    ax.set_title(tr("Forest plot by outcome cluster"))
    ax.legend(frameon=False, fontsize=7, loc="lower right")
    return fig


def orchard(result: SomaResult, tr: Translate = _same) -> Figure:
    """Per cluster: effects sized by precision, pooled estimate with 95% CI (thick) and PI (thin)."""
    cols = result.columns
    rng = np.random.default_rng(0)
    fig = Figure(figsize=(7.0, 0.5 * len(result.clusters) + 1.5))
    ax = fig.add_subplot()
    for i, c in enumerate(sorted(result.clusters, key=lambda c: c.cluster, reverse=True)):
        group = result.effects[result.effects[cols.cluster] == c.cluster]
        jitter = rng.uniform(-0.25, 0.25, len(group))
        sizes = 6.0 + 60.0 * (1.0 / group.sez) / float((1.0 / result.effects.sez).max())
        ax.scatter(group.r, i + jitter, s=sizes, alpha=0.35, color="#3d85c6", edgecolors="none")
        if c.pi_lb is not None and c.pi_ub is not None:
            ax.plot([np.tanh(c.pi_lb), np.tanh(c.pi_ub)], [i, i], color="black", lw=1.0)
        ax.plot([np.tanh(c.ci_lb), np.tanh(c.ci_ub)], [i, i], color="black", lw=4.0)
        ax.plot([np.tanh(c.z)], [i], "o", color="white", mec="black", ms=6)
    ax.set_yticks(
        range(len(result.clusters)),
        [c.cluster for c in sorted(result.clusters, key=lambda c: c.cluster, reverse=True)],
        fontsize=8,
    )
    ax.axvline(0.0, color="0.6", lw=0.6)
    ax.set_xlabel(tr("correlation r; points sized by precision; thick: 95% CI, thin: prediction interval"))
    ax.set_title(tr("Orchard plot by outcome cluster"))
    return fig


def funnel(result: SomaResult, tr: Translate = _same) -> Figure:
    """Effects (z) against their standard error, with the pooled estimate and pseudo 95% limits."""
    effects = result.effects
    center = float(result.overall.coefficients.estimate[0])
    top = float(effects.sez.max()) * 1.05
    fig = Figure(figsize=(6.0, 4.5))
    ax = fig.add_subplot()
    se = np.linspace(0.0, top, 50)
    ax.plot(center - 1.96 * se, se, color="0.5", ls="--", lw=0.8)
    ax.plot(center + 1.96 * se, se, color="0.5", ls="--", lw=0.8, label=tr("pseudo 95% limits"))
    ax.axvline(center, color="#cc0000", lw=0.8, label=tr("pooled z"))
    ax.scatter(effects.z, effects.sez, s=12, color="#0b5394", alpha=0.7)
    ax.set_ylim(top, 0.0)
    ax.set_xlabel("Fisher z")
    ax.set_ylabel(tr("standard error of z"))
    est, _, _, p = result.egger_slope
    ax.set_title(tr("Funnel plot (small-study slope {slope}, CR2 p = {p})").format(slope=f"{est:+.2f}", p=f"{p:.2g}"))
    ax.legend(frameon=False, fontsize=8)
    return fig


def profiles(result: SomaResult, tr: Translate = _same) -> Figure:
    """Profile (restricted) log-likelihood of each variance component of the overall model."""
    curves = result.profiles
    fig = Figure(figsize=(4.0 * max(1, len(curves)), 3.5))
    for i, (name, curve) in enumerate(curves.items(), 1):
        ax = fig.add_subplot(1, len(curves), i)
        top = float(curve.loglik.max())
        ax.plot(curve.sigma2, curve.loglik, color="#0b5394")
        ax.axhline(top - 1.920729, color="0.5", ls="--", lw=0.8, label=tr("95% profile limit"))
        ax.set_ylim(top - 8.0, top + 0.5)
        ax.set_xlabel(name)
        ax.set_ylabel(tr("profile logLik"))
        ax.legend(frameon=False, fontsize=7)
    fig.suptitle(tr("Profile likelihood of the variance components"))
    fig.subplots_adjust(wspace=0.35)
    return fig


def soma_figures(result: SomaResult, folder: str | Path) -> list[Path]:
    """Forest, orchard, funnel and profile plots of a second-order meta-analysis (SVG and PNG)."""
    paths: list[Path] = []
    for name, build in (("forest", forest), ("orchard", orchard), ("funnel", funnel), ("profiles", profiles)):
        fig = build(result)
        if result.synthetic:
            fig.text(0.01, 0.005, "SYNTHETIC DATA (simulated)", fontsize=7, color="#cc0000")
        paths += save(fig, folder, name)
    return paths


# ---- small-study effects --------------------------------------------------------------------------


def contour_funnel(result: object, tr: Translate = _same, contours: Sequence[float] = (0.10, 0.05, 0.01)) -> Figure:
    """Contour-enhanced funnel plot (Peters et al. 2008): effects against their standard errors, shaded
    where a two-sided z test of zero is significant at each of ``contours``; the pooled estimate as a
    vertical line; for a trim-and-fill result the filled studies as open circles and the adjusted estimate.
    ``result``: a ``meta()`` result (univariate or multilevel) or a ``trimfill()`` result."""
    from edueffects.meta.bias import TrimFillResult, contour_levels
    from edueffects.meta.result import MetaResult

    if isinstance(result, TrimFillResult):
        data, fit = result.data, result.fit
        y, se, filled = data.yi.to_numpy(), np.sqrt(data.vi.to_numpy()), data.filled.to_numpy()
    elif isinstance(result, MetaResult):
        fit = result
        y, se = result.state.y, np.sqrt(result.state.v)
        filled = np.zeros(y.size, dtype=bool)
    else:
        raise InputError("contour_funnel: give a meta() or trimfill() result (got {0})", type(result).__name__)
    crits = contour_levels(contours)  # ascending critical values: .10, .05, .01
    alphas = sorted(contours, reverse=True)
    top = float(se.max()) * 1.08
    grid = np.linspace(0.0, top, 200)
    reach = max(float(np.abs(y).max()), float(crits[-1] * top)) * 1.05
    fig = Figure(figsize=(6.0, 4.6))
    ax = fig.add_subplot()
    shades = ["0.93", "0.80", "0.62", "0.45", "0.3"]
    edges = [*crits, np.inf]
    bounds = [*alphas[1:], 0.0]
    for i, alpha in enumerate(alphas):
        lower = edges[i] * grid
        upper = np.full(grid.size, reach) if i + 1 == len(alphas) else np.minimum(edges[i + 1] * grid, reach)
        low = bounds[i]
        label = f"{_decimal(tr, low)} < p < {_decimal(tr, alpha)}" if low > 0 else f"p < {_decimal(tr, alpha)}"
        ax.fill_betweenx(grid, lower, upper, color=shades[i % len(shades)], lw=0, label=label)
        ax.fill_betweenx(grid, -upper, -lower, color=shades[i % len(shades)], lw=0)
    ax.axvline(0.0, color="0.5", lw=0.6)
    center = float(fit.coefficients.estimate[0])
    ax.axvline(center, color="#cc0000", lw=0.9, ls="--", label=tr("pooled estimate"))
    ax.scatter(y[~filled], se[~filled], s=16, color="#0b5394", zorder=3, label=tr("studies"))
    if filled.any():
        ax.scatter(
            y[filled], se[filled], s=16, facecolors="white", edgecolors="#0b5394", zorder=3, label=tr("filled studies")
        )
    ax.set_xlim(-reach, reach)
    ax.set_ylim(top, 0.0)
    ax.set_xlabel(tr("effect size"))
    ax.set_ylabel(tr("standard error"))
    if isinstance(result, TrimFillResult):
        ax.set_title(tr("Contour-enhanced funnel plot after trim-and-fill ({k0} filled)").format(k0=result.k0))
    else:
        ax.set_title(tr("Contour-enhanced funnel plot"))
    ax.legend(frameon=False, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
    return fig
