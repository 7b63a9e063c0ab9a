"""The team's business-day calendar: weekends and public holidays from the ``holidays`` package.

Country, subdivision and time zone come from ``config/team.yml`` (``calendar``). Observed
holidays count (Independence Day 2026 falls on a Saturday and is observed on Friday 3 July), so
the calendar matches what the ``holidays`` package says for the configured country. The team's
*major* holidays (``calendar.major_holidays``, the on-call schedule's holiday weeks and comp
days) are the public holidays whose name starts with a configured name (:func:`major_holidays`).

A time the team writes (``workbook oncall now --at``) is read in the team's time zone
(:meth:`BusinessCalendar.local_instant`): a date alone means that day at noon local (the instant
that decides which rotation week a day belongs to), a date and time without an offset is local
wall time, and a value with an offset or ``Z`` is taken as given.

Deadlines are instants in UTC computed from local dates: "end of day D" means local midnight at
the end of D in the team's time zone (``end_of_day``), so "by end of Friday" and "by the end of
the 3rd business day" mean the same thing in New York whatever the UTC offset that week.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import holidays as holidays_lib

from helpers.core.periods import last_day_of_month, month_of, previous_month
from helpers.core.timeutil import UTC, as_utc

if TYPE_CHECKING:
    from helpers.core.config import TeamConfig

FRIDAY = 4
NOON = dt.time(12, 0)


@lru_cache(maxsize=32)
def _holidays(country: str, subdivision: str | None, year: int) -> dict[dt.date, str]:
    # One year at a time: the package computes lazily per year, and caching keeps look-ups cheap.
    return dict(holidays_lib.country_holidays(country, subdiv=subdivision, years=year, observed=True))


@dataclass(frozen=True)
class Holiday:
    """A major holiday on a date; ``observed`` when it is the weekday a weekend holiday moves to."""

    date: dt.date
    name: str
    observed: bool = False


def _is_major(name: str, majors: Sequence[str]) -> bool:
    base = name.removesuffix(" (observed)").strip().lower()
    return any(base.startswith(m.strip().lower()) for m in majors)


def major_holidays(team: TeamConfig, years: Iterable[int]) -> list[Holiday]:
    """The configured major holidays of ``years`` (observed days included), by date.

    Names match as prefixes ("Thanksgiving" matches "Thanksgiving Day"), never as substrings.
    """
    cal = team.calendar
    out: set[Holiday] = set()
    for year in years:
        for day, names in _holidays(cal.country, cal.subdivision, year).items():
            for name in names.split("; "):  # the package joins two holidays on one day with "; "
                if _is_major(name, cal.major_holidays):
                    out.add(Holiday(day, name, observed=name.endswith("(observed)")))
    return sorted(out, key=lambda h: (h.date, h.name))


class BusinessCalendar:
    """Business days (Mon–Fri that are not public holidays) and deadlines in one time zone."""

    def __init__(
        self,
        country: str = "US",
        *,
        subdivision: str | None = None,
        timezone: str = "America/New_York",
        business_start: dt.time = dt.time(9, 0),
        business_end: dt.time = dt.time(17, 0),
    ) -> None:
        self.country = country
        self.subdivision = subdivision
        self.tz = ZoneInfo(timezone)
        self.business_start = business_start
        self.business_end = business_end

    @classmethod
    def from_team(cls, team: TeamConfig) -> BusinessCalendar:
        """Build from the ``calendar`` section of ``config/team.yml``."""
        cal = team.calendar
        return cls(
            cal.country,
            subdivision=cal.subdivision,
            timezone=cal.timezone,
            business_start=cal.business_hours.start,
            business_end=cal.business_hours.end,
        )

    # ------------------------------------------------------------ days

    def holiday_name(self, day: dt.date) -> str | None:
        """The public holiday on ``day`` (observed days included), or ``None``."""
        return _holidays(self.country, self.subdivision, day.year).get(day)

    def is_business_day(self, day: dt.date) -> bool:
        """A weekday that is not a public holiday (observed days included)."""
        return day.weekday() < 5 and self.holiday_name(day) is None

    def add_business_days(self, day: dt.date, n: int) -> dt.date:
        """The ``n``-th business day after ``day`` (``day`` itself is not counted; ``n`` >= 0).

        ``n == 0`` returns ``day`` if it is a business day, else the next business day.
        """
        if n < 0:
            raise ValueError(f"add_business_days: n must be >= 0, got {n}")
        current = day
        if n == 0:
            while not self.is_business_day(current):
                current += dt.timedelta(days=1)
            return current
        while n:
            current += dt.timedelta(days=1)
            if self.is_business_day(current):
                n -= 1
        return current

    def business_days_between(self, start: dt.date, end: dt.date) -> int:
        """Business days in ``(start, end]`` (negative when ``end`` is before ``start``)."""
        if end < start:
            return -self.business_days_between(end, start)
        return sum(
            self.is_business_day(start + dt.timedelta(days=i)) for i in range(1, (end - start).days + 1)
        )

    def last_business_day_of_week(self, day: dt.date) -> dt.date:
        """The last business day of ``day``'s Monday–Sunday week (Friday unless it is a holiday).

        A week without any business day (not seen in practice) falls back to its Friday.
        """
        monday = day - dt.timedelta(days=day.weekday())
        for offset in range(FRIDAY, -1, -1):
            candidate = monday + dt.timedelta(days=offset)
            if self.is_business_day(candidate):
                return candidate
        return monday + dt.timedelta(days=FRIDAY)

    def nth_business_day_after_month_end(self, year: int, month: int, n: int) -> dt.date:
        """The ``n``-th business day of the month after ``year-month`` (``n`` >= 1)."""
        if n < 1:
            raise ValueError(f"nth_business_day_after_month_end: n must be >= 1, got {n}")
        return self.add_business_days(last_day_of_month(year, month), n)

    # ------------------------------------------------------------ instants

    def local_date(self, ts: dt.datetime) -> dt.date:
        """The calendar date of ``ts`` in the team's time zone."""
        return as_utc(ts).astimezone(self.tz).date()

    def end_of_day(self, day: dt.date) -> dt.datetime:
        """Local midnight at the end of ``day``, as aware UTC."""
        nxt = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), self.tz)
        return nxt.astimezone(UTC)

    def start_of_day(self, day: dt.date) -> dt.datetime:
        """Local midnight at the start of ``day``, as aware UTC."""
        return dt.datetime.combine(day, dt.time(), self.tz).astimezone(UTC)

    def noon(self, day: dt.date) -> dt.datetime:
        """Local noon of ``day``, as aware UTC: the instant a date alone stands for."""
        return dt.datetime.combine(day, NOON, self.tz).astimezone(UTC)

    def local_instant(self, text: str) -> dt.datetime:
        """A time the team writes, as aware UTC (see the module doc).

        ``2026-12-24`` is noon local that day; ``2026-12-24T08:00`` is 08:00 local;
        ``2026-12-24T08:00:00Z`` and ``...-05:00`` are taken as given.
        """
        s = text.strip()
        try:
            if len(s) == 10:
                return self.noon(dt.date.fromisoformat(s))
            value = dt.datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
        except ValueError:
            raise ValueError(
                f"expected a date YYYY-MM-DD (noon in {self.tz.key}) or a date and time such as "
                f"2026-12-24T08:00 (local) or 2026-12-24T13:00:00Z, got {text!r}"
            ) from None
        return as_utc(value.replace(tzinfo=self.tz) if value.tzinfo is None else value)

    def is_business_hours(self, ts: dt.datetime) -> bool:
        """Within ``business_hours`` of a business day, in the team's time zone."""
        local = as_utc(ts).astimezone(self.tz)
        return self.is_business_day(local.date()) and self.business_start <= local.time() < self.business_end

    def fix_deadline(self, opened_at: dt.datetime, business_days: int) -> dt.datetime:
        """End of the ``business_days``-th business day after the (local) day ``opened_at`` falls on.

        An alert opened on Wednesday 25 Nov 2026 with 3 business days is due at the end of Tuesday
        1 Dec (Thanksgiving on the 26th and the weekend do not count).
        """
        return self.end_of_day(self.add_business_days(self.local_date(opened_at), business_days))

    def week_deadline(self, as_of: dt.datetime) -> dt.datetime:
        """End of the last business day of the week ``as_of`` falls in ("by end of week")."""
        return self.end_of_day(self.last_business_day_of_week(self.local_date(as_of)))

    def close_deadline(self, period: str, report_final_business_days: int) -> dt.datetime:
        """End of the N-th business day after the end of month ``period`` (``YYYY-MM``)."""
        y, m = (int(x) for x in period.split("-"))
        return self.end_of_day(self.nth_business_day_after_month_end(y, m, report_final_business_days))


def close_window(
    cal: BusinessCalendar,
    as_of: dt.datetime,
    *,
    report_final_business_days: int,
    heightened_from_days_before_month_end: int,
) -> tuple[str, dt.datetime, bool]:
    """The month whose close matters at ``as_of``: ``(period, deadline, heightened)``.

    Until the previous month's close deadline has passed, that month is the one being closed;
    after it, the current month. ``heightened`` is true from ``heightened_from_days_before_month_end``
    days before the month's last day (the plan's "last week of the month") until its close deadline.
    """
    local = cal.local_date(as_of)
    current = month_of(local)
    prev = previous_month(current)
    prev_deadline = cal.close_deadline(prev, report_final_business_days)
    if as_utc(as_of) < prev_deadline:
        return prev, prev_deadline, True
    deadline = cal.close_deadline(current, report_final_business_days)
    last = last_day_of_month(local.year, local.month)
    heightened_from = cal.start_of_day(last - dt.timedelta(days=heightened_from_days_before_month_end - 1))
    return current, deadline, as_utc(as_of) >= heightened_from
