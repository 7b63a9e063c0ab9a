"""Growth's revenue bridge (``helpers.growth.runrate``): the revenue a month's MRR implies, item by item."""

from __future__ import annotations

import pandas as pd
import pytest

from helpers.growth import runrate

pytestmark = pytest.mark.unit

START, END = pd.Timestamp("2026-09-01", tz="UTC"), pd.Timestamp("2026-10-01", tz="UTC")  # 30 days


def at(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def timeline() -> pd.DataFrame:
    """Four subscriptions (MRR in minor units of their currency, USD cents at the day it was set)."""
    rows = [
        # s1: USD 30.00 all month
        ("s1", "e1", at("2026-08-10 10:00"), "USD", 3_000, 3_000),
        # s2: EUR 100.00 set when 1 EUR = 1.10 USD; September's rate is 1.20
        ("s2", "e2", at("2026-08-01 09:00"), "EUR", 10_000, 11_000),
        # s3: new on the 16th at 15:00: its MRR closes 15 of the month's 30 days
        ("s3", "e3", at("2026-09-16 15:00"), "USD", 6_000, 6_000),
        # s4: past due from the 5th, churned (payment failed) on the 19th at 10:00: 18 days of MRR
        ("s4", "e4", at("2026-07-05 10:00"), "USD", 3_000, 3_000),
        ("s4", "e5", at("2026-09-05 10:00"), "USD", 3_000, 3_000),
        ("s4", "e6", at("2026-09-19 10:00"), "USD", 0, 0),
    ]
    cols = ["subscription_id", "event_id", "at", "currency", "mrr_local", "mrr_usd_cents"]
    return pd.DataFrame(rows, columns=cols)


FX = pd.DataFrame(
    {"date": ["2026-08-01", "2026-09-01"], "currency": ["EUR", "EUR"], "usd_per_unit": ["1.10", "1.20"]}
)
CANCELLATIONS = pd.DataFrame(
    {
        "subscription_id": ["s4", "s1"],
        "classification": ["involuntary", "voluntary"],
        "past_due_at": [at("2026-09-05 10:00"), pd.NaT],
        "effective_at": [at("2026-09-19 10:00"), at("2026-12-01")],
    }
)
INVOICES = pd.DataFrame(
    {
        "customer_id": ["c1", "c1"],
        "line_type": ["credit_note", "subscription"],
        "status": ["paid", "paid"],
        "amount": [-3_000, 3_000],
        "currency": ["USD", "USD"],
        "period_start": pd.to_datetime(["2026-09-11", "2026-09-01"]),  # 20 of the credit's 30 days in Sept
        "period_end": pd.to_datetime(["2026-10-11", "2026-10-01"]),
        "created": [at("2026-09-11 08:00"), at("2026-09-01 08:00")],
    }
)


def test_each_item_of_the_bridge_is_measured_on_its_days():
    got = runrate.revenue_bridge(timeline(), FX, CANCELLATIONS, INVOICES, START, END)
    assert got == {
        # 30 + 110 + 60 x 15/30 + 30 x 18/30 (USD): the day-end MRR, averaged over the month's days
        "mrr_daily_average_usd_cents": 3_000 + 11_000 + 3_000 + 1_800,
        # the EUR subscription at September's 1.20 instead of the 1.10 it was set at
        "mrr_daily_average_fx_usd_cents": 3_000 + 12_000 + 3_000 + 1_800,
        # s4's 14 day-ends from the 5th (after 10:00) to the 18th, in MRR and never paid
        "mrr_unpaid_dunning_usd_cents": 1_400,
        # the credit note's 20 September days; the subscription line is revenue, not a credit
        "service_credits_usd_cents": -2_000,
    }
    assert list(got) == list(runrate.BRIDGE_COLUMNS)


def test_day_end_mrr_follows_the_snapshot_rule():
    rows = runrate.daily_mrr(timeline(), START, END)
    days = rows.groupby("subscription_id")["day"].agg(["min", "max", "size"])
    assert days.loc["s3"].tolist() == [pd.Timestamp("2026-09-16"), pd.Timestamp("2026-09-30"), 15]
    assert days.loc["s4"].tolist() == [pd.Timestamp("2026-09-01"), pd.Timestamp("2026-09-18"), 18]
    assert days.loc["s1", "size"] == days.loc["s2", "size"] == 30


def test_an_empty_month_has_an_empty_bridge():
    empty = timeline().iloc[0:0]
    got = runrate.revenue_bridge(empty, FX, CANCELLATIONS.iloc[0:0], INVOICES.iloc[0:0], START, END)
    assert got == dict.fromkeys(runrate.BRIDGE_COLUMNS, 0)


@pytest.mark.parametrize("chunk", [1, 7, 31, 45])
def test_the_subscription_days_expanded_a_few_at_a_time_give_the_same_bridge(monkeypatch, chunk):
    """A million accounts hold some 30 million subscription-days in a month: they are expanded in
    chunks of rows, each row's days whole, and the sums do not depend on where the chunks end."""
    whole = runrate.revenue_bridge(timeline(), FX, CANCELLATIONS, INVOICES, START, END)
    monkeypatch.setattr(runrate, "CHUNK_DAYS", chunk)
    assert runrate.revenue_bridge(timeline(), FX, CANCELLATIONS, INVOICES, START, END) == whole


def test_row_chunks_cover_every_row_once_with_about_the_days_asked():
    import numpy as np

    n = np.array([30, 0, 12, 31, 31, 5, 0, 0, 17])
    chunks = runrate._row_chunks(n, 40)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(n)
    assert all(b == c for (_, b), (c, _) in zip(chunks, chunks[1:], strict=False)), "contiguous"
    assert all(n[a:b].sum() <= 40 + n.max() for a, b in chunks) and len(chunks) > 1
    assert runrate._row_chunks(n, 10_000) == [(0, len(n))]


def test_a_timeline_out_of_order_gives_the_bridge_of_the_one_in_order():
    """The MRR timeline comes in (subscription, at, event) order and is then read as it is."""
    ordered = timeline()
    shuffled = ordered.sample(frac=1, random_state=3).reset_index(drop=True)
    assert runrate._in_order(ordered, ["subscription_id", "at", "event_id"])
    assert not runrate._in_order(shuffled, ["subscription_id", "at", "event_id"])
    assert not runrate._in_order(ordered.iloc[::-1], ["subscription_id"]), "a reversed index is not plain"
    tied = ordered.assign(subscription_id="s", at=at("2026-09-01"))  # equal keys down to the event
    assert runrate._in_order(tied, ["subscription_id", "at", "event_id"])
    assert not runrate._in_order(
        tied.assign(event_id=["e9", *tied["event_id"][1:]]), ["subscription_id", "at", "event_id"]
    )
    got = runrate.revenue_bridge(shuffled, FX, CANCELLATIONS, INVOICES, START, END)
    assert got == runrate.revenue_bridge(ordered, FX, CANCELLATIONS, INVOICES, START, END)
