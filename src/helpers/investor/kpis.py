"""The investor report's KPIs: what each means, the derived ones, and how values and changes read.

Each KPI of the month-end report (:data:`KPI_GROUPS`) is an ``investor_monthly`` metric or one
derived from them here (:func:`derived`: net new ARR and the quick ratio), with its definition (the
report's appendix). :func:`table` is the KPI table: the month's value, the month before (MoM) and
the same month a year earlier (YoY); relative changes for amounts and counts, percentage points for
rates, and for contraction and churn the change of the amount lost.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from helpers.core.periods import shift_period
from helpers.investor import charts
from helpers.investor.metrics import BY_NAME, format_value


@dataclass(frozen=True)
class Kpi:
    """One line of the KPI table: a warehouse metric, or one derived here (``derived``)."""

    name: str
    label: str
    unit: str  # usd_cents | count | ratio | users | multiple
    definition: str
    derived: bool = False


KPI_GROUPS: tuple[tuple[str, tuple[Kpi, ...]], ...] = (
    ("Recurring revenue", (
        Kpi("arr_usd_cents", "ARR", "usd_cents", "Annual recurring revenue: 12 × MRR at the month's end."),
        Kpi("net_new_arr_usd_cents", "Net new ARR", "usd_cents",
            "ARR at the month's end minus ARR at its start: 12 × the month's net MRR movements.", True),
        Kpi("ending_mrr_usd_cents", "MRR", "usd_cents",
            "Monthly recurring revenue at the month's end: quantity × unit price of every active or past-due "
            "subscription, in USD at the rate of the day its amount was set. Trials and credit notes are not MRR."),
        Kpi("new_mrr_usd_cents", "New MRR", "usd_cents", "MRR of companies that paid for the first time."),
        Kpi("expansion_mrr_usd_cents", "Expansion MRR", "usd_cents", "MRR added by paying companies (upgrades, seats)."),
        Kpi("reactivation_mrr_usd_cents", "Reactivation MRR", "usd_cents",
            "MRR of companies that had paid before, churned and pay again."),
        Kpi("contraction_mrr_usd_cents", "Contraction MRR", "usd_cents",
            "MRR lost by paying companies that downgraded (shown negative)."),
        Kpi("churn_voluntary_mrr_usd_cents", "Churned MRR, voluntary", "usd_cents",
            "MRR of companies whose cancellation took effect in the month (shown negative)."),
        Kpi("churn_involuntary_mrr_usd_cents", "Churned MRR, involuntary", "usd_cents",
            "MRR of companies lost to failed payments, counted when the dunning grace period ends (negative)."),
        Kpi("quick_ratio", "Quick ratio", "multiple",
            "(New + expansion + reactivation MRR) ÷ |contraction + churned MRR|: MRR won per dollar lost.", True),
    )),
    ("Customers and retention", (
        Kpi("customers_end", "Customers", "count",
            "Companies paying at the month's end (MRR > 0); accounts of one company count once."),
        Kpi("new_customers", "New customers", "count", "Companies that paid for the first time in the month."),
        Kpi("churned_customers", "Churned customers", "count", "Companies that stopped paying in the month."),
        Kpi("logo_churn_rate", "Logo churn", "ratio", "Churned customers ÷ customers at the month's start."),
        Kpi("nrr", "Net revenue retention", "ratio",
            "Monthly: (starting MRR + expansion + contraction + churn) ÷ starting MRR, over the companies "
            "paying at the month's start."),
        Kpi("grr", "Gross revenue retention", "ratio",
            "Monthly: (starting MRR + contraction + churn) ÷ starting MRR: the share of starting MRR kept."),
        Kpi("arpa_usd_cents", "ARPA", "usd_cents", "Average revenue per account: MRR ÷ customers, at the month's end."),
    )),
    ("Revenue and profitability", (
        Kpi("revenue_usd_cents", "Revenue", "usd_cents",
            "Recognised revenue: each invoice line spread over its service days, in USD at each day's rate."),
        Kpi("total_cost_usd_cents", "Total costs", "usd_cents",
            "Salaries, infrastructure (cloud bills) and operations expenses, in the month incurred."),
        Kpi("profit_usd_cents", "Profit", "usd_cents", "Revenue minus total costs."),
        Kpi("margin", "Margin", "ratio", "Profit ÷ revenue."),
    )),
    ("Product engagement", (
        Kpi("dau_avg", "Daily active users (average)", "users",
            "Users with at least one accepted product event on a day, averaged over the month's days."),
        Kpi("mau", "Monthly active users", "users", "Users with at least one accepted product event in the month."),
        Kpi("stickiness", "Stickiness (DAU/MAU)", "ratio", "Average daily active users ÷ monthly active users."),
    )),
)  # fmt: skip
KPIS: dict[str, Kpi] = {k.name: k for _g, group in KPI_GROUPS for k in group}
DERIVED = tuple(k.name for k in KPIS.values() if k.derived)
HEADLINE = tuple(k.name for k in KPIS.values() if not k.derived)  # the warehouse metrics of the KPI table
LOSSES = ("contraction_mrr_usd_cents", "churn_voluntary_mrr_usd_cents", "churn_involuntary_mrr_usd_cents")
GAINS = ("new_mrr_usd_cents", "expansion_mrr_usd_cents", "reactivation_mrr_usd_cents")


def month_name(period: str) -> str:
    """``2026-10`` reads ``October 2026``."""
    year, month = period.split("-")
    return f"{calendar.month_name[int(month)]} {year}"


# ---------------------------------------------------------------- derived KPIs


def derived(values: Mapping[str, Any]) -> dict[str, Any]:
    """The derived KPIs of one month from its warehouse figures (``{metric: value}``); None when one is missing.

    ``net_new_arr_usd_cents`` = 12 × (ending MRR − starting MRR), exact in cents;
    ``quick_ratio`` = (new + expansion + reactivation MRR) / |contraction + churned MRR| (None without losses).
    """
    start, end = values.get("starting_mrr_usd_cents"), values.get("ending_mrr_usd_cents")
    net_new = None if start is None or end is None else 12 * (int(end) - int(start))
    gains = [values.get(m) for m in GAINS]
    losses = [values.get(m) for m in LOSSES]
    quick = None
    if None not in gains and None not in losses:
        lost = abs(sum(int(v) for v in losses))
        quick = sum(int(v) for v in gains) / lost if lost else None
    return {"net_new_arr_usd_cents": net_new, "quick_ratio": quick}


def month_values(frame: pd.DataFrame, period: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The month's figures ``{metric: exact value}`` (derived ones included) and statuses."""
    mine = frame[frame["period"] == period] if len(frame) else frame
    values: dict[str, Any] = {}
    status: dict[str, str] = {}
    for r in mine.itertuples(index=False):
        values[str(r.metric)] = int(r.value_int) if pd.notna(r.value_int) else float(r.value)
        status[str(r.metric)] = str(r.status)
    values.update(derived(values))
    return values, status


