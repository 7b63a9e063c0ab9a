"""The weekly metrics review: the week's figures from the daily marts against the trailing weeks.

The plan's weekly "look at metrics, make sure nothing looks weird". The notebook
``notebooks/reports/weekly_metrics_review.ipynb`` calls these functions, in this order:

- :func:`helpers.investor.weekly_needs.review_needs`: what the review needs before its figures mean
  anything (the days the daily pipelines have not written, and the commands that write them);
- :func:`weekly_figures`: each figure per week, from complete weeks only (a week missing a day of
  its mart has no figure: a sum over 5 days is not a week);
- :func:`weekly_anomalies`: the week against the median of the weeks before, flagged beyond the
  row-count monitor's variance, each verdict a sentence saying what it compares with;
- :func:`week_alerts`, :func:`week_runs`: alerts opened and runs that did not succeed in the week;
- ``*_view``, :func:`table_html`, :func:`show`: the same as HTML tables without an index, every value formatted for people (counts
  ``10,500``, averages ``314.7``, money ``$1,234.56``, ratios ``35.2 %``, changes ``+12.3 %``),
  never ``NaN``/``None`` (``–`` with a footnote where a value does not exist).
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa

from helpers.core import money
from helpers.investor.weekly_needs import (
    DAILY_MARTS,
    REVIEW,
    plural,
)

DASH = "–"  # a value that does not exist (footnoted where it appears)


@dataclass(frozen=True)
class Figure:
    """One weekly figure: which daily mart column, how a week aggregates it, and its unit."""

    name: str
    pipeline: str  # the daily pipeline that writes the mart
    table: str
    column: str
    how: str  # sum | mean | last (the week's last day)
    unit: str  # count | average | ratio | usd_cents


_ENG, _GRO = "engagement_aggregate", "growth_daily"
FIGURES: tuple[Figure, ...] = (
    Figure("events", _ENG, DAILY_MARTS[_ENG], "events", "sum", "count"),
    Figure("DAU (mean of the days)", _ENG, DAILY_MARTS[_ENG], "dau", "mean", "average"),
    Figure("WAU (week end)", _ENG, DAILY_MARTS[_ENG], "wau", "last", "count"),
    Figure("MAU (week end)", _ENG, DAILY_MARTS[_ENG], "mau", "last", "count"),
    Figure("stickiness (week end)", _ENG, DAILY_MARTS[_ENG], "stickiness", "last", "ratio"),
    Figure("API requests", _ENG, DAILY_MARTS[_ENG], "api_requests", "sum", "count"),
    Figure("new accounts", _GRO, DAILY_MARTS[_GRO], "new_accounts", "sum", "count"),
    Figure("churned accounts", _GRO, DAILY_MARTS[_GRO], "churned", "sum", "count"),
    Figure("paying customers (week end)", _GRO, DAILY_MARTS[_GRO], "customers_end", "last", "count"),
    Figure("net new MRR", _GRO, DAILY_MARTS[_GRO], "net_new_mrr_usd_cents", "sum", "usd_cents"),
)
BY_NAME = {f.name: f for f in FIGURES}


# ---------------------------------------------------------------- days and how values read


def week_days(run_date: str | dt.date) -> list[dt.date]:
    """The 7 days ending ``run_date``."""
    last = dt.date.fromisoformat(str(run_date))
    return [last - dt.timedelta(days=k) for k in range(6, -1, -1)]


def _missing(v: Any) -> bool:
    return v is None or (not isinstance(v, str) and pd.isna(v))


def fmt_value(v: Any, unit: str) -> str:
    """A figure for people: counts ``10,500``, averages ``314.7``, ratios ``35.2 %``, money ``$1,234.56``."""
    if _missing(v):
        return DASH
    if unit == "usd_cents":
        return money.usd(int(round(float(v))))
    if unit == "ratio":
        return f"{float(v) * 100:.1f} %"
    if unit == "average" or float(v) != round(float(v)):  # a median of counts can fall between two
        return f"{float(v):,.1f}"
    return f"{int(round(float(v))):,}"


def fmt_change(rel: float | None) -> str:
    """A relative change: ``+12.3 %``, ``-4.0 %`` (``–`` when it does not exist)."""
    return DASH if _missing(rel) else f"{float(rel) * 100:+,.1f} %"


def fmt_percent(ratio: float) -> str:
    """A ratio such as the monitor's variance: ``20 %`` (``12.5 %`` when not whole)."""
    p = float(ratio) * 100
    return f"{p:.0f} %" if p == round(p) else f"{p:.1f} %"


