"""Who gets an alert, and when: the plan's per-pipeline on-call notes as rules.

- ``weekly_rotation`` pipelines (Profit, Engagement, the team-owned investor aggregate): the
  on-call engineer at once, any hour. A holiday week adds the pipeline's secondary owner as
  backup; the last week of the month adds the pipeline's primary and secondary owners (for the
  team-owned investor aggregate: every engineer).
- ``business_hours`` pipelines (Growth) have no emergency on-call: an alert waits for business
  hours (team time zone, business days without public holidays) and goes to the primary owner,
  the secondary joining through the ladder; a holiday week adds the secondary as backup. During
  month-end both owners (DE3 and DE4) are notified at once, any hour.

The same rules define each pipeline's *watched time* (:class:`WatchClock`), on which the
escalation ladder's clocks run: all the time for the rotation, business hours plus the month-end
days for Growth. So a Growth alert opened on a Saturday is first notified Monday 09:00, its
secondary joins at 11:00 and the lead at 13:00, while in month-end its ladder runs in real time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from helpers.core.config import TeamConfig
from helpers.core.timeutil import UTC, as_utc
from helpers.oncall.notify.base import Recipient
from helpers.oncall.schedule import Schedule

MAX_SCAN_DAYS = 400  # a watched interval always comes within a year; guards against a bad calendar
FOREVER = dt.datetime(9999, 1, 1, tzinfo=UTC)


class WatchClock:
    """The time during which a pipeline is watched, and arithmetic in that time.

    ``always``: every instant. Otherwise business hours of business days, plus (with
    ``month_end``) every hour of the month-end days.
    """

    def __init__(self, schedule: Schedule, *, always: bool, month_end: bool = True) -> None:
        self.schedule = schedule
        self.cal = schedule.calendar
        self.always = always
        self.month_end = month_end

    def intervals(self, start: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        """Watched intervals from ``start`` on, merged and in order (the first may begin at ``start``)."""
        start = as_utc(start)
        if self.always:
            yield start, FOREVER
            return
        pending: tuple[dt.datetime, dt.datetime] | None = None
        day = self.cal.local_date(start)
        for i in range(MAX_SCAN_DAYS):
            d = day + dt.timedelta(days=i)
            if self.month_end and self.schedule.is_month_end_day(d):
                s, e = self.cal.start_of_day(d), self.cal.end_of_day(d)
            elif self.cal.is_business_day(d):
                s = dt.datetime.combine(d, self.cal.business_start, self.cal.tz).astimezone(UTC)
                e = dt.datetime.combine(d, self.cal.business_end, self.cal.tz).astimezone(UTC)
            else:
                continue
            s = max(s, start)
            if e <= s:
                continue
            if pending and pending[1] == s:
                pending = (pending[0], e)
                continue
            if pending:
                yield pending
            pending = (s, e)
        if pending:
            yield pending

    def next_watched(self, at: dt.datetime) -> dt.datetime:
        """``at`` if it is watched time, else the next instant that is."""
        return self.advance(at, 0)

    def advance(self, start: dt.datetime, minutes: float, *, at_close: bool = False) -> dt.datetime:
        """The instant at which ``minutes`` of watched time have passed since ``start``.

        An instant that would land exactly on the close of business moves to the next opening
        (nothing is due at the moment the office closes) unless ``at_close`` (a deadline may be
        the close of business itself).
        """
        remaining = dt.timedelta(minutes=minutes)
        for s, e in self.intervals(start):
            if s + remaining < e or (at_close and s + remaining == e):
                return s + remaining
            remaining -= e - s
        raise ValueError(f"no watched time within {MAX_SCAN_DAYS} days of {start}")

    def elapsed(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """Watched time between ``start`` and ``end``."""
        total = dt.timedelta()
        end = as_utc(end)
        for s, e in self.intervals(start):
            if s >= end:
                break
            total += min(e, end) - s
        return total


def watch_clock(schedule: Schedule, pipeline_id: str) -> WatchClock:
    """The clock a pipeline's escalation ladder runs on (see the module doc)."""
    return WatchClock(schedule, always=oncall_mode(schedule, pipeline_id) == "weekly_rotation")


def oncall_mode(schedule: Schedule, pipeline_id: str) -> str:
    """The pipeline's ``sla.oncall_mode``; an unconfigured pipeline goes to the weekly rotation."""
    p = schedule.pipelines.pipelines.get(pipeline_id)
    return p.sla.oncall_mode if p is not None else "weekly_rotation"


