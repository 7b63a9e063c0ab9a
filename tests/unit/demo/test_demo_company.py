"""The clean demo business: realistic shape (growth, churn, weekday dips, month-start renewals) and
landing extracts that are internally consistent (invoices vs subscriptions, periods, types, PII)."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import FOCUS_SAMPLE
from helpers.demo import company as co
from helpers.demo import sources_finance as fin
from helpers.demo.generate import ACCOUNT_SOURCES, COMPANY_SOURCES, company_extracts, generate
from helpers.demo.sources_finance import CLOUD_LAG_DAYS, PROVIDERS
from helpers.demo.spec import DemoSpec
from helpers.storage import landing
from helpers.storage.contracts import FOCUS_COLUMNS, SOURCES

pytestmark = pytest.mark.unit

SPEC = DemoSpec(accounts=150, months=4, seed=42, end=dt.date(2026, 10, 31))
REQUIRED = {
    "billing_customers": ["customer_id", "email_sha256", "name", "currency", "account_id", "created"],
    "subscriptions": ["event_id", "event_type", "subscription_id", "customer_id", "status", "item_tier", "item_quantity", "item_unit_amount", "currency", "event_at"],
    "billing_invoices": ["invoice_id", "invoice_line_id", "customer_id", "subscription_id", "line_type", "amount", "currency", "period_start", "period_end", "proration", "status", "created", "updated_at"],
    "billing_payments": ["payment_id", "type", "invoice_id", "customer_id", "amount", "currency", "status", "attempt", "created"],
    "fx_rates": ["date", "currency", "usd_per_unit"],
    "crm_accounts": ["account_id", "name", "domain", "industry", "owner_id", "product_account_id", "created_at", "updated_at"],
    "crm_stage_history": ["stage_event_id", "account_id", "to_stage", "effective_at", "entered_at", "entered_by"],
    "account_db": ["account_id", "company_name", "domain", "billing_customer_id", "status", "plan", "seats", "created_at", "updated_at"],
    "sales_records": ["deal_id", "account_id", "contract_start", "signed_at", "first_payment_expected", "term_months", "contract_value", "currency", "ae_id"],
    "experiment_assignments": ["account_id", "experiment", "arm", "assigned_at"],
    "hr_payroll": ["payroll_month", "pay_date", "employee_id", "department", "cost_center", "gross_pay", "employer_taxes", "benefits", "currency"],
    "cloud_costs": ["BilledCost", "EffectiveCost", "BillingCurrency", "BillingPeriodStart", "BillingPeriodEnd", "ChargeCategory", "ChargePeriodStart", "ChargePeriodEnd", "ProviderName", "ServiceName", "ServiceCategory", "Id"],
    "ops_expenses": ["expense_id", "incurred_date", "submitted_at", "category", "vendor", "amount", "currency", "entered_by"],
    "finance_ledger": ["line_id", "period", "category", "subcategory", "currency", "amount_local", "fx_rate", "amount_usd", "booked_at"],
}  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    r = tmp_path_factory.mktemp("company") / "landing"
    generate(SPEC, r, events=False)
    return r


@functools.lru_cache(maxsize=64)
def _read(root: Path, source: str) -> pd.DataFrame:
    return landing.read_source(source, root=root, with_arrival=True)


def read(root: Path, source: str) -> pd.DataFrame:
    return _read(root, source).copy()


@pytest.fixture(scope="module")
def big() -> co.Company:
    """The default-size company (2,000 accounts, 25 months), simulated in memory only."""
    return co.simulate(DemoSpec())[0]


# ----------------------------------------------------------------------------- the business


def test_usage_periods_contract(big: co.Company) -> None:
    up = co.usage_periods(big)
    assert list(up.columns) == ["account_id", "start", "end", "seats", "tier", "state"]
    assert up["account_id"].map(type).eq(str).all() and up["seats"].dtype == np.int64
    assert isinstance(up["start"].iloc[0], dt.date) and isinstance(up["end"].iloc[0], dt.date)
    assert set(up["state"]) == {"trial", "customer", "grace"} and set(up["tier"]) <= set(co.TIERS)
    assert (up["start"] <= up["end"]).all() and (up["seats"] >= 1).all()
    assert up["start"].min() >= big.spec.start and up["end"].max() <= big.spec.end
    nxt = up.groupby("account_id")["start"].shift(-1)
    assert (nxt.isna() | (up["end"] < nxt)).all(), "periods of one account never overlap"
    assert co.account_ids(big)[:2] == ["A0000001", "A0000002"] and len(co.account_ids(big)) == 2000


def _monthly(company: co.Company) -> pd.DataFrame:
    iv, ch, a = company.intervals, company.changes, company.accounts
    usd = np.array([1.0, 1.08, 1.27, 0.74])[a["currency"].to_numpy()]
    out = []
    for mi in company.world.months:
        ms, me = int(co.month_start(mi)), int(co.month_start(mi + 1))
        act = iv[(iv["start"] <= ms) & (iv["end"] >= ms) & (iv["state"] > 0)]
        price = co.PRICES[act["tier"].to_numpy(), a["currency"].to_numpy()[act["acc"].to_numpy()]]
        churned = ch[
            (ch["day"] >= ms) & (ch["day"] < me) & ch["kind"].isin([co.K_CANCEL_VOL, co.K_CANCEL_INVOL])
        ]
        out.append(
            {
                "customers": act["acc"].nunique(),
                "churned": churned["acc"].nunique(),
                "mrr_usd": float((act["seats"].to_numpy() * price * usd[act["acc"].to_numpy()]).sum() / 100),
            }
        )
    return pd.DataFrame(out)


def test_growth_and_churn_look_like_b2b_saas(big: co.Company) -> None:
    m = _monthly(big)
    churn = (m["churned"] / m["customers"]).iloc[1:]
    assert 0.015 <= churn.mean() <= 0.03, f"monthly logo churn {churn.mean():.3%}"
    assert m["mrr_usd"].iloc[-1] > 1.3 * m["mrr_usd"].iloc[0], "MRR grows"
    assert m["customers"].iloc[-1] > m["customers"].iloc[0]
    assert (m["mrr_usd"].diff().iloc[1:] > 0).mean() > 0.7, "MRR grows in most months"


def test_weekday_dips_and_month_start_renewals(big: co.Company) -> None:
    a = big.accounts[~big.accounts["base"]]
    wd = co.weekday(a["trial_start"].to_numpy())
    per_day = np.bincount(wd, minlength=7)  # Monday..Sunday
    assert per_day[5:].max() < 0.5 * per_day[:5].mean()
    ren = big.changes[big.changes["kind"] == co.K_RENEW]
    dom = co.day_of_month(ren["day"].to_numpy())
    assert (dom == 1).mean() > 5 * (dom == 15).mean(), "sales-led subscriptions renew on the 1st"


def test_default_company_is_profitable_and_costs_scale(big: co.Company) -> None:
    totals = fin.Totals(big.world)
    totals.add(big)
    led = company_extracts(big.world, totals)["finance_ledger"]
    usd = led["amount_usd"].where(led["category"] == "revenue", -led["amount_usd"])
    margin = (
        usd.groupby(led["period"]).sum()
        / led[led["category"] == "revenue"].groupby("period")["amount_usd"].sum()
    )
    assert margin.between(0.05, 0.45).all(), "the clean company is profitable every month, SaaS-like margins"
    heads = fin.headcount(big.world, totals)
    assert heads[-1] > heads[0], "headcount grows with the company"


def test_signups_grow_and_involuntary_churn_mostly_recovers(big: co.Company) -> None:
    a = big.accounts[~big.accounts["base"]]
    months = co.month_of(a["trial_start"].to_numpy())
    per_month = np.bincount(months - months.min())
    assert per_month[-6:].mean() > 1.4 * per_month[:6].mean()
    ch = big.changes
    assert (ch["kind"] == co.K_RECOVER).sum() > (ch["kind"] == co.K_CANCEL_INVOL).sum()


# ----------------------------------------------------------------------------- the extracts


def test_no_nulls_in_required_columns(root: Path) -> None:
    for source, cols in REQUIRED.items():
        frame = read(root, source)
        assert len(frame), source
        for c in cols:
            assert frame[c].notna().all(), f"{source}.{c} has NULLs"


def test_money_types(root: Path) -> None:
    for source, column in (
        ("billing_invoices", "amount"),
        ("billing_payments", "amount"),
        ("ops_expenses", "amount"),
        ("hr_payroll", "gross_pay"),
        ("finance_ledger", "amount_usd"),
    ):
        for d in landing.deliveries(source, root=root):
            assert pq.read_schema(root / source / d.file).field(column).type == pa.int64(), (source, d.file)
    fx = pq.read_schema(root / "fx_rates" / landing.deliveries("fx_rates", root=root)[0].file)
    assert fx.field("usd_per_unit").type == pa.decimal128(18, 6)
    cloud = pq.read_schema(root / "cloud_costs" / landing.deliveries("cloud_costs", root=root)[0].file)
    assert cloud.field("BilledCost").type == pa.decimal128(38, 18)
    assert cloud.field("ChargePeriodStart").type == pa.timestamp("us", tz="UTC")


def test_emails_are_pseudonymised(root: Path) -> None:
    cust = read(root, "billing_customers")
    assert cust["email_sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
    for source in ACCOUNT_SOURCES + COMPANY_SOURCES:
        frame = read(root, source)
        for c in frame.columns:
            if frame[c].dtype == object:
                assert not frame[c].astype(str).str.contains("@").any(), f"{source}.{c} holds an email"


def test_invoice_lines_match_subscription_prices(root: Path) -> None:
    inv = read(root, "billing_invoices").drop_duplicates("invoice_line_id")
    subs = read(root, "subscriptions")
    sub = inv[inv["line_type"] == "subscription"]
    full = sub[~sub["proration"]]
    assert (full["amount"] == full["quantity"] * full["unit_amount"]).all()
    first = sub[sub["proration"]]  # a sales-led first period up to the 1st: prorated by days
    start, end = pd.to_datetime(first["period_start"]), pd.to_datetime(first["period_end"])
    dim = start.dt.days_in_month
    expect = (2 * first["quantity"] * first["unit_amount"] * (end - start).dt.days + dim) // (2 * dim)
    assert (first["amount"] == expect).all() and (end.dt.day == 1).all()
    # every subscription line starts a period the subscription events announce, at the same price
    ev = subs.assign(ps=subs["current_period_start"].dt.date)
    ev = ev[ev["status"].isin(["active", "past_due"])][
        ["subscription_id", "ps", "item_quantity", "item_unit_amount"]
    ]
    m = sub.assign(ps=sub["period_start"]).merge(
        ev.drop_duplicates(["subscription_id", "ps"]), on=["subscription_id", "ps"], how="left"
    )
    landed = m[pd.to_datetime(m["ps"]) >= pd.Timestamp(SPEC.start)]
    assert landed["item_quantity"].notna().all(), "no invoice line without its subscription period"
    assert (landed["quantity"] == landed["item_quantity"]).all() and (
        landed["unit_amount"] == landed["item_unit_amount"]
    ).all()
    # proration lines come in pairs: credit for the old plan, charge for the new one, same period
    pr = inv[inv["line_type"] == "proration"].groupby("invoice_id")
    assert (
        (pr.size() == 2).all()
        and (pr["amount"].sum() > 0).all()
        and (pr["period_start"].nunique() == 1).all()
    )


def test_monthly_invoiced_equals_subscribed_prices_plus_proration(root: Path) -> None:
    inv = read(root, "billing_invoices").drop_duplicates("invoice_line_id")
    inv = inv[pd.to_datetime(inv["period_start"]) >= pd.Timestamp(SPEC.start)]
    subs = read(root, "subscriptions")
    starts = subs[subs["event_type"].ne("customer.subscription.deleted") & subs["status"].isin(["active"])]
    starts = starts[
        starts["current_period_start"] == starts["event_at"]
    ]  # a period starts: conversion, renewal, reactivation
    starts = starts[starts["event_at"] >= pd.Timestamp(SPEC.start, tz="UTC")].drop_duplicates(
        ["subscription_id", "current_period_start"]
    )
    month = inv["created"].dt.strftime("%Y-%m")
    billed = inv[inv["line_type"] == "subscription"].groupby(month)["amount"].sum()
    price = (
        (starts["item_quantity"] * starts["item_unit_amount"])
        .groupby(starts["event_at"].dt.strftime("%Y-%m"))
        .sum()
    )
    prorated = inv[(inv["line_type"] == "subscription") & inv["proration"]]
    discount = (
        (prorated["quantity"] * prorated["unit_amount"] - prorated["amount"])
        .groupby(prorated["created"].dt.strftime("%Y-%m"))
        .sum()
    )
    expected = price.subtract(discount, fill_value=0)
    assert billed.to_dict() == expected.to_dict()


def test_line_periods_are_inside_the_subscription_life(root: Path) -> None:
    inv = read(root, "billing_invoices").sort_values("updated_at").groupby("invoice_line_id").tail(1)
    inv = inv[inv["status"] != "uncollectible"]  # a written-off period outlives its cancellation
    subs = read(root, "subscriptions")
    born = subs.groupby("subscription_id")["event_at"].min().dt.date
    died = subs[subs["status"] == "canceled"].groupby("subscription_id")["canceled_at"].max().dt.date
    ps, pe = inv["period_start"], inv["period_end"]
    assert (ps < pe).all()
    assert (ps >= inv["subscription_id"].map(born)).all()
    end = inv["subscription_id"].map(died)
    assert (end.isna() | (pe <= end)).all()


def test_payments_follow_dunning(root: Path) -> None:
    pay = read(root, "billing_payments")
    charges = pay[pay["type"] == "charge"]
    assert set(charges["status"]) == {"succeeded", "failed"} and charges["attempt"].between(1, 4).all()
    assert charges.loc[charges["status"] == "failed", "failure_code"].notna().all()
    assert charges.groupby("invoice_id")["status"].apply(lambda s: (s == "succeeded").sum() <= 1).all()
    inv = read(root, "billing_invoices")
    assert set(inv["status"]) <= {"paid", "open", "uncollectible", "void"}


def test_daily_extracts_deliver_every_day(root: Path) -> None:
    days = {d.isoformat() for d in pd.date_range(SPEC.start, SPEC.end).date}
    for source in ACCOUNT_SOURCES + COMPANY_SOURCES:
        parts = {d.partition for d in landing.deliveries(source, root=root)}
        if SOURCES[source].schedule_hours is not None:
            assert days <= parts, source


def test_cloud_bills_arrive_days_after_their_month(root: Path) -> None:
    lag = {p.provider: CLOUD_LAG_DAYS[p.key] for p in PROVIDERS}
    cloud = read(root, "cloud_costs")
    assert set(cloud["ChargeCategory"]) == {"Usage", "Credit", "Adjustment"}
    assert set(cloud["ProviderName"]) == set(lag)
    for (prov, end), g in cloud.groupby(["ProviderName", "BillingPeriodEnd"]):
        arrived = g["_arrived_at"].iloc[0]
        assert arrived.date() == (end - pd.Timedelta(days=1)).date() + dt.timedelta(days=lag[prov])
        assert g["_arrived_at"].nunique() == 1
    usage = cloud[cloud["ChargeCategory"] == "Usage"]
    assert ((usage["ChargePeriodEnd"] - usage["ChargePeriodStart"]) == pd.Timedelta(days=1)).all()


def test_focus_columns_follow_the_sample(root: Path) -> None:
    with open(FOCUS_SAMPLE, newline="") as fh:
        header = next(csv.reader(fh))
    assert list(FOCUS_COLUMNS) == header
    schema = pq.read_schema(root / "cloud_costs" / landing.deliveries("cloud_costs", root=root)[0].file)
    assert schema.names[: len(header)] == header


def test_crm_entries_are_timely_and_chains_complete(root: Path) -> None:
    st = read(root, "crm_stage_history")
    lag = st["entered_at"] - st["effective_at"]
    assert lag.min() >= pd.Timedelta(0) and lag.max() < pd.Timedelta(days=4)
    assert set(st["to_stage"]) <= {"lead", "trial", "customer", "lost", "churned"}
    crm = read(root, "crm_accounts")
    assert crm["account_id"].is_unique and crm["domain"].is_unique and crm["parent_account_id"].isna().all()


def test_ops_submissions_and_finance_close(root: Path) -> None:
    ops = read(root, "ops_expenses")
    lag = (ops["submitted_at"].dt.tz_localize(None) - pd.to_datetime(ops["incurred_date"])).dt.days
    assert lag.between(0, 25).all() and (lag <= 7).mean() > 0.75
    led = read(root, "finance_ledger")
    assert set(led["category"]) == {"revenue", "salaries", "infrastructure", "operations"}
    assert (led["_arrived_at"] == led["booked_at"]).all()
    assert (
        led["booked_at"].dt.tz_localize(None) > pd.to_datetime(led["period"]) + pd.offsets.MonthEnd(0)
    ).all()


def test_ids_look_like_their_systems(root: Path) -> None:
    patterns = {
        ("billing_customers", "customer_id"): r"cus_[0-9A-Za-z]{14}",
        ("subscriptions", "subscription_id"): r"sub_[0-9A-Za-z]{14}",
        ("billing_invoices", "invoice_id"): r"in_[0-9A-Za-z]{14}",
        ("billing_invoices", "invoice_line_id"): r"il_[0-9A-Za-z]{14}",
        ("billing_payments", "payment_id"): r"(ch|re)_[0-9A-Za-z]{14}",
        ("crm_accounts", "account_id"): r"001\d{12}",
        ("account_db", "account_id"): r"A\d{7}",
    }
    for (source, column), pattern in patterns.items():
        assert read(root, source)[column].map(lambda v, p=pattern: re.fullmatch(p, v) is not None).all(), (
            column
        )
    inv = read(root, "billing_invoices")
    assert inv.groupby("invoice_line_id")["invoice_id"].nunique().max() == 1
