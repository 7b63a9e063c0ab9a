"""Charts for notebooks and reports: trends, waterfalls, breakdowns and freshness.

Every chart is readable without colour (line styles, markers, hatches and direct labels carry
the meaning; colour only repeats it) and takes plain pandas objects. Functions return a
:class:`Chart` (a matplotlib ``Figure`` that displays itself as a PNG) and never touch pyplot:
a notebook cell that returns one shows the image, inline in its archived HTML too; reports embed it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib.ticker
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure


class Chart(Figure):
    """A figure that shows itself as a PNG wherever IPython displays it: JupyterLab, a plain kernel, a
    runner's run and so its archived HTML, whatever matplotlib backend is active. It is not
    registered with pyplot, so a cell that returns it shows it once and nothing leaks between cells.
    """

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        return buf.getvalue()


def _chart(width: float, height: float) -> tuple[Chart, Axes]:
    fig = Chart(figsize=(width, height))
    return fig, fig.subplots()


LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")
HATCHES = ("", "///", "...", "xxx", "\\\\\\", "++", "oo")
GREYS = ("#1b1b1b", "#555555", "#8a8a8a", "#b5b5b5", "#d9d9d9")
POSITIVE, NEGATIVE, TOTAL = "#4d4d4d", "#bdbdbd", "#1b1b1b"


def _money(v: float, unit: str = "$") -> str:
    sign = "-" if v < 0 else ""
    v = abs(v)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{sign}{unit}{v / div:,.1f}{suffix}"
    return f"{sign}{unit}{v:,.0f}"


def _finish(fig: Figure, ax, title: str, ylabel: str | None) -> Figure:
    ax.set_title(title, loc="left", fontsize=12, fontweight="bold")
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    fig.tight_layout()
    return fig


def trend(
    frame: pd.DataFrame,
    *,
    x: str,
    series: Sequence[str],
    title: str,
    ylabel: str | None = None,
    money: bool = False,
    labels: dict[str, str] | None = None,
) -> Figure:
    """Lines over time, one style and marker per series, each labelled at its last point."""
    fig, ax = _chart(8, 3.6)
    for i, col in enumerate(series):
        name = (labels or {}).get(col, col)
        ax.plot(
            frame[x], frame[col], linestyle=LINE_STYLES[i % 4], marker=MARKERS[i % 6], markersize=4,
            color=GREYS[min(i, 3)], label=name,
        )  # fmt: skip
        if len(frame):
            last = frame[col].iloc[-1]
            if pd.notna(last):
                text = _money(float(last)) if money else f"{float(last):,.2f}".rstrip("0").rstrip(".")
                ax.annotate(f" {name}: {text}", (frame[x].iloc[-1], last), fontsize=8, va="center")
    if money:
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: _money(v)))
    if len(series) > 1:
        ax.legend(frameon=False, fontsize=8, loc="upper left")
    fig.autofmt_xdate()
    return _finish(fig, ax, title, ylabel)


def waterfall(steps: Sequence[tuple[str, float]], *, title: str, start_label: str, end_label: str) -> Figure:
    """A bridge from a start total through signed movements to an end total (e.g. the MRR waterfall).

    ``steps`` is ``[(start_label, start), (movement, delta), ..., (end_label, end)]``; totals are
    solid dark bars, increases plain mid-grey, decreases light grey with hatching, every bar labelled.
    """
    fig, ax = _chart(8, 3.8)
    running = 0.0
    for i, (name, value) in enumerate(steps):
        is_total = name in (start_label, end_label)
        if is_total:
            bottom, height, color, hatch = 0.0, value, TOTAL, ""
            running = value
        else:
            bottom = running if value >= 0 else running + value
            height, color, hatch = (
                abs(value),
                POSITIVE if value >= 0 else NEGATIVE,
                "" if value >= 0 else "///",
            )
            running += value
        ax.bar(i, height, bottom=bottom, color=color, hatch=hatch, edgecolor="#333333", linewidth=0.6)
        label = _money(value) if is_total else ("+" if value >= 0 else "") + _money(value)
        ax.annotate(label, (i, bottom + height), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(steps)), [s[0] for s in steps], rotation=20, ha="right", fontsize=8)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: _money(v)))
    return _finish(fig, ax, title, None)


def stacked_breakdown(
    frame: pd.DataFrame, *, x: str, parts: Sequence[str], title: str, money: bool = True
) -> Figure:
    """Stacked bars by category with a distinct hatch per part (cost breakdown by category/provider)."""
    fig, ax = _chart(8, 3.8)
    bottom = pd.Series(0.0, index=frame.index)
    for i, part in enumerate(parts):
        values = frame[part].fillna(0).astype(float)
        ax.bar(frame[x].astype(str), values, bottom=bottom, label=part, color=GREYS[i % len(GREYS)],
               hatch=HATCHES[i % len(HATCHES)], edgecolor="#333333", linewidth=0.5)  # fmt: skip
        bottom += values
    if money:
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: _money(v)))
    ax.legend(frameon=False, fontsize=8, ncols=min(len(parts), 4), loc="upper left")
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    return _finish(fig, ax, title, None)


def freshness(
    frame: pd.DataFrame, *, name: str, age_hours: str, warn: str, critical: str, title: str
) -> Figure:
    """Horizontal bars of data age against warning and critical thresholds (hours)."""
    frame = frame.sort_values(age_hours)
    fig, ax = _chart(8, 0.4 * len(frame) + 1.2)
    y = range(len(frame))
    status = [
        "critical" if a > c else "warning" if a > w else "ok"
        for a, w, c in zip(frame[age_hours], frame[warn], frame[critical], strict=True)
    ]
    hatch = {"ok": "", "warning": "///", "critical": "xxx"}
    ax.barh(list(y), frame[age_hours], color=[GREYS[{"ok": 3, "warning": 2, "critical": 0}[s]] for s in status],
            hatch=[hatch[s] for s in status], edgecolor="#333333", linewidth=0.6)  # fmt: skip
    for i, (a, s) in enumerate(zip(frame[age_hours], status, strict=True)):
        ax.annotate(f" {a:.0f} h ({s})", (a, i), va="center", fontsize=8)
    for thr, style in ((warn, "--"), (critical, ":")):
        for i, v in enumerate(frame[thr]):
            ax.plot([v, v], [i - 0.4, i + 0.4], linestyle=style, color="#000000", linewidth=1.2)
    ax.set_yticks(list(y), frame[name], fontsize=8)
    ax.set_xlabel("age in hours (dashed: warning, dotted: critical)")
    return _finish(fig, ax, title, None)