# ---------------------------------------------------------------- people


def engineer(team: TeamConfig, key: str, role: str) -> Recipient:
    p = team.engineers[key]
    return Recipient(key, p.name, p.email, p.slack, role)


def team_lead(team: TeamConfig) -> Recipient:
    p = team.team_lead
    return Recipient("lead", p.name, p.email, p.slack, "lead")


def contact(team: TeamConfig, key: str) -> Recipient:
    c = team.contacts[key]
    return Recipient(f"contact:{key}", f"{c.name}, {c.team}", c.email, c.slack, "cross_team")


def recipient(team: TeamConfig, key: str, role: str = "") -> Recipient:
    """The recipient a timeline ``who`` names: ``DE1``, ``lead`` or ``contact:finance``."""
    if key == "lead":
        return team_lead(team)
    if key.startswith("contact:"):
        return contact(team, key.removeprefix("contact:"))
    if key in team.engineers:
        return engineer(team, key, role)
    raise ValueError(
        f"unknown person {key!r}; expected one of {', '.join(team.engineers)}, lead, "
        + ", ".join(f"contact:{c}" for c in team.contacts)
    )


# ---------------------------------------------------------------- routes


@dataclass(frozen=True)
class Route:
    """Who an alert of ``pipeline`` opened at ``opened_at`` goes to first, and when."""

    pipeline: str
    opened_at: dt.datetime
    notify_at: dt.datetime
    mode: str  # weekly_rotation | business_hours | month_end
    recipients: tuple[Recipient, ...]
    reason: str

    @property
    def deferred(self) -> bool:
        """True when the first notification waits (business hours)."""
        return self.notify_at > self.opened_at

    def as_json(self) -> dict[str, object]:
        return {
            "pipeline": self.pipeline,
            "opened_at": self.opened_at.isoformat(),
            "notify_at": self.notify_at.isoformat(),
            "mode": self.mode,
            "recipients": [{"who": r.key, "role": r.role} for r in self.recipients],
            "reason": self.reason,
        }


def responders(
    schedule: Schedule, pipeline_id: str, at: dt.datetime
) -> tuple[str, tuple[Recipient, ...], str]:
    """``(mode, recipients, reason)`` for an alert of ``pipeline_id`` notified at ``at``."""
    p = schedule.pipelines.pipelines.get(pipeline_id)
    state = schedule.on_call_at(at)
    people: list[tuple[str, str]] = []
    reasons: list[str] = [] if p is not None else [f"{pipeline_id} is not in config: the rotation takes it"]
    if p is None or p.sla.oncall_mode == "weekly_rotation":
        mode = "weekly_rotation"
        people.append((state.engineer, "on_call"))
        reasons.append(f"{state.engineer} is on call (week of {state.week.week_of})")
        if state.holiday_week:
            backup = schedule.backup_for(pipeline_id, at)
            people.append((backup.who, "backup"))
            reasons.append(f"holiday week: {backup.who} on backup ({backup.reason})")
        if state.month_end:
            people.extend((o, "month_end") for o in schedule.owners_of(pipeline_id))
            reasons.append("last week of the month: owners notified too")
    elif state.month_end:
        mode = "month_end"
        people.extend((o, "month_end") for o in schedule.owners_of(pipeline_id))
        reasons.append("business-hours pipeline in month-end: both owners at once")
    else:
        mode = "business_hours"
        people.append((p.owners.primary, "owner"))
        reasons.append("business-hours pipeline: its primary owner in business hours")
        if state.holiday_week:
            backup = schedule.backup_for(pipeline_id, at)
            people.append((backup.who, "backup"))
            reasons.append(f"holiday week: {backup.who} on backup ({backup.reason})")
    seen: dict[str, Recipient] = {}
    for who, role in people:
        seen.setdefault(who, recipient(schedule.team, who, role))
    return mode, tuple(seen.values()), "; ".join(reasons)


def route(schedule: Schedule, pipeline_id: str, opened_at: dt.datetime) -> Route:
    """The first notification of an alert: when (now, or the next watched instant) and to whom."""
    opened_at = as_utc(opened_at)
    notify_at = watch_clock(schedule, pipeline_id).next_watched(opened_at)
    mode, people, reason = responders(schedule, pipeline_id, notify_at)
    return Route(pipeline_id, opened_at, notify_at, mode, people, reason)
