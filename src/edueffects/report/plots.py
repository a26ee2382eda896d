"""Figures of results (matplotlib, no pyplot state): saved as SVG and PNG side by side.

Every figure is finished the same way before it is written (:func:`finish`): data labels are shown as
written (no mathtext) with bidirectional control characters made visible, overlapping tick labels are
wrapped, rotated or thinned, and legends placed below a plot are moved clear of its tick labels.
In Dutch and German every number a figure prints has a decimal comma (:func:`localize` for the axes,
the language's number format for numbers inside titles, legends and text columns).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from edueffects.core.errors import InputError
from edueffects.recovery.result import RecoveryResult
from edueffects.report.document import neutral
from edueffects.soma.result import SomaResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.backend_bases import RendererBase
    from matplotlib.legend import Legend

    from edueffects.meta.result import MetaResult

Translate = Callable[[str], str]
CATERPILLAR_FROM = 61  # a forest plot up to 60 effects, a caterpillar plot from 61 on
PROGRAM_TERMS = ("(Intercept)", "pandemic")  # coefficient-name parts the program makes (translated)


def _same(text: str) -> str:
    return text


def _code(tr: Translate) -> str:
    return str(getattr(tr, "code", "en"))


def _language(tr: Translate) -> Any:
    from edueffects.report.i18n import Language

    return Language.of(_code(tr))


def _short(tr: Translate, value: float, spec: str = "g") -> str:
    """A number formatted by ``spec`` in the translator's locale (decimal comma for nl/de)."""
    text = format(value, spec)
    if _code(tr) in ("nl", "de"):
        text = text.translate(str.maketrans(".,", ",."))
    return text


def _decimal(tr: Translate, value: float) -> str:
    """A short number in the translator's locale (decimal comma for nl/de)."""
    return _short(tr, value, "g")


def term_label(term: str, tr: Translate = _same) -> str:
    """A readable coefficient label: ``pandemic:ses`` -> ``pandemic × ses``; the parts the program names
    (the intercept, the pandemic indicator) in the report's language, data names as they are."""
    return " × ".join(tr(part) if part in PROGRAM_TERMS else part for part in term.split(":"))


# ---- finishing: plain text, visible bidi controls, no overlapping tick labels ------------------------


def plain_text(fig: Figure) -> Figure:
    """Every text of the figure shown as written: labels from data (``$x$``, ``$5 and $10``) are not
    read as mathtext, which would render them as formulas or fail; bidirectional control characters
    (which could reorder what a label seems to say) are shown as their code points."""
    from matplotlib.text import Text

    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if _categorical(axis):
                labels = _category_labels(axis)
                if any(neutral(label) != label for label in labels):
                    axis.set_ticklabels([neutral(label) for label in labels])
    for text in fig.findobj(Text):
        text.set_parse_math(False)
        content = text.get_text()
        if content and neutral(content) != content:
            text.set_text(neutral(content))
    return fig


def _categorical(axis: Axis) -> bool:
    """Ticks at fixed positions with labels of their own (categories, not numbers)."""
    from matplotlib.ticker import FixedLocator, ScalarFormatter

    return isinstance(axis.get_major_locator(), FixedLocator) and not isinstance(
        axis.get_major_formatter(), ScalarFormatter
    )


def _category_labels(axis: Axis) -> list[str]:
    return [str(label) for label in axis.get_major_formatter().format_ticks(list(axis.get_ticklocs()))]


def _renderer(fig: Figure) -> RendererBase:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas: Any = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    renderer: RendererBase = canvas.get_renderer()
    return renderer


def _tick_boxes(axis: Axis, renderer: RendererBase) -> list[tuple[str, Any]]:
    labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text().strip()]
    return [(t.get_text(), t.get_window_extent(renderer)) for t in labels]


def _overlapping(boxes: list[tuple[str, Any]], pad: float = 1.0) -> list[tuple[str, str]]:
    pairs = []
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1 :]:
            if (
                box_a.x0 < box_b.x1 + pad
                and box_b.x0 < box_a.x1 + pad
                and box_a.y0 < box_b.y1 + pad
                and box_b.y0 < box_a.y1 + pad
            ):
                pairs.append((a, b))
    return pairs


