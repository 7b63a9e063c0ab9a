"""The escalation ladder of an alert, as pure functions of the alert, the schedule and a time.

:func:`plan` lists every step of an alert's ladder due by a time if nobody acknowledges (see
``oncall.escalation`` for the steps and the driving); :func:`due_steps` the ones to take at a
tick, given what the timeline already holds. Nothing here reads the database or sends anything.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from helpers.core.timeutil import as_utc
from helpers.oncall import routing
from helpers.oncall.notify import Recipient
from helpers.oncall.schedule import Schedule

# The event (``Message.event``) of the notification each notifying step sends.
EVENT_OF_STEP = {
    "notify": "trigger",
    "renotify": "renotify",
    "secondary": "escalate",
    "lead": "escalate",
    "cross_team": "cross_team",
}


class AlertLike(Protocol):
    """What the ladder needs of an alert (:class:`helpers.oncall.alerts.Alert` has all of it)."""

    @property
    def alert_id(self) -> int | str: ...
    @property
    def pipeline(self) -> str: ...
    @property
    def check_id(self) -> str: ...
    @property
    def catalogue_id(self) -> str | None: ...
    @property
    def severity(self) -> str: ...
    @property
    def opened_at(self) -> dt.datetime: ...
    @property
    def status(self) -> str: ...
    @property
    def acknowledged_at(self) -> dt.datetime | None: ...
    @property
    def resolved_at(self) -> dt.datetime | None: ...
    @property
    def summary(self) -> str: ...
    @property
    def runbook(self) -> str | None: ...


@dataclass(frozen=True)
class Step:
    """One rung of an alert's ladder: what, when it is due, and who it reaches."""

    key: str
    step: str
    due_at: dt.datetime
    recipients: tuple[Recipient, ...] = ()
    detail: str = ""


def _renotify_index(key: str) -> int:
    return int(key.split(":", 1)[1]) if key.startswith("renotify:") else 0


def plan(schedule: Schedule, alert: AlertLike, *, until: dt.datetime) -> list[Step]:
    """Every step of ``alert``'s ladder due by ``until`` if nobody acknowledges, in time order."""
    team = schedule.team
    esc = team.escalation
    until = as_utc(until)
    opened = as_utc(alert.opened_at)
    clock = routing.watch_clock(schedule, alert.pipeline)
    first = routing.route(schedule, alert.pipeline, opened)
    steps = [Step("opened", "opened", opened, detail=f"[{alert.severity}] {alert.check_id}: {alert.summary}")]
    if first.deferred:
        steps.append(
            Step(
                "deferred",
                "deferred",
                opened,
                detail=f"no emergency on-call for {alert.pipeline}: first notification at "
                f"{schedule.local(first.notify_at):%a %Y-%m-%d %H:%M %Z}",
            )
        )
    if first.notify_at > until:
        return steps
    steps.append(Step("notify", "notify", first.notify_at, first.recipients, first.reason))

    joins: list[tuple[dt.datetime, Recipient]] = [(first.notify_at, r) for r in first.recipients]
    secondary_at = clock.advance(opened, esc.secondary_after_minutes)
    if secondary_at <= until:
        # the secondary owner, or whoever backs up when that is the person paged first
        r = routing.recipient(team, schedule.backup_for(alert.pipeline, secondary_at).who, "secondary")
        steps.append(
            Step(
                "secondary",
                "secondary",
                secondary_at,
                (r,),
                f"still open after {esc.secondary_after_minutes} min",
            )
        )
        joins.append((secondary_at, r))
    lead_at = clock.advance(opened, esc.lead_after_minutes)
    if lead_at <= until:
        r = routing.team_lead(team)
        steps.append(Step("lead", "lead", lead_at, (r,), f"still open after {esc.lead_after_minutes} min"))
        joins.append((lead_at, r))
    cause = esc.cross_team.get(alert.catalogue_id or "")
    if cause:
        cross_at = clock.advance(opened, esc.cross_team_after_minutes)
        if cross_at <= until:
            team_name = team.contacts[cause].team
            steps.append(
                Step(
                    f"cross_team:{cause}",
                    "cross_team",
                    cross_at,
                    (routing.contact(team, cause),),
                    f"cross-team cause ({alert.catalogue_id}): looping in {team_name}",
                )
            )

    t, k = clock.advance(opened, esc.ack_minutes), 1
    while t <= until:
        engaged = {r.key: r for at, r in joins if at < t}
        steps.append(
            Step(
                f"renotify:{k}",
                "renotify",
                t,
                tuple(engaged.values()),
                f"not acknowledged after {round(clock.elapsed(opened, t).total_seconds() / 60)} min",
            )
        )
        t, k = clock.advance(t, esc.renotify_minutes), k + 1
    return sorted(steps, key=lambda s: (s.due_at, _ORDER.get(s.step, 9)))


_ORDER = {"opened": 0, "deferred": 1, "notify": 2, "cross_team": 3, "secondary": 4, "lead": 5, "renotify": 6}


def due_steps(
    schedule: Schedule,
    alert: AlertLike,
    *,
    as_of: dt.datetime,
    done: Iterable[str] = (),
    acknowledged_at: dt.datetime | None = None,
) -> list[Step]:
    """The steps to take at ``as_of``: due, not ``done`` (timeline keys), ladder not stopped.

    An acknowledgement (or resolution) at or before ``as_of`` stops every notification; of the
    reminders missed since the last one sent, only the latest is sent.
    """
    as_of = as_utc(as_of)
    done = set(done)
    stopped = any(
        ts is not None and as_utc(ts) <= as_of
        for ts in (acknowledged_at, alert.acknowledged_at, alert.resolved_at)
    )
    steps = [s for s in plan(schedule, alert, until=as_of) if s.key not in done]
    if stopped:
        return [s for s in steps if not s.recipients and s.step in ("opened", "deferred")]
    last_sent = max((_renotify_index(k) for k in done), default=0)
    reminders = [s for s in steps if s.step == "renotify" and _renotify_index(s.key) > last_sent]
    keep = [s for s in steps if s.step != "renotify"] + reminders[-1:]
    return sorted(keep, key=lambda s: (s.due_at, _ORDER.get(s.step, 9)))
