"""The on-call schedule: weekly rotation, swaps, holiday weeks, month-end, load and the comp ledger.

The plan's "On-Call Schedule" (docs/plan.md), with the data from ``config/team.yml``:

- **Rotation.** Weeks start at ``rotation.start`` (a Monday 09:00 in the team's time zone) and
  repeat every 7 days at the same *local* wall time, so the handoff stays at 09:00 New York time
  across daylight-saving changes. Week ``k`` belongs to ``rotation.order[k % len(order)]``.
- **Swaps.** ``Swap(week_of, a, b, requested_at)``: in that rotation week whichever of ``a`` and
  ``b`` holds the pager hands it to the other. Trading two weeks is two swaps. A swap is refused
  unless it is requested at least ``oncall.swap_notice_days`` (7) days before the week's handoff;
  an *emergency cover* inside that notice is accepted before the handoff when both engineers and
  the team lead agree. Swaps live in ``team.yml`` (reviewed, planned ones) and in the warehouse
  (what ``workbook oncall swap`` records, :mod:`helpers.oncall.swaps`); both apply. A recorded
  swap can be cancelled before its week starts; the cancellation is recorded, not deleted.
- **Holiday weeks.** A rotation week is a holiday week when one of the configured major holidays
  (``calendar.major_holidays``, :func:`helpers.core.businesscal.major_holidays`) falls in it; a
  day belongs to the week holding its local noon, so a Monday holiday belongs to the week that
  starts that morning. In a holiday week each pipeline has a backup (:meth:`Schedule.backup_for`):
  its secondary owner, unless that is the engineer on call, then its other owner, then the team
  lead; never the engineer on call.
- **Month-end.** The last ``close.heightened_from_days_before_month_end`` (7) local days of every
  month: everyone is on deck. (The close itself, through the report deadline, is monitored by
  ``businesscal.close_window``; on-call's "last week of the month" ends with the month.)
- **Team-owned pipelines** (the investor aggregate) have no named secondary: their secondary is
  the engineer who handed the pager over (the previous week's on-call), who has the freshest
  context; if a swap made that the same person, the next engineer in the rotation order.

Everything here is a pure function of the configuration, the swaps and an explicit time, except
the storage helpers at the end (recording and cancelling swaps, ``oncall_comp_choices``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from helpers.core.businesscal import BusinessCalendar, Holiday, major_holidays
from helpers.core.config import ConfigError, PipelinesConfig, Swap, TeamConfig, WorkbookConfig
from helpers.core.periods import last_day_of_month
from helpers.core.timeutil import UTC, as_utc, naive_utc
from helpers.oncall import swaps as swapstore
from helpers.oncall.swaps import LEAD, SwapEvent, SwapRecord, SwapRefused, stored_swaps
from helpers.storage.warehouse import get_engine, metadata, register_tables

WEEK = dt.timedelta(days=7)
ICS_PRODID = "-//Pipeline Maintenance Workbook//on-call schedule//EN"
ICS_DOMAIN = "pipeline-maintenance-workbook"


# ---------------------------------------------------------------- the schedule


@dataclass(frozen=True)
class RotationWeek:
    """One rotation week: handoff to handoff, who holds the pager, and what makes it special."""

    index: int
    start: dt.datetime  # the handoff, aware UTC
    end: dt.datetime  # the next handoff
    week_of: dt.date  # local date of the handoff
    scheduled: str  # by the rotation order
    engineer: str  # after swaps
    swaps: tuple[Swap, ...] = ()
    holidays: tuple[Holiday, ...] = ()
    month_end_days: tuple[dt.date, ...] = ()  # local dates of the week in a month-end window

    @property
    def holiday_week(self) -> bool:
        return bool(self.holidays)

    def as_json(self) -> dict[str, Any]:
        return {
            "week_of": self.week_of.isoformat(),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "engineer": self.engineer,
            "scheduled": self.scheduled,
            "swapped": bool(self.swaps),
            "holidays": [{"date": h.date.isoformat(), "name": h.name} for h in self.holidays],
            "month_end_days": [d.isoformat() for d in self.month_end_days],
        }


@dataclass(frozen=True)
class Backup:
    """Who backs up the on-call engineer for a pipeline, and why that person (``who``: DEn or lead)."""

    pipeline: str
    who: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return {"pipeline": self.pipeline, "who": self.who, "reason": self.reason}


@dataclass(frozen=True)
class OnCall:
    """Who is on call at one instant: the pager holder, holiday backups, and who is on deck."""

    at: dt.datetime
    week: RotationWeek
    engineer: str
    backups: Mapping[str, str] = field(default_factory=dict)  # pipeline -> backup (holiday weeks)
    month_end: bool = False
    on_deck: tuple[str, ...] = ()  # everyone at month-end; else the on-call and the backups
    backup_reasons: Mapping[str, str] = field(default_factory=dict)  # pipeline -> why that backup

    @property
    def holiday_week(self) -> bool:
        return self.week.holiday_week

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "engineer": self.engineer,
            "week": self.week.as_json(),
            "holiday_week": self.holiday_week,
            "backups": dict(self.backups),
            "backup_reasons": dict(self.backup_reasons),
            "month_end": self.month_end,
            "on_deck": list(self.on_deck),
        }


class Schedule:
    """The rotation of ``team`` with ``swaps`` applied; every answer is for an explicit time.

    ``swaps`` defaults to ``team.swaps``; callers that also have stored swaps pass both
    (see :func:`schedule_for`). Swaps apply in order of their request time.
    """

    def __init__(
        self,
        team: TeamConfig,
        pipelines: PipelinesConfig,
        swaps: Sequence[Swap] | None = None,
        *,
        calendar: BusinessCalendar | None = None,
    ) -> None:
        self.team = team
        self.pipelines = pipelines
        self.tz = ZoneInfo(team.calendar.timezone)
        self.calendar = calendar or BusinessCalendar.from_team(team)
        self.order = team.rotation.order
        self.month_end_length = pipelines.close.heightened_from_days_before_month_end
        self._start_local = as_utc(team.rotation.start).astimezone(self.tz).replace(tzinfo=None)
        self.swaps = tuple(
            sorted(team.swaps if swaps is None else swaps, key=lambda s: as_utc(s.requested_at))
        )
        self._swaps_by_week: dict[int, list[Swap]] = {}
        for s in self.swaps:
            self._swaps_by_week.setdefault(self.week_index_of_date(s.week_of), []).append(s)

    # ------------------------------------------------------------ weeks

    def week_index(self, at: dt.datetime) -> int:
        """The rotation week holding ``at`` (0 = the configured start; negative before it)."""
        local = as_utc(at).astimezone(self.tz).replace(tzinfo=None)
        return (local - self._start_local) // WEEK

    def week_index_of_date(self, day: dt.date) -> int:
        """The rotation week whose handoff date is ``day`` or the latest before it (a "week of")."""
        return (day - self._start_local.date()).days // 7

    def handoff(self, index: int) -> dt.datetime:
        """The handoff starting week ``index``, aware UTC (same local wall time every week)."""
        return (self._start_local + index * WEEK).replace(tzinfo=self.tz).astimezone(UTC)

    def scheduled(self, index: int) -> str:
        return self.order[index % len(self.order)]

    def week(self, index: int) -> RotationWeek:
        """Week ``index`` with swaps applied, its major holidays and its month-end days."""
        start = self.handoff(index)
        engineer = self.scheduled(index)
        applied = []
        for s in self._swaps_by_week.get(index, ()):
            if engineer in (s.a, s.b):
                engineer = s.b if engineer == s.a else s.a
                applied.append(s)
        week_of = start.astimezone(self.tz).date()
        days = [week_of + dt.timedelta(days=i) for i in range(7)]
        holidays = tuple(
            h
            for h in major_holidays(self.team, sorted({d.year for d in days}))
            if h.date in days and self.week_index(self._noon(h.date)) == index
        )
        return RotationWeek(
            index=index,
            start=start,
            end=self.handoff(index + 1),
            week_of=week_of,
            scheduled=self.scheduled(index),
            engineer=engineer,
            swaps=tuple(applied),
            holidays=holidays,
            month_end_days=tuple(d for d in days if self.is_month_end_day(d)),
        )

    def week_at(self, at: dt.datetime) -> RotationWeek:
        return self.week(self.week_index(at))

    def weeks_between(self, first: dt.date, last: dt.date) -> list[RotationWeek]:
        """The rotation weeks of the days ``first`` .. ``last``, each day taken as a "week of".

        ``first`` = Monday 16 Nov gives the week starting that Monday's handoff, not the week
        whose last hours (before 09:00) fall on it.
        """
        if last < first:
            raise ValueError(f"--to {last} is before --from {first}")
        lo, hi = self.week_index_of_date(first), self.week_index_of_date(last)
        return [self.week(i) for i in range(lo, hi + 1)]

    def weeks_in_year(self, year: int) -> list[RotationWeek]:
        """The rotation weeks whose handoff falls in ``year`` (local dates)."""
        lo = self.week_index_of_date(dt.date(year, 1, 1))
        weeks = [self.week(i) for i in range(lo, lo + 54)]
        return [w for w in weeks if w.week_of.year == year]

    def engineer_at(self, at: dt.datetime) -> str:
        return self.week_at(at).engineer

    # ------------------------------------------------------------ month-end

    def is_month_end_day(self, day: dt.date) -> bool:
        """``day`` is one of the last ``heightened_from_days_before_month_end`` days of its month."""
        last = last_day_of_month(day.year, day.month)
        return (last - day).days < self.month_end_length

    def is_month_end(self, at: dt.datetime) -> bool:
        return self.is_month_end_day(self.calendar.local_date(at))

    # ------------------------------------------------------------ who

    def secondary_for(self, pipeline_id: str, at: dt.datetime) -> str:
        """The pipeline's secondary owner; for a team-owned pipeline, who handed the pager over.

        A pipeline missing from config (an alert about something unconfigured) counts as team-owned.
        """
        p = self.pipelines.pipelines.get(pipeline_id)
        if p is not None and not p.owners.team:
            assert p.owners.secondary is not None  # checked at load
            return p.owners.secondary
        index = self.week_index(at)
        current, previous = self.week(index).engineer, self.week(index - 1).engineer
        if previous != current:
            return previous
        return self.order[(self.order.index(current) + 1) % len(self.order)]

    def first_responder(self, pipeline_id: str, at: dt.datetime) -> str:
        """Who an alert of ``pipeline_id`` reaches first: the engineer on call, or for a
        business-hours pipeline (Growth) its primary owner."""
        p = self.pipelines.pipelines.get(pipeline_id)
        if p is None or p.owners.team or p.sla.oncall_mode == "weekly_rotation":
            return self.engineer_at(at)
        return p.owners.primary

    def backup_for(self, pipeline_id: str, at: dt.datetime) -> Backup:
        """Who backs up :meth:`first_responder` for ``pipeline_id`` at ``at``: never that person.

        The pipeline's secondary owner (for a team-owned one, :meth:`secondary_for`); when that is
        the first responder (the engineer on call), the pipeline's other owner; when both are, the
        team lead (``lead``). Routing's holiday backup and the ladder's second person are this one.
        """
        first = self.first_responder(pipeline_id, at)
        p = self.pipelines.pipelines.get(pipeline_id)
        if p is None or p.owners.team:
            handed_over = self.week(self.week_index(at) - 1).engineer != first
            role = "handed the pager over" if handed_over else "next in rotation"
            candidates = [(self.secondary_for(pipeline_id, at), role)]
        else:
            candidates = [
                (p.owners.secondary or p.owners.primary, "secondary owner"),
                (p.owners.primary, "other owner"),
            ]
        skipped: list[str] = []
        for who, role in candidates:
            if who != first:
                return Backup(pipeline_id, who, "; ".join([*skipped, role]))
            skipped = [f"{who} is on call" if who == self.engineer_at(at) else f"{who} is paged first"]
        return Backup(pipeline_id, LEAD, "; ".join([*skipped, "team lead"]))

    def owners_of(self, pipeline_id: str) -> tuple[str, ...]:
        """Primary and secondary owner; every engineer for a team-owned (or unconfigured) pipeline."""
        p = self.pipelines.pipelines.get(pipeline_id)
        if p is None or p.owners.team:
            return tuple(self.team.engineers)
        return (p.owners.primary, p.owners.secondary or p.owners.primary)

    def on_call_at(self, at: dt.datetime) -> OnCall:
        """Who is on call at ``at``: the pager holder, holiday backups, and who is on deck."""
        at = as_utc(at)
        week = self.week_at(at)
        chosen = [self.backup_for(pid, at) for pid in self.pipelines.pipelines] if week.holiday_week else []
        backups = {b.pipeline: b.who for b in chosen}
        month_end = self.is_month_end(at)
        if month_end:
            on_deck = tuple(self.team.engineers)
        else:
            on_deck = tuple(dict.fromkeys([week.engineer, *sorted(backups.values())]))
        return OnCall(
            at=at,
            week=week,
            engineer=week.engineer,
            backups=backups,
            month_end=month_end,
            on_deck=on_deck,
            backup_reasons={b.pipeline: b.reason for b in chosen},
        )

    # ------------------------------------------------------------ swaps

    def check_swap(self, swap: Swap, *, notice_days: int | None = None) -> None:
        """Raise :class:`SwapRefused` unless ``swap`` may be recorded on top of this schedule."""
        notice_days = self.team.oncall.swap_notice_days if notice_days is None else notice_days
        for who in (swap.a, swap.b):
            if who not in self.team.engineers:
                raise SwapRefused(
                    f"swap refused: {who!r} is not an engineer; expected one of {', '.join(self.team.engineers)}"
                )
        if swap.a == swap.b:
            raise SwapRefused(f"swap refused: {swap.a} cannot swap with themselves")
        week = self.week(self.week_index_of_date(swap.week_of))
        when = f"the week of {week.week_of:%a %Y-%m-%d} (handoff {self._local(week.start)})"
        if week.engineer not in (swap.a, swap.b):
            raise SwapRefused(
                f"swap refused: neither {swap.a} nor {swap.b} is on call in {when}; {week.engineer} is"
            )
        deadline = week.start - dt.timedelta(days=notice_days)
        requested = as_utc(swap.requested_at)
        if requested >= week.start:
            raise SwapRefused(
                f"swap refused: {when} has started (requested {self._local(requested)}); a swap moves a "
                "whole week, so it is recorded before the handoff; for the running week call the team lead"
            )
        if requested > deadline:
            ahead = (week.start - requested).total_seconds() / 86400
            raise SwapRefused(
                f"swap refused: {swap.a} <-> {swap.b} for {when} needs {notice_days} days' notice, "
                f"i.e. a request by {self._local(deadline)}; it was requested {self._local(requested)}, "
                f"{ahead:.1f} days ahead (an emergency cover needs both engineers and the team lead to agree)"
            )

    def with_swap(self, swap: Swap) -> Schedule:
        """This schedule plus ``swap`` (checked first)."""
        self.check_swap(swap)
        return Schedule(self.team, self.pipelines, [*self.swaps, swap], calendar=self.calendar)

    # ------------------------------------------------------------ helpers

    def _noon(self, day: dt.date) -> dt.datetime:
        return self.calendar.noon(day)

    def _local(self, ts: dt.datetime) -> str:
        return as_utc(ts).astimezone(self.tz).strftime("%a %Y-%m-%d %H:%M %Z")

    def local(self, ts: dt.datetime) -> dt.datetime:
        """``ts`` in the team's time zone (for display)."""
        return as_utc(ts).astimezone(self.tz)