# ---------------------------------------------------------------- the daily marts


def _read(table: str, engine: sa.Engine | None) -> pd.DataFrame:
    from helpers.storage import warehouse

    try:
        return warehouse.read_table(table, engine=engine)
    except sa.exc.NoSuchTableError:
        return pd.DataFrame()


def daily_frames(engine: sa.Engine | None = None) -> dict[str, pd.DataFrame]:
    """The daily marts the review reads, one row per date.

    ``growth_daily`` has three rows per experiment (its arms) that add up to the day: each day keeps
    the arms of one experiment (the first by name that day) and sums them.
    """
    out = {}
    for table in sorted(set(DAILY_MARTS.values())):
        frame = _read(table, engine)
        if not frame.empty:
            frame["date"] = pd.to_datetime(frame["date"]).dt.date
            if "experiment" in frame.columns:
                first = frame.groupby("date")["experiment"].transform("min")
                frame = (
                    frame[frame["experiment"] == first].groupby("date", as_index=False).sum(numeric_only=True)
                )
        out[table] = frame
    return out


def _week_value(mine: pd.DataFrame, f: Figure) -> Any:
    col = mine[f.column]
    if f.how == "sum":
        total = col.sum()
        return int(total) if f.unit in ("count", "usd_cents") else float(total)
    if f.how == "mean":
        return float(col.mean())
    last = col.iloc[-1]
    return float(last) if f.unit in ("ratio", "average") else int(last)


def days_column(pipeline: str) -> str:
    """The column of :func:`weekly_figures` counting a pipeline's days with mart rows in the week."""
    return f"days: {pipeline}"


def weekly_figures(run_date: str, frames: Mapping[str, pd.DataFrame], *, weeks: int = 4) -> pd.DataFrame:
    """Each figure for the week ending ``run_date`` and the ``weeks`` weeks before it (pure), oldest first.

    A week's figures of a mart exist only when the mart has all 7 of its days (``days: <pipeline>``
    says how many it has); otherwise they are ``None``: a sum over 5 days would read as a drop.
    """
    last = dt.date.fromisoformat(str(run_date))
    rows = []
    for k in range(weeks, -1, -1):
        end = last - dt.timedelta(weeks=k)
        days = set(week_days(end))
        row: dict[str, Any] = {"week ending": end.isoformat()}
        mine: dict[str, pd.DataFrame] = {}
        for pipeline, table in DAILY_MARTS.items():
            frame = frames.get(table, pd.DataFrame())
            have = frame[frame["date"].isin(days)].sort_values("date") if "date" in frame else frame.iloc[0:0]
            mine[table] = have
            row[days_column(pipeline)] = int(have["date"].nunique()) if len(have) else 0
        for f in FIGURES:
            have = mine[f.table]
            complete = row[days_column(f.pipeline)] == 7 and f.column in have.columns
            row[f.name] = _week_value(have, f) if complete else None
        rows.append(row)
    return pd.DataFrame(rows, dtype=object)


# ---------------------------------------------------------------- what looks weird


def _verdict(f: Figure, cur: Any, points: list[Any], variance: float, min_points: int, earlier: int):
    """(flag, change, median, sentence) of one figure: the rule of the row-count monitor."""
    limit, n = fmt_percent(variance), len(points)
    if _missing(cur):
        return (
            "no verdict",
            None,
            None,
            f"{f.name}: no verdict: no figure this week ({f.pipeline} lacks days of it; see section 1)",
        )
    head = f"{f.name} {fmt_value(cur, f.unit)} this week"
    if n < min_points:
        why = (
            f"only {plural(n, 'earlier week')} with data (at least {min_points} needed)"
            if n
            else "no earlier week with data"
        )
        return "no verdict", None, None, f"{head}: no verdict: {why}"
    med = float(pd.Series([float(p) for p in points]).median())
    against = (
        f"the median of the {plural(n)} before"
        if n == earlier
        else f"the median of the {n} of {plural(earlier, 'earlier week')} with data"
    )
    if med == 0:
        if float(cur) == 0:
            return "ok", 0.0, med, f"{head}: the same as {against} (0); ok: within {limit}"
        return "no verdict", None, med, f"{head}: no verdict: {against} is 0, so a change in % does not exist"
    rel = (float(cur) - med) / abs(med)
    compared = f"{head}: {fmt_change(rel)} against {against} ({fmt_value(med, f.unit)})"
    if abs(rel) > variance:
        return "ANOMALY", rel, med, f"{compared}; more than the {limit} the row-count monitor allows"
    return "ok", rel, med, f"{compared}; ok: within {limit}"


