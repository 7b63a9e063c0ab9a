"""Costs: payroll, cloud bills (FOCUS), operations expenses, our P&L lines at Finance's grain, the
cost breakdown, and the expenses that land in (or leave) the wrong month.

Each published figure is rounded half-even to cents once (per month and ledger line, as Finance
does); breakdowns split a rounded total by largest remainder so their rows add up to it exactly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import pandas as pd

from helpers.core.money import MICRO, largest_remainder, round_half_even, to_cents, to_micros
from helpers.core.periods import month_bounds, period_of, shift_period
from helpers.core.timeutil import as_utc
from helpers.profit.fx import convert
from helpers.profit.inputs import (
    KEYS,
    JoinLog,
    concat_findings,
    dedupe_exact,
    empty_findings,
    findings,
    latest,
    require_complete,
    screen_integers,
    utc_day,
)

CATEGORIES = ("salaries", "infrastructure", "operations")
# FOCUS ProviderName -> the provider key Finance's ledger uses as subcategory (else a slug of the name)
PROVIDER_KEYS = {"AWS": "aws", "Amazon Web Services": "aws", "Microsoft": "azure", "Google Cloud": "gcp"}


# ---------------------------------------------------------------- payroll, cloud and operations


def payroll_costs(
    payroll: pd.DataFrame, rates: pd.DataFrame, joins: JoinLog
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Employer cost per employee and payroll month: gross pay + employer taxes + benefits."""
    payroll = payroll.assign(
        payroll_key=payroll["payroll_month"].astype(str) + "|" + payroll["employee_id"].astype(str)
    )
    payroll, dup = dedupe_exact(payroll, source="hr_payroll", key="payroll_key")
    rows = latest(payroll, KEYS["hr_payroll"])
    found = [dup]
    for col in ("gross_pay", "employer_taxes", "benefits"):
        rows, bad = screen_integers(rows, col, source="hr_payroll", key="payroll_key")
        found.append(bad)
    rows = rows.assign(
        cost_local=rows["gross_pay"] + rows["employer_taxes"] + rows["benefits"],
        day=utc_day(rows["pay_date"]),
        period=period_of(utc_day(rows["payroll_month"])),
    )
    converted, missing = convert(
        rows, rates, joins, day="day", amount="cost_local", source="hr_payroll", key="payroll_key",
        name="payroll x fx_rates",
    )  # fmt: skip
    return converted, concat_findings([*found, missing])


def provider_key(name: str) -> str:
    """Finance's subcategory for a FOCUS ``ProviderName`` (aws, azure, gcp, else a slug)."""
    slug = "".join(ch if ch.isalnum() else "_" for ch in str(name).lower()).strip("_")
    return PROVIDER_KEYS.get(name, slug)


