"""Figures and tables of the month-end investor report.

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
