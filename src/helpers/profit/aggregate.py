"""The ``profit_aggregate`` run: revenue, costs, profit and margin, completeness and the Finance
reconciliation of one month, assembled (:func:`build_aggregate`) into its ``profit_monthly`` row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from helpers.core.money import to_cents
from helpers.core.periods import month_bounds, period_of, periods_around, shift_period
from helpers.core.timeutil import naive_utc
from helpers.profit import reconcile
from helpers.profit.completeness import (
    cloud_bills,
    daily_deliveries,
    ops_cutoff,
    provisional_reasons,
    source_staleness,
)
from helpers.profit.costs import (
    CATEGORIES,
    category_totals,
    cloud_rows,
    cost_breakdown,
    expense_flags,
    expenses,
    infrastructure_breakdown,
    ledger_lines,
    payroll_costs,
)
from helpers.profit.fx import daily_rates
from helpers.profit.inputs import (
    DAILY_SOURCES,
    JoinLog,
    ProfitInputs,
    concat_findings,
    landing_findings,
    ratio,
    relevant_findings,
    utc_day,
)
from helpers.profit.revenue import (
    account_of,
    customers_dimension,
    elapsed,
    expected_renewals,
    invoice_lines,
    revenue_days,
    subscription_events,
)
from helpers.storage.verified import LandingReport

# ---------------------------------------------------------------- the aggregate row


def profit_row(
    totals: Mapping[str, int],
    *,
    period: str,
    reasons: Sequence[str],
    customers: int,
    open_lines: int,
    written_off_cents: int,
    quarantined: int,
    reconciliation_status: str,
    finance_difference_cents: int | None,
    as_of: dt.datetime,
    run_id: str,
) -> pd.DataFrame:
    """The ``profit_monthly`` row of ``period``: revenue, costs by category, profit and margin.

    ``margin`` is profit / revenue; with no (or negative) revenue it is NULL and
    ``margin_null_reason`` says why.
    """
    revenue = int(totals["revenue"])
    costs = {c: int(totals[c]) for c in CATEGORIES}
    total_cost = sum(costs.values())
    profit = revenue - total_cost
    margin, why = ratio(profit, revenue, what="margin = profit / revenue") if revenue > 0 else (
        None, "margin = profit / revenue: zero denominator" if revenue == 0 else "margin = profit / revenue: revenue is negative"
    )  # fmt: skip
    row = {
        "period": period,
        "revenue_usd_cents": revenue,
        **{f"{c}_usd_cents": v for c, v in costs.items()},
        "total_cost_usd_cents": total_cost,
        "profit_usd_cents": profit,
        "margin": margin,
        "margin_null_reason": why,
        "status": "provisional" if reasons else "final",
        "provisional_reasons": "; ".join(reasons),
        "customers": int(customers),
        "open_lines": int(open_lines),
        "written_off_usd_cents": int(written_off_cents),
        "quarantined_rows": int(quarantined),
        "reconciliation_status": reconciliation_status,
        "finance_difference_usd_cents": finance_difference_cents,
        "as_of": pd.Timestamp(naive_utc(as_of)),
        "run_id": run_id,
    }
    frame = pd.DataFrame([row])
    frame["margin"] = frame["margin"].astype("float64")
    frame["finance_difference_usd_cents"] = frame["finance_difference_usd_cents"].astype("Int64")
    return frame


def headline(profit: pd.DataFrame) -> dict[str, Any]:
    """The figures the notebook glues (names the investor aggregate reads: keep them)."""
    row = profit.iloc[0]
    margin = row["margin"]
    return {
        "period": str(row["period"]),
        "status": str(row["status"]),
        "provisional_reasons": [r for r in str(row["provisional_reasons"]).split("; ") if r],
        "revenue_usd_cents": int(row["revenue_usd_cents"]),
        "costs_usd_cents": {c: int(row[f"{c}_usd_cents"]) for c in CATEGORIES},
        "total_cost_usd_cents": int(row["total_cost_usd_cents"]),
        "profit_usd_cents": int(row["profit_usd_cents"]),
        "margin": None if pd.isna(margin) else float(margin),
        "reconciliation_status": str(row["reconciliation_status"]),
        "quarantined_rows": int(row["quarantined_rows"]),
    }


# ---------------------------------------------------------------- one run, assembled


@dataclass
class Aggregate:
    """Everything one ``profit_aggregate`` run computes for its period (see ``build_aggregate``)."""

    period: str
    rates: pd.DataFrame
    revenue: pd.DataFrame  # every invoice line's service days, converted and summed per month
    lines: pd.DataFrame  # our P&L lines of the period and its neighbours
    payroll: pd.DataFrame
    cloud: pd.DataFrame
    ops: pd.DataFrame
    events: pd.DataFrame
    deliveries: pd.DataFrame
    bills: pd.DataFrame
    renewals: pd.DataFrame
    flags: pd.DataFrame
    staleness: pd.DataFrame
    findings: pd.DataFrame
    joins: JoinLog
    reasons: list[str]
    totals: dict[str, int]
    costs: pd.DataFrame
    reconciliation: pd.DataFrame
    recon: dict[str, Any]
    profit: pd.DataFrame
    landing: LandingReport = field(default_factory=LandingReport)  # deliveries and rows left out on read


def build_aggregate(inputs: ProfitInputs, *, settings: Any, calendar: Any, run_id: str) -> Aggregate:
    """Revenue, costs, profit, completeness and the Finance reconciliation of ``inputs.period``."""

    period, as_of = inputs.period, inputs.as_of
    periods = periods_around(period)
    window = (month_bounds(periods[0])[0], month_bounds(periods[-1])[1])
    rate_start = month_bounds(shift_period(period, -settings.outlier_lookback_months - 1))[0]
    joins = JoinLog()
    rates = daily_rates(inputs["fx_rates"], rate_start, window[1], max_gap_days=settings.fx_max_gap_days)
    lines, f_lines = invoice_lines(inputs["billing_invoices"])
    revenue, f_rev = revenue_days(lines, rates, joins, window[0], elapsed(window[1], as_of), report=period)
    payroll, f_pay = payroll_costs(inputs["hr_payroll"], rates, joins)
    cloud, f_cloud = cloud_rows(inputs["cloud_costs"], rates)
    ops, f_ops = expenses(inputs["ops_expenses"], rates, joins)
    events, f_subs = subscription_events(inputs["subscriptions"])
    dim, f_cust = customers_dimension(inputs["billing_customers"])
    this_month = revenue[(revenue["period"] == period) & (revenue["status"] != "uncollectible")]
    with_accounts, f_unmapped = account_of(
        this_month, dim, joins, name="revenue days x billing_customers", counts="days"
    )
    ours = ledger_lines(revenue, payroll, cloud, ops, periods)
    totals = category_totals(ours, period)
    costs = cost_breakdown(ours, infrastructure_breakdown(cloud, period), period)
    deliveries = daily_deliveries(inputs.arrivals, DAILY_SOURCES, period, as_of)
    bills = cloud_bills(cloud, period, as_of, settings)
    # a line that exists but was quarantined (say, a NULL amount) still shows the renewal was billed
    billed = inputs["billing_invoices"].assign(
        period_start=utc_day(inputs["billing_invoices"]["period_start"])
    )
    renewals = expected_renewals(events, billed, deliveries, period)
    cutoffs = {
        p: ops_cutoff(p, calendar, settings.ops_cutoff_business_days)
        for p in (shift_period(period, k) for k in range(-3, 2))
    }
    parts = [f_lines, f_rev, f_pay, f_cloud, f_ops, f_subs, f_cust, f_unmapped]
    parts.append(landing_findings(inputs.landing))
    found = relevant_findings(concat_findings(parts), inputs)
    month = revenue[revenue["period"] == period]
    open_lines = int(month.loc[month["status"] == "open", "invoice_line_id"].nunique())
    written_off = int(to_cents(int(month.loc[month["status"] == "uncollectible", "usd_micro"].sum())))
    reasons = provisional_reasons(
        period, as_of, deliveries=deliveries,
        payroll_arrived=bool((period_of(utc_day(inputs["hr_payroll"]["payroll_month"])) == period).any()),
        bills=bills, cutoff=cutoffs[period], open_lines=open_lines,
        missing_renewals=int((~renewals["invoiced"]).sum()) if len(renewals) else 0,
        quarantined=int((found["action"] == "quarantined").sum()),
        landing=[r.reason for r in inputs.landing.rejected],
    )  # fmt: skip
    evidence, recon = reconcile.reconcile(
        ours, inputs["finance_ledger"], ops, revenue, rates, cutoffs, period, settings
    )
    row = profit_row(
        totals, period=period, reasons=reasons, customers=int(with_accounts["account_id"].nunique()),
        open_lines=open_lines, written_off_cents=written_off, quarantined=int((found["action"] == "quarantined").sum()),
        reconciliation_status=recon["status"], finance_difference_cents=recon.get("finance_profit_difference_usd_cents"),
        as_of=as_of, run_id=run_id,
    )  # fmt: skip
    return Aggregate(
        period, rates, revenue, ours, payroll, cloud, ops, events, deliveries, bills, renewals,
        expense_flags(ops, bills, period, as_of, settings), source_staleness(inputs.arrivals, DAILY_SOURCES, period, as_of),
        found, joins, reasons, totals, costs, evidence, recon, row, inputs.landing,
    )  # fmt: skip