def tick_overlaps(fig: Figure) -> list[tuple[str, str]]:
    """Pairs of tick labels of one axis whose boxes touch or overlap when the figure is drawn."""
    renderer = _renderer(fig)
    found: list[tuple[str, str]] = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            found += _overlapping(_tick_boxes(axis, renderer))
    return found


def _declutter(fig: Figure) -> None:
    """Wrap, rotate or thin the tick labels of every axis whose labels overlap."""
    from matplotlib.ticker import MaxNLocator

    renderer = _renderer(fig)
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if not _overlapping(_tick_boxes(axis, renderer)):
                continue
            horizontal = axis is ax.xaxis
            fixed = _categorical(axis)
            steps: list[Callable[[], object]] = []
            if fixed and horizontal:  # categories (SPSS value labels): wrap, then rotate
                steps += [partial(_wrap_labels, axis, 14), partial(_rotate, axis, 30.0), partial(_rotate, axis, 90.0)]
            elif fixed:
                steps.append(partial(axis.set_tick_params, labelsize=6))
            else:  # numbers: fewer ticks, then rotate
                steps += [partial(axis.set_major_locator, MaxNLocator(nbins=n)) for n in (5, 4, 3, 2)]
                if horizontal:
                    steps.append(partial(_rotate, axis, 30.0))
            for step in steps:
                step()
                renderer = _renderer(fig)
                if not _overlapping(_tick_boxes(axis, renderer)):
                    break


def _wrap_labels(axis: Axis, width: int) -> None:
    axis.set_ticklabels([textwrap.fill(s, width, break_long_words=False) for s in _category_labels(axis)])


def _rotate(axis: Axis, angle: float) -> None:
    for label in axis.get_ticklabels():
        label.set_rotation(angle)
        label.set_horizontalalignment("right" if angle < 90 else "center")
        label.set_rotation_mode("anchor" if angle < 90 else "default")


LEGEND_BELOW = "edueffects-legend-below"


def _legend_below(ax: Any, **options: Any) -> Legend:
    """A legend centred under ``ax``, below its tick labels and axis label (placed by :func:`finish`,
    once the tick labels have their final size), never over the data or above the title."""
    legend: Legend = ax.legend(frameon=False, loc="upper center", **options)
    legend.set_gid(LEGEND_BELOW)
    return legend


def _place_legends(fig: Figure) -> None:
    legends = [(ax, ax.get_legend()) for ax in fig.axes]
    below = [(ax, legend) for ax, legend in legends if legend is not None and legend.get_gid() == LEGEND_BELOW]
    if not below:
        return
    renderer = _renderer(fig)
    for ax, legend in below:
        box = ax.get_tightbbox(renderer, bbox_extra_artists=[])  # axes, tick labels, axis labels, title
        if box is None:
            continue
        frame = ax.get_window_extent(renderer)
        anchor = ((frame.x0 + frame.width / 2) / fig.bbox.width, (box.y0 - 4.0) / fig.bbox.height)
        legend.set_bbox_to_anchor(anchor, transform=fig.transFigure)
        legend.set_loc("upper center")


def finish(fig: Figure) -> Figure:
    """Plain text, visible bidirectional controls, no overlapping tick labels, legends clear of the axes."""
    plain_text(fig)
    _declutter(fig)
    _place_legends(fig)
    return fig


def save(fig: Figure, folder: str | Path, name: str) -> list[Path]:
    """Write ``name.svg`` and ``name.png`` into ``folder`` (created if missing); the file name is a
    safe slug of ``name`` (a moderator called ``ses/income`` names no sub-folder). Both figures are
    rendered before either is written, and each is written atomically (a temporary file beside it,
    renamed over it): a failure leaves no partial file."""
    from io import BytesIO

    from matplotlib import rc_context

    from edueffects.io.outputs import slug, write_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    stem = slug(name)
    paths = [out / f"{stem}.svg", out / f"{stem}.png"]
    rendered = []
    with rc_context({"text.parse_math": False}):
        finish(fig)
        for fmt, dpi in (("svg", None), ("png", 150)):
            buffer = BytesIO()
            fig.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight")
            rendered.append(buffer.getvalue())
    for path, data in zip(paths, rendered, strict=True):
        write_file(path, data)
    return paths