def on_call_at(cfg: WorkbookConfig, at: dt.datetime, swaps: Sequence[Swap] = ()) -> OnCall:
    """Who is on call at ``at`` under ``cfg`` with the ``team.yml`` swaps and ``swaps`` applied."""
    return Schedule(cfg.team, cfg.pipelines, [*cfg.team.swaps, *swaps]).on_call_at(at)


# ---------------------------------------------------------------- the .ics calendar


@dataclass(frozen=True)
class CalendarEntry:
    """One event of the on-call calendar: an on-call week or a handoff meeting, who and when."""

    kind: str  # "on_call" | "handoff"
    engineers: tuple[str, ...]  # on call; or (outgoing, incoming) for a handoff
    start: dt.datetime
    end: dt.datetime


def calendar_entries(schedule: Schedule, weeks: Sequence[RotationWeek]) -> list[CalendarEntry]:
    """The events of ``weeks``: each on-call week, and a handoff meeting at each change of hands."""
    minutes = schedule.team.rotation.handoff_meeting_minutes
    out: list[CalendarEntry] = []
    for w in weeks:
        out.append(CalendarEntry("on_call", (w.engineer,), w.start, w.end))
        previous = schedule.week(w.index - 1).engineer
        if minutes and previous != w.engineer:
            out.append(
                CalendarEntry(
                    "handoff", (previous, w.engineer), w.start, w.start + dt.timedelta(minutes=minutes)
                )
            )
    return out


