"""Time conventions: every timestamp is timezone-aware UTC; ``as_of`` is always passed in.

Two frames: ``as_of`` (the data frame: what a run may see) and the clock a process records when
things really happened (``queued_at``/``started_at``/``finished_at``: the wall clock in production,
a fake in tests and drills). The clock is only ever handed down: :func:`clock_handoff` writes the
caller's clock into a child process's environment (:data:`CLOCK_ENV`), :func:`handed_clock` reads
it back there; :func:`elapsed_clock` advances a reading with elapsed (monotonic) time.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping

from helpers.core import envnames
from helpers.core.periods import first_of_next_month, month_of

UTC = dt.UTC

Clock = Callable[[], dt.datetime]

# Set by the runner in a notebook kernel's environment: the runner's clock, ``<ISO reading>@<monotonic>``.
CLOCK_ENV = envnames.CLOCK


def elapsed_clock(start: dt.datetime, origin: float | None = None) -> Clock:
    """A clock that reads ``start`` at the monotonic instant ``origin`` (default: now) and advances
    with elapsed monotonic time (never backwards)."""
    start = as_utc(start)
    origin = time.monotonic() if origin is None else origin
    return lambda: start + dt.timedelta(seconds=max(time.monotonic() - origin, 0.0))


def clock_handoff(clock: Clock) -> str:
    """``clock`` for a child process on this machine: its reading now and the monotonic instant
    of that reading (``time.monotonic`` is system-wide: the child measures elapsed time from it)."""
    return f"{as_utc(clock()).isoformat()}@{time.monotonic():.6f}"


def handed_clock(environ: Mapping[str, str]) -> Clock | None:
    """The clock a parent handed down in ``environ[CLOCK_ENV]`` (None when there is none).

    A malformed value is an error naming the variable and the expected form.
    """
    text = environ.get(CLOCK_ENV, "").strip()
    if not text:
        return None
    reading, _, origin = text.rpartition("@")
    try:
        return elapsed_clock(dt.datetime.fromisoformat(reading), float(origin))
    except ValueError:
        raise ValueError(
            f"{CLOCK_ENV}: expected <ISO timestamp>@<monotonic seconds> (set by the runner), got {text!r}"
        ) from None


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
