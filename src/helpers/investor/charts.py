"""Charts for notebooks and reports: trends, waterfalls, breakdowns and freshness.

Every chart is readable without colour (line styles, markers, hatches and direct labels carry
the meaning; colour only repeats it) and takes plain pandas objects. Functions return a
:class:`Chart` (a matplotlib ``Figure`` that displays itself as a PNG) and never touch pyplot:
a notebook cell that returns one shows the image, inline in its archived HTML too; reports embed it.

Legends sit outside the data (below the axes), values read the same everywhere (:func:`money`:
``$1.48M``, ``$312k``, ``$31.2k``; percentages ``12.3%``), and a month axis (``YYYY-MM`` labels)
reads ``Oct / Nov / … / Jan 2026``. A chart knows what it shows (:attr:`Chart.wb_meta`: its name,
its axis (``month``, ``steps`` or ``other``), its points and their labels); its PNG output carries
that as metadata, and the report template turns it into the ``<img>``'s ``alt`` text and its
``data-chart`` / ``data-axis`` / ``data-points`` attributes.
"""

from __future__ import annotations

import calendar
import io
import math
import re
from collections.abc import Sequence
from typing import Any

import matplotlib.ticker
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure


class Chart(Figure):
    """A figure that shows itself as a PNG wherever IPython displays it: JupyterLab, a plain kernel, a
    runner's run and so its archived HTML, whatever matplotlib backend is active. It is not
    registered with pyplot, so a cell that returns it shows it once and nothing leaks between cells.

    ``wb_alt`` (the image's alt text), ``wb_meta`` (``{"chart": name, "axis": …, "points": n, "labels": [...]}``),
    ``wb_width`` (display width in CSS pixels) and ``wb_dpi`` travel with the PNG as its metadata.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wb_alt: str = ""
        self.wb_meta: dict[str, Any] = {}
        self.wb_width: int | None = None
        self.wb_dpi: int = 110

    def png_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=self.wb_dpi, bbox_inches="tight", facecolor="white")
        return buf.getvalue()

    def png_metadata(self) -> dict[str, Any]:
        md: dict[str, Any] = {}
        if self.wb_alt:
            md["alt"] = self.wb_alt
        if self.wb_width:
            md["width"] = self.wb_width
        if self.wb_meta:
            md["workbook"] = dict(self.wb_meta)
        return md

    def _repr_png_(self) -> bytes | tuple[bytes, dict[str, Any]]:
        md = self.png_metadata()
        return (self.png_bytes(), md) if md else self.png_bytes()


def _chart(width: float, height: float) -> tuple[Chart, Axes]:
    fig = Chart(figsize=(width, height), layout="constrained")
    return fig, fig.subplots()


LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")
HATCHES = ("", "///", "...", "xxx", "\\\\\\", "++", "oo")
GREYS = ("#1b1b1b", "#555555", "#8a8a8a", "#b5b5b5", "#d9d9d9")
POSITIVE, NEGATIVE, TOTAL = "#4d4d4d", "#bdbdbd", "#1b1b1b"
PERIOD = re.compile(r"^\d{4}-\d{2}$")


# ---------------------------------------------------------------- how values read


def money(v: float, unit: str = "$", *, signed: bool = False) -> str:
    """An amount in three significant figures: ``$1.48M``, ``$312k``, ``$31.2k``, ``$3.3k``, ``$950``.

    ``signed``: a ``+`` before positive amounts (movements); negative amounts always read ``-$4.8k``.
    """
    sign = "-" if v < 0 else ("+" if signed and v > 0 else "")
    a = abs(float(v))
    if round(a) < 1000:
        return f"{sign}{unit}{a:,.0f}"
    if round(a / 1e3, 1) < 100:
        return f"{sign}{unit}{a / 1e3:.1f}k"
    if round(a / 1e3) < 1000:
        return f"{sign}{unit}{a / 1e3:.0f}k"
    if round(a / 1e6, 2) < 1000:
        return f"{sign}{unit}{a / 1e6:.2f}M"
    return f"{sign}{unit}{a / 1e9:.2f}B"


class AxisTicks(matplotlib.ticker.Formatter):
    """Tick labels that read alike: one unit for the axis (``k``/``M`` for money) and as few decimals as
    its step needs (``$13M $14M``, ``$1.42M $1.44M``, ``$0 $50k $100k``; ``94% 96%``, ``32.5% 35.0%``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # money | percent

    def __call__(self, x: float, pos: int | None = None) -> str:
        return self.format_ticks([x])[0]

    def format_ticks(self, values: Sequence[float]) -> list[str]:
        vals = [float(v) for v in values]
        big = max((abs(v) for v in vals), default=0.0)
        div, suffix = (1.0, "%") if self.kind == "percent" else next(
            ((d, s) for d, s in ((1e9, "B"), (1e6, "M"), (1e3, "k")) if big >= d), (1.0, "")
        )  # fmt: skip
        scaled = [v / div for v in vals]
        dec = next((d for d in range(4) if all(abs(round(v, d) - v) < 1e-6 for v in scaled)), 3)
        unit = "" if self.kind == "percent" else "$"
        return [
            ("-" if v < 0 else "") + f"{unit}{abs(v):.{dec}f}{suffix}"
            if v or self.kind == "percent"
            else f"{unit}0"
            for v in scaled
        ]


def percent(ratio: float, digits: int = 1) -> str:
    """A ratio as a percentage: ``0.123`` reads ``12.3%``."""
    return f"{float(ratio) * 100:.{digits}f}%"


def month_label(period: str, *, year: bool = True) -> str:
    """``2026-10`` reads ``Oct 2026`` (``Oct`` without the year)."""
    y, m = period.split("-")
    return f"{calendar.month_abbr[int(m)]} {y}" if year else calendar.month_abbr[int(m)]


def month_ticks(periods: Sequence[str]) -> list[str]:
    """Axis labels for consecutive months: the year under the first month and under each January."""
    out = []
    for i, p in enumerate(periods):
        first = i == 0 or p.endswith("-01")
        out.append(f"{month_label(p, year=False)}\n{p[:4]}" if first else month_label(p, year=False))
    return out


def _is_months(values: Sequence[Any]) -> bool:
    return len(values) > 0 and all(isinstance(v, str) and PERIOD.match(v) for v in values)


# ---------------------------------------------------------------- layout


def _finish(fig: Figure, ax: Axes, title: str, ylabel: str | None, subtitle: str | None = None) -> Figure:
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold", pad=16 if subtitle else 6)
    if subtitle:
        ax.text(0, 1.015, subtitle, transform=ax.transAxes, fontsize=8.5, color="#333333", va="bottom")
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=8.5)
    return fig