def weekly_anomalies(weekly: pd.DataFrame, *, variance: float = 0.20, min_points: int = 2) -> pd.DataFrame:
    """The latest week against the median of the weeks before: more than ``variance`` off is flagged.

    The rule of the row-count monitor (docs/monitoring.md, "Monitors"): relative change against a
    trailing median, no verdict with fewer than ``min_points`` earlier weeks with data. Columns:
    figure, unit, this week, median, earlier weeks (with data), change (a ratio), flag (``ANOMALY``,
    ``ok``, ``no verdict``) and ``says``: the verdict as a sentence naming what it compares with.
    """
    cols = ["figure", "unit", "this week", "median", "earlier weeks", "change", "flag", "says"]
    if weekly.empty:
        return pd.DataFrame(columns=cols)
    this, trailing = weekly.iloc[-1], weekly.iloc[:-1]
    rows = []
    for f in FIGURES:
        cur = this.get(f.name)
        points = [v for v in trailing.get(f.name, pd.Series(dtype=object)) if not _missing(v)]
        flag, rel, med, says = _verdict(f, cur, points, variance, min_points, len(trailing))
        rows.append((f.name, f.unit, cur, med, len(points), rel, flag, says))
    return pd.DataFrame(rows, columns=cols, dtype=object)


# ---------------------------------------------------------------- the week's alerts and runs


def week_alerts(run_date: str, *, engine: sa.Engine | None = None) -> pd.DataFrame:
    """Alerts opened in the week ending ``run_date``: severity, pipeline, check, status, summary."""
    from helpers.oncall import alerts

    days = week_days(run_date)
    start = dt.datetime.combine(days[0], dt.time(), dt.UTC)
    end = dt.datetime.combine(days[-1] + dt.timedelta(days=1), dt.time(), dt.UTC)
    found = [a for a in alerts.list_alerts(limit=5000, engine=engine) if start <= a.opened_at < end]
    return pd.DataFrame(
        [(a.opened_at.strftime("%Y-%m-%d"), a.severity, a.pipeline, a.check_id, a.status, a.summary[:120])
         for a in sorted(found, key=lambda a: (a.opened_at, a.alert_id))],
        columns=["opened", "severity", "pipeline", "check", "status", "summary"],
    )  # fmt: skip


def week_runs(run_date: str, *, engine: sa.Engine | None = None) -> pd.DataFrame:
    """Runs of the week's partitions (its days and months) that did not succeed, and what came of them since
    (the review's own runs left out)."""
    from helpers.runs import records as runs

    days = {d.isoformat() for d in week_days(run_date)}
    months = {d[:7] for d in days}
    latest: dict[tuple[str, str], Any] = {}
    rows = []
    for r in runs.list_runs(limit=5000, engine=engine):  # most recent first
        if r.pipeline == REVIEW or (r.logical_date not in days and r.logical_date not in months):
            continue  # the review's own runs are not the week's data
        latest.setdefault((r.pipeline, r.logical_date), r)
        if r.status in ("failed", "blocked"):
            now = latest[(r.pipeline, r.logical_date)]
            since = "still the latest run" if now.run_id == r.run_id else f"latest run {now.status}"
            rows.append(
                (r.pipeline, r.logical_date, r.status, r.run_id, (r.error_summary or "")[:120], since)
            )
    return pd.DataFrame(rows, columns=["pipeline", "partition", "status", "run id", "error", "since"])


# ---------------------------------------------------------------- for people (the notebook)


