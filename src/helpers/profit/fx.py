"""FX: daily USD rates in millionths, the month-end rates Finance converts at, and conversion.

A conversion multiplies minor units by a rate in millionths (*micro-cents*); rounding to cents
happens once per published figure, in the callers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from helpers.core.money import MICRO, to_micros
from helpers.core.periods import month_bounds
from helpers.profit.inputs import KEYS, JoinLog, empty_findings, findings, latest, utc_day


def rate_micros(values: pd.Series) -> pd.Series:
    """Rates (Decimal, text or float) in millionths, rounded half-even; NULL stays NA."""

    def one(v: Any) -> Any:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return pd.NA
        return to_micros(v)

    return values.map(one).astype("Int64")


def daily_rates(
    fx: pd.DataFrame, start: pd.Timestamp, stop: pd.Timestamp, *, max_gap_days: int
) -> pd.DataFrame:
    """USD per unit (millionths) for every day of ``[start, stop)`` and currency.

    The latest delivery of each (date, currency) wins. A day without its own rate takes the last
    earlier rate up to ``max_gap_days`` old (``rate_date`` says which); beyond that it is NA and
    amounts needing it are quarantined. USD is 1 by definition.
    """
    fx = latest(fx, KEYS["fx_rates"]).assign(day=lambda f: utc_day(f["date"]))
    fx = fx.assign(rate_micros=rate_micros(fx["usd_per_unit"])).dropna(subset=["day", "rate_micros"])
    days = pd.date_range(start, stop - pd.Timedelta(days=1), freq="D")
    currencies = sorted(set(fx["currency"].dropna()) - {"USD"})
    grid = pd.DataFrame([(d, c) for c in currencies for d in days], columns=["day", "currency"])
    out = [pd.DataFrame({"day": days, "currency": "USD", "rate_micros": MICRO, "rate_date": days})]
    if len(grid):
        known = fx[["day", "currency", "rate_micros"]].assign(rate_date=fx["day"]).sort_values("day")
        filled = pd.merge_asof(
            grid.sort_values("day"),
            known,
            on="day",
            by="currency",
            direction="backward",
            tolerance=pd.Timedelta(days=max_gap_days),
        )
        out.append(filled)
    rates = pd.concat(out, ignore_index=True)
    rates["rate_micros"] = rates["rate_micros"].astype("Int64")
    return rates.sort_values(["currency", "day"], kind="stable").reset_index(drop=True)


def month_end_rates(rates: pd.DataFrame, periods: Sequence[str]) -> pd.DataFrame:
    """The rate of each month's last day per currency (Finance converts at these)."""
    last = {p: month_bounds(p)[1] - pd.Timedelta(days=1) for p in periods}
    frame = pd.DataFrame({"period": list(last), "day": list(last.values())})
    return frame.merge(rates[["day", "currency", "rate_micros"]], on="day", how="inner").drop(columns="day")


def convert(
    frame: pd.DataFrame,
    rates: pd.DataFrame,
    joins: JoinLog,
    *,
    day: str,
    amount: str,
    source: str,
    key: str,
    name: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add ``usd_micro`` (``amount`` x the rate of ``day``); rows without a rate are quarantined."""
    if not len(frame):
        return frame.assign(
            rate_micros=pd.Series(dtype="Int64"), usd_micro=pd.Series(dtype="int64")
        ), empty_findings()
    merged = joins.merge(
        frame,
        rates[["day", "currency", "rate_micros"]].rename(columns={"day": day}),
        on=[day, "currency"],
        name=name,
    )
    missing = merged["rate_micros"].isna()
    reason = (
        "no FX rate for "
        + merged.loc[missing, "currency"].astype(str)
        + " on "
        + merged.loc[missing, day].dt.strftime("%Y-%m-%d")
    )
    found = findings(merged[missing], source=source, key=key, reason=reason, action="quarantined", raw=amount)
    good = merged[~missing].copy()
    good["usd_micro"] = good[amount].astype("int64") * good["rate_micros"].astype("int64")
    return good, found
