"""helpers.profit.fx: daily rates with short gaps filled; conversion quarantines amounts without a rate."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import pytest

from helpers.profit.fx import convert, daily_rates, month_end_rates
from helpers.profit.inputs import JoinLog

pytestmark = pytest.mark.unit


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


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
    rates = daily_rates(fx, pd.Timestamp("2026-09-01"), pd.Timestamp("2026-09-11"), max_gap_days=4)
    eur = rates[rates["currency"] == "EUR"].set_index("day")
    assert eur.loc["2026-09-06", "rate_micros"] == 1_090_000  # 4 days after the last rate: filled
    assert eur.loc["2026-09-06", "rate_date"] == pd.Timestamp("2026-09-02")
    assert pd.isna(eur.loc["2026-09-07", "rate_micros"])  # 5 days: too old, no rate
    assert (rates.loc[rates["currency"] == "USD", "rate_micros"] == 1_000_000).all()
    ends = month_end_rates(rates, ["2026-09"])
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
    good, found = convert(
        frame,
        rates,
        JoinLog(),
        day="day",
        amount="amount",
        source="ops_expenses",
        key="expense_id",
        name="x",
    )
    assert good["usd_micro"].tolist() == [1_100_000_000]  # 10.00 EUR at 1.1 = 1,100 cents x 1e6
    assert found["reason"].tolist() == ["no FX rate for EUR on 2026-09-02"]
