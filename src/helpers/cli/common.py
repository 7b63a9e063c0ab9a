"""Shared pieces of the CLI layer: the wall clock (read only here) and argument parsing."""

from __future__ import annotations

import datetime as dt

from helpers.core.errors import UsageError
from helpers.core.timeutil import UTC, parse_as_of


def wall_clock() -> dt.datetime:
    """The real clock. Only the CLI layer calls this; everything below takes ``as_of``/``now``."""
    return dt.datetime.now(UTC)


def as_of_arg(text: str | None, *, default: dt.datetime | None = None) -> dt.datetime | None:
    """Parse ``--as-of`` (ISO, UTC if naive); a bad value is a usage error naming the flag."""
    if text is None:
        return default
    try:
        return parse_as_of(text)
    except ValueError as e:
        raise UsageError(f"--as-of: {e}") from None