def _legend_below(fig: Figure, ax: Axes, n: int) -> None:
    """The legend outside the data: one row under the axes."""
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(handles)), key=lambda i: not hasattr(handles[i], "patches"))  # bars, then lines
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    if handles:
        cols = n if n <= 5 else (n + 1) // 2
        fig.legend(handles, labels, loc="outside lower center", ncols=cols, frameon=False, fontsize=8.5)


def _spread(values: list[float], gap: float) -> list[float]:
    """Move label positions apart by at least ``gap`` (keeping their order), so end labels do not collide."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = list(values)
    for prev, cur in zip(order, order[1:], strict=False):
        if out[cur] - out[prev] < gap:
            out[cur] = out[prev] + gap
    return out


def _percent_limits(ax: Axes, lo: float, hi: float, min_span: float) -> None:
    """At least ``min_span`` percentage points of axis around the data, so small moves look small."""
    span = hi - lo
    if span < min_span:
        mid = (hi + lo) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    pad = (hi - lo) * 0.12
    ax.set_ylim(lo - pad, hi + pad)


def _describe(title: str, labels: Sequence[str]) -> str:
    if not labels:
        return f"{title}: no data"
    shown = [month_label(x) if isinstance(x, str) and PERIOD.match(x) else str(x) for x in labels]
    return f"{title}: {len(shown)} points, {shown[0]} to {shown[-1]} ({', '.join(shown)})"


# ---------------------------------------------------------------- the charts


def trend(
    frame: pd.DataFrame,
    *,
    x: str,
    series: Sequence[str],
    title: str,
    ylabel: str | None = None,
    money: bool = False,
    labels: dict[str, str] | None = None,
    percent: bool = False,
    min_span: float = 4.0,
    subtitle: str | None = None,
    size: tuple[float, float] = (8, 3.6),
    name: str = "",
) -> Chart:
    """Lines over time, one style and marker per series, each labelled at its last point.

    ``percent``: values are percentages (axis ``25%``, at least ``min_span`` points of axis). A month
    axis (``YYYY-MM`` values of ``x``) reads as month names.
    """
    fig, ax = _chart(*size)
    xs = list(frame[x])
    months = _is_months(xs)
    pos = list(range(len(xs))) if months else xs
    fmt = _value_formatter(money, percent)
    ends: list[tuple[float, str]] = []
    for i, col in enumerate(series):
        name_i = (labels or {}).get(col, col)
        ax.plot(pos, frame[col], linestyle=LINE_STYLES[i % 4], marker=MARKERS[i % 6], markersize=4,
                color=GREYS[min(i, 3)], label=name_i, linewidth=1.6)  # fmt: skip
        if len(frame) and pd.notna(frame[col].iloc[-1]):
            last = float(frame[col].iloc[-1])
            ends.append(
                (last, f" {name_i}: {fmt(last)}" if len(series) > 1 or not months else f" {fmt(last)}")
            )
    if months:
        ax.set_xticks(pos, month_ticks(xs))
        ax.set_xlim(-0.5, len(xs) - 0.5 + (1.6 if ends else 0))
    else:
        fig.autofmt_xdate()
    values = (
        pd.concat([frame[c] for c in series]).dropna().astype(float) if len(frame) else pd.Series(dtype=float)
    )
    if percent and len(values):
        _percent_limits(ax, float(values.min()), float(values.max()), min_span)
    _label_ends(ax, pos[-1] if pos else 0, ends)
    if money or percent:
        ax.yaxis.set_major_formatter(AxisTicks("money" if money else "percent"))
    if len(series) > 1:
        _legend_below(fig, ax, len(series))
    points = frame.dropna(subset=list(series), how="all")[x].tolist() if len(frame) else []
    fig.wb_meta = {"chart": name or title, "axis": "month" if months else "other", "points": len(points),
                   "labels": [str(p) for p in points]}  # fmt: skip
    fig.wb_alt = _describe(title, [str(p) for p in points])
    return _finish(fig, ax, title, ylabel, subtitle)


def _value_formatter(as_money: bool, as_percent: bool):
    """How a chart labels one value: money, ``12.3%``, else a number (whole from 100 on)."""
    if as_money:
        return money
    if as_percent:
        return lambda v: f"{float(v):.1f}%"
    return lambda v: (
        f"{float(v):,.0f}" if abs(float(v)) >= 100 else f"{float(v):,.2f}".rstrip("0").rstrip(".")
    )


def _label_ends(ax: Axes, x_last: Any, ends: list[tuple[float, str]]) -> None:
    """The last value of each series beside its last point, spread apart so none overlaps another."""
    if not ends:
        return
    lo, hi = ax.get_ylim()
    ys = _spread([v for v, _t in ends], (hi - lo) * 0.075)
    for (value, text), y in zip(ends, ys, strict=True):
        ax.annotate(text, (x_last, value), xytext=(x_last, y), fontsize=8.5, va="center",
                    textcoords="data", annotation_clip=False)  # fmt: skip


def _auto_floor(lo: float, hi: float) -> float:
    """Where a bridge's axis starts: below its lowest running total by most of its movement, on a round
    step (1, 2, 2.5 or 5 times a power of ten), never below zero."""
    span = (hi - lo) or abs(hi) * 0.05
    target = lo - span * 0.8
    if target <= 0 or span <= 0:
        return 0.0
    raw = (hi - target) / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return max(0.0, math.floor(target / step) * step)


def waterfall(
    steps: Sequence[tuple[str, float]],
    *,
    title: str,
    start_label: str,
    end_label: str,
    baseline: float | str = 0.0,
    size: tuple[float, float] = (8, 3.8),
    name: str = "",
) -> Chart:
    """A bridge from a start total through signed movements to an end total (e.g. the MRR waterfall).

    ``steps`` is ``[(start_label, start), (movement, delta), ..., (end_label, end)]``; totals are
    solid dark bars, increases plain mid-grey, decreases light grey with hatching, every bar labelled.
    ``baseline="auto"`` starts the axis near the smallest running total (not at zero) so the
    movements are visible, and says so above the bars ("axis starts at $1.40M").
    """
    fig, ax = _chart(*size)
    levels, running = [], 0.0
    for label, value in steps:
        running = value if label in (start_label, end_label) else running + value
        levels.append(running)
    lo, hi = (min(levels), max(levels)) if levels else (0.0, 0.0)
    floor = float(baseline) if baseline != "auto" else _auto_floor(lo, hi)
    running = 0.0
    for i, (label, value) in enumerate(steps):
        if label in (start_label, end_label):
            bottom, height, color, hatch = floor, value - floor, TOTAL, ""
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
        text = money(value) if label in (start_label, end_label) else money(value, signed=True)
        ax.annotate(text, (i, bottom + height), xytext=(0, 2), textcoords="offset points", ha="center",
                    va="bottom", fontsize=8.5)  # fmt: skip
    ax.set_xticks(range(len(steps)), [s[0] for s in steps], rotation=20, ha="right", fontsize=8.5)
    ax.yaxis.set_major_formatter(AxisTicks("money"))
    top = max([floor, *levels]) if levels else 1.0
    ax.set_ylim(floor, top + ((top - floor) or 1.0) * 0.14)
    subtitle = f"Axis starts at {money(floor)}, not at zero" if floor > 0 else None
    fig.wb_meta = {
        "chart": name or title,
        "axis": "steps",
        "points": len(steps),
        "labels": [s[0] for s in steps],
    }
    fig.wb_alt = f"{title}: " + ", ".join(f"{s[0]} {money(s[1])}" for s in steps)
    return _finish(fig, ax, title, None, subtitle)


def stacked_breakdown(
    frame: pd.DataFrame,
    *,
    x: str,
    parts: Sequence[str],
    title: str,
    money: bool = True,
    labels: dict[str, str] | None = None,
    net: str | None = None,
    subtitle: str | None = None,
    size: tuple[float, float] = (8, 3.8),
    name: str = "",
    styles: Sequence[tuple[str, str]] | None = None,
) -> Chart:
    """Stacked bars by category with a distinct hatch per part (cost breakdown, MRR movements).

    Positive parts stack up from zero and negative parts down from it; ``net`` (a label) adds a
    marker at each bar's sum. ``styles``: ``(colour, hatch)`` per part (default: greys and hatches in
    turn). The legend sits under the axes, outside the bars.
    """
    fig, ax = _chart(*size)
    xs = [str(v) for v in frame[x]]
    months = _is_months(xs)
    pos = list(range(len(xs)))
    up = pd.Series(0.0, index=frame.index)
    down = pd.Series(0.0, index=frame.index)
    for i, part in enumerate(parts):
        values = frame[part].fillna(0).astype(float)
        bottom = up.where(values >= 0, down)
        color, hatch = styles[i] if styles else (GREYS[i % len(GREYS)], HATCHES[i % len(HATCHES)])
        ax.bar(pos, values, bottom=bottom, label=(labels or {}).get(part, part), color=color, hatch=hatch,
               edgecolor="#333333", linewidth=0.5, width=0.72)  # fmt: skip
        up, down = up + values.clip(lower=0), down + values.clip(upper=0)
    if net:
        ax.plot(pos, up + down, linestyle="none", marker="D", markersize=5, color="#000000",
                markerfacecolor="white", label=net)  # fmt: skip
        ax.axhline(0, color="#333333", linewidth=0.8)
    if money:
        ax.yaxis.set_major_formatter(AxisTicks("money"))
    ax.set_xticks(pos, month_ticks(xs) if months else xs)
    if not months:
        ax.tick_params(axis="x", rotation=45)
    _legend_below(fig, ax, len(parts) + (1 if net else 0))
    fig.wb_meta = {
        "chart": name or title,
        "axis": "month" if months else "other",
        "points": len(xs),
        "labels": xs,
    }
    fig.wb_alt = _describe(title, xs)
    return _finish(fig, ax, title, None, subtitle)


def freshness(
    frame: pd.DataFrame, *, name: str, age_hours: str, warn: str, critical: str, title: str
) -> Chart:
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
