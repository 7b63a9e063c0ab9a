"""What one Engagement run re-computes: the trailing window of event days, its months, what it reads.

A run for ``run_date`` R at ``as_of`` re-computes the event days [R - window_days + 1, R] (default
3 days, inside the 48 h SLA) up to the data horizon (the latest received partition of ``events``
that had arrived by ``as_of``), and the months those days touch, month to date. The roll-ups need
30 days before the window (MAU) or the first month the window touches, whichever is earlier.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from helpers.core.periods import month_end, month_of
from helpers.core.timeutil import as_utc, parse_as_of
from helpers.storage import landing

PIPELINE = "engagement_aggregate"
DEFAULT_WINDOW_DAYS = 3
WAU_DAYS, MAU_DAYS = 7, 30
SKEW_SLACK_DAYS = 1  # received partitions read before the roll-up start: client clocks ahead of Segment's


@dataclass(frozen=True)
class Month:
    """A month the run writes: ``period`` YYYY-MM, from its first day through ``through``."""

    period: str
    start: dt.date
    through: dt.date
    complete: bool  # through is the month's last day


@dataclass(frozen=True)
class RunWindow:
    """What one run re-computes: the trailing window of event days, its months, what it reads."""

    run_date: dt.date
    as_of: dt.datetime
    window_days: int
    horizon: dt.date | None  # latest received partition of ``events`` delivered by as_of

    def __post_init__(self) -> None:
        if self.window_days < 1:
            raise ValueError(f"window_days: expected a whole number of days >= 1, got {self.window_days}")

    @property
    def start(self) -> dt.date:
        return self.run_date - dt.timedelta(days=self.window_days - 1)

    @property
    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(self.window_days)]

    @property
    def written_days(self) -> list[dt.date]:
        """Window days whose events had been delivered (a later day is left to the next run)."""
        return [d for d in self.days if self.horizon is not None and d <= self.horizon]

    @property
    def months(self) -> list[Month]:
        out: list[Month] = []
        if self.horizon is None:
            return out
        for first in sorted({d.replace(day=1) for d in self.days}):
            last = month_end(first)
            through = min(last, self.horizon)
            if through >= first:
                out.append(Month(month_of(first), first, through, through == last))
        return out

    @property
    def rollup_start(self) -> dt.date:
        """First event day the roll-ups need: MAU of the first window day, or a month's first day."""
        first_month = min(d.replace(day=1) for d in self.days)
        return min(self.start - dt.timedelta(days=MAU_DAYS - 1), first_month)

    @property
    def rollup_end(self) -> dt.date:
        ends = [m.through for m in self.months] + [d for d in self.written_days]
        return max(ends) if ends else self.run_date

    @property
    def last_event_day(self) -> dt.date:
        """The last event day any figure of the run counts: the window's, a month's or a roll-up's."""
        return max(self.run_date, self.rollup_end)

    @property
    def read_from(self) -> dt.date:
        return self.rollup_start - dt.timedelta(days=SKEW_SLACK_DAYS)

    def beyond_window(self, received: dt.date) -> dt.date:
        """Events received on ``received`` for a day before this are beyond that day's window."""
        return received - dt.timedelta(days=self.window_days - 1)


def resolve_as_of(run_date: str | dt.date, as_of: str | dt.datetime | None) -> dt.datetime:
    """``as_of`` as aware UTC; empty means the scheduled run's time, 04:00 UTC the next day."""
    if isinstance(as_of, dt.datetime):
        return as_utc(as_of)
    if as_of:
        return parse_as_of(str(as_of))
    day = dt.date.fromisoformat(str(run_date))
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(4), dt.UTC)


def run_window(
    run_date: str | dt.date,
    as_of: str | dt.datetime | None,
    window_days: int = DEFAULT_WINDOW_DAYS,
    *,
    root: Path | None = None,
) -> RunWindow:
    """The window of a run, with its data horizon read from the ``events`` manifest."""
    day = dt.date.fromisoformat(str(run_date))
    when = resolve_as_of(day, as_of)
    delivered = [d.partition for d in landing.deliveries("events", root=root, as_of=when)]
    horizon = dt.date.fromisoformat(max(delivered)) if delivered else None
    return RunWindow(day, when, int(window_days), horizon)