def schedule_ics(
    schedule: Schedule, weeks: Sequence[RotationWeek], *, stamp: dt.datetime, name: str = "Data team on-call"
) -> bytes:
    """An iCalendar file of ``weeks`` (on-call weeks and the Engagement rotation's handoff meetings).

    UIDs are stable (week and kind), so a subscribed calendar updates events in place when a swap
    changes a week; ``stamp`` is the DTSTAMP (the CLI passes the wall clock).
    """
    team = schedule.team
    cal = icalendar.Calendar()
    cal.add("prodid", ICS_PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    cal.add("x-wr-timezone", team.calendar.timezone)
    by_week = {w.start: w for w in weeks}
    for entry in calendar_entries(schedule, weeks):
        week = by_week[entry.start]
        ev = icalendar.Event()
        ev.add("uid", f"{entry.kind}-{week.week_of:%Y%m%d}@{ICS_DOMAIN}")
        ev.add("dtstamp", as_utc(stamp))
        ev.add("dtstart", schedule.local(entry.start))
        ev.add("dtend", schedule.local(entry.end))
        ev.add("x-workbook-kind", entry.kind)
        ev.add("x-workbook-engineers", ",".join(entry.engineers))
        for who in entry.engineers:
            person = team.engineers[who]
            ev.add("attendee", f"mailto:{person.email}", parameters={"CN": f"{who} ({person.name})"})
        if entry.kind == "on_call":
            ev.add("summary", f"On call: {week.engineer} ({team.engineers[week.engineer].name})")
            ev.add("transp", "TRANSPARENT")
            ev.add("description", _week_description(schedule, week))
            ev.add(
                "categories",
                [
                    "on-call",
                    *(["holiday"] if week.holidays else []),
                    *(["month-end"] if week.month_end_days else []),
                ],
            )
        else:
            outgoing, incoming = entry.engineers
            ev.add("summary", f"On-call handoff {outgoing} -> {incoming} (Engagement rotation, 30 min)")
            ev.add(
                "description",
                "Open alerts and incidents, SLAs at risk, what changed this week: "
                "notebooks/runbooks/oncall_handoff.ipynb",
            )
            ev.add("categories", ["on-call", "handoff"])
        cal.add_component(ev)
    cal.add_missing_timezones()
    return cal.to_ical()


def _week_description(schedule: Schedule, week: RotationWeek) -> str:
    lines = [f"{week.engineer} holds the pager for Profit, Engagement and the investor aggregate."]
    if week.swaps:
        lines.append(f"Swapped (scheduled: {week.scheduled}).")
    if week.holidays:
        names = ", ".join(f"{h.name} {h.date:%a %d %b}" for h in week.holidays)
        backups = [schedule.backup_for(p, week.start) for p in schedule.pipelines.pipelines]
        lines.append(
            f"Holiday week ({names}): backups: " + ", ".join(f"{b.pipeline}={b.who}" for b in backups) + "."
        )
    if week.month_end_days:
        lines.append(f"Month-end from {week.month_end_days[0]:%a %d %b}: everyone on deck.")
    return "\n".join(lines)


def entries_from_ics(data: bytes) -> list[CalendarEntry]:
    """Read the events :func:`schedule_ics` wrote back (who and when), in file order."""
    cal = icalendar.Calendar.from_ical(data)
    out = []
    for ev in cal.walk("VEVENT"):
        out.append(
            CalendarEntry(
                kind=str(ev["x-workbook-kind"]),
                engineers=tuple(str(ev["x-workbook-engineers"]).split(",")),
                start=as_utc(ev.decoded("dtstart")),
                end=as_utc(ev.decoded("dtend")),
            )
        )
    return out


# ---------------------------------------------------------------- load and compensation


@dataclass(frozen=True)
class EngineerLoad:
    """One engineer's share of ownership and on-call over a year, for the fairness view."""

    engineer: str
    primary_of: tuple[str, ...]
    secondary_of: tuple[str, ...]
    investor_pipelines: int  # investor pipelines owned (primary or secondary; team-owned not counted)
    on_call_weeks: int
    holiday_weeks: int  # on call in a week holding a major holiday
    holidays_on_call: int  # major holidays (actual days) spent on call: the comp ledger's entries
    backup_weeks: int  # holiday weeks on backup (Schedule.backup_for) without holding the pager
    month_end_days_on_call: int  # month-end days holding the pager (everyone is on deck then)

    def as_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def load_by_engineer(schedule: Schedule, year: int) -> list[EngineerLoad]:
    """Ownership, on-call weeks, holiday and month-end load per engineer for ``year``."""
    weeks = schedule.weeks_in_year(year)
    ledger = comp_ledger(schedule, year)
    month_end_days = [
        d
        for d in (dt.date(year, 1, 1) + dt.timedelta(days=i) for i in range(366))
        if d.year == year and schedule.is_month_end_day(d)
    ]
    month_end_holder = [schedule.engineer_at(schedule._noon(d)) for d in month_end_days]
    out = []
    for who in schedule.team.engineers:
        owned = [p for p in schedule.pipelines.pipelines.values() if not p.owners.team]
        backup = 0
        for w in weeks:
            if w.holiday_week and w.engineer != who:
                if who in {schedule.backup_for(pid, w.start).who for pid in schedule.pipelines.pipelines}:
                    backup += 1
        out.append(
            EngineerLoad(
                engineer=who,
                primary_of=tuple(p.id for p in owned if p.owners.primary == who),
                secondary_of=tuple(p.id for p in owned if p.owners.secondary == who),
                investor_pipelines=sum(
                    1
                    for p in owned
                    if p.feeds == "investors" and who in (p.owners.primary, p.owners.secondary)
                ),
                on_call_weeks=sum(1 for w in weeks if w.engineer == who),
                holiday_weeks=sum(1 for w in weeks if w.engineer == who and w.holiday_week),
                holidays_on_call=sum(1 for e in ledger if e.engineer == who),
                backup_weeks=backup,
                month_end_days_on_call=sum(1 for h in month_end_holder if h == who),
            )
        )
    return out


@dataclass(frozen=True)
class CompEntry:
    """A major holiday spent on call: who, which holiday, and their choice (``None``: not yet made)."""

    engineer: str
    holiday: str
    date: dt.date
    week_of: dt.date
    choice: str | None = None
    chosen_at: dt.datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "engineer": self.engineer,
            "holiday": self.holiday,
            "date": self.date.isoformat(),
            "week_of": self.week_of.isoformat(),
            "choice": self.choice,
            "chosen_at": self.chosen_at.isoformat() if self.chosen_at else None,
        }