# ---------------------------------------------------------------- formats


def change(current: Any, previous: Any, unit: str) -> str:
    """The change from ``previous``: relative for amounts and counts, percentage points for ratios."""
    if current is None or previous is None:
        return "n/a"
    if unit == "ratio":
        return f"{(float(current) - float(previous)) * 100:+.1f} pp"
    if float(previous) == 0:
        return "n/a"
    return f"{(float(current) - float(previous)) / abs(float(previous)):+,.1%}"


def kpi_change(metric: str, current: Any, previous: Any, unit: str) -> str:
    """:func:`change`, comparing the amounts lost for contraction and churn (smaller losses read negative)."""
    if metric in LOSSES and current is not None and previous is not None:
        return change(abs(current), abs(previous), unit)
    return change(current, previous, unit)


def value_text(value: Any, unit: str) -> str:
    """A KPI's value as the table shows it: :func:`~helpers.investor.metrics.format_value`, ``2.4x`` for multiples."""
    if unit == "multiple":
        return "n/a" if value is None else f"{float(value):.1f}x"
    return format_value(value, unit)


def short(value: Any, unit: str) -> str:
    """A value in short form for highlights: ``$18.20M``, ``864``, ``25.7%``."""
    if value is None:
        return "n/a"
    if unit == "usd_cents":
        return charts.money(float(value) / 100)
    if unit == "users":
        return f"{float(value):,.0f}"
    return value_text(value, unit)


def definitions_table() -> pd.DataFrame:
    """Every KPI of the report and its definition (derived ones say so)."""
    rows = [
        {"KPI": k.label, "Definition": k.definition + (" Derived in this report." if k.derived else "")}
        for _g, group in KPI_GROUPS
        for k in group
    ]
    rows.append({"KPI": "MoM, YoY", "Definition": "Change on the month before and on the same month a year "
                 "earlier: relative for amounts and counts, in percentage points (pp) for rates."})  # fmt: skip
    return pd.DataFrame(rows, columns=["KPI", "Definition"])


# ---------------------------------------------------------------- the KPI table


def table(period: str, frame: pd.DataFrame, *, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """The month's KPIs (:data:`KPI_GROUPS` order) with month-over-month and year-over-year changes.

    ``frame``: ``investor_monthly`` rows of the month, the month before and the month a year earlier.

    ``derived`` marks the KPIs computed here; ``value`` keeps the exact warehouse value (int cents).
    """
    now, status = month_values(frame, period)
    prev, _ = month_values(frame, shift_period(period, -1))
    year, _ = month_values(frame, shift_period(period, -12))
    groups = {k.name: g for g, group in KPI_GROUPS for k in group}
    rows = []
    for m in metrics or KPIS:
        kpi = KPIS.get(m) or Kpi(m, BY_NAME[m].label, BY_NAME[m].unit, "")
        cur, p, y = now.get(m), prev.get(m), year.get(m)
        rows.append(
            {"metric": m, "label": kpi.label, "unit": kpi.unit, "value": cur, "text": value_text(cur, kpi.unit),
             "previous": value_text(p, kpi.unit), "mom": kpi_change(m, cur, p, kpi.unit),
             "year_ago": value_text(y, kpi.unit), "yoy": kpi_change(m, cur, y, kpi.unit),
             "status": status.get(m, "final" if kpi.derived and cur is not None else "missing"),
             "derived": kpi.derived, "group": groups.get(m, "")}
        )  # fmt: skip
    out = pd.DataFrame(rows)
    if len(out):  # keep integers exact (a float column would turn cents into 1.5e8)
        out["value"] = pd.Series([r["value"] for r in rows], dtype=object)
    return out


def scrap(table: pd.DataFrame) -> dict[str, Any]:
    """The KPI table's warehouse figures as the report records them: ``{metric: exact value}``."""
    return {r.metric: r.value for r in table.itertuples() if not r.derived}