def figures_view(weekly: pd.DataFrame) -> pd.DataFrame:
    """:func:`weekly_figures` for people: one row per figure, one column per week (this week last).

    A week whose mart lacks days reads ``no data (5 of 7 days)``; nothing reads NaN or None.
    """
    out: dict[str, list[str]] = {"figure": [f.name for f in FIGURES]}
    for i, (_, week) in enumerate(weekly.iterrows()):
        label = (
            f"this week, to {week['week ending']}" if i == len(weekly) - 1 else f"to {week['week ending']}"
        )
        cells = []
        for f in FIGURES:
            have = int(week[days_column(f.pipeline)])
            cells.append(fmt_value(week[f.name], f.unit) if have == 7 else f"no data ({have} of 7 days)")
        out[label] = cells
    return pd.DataFrame(out)


def anomalies_view(anomalies: pd.DataFrame, *, variance: float) -> pd.DataFrame:
    """:func:`weekly_anomalies` for people: the values, the change and a short verdict."""
    rows = []
    for r in anomalies.itertuples(index=False):
        short = {
            "ANOMALY": f"ANOMALY: more than {fmt_percent(variance)} off",
            "ok": f"ok: within {fmt_percent(variance)}",
        }.get(r.flag)
        if short is None:
            short = (
                "no verdict: no figure this week"
                if _missing(r[2])
                else "no verdict: " + r.says.split("no verdict: ", 1)[-1]
            )
        rows.append({
            "figure": r.figure,
            "this week": fmt_value(r[2], r.unit),
            "median of the weeks before": fmt_value(r.median, r.unit),
            "earlier weeks with data": str(r[4]),
            "change": fmt_change(r.change),
            "verdict": short,
        })  # fmt: skip
    return pd.DataFrame(rows)


def flag_sentences(anomalies: pd.DataFrame) -> list[str]:
    """Each ``ANOMALY`` as its sentence, e.g. ``events 10,500 this week: +50.0 % against ...``."""
    return [r.says for r in anomalies.itertuples(index=False) if r.flag == "ANOMALY"]


def figures_notes(weekly: pd.DataFrame) -> list[str]:
    """What the figures table leaves out, and why (a sentence; never a silent gap)."""
    cols = [days_column(p) for p in DAILY_MARTS]
    short = [r["week ending"] for _, r in weekly.iterrows() if any(int(r[c]) < 7 for c in cols)]
    if not short:
        return [f"All {plural(len(weekly))} have all 7 days in both daily marts."]
    which = (
        f"All {len(weekly)} weeks"
        if len(short) == len(weekly)
        else f"{len(short)} of the {len(weekly)} weeks"
    )
    return [
        f'{which} (ending {", ".join(short)}) read "no data (n of 7 days)" for the '
        "figures of a mart that lacks days of them: a week's figures are shown only when all 7 days are in "
        "(a sum over fewer days would read as a drop), and weeks without figures are left out of the "
        "comparison below. Section 1 says why, and what to run."
    ]


def flag_notes(anomalies: pd.DataFrame, *, variance: float) -> list[str]:
    """The verdicts in sentences: each ``ANOMALY``, else that nothing moved, and what has no verdict."""
    flags = list(anomalies["flag"]) if len(anomalies) else []
    out = flag_sentences(anomalies)
    if not out and "ok" in flags:
        out.append(
            f"Nothing moved more than {fmt_percent(variance)} against the median of the weeks before "
            "(the row-count monitor's rule)."
        )
    blank = flags.count("no verdict")
    if blank == len(flags):
        out.append(
            "No verdict on any figure: the table says why (no figures this week, or too few earlier weeks "
            "with data; section 1 says what to run)."
        )
    elif blank:
        out.append(f"{blank} of {len(flags)} figures have no verdict; the table says why.")
    if blank:
        out.append(f"{DASH} in the table: no median or change exists for a figure without a verdict.")
    return out


def no_alerts_sentence(run_date: str) -> str:
    days = week_days(run_date)
    return f"No alert was opened in the week {days[0]} .. {days[-1]}."


def no_failed_runs_sentence(run_date: str) -> str:
    days = week_days(run_date)
    return (
        f"No run of the week's partitions ({days[0]} .. {days[-1]} and their months) failed or was blocked."
    )