def comp_ledger(
    schedule: Schedule,
    year: int,
    choices: Mapping[tuple[str, dt.date], tuple[str, dt.datetime]] | None = None,
) -> list[CompEntry]:
    """The holiday compensation ledger of ``year``: one entry per major holiday, for its on-call.

    The holiday is its actual date (not the observed weekday); whoever holds the pager at local
    noon that day earns a comp day or 1.5x pay. ``choices`` maps (engineer, date) to the recorded
    (choice, chosen_at).
    """
    choices = choices or {}
    out = []
    for h in major_holidays(schedule.team, [year]):
        if h.observed or h.date.year != year:
            continue
        week = schedule.week_at(schedule._noon(h.date))
        choice, chosen_at = choices.get((week.engineer, h.date), (None, None))
        out.append(CompEntry(week.engineer, h.name, h.date, week.week_of, choice, chosen_at))
    return out


def comp_summary(ledger: Sequence[CompEntry], loads: Sequence[EngineerLoad]) -> list[dict[str, Any]]:
    """Per engineer: holidays on call and what was chosen, beside holiday-backup and month-end load."""
    rows = []
    for load in loads:
        mine = [e for e in ledger if e.engineer == load.engineer]
        rows.append(
            {
                "engineer": load.engineer,
                "holidays_on_call": len(mine),
                "comp_day": sum(1 for e in mine if e.choice == "comp_day"),
                "pay_1_5x": sum(1 for e in mine if e.choice == "pay_1_5x"),
                "pending": sum(1 for e in mine if e.choice is None),
                "holiday_weeks": load.holiday_weeks,
                "backup_weeks": load.backup_weeks,
                "month_end_days_on_call": load.month_end_days_on_call,
            }
        )
    return rows


