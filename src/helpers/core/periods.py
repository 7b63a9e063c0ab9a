"""Months and days as partition labels: ``YYYY-MM`` for a month, ``YYYY-MM-DD`` for a day.

The one home of period arithmetic; every pipeline, check and report uses these.
"""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd

DAY_LABEL = re.compile(r"^\d{4}-\d{2}-\d{2}$")  # a day's partition label, YYYY-MM-DD
MONTH_LABEL = re.compile(r"^\d{4}-\d{2}$")  # a month's partition label, YYYY-MM


def month_of(day: dt.date) -> str:
    """``YYYY-MM`` of a date."""
    return f"{day.year:04d}-{day.month:02d}"


def shift_period(period: str, months: int) -> str:
    """``YYYY-MM`` moved by ``months`` (negative: earlier)."""
    y, m = (int(x) for x in period.split("-"))
    k = y * 12 + (m - 1) + months
    return f"{k // 12:04d}-{k % 12 + 1:02d}"


def previous_month(period: str) -> str:
    """``YYYY-MM`` of the month before ``period``."""
    return shift_period(period, -1)


def periods_around(period: str) -> list[str]:
    """The month before, the month itself and the month after (reconciliation looks at neighbours)."""
    return [shift_period(period, -1), period, shift_period(period, 1)]


def first_of_next_month(day: dt.date) -> dt.date:
    """The first day of the month after ``day``'s month."""
    return dt.date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def last_day_of_month(year: int, month: int) -> dt.date:
    """The last calendar day of ``year-month``."""
    return first_of_next_month(dt.date(year, month, 1)) - dt.timedelta(days=1)


def month_end(day: dt.date) -> dt.date:
    """The last day of ``day``'s month."""
    return first_of_next_month(day) - dt.timedelta(days=1)


def period_days(label: str) -> tuple[dt.date, dt.date]:
    """First and last day of a partition label (a day, or a month)."""
    if len(label) == 7:
        first = dt.date.fromisoformat(label + "-01")
        return first, month_end(first)
    day = dt.date.fromisoformat(label)
    return day, day


def month_bounds(period: str, *, tz: str | None = None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[first day, first day of the next month)`` of ``YYYY-MM`` as midnight timestamps.

    Naive by default (naive UTC frames); ``tz="UTC"`` gives aware ones.
    """
    first = pd.Timestamp(f"{period}-01", tz=tz)
    return first, first + pd.offsets.MonthBegin(1)


def day_bounds(day: str | dt.date) -> tuple[pd.Timestamp, pd.Timestamp]:
    """A UTC day as ``[start, end)``, aware."""
    start = pd.Timestamp(str(day), tz="UTC")
    return start, start + pd.Timedelta(days=1)


def period_of(days: pd.Series) -> pd.Series:
    """``YYYY-MM`` of each (naive) datetime."""
    return days.dt.strftime("%Y-%m")
