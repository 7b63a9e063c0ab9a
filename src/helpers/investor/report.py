"""Figures, tables and charts of the month-end investor report.

The report notebook stays thin: each cell calls one function here and displays what it returns.
Everything reads the marts (``investor_monthly`` first: the figures investors see, each with the
run that produced it) and returns HTML fragments, plain pandas objects or charts, so the rendered
HTML needs nothing from the network and shows no code.

The report speaks to investors: the month's KPIs with their changes on the month before (MoM) and
on the same month a year earlier (YoY), trends over the trailing twelve months (:data:`TREND_MONTHS`),
provenance and definitions in an appendix. Derived KPIs (:data:`DERIVED`: net new ARR, quick ratio)
are computed here from ``investor_monthly``'s figures. The engineering material (the close checklist,
cross-pipeline validations, per-run provenance) is in the Finance pack (:mod:`helpers.investor.pack`).

The KPI table carries the warehouse's figures twice: as text for people and as ``data-metric`` /
``data-value`` attributes (the exact warehouse value) for machines, so a test can check the page
against the warehouse without parsing formatted money.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

from helpers.core.periods import shift_period
from helpers.investor import aggregate as investor
from helpers.investor import charts, kpis
from helpers.investor.close import CloseStatus
from helpers.investor.explain import RunLink
from helpers.investor.kpis import month_name, short
from helpers.investor.metrics import BY_NAME, ENGAGEMENT, GROWTH, PROFIT, format_value
from helpers.storage import warehouse

HEADLINE = kpis.HEADLINE  # the warehouse metrics of the KPI table (td.wb-value cells)
DERIVED = kpis.DERIVED  # the KPIs derived here (net new ARR, quick ratio)
change = kpis.change
definitions_table = kpis.definitions_table
TREND_MONTHS = 13  # the month and the twelve before it: a year of history for every trend
CHART_SIZE = (7.2, 2.5)  # inches; shown 680 CSS pixels wide: about 180 mm on an A4 page
CHART_WIDTH_PX, CHART_DPI = 680, 200


AREAS: dict[str, tuple[str, str]] = {
    PROFIT: ("Revenue, costs, profit and margin",
             "invoices and payments from the billing system, payroll, cloud providers' bills and operations "
             "expenses; reconciled with Finance's ledger"),
    GROWTH: ("ARR, MRR, customers and retention",
             "subscriptions from the billing system, with the CRM's account history and the account database"),
    ENGAGEMENT: ("Active users and stickiness", "product events (web, mobile) and API request logs"),
}  # fmt: skip

STYLE = """<style>
main{max-width:820px;margin:0 auto}
.wb-doc,.wb-doc table,.jp-RenderedMarkdown{font-family:"DejaVu Sans",Arial,Helvetica,sans-serif}
.jp-RenderedMarkdown h2{font-size:20px;margin:18px 0 4px;border-bottom:1px solid #999;padding-bottom:2px}
.jp-RenderedMarkdown h3{font-size:15px;margin:12px 0 4px}
.jp-RenderedMarkdown p{font-size:13px;margin:0 0 6px;line-height:1.4}
.wb-header{border-bottom:3px solid #1b1b1b;padding:0 0 8px;margin:0 0 10px}
.wb-header .wb-company{font-size:13px;letter-spacing:2px;text-transform:uppercase;color:#333;font-weight:700}
.wb-header h1{font-size:26px;margin:4px 0 6px;line-height:1.2}
.wb-header .wb-meta{font-size:13px;color:#222}
.wb-badge{display:inline-block;padding:1px 8px;border-radius:3px;font-weight:700;border:1px solid;margin-right:6px}
.wb-badge.wb-final{background:#e3f1e3;color:#145214;border-color:#145214}
.wb-badge.wb-draft{background:#fdecea;color:#8a1c12;border-color:#8a1c12}
.wb-banner{border:4px dashed #8a1c12;padding:8px 14px;margin:6px 0 12px 0;font-size:13px}
.wb-banner .wb-word{font-size:44px;font-weight:900;letter-spacing:8px;line-height:1;color:#8a1c12}
.wb-banner.wb-final{border:2px solid #145214;padding:6px 12px}
.wb-banner.wb-final .wb-word{font-size:18px;letter-spacing:3px;color:#145214;display:inline;margin-right:8px}
.wb-banner ul{margin:4px 0 0 18px;padding:0}
.wb-banner .wb-open{font-size:11px;color:#333;margin-top:6px}
.wb-watermark{position:fixed;top:38%;left:10%;font-size:18vw;font-weight:900;color:rgba(138,28,18,0.07);
 transform:rotate(-30deg);pointer-events:none;z-index:1000}
.wb-cards{display:grid;grid-template-columns:repeat(6,1fr);gap:6px;margin:6px 0 8px}
.wb-card{border:1px solid #999;border-radius:4px;padding:5px 7px;break-inside:avoid}
.wb-card .wb-label{font-size:11.5px;color:#333;white-space:nowrap}
.wb-card .wb-big{font-size:20px;font-weight:700;margin:2px 0;white-space:nowrap}
.wb-card .wb-chg{font-size:10.5px;color:#333;line-height:1.35}
.wb-summary{font-size:13px;line-height:1.45;margin:4px 0 8px}
.jp-RenderedHTMLCommon table.wb-kpi,.jp-RenderedHTMLCommon table.wb-table{border-collapse:collapse;
 table-layout:auto;width:100%;margin:4px 0 6px 0;font-size:12.5px}
.jp-RenderedHTMLCommon table.wb-kpi th,.jp-RenderedHTMLCommon table.wb-kpi td,
.jp-RenderedHTMLCommon table.wb-table th,.jp-RenderedHTMLCommon table.wb-table td{border:none;
 border-bottom:1px solid #bbb;padding:3px 8px;text-align:right;vertical-align:top;white-space:nowrap}
.jp-RenderedHTMLCommon table.wb-kpi tbody tr:nth-child(odd),.jp-RenderedHTMLCommon table.wb-table tbody tr:nth-child(odd){
 background:#f4f4f4}
.jp-RenderedHTMLCommon table.wb-kpi th:first-child,.jp-RenderedHTMLCommon table.wb-kpi td:first-child,
.jp-RenderedHTMLCommon table.wb-table th.wb-text,.jp-RenderedHTMLCommon table.wb-table td.wb-text{text-align:left}
.jp-RenderedHTMLCommon table.wb-table td.wb-wrap{white-space:normal}
.jp-RenderedHTMLCommon table#costs tbody tr:last-child td{font-weight:700;border-top:1px solid #1b1b1b}
.jp-RenderedHTMLCommon table.wb-kpi thead th,.jp-RenderedHTMLCommon table.wb-table thead th{
 border-bottom:2px solid #1b1b1b;font-weight:700}
.jp-RenderedHTMLCommon table.wb-kpi tr.wb-group th{text-align:left;background:#fff;padding-top:9px;
 border-bottom:1px solid #1b1b1b;font-size:12px;letter-spacing:1px;text-transform:uppercase}
.jp-RenderedHTMLCommon table.wb-kpi td a{color:inherit;text-decoration:none}
.jp-RenderedHTMLCommon table.wb-kpi td.wb-provisional{font-style:italic}
.wb-note{font-size:11.5px;color:#333;margin:2px 0 8px}
.jp-RenderedImage img{max-width:100%;height:auto}
@page{size:A4;margin:14mm}
@media print, screen and (max-width:760px){
 main{max-width:none}
 body.jp-Notebook{padding:0;margin:0}
 .jp-Cell{padding:0 !important}
 .jp-OutputArea-output,.jp-RenderedHTMLCommon{padding-right:0 !important;padding-left:0 !important}
 .jp-InputPrompt,.jp-OutputPrompt{display:none}
 .jp-RenderedHTMLCommon table.wb-kpi,.jp-RenderedHTMLCommon table.wb-table{font-size:11px}
 .jp-RenderedHTMLCommon table.wb-kpi th,.jp-RenderedHTMLCommon table.wb-kpi td,
 .jp-RenderedHTMLCommon table.wb-table th,.jp-RenderedHTMLCommon table.wb-table td{padding:1.5px 5px}
 .wb-cards{gap:4px}
 .wb-card{padding:4px 5px}
 .wb-card .wb-big{font-size:17px}
 .wb-card .wb-label{font-size:10.5px}
 .wb-card .wb-chg{font-size:9.5px}
}
@media print{
 .jp-OutputArea-child{break-inside:auto}
 .celltag_report-section{break-before:page}
 tr,.wb-card,.jp-RenderedImage,img{break-inside:avoid}
 h2,h3{break-after:avoid}
 .wb-watermark{position:fixed}
}
</style>"""


# ---------------------------------------------------------------- reading


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


def setup_display() -> None:
    """Pandas display options for reports: whole summaries, money already formatted as text."""
    pd.set_option("display.max_colwidth", 240)
    pd.set_option("display.max_rows", 200)


# ---------------------------------------------------------------- the KPI table


def headline(
    period: str, frame: pd.DataFrame | None = None, *, metrics: Sequence[str] | None = None
) -> pd.DataFrame:
    """The month's KPIs with MoM and YoY changes (:func:`helpers.investor.kpis.table`) from ``investor_monthly``."""
    return kpis.table(period, monthly(period) if frame is None else frame, metrics=metrics)


def headline_scrap(table: pd.DataFrame) -> dict[str, Any]:
    """The KPI table's warehouse figures as the report records them: ``{metric: exact value}``."""
    return kpis.scrap(table)


def headline_html(table: pd.DataFrame, period: str, *, links: Mapping[str, RunLink] | None = None) -> str:
    """The KPI table as HTML; each warehouse figure's cell carries ``data-metric`` and the exact ``data-value``.

    With ``links`` (:func:`helpers.investor.explain.report_links`) each value links to the archived
    run that computed it, and its cell names that run in ``data-run``. A Status column appears when
    a figure is not final.
    """
    prev, year = shift_period(period, -1), shift_period(period, -12)
    provisional = any(s not in ("final",) for s in table["status"]) if len(table) else False
    cols = [charts.month_label(period), charts.month_label(prev), "MoM", charts.month_label(year), "YoY"]
    cols += ["Status"] if provisional else []
    head = "<thead><tr><th>Figure</th>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr></thead>"
    body, group = [], None
    for r in table.itertuples():
        if getattr(r, "group", "") and r.group != group:
            group = r.group
            body.append(f'<tr class="wb-group"><th colspan="{len(cols) + 1}">{html.escape(group)}</th></tr>')
        body.append(_kpi_row(r, links, provisional))
    linked = " Each value links to the archived run that computed it." if links else ""
    note = (
        '<p class="wb-note">US dollars. Changes are relative, in percentage points (pp) for rates; for '
        "contraction and churn they compare the amounts lost. Net new ARR and the quick ratio are derived "
        f"(Appendix B). <i>Italic</i>: provisional; n/a: no figure for that month.{linked}</p>"
    )
    return f'<table class="wb-kpi" id="headline">{head}<tbody>{"".join(body)}</tbody></table>{note}'


def _kpi_row(r: Any, links: Mapping[str, RunLink] | None, provisional: bool) -> str:
    raw = "" if r.value is None else html.escape(str(r.value))
    final = r.status == "final"
    if getattr(r, "derived", False):
        cls, attrs = "wb-derived", f'data-derived="{html.escape(r.metric)}" data-value="{raw}"'
        text, run = html.escape(r.text), ""
    else:
        cls = "wb-value" + ("" if final else " wb-provisional")
        attrs = f'data-metric="{html.escape(r.metric)}" data-value="{raw}" data-unit="{html.escape(r.unit)}"'
        text, run = _linked(html.escape(r.text), (links or {}).get(r.metric))
    status = (
        f"<td>{'Final' if final else html.escape(str(r.status).capitalize())}</td>" if provisional else ""
    )
    return (
        f'<tr data-metric="{html.escape(r.metric)}"><td>{html.escape(r.label)}</td>'
        f'<td class="{cls}" {attrs}{run}>{text}</td>'
        f"<td>{html.escape(r.previous)}</td><td>{html.escape(r.mom)}</td>"
        f"<td>{html.escape(r.year_ago)}</td><td>{html.escape(r.yoy)}</td>{status}</tr>"
    )


def _linked(text: str, link: RunLink | None) -> tuple[str, str]:
    """A value's text as a link to its run's archived notebook, and the cell's ``data-run`` attribute."""
    if link is None:
        return text, ""
    run = f' data-run="{html.escape(link.run_id)}"'
    if not link.href:
        return text, run
    title = html.escape(f"computed by {link.pipeline} run {link.run_id}")
    return f'<a href="{html.escape(link.href)}" title="{title}">{text}</a>', run


# ---------------------------------------------------------------- header, status and highlights


class Fragment:
    """HTML output whose display metadata travels with it (e.g. the page title the template uses)."""

    def __init__(self, text: str, metadata: Mapping[str, Any] | None = None) -> None:
        self.text, self.metadata = text, dict(metadata or {})

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        data = {"text/html": self.text, "text/plain": f"<{len(self.text)} characters of HTML>"}
        return (data, self.metadata) if self.metadata else data


def page_title(company: str, period: str, final: bool) -> str:
    """``Acme Analytics — Investor update, October 2026 (Final)``."""
    return f"{company} — Investor update, {month_name(period)} ({'Final' if final else 'Draft'})"


def header(
    period: str, status: CloseStatus, *, company: str, version: int, published: bool = False
) -> Fragment:
    """The report's header (company, month, status, version, as of) with the page title as metadata.

    The template (``templates/selfcontained/index.html.j2``) makes ``workbook.page_title`` the
    page's ``<title>``; the report's stylesheet (:data:`STYLE`) comes with it.
    """
    final = status.final
    badge = (
        '<span class="wb-badge wb-final">FINAL</span>'
        if final
        else '<span class="wb-badge wb-draft">DRAFT</span>'
    )
    state = (
        f"Version {version}" + (", published" if published else "")
        if final
        else f"Draft of version {version}, not yet published"
    )
    meta = f"{badge}{state} · Figures as of {status.as_of:%-d %B %Y, %H:%M} UTC"
    text = (
        f'{STYLE}<header class="wb-header wb-doc" id="report-header" data-period="{period}" data-version="{version}">'
        f'<div class="wb-company">{html.escape(company)}</div>'
        f'<h1>Investor update — {month_name(period)}</h1><div class="wb-meta">{meta}</div></header>'
    )
    return Fragment(text, {"workbook": {"page_title": page_title(company, period, final)}})


def banner_html(status: CloseStatus, *, published: bool = False, limit: int = 8) -> str:
    """``FINAL`` (one line), or ``DRAFT`` in large type with why the figures are provisional and a watermark."""
    if status.final:
        sub = (
            "published to investors"
            if published
            else "every figure is final and the month-end close is complete"
        )
        return (
            f'<div class="wb-banner wb-final wb-doc" id="report-status" data-status="FINAL">'
            f'<div class="wb-word">FINAL</div>{month_name(status.period)}: {sub}.</div>'
        )  # fmt: skip
    reasons = draft_reasons(status)
    lines = status.blocker_lines()
    shown = "".join(f"<li>{html.escape(x)}</li>" for x in lines[:limit])
    more = f"<li>… and {len(lines) - limit} more</li>" if len(lines) > limit else ""
    why = "".join(f"<li>{html.escape(x)}</li>" for x in reasons)
    return (
        '<div class="wb-watermark">DRAFT</div>'
        '<div class="wb-banner wb-doc" id="report-status" data-status="DRAFT"><div class="wb-word">DRAFT</div>'
        f"<div><b>Not for distribution.</b> Provisional because:</div><ul>{why}</ul>"
        f'<div class="wb-open">Open month-end close items ({len(lines)}; the data team\'s checklist, close '
        f"deadline {status.deadline:%-d %B %Y, %H:%M} UTC):<ul>{shown}{more}</ul></div></div>"
    )


def draft_reasons(status: CloseStatus) -> list[str]:
    """Why a draft is provisional, in plain words: each area whose figures are not final, then the close."""
    out = []
    for pid, (area, _systems) in AREAS.items():
        state = status.sources.get(pid, "missing")
        if state == "missing":
            out.append(f"{area}: not yet confirmed by a completed run for {month_name(status.period)}.")
        elif state != "final":
            out.append(f"{area}: provisional, the month's source data is not complete yet.")
    other = [b for b in status.blockers if b.section != "sources"]
    if other:
        checks = "1 open check" if len(other) == 1 else f"{len(other)} open checks"
        out.append(f"The month-end close has {checks} (listed below).")
    return out or ["The month-end close is not complete."]


CARDS = {"arr_usd_cents": "ARR", "net_new_arr_usd_cents": "Net new ARR", "customers_end": "Customers",
         "nrr": "NRR (monthly)", "revenue_usd_cents": "Revenue", "margin": "Margin"}  # fmt: skip


def highlights_html(table: pd.DataFrame, period: str) -> str:
    """Six KPI cards (value, MoM, YoY) and a paragraph saying what the month was."""
    rows = table.set_index("metric")
    cards = []
    for m in CARDS:
        if m not in rows.index:
            continue
        r = rows.loc[m]
        cards.append(
            f'<div class="wb-card" data-kpi="{m}"><div class="wb-label">{html.escape(CARDS[m])}</div>'
            f'<div class="wb-big">{html.escape(short(r["value"], r["unit"]))}</div>'
            f'<div class="wb-chg">MoM {html.escape(r["mom"])}<br>YoY {html.escape(r["yoy"])}</div></div>'
        )
    return (
        f'<div class="wb-cards wb-doc">{"".join(cards)}</div>'
        f'<p class="wb-summary wb-doc" id="summary">{html.escape(summary(table, period))}</p>'
    )


def summary(table: pd.DataFrame, period: str) -> str:
    """What the month was, in three sentences from the KPI table (comparisons only where a figure exists)."""
    r = table.set_index("metric")

    def v(m: str) -> Any:
        return r.loc[m, "value"] if m in r.index else None

    def moved(m: str, what: str) -> str:
        parts = []
        for col, when in (("mom", f"on {month_name(shift_period(period, -1)).split()[0]}"),
                          ("yoy", f"on {month_name(shift_period(period, -12))}")):  # fmt: skip
            c = r.loc[m, col] if m in r.index else "n/a"
            if c != "n/a":
                flat = c.lstrip("+-").startswith("0.0")
                word = "unchanged" if flat else f"{'down' if c.startswith('-') else 'up'} {c.lstrip('+-')}"
                parts.append(f"{word} {when}")
        return f"{what} ({', '.join(parts)})" if parts else what

    month = month_name(period)
    if v("arr_usd_cents") is None and v("revenue_usd_cents") is None:
        return f"No investor figures for {month} yet."
    out = []
    if v("arr_usd_cents") is not None:
        arr = moved(
            "arr_usd_cents", f"ARR was {short(v('arr_usd_cents'), 'usd_cents')} at the end of {month}"
        )
        nn = v("net_new_arr_usd_cents")
        out.append(
            arr + (f", with {short(nn, 'usd_cents')} net new ARR in the month." if nn is not None else ".")
        )
    if v("customers_end") is not None:
        out.append(
            f"{v('customers_end'):,} customers ({v('new_customers') or 0} new, {v('churned_customers') or 0} "
            f"churned); net revenue retention {short(v('nrr'), 'ratio')}, gross {short(v('grr'), 'ratio')}."
        )
    if v("revenue_usd_cents") is not None:
        out.append(
            moved("revenue_usd_cents", f"Revenue was {short(v('revenue_usd_cents'), 'usd_cents')}")
            + f" at a {short(v('margin'), 'ratio')} margin."
        )
    return " ".join(out)


# ---------------------------------------------------------------- charts


def note(text: str) -> Any:
    """A short note as Markdown output (for sections without data)."""
    from IPython.display import Markdown

    return Markdown(f"*{text}*")


def _series(frame: pd.DataFrame, metrics: Sequence[str], *, scale: float = 1.0) -> pd.DataFrame:
    """One row per month that has any of ``metrics`` (oldest first), values scaled; derived ones computed."""
    periods = sorted(frame["period"].unique()) if len(frame) else []
    rows = []
    for p in periods:
        values, _ = kpis.month_values(frame, p)
        row = {"period": p, **{m: values.get(m) for m in metrics}}
        if any(row[m] is not None for m in metrics):
            rows.append(row)
    out = pd.DataFrame(rows, columns=["period", *metrics])
    for m in metrics:
        out[m] = pd.to_numeric(out[m], errors="coerce").astype(float) * scale
    return out


def _too_few(data: pd.DataFrame, what: str, period: str) -> Any | None:
    """A sentence instead of a chart when fewer than two months have figures (a trend needs two points)."""
    if len(data) >= 2:
        return None
    if len(data) == 1:
        return note(_one_month(what, str(data["period"].iloc[0])))
    return note(f"{what}: no figures up to {month_name(period)} yet.")


def _one_month(what: str, month: str) -> str:
    return f"{what}: a trend needs two months of figures; so far only {month_name(month)} has them."


def _trend(
    period: str, frame: pd.DataFrame | None, metrics: Mapping[str, str], title: str, *,
    scale: float = 1.0, money: bool = False, percent: bool = False, min_span: float = 4.0, name: str = "",
) -> Any:  # fmt: skip
    frame = monthly(period) if frame is None else frame
    data = _series(frame, list(metrics), scale=scale)
    few = _too_few(data, title, period)
    if few is not None:
        return few
    fig = charts.trend(data, x="period", series=list(metrics), title=title, labels=dict(metrics), money=money,
                       percent=percent, min_span=min_span, size=CHART_SIZE, name=name)  # fmt: skip
    return _sized(fig)


def _sized(fig: charts.Chart) -> charts.Chart:
    fig.wb_width, fig.wb_dpi = CHART_WIDTH_PX, CHART_DPI
    return fig


def arr_chart(period: str, frame: pd.DataFrame | None = None) -> Any:
    """ARR at each month's end over the trailing twelve months."""
    return _trend(
        period, frame, {"arr_usd_cents": "ARR"}, "ARR at month end", scale=0.01, money=True, name="arr"
    )


def mrr_movements_chart(period: str, frame: pd.DataFrame | None = None) -> Any:
    """MRR won (new, expansion, reactivation) above zero and lost (contraction, churn) below, per month."""
    frame = monthly(period) if frame is None else frame
    parts = {"new_mrr_usd_cents": "new", "expansion_mrr_usd_cents": "expansion",
             "reactivation_mrr_usd_cents": "reactivation", "contraction_mrr_usd_cents": "contraction",
             "churn_voluntary_mrr_usd_cents": "churn (voluntary)",
             "churn_involuntary_mrr_usd_cents": "churn (involuntary)"}  # fmt: skip
    data = _series(frame, list(parts), scale=0.01)
    few = _too_few(data, "MRR movements per month", period)
    if few is not None:
        return few
    styles = [("#1b1b1b", ""), ("#5a5a5a", ""), ("#9a9a9a", ""), ("#e0e0e0", "///"), ("#c4c4c4", "xxx"),
              ("#f2f2f2", "...")]  # fmt: skip
    fig = charts.stacked_breakdown(data, x="period", parts=list(parts), labels=parts, net="net change", styles=styles,
                                   title="MRR won and lost per month", size=(7.2, 3.0), name="mrr_movements")  # fmt: skip
    return _sized(fig)


def mrr_steps(period: str, frame: pd.DataFrame | None = None) -> list[tuple[str, float]]:
    """The MRR bridge of ``period`` in dollars (start, each movement, end) for ``charts.waterfall``."""
    frame = monthly(period) if frame is None else frame
    names = [
        ("Starting MRR", "starting_mrr_usd_cents"),
        ("New", "new_mrr_usd_cents"),
        ("Expansion", "expansion_mrr_usd_cents"),
        ("Reactivation", "reactivation_mrr_usd_cents"),
        ("Contraction", "contraction_mrr_usd_cents"),
        ("Churn (voluntary)", "churn_voluntary_mrr_usd_cents"),
        ("Churn (involuntary)", "churn_involuntary_mrr_usd_cents"),
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
    """The month's MRR bridge (the axis starts near the starting MRR), or a note without Growth figures."""
    steps = mrr_steps(period, frame)
    if not steps:
        return note(f"No recurring revenue figures for {month_name(period)} yet: no MRR bridge.")
    fig = charts.waterfall(steps, title=f"MRR bridge, {month_name(period)}", start_label="Starting MRR",
                           end_label="Ending MRR", baseline="auto", size=(7.2, 3.0), name="mrr_bridge")  # fmt: skip
    return _sized(fig)


def customers_chart(period: str, frame: pd.DataFrame | None = None) -> Any:
    """Customers at each month's end."""
    return _trend(period, frame, {"customers_end": "customers"}, "Customers at month end", name="customers")


def retention_chart(period: str, frame: pd.DataFrame | None = None) -> Any:
    """Monthly net and gross revenue retention, in percent."""
    return _trend(period, frame, {"nrr": "NRR", "grr": "GRR"}, "Revenue retention per month (monthly NRR and GRR)",
                  scale=100.0, percent=True, name="retention")  # fmt: skip


def revenue_costs_chart(period: str, frame: pd.DataFrame | None = None) -> Any:
    """Revenue, total costs and profit per month."""
    metrics = {"revenue_usd_cents": "revenue", "total_cost_usd_cents": "costs", "profit_usd_cents": "profit"}
    return _trend(period, frame, metrics, "Revenue, costs and profit per month", scale=0.01, money=True,
                  name="revenue_costs")  # fmt: skip


def margin_chart(period: str, frame: pd.DataFrame | None = None) -> Any:
    """The profit margin per month, in percent (at least 10 points of axis)."""
    return _trend(period, frame, {"margin": "margin"}, "Margin per month", scale=100.0, percent=True,
                  min_span=10.0, name="margin")  # fmt: skip


def engagement_chart(period: str, frame: pd.DataFrame | None = None) -> Any:
    """Average daily and monthly active users per month."""
    return _trend(period, frame, {"dau_avg": "DAU (average)", "mau": "MAU"}, "Active users per month",
                  name="active_users")  # fmt: skip


def stickiness_chart(period: str, frame: pd.DataFrame | None = None) -> Any:
    """Stickiness (DAU/MAU) per month, in percent."""
    return _trend(period, frame, {"stickiness": "stickiness"}, "Stickiness (DAU/MAU) per month", scale=100.0,
                  percent=True, min_span=10.0, name="stickiness")  # fmt: skip


COST_CATEGORIES = ("salaries", "infrastructure", "operations")
COST_COLUMNS = ["Category", "Cost", "MoM", "Share of costs", "Largest items"]


def cost_breakdown(period: str, *, months: int = TREND_MONTHS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Costs per month by category (USD cents, for the chart) and the month's costs by category.

    The month's table: each category's cost, its change on the month before, its share of the
    month's costs and its three largest items (subcategories), then the total.
    """
    costs = _table("profit_costs_monthly")
    periods = [shift_period(period, -k) for k in range(months - 1, -1, -1)]
    if costs.empty:
        return pd.DataFrame(columns=["period", *COST_CATEGORIES]), pd.DataFrame(columns=COST_COLUMNS)
    costs = costs[costs["period"].isin(periods)]
    by_month = costs.pivot_table(index="period", columns="category", values="cost_usd_cents", aggfunc="sum")
    by_month = by_month.reindex(columns=list(COST_CATEGORIES)).fillna(0).reset_index()
    month = costs[costs["period"] == period]
    if month.empty:
        return by_month, pd.DataFrame(columns=COST_COLUMNS)
    before = costs[costs["period"] == shift_period(period, -1)].groupby("category")["cost_usd_cents"].sum()
    total = int(month["cost_usd_cents"].sum())
    rows = []
    for category, part in month.groupby("category", sort=False):
        cents = int(part["cost_usd_cents"].sum())
        items = part.groupby("subcategory")["cost_usd_cents"].sum().sort_values(ascending=False).head(3)
        rows.append({"Category": str(category).capitalize(), "Cost": charts.money(cents / 100),
                     "MoM": change(cents, before.get(category), "usd_cents"),
                     "Share of costs": f"{cents / total:.1%}" if total else "n/a",
                     "Largest items": ", ".join(f"{_item(k)} {charts.money(v / 100)}" for k, v in items.items()),
                     "_c": cents})  # fmt: skip
    rows.sort(key=lambda r: -r["_c"])
    prev_total = int(before.sum()) if len(before) else None
    rows.append({"Category": "Total", "Cost": charts.money(total / 100), "MoM": change(total, prev_total, "usd_cents"),
                 "Share of costs": "100.0%", "Largest items": "", "_c": total})  # fmt: skip
    return by_month, pd.DataFrame(rows, columns=COST_COLUMNS)


def cost_table(by_month: pd.DataFrame, detail: pd.DataFrame, period: str) -> Any:
    """The month's costs by category (:func:`cost_breakdown`); a note when only the month lacks them,
    nothing when there are no costs at all (the chart's note says so)."""
    if by_month.empty:
        return None
    return table_or_note(detail, f"No costs for {month_name(period)} yet.", text=["Category"],
                         wrap=["Largest items"], table_id="costs")  # fmt: skip


def _item(name: Any) -> str:
    """A cost subcategory for people: ``aws`` reads ``AWS``, ``office_rent`` reads ``Office rent``."""
    text = str(name).replace("_", " ")
    return {"aws": "AWS", "gcp": "GCP", "azure": "Azure", "oci": "OCI"}.get(text, text[:1].upper() + text[1:])


def cost_chart(by_month: pd.DataFrame, period: str) -> Any:
    """Stacked costs per month by category (hatched, readable without colour), or a note."""
    if by_month.empty:
        return note(f"No cost breakdown up to {month_name(period)} yet.")
    if len(by_month) < 2:
        return note(_one_month("Costs by category", str(by_month["period"].iloc[0])))
    data = by_month.copy()
    for c in COST_CATEGORIES:
        data[c] = data[c].astype(float) / 100
    fig = charts.stacked_breakdown(data, x="period", parts=["salaries", "infrastructure", "operations"],
                                   title="Costs by category per month", size=CHART_SIZE, name="costs")  # fmt: skip
    return _sized(fig)


# ---------------------------------------------------------------- tables


def html_table(
    frame: pd.DataFrame, *, text: Sequence[str] = (), wrap: Sequence[str] = (), table_id: str = ""
) -> Any:
    """``frame`` as an HTML table without an index column: a header row naming every column.

    ``text`` columns are left-aligned (the rest, numbers, right-aligned); ``wrap`` columns may wrap.
    """
    from IPython.display import HTML

    def cls(c: str) -> str:
        names = (["wb-text"] if c in text or c in wrap else []) + (["wb-wrap"] if c in wrap else [])
        return f' class="{" ".join(names)}"' if names else ""

    head = "".join(f"<th{cls(c)}>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td{cls(c)}>{html.escape(_cell(v))}</td>" for c, v in zip(frame.columns, r, strict=True))
        + "</tr>"
        for r in frame.itertuples(index=False)
    )  # fmt: skip
    ident = f' id="{table_id}"' if table_id else ""
    return HTML(f'<table class="wb-table"{ident}><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>')


def _cell(v: Any) -> str:
    return "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)


def table_or_note(frame: pd.DataFrame, empty: str, **kwargs: Any) -> Any:
    """:func:`html_table` of ``frame`` (``kwargs``: its options), or the note ``empty`` when it has no rows."""
    return note(empty) if frame.empty else html_table(frame, **kwargs)


def or_note(frame: pd.DataFrame, text: str) -> Any:
    """``frame``, or a note saying why there is nothing to show."""
    return note(text) if frame.empty else frame


CUSTOMER_COLUMNS = {
    "customers_start": "At start", "new_customers": "New", "reactivated_customers": "Reactivated",
    "churned_customers": "Churned", "customers_end": "At end", "logo_churn_rate": "Logo churn",
    "arpa_usd_cents": "ARPA", "nrr": "NRR", "grr": "GRR",
}  # fmt: skip


def customers_table(period: str, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per month (newest first): customers at start, new, reactivated, churned, at end; logo churn, ARPA, NRR, GRR."""
    frame = monthly(period) if frame is None else frame
    periods = sorted(frame["period"].unique(), reverse=True) if len(frame) else []
    rows = []
    for p in periods:
        values, _ = kpis.month_values(frame, p)
        if values.get("customers_end") is None:
            continue
        row = {"Month": charts.month_label(p)}
        for m, label in CUSTOMER_COLUMNS.items():
            v, unit = values.get(m), BY_NAME[m].unit
            row[label] = (
                "n/a" if v is None else f"${v / 100:,.0f}" if unit == "usd_cents" else format_value(v, unit)
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=["Month", *CUSTOMER_COLUMNS.values()])


# ---------------------------------------------------------------- appendix: sources and definitions


def sources_table(
    period: str,
    frame: pd.DataFrame | None = None,
    *,
    status: CloseStatus | None = None,
    engine: sa.Engine | None = None,
) -> pd.DataFrame:
    """Each area of figures: where it comes from, its data cut (as of) and whether it is final, in plain words.

    An area is final when its figures are and (given the close's ``status``) the close counts its source final.
    """
    from helpers.runs import records as runs

    frame = monthly(period, months=1, engine=engine) if frame is None else frame
    mine = frame[frame["period"] == period] if len(frame) else frame
    rows = []
    for pid, (area, systems) in AREAS.items():
        part = mine[mine["source_pipeline"] == pid] if len(mine) else mine
        if part.empty:
            rows.append({"Figures": area, "Source": systems, "Data as of": "n/a", "Status": "Not available"})
            continue
        run_id = str(part["source_run_id"].dropna().iloc[0]) if part["source_run_id"].notna().any() else ""
        rec = runs.get_run(run_id.split(";")[0], engine=engine) if run_id else None
        as_of = rec.as_of if rec and rec.as_of else pd.Timestamp(part["as_of"].iloc[0]).to_pydatetime()
        reasons = sorted(
            {str(x) for x in part.loc[part["status"] != "final", "status_reason"].dropna() if str(x)}
        )
        confirmed = status is None or status.sources.get(pid) == "final"
        final = not reasons and (part["status"] == "final").all() and confirmed
        word = "Final" if final else "Provisional" + (f": {'; '.join(reasons)}" if reasons else "")
        rows.append({"Figures": area, "Source": systems, "Data as of": _when(as_of), "Status": word})
    return pd.DataFrame(rows, columns=["Figures", "Source", "Data as of", "Status"])


def _when(moment: dt.datetime | None) -> str:
    return "n/a" if moment is None else f"{moment:%-d %b %Y, %H:%M} UTC"


def provisional(period: str, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """What is provisional in the month's figures and why, per source pipeline."""
    frame = monthly(period) if frame is None else frame
    mine = frame[(frame["period"] == period) & (frame["status"] != "final")]
    if mine.empty:
        return pd.DataFrame(columns=["source", "metrics", "why"])
    out = mine.groupby(["source_pipeline", "status_reason"], as_index=False).agg(metrics=("metric", "count"))
    return out.rename(columns={"source_pipeline": "source", "status_reason": "why"})[
        ["source", "metrics", "why"]
    ]


def investor_run_id(period: str, frame: pd.DataFrame | None = None) -> str | None:
    """The investor aggregate run that wrote the month's ``investor_monthly`` rows (None: none yet)."""
    frame = monthly(period, months=1) if frame is None else frame
    ids = frame.loc[frame["period"] == period, "run_id"].dropna().unique()
    return str(ids[0]) if len(ids) else None


def version(period: str) -> int:
    """The version of ``period``'s report: the one standing published, else the one the next ``--final`` publishes."""
    from helpers.investor import publication

    try:
        standing = publication.current(period)
        return standing.version if standing else publication.next_version(period)
    except sa.exc.SQLAlchemyError:  # no publications table in this warehouse yet
        return 1


def company_name() -> str:
    """The company the figures are about (``config/team.yml``: ``company.name``)."""
    from helpers.core import config

    return config.get().team.company.name