# ---------------------------------------------------------------- storage

oncall_comp_choices = sa.Table(
    "oncall_comp_choices",
    metadata,
    sa.Column("engineer", sa.String(32), primary_key=True),
    sa.Column("holiday_date", sa.String(10), primary_key=True),
    sa.Column("choice", sa.String(16), nullable=False),
    sa.Column("chosen_at", sa.DateTime(), nullable=False),  # naive UTC
)

register_tables(oncall_comp_choices)


def schedule_for(cfg: WorkbookConfig, *, engine: Engine | None = None) -> Schedule:
    """The schedule with the ``team.yml`` swaps and the recorded ones in effect applied.

    The ``team.yml`` swaps obey the same rules as recorded ones: a bad one is a configuration
    error naming it.
    """
    checked = Schedule(cfg.team, cfg.pipelines, [])
    for i, swap in enumerate(cfg.team.swaps):
        try:
            checked = checked.with_swap(swap)
        except SwapRefused as e:
            raise ConfigError(f"{cfg.directory / 'team.yml'}: swaps.{i}: {e}") from None
    return Schedule(cfg.team, cfg.pipelines, [*cfg.team.swaps, *stored_swaps(engine=engine)])


def record_swap(
    cfg: WorkbookConfig,
    a: str,
    b: str,
    week: dt.date,
    requested_at: dt.datetime,
    *,
    by: str | None = None,
    emergency: bool = False,
    approved_by: Sequence[str] = (),
    reason: str | None = None,
    engine: Engine | None = None,
) -> SwapRecord:
    """Check and store a swap of ``a`` and ``b`` in the rotation week holding ``week``.

    ``by`` (default ``a``) records it: one of the two engineers or the lead. With ``emergency``
    the notice period does not apply, but the week must not have started and ``a``, ``b`` and
    the lead must all agree (``by`` plus ``approved_by``). Raises :class:`SwapRefused` naming
    the rule (notice, nobody of the two on call, a repeat, a missing agreement, an unknown person).
    """
    engine = engine or get_engine()
    event = swapstore.request_event(
        cfg.team, a, b, requested_at, by=by, emergency=emergency, approved_by=approved_by, reason=reason
    )
    schedule = schedule_for(cfg, engine=engine)
    week_of = schedule.week(schedule.week_index_of_date(week)).week_of
    swap = Swap(week_of=week_of, a=a, b=b, requested_at=as_utc(requested_at))
    if any(s.week_of == week_of and {s.a, s.b} == {a, b} for s in schedule.swaps):
        raise SwapRefused(f"swap refused: {a} and {b} already swapped the week of {week_of}")
    schedule.check_swap(swap, notice_days=0 if emergency else None)
    swap_id = swapstore.store_swap(swap, event, engine=engine)
    return next(r for r in swapstore.swap_records(engine=engine) if r.swap_id == swap_id)


