"""How runbook evidence writes times and long lines: hours, UTC minutes, clipped text."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from helpers.core.timeutil import as_utc


def hours(delta: dt.timedelta) -> float:
    """A duration in hours, to a tenth."""
    return round(delta.total_seconds() / 3600, 1)


def utc_or_none(value: Any) -> dt.datetime | None:
    """A timestamp from a frame cell (``Timestamp``, datetime, NaT or None) as aware UTC, or None."""
    if value is None or pd.isna(value):
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    return as_utc(value)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in an ellipsis when it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def utc_text(ts: dt.datetime | None) -> str:
    """``2026-11-18 12:00Z`` (``never`` for None)."""
    return f"{ts:%Y-%m-%d %H:%M}Z" if ts is not None else "never"