def trend_frame(weekly: pd.DataFrame) -> pd.DataFrame:
    """Events per complete week, for a small chart (weeks without figures left out)."""
    frame = weekly[["week ending", "events"]]
    frame = frame[frame["events"].notna()]
    return frame.astype({"events": float}).reset_index(drop=True)


def events_chart(weekly: pd.DataFrame) -> Any:
    """A small chart of events per complete week (``None`` with fewer than 2 such weeks).

    The axis starts at 0, so a 2 % move looks like one, and reads ``27,000``.
    """
    from matplotlib.ticker import StrMethodFormatter

    from helpers.investor import charts

    frame = trend_frame(weekly)
    if len(frame) < 2:
        return None
    fig = charts.trend(frame, x="week ending", series=["events"], title="Events per week",
                       subtitle="weeks with all 7 days in the mart", size=(7, 2.6), name="weekly_events")  # fmt: skip
    ax = fig.axes[0]
    ax.set_ylim(0, float(frame["events"].max()) * 1.15)
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    return fig


DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
NOBR = r'<span class="wb-nobr">\g<0></span>'  # a date never breaks at its hyphens
STYLE = """<style>
table.wb-weekly{border-collapse:collapse;margin:.4em 0 .8em;font-size:13px}
table.wb-weekly th,table.wb-weekly td{border:1px solid #d0d0d0;padding:3px 8px;text-align:right;white-space:nowrap}
table.wb-weekly th{background:#f2f2f2}
table.wb-weekly td.wb-text,table.wb-weekly th.wb-text{text-align:left}
table.wb-weekly td.wb-wrap{white-space:normal;max-width:42em}
table.wb-weekly td.wb-none{color:#6b6b6b}
table.wb-weekly .wb-nobr{white-space:nowrap}
table.wb-weekly td[data-flag=ANOMALY]{background:#fbe3e1;color:#8a1c12;font-weight:bold}
table.wb-weekly td[data-flag=ok]{background:#e4f2e4;color:#1d5e20}
table.wb-weekly td[data-flag=none]{background:#f0f0f0;color:#444}
</style>"""


def table_html(
    frame: pd.DataFrame, *, text: Sequence[str] = (), wrap: Sequence[str] = (), flag: str = ""
) -> str:
    """``frame`` as an HTML table without an index; ``text``/``wrap`` columns left-aligned (wrapping,
    never inside a date); the ``flag`` column's cells carry their verdict as colour and word (``data-flag``)."""

    def cell(col: str, v: Any) -> str:
        value = DASH if _missing(v) else str(v)
        cls = (["wb-text"] if col in text or col in wrap else []) + (["wb-wrap"] if col in wrap else [])
        if value.startswith("no data") or value in (DASH, "none"):
            cls.append("wb-none")
        attrs = f' class="{" ".join(cls)}"' if cls else ""
        if col == flag:
            word = value.split(":", 1)[0]
            attrs += f' data-flag="{"none" if word == "no verdict" else html.escape(word)}"'
        shown = DATE.sub(NOBR, html.escape(value))
        return f"<td{attrs}>{shown}</td>"

    head = "".join(
        f"<th{' class=wb-text' if c in text or c in wrap else ''}>{html.escape(str(c))}</th>"
        for c in frame.columns
    )
    body = "".join(
        "<tr>" + "".join(cell(c, v) for c, v in zip(frame.columns, row, strict=True)) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f'{STYLE}<table class="wb-weekly"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def show(frame: pd.DataFrame, empty: str, **kwargs: Any) -> Any:
    """An HTML table of ``frame`` (see :func:`table_html`), or the sentence ``empty`` when it has no rows."""
    from IPython.display import HTML, Markdown

    return Markdown(empty) if frame.empty else HTML(table_html(frame, **kwargs))


def markdown(lines: str | Sequence[str]) -> Any:
    """Markdown output: a text as it is; sentences as a list (one sentence: a paragraph)."""
    from IPython.display import Markdown

    if isinstance(lines, str):
        return Markdown(lines)
    return Markdown(lines[0] if len(lines) == 1 else "\n".join(f"- {line}" for line in lines))