def cancel_swap(
    cfg: WorkbookConfig,
    swap_id: int,
    by: str,
    at: dt.datetime,
    *,
    reason: str | None = None,
    engine: Engine | None = None,
) -> SwapRecord:
    """Cancel recorded swap ``swap_id`` before its week starts; the cancellation is recorded.

    ``by`` is one of its two engineers or the lead. Refused (:class:`SwapRefused`) for an unknown
    or already cancelled swap, a week that has started, or when a later swap of that week only
    applies because of this one (cancel that one first).
    """
    engine = engine or get_engine()
    records = swapstore.swap_records(engine=engine)
    record = next((r for r in records if r.swap_id == swap_id), None)
    if record is None:
        known = ", ".join(r.ref for r in records) or "none recorded"
        raise SwapRefused(f"unknown swap {swap_id}; expected a recorded swap id ({known})")
    s = record.swap
    by = swapstore.person(cfg.team, by, "cancelled by")
    if by not in (s.a, s.b, LEAD):
        raise SwapRefused(
            f"cancel refused: swap {swap_id} is {s.a} <-> {s.b}; {by} is neither, nor the {LEAD}"
        )
    if record.cancellation is not None:
        c = record.cancellation
        raise SwapRefused(
            f"cancel refused: swap {swap_id} was already cancelled by {c.by} at {c.at:%Y-%m-%d %H:%M}Z"
        )
    schedule = schedule_for(cfg, engine=engine)
    week = schedule.week(schedule.week_index_of_date(s.week_of))
    if as_utc(at) >= week.start:
        raise SwapRefused(
            f"cancel refused: swap {swap_id} is for the week of {week.week_of}, which started "
            f"{schedule._local(week.start)}; a swap is cancelled before its week starts"
        )
    without = Schedule(
        cfg.team, cfg.pipelines, [x for x in schedule.swaps if x != s], calendar=schedule.calendar
    )
    still = without.week(week.index).swaps
    for other in week.swaps:
        if other != s and other not in still:
            ref = next((r.ref for r in records if r.swap == other and not r.cancelled), "in team.yml")
            raise SwapRefused(
                f"cancel refused: swap {ref} ({other.a} <-> {other.b}, same week) only applies after "
                f"swap {swap_id}; cancel swap {ref} first"
            )
    swapstore.add_swap_event(swap_id, SwapEvent("cancelled", by, as_utc(at), (), reason), engine=engine)
    return next(r for r in swapstore.swap_records(engine=engine) if r.swap_id == swap_id)