def cloud_rows(cloud: pd.DataFrame, rates: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """FOCUS charges with their billing period, provider key and exact USD cost (``cost``, Decimal).

    Every ``ChargeCategory`` is kept (Usage, Purchase, Tax, Credit, Adjustment): credits are
    negative and adjustments signed, as billed. A re-delivered bill replaces rows by ``Id``. A
    non-USD bill is converted at the rate of each charge's day.
    """
    if not len(cloud):
        empty = cloud.assign(
            period=pd.Series(dtype=object), provider_key=pd.Series(dtype=object), cost=pd.Series(dtype=object)
        )
        return empty, empty_findings()
    rows = latest(cloud, ["Id"])
    usable = rows["BilledCost"].map(
        lambda v: isinstance(v, Decimal) or (isinstance(v, (int, float)) and not pd.isna(v))
    )
    bad = findings(rows[~usable], source="cloud_costs", key="Id", reason="BilledCost is NULL or not a number",
                   action="quarantined", raw="BilledCost")  # fmt: skip
    rows = rows[usable].copy()
    rows["period"] = period_of(utc_day(rows["BillingPeriodStart"]))
    rows["provider_key"] = rows["ProviderName"].map(provider_key)
    rows["day"] = utc_day(rows["ChargePeriodStart"])
    foreign = rows["BillingCurrency"].fillna("USD") != "USD"
    rows["cost"] = rows["BilledCost"].map(lambda v: Decimal(str(v)))
    found = [bad]
    if foreign.any():
        rated = rows[foreign].merge(
            rates[["day", "currency", "rate_micros"]].rename(columns={"currency": "BillingCurrency"}),
            on=["day", "BillingCurrency"],
            how="left",
        )
        rated.index = rows.index[foreign]
        no_rate = rated["rate_micros"].isna()
        found.append(findings(rated[no_rate], source="cloud_costs", key="Id", action="quarantined",
                              reason="no FX rate for the billing currency on the charge day", raw="BilledCost"))  # fmt: skip
        rows.loc[rated.index[~no_rate], "cost"] = [
            c * Decimal(int(r)) / MICRO
            for c, r in zip(rated.loc[~no_rate, "cost"], rated.loc[~no_rate, "rate_micros"], strict=True)
        ]
        rows = rows.drop(index=rated.index[no_rate])
    return rows, concat_findings(found)


def _decimal_sum(values: Iterable[Decimal]) -> Decimal:
    return sum(values, Decimal(0))


def infrastructure_breakdown(rows: pd.DataFrame, period: str) -> pd.DataFrame:
    """Cost of ``period`` by provider, service and charge category, in cents and micro-dollars.

    Each provider's cents are its exact ``BilledCost`` total rounded half-even (Finance's line);
    the service rows split those cents by largest remainder, so they add up to it exactly.
    """
    cols = ["provider_key", "provider", "service", "charge_category", "cost_usd_cents", "cost_micros", "rows"]
    mine = rows[rows["period"] == period]
    if not len(mine):
        return pd.DataFrame({c: pd.Series(dtype="object") for c in cols})
    grouped = (
        mine.assign(service=mine["ServiceName"].fillna(""), charge_category=mine["ChargeCategory"].fillna(""))
        .groupby(["provider_key", "ProviderName", "service", "charge_category"], sort=True)
        .agg(cost=("cost", _decimal_sum), rows=("Id", "size"))
        .reset_index()
        .rename(columns={"ProviderName": "provider"})
    )
    cents = []
    for _, g in grouped.groupby("provider_key", sort=False):
        exact = [c * 100 for c in g["cost"]]
        total = round_half_even(_decimal_sum(exact))
        cents.append(pd.Series(largest_remainder(exact, total), index=g.index))
    grouped["cost_usd_cents"] = pd.concat(cents).astype("int64")
    grouped["cost_micros"] = [to_micros(c) for c in grouped["cost"]]
    grouped["rows"] = grouped["rows"].astype("int64")
    return grouped[cols]


def expenses(ops: pd.DataFrame, rates: pd.DataFrame, joins: JoinLog) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Operations expenses (latest version each) attributed to the month incurred, in USD.

    Rows incurred outside the rate window (e.g. a date typed in the wrong year) keep
    ``usd_micro`` NA: they belong to no month this run computes and are reported by
    ``expense_flags``, not quarantined.
    """
    ops, dup = dedupe_exact(ops, source="ops_expenses")
    rows = latest(ops, ["expense_id"])
    rows, bad = screen_integers(rows, "amount", source="ops_expenses", key="expense_id")
    rows = rows.assign(
        incurred=utc_day(rows["incurred_date"]),
        submitted_at=pd.to_datetime(rows["submitted_at"], utc=True),
    )
    no_date = rows["incurred"].isna() | rows["submitted_at"].isna()
    bad_date = findings(rows[no_date], source="ops_expenses", key="expense_id", action="quarantined",
                        reason="incurred_date or submitted_at is NULL", raw="incurred_date")  # fmt: skip
    rows = rows[~no_date].assign(submitted=lambda f: utc_day(f["submitted_at"]))
    rows["period"] = period_of(rows["incurred"])
    in_window = (
        rows["incurred"].between(rates["day"].min(), rates["day"].max())
        if len(rates)
        else rows["incurred"].isna()
    )
    converted, missing = convert(
        rows[in_window].rename(columns={"incurred": "day"}), rates, joins, day="day", amount="amount",
        source="ops_expenses", key="expense_id", name="ops_expenses x fx_rates",
    )  # fmt: skip
    converted = converted.rename(columns={"day": "incurred"})
    outside = rows[~in_window]
    if len(outside):
        converted = pd.concat(
            [converted, outside.assign(rate_micros=pd.Series(pd.NA, index=outside.index, dtype="Int64"),
                                       usd_micro=pd.Series(pd.NA, index=outside.index, dtype="Int64"))],
            ignore_index=True,
        )  # fmt: skip
    return converted.reset_index(drop=True), concat_findings([dup, bad, bad_date, missing])


# ---------------------------------------------------------------- our ledger lines


LINE_COLUMNS = [
    "period",
    "category",
    "subcategory",
    "currency",
    "amount_local",
    "usd_micro",
    "usd_cents",
    "rows",
]


def ledger_lines(
    revenue: pd.DataFrame,
    payroll: pd.DataFrame,
    cloud: pd.DataFrame,
    ops: pd.DataFrame,
    periods: Sequence[str],
) -> pd.DataFrame:
    """Our P&L of ``periods`` at Finance's grain: (period, category, subcategory, currency).

    Revenue: recognised service days (not written off) per currency. Salaries: employer cost per
    department. Infrastructure: each provider's bill in its billing period. Operations: each
    category in the month incurred (whenever submitted). ``usd_cents`` is the line's micro-cents
    rounded half-even once, so category totals are sums of line cents, like Finance's.
    """
    parts = []
    rev = revenue[(revenue["status"] != "uncollectible") & revenue["period"].isin(periods)]
    require_complete(rev, ["amount_local", "usd_micro"], what="revenue")
    parts.append(
        rev.groupby(["period", "currency"], sort=True)
        .agg(
            amount_local=("amount_local", "sum"),
            usd_micro=("usd_micro", "sum"),
            rows=("invoice_line_id", "nunique"),
        )
        .reset_index()
        .assign(category="revenue", subcategory="subscriptions")
    )
    pay = payroll[payroll["period"].isin(periods)]
    require_complete(pay, ["cost_local", "usd_micro"], what="salaries")
    parts.append(
        pay.groupby(["period", "department", "currency"], sort=True)
        .agg(amount_local=("cost_local", "sum"), usd_micro=("usd_micro", "sum"), rows=("employee_id", "size"))
        .reset_index()
        .rename(columns={"department": "subcategory"})
        .assign(category="salaries")
    )
    infra = cloud[cloud["period"].isin(periods)]
    if len(infra):
        by_provider = (
            infra.groupby(["period", "provider_key"], sort=True)
            .agg(cost=("cost", _decimal_sum), rows=("Id", "size"))
            .reset_index()
        )
        cents = [round_half_even(c * 100) for c in by_provider["cost"]]
        parts.append(
            by_provider.assign(
                category="infrastructure",
                subcategory=by_provider["provider_key"],
                currency="USD",
                amount_local=cents,
                usd_micro=[c * MICRO for c in cents],
            ).drop(columns=["provider_key", "cost"])
        )
    # expenses dated outside the rate window (a mistyped year) have no USD; expense_flags reports them
    spent = ops[ops["period"].isin(periods) & ops["usd_micro"].notna()]
    require_complete(spent, ["amount", "usd_micro"], what="operations")
    parts.append(
        spent.groupby(["period", "category", "currency"], sort=True)
        .agg(amount_local=("amount", "sum"), usd_micro=("usd_micro", "sum"), rows=("expense_id", "size"))
        .reset_index()
        .rename(columns={"category": "subcategory"})
        .assign(category="operations")
    )
    frames = [p for p in parts if len(p)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in LINE_COLUMNS})
    lines = pd.concat(frames, ignore_index=True)
    lines["amount_local"] = lines["amount_local"].astype("int64")
    lines["usd_micro"] = lines["usd_micro"].astype("int64")
    lines["usd_cents"] = to_cents(lines["usd_micro"].to_numpy())
    lines["rows"] = lines["rows"].astype("int64")
    return (
        lines[LINE_COLUMNS]
        .sort_values(["period", "category", "subcategory", "currency"])
        .reset_index(drop=True)
    )


def category_totals(lines: pd.DataFrame, period: str) -> dict[str, int]:
    """USD cents of ``period`` per category (revenue and every cost category, zeros included)."""
    mine = lines[lines["period"] == period]
    sums = mine.groupby("category")["usd_cents"].sum()
    return {c: int(sums.get(c, 0)) for c in ("revenue", *CATEGORIES)}


def cost_breakdown(lines: pd.DataFrame, infra: pd.DataFrame, period: str) -> pd.DataFrame:
    """``profit_costs_monthly`` rows: salaries by department, infrastructure by provider/service/
    charge category, operations by expense category (empty text where a level does not apply).

    Rows of a category add up to its total in ``profit_monthly`` exactly.
    """
    cols = [
        "category",
        "subcategory",
        "provider",
        "service",
        "charge_category",
        "cost_usd_cents",
        "cost_micros",
        "rows",
    ]
    mine = lines[(lines["period"] == period) & lines["category"].isin(["salaries", "operations"])]
    flat = (
        mine.groupby(["category", "subcategory"], sort=True)
        .agg(cost_usd_cents=("usd_cents", "sum"), rows=("rows", "sum"))
        .reset_index()
        .assign(provider="", service="", charge_category="")
    )
    flat["cost_micros"] = flat["cost_usd_cents"] * 10_000  # cents -> millionths of a dollar
    cloud = infra.rename(columns={"provider_key": "subcategory"}).assign(category="infrastructure")
    parts = [f[cols] for f in (flat, cloud) if len(f)]
    out = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame({c: pd.Series(dtype="object") for c in cols})
    )
    for col in ("cost_usd_cents", "cost_micros", "rows"):
        out[col] = out[col].astype("int64")
    out.insert(0, "period", period)
    return out.sort_values(["category", "subcategory", "service", "charge_category"]).reset_index(drop=True)


# ---------------------------------------------------------------- expenses in the wrong month


FLAG_COLUMNS = [
    "kind",
    "id",
    "provider_or_category",
    "incurred_date",
    "submitted_at",
    "amount",
    "currency",
    "detail",
]


def expense_flags(
    ops: pd.DataFrame, bills: pd.DataFrame, period: str, as_of: dt.datetime, settings: Any
) -> pd.DataFrame:
    """Costs that land in (or leave) the wrong month, for ``period``:

    - ``late_submission``: incurred in the month, or submitted in it, more than
      ``late_submission_days`` after being incurred (it changes a month already closed);
    - ``implausible_date``: incurred after it was submitted, or more than ``implausible_lag_days``
      before (a date typed wrong: the cost lands in a month nobody is looking at);
    - ``outlier``: an amount (USD) more than ``outlier_factor`` times above or below the median of
      its category over the month and the ``outlier_lookback_months`` before (a fat finger);
    - ``cloud_bill_late`` / ``cloud_bill_overdue``: a provider's bill arrived after its due day,
      or is still missing after it (one row per late charge ``Id``, or per missing bill).
    """
    first, stop = month_bounds(period)
    lag = (ops["submitted"] - ops["incurred"]).dt.days
    mine = (ops["incurred"] >= first) & (ops["incurred"] < stop)
    submitted_here = (ops["submitted"] >= first) & (ops["submitted"] < stop)
    relevant = mine | submitted_here
    implausible = relevant & ((lag < 0) | (lag > settings.implausible_lag_days))
    late = relevant & ~implausible & (lag > settings.late_submission_days)
    lookback = month_bounds(shift_period(period, -settings.outlier_lookback_months))[0]
    base = ops[(ops["incurred"] >= lookback) & (ops["incurred"] < stop) & ops["usd_micro"].notna()]
    base = base.assign(usd=base["usd_micro"].astype(float) / MICRO / 100)
    medians = base.groupby("category")["usd"].agg(["median", "size"])
    cand = base[(base["incurred"] >= first) & (base["incurred"] < stop)].join(medians, on="category")
    cand = cand[(cand["size"] >= settings.outlier_min_rows) & (cand["median"] > 0)]
    factor = cand["usd"] / cand["median"]
    outliers = cand[(factor > settings.outlier_factor) | (factor < 1 / settings.outlier_factor)]

    def rows(frame: pd.DataFrame, kind: str, detail: pd.Series) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "kind": kind,
                "id": frame["expense_id"].astype(str),
                "provider_or_category": frame["category"].astype(str),
                "incurred_date": frame["incurred"].dt.strftime("%Y-%m-%d"),
                "submitted_at": frame["submitted_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "amount": frame["amount"].astype("int64"),
                "currency": frame["currency"].astype(str),
                "detail": detail.astype(str),
            }
        )

    parts = [
        rows(ops[late], "late_submission", "submitted " + lag[late].astype(str) + f" days after incurred (> {settings.late_submission_days})"),
        rows(ops[implausible], "implausible_date", "incurred date is " + lag[implausible].astype(str) + " days from its submission: likely mistyped"),
        rows(outliers, "outlier", (factor[outliers.index]).round(1).astype(str) + "x the category median of $" + cand.loc[outliers.index, "median"].round(2).astype(str)),
    ]  # fmt: skip
    for bill in bills.itertuples():
        if bill.late:
            parts.append(pd.DataFrame({
                "kind": "cloud_bill_late", "id": bill.ids, "provider_or_category": bill.provider,
                "incurred_date": period, "submitted_at": f"{bill.arrived_at:%Y-%m-%dT%H:%M:%SZ}", "amount": None,
                "currency": "USD", "detail": f"bill arrived {bill.arrived_at:%Y-%m-%d}, due {bill.due_at:%Y-%m-%d}",
            }))  # fmt: skip
        elif bill.overdue:
            parts.append(pd.DataFrame([{
                "kind": "cloud_bill_overdue", "id": f"{bill.provider_key}:{period}", "provider_or_category": bill.provider,
                "incurred_date": period, "submitted_at": None, "amount": None, "currency": "USD",
                "detail": f"bill not arrived as of {pd.Timestamp(as_utc(as_of)):%Y-%m-%d}, due {bill.due_at:%Y-%m-%d}",
            }]))  # fmt: skip
    frames = [p for p in parts if len(p)]
    if not frames:
        return pd.DataFrame(columns=FLAG_COLUMNS)
    return (
        pd.concat(frames, ignore_index=True)[FLAG_COLUMNS].sort_values(["kind", "id"]).reset_index(drop=True)
    )
