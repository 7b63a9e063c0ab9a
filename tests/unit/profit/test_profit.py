"""Pure functions of helpers.profit.pipeline on small hand-made frames: money arithmetic, revenue
recognition, screening, joins, FX, completeness, expense anomalies, staleness and allocation."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from helpers.core.config import ProfitAllocation, ProfitConfig
from helpers.profit import pipeline as profit

pytestmark = pytest.mark.unit
UTC = dt.UTC
SETTINGS = ProfitConfig()


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# ---------------------------------------------------------------- arithmetic


def test_half_even_rounds_ties_to_even_for_positive_and_negative_values():
    values = np.array([15, 25, 14, 16, -15, -25, -14, 0])
    assert profit.half_even(values, 10).tolist() == [2, 2, 1, 2, -2, -2, -1, 0]
    assert profit.to_cents(np.array([1_500_000, 2_500_000, 2_500_001])).tolist() == [2, 2, 3]


def test_largest_remainder_keeps_the_total_and_stays_close():
    parts = profit.largest_remainder([Decimal("1.4"), Decimal("1.4"), Decimal("1.2")], 4)
    assert parts.tolist() == [2, 1, 1] and parts.sum() == 4
    negative = profit.largest_remainder([Decimal("-0.5"), Decimal("-0.5")], -1)
    assert negative.sum() == -1
    with pytest.raises(ValueError, match="not the rounded sum"):
        profit.largest_remainder([Decimal(1)], 5)


def test_allocate_splits_an_integer_pool_exactly_and_reports_zero_weights():
    weights = pd.Series([1, 1, 1], index=["a", "b", "c"])
    out = profit.allocate(100, weights)
    assert out.sum() == 100 and sorted(out.tolist()) == [33, 33, 34]
    huge = profit.allocate(10**12, pd.Series([10**12, 3 * 10**12]))  # exact at any scale
    assert huge.tolist() == [250_000_000_000, 750_000_000_000]
    assert profit.allocate(100, pd.Series([0, 0])).tolist() == [0, 0]  # nothing to allocate by
    with pytest.raises(ValueError):
        profit.allocate(10, pd.Series([-1, 2]))


def test_ratio_gives_a_null_with_its_reason_for_zero_or_null_denominators():
    assert profit.ratio(1, 4, what="m") == (0.25, None)
    assert profit.ratio(1, 0, what="margin") == (None, "margin: zero denominator")
    assert profit.ratio(None, 3, what="m")[1] == "m: an input is NULL"


def test_require_complete_refuses_a_null_before_a_sum():
    with pytest.raises(ValueError, match="1 NULL value"):
        profit.require_complete(pd.DataFrame({"a": [1, None]}), ["a"], what="revenue")


# ---------------------------------------------------------------- revenue recognition


def lines(*rows: tuple) -> pd.DataFrame:
    """Invoice lines: (id, amount, currency, start, end exclusive, status)."""
    frame = pd.DataFrame(
        rows, columns=["invoice_line_id", "amount", "currency", "period_start", "period_end", "status"]
    )
    return frame.assign(
        customer_id="cus_1",
        subscription_id="sub_1",
        period_start=pd.to_datetime(frame["period_start"]),
        period_end=pd.to_datetime(frame["period_end"]),
    )


def test_service_days_split_a_line_by_days_with_end_exclusive_and_parts_adding_up():
    frame = lines(("il_1", 10_000, "USD", "2026-09-20", "2026-10-20", "paid"))  # 30 days
    days = profit.service_days(frame, pd.Timestamp("2026-09-01"), pd.Timestamp("2026-11-01"))
    assert len(days) == 30 and days["day"].max() == pd.Timestamp("2026-10-19")  # period_end excluded
    assert days["amount_local"].sum() == 10_000
    by_month = days.groupby(days["day"].dt.month)["amount_local"].sum()
    # Finance's split: cumulative floor over the month's days (11 of 30 in September)
    assert by_month[9] == 10_000 * 11 // 30 and by_month[10] == 10_000 - 10_000 * 11 // 30


def test_service_days_handle_credits_windows_and_lines_outside_them():
    frame = lines(
        ("cn_1", -1_001, "EUR", "2026-09-10", "2026-09-13", "paid"),  # a credit note (negative)
        ("il_out", 500, "EUR", "2026-07-01", "2026-08-01", "paid"),
    )
    days = profit.service_days(frame, pd.Timestamp("2026-09-01"), pd.Timestamp("2026-10-01"))
    assert days["invoice_line_id"].unique().tolist() == ["cn_1"]
    assert days["amount_local"].tolist() == [-334, -334, -333] and days["amount_local"].sum() == -1_001
    assert profit.service_days(frame, pd.Timestamp("2026-10-01"), pd.Timestamp("2026-09-01")).empty


def test_invoice_lines_take_the_latest_version_and_quarantine_unusable_ones():
    raw = pd.DataFrame(
        {
            "invoice_id": ["in_1", "in_1", "in_2", "in_3"],
            "invoice_line_id": ["il_1", "il_1", "il_2", "il_3"],
            "customer_id": "cus_1",
            "subscription_id": "sub_1",
            "line_type": "subscription",
            "amount": [100, 100, None, 300],
            "currency": "USD",
            "period_start": [dt.date(2026, 9, 1)] * 3 + [dt.date(2026, 9, 5)],
            "period_end": [dt.date(2026, 10, 1)] * 3 + [dt.date(2026, 9, 5)],  # il_3: empty period
            "status": ["open", "paid", "paid", "paid"],
            "updated_at": [ts("2026-09-01"), ts("2026-09-04"), ts("2026-09-01"), ts("2026-09-01")],
            "_partition": ["2026-09-01", "2026-09-04", "2026-09-01", "2026-09-01"],
            "_arrived_at": [ts("2026-09-02"), ts("2026-09-05"), ts("2026-09-02"), ts("2026-09-02")],
        }
    )
    good, found = profit.invoice_lines(raw)
    assert good[["invoice_line_id", "status"]].values.tolist() == [["il_1", "paid"]]
    assert dict(zip(found["key_value"], found["reason"], strict=True)) == {
        "il_2": "amount is NULL",
        "il_3": "service period missing or empty (period_end must be after period_start)",
    }
    assert set(found["action"]) == {"quarantined"}


# ---------------------------------------------------------------- screening and joins


def test_screen_integers_coerces_integer_text_and_quarantines_the_rest():
    frame = pd.DataFrame(
        {
            "expense_id": ["e1", "e2", "e3", "e4", "e5"],
            "amount": [100, "250", "12.5", None, "abc"],
            "_partition": "2026-10-15",
        }
    )
    good, found = profit.screen_integers(frame, "amount", source="ops_expenses", key="expense_id")
    assert good["amount"].tolist() == [100, 250] and good["amount"].dtype == "int64"
    actions = dict(zip(found["key_value"], found["action"], strict=True))
    assert actions == {"e2": "coerced", "e3": "quarantined", "e4": "quarantined", "e5": "quarantined"}
    reasons = dict(zip(found["key_value"], found["reason"], strict=True))
    assert reasons["e4"] == "amount is NULL" and reasons["e5"] == "amount is text that is not a number"
    assert found.loc[found["key_value"] == "e4", "raw"].item() == "NULL"


def test_dedupe_exact_drops_unchanged_redeliveries_but_keeps_new_versions():
    frame = pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c1", "c2"],
            "account_id": ["A1", "A1", "A9", "A2"],
            "_partition": ["2026-09-01", "2026-10-15", "2026-10-20", "2026-09-01"],
            "_arrived_at": [ts("2026-09-02"), ts("2026-10-16"), ts("2026-10-21"), ts("2026-09-02")],
        }
    )
    kept, found = profit.dedupe_exact(frame, source="billing_customers")
    assert len(kept) == 3
    assert found[["key_value", "delivery_partition", "action"]].values.tolist() == [
        ["c1", "2026-10-15", "deduplicated"]
    ]
    assert profit.latest(kept, ["customer_id"]).set_index("customer_id")["account_id"].to_dict() == {
        "c1": "A9",
        "c2": "A2",
    }


def test_join_log_asserts_row_counts_and_records_each_join():
    facts = pd.DataFrame({"customer_id": ["c1", "c1", "c2"], "amount": [1, 2, 3]})
    dim = pd.DataFrame({"customer_id": ["c1", "c2"], "account_id": ["A1", "A2"]})
    joins = profit.JoinLog()
    out = joins.merge(facts, dim, on="customer_id", name="facts x dim")
    assert len(out) == 3 and joins.frame()["result_rows"].tolist() == [3]
    with pytest.raises(profit.JoinFanOut, match="3 rows became 5"):
        joins.merge(facts, pd.concat([dim, dim.head(1)]), on="customer_id", name="facts x duplicated dim")
    assert joins.frame()["right_duplicate_keys"].tolist() == [0, 1]


# ---------------------------------------------------------------- FX


def test_daily_rates_fill_short_gaps_from_the_last_rate_and_leave_long_ones_empty():
    fx = pd.DataFrame(
        {
            "date": [dt.date(2026, 9, 1), dt.date(2026, 9, 2), dt.date(2026, 9, 10)],
            "currency": "EUR",
            "usd_per_unit": [Decimal("1.080000"), Decimal("1.090000"), Decimal("1.100000")],
            "_partition": "2026-09-01",
            "_arrived_at": ts("2026-09-01"),
        }
    )
    rates = profit.daily_rates(fx, pd.Timestamp("2026-09-01"), pd.Timestamp("2026-09-11"), max_gap_days=4)
    eur = rates[rates["currency"] == "EUR"].set_index("day")
    assert eur.loc["2026-09-06", "rate_micros"] == 1_090_000  # 4 days after the last rate: filled
    assert eur.loc["2026-09-06", "rate_date"] == pd.Timestamp("2026-09-02")
    assert pd.isna(eur.loc["2026-09-07", "rate_micros"])  # 5 days: too old, no rate
    assert (rates.loc[rates["currency"] == "USD", "rate_micros"] == 1_000_000).all()
    ends = profit.month_end_rates(rates, ["2026-09"])
    assert ends.empty or set(ends["currency"]) <= {"USD", "EUR"}


def test_convert_quarantines_amounts_without_a_rate():
    rates = pd.DataFrame(
        {
            "day": [pd.Timestamp("2026-09-01")],
            "currency": ["EUR"],
            "rate_micros": pd.array([1_100_000], "Int64"),
        }
    )
    frame = pd.DataFrame(
        {
            "expense_id": ["e1", "e2"],
            "day": [pd.Timestamp("2026-09-01"), pd.Timestamp("2026-09-02")],
            "currency": "EUR",
            "amount": [1_000, 1_000],
            "_partition": "2026-09-03",
        }
    )
    good, found = profit.convert(
        frame,
        rates,
        profit.JoinLog(),
        day="day",
        amount="amount",
        source="ops_expenses",
        key="expense_id",
        name="x",
    )
    assert good["usd_micro"].tolist() == [1_100_000_000]  # 10.00 EUR at 1.1 = 1,100 cents x 1e6
    assert found["reason"].tolist() == ["no FX rate for EUR on 2026-09-02"]


# ---------------------------------------------------------------- costs


def test_infrastructure_breakdown_adds_up_to_each_providers_rounded_bill():
    rows = pd.DataFrame(
        {
            "period": "2024-09",
            "provider_key": ["aws", "aws", "aws", "oracle"],
            "ProviderName": ["AWS", "AWS", "AWS", "Oracle"],
            "ServiceName": ["EC2", "S3", "AWS Billing", "Compute"],
            "ChargeCategory": ["Usage", "Usage", "Credit", "Usage"],
            "Id": ["1", "2", "3", "4"],
            "cost": [Decimal("0.005"), Decimal("0.005"), Decimal("-0.001"), Decimal("2.675")],
        }
    )
    out = profit.infrastructure_breakdown(rows, "2024-09")
    by_provider = out.groupby("provider_key")["cost_usd_cents"].sum().to_dict()
    assert by_provider == {"aws": 1, "oracle": 268}  # 0.009 -> 1 cent; 2.675 -> 268 (half-even of 267.5)
    assert out.loc[out["charge_category"] == "Credit", "cost_micros"].item() == -1_000  # credits kept
    assert (
        profit.provider_key("Microsoft") == "azure" and profit.provider_key("Oracle Cloud") == "oracle_cloud"
    )


def test_profit_row_publishes_a_null_margin_with_its_reason_when_revenue_is_zero():
    row = profit.profit_row(
        {"revenue": 0, "salaries": 100, "infrastructure": 50, "operations": 0},
        period="2024-09", reasons=["x"], customers=0, open_lines=0, written_off_cents=0, quarantined=0,
        reconciliation_status="pending", finance_difference_cents=None, as_of=dt.datetime(2024, 10, 1, tzinfo=UTC),
        run_id="r",
    )  # fmt: skip
    figures = profit.headline(row)
    assert (
        figures["margin"] is None
        and row["margin_null_reason"].item() == "margin = profit / revenue: zero denominator"
    )
    assert figures["profit_usd_cents"] == -150 and figures["total_cost_usd_cents"] == 150
    assert figures["status"] == "provisional" and figures["provisional_reasons"] == ["x"]
    ok = profit.headline(profit.profit_row(
        {"revenue": 1000, "salaries": 600, "infrastructure": 100, "operations": 50}, period="2024-09", reasons=[],
        customers=1, open_lines=0, written_off_cents=0, quarantined=0, reconciliation_status="within_tolerance",
        finance_difference_cents=0, as_of=dt.datetime(2024, 10, 1, tzinfo=UTC), run_id="r",
    ))  # fmt: skip
    assert ok["margin"] == pytest.approx(0.25) and ok["status"] == "final"
    assert ok["costs_usd_cents"] == {"salaries": 600, "infrastructure": 100, "operations": 50}


# ---------------------------------------------------------------- completeness


def arrivals(source: str, days: list[str], hour: float = 26.25) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": source,
            "partition": days,
            "rows": 1,
            "arrived_at": [ts(d) + pd.Timedelta(hours=hour) for d in days],
        }
    )


def september(*skip: int) -> list[str]:
    return [f"2026-09-{d:02d}" for d in range(1, 31) if d not in skip]


def test_daily_deliveries_and_reasons_name_the_missing_days():
    arr = {"billing_invoices": arrivals("billing_invoices", september(12, 13, 30))}
    d = profit.daily_deliveries(arr, ["billing_invoices"], "2026-09", dt.datetime(2026, 10, 1, tzinfo=UTC))
    missing = d[~d["delivered"]]
    assert missing["day"].tolist() == ["2026-09-12", "2026-09-13", "2026-09-30"]
    assert missing["later_delivered"].tolist() == [True, True, False]
    assert missing["overdue"].tolist() == [True, True, False]  # Sep 30 is due on Oct 1 02:15
    reasons = profit.provisional_reasons(
        "2026-09", dt.datetime(2026, 10, 1, tzinfo=UTC), deliveries=d, payroll_arrived=False,
        bills=pd.DataFrame(columns=["provider", "arrived", "due_at"]), cutoff=ts("2026-10-08"),
        open_lines=2, missing_renewals=0, quarantined=1,
    )  # fmt: skip
    assert (
        reasons[0]
        == "billing_invoices: 3 of 30 daily deliveries not arrived (2026-09-12..2026-09-13, 2026-09-30)"
    )
    assert "hr_payroll: payroll for 2026-09 not delivered" in reasons
    assert any("open until Finance's close (2026-10-07)" in r for r in reasons)
    assert any("2 invoice line(s)" in r for r in reasons) and any(
        "1 row(s) quarantined" in r for r in reasons
    )


def test_source_staleness_measures_from_the_last_delivery_the_period_needed():
    arr = {
        "billing_invoices": arrivals("billing_invoices", september(*range(26, 31))),  # stopped after the 25th
        "fx_rates": arrivals("fx_rates", september(12), hour=16.5),  # a hole, not staleness
    }
    late = dt.datetime(2026, 11, 20, tzinfo=UTC)
    s = profit.source_staleness(arr, ["billing_invoices", "fx_rates"], "2026-09", late).set_index("source")
    assert s.loc["billing_invoices", "trailing_missing"] == [f"2026-09-{d}" for d in range(26, 31)]
    age = s.loc["billing_invoices", "reference_at"] - s.loc["billing_invoices", "last_arrival"]
    assert age == pd.Timedelta(days=5)  # judged at Oct 1 02:15, not at as_of
    assert s.loc["fx_rates", "trailing_missing"] == [] and s.loc["fx_rates", "last_partition"] == "2026-09-30"
    early = profit.source_staleness(arr, ["fx_rates"], "2026-10", dt.datetime(2026, 10, 1, tzinfo=UTC))
    assert pd.isna(early["reference_at"].item())  # nothing of October due yet


def test_cloud_bills_are_expected_from_recent_providers_and_late_after_the_due_day():
    def bill(period: str, key: str, arrived: str, n: int = 2) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "period": period, "provider_key": key, "ProviderName": key.upper(),
                "Id": [f"{key}-{period}-{i}" for i in range(n)], "_arrived_at": ts(arrived),
            }
        )  # fmt: skip

    rows = pd.concat(
        [
            bill("2026-08", "aws", "2026-09-03"),
            bill("2026-08", "azure", "2026-09-05"),
            bill("2026-09", "aws", "2026-10-03"),
            bill("2026-09", "azure", "2026-10-26"),
        ]  # fmt: skip
    )
    bills = profit.cloud_bills(rows, "2026-09", dt.datetime(2026, 10, 31, tzinfo=UTC), SETTINGS).set_index(
        "provider_key"
    )
    assert not bills.loc["aws", "late"] and bills.loc["azure", "late"]
    assert bills.loc["azure", "ids"] == ["azure-2026-09-0", "azure-2026-09-1"]
    not_yet = rows[~((rows["period"] == "2026-09") & (rows["provider_key"] == "azure"))]
    early = profit.cloud_bills(not_yet, "2026-09", dt.datetime(2026, 10, 20, tzinfo=UTC), SETTINGS)
    assert early.set_index("provider_key").loc["azure", "overdue"]  # missing after its due day (Oct 8)


# ---------------------------------------------------------------- expenses in the wrong month


def expense_rows(*rows: tuple) -> pd.DataFrame:
    """(id, category, incurred, submitted, amount USD cents)."""
    frame = pd.DataFrame(rows, columns=["expense_id", "category", "incurred", "submitted", "amount"])
    frame["incurred"] = pd.to_datetime(frame["incurred"])
    frame["submitted"] = pd.to_datetime(frame["submitted"])
    return frame.assign(
        submitted_at=frame["submitted"].dt.tz_localize("UTC") + pd.Timedelta(hours=15),
        currency="USD",
        usd_micro=frame["amount"] * profit.MICRO,
        period=frame["incurred"].dt.strftime("%Y-%m"),
    )


def test_expense_flags_find_late_mistyped_and_outlier_expenses():
    ops = expense_rows(
        ("e1", "travel", "2026-08-20", "2026-10-05", 40_000),  # 46 days late, submitted in October
        ("e2", "travel", "2025-10-03", "2026-10-06", 40_000),  # the year mistyped
        ("e3", "travel", "2026-10-07", "2026-10-09", 4_000_000),  # 100x
        ("e4", "travel", "2026-10-01", "2026-10-03", 40_000),
        ("e5", "travel", "2026-09-12", "2026-09-15", 38_000),
        ("e6", "travel", "2026-10-12", "2026-10-30", 45_000),  # 18 days: ordinary
    )
    bills = pd.DataFrame(columns=list(profit.CLOUD_BILL_COLUMNS))
    flags = profit.expense_flags(ops, bills, "2026-10", dt.datetime(2026, 11, 20, tzinfo=UTC), SETTINGS)
    assert dict(zip(flags["id"], flags["kind"], strict=True)) == {
        "e1": "late_submission",
        "e2": "implausible_date",
        "e3": "outlier",
    }
    assert profit.expense_flags(ops, bills, "2026-09", dt.datetime(2026, 11, 20, tzinfo=UTC), SETTINGS).empty


# ---------------------------------------------------------------- renewals


def test_expected_renewals_compare_paying_subscriptions_with_invoice_lines():
    events = pd.DataFrame(
        {
            "event_id": ["e1", "e2", "e3"],
            "subscription_id": ["s1", "s2", "s3"],
            "customer_id": ["c1", "c2", "c3"],
            "status": ["active", "active", "active"],
            "item_quantity": [3, 2, 5],
            "item_unit_amount": [1000, 1000, 1000],
            "currency": "USD",
            "event_at": [ts("2026-09-12 10:00")] * 3,
            "current_period_start": [ts("2026-09-12 10:00")] * 3,
            "current_period_end": [ts("2026-10-12 10:00")] * 3,
            "cancel_at": [pd.NaT, pd.NaT, ts("2026-10-12 10:00")],  # s3 cancels at the period end
            "_partition": "2026-09-12",
        }
    )
    billed = pd.DataFrame({"subscription_id": ["s1"], "period_start": [pd.Timestamp("2026-10-12")]})
    deliveries = pd.DataFrame({"source": "billing_invoices", "day": ["2026-10-12"], "delivered": [True]})
    r = profit.expected_renewals(events, billed, deliveries, "2026-10")
    assert r[["subscription_id", "invoiced", "expected_amount"]].values.tolist() == [
        ["s1", True, 3000],
        ["s2", False, 2000],
    ]
    undelivered = deliveries.assign(delivered=False)
    assert profit.expected_renewals(
        events, billed, undelivered, "2026-10"
    ).empty  # a delivery problem instead


def test_subscription_events_quarantine_zero_seats_in_use():
    subs = pd.DataFrame(
        {
            "event_id": ["e1", "e2"], "subscription_id": "s1", "customer_id": "c1", "status": ["active", "active"],
            "item_quantity": [4, 0], "item_unit_amount": 1000, "event_at": [ts("2026-09-01"), ts("2026-09-10")],
            "current_period_start": ts("2026-09-01"), "current_period_end": ts("2026-10-01"), "cancel_at": pd.NaT,
            "_partition": ["2026-09-01", "2026-09-10"], "_arrived_at": ts("2026-09-11"),
        }
    )  # fmt: skip
    events, found = profit.subscription_events(subs)
    assert events["event_id"].tolist() == ["e1"]
    assert found[["key_value", "action"]].values.tolist() == [["e2", "quarantined"]]
    seats = profit.seat_seconds(events, pd.Timestamp("2026-09-01"), pd.Timestamp("2026-10-01"))
    assert seats["seat_seconds"].item() == 4 * 30 * 86_400  # the previous state carries on


# ---------------------------------------------------------------- unit level


def test_unit_profit_allocates_pools_exactly_and_nulls_zero_denominators():
    revenue = pd.DataFrame({"account_id": ["A1", "A2"], "revenue_usd_cents": [10_000, 0]})
    usage = pd.DataFrame(
        {"account_id": ["A1", "A2", "A3"], "seat_seconds": [3, 1, 0], "active_seconds": [5, 5, 0]}
    )
    unit, notes = profit.unit_profit(
        revenue,
        usage,
        infrastructure_cents=1_001,
        support_cents=301,
        days_in_month=30,
        allocation=ProfitAllocation(),
    )
    unit = unit.set_index("account_id")
    assert unit["infrastructure_usd_cents"].sum() == 1_001 and unit.loc["A3", "infrastructure_usd_cents"] == 0
    assert unit["support_usd_cents"].sum() == 301 and unit.loc["A3", "support_usd_cents"] == 0  # not in use
    assert (
        unit.loc["A1", "unit_profit_usd_cents"]
        == 10_000 - unit.loc["A1", ["infrastructure_usd_cents", "support_usd_cents"]].sum()
    )
    assert (
        pd.isna(unit.loc["A2", "unit_margin"])
        and unit.loc["A2", "unit_margin_null_reason"] == "no revenue: zero denominator"
    )
    assert pd.isna(unit.loc["A3", "revenue_per_seat_usd_cents"]) and notes == {}
    by_revenue = ProfitAllocation(infrastructure="revenue", support="revenue")
    nobody = revenue.assign(revenue_usd_cents=0)
    _, notes = profit.unit_profit(
        nobody, usage, infrastructure_cents=5, support_cents=0, days_in_month=30, allocation=by_revenue
    )
    assert "not allocated" in notes["infrastructure"]


def test_arm_summaries_give_means_intervals_and_differences_from_control():
    unit = pd.DataFrame(
        {
            "account_id": [f"A{i}" for i in range(8)],
            "revenue_usd_cents": [100, 200, 300, 400, 500, 600, 700, 0],
            "infrastructure_usd_cents": 10, "support_usd_cents": 5,
            "unit_profit_usd_cents": [85, 185, 285, 385, 485, 585, 685, -15],
        }
    )  # fmt: skip
    arms = pd.DataFrame(
        {
            "account_id": [f"A{i}" for i in range(8)],
            "experiment": "pricing_v2",
            "arm": ["control"] * 4 + ["treatment"] * 3 + ["treatment"],
        }
    )
    out = profit.arm_summaries(unit, arms, profit.JoinLog(), confidence=0.95).set_index("arm")
    control = unit["unit_profit_usd_cents"][:4]
    half = 1.959964 * control.std() / 2
    assert out.loc["control", "mean_unit_profit_usd_cents"] == pytest.approx(control.mean())
    assert out.loc["control", "ci_low_usd_cents"] == pytest.approx(control.mean() - half, abs=0.01)
    assert out.loc["treatment", "accounts"] == 4 and out.loc["treatment", "paying_accounts"] == 3
    assert out.loc["treatment", "diff_vs_control_usd_cents"] == pytest.approx(
        unit["unit_profit_usd_cents"][4:].mean() - control.mean()
    )
    assert pd.isna(out.loc["control", "diff_vs_control_usd_cents"])
    solo = profit.arm_summaries(unit.head(1), arms.head(1), profit.JoinLog(), confidence=0.95)
    assert solo["note"].item() == "fewer than 2 accounts: no interval" and pd.isna(
        solo["ci_low_usd_cents"].item()
    )
    readable = profit.readable_arms(out.reset_index())
    assert readable["mean unit profit"].iloc[0].startswith("$")


def test_mart_frames_have_the_declared_columns_in_order():
    costs = pd.DataFrame(
        {"category": ["salaries"], "subcategory": ["G&A"], "provider": [""], "service": [""], "charge_category": [""],
         "cost_usd_cents": [5], "cost_micros": [50_000], "rows": [1]}
    )  # fmt: skip
    out = profit.mart_frame(
        "profit_costs_monthly",
        costs,
        period="2026-09",
        as_of=dt.datetime(2026, 10, 1, tzinfo=UTC),
        run_id="r",
    )
    assert list(out.columns) == list(profit.MART_TYPES["profit_costs_monthly"])
    assert out["as_of"].item() == pd.Timestamp("2026-10-01") and out["period"].item() == "2026-09"
    with pytest.raises(ValueError, match="lacks column"):
        profit.mart_frame(
            "profit_monthly", costs, period="2026-09", as_of=dt.datetime(2026, 10, 1, tzinfo=UTC), run_id="r"
        )


def test_fraction_weights_are_exact():
    assert profit.largest_remainder([Fraction(1, 3)] * 3, 1).tolist() == [1, 0, 0]
