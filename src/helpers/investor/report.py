"""Figures and tables of the reports: the month-end investor report, the Finance pack, the weekly review.

The report notebooks stay thin: each cell calls one function here and displays what it returns.
Everything reads the marts (``investor_monthly`` first: the figures investors see, each with the
run that produced it) and returns plain pandas objects, HTML fragments or PNG images, so the
rendered HTML needs nothing from the network and shows no code.

The headline table carries its numbers twice: as text for people and as ``data-metric`` /
``data-value`` attributes (the exact warehouse value) for machines, so a test can check the page
against the warehouse without parsing formatted money.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

from helpers.core.periods import shift_period
from helpers.investor import aggregate as investor
from helpers.investor import charts
from helpers.investor.close import CloseStatus
from helpers.investor.explain import RunLink
from helpers.investor.inputs import latest_run
from helpers.investor.metrics import BY_NAME, PIPELINE, format_value, readable
from helpers.storage import warehouse

HEADLINE = (
    "revenue_usd_cents",
    "total_cost_usd_cents",
    "profit_usd_cents",
    "margin",
    "ending_mrr_usd_cents",
    "arr_usd_cents",
    "customers_end",
    "nrr",
    "grr",
    "logo_churn_rate",
    "mau",
    "dau_avg",
    "stickiness",
    "engaged_accounts",
)
TREND_MONTHS = 13  # a year of history plus the month itself

STYLE = """<style>
.wb-banner{border:6px dashed #000;padding:12px 18px;margin:8px 0 16px 0;font-family:sans-serif}
.wb-banner .wb-word{font-size:72px;font-weight:900;letter-spacing:12px;line-height:1}
.wb-banner.wb-final{border-style:solid;border-width:3px}
.wb-banner.wb-final .wb-word{font-size:40px;letter-spacing:4px}
.wb-banner ul{margin:6px 0 0 18px;font-size:14px}
.wb-watermark{position:fixed;top:40%;left:8%;font-size:160px;font-weight:900;color:rgba(0,0,0,0.07);
 transform:rotate(-30deg);pointer-events:none;z-index:1000;font-family:sans-serif}
table.wb-kpi{border-collapse:collapse;font-family:sans-serif;font-size:14px}
table.wb-kpi th,table.wb-kpi td{border-bottom:1px solid #999;padding:4px 10px;text-align:right}
table.wb-kpi th:first-child,table.wb-kpi td:first-child{text-align:left}
table.wb-kpi td.wb-provisional{font-style:italic}
</style>"""


# ---------------------------------------------------------------- reading


def setup_display() -> None:
    """Pandas display options for reports: whole summaries, money already formatted as text."""
    pd.set_option("display.max_colwidth", 240)
    pd.set_option("display.max_rows", 200)


def monthly(period: str, *, months: int = TREND_MONTHS, engine: sa.Engine | None = None) -> pd.DataFrame:
    """``investor_monthly`` rows of the ``months`` months ending with ``period``."""
    periods = [shift_period(period, -k) for k in range(months - 1, -1, -1)]
    return investor.read_monthly(periods, engine=engine)


def _table(
    name: str, *, where: Mapping[str, Any] | None = None, engine: sa.Engine | None = None
) -> pd.DataFrame:
    try:
        return warehouse.read_table(name, where=where, engine=engine)
    except sa.exc.NoSuchTableError:
        return pd.DataFrame()


def _value(frame: pd.DataFrame, period: str, metric: str) -> tuple[Any, str | None]:
    row = frame[(frame["period"] == period) & (frame["metric"] == metric)]
    if row.empty:
        return None, None
    r = row.iloc[0]
    value = int(r["value_int"]) if pd.notna(r["value_int"]) else float(r["value"])
    return value, str(r["status"])


# ---------------------------------------------------------------- headline KPIs


def change(current: Any, previous: Any, unit: str) -> str:
    """The change from ``previous``: relative for amounts and counts, percentage points for ratios."""
    if current is None or previous is None:
        return "n/a"
    if unit == "ratio":
        return f"{(float(current) - float(previous)) * 100:+.1f} pp"
    if float(previous) == 0:
        return "n/a"
    return f"{(float(current) - float(previous)) / abs(float(previous)):+.1%}"


def headline(
    period: str, frame: pd.DataFrame | None = None, *, metrics: Sequence[str] = HEADLINE
) -> pd.DataFrame:
    """The headline KPIs of ``period`` with month-over-month and year-over-year changes."""
    frame = monthly(period) if frame is None else frame
    prev, year = shift_period(period, -1), shift_period(period, -12)
    rows = []
    for m in metrics:
        meta = BY_NAME[m]
        cur, status = _value(frame, period, m)
        p, _ = _value(frame, prev, m)
        y, _ = _value(frame, year, m)
        rows.append(
            {
                "metric": m,
                "label": meta.label,
                "unit": meta.unit,
                "value": cur,
                "text": format_value(cur, meta.unit),
                "previous": format_value(p, meta.unit),
                "mom": change(cur, p, meta.unit),
                "year_ago": format_value(y, meta.unit),
                "yoy": change(cur, y, meta.unit),
                "status": status or "missing",
            }
        )
    frame = pd.DataFrame(rows)
    if len(frame):  # keep integers exact (a float column would turn cents into 1.5e8)
        frame["value"] = pd.Series([r["value"] for r in rows], dtype=object)
    return frame


def headline_html(table: pd.DataFrame, period: str, *, links: Mapping[str, RunLink] | None = None) -> str:
    """The headline table as HTML; each value cell carries ``data-metric`` and the exact ``data-value``.

    With ``links`` (:func:`helpers.investor.explain.report_links`) each value links to the archived
    run that computed it, and its cell names that run in ``data-run``.
    """
    prev, year = shift_period(period, -1), shift_period(period, -12)
    head = (
        f"<tr><th>Metric</th><th>{period}</th><th>{prev}</th><th>MoM</th><th>{year}</th><th>YoY</th>"
        "<th>Status</th></tr>"
    )
    body = []
    for r in table.itertuples():
        raw = "" if r.value is None else html.escape(str(r.value))
        cls = "wb-value" + (" wb-provisional" if r.status != "final" else "")
        text, run = _linked(html.escape(r.text), (links or {}).get(r.metric))
        body.append(
            f'<tr data-metric="{html.escape(r.metric)}"><td>{html.escape(r.label)}</td>'
            f'<td class="{cls}" data-metric="{html.escape(r.metric)}" data-value="{raw}" '
            f'data-unit="{html.escape(r.unit)}"{run}>{text}</td>'
            f"<td>{html.escape(r.previous)}</td><td>{html.escape(r.mom)}</td>"
            f"<td>{html.escape(r.year_ago)}</td><td>{html.escape(r.yoy)}</td>"
            f"<td>{html.escape(r.status)}</td></tr>"
        )
    linked = " Each value links to the archived run that computed it." if links else ""
    note = (
        "<p style='font-family:sans-serif;font-size:12px'>Money in US dollars; MoM and YoY are relative "
        "changes (percentage points for ratios); <i>italic</i> values are provisional; n/a: no figures "
        f"for that month in the warehouse.{linked}</p>"
    )
    return f'{STYLE}<table class="wb-kpi" id="headline">{head}{"".join(body)}</table>{note}'


def _linked(text: str, link: RunLink | None) -> tuple[str, str]:
    """A value's text as a link to its run's archived notebook, and the cell's ``data-run`` attribute."""
    if link is None:
        return text, ""
    run = f' data-run="{html.escape(link.run_id)}"'
    if not link.href:
        return text, run
    title = html.escape(f"computed by {link.pipeline} run {link.run_id}")
    return f'<a href="{html.escape(link.href)}" title="{title}">{text}</a>', run


# ---------------------------------------------------------------- the DRAFT/final banner


def banner_html(status: CloseStatus, *, published: bool = False, limit: int = 12) -> str:
    """``DRAFT`` in large type with the blockers (and a watermark), or ``FINAL``."""
    when = f"as of {status.as_of:%Y-%m-%d %H:%M} UTC; close deadline {status.deadline:%Y-%m-%d %H:%M} UTC"
    if status.final:
        sub = "published" if published else "every close check passes and every source is final"
        return (
            f'{STYLE}<div class="wb-banner wb-final" id="report-status" data-status="FINAL">'
            f'<div class="wb-word">FINAL</div><div>Investor report {status.period}: {sub} ({when}).</div></div>'
        )
    lines = status.blocker_lines()
    shown = "".join(f"<li>{html.escape(x)}</li>" for x in lines[:limit])
    more = (
        f"<li>... and {len(lines) - limit} more (see the data-quality appendix)</li>"
        if len(lines) > limit
        else ""
    )
    return (
        f'{STYLE}<div class="wb-watermark">DRAFT</div>'
        f'<div class="wb-banner" id="report-status" data-status="DRAFT"><div class="wb-word">DRAFT</div>'
        f"<div><b>Not for distribution.</b> Investor report {status.period} ({when}): "
        f"{len(lines)} close item(s) not done:</div><ul>{shown}{more}</ul></div>"
    )


# ---------------------------------------------------------------- charts


def png(fig: Any) -> Any:
    """A matplotlib figure as an inline PNG image (works whatever the kernel's backend); closes it.

    Anything else (a note for a section without data) is returned as it is.
    """
    import matplotlib.pyplot as plt
    from IPython.display import Image

    if not hasattr(fig, "savefig"):
        return fig
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Image(data=buf.getvalue(), format="png")


def png_data_uri(fig: Any) -> str:
    """A figure as a ``data:image/png;base64,...`` URI (for HTML that must not fetch anything)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _series(frame: pd.DataFrame, metrics: Sequence[str], *, scale: float = 1.0) -> pd.DataFrame:
    wide = investor.wide(frame)
    for m in metrics:
        if m not in wide.columns:
            wide[m] = float("nan")
    out = wide[["period", *metrics]].copy()
    for m in metrics:
        out[m] = out[m].astype(float) * scale
    return out


def revenue_costs_chart(period: str, frame: pd.DataFrame | None = None) -> Any:
    """Revenue, total costs and profit per month (US dollars)."""
    frame = monthly(period) if frame is None else frame
    data = _series(frame, ["revenue_usd_cents", "total_cost_usd_cents", "profit_usd_cents"], scale=0.01)
    return charts.trend(
        data, x="period", series=["revenue_usd_cents", "total_cost_usd_cents", "profit_usd_cents"],
        title="Revenue, costs and profit per month (USD)", money=True,
        labels={"revenue_usd_cents": "revenue", "total_cost_usd_cents": "costs", "profit_usd_cents": "profit"},
    )  # fmt: skip


def ratio_chart(
    period: str, metrics: Mapping[str, str], title: str, frame: pd.DataFrame | None = None
) -> Any:
    """Ratios per month in percent (margin; NRR and GRR; stickiness)."""
    frame = monthly(period) if frame is None else frame
    data = _series(frame, list(metrics), scale=100.0)
    return charts.trend(data, x="period", series=list(metrics), title=title, ylabel="%", labels=dict(metrics))


def cost_breakdown(period: str, *, months: int = TREND_MONTHS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Costs per month by category (USD cents, for the chart) and the month's costs by subcategory."""
    costs = _table("profit_costs_monthly")
    periods = [shift_period(period, -k) for k in range(months - 1, -1, -1)]
    if costs.empty:
        empty = pd.DataFrame(columns=["period", "salaries", "infrastructure", "operations"])
        return empty, pd.DataFrame(columns=["category", "subcategory", "cost", "share of costs"])
    costs = costs[costs["period"].isin(periods)]
    by_month = costs.pivot_table(index="period", columns="category", values="cost_usd_cents", aggfunc="sum")
    by_month = by_month.reindex(columns=["salaries", "infrastructure", "operations"]).fillna(0).reset_index()
    month = costs[costs["period"] == period]
    detail = month.groupby(["category", "subcategory"], as_index=False)["cost_usd_cents"].sum()
    total = detail["cost_usd_cents"].sum()
    detail = detail.sort_values(["category", "cost_usd_cents"], ascending=[True, False])
    detail["cost"] = detail["cost_usd_cents"].map(lambda c: format_value(c, "usd_cents"))
    detail["share of costs"] = detail["cost_usd_cents"].map(lambda c: f"{c / total:.1%}" if total else "n/a")
    return by_month, detail[["category", "subcategory", "cost", "share of costs"]].reset_index(drop=True)


def cost_chart(by_month: pd.DataFrame, period: str) -> Any:
    """Stacked costs per month by category (hatched, readable without colour), or a note without costs."""
    if by_month.empty:
        return note(f"No Profit cost breakdown (profit_costs_monthly) up to {period} in the warehouse.")
    data = by_month.copy()
    for c in ("salaries", "infrastructure", "operations"):
        data[c] = data[c].astype(float) / 100
    return charts.stacked_breakdown(
        data, x="period", parts=["salaries", "infrastructure", "operations"],
        title=f"Costs by category per month to {period} (USD)",
    )  # fmt: skip


def mrr_steps(period: str, frame: pd.DataFrame | None = None) -> list[tuple[str, float]]:
    """The MRR bridge of ``period`` in dollars (start, each movement, end) for ``charts.waterfall``."""
    frame = monthly(period) if frame is None else frame
    names = [
        ("Starting MRR", "starting_mrr_usd_cents"),
        ("new", "new_mrr_usd_cents"),
        ("expansion", "expansion_mrr_usd_cents"),
        ("reactivation", "reactivation_mrr_usd_cents"),
        ("contraction", "contraction_mrr_usd_cents"),
        ("churn (voluntary)", "churn_voluntary_mrr_usd_cents"),
        ("churn (involuntary)", "churn_involuntary_mrr_usd_cents"),
        ("Ending MRR", "ending_mrr_usd_cents"),
    ]
    steps = []
    for label, metric in names:
        value, _status = _value(frame, period, metric)
        if value is None:
            return []
        steps.append((label, value / 100))
    return steps


def mrr_waterfall(period: str, frame: pd.DataFrame | None = None) -> Any:
    """The MRR waterfall of the month, or a note when Growth has no figures for it."""
    steps = mrr_steps(period, frame)
    if not steps:
        return note(f"No Growth figures for {period} in investor_monthly: no MRR waterfall.")
    return charts.waterfall(steps, title=f"MRR bridge {period} (USD)", start_label="Starting MRR",
                            end_label="Ending MRR")  # fmt: skip


def customers_table(period: str, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Customers at start, new, reactivated, churned and at end; revenue retention; per month."""
    frame = monthly(period) if frame is None else frame
    metrics = ["customers_start", "new_customers", "reactivated_customers", "churned_customers", "customers_end",
               "logo_churn_rate", "arpa_usd_cents", "nrr", "grr"]  # fmt: skip
    wide = investor.wide(frame)
    rows = []
    for p in wide["period"] if len(wide) else []:
        row = {"month": p}
        for m in metrics:
            v, _ = _value(frame, p, m)
            row[BY_NAME[m].label] = format_value(v, BY_NAME[m].unit)
        rows.append(row)
    return pd.DataFrame(rows, columns=["month", *(BY_NAME[m].label for m in metrics)])


def engagement_daily(period: str) -> pd.DataFrame:
    """The month's daily engagement figures that are in the warehouse (DAU, WAU, MAU, stickiness)."""
    frame = _table("engagement_metrics_daily")
    if frame.empty:
        return pd.DataFrame(columns=["date", "dau", "wau", "mau", "stickiness"])
    frame["date"] = pd.to_datetime(frame["date"])
    mine = frame[frame["date"].dt.strftime("%Y-%m") == period].sort_values("date")
    return mine[["date", "dau", "wau", "mau", "stickiness"]].reset_index(drop=True)


def engagement_chart(period: str, frame: pd.DataFrame | None = None) -> Any:
    """Average DAU and MAU per month."""
    frame = monthly(period) if frame is None else frame
    data = _series(frame, ["dau_avg", "mau"])
    return charts.trend(data, x="period", series=["dau_avg", "mau"], title="Active users per month",
                        ylabel="users", labels={"dau_avg": "DAU (average)", "mau": "MAU"})  # fmt: skip


def note(text: str) -> Any:
    """A short note as Markdown output (for sections without data)."""
    from IPython.display import Markdown

    return Markdown(f"*{text}*")


def or_note(frame: pd.DataFrame, text: str) -> Any:
    """``frame``, or a note saying why there is nothing to show."""
    return note(text) if frame.empty else frame


# ---------------------------------------------------------------- data-quality appendix


def checklist(status: CloseStatus) -> pd.DataFrame:
    """The close checklist: blockers first, then the rest."""
    table = status.checklist()
    order = table["status"].map({"BLOCKER": 0, "ok": 1})
    return table.assign(_o=order).sort_values(["_o", "section", "pipeline"], kind="stable").drop(columns="_o")


def provisional(period: str, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """What is provisional in the month's figures and why, per source."""
    frame = monthly(period) if frame is None else frame
    mine = frame[(frame["period"] == period) & (frame["status"] != "final")]
    if mine.empty:
        return pd.DataFrame(columns=["source", "metrics", "why"])
    out = mine.groupby(["source_pipeline", "status_reason"], as_index=False).agg(metrics=("metric", "count"))
    return out.rename(columns={"source_pipeline": "source", "status_reason": "why"})[
        ["source", "metrics", "why"]
    ]


def reconciliation(period: str) -> tuple[pd.DataFrame, str]:
    """Profit against Finance's ledger: the month's differences by class and cause, and the status."""
    recon = _table("finance_reconciliation", where={"period": period})
    profit = _table("profit_monthly", where={"period": period})
    status = str(profit["reconciliation_status"].iloc[0]) if len(profit) else "no Profit figures"
    if recon.empty:
        return pd.DataFrame(columns=["class", "cause", "expected", "lines", "amount"]), status
    g = recon.groupby(["difference_class", "cause", "expected"], as_index=False).agg(
        lines=("line_id", "nunique"), cents=("component_usd_cents", "sum")
    )
    g = g[g["cents"] != 0].sort_values("cents", key=lambda s: s.abs(), ascending=False)
    g["amount"] = g["cents"].map(lambda c: format_value(c, "usd_cents"))
    g["cause"] = g["cause"].replace("", "(none)")
    return g.rename(columns={"difference_class": "class"})[
        ["class", "cause", "expected", "lines", "amount"]
    ], status


def reconciliation_lines(period: str, *, limit: int = 25) -> pd.DataFrame:
    """The ledger lines with a difference, largest first (ours minus Finance)."""
    recon = _table("finance_reconciliation", where={"period": period})
    if recon.empty:
        return pd.DataFrame(columns=["line_id", "ours", "finance", "difference", "explained by"])
    lines = recon.groupby("line_id", as_index=False).agg(
        ours=("our_usd_cents", "first"), finance=("finance_usd_cents", "first"),
        diff=("difference_usd_cents", "first"),
    )  # fmt: skip
    parts = recon[recon["component_usd_cents"].fillna(0) != 0]
    labels = parts["difference_class"].str.cat(parts["cause"].fillna(""), sep="/").str.rstrip("/")
    causes = labels.groupby(parts["line_id"]).agg(lambda s: ", ".join(sorted(set(s))))
    lines["causes"] = lines["line_id"].map(causes).fillna("")
    lines = lines[lines["diff"].fillna(0) != 0].sort_values("diff", key=lambda s: s.abs(), ascending=False)
    out = pd.DataFrame(
        {
            "line_id": lines["line_id"],
            "ours": lines["ours"].map(lambda c: format_value(c, "usd_cents")),
            "finance": lines["finance"].map(lambda c: format_value(c, "usd_cents")),
            "difference": lines["diff"].map(lambda c: format_value(c, "usd_cents")),
            "explained by": lines["causes"],
        }
    )
    return out.head(limit).reset_index(drop=True)


def validations(period: str, run_id: str | None) -> pd.DataFrame:
    """The investor aggregate's cross-pipeline validations as recorded with its run."""
    from helpers.checks import store

    if not run_id:
        return pd.DataFrame(columns=["check", "status", "summary"])
    rows = [r for r in store.list_results(run_id=run_id) if r["partition"] == period]
    latest: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["result_id"]):
        latest[r["check_id"]] = r
    return pd.DataFrame(
        [(k, v["status"], v["summary"]) for k, v in sorted(latest.items())],
        columns=["check", "status", "summary"],
    )


def bridge(period: str, run_id: str | None) -> pd.DataFrame:
    """The revenue vs MRR bridge recorded with the investor run (evidence of ``revenue_vs_mrr``)."""
    from helpers.checks import store

    found = store.list_results(run_id=run_id, check_id=f"{PIPELINE}.revenue_vs_mrr") if run_id else []
    steps = found[0]["evidence"].get("bridge") if found else None
    if not steps:
        return pd.DataFrame(columns=["step", "amount", "what"])
    frame = pd.DataFrame(steps)
    frame["amount"] = frame["usd_cents"].map(lambda c: format_value(c, "usd_cents"))
    return frame[["step", "amount", "what"]]


# ---------------------------------------------------------------- provenance


def investor_run_id(period: str, frame: pd.DataFrame | None = None) -> str | None:
    """The investor aggregate run that wrote the month's ``investor_monthly`` rows (None: none yet)."""
    frame = monthly(period, months=1) if frame is None else frame
    ids = frame.loc[frame["period"] == period, "run_id"].dropna().unique()
    return str(ids[0]) if len(ids) else None


def provenance(
    period: str, frame: pd.DataFrame | None = None, *, engine: sa.Engine | None = None
) -> pd.DataFrame:
    """Every run the month's figures come from: pipeline, partition, run id, as of, code version."""
    from helpers.runs import records as runs

    frame = monthly(period, months=1, engine=engine) if frame is None else frame
    mine = frame[frame["period"] == period]
    ids: dict[str, str] = {}
    for pipeline, source in zip(mine["source_pipeline"], mine["source_run_id"], strict=True):
        for rid in str(source or "").split(";"):
            if rid and rid != "None":
                ids.setdefault(rid, pipeline)
    for rid in mine["run_id"].dropna().unique():
        ids.setdefault(str(rid), PIPELINE)
    rows = []
    for rid in sorted(ids):
        rec = runs.get_run(rid, engine=engine)
        rows.append(
            {
                "run id": rid,
                "pipeline": rec.pipeline if rec else ids[rid],
                "partition": rec.logical_date if rec else "",
                "status": rec.status if rec else "unknown",
                "as of": rec.as_of.isoformat() if rec and rec.as_of else "",
                "finished": rec.finished_at.isoformat() if rec and rec.finished_at else "",
                "code version": (rec.code_version or "") if rec else "",
                "metrics": int(((mine["source_run_id"].astype(str).str.contains(rid, regex=False))
                                | (mine["run_id"] == rid)).sum()),
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=["run id", "pipeline", "partition", "status", "as of", "finished",
                                       "code version", "metrics"])  # fmt: skip


def metric_provenance(period: str, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per investor metric: its value, status and the run that produced it."""
    frame = monthly(period, months=1) if frame is None else frame
    mine = frame[frame["period"] == period]
    return readable(mine).reset_index(drop=True)


# ---------------------------------------------------------------- weekly review


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


# ---------------------------------------------------------------- the Finance reconciliation pack


def pack_period(run_date: str, period: str = "") -> str:
    """The month the Finance meeting of ``run_date`` reconciles: ``period``, else the month before."""
    if period:
        return period
    return shift_period(str(run_date)[:7], -1)


def reconciliation_by_category(period: str) -> pd.DataFrame:
    """Ours against Finance's ledger per P&L category (USD): revenue, salaries, infrastructure, operations."""
    recon = _table("finance_reconciliation", where={"period": period})
    if recon.empty:
        return pd.DataFrame(columns=["category", "ours", "finance", "difference", "unexpected"])
    lines = recon.drop_duplicates("line_id")
    unexpected = recon[~recon["expected"].astype(bool)].groupby("category")["component_usd_cents"].sum()
    g = lines.groupby("category").agg(ours=("our_usd_cents", "sum"), finance=("finance_usd_cents", "sum"))
    g["difference"] = g["ours"] - g["finance"]
    g["unexpected"] = unexpected.reindex(g.index).fillna(0)
    out = g.reset_index()
    for c in ("ours", "finance", "difference", "unexpected"):
        out[c] = out[c].map(lambda v: format_value(v, "usd_cents"))
    return out


def pipeline_checks(pipeline: str, partition: str, *, engine: sa.Engine | None = None) -> pd.DataFrame:
    """The checks recorded with a pipeline's latest run of ``partition``: check, status, summary."""
    from helpers.checks import store

    run = latest_run(pipeline, partition, engine=engine)
    if run.run_id is None:
        return pd.DataFrame(columns=["check", "status", "severity", "summary"])
    latest: dict[str, dict[str, Any]] = {}
    for r in sorted(store.list_results(run_id=run.run_id, engine=engine), key=lambda r: r["result_id"]):
        latest[r["check_id"]] = r
    return pd.DataFrame(
        [(k, v["status"], v["severity"], v["summary"][:160]) for k, v in sorted(latest.items())],
        columns=["check", "status", "severity", "summary"],
    )


def cross_team_items(as_of: dt.datetime, config: Any, *, engine: sa.Engine | None = None) -> pd.DataFrame:
    """Open alerts whose cause lies with another team, with the contact to bring to the meeting."""
    from helpers.oncall import alerts

    mapping = config.team.escalation.cross_team
    rows = []
    for a in alerts.list_alerts(open_only=True, limit=5000, engine=engine):
        key = mapping.get(a.catalogue_id or "")
        if key is None or a.opened_at > as_of:
            continue
        contact = config.team.contacts[key]
        rows.append((contact.team, contact.name, a.alert_id, a.pipeline, a.check_id, a.summary[:120]))
    return pd.DataFrame(rows, columns=["team", "contact", "alert", "pipeline", "check", "summary"])