def localize(fig: Figure, code: str) -> Figure:
    """Decimal commas on numeric axes for Dutch and German (categorical tick labels are left alone)."""
    if code in ("nl", "de"):
        from matplotlib.ticker import FuncFormatter, ScalarFormatter

        comma = FuncFormatter(lambda value, _pos: _short(_Code(code), value, "g"))
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                if isinstance(axis.get_major_formatter(), ScalarFormatter):
                    axis.set_major_formatter(comma)
    return fig


class _Code:
    """A stand-in translator that only knows its language code (for number formatting)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __call__(self, text: str) -> str:
        return text


def svg_text(fig: Figure) -> str:
    """The figure as an inline ``<svg>`` element (text kept as escaped text, no XML prolog)."""
    from io import StringIO

    from matplotlib import rc_context

    buffer = StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "edueffects", "text.parse_math": False}):
        finish(fig)
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


# ---- forest plots as meta-analysts know them ------------------------------------------------------


@dataclass(frozen=True)
class ForestRow:
    """One row of a forest plot: an effect (square sized by weight), a pooled estimate (diamond), a
    prediction interval (line with end marks) or a heading (text only)."""

    label: str
    kind: Literal["effect", "pooled", "interval", "heading"] = "effect"
    estimate: float | None = None
    lower: float | None = None
    upper: float | None = None
    weight: float | None = None  # percent


def forest_plot(
    rows: Sequence[ForestRow],
    tr: Translate = _same,
    xlabel: str = "",
    title: str = "",
    label_header: str = "",
    estimate_header: str = "",
    reference: float | None = 0.0,
    digits: int = 2,
) -> Figure:
    """Row labels on the left, the intervals in the middle, weights and ``estimate [CI]`` on the right
    (metafor's ``forest``): a square per effect sized by its weight, a diamond per pooled estimate, a
    line with end marks per prediction interval."""
    lang = _language(tr)
    weights = any(r.weight is not None for r in rows)
    n = len(rows)
    label_width = max(
        [_text_inches(r.label, bold=r.kind in ("pooled", "heading")) + 0.25 for r in rows]
        + [_text_inches(label_header, bold=True) + 0.1, 0.8]
    )
    sample = lang.number(-9.0, digits) + " " + lang.interval(-9.0, -9.0, digits, bounded=False)
    widest = max(_text_inches(estimate_header, bold=True), _text_inches(sample, bold=True))
    text_width = widest + 0.3 + (_text_inches(tr("weight"), bold=True) + 0.35 if weights else 0.0)
    weight_x = (_text_inches(tr("weight"), bold=True) + 0.2) / text_width
    height = 0.2 * (n + 1) + 1.0
    fig = Figure(figsize=(label_width + 3.6 + text_width, height))
    grid = fig.add_gridspec(
        1,
        3,
        width_ratios=[label_width, 3.6, text_width],
        wspace=0.02,
        top=1.0 - 0.5 / height,
        bottom=0.55 / height,
        left=0.01,
        right=0.99,
    )
    left, mid, right = (fig.add_subplot(grid[0, i]) for i in range(3))
    ys = np.arange(n, 0, -1, dtype=float)  # the header row sits at n + 1
    top = n + 1.0
    for ax in (left, right):
        ax.set_xlim(0.0, 1.0)
        ax.axis("off")
    for ax in (left, mid, right):
        ax.set_ylim(0.3, top + 0.7)
    left.text(0.0, top, label_header, ha="left", va="center", fontsize=8, fontweight="bold")
    if weights:
        right.text(weight_x, top, tr("weight"), ha="right", va="center", fontsize=8, fontweight="bold")
    right.text(1.0, top, estimate_header, ha="right", va="center", fontsize=8, fontweight="bold")
    spans = [v for r in rows for v in (r.lower, r.upper, r.estimate) if v is not None and np.isfinite(v)]
    biggest = max((r.weight for r in rows if r.weight is not None), default=1.0) or 1.0
    for y, row in zip(ys, rows, strict=True):
        bold = row.kind in ("pooled", "heading")
        indent = 0.04 if row.kind in ("effect", "interval") and any(r.kind == "heading" for r in rows) else 0.0
        left.text(indent, y, row.label, ha="left", va="center", fontsize=8, fontweight="bold" if bold else "normal")
        if row.kind == "heading" or row.lower is None or row.upper is None:
            continue
        if row.kind == "effect":
            mid.plot([row.lower, row.upper], [y, y], color="0.25", lw=0.8)
            if row.estimate is not None:
                size = 4.0 if row.weight is None else 2.5 + 6.5 * np.sqrt(row.weight / biggest)
                mid.plot([row.estimate], [y], "s", color="0.15", ms=size)
        elif row.kind == "pooled" and row.estimate is not None:
            mid.fill(
                [row.lower, row.estimate, row.upper, row.estimate], [y, y + 0.38, y, y - 0.38], color="#0b5394", lw=0
            )
        else:
            mid.plot([row.lower, row.upper], [y, y], color="#0b5394", lw=1.2)
            mid.plot([row.lower, row.upper], [y, y], "|", color="#0b5394", ms=7)
        if row.weight is not None:
            right.text(weight_x, y, lang.number(row.weight, 1) + "%", ha="right", va="center", fontsize=8)
        est = "" if row.estimate is None else lang.number(row.estimate, digits) + " "
        text = est + lang.interval(row.lower, row.upper, digits, bounded=False)
        right.text(1.0, y, text, ha="right", va="center", fontsize=8, fontweight="bold" if bold else "normal")
    low, high = (min(spans), max(spans)) if spans else (-1.0, 1.0)
    if reference is not None:
        low, high = min(low, reference), max(high, reference)
        mid.axvline(reference, color="0.6", lw=0.7, zorder=0)
    pad = 0.05 * (high - low or 1.0)
    mid.set_xlim(low - pad, high + pad)
    mid.set_yticks([])
    for side in ("left", "right", "top"):
        mid.spines[side].set_visible(False)
    mid.set_xlabel(xlabel, fontsize=8)
    mid.tick_params(axis="x", labelsize=8)
    if title:
        fig.suptitle(title, fontsize=10, y=1.0 - 0.12 / height)
    return fig


def _text_inches(text: str, bold: bool = False, size: float = 8.0) -> float:
    """The width of ``text`` at ``size`` points in the default font, in inches."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath

    if not text:
        return 0.0
    plain = text.replace("$", r"\$")  # never read as mathtext (a '\\$' is a little wider: on the safe side)
    path = TextPath((0.0, 0.0), plain, size=size, prop=FontProperties(weight="bold" if bold else "normal"))
    return float(path.get_extents().width) / 72.0 * 1.05


# ---- learning recovery ----------------------------------------------------------------------------


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
    """Mean gain (student-weighted) per cohort, one line per tercile of a school factor; the pandemic
    cohorts on a grey band with a visible edge (so that its legend swatch shows)."""
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
    cohorts = sorted(cells.cohort.unique())
    fig = Figure(figsize=(max(6.0, 0.75 * len(cohorts) + 2.0), 4.0))
    ax = fig.add_subplot()
    positions = np.arange(len(cohorts), dtype=float)
    pandemic = [float(i) for i, c in enumerate(cohorts) if str(c) in result.pandemic_cohorts]
    if pandemic:
        ax.axvspan(
            pandemic[0] - 0.3,
            pandemic[-1] + 0.3,
            facecolor="0.88",
            edgecolor="0.35",
            lw=0.9,
            ls="--",
            zorder=0,
            label=tr("pandemic cohorts"),
        )
    for tercile in ("low", "middle", "high"):
        values = [summary["mean"].get((tercile, c), np.nan) for c in cohorts]
        ax.plot(positions, values, marker="o", label=f"{moderator}: {tr(tercile + ' tercile')}")
    ax.set_xticks(positions, [str(c) for c in cohorts])
    ax.set_xlabel(tr("cohort"))
    ax.set_ylabel(tr("mean gain (score units)"))
    ax.set_title(tr("Gain by cohort and tercile of {moderator}").format(moderator=moderator))
    _legend_below(ax, fontsize=8, ncol=2)
    return fig


def ddd_effects(result: RecoveryResult, tr: Translate = _same) -> Figure:
    """DDD effects with 95% CI (model-based), 90% CI (TOST) and the equivalence bounds; the legend
    below the axis label, the title on top."""
    eq = result.equivalence
    c = result.coefficients
    index = {name: i for i, name in enumerate(c.names)}
    fig = Figure(figsize=(6.5, 0.6 * len(eq) + 1.8))
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
    ax.set_yticks(ys, [term_label(t.term, tr) for t in eq])
    ax.set_ylim(-0.6, len(eq) - 0.4)
    unit = tr("per SD of the school factor") if result.standardized else tr("per unit of the school factor")
    ax.set_xlabel(tr("DDD effect (score units {unit}); thin: 95% CI, thick: 90% CI").format(unit=unit))
    ax.set_title(tr("Do school factors moderate the pandemic change in the gain?"))
    _legend_below(ax, fontsize=8)
    return fig


def recovery_figures(result: RecoveryResult, folder: str | Path, tr: Translate = _same) -> list[Path]:
    """All recovery figures: DDD effects and, per moderator, gains by tercile."""
    paths = save(localize(ddd_effects(result, tr), _code(tr)), folder, "ddd_effects")
    for mod in result.moderators:
        paths += save(localize(gain_by_tercile(result, mod, tr), _code(tr)), folder, f"gain_by_{mod}_tercile")
    return paths


# ---- second-order meta-analysis -------------------------------------------------------------------


def forest(result: SomaResult, tr: Translate = _same) -> Figure:
    """Effect sizes (r, 95% CI) per outcome cluster, labelled by meta-analysis, with each cluster's
    pooled estimate and prediction interval and the overall pooled estimate."""
    cols = result.columns
    effects = result.effects.sort_values([cols.cluster, "r"])
    pooled = {c.cluster: c for c in result.clusters}
    rows: list[ForestRow] = []
    for cluster, group in effects.groupby(cols.cluster, sort=True):
        rows.append(ForestRow(str(cluster), "heading"))
        labels = group[cols.meta_analysis].astype(str)
        repeated = labels.duplicated(keep=False)
        for n, (label, again, (_, row)) in enumerate(zip(labels, repeated, group.iterrows(), strict=True), 1):
            lo, hi = np.tanh(row.z - 1.96 * row.sez), np.tanh(row.z + 1.96 * row.sez)
            rows.append(ForestRow(f"{label} ({n})" if again else label, "effect", float(row.r), float(lo), float(hi)))
        c = pooled[str(cluster)]
        rows.append(
            ForestRow(
                tr("pooled ({model}, k = {k})").format(model=tr(c.model), k=c.k),
                "pooled",
                float(np.tanh(c.z)),
                float(np.tanh(c.ci_lb)),
                float(np.tanh(c.ci_ub)),
            )
        )
        if c.pi_lb is not None and c.pi_ub is not None:
            rows.append(ForestRow(tr("prediction interval"), "interval", None, np.tanh(c.pi_lb), np.tanh(c.pi_ub)))
    overall = result.overall_r()
    rows.append(
        ForestRow(
            tr("overall (three-level, k = {k})").format(k=result.overall.k),
            "pooled",
            overall["r"],
            overall["ci_lb"],
            overall["ci_ub"],
        )
    )
    if overall["pi_lb"] is not None and overall["pi_ub"] is not None:
        rows.append(ForestRow(tr("prediction interval"), "interval", None, overall["pi_lb"], overall["pi_ub"]))
    return forest_plot(
        rows,
        tr,
        xlabel=tr("correlation r"),
        title=tr("Forest plot by outcome cluster"),
        label_header=tr("meta-analysis"),
        estimate_header=tr("r [95% CI]"),
    )


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
    _label_soma_funnel(ax, result, tr, tr("Funnel plot (small-study slope {slope}, CR2 p = {p})"))
    ax.legend(frameon=False, fontsize=8)
    return fig


def profiles(result: SomaResult, tr: Translate = _same) -> Figure:
    """Profile (restricted) log-likelihood of each variance component of the overall model, with the
    estimate marked and the 95% profile limit."""
    from matplotlib.ticker import MaxNLocator

    curves = result.profiles
    fig = Figure(figsize=(4.2 * max(1, len(curves)), 3.6))
    for i, (name, curve) in enumerate(curves.items(), 1):
        ax = fig.add_subplot(1, len(curves), i)
        top = float(curve.loglik.max())
        ax.plot(curve.sigma2, curve.loglik, color="#0b5394")
        ax.axhline(top - 1.920729, color="0.5", ls="--", lw=0.8, label=tr("95% profile limit"))
        if i - 1 < len(result.overall.variance):
            estimate = float(result.overall.variance[i - 1])
            ax.axvline(
                estimate,
                color="#cc0000",
                lw=0.9,
                label=tr("estimate ({value})").format(value=_short(tr, estimate, ".3g")),
            )
        ax.set_ylim(top - 8.0, top + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.set_xlabel(name)
        ax.set_ylabel(tr("profile logLik"))
        ax.legend(frameon=False, fontsize=7, loc="lower center")
    fig.suptitle(tr("Profile likelihood of the variance components"))
    fig.subplots_adjust(wspace=0.4)
    return fig


def leave_one_out(result: SomaResult, tr: Translate = _same) -> Figure:
    """Leave-one-meta-analysis-out plot: the pooled r (with its 95% CI) without each meta-analysis, those
    flagged by Cook's distance marked with an asterisk, the pooled r of all meta-analyses as a diamond and
    as the reference line."""
    sens = result.sensitivity
    if sens is None:
        raise InputError("the sensitivity analyses were skipped: run soma() with sensitivity=True")
    flagged = set(sens.influential)
    rows = [
        ForestRow(
            e.dropped[0] + (" *" if e.dropped[0] in flagged else ""),
            "effect",
            e.r,
            float(np.tanh(e.ci_lb)),
            float(np.tanh(e.ci_ub)),
        )
        for e in sens.leave_one_out
    ]
    full = sens.full
    rows.append(
        ForestRow(
            tr("all meta-analyses (k = {k})").format(k=full.k),
            "pooled",
            full.r,
            float(np.tanh(full.ci_lb)),
            float(np.tanh(full.ci_ub)),
        )
    )
    xlabel = tr("pooled correlation r without the meta-analysis")
    if flagged:
        xlabel += "\n" + tr("* influential by Cook's distance")
    return forest_plot(
        rows,
        tr,
        xlabel=xlabel,
        title=tr("Leave one meta-analysis out"),
        label_header=tr("meta-analysis left out"),
        estimate_header=tr("r [95% CI]"),
        reference=full.r,
    )


def soma_contour_funnel(result: SomaResult, tr: Translate = _same) -> Figure:
    """Contour-enhanced funnel plot of the effects (Fisher z against their standard errors; significance
    contours at .10, .05 and .01) with the pooled z and the multilevel Egger test in the title."""
    fig = contour_funnel(result.overall, tr, contours=(0.10, 0.05, 0.01))
    ax = fig.axes[0]
    _label_soma_funnel(ax, result, tr, tr("Contour-enhanced funnel plot (small-study slope {slope}, CR2 p = {p})"))
    return fig


def _label_soma_funnel(ax: Axes, result: SomaResult, tr: Translate, title: str) -> None:
    """Axis labels of a funnel plot of Fisher z, and ``title`` with the multilevel Egger slope and its CR2 p."""
    ax.set_xlabel(tr("Fisher z"))
    ax.set_ylabel(tr("standard error of z"))
    est, _, _, p = result.egger_slope
    ax.set_title(title.format(slope=_short(tr, est, "+.2f"), p=_short(tr, p, ".2g")))


def soma_figures(result: SomaResult, folder: str | Path, tr: Translate = _same) -> list[Path]:
    """Forest, orchard, funnel and profile plots of a second-order meta-analysis (SVG and PNG); with the
    sensitivity analyses the leave-one-out plot and the contour-enhanced funnel plot too."""
    paths: list[Path] = []
    builds: list[tuple[str, Callable[[SomaResult, Translate], Figure]]] = [
        ("forest", forest),
        ("orchard", orchard),
        ("funnel", funnel),
        ("profiles", profiles),
    ]
    if result.sensitivity is not None:
        builds += [("leave_one_out", leave_one_out), ("contour_funnel", soma_contour_funnel)]
    for name, build in builds:
        fig = localize(build(result, tr), _code(tr))
        if result.synthetic:
            fig.text(0.01, 0.005, tr("SYNTHETIC DATA (simulated)"), fontsize=7, color="#cc0000")
        paths += save(fig, folder, name)
    return paths


# ---- meta-analysis --------------------------------------------------------------------------------


def meta_weights(result: MetaResult) -> np.ndarray:
    """Each effect's weight in percent, as metafor's ``weights()``: ``1/(v_i + tau^2)`` (``1/v_i`` for
    the equal-effects model); in multilevel models the diagonal of the inverse marginal covariance, the
    fit's working covariance (with the correlated sampling errors of a CHE fit, ``rho``)."""
    from edueffects.core.blocks import iter_blocks

    s = result.state
    if result.model == "multilevel" and s.level_codes:
        w = np.empty(s.y.size)
        row_variance, codes, variances, loadings = s.working_levels()
        cluster = np.asarray(s.level_codes[0], dtype=np.intp)
        for rows, theta in iter_blocks(cluster, row_variance, codes, variances, loadings):
            w[rows] = np.diagonal(np.linalg.inv(theta), axis1=1, axis2=2)
    else:
        w = 1.0 / (s.v + s.residual_variance)
    return np.asarray(100.0 * w / w.sum())


def meta_labels(result: MetaResult, labels: str | None = None, tr: Translate = _same) -> list[str]:
    """Row labels of a meta-analysis: the ``labels`` column, else cluster (and effect within it), else
    ``effect 1 ... k`` in the order of the fitted rows."""
    frame = result.state.frame
    if labels is not None:
        if labels not in frame.columns:
            raise InputError("labels column '{0}' not found", labels)
        return [str(v) for v in frame[labels]]
    names = [n.split("/")[-1] for n in result.state.level_names]
    if names and all(n in frame.columns for n in names):
        return ["/".join(str(v) for v in values) for values in frame[names].itertuples(index=False)]
    return [tr("effect {n}").format(n=i) for i in range(1, result.k + 1)]


def _model_name(result: MetaResult, tr: Translate) -> str:
    if result.model == "fixed":
        return tr("equal-effects model")
    if result.model == "univariate":
        return tr("random-effects model")
    return tr("{levels}-level model").format(levels=len(result.variance) + 1)


def _z_crit(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 200.0))


def meta_forest(result: MetaResult, labels: str | None = None, tr: Translate = _same) -> Figure:
    """Forest plot of a meta-analysis: row labels, weights, ``estimate [CI]``, the pooled diamond and
    the prediction interval (models without moderators)."""
    lang = _language(tr)
    s = result.state
    half = _z_crit(result.level) * np.sqrt(s.v)
    weights = meta_weights(result)
    rows = [
        ForestRow(label, "effect", float(y), float(y - h), float(y + h), float(w))
        for label, y, h, w in zip(meta_labels(result, labels, tr), s.y, half, weights, strict=True)
    ]
    level = lang.number(result.level, 0) + "%"
    if result.prediction is not None and len(result.coefficients.names) == 1:
        p = result.prediction
        rows.append(
            ForestRow(
                tr("{model} (k = {k})").format(model=_model_name(result, tr), k=result.k),
                "pooled",
                p.pred,
                p.ci_lb,
                p.ci_ub,
                100.0,
            )
        )
        if result.model != "fixed" and p.pi_lb is not None and p.pi_ub is not None:
            rows.append(ForestRow(tr("prediction interval"), "interval", None, p.pi_lb, p.pi_ub))
    return forest_plot(
        rows,
        tr,
        xlabel=tr("effect size"),
        title=tr("Forest plot"),
        label_header=tr("effect"),
        estimate_header=tr("estimate [{level} CI]").format(level=level),
    )


def caterpillar(result: MetaResult, tr: Translate = _same) -> Figure:
    """Every effect with its confidence interval, sorted by size (for many effects), with the pooled
    estimate, its confidence interval and the prediction interval as bands."""
    s = result.state
    order = np.argsort(s.y, kind="stable")
    y, half = s.y[order], _z_crit(result.level) * np.sqrt(s.v[order])
    fig = Figure(figsize=(6.5, 6.0))
    ax = fig.add_subplot()
    rank = np.arange(1, y.size + 1)
    if result.prediction is not None and len(result.coefficients.names) == 1:
        p = result.prediction
        if p.pi_lb is not None and p.pi_ub is not None and result.model != "fixed":
            ax.axvspan(p.pi_lb, p.pi_ub, color="#e8eef7", lw=0, label=tr("prediction interval"))
        ax.axvspan(p.ci_lb, p.ci_ub, color="#a9c4e4", lw=0, label=tr("confidence interval of the pooled estimate"))
        ax.axvline(p.pred, color="#0b5394", lw=1.0, label=tr("pooled estimate"))
    ax.hlines(rank, y - half, y + half, color="0.45", lw=0.6)
    ax.plot(y, rank, "o", color="0.1", ms=1.8)
    ax.axvline(0.0, color="0.6", lw=0.6)
    ax.set_ylim(0, y.size + 1)
    ax.set_yticks([])
    ax.set_xlabel(tr("effect size"))
    ax.set_ylabel(tr("effects, sorted by size"))
    ax.set_title(tr("Caterpillar plot (k = {k})").format(k=result.k))
    if ax.get_legend_handles_labels()[1]:
        _legend_below(ax, fontsize=8, ncol=2)
    return fig


def continuous_moderators(result: MetaResult) -> list[str]:
    """The model's numeric moderator columns with three or more values that are not coded as categories."""
    frame = result.state.frame
    variables = sorted(v for v in result.terms.columns if v in frame.columns)
    formula = result.terms.formula
    out = []
    for name in variables:
        column = frame[name]
        coded = re.search(r"C\(\s*`?" + re.escape(name) + r"`?\s*[,)]", formula) is not None
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        if numeric and not coded and column.nunique() >= 3:
            out.append(name)
    return out


def bubble(result: MetaResult, moderator: str, tr: Translate = _same) -> Figure:
    """Effect sizes against a continuous moderator, points sized by weight, with the model's prediction
    line, its confidence band and (random-effects models) the prediction interval; other moderators
    held at their mean (numeric) or most frequent value."""
    frame = result.state.frame
    if moderator not in continuous_moderators(result):
        raise InputError("'{0}' is not a continuous moderator of this model", moderator)
    x = frame[moderator].to_numpy(dtype=float)
    weights = meta_weights(result)
    grid = np.linspace(float(x.min()), float(x.max()), 60)
    others = [v for v in result.terms.columns if v != moderator]
    new = pd.DataFrame({moderator: grid})
    for name in others:
        column = frame[name]
        held = (
            column.mean()
            if pd.api.types.is_numeric_dtype(column) and name in continuous_moderators(result)
            else (column.mode().iloc[0])
        )
        new[name] = held
    table = result.predict(new).table
    fig = Figure(figsize=(6.0, 4.5))
    ax = fig.add_subplot()
    sizes = 10.0 + 290.0 * weights / float(weights.max())
    ax.scatter(x, result.state.y, s=sizes, facecolors="#9fc5e8", edgecolors="#0b5394", lw=0.6, alpha=0.8)
    ax.plot(grid, table["pred"], color="#0b5394", lw=1.2, label=tr("predicted effect"))
    ax.fill_between(
        grid, table["ci_lb"], table["ci_ub"], color="#0b5394", alpha=0.15, lw=0, label=tr("confidence interval")
    )
    if "pi_lb" in table.columns and result.model != "fixed" and table["pi_lb"].notna().all():
        ax.plot(grid, table["pi_lb"], color="#0b5394", lw=0.8, ls="--", label=tr("prediction interval"))
        ax.plot(grid, table["pi_ub"], color="#0b5394", lw=0.8, ls="--")
    ax.axhline(0.0, color="0.6", lw=0.6)
    held_note = "\n" + tr("other moderators held at their mean or most frequent value") if others else ""
    ax.set_xlabel(moderator + held_note)
    ax.set_ylabel(tr("effect size"))
    ax.set_title(tr("Bubble plot: effect sizes against {moderator}").format(moderator=moderator))
    _legend_below(ax, fontsize=8, ncol=3)
    return fig


def meta_figures(
    result: MetaResult, folder: str | Path, labels: str | None = None, tr: Translate = _same
) -> list[Path]:
    """A forest plot (up to 60 effects) or a caterpillar plot (more), and a bubble plot per continuous
    moderator, as SVG and PNG."""
    paths: list[Path] = []
    for name, fig in meta_plots(result, labels, tr):
        paths += save(localize(fig, _code(tr)), folder, name)
    return paths


def meta_plots(result: MetaResult, labels: str | None = None, tr: Translate = _same) -> list[tuple[str, Figure]]:
    """The figures of a meta-analysis with their file names (see :func:`meta_figures`)."""
    first = (
        ("forest", meta_forest(result, labels, tr))
        if result.k < CATERPILLAR_FROM
        else ("caterpillar", caterpillar(result, tr))
    )
    return [first, *((f"bubble_{m}", bubble(result, m, tr)) for m in continuous_moderators(result))]


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
