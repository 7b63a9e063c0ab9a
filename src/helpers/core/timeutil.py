"""Time conventions: every timestamp is timezone-aware UTC; ``as_of`` is always passed in."""

from __future__ import annotations

import datetime as dt

from helpers.core.periods import first_of_next_month, month_of

UTC = dt.UTC


def parse_as_of(text: str) -> dt.datetime:
    """An ISO timestamp (``2026-11-02T06:00``, ``...Z``, ``...+01:00``) or date, as aware UTC.

    A naive value is taken as UTC; a date alone means midnight UTC.
    """
    s = text.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    try:
        value = dt.datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"expected an ISO timestamp such as 2026-11-02T06:00:00Z, got {text!r}") from None
    return as_utc(value)


def as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_logical_date(text: str, partition: str = "day") -> str:
    """Validate a partition label: ``YYYY-MM-DD`` for daily pipelines, ``YYYY-MM`` for monthly ones.

    A monthly pipeline also accepts a full date and keeps its month.
    """
    try:
        if partition == "month":
            if len(text) == 7:
                dt.date.fromisoformat(text + "-01")
                return text
            return month_of(dt.date.fromisoformat(text))
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        want = "YYYY-MM (or YYYY-MM-DD)" if partition == "month" else "YYYY-MM-DD"
        raise ValueError(f"expected a date as {want}, got {text!r}") from None


def default_as_of(logical_date: str, partition: str) -> dt.datetime:
    """The natural "as of" for a partition: the moment its period ends (UTC)."""
    if partition == "month":
        y, m = (int(x) for x in logical_date.split("-"))
        return dt.datetime.combine(first_of_next_month(dt.date(y, m, 1)), dt.time(), UTC)
    return dt.datetime.combine(dt.date.fromisoformat(logical_date) + dt.timedelta(days=1), dt.time(), UTC)


def naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    """Aware (or naive UTC) -> naive UTC for a database column; ``None`` stays ``None``.

    SQLite drops offsets, so every backend stores UTC without one.
    """
    return as_utc(value).replace(tzinfo=None) if value is not None else None


def format_age(delta: dt.timedelta) -> str:
    """A duration for people: ``3 d 4 h``, ``5 h 12 min``, ``40 min`` (negative: ``0 min``)."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, rem = divmod(minutes, 24 * 60)
    hours, mins = divmod(rem, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins} min"
    return f"{mins} min"