def stored_comp_choices(
    *, engine: Engine | None = None
) -> dict[tuple[str, dt.date], tuple[str, dt.datetime]]:
    with (engine or get_engine()).connect() as conn:
        rows = conn.execute(sa.select(oncall_comp_choices)).mappings().all()
    return {
        (r["engineer"], dt.date.fromisoformat(r["holiday_date"])): (r["choice"], as_utc(r["chosen_at"]))
        for r in rows
    }


def record_comp_choice(
    cfg: WorkbookConfig,
    engineer: str,
    day: dt.date,
    choice: str,
    chosen_at: dt.datetime,
    *,
    engine: Engine | None = None,
) -> CompEntry:
    """Record ``engineer``'s comp choice for the holiday on ``day`` (a later choice replaces it).

    Refused unless ``engineer`` was (or will be) on call on that major holiday.
    """
    if engineer not in cfg.team.engineers:
        raise ValueError(
            f"comp choice: unknown engineer {engineer!r}; expected one of {', '.join(cfg.team.engineers)}"
        )
    if choice not in cfg.team.oncall.comp_choices:
        raise ValueError(
            f"comp choice: expected one of {', '.join(cfg.team.oncall.comp_choices)}, got {choice!r}"
        )
    engine = engine or get_engine()
    ledger = comp_ledger(schedule_for(cfg, engine=engine), day.year)
    entry = next((e for e in ledger if e.engineer == engineer and e.date == day), None)
    if entry is None:
        mine = ", ".join(f"{e.date} ({e.holiday})" for e in ledger if e.engineer == engineer) or "none"
        raise ValueError(
            f"comp choice: {engineer} is not on call on a major holiday on {day}; "
            f"their {day.year} holidays on call: {mine}"
        )
    with engine.begin() as conn:
        conn.execute(
            oncall_comp_choices.delete().where(
                (oncall_comp_choices.c.engineer == engineer)
                & (oncall_comp_choices.c.holiday_date == day.isoformat())
            )
        )
        conn.execute(
            oncall_comp_choices.insert().values(
                engineer=engineer, holiday_date=day.isoformat(), choice=choice, chosen_at=naive_utc(chosen_at)
            )
        )
    return CompEntry(entry.engineer, entry.holiday, entry.date, entry.week_of, choice, as_utc(chosen_at))
