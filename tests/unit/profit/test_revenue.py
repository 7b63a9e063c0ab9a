"""helpers.profit.revenue: revenue recognition over service days, invoice lines, subscription events and
expected renewals."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from helpers.profit.revenue import expected_renewals, invoice_lines, service_days, subscription_events
from helpers.profit.unit import seat_seconds

pytestmark = pytest.mark.unit


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


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
    days = service_days(frame, pd.Timestamp("2026-09-01"), pd.Timestamp("2026-11-01"))
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
    days = service_days(frame, pd.Timestamp("2026-09-01"), pd.Timestamp("2026-10-01"))
    assert days["invoice_line_id"].unique().tolist() == ["cn_1"]
    assert days["amount_local"].tolist() == [-334, -334, -333] and days["amount_local"].sum() == -1_001
    assert service_days(frame, pd.Timestamp("2026-10-01"), pd.Timestamp("2026-09-01")).empty


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
    good, found = invoice_lines(raw)
    assert good[["invoice_line_id", "status"]].values.tolist() == [["il_1", "paid"]]
    assert dict(zip(found["key_value"], found["reason"], strict=True)) == {
        "il_2": "amount is NULL",
        "il_3": "service period missing or empty (period_end must be after period_start)",
    }
    assert set(found["action"]) == {"quarantined"}


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
    r = expected_renewals(events, billed, deliveries, "2026-10")
    assert r[["subscription_id", "invoiced", "expected_amount"]].values.tolist() == [
        ["s1", True, 3000],
        ["s2", False, 2000],
    ]
    undelivered = deliveries.assign(delivered=False)
    assert expected_renewals(events, billed, undelivered, "2026-10").empty  # a delivery problem instead


def test_subscription_events_quarantine_zero_seats_in_use():
    subs = pd.DataFrame(
        {
            "event_id": ["e1", "e2"], "subscription_id": "s1", "customer_id": "c1", "status": ["active", "active"],
            "item_quantity": [4, 0], "item_unit_amount": 1000, "event_at": [ts("2026-09-01"), ts("2026-09-10")],
            "current_period_start": ts("2026-09-01"), "current_period_end": ts("2026-10-01"), "cancel_at": pd.NaT,
            "_partition": ["2026-09-01", "2026-09-10"], "_arrived_at": ts("2026-09-11"),
        }
    )  # fmt: skip
    events, found = subscription_events(subs)
    assert events["event_id"].tolist() == ["e1"]
    assert found[["key_value", "action"]].values.tolist() == [["e2", "quarantined"]]
    seats = seat_seconds(events, pd.Timestamp("2026-09-01"), pd.Timestamp("2026-10-01"))
    assert seats["seat_seconds"].item() == 4 * 30 * 86_400  # the previous state carries on
