"""The weekly metrics review: the week's figures from the daily marts against the trailing weeks.

The plan's weekly "look at metrics, make sure nothing looks weird". The notebook
``notebooks/reports/weekly_metrics_review.ipynb`` calls these functions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pandas as pd
import sqlalchemy as sa

from helpers.investor.report import _table


def week_days(run_date: str | dt.date) -> list[dt.date]:
    """The 7 days ending ``run_date``."""
    last = dt.date.fromisoformat(str(run_date))
    return [last - dt.timedelta(days=k) for k in range(6, -1, -1)]


WEEKLY_SOURCES: dict[str, tuple[str, str, str]] = {
    # figure -> (table, column, aggregation over the week)
    "events": ("engagement_metrics_daily", "events", "sum"),
    "dau (mean)": ("engagement_metrics_daily", "dau", "mean"),
    "wau (week end)": ("engagement_metrics_daily", "wau", "last"),
    "mau (week end)": ("engagement_metrics_daily", "mau", "last"),
    "stickiness (week end)": ("engagement_metrics_daily", "stickiness", "last"),
    "api requests": ("engagement_metrics_daily", "api_requests", "sum"),
    "new accounts": ("growth_daily", "new_accounts", "sum"),
    "churned accounts": ("growth_daily", "churned", "sum"),
    "net new MRR (USD)": ("growth_daily", "net_new_mrr_usd_cents", "sum"),
}


def daily_frames(engine: sa.Engine | None = None) -> dict[str, pd.DataFrame]:
    """The daily marts the weekly review reads (``growth_daily`` summed over its arms of one experiment)."""
    out = {}
    for table in sorted({t for t, _c, _a in WEEKLY_SOURCES.values()}):
        frame = _table(table, engine=engine)
        if not frame.empty:
            frame["date"] = pd.to_datetime(frame["date"]).dt.date
            if table == "growth_daily" and "experiment" in frame.columns:
                first = sorted(frame["experiment"].unique())[0]  # each experiment's arms add up to the day
                frame = (
                    frame[frame["experiment"] == first].groupby("date", as_index=False).sum(numeric_only=True)
                )
        out[table] = frame
    return out


def weekly_figures(run_date: str, frames: Mapping[str, pd.DataFrame], *, weeks: int = 4) -> pd.DataFrame:
    """Each weekly figure for the week ending ``run_date`` and the ``weeks`` weeks before it (pure).

    A week's figure is computed only from the days the mart has; ``days`` says how many of 7.
    """
    last = dt.date.fromisoformat(str(run_date))
    rows = []
    for k in range(weeks, -1, -1):
        end = last - dt.timedelta(weeks=k)
        days = set(week_days(end))
        row: dict[str, Any] = {"week ending": end.isoformat()}
        covered = 0
        for figure, (table, column, how) in WEEKLY_SOURCES.items():
            frame = frames.get(table, pd.DataFrame())
            if frame.empty or column not in frame.columns:
                row[figure] = None
                continue
            mine = frame[frame["date"].isin(days)].sort_values("date")
            covered = max(covered, len(mine))
            if mine.empty:
                row[figure] = None
            elif how == "sum":
                row[figure] = float(mine[column].sum())
            elif how == "mean":
                row[figure] = float(mine[column].mean())
            else:
                row[figure] = float(mine[column].iloc[-1])
            if figure.endswith("(USD)") and row[figure] is not None:
                row[figure] = row[figure] / 100
        row["days with data"] = covered
        rows.append(row)
    return pd.DataFrame(rows)


def weekly_anomalies(weekly: pd.DataFrame, *, variance: float = 0.20, min_points: int = 2) -> pd.DataFrame:
    """The latest week against the median of the trailing weeks: more than ``variance`` off is flagged.

    The rule of the row-count monitor (docs/monitoring.md, "Monitors"): relative change against a trailing median,
    no verdict with fewer than ``min_points`` trailing weeks.
    """
    if weekly.empty:
        return pd.DataFrame(columns=["figure", "this week", "trailing median", "change", "flag"])
    this, trailing = weekly.iloc[-1], weekly.iloc[:-1]
    rows = []
    for figure in WEEKLY_SOURCES:
        cur = this.get(figure)
        points = [v for v in trailing[figure] if v is not None and pd.notna(v)] if figure in trailing else []
        if cur is None or pd.isna(cur) or len(points) < min_points:
            rows.append((figure, _num(cur), "n/a", "n/a", "no verdict (too little history)"))
            continue
        med = float(pd.Series(points).median())
        rel = (float(cur) - med) / abs(med) if med else (0.0 if float(cur) == 0 else float("inf"))
        flag = "ANOMALY" if abs(rel) > variance else "ok"
        rows.append((figure, _num(cur), _num(med), "n/a" if rel == float("inf") else f"{rel:+.1%}", flag))
    return pd.DataFrame(rows, columns=["figure", "this week", "trailing median", "change", "flag"])


def _num(v: Any) -> str:
    if v is None or pd.isna(v):
        return "n/a"
    v = float(v)
    return f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:,.3f}"


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
    """Runs of the week's partitions (days of the week, and its months) that did not succeed."""
    from helpers.runs import records as runs

    days = {d.isoformat() for d in week_days(run_date)}
    months = {d[:7] for d in days}
    rows = [
        (r.pipeline, r.logical_date, r.status, r.run_id, (r.error_summary or "")[:120])
        for r in runs.list_runs(limit=2000, engine=engine)
        if (r.logical_date in days or r.logical_date in months) and r.status in ("failed", "blocked")
    ]
    return pd.DataFrame(rows, columns=["pipeline", "partition", "status", "run id", "error"])
