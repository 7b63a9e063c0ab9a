"""The escalation ladder of each alert, acknowledgement and resolution, and the alert timeline.

The plan's "When Things Go Wrong" (docs/plan.md), per alert, on the pipeline's watched time
(``routing.WatchClock``: real time for the weekly rotation, business time plus month-end days for
Growth):

==============  ====================================================================
``notify``      the routed people (``routing.route``), at once or at the next watched instant
``renotify``    everyone engaged so far, when not acknowledged ``ack_minutes`` (30) after
                opening and every ``renotify_minutes`` (30) after that
``secondary``   the pipeline's secondary owner joins after ``secondary_after_minutes`` (2 h)
``lead``        the team lead after ``lead_after_minutes`` (4 h)
``cross_team``  the contact of a cross-team cause (``escalation.cross_team`` maps the alert's
                failure-catalogue id to a contact) after ``cross_team_after_minutes`` (0)
==============  ====================================================================

An acknowledgement stops the ladder; resolving closes the alert and its incident. ``workbook
escalate --as-of TS`` (the scheduler's tick) computes the steps due by ``as_of`` from the alert,
the schedule and the timeline, claims each step in ``alert_timeline`` (unique per alert, step and
person, so two ticks never send the same step twice) and then sends it; running it again at the
same ``as_of`` does nothing. A tick that comes late sends only the latest reminder it missed, not
every one. The timeline records every step: ``opened``, ``deferred`` (waiting for business
hours), the notifications, ``ack`` and ``resolve``.

Alerts come from issue 4's ``alerts`` table through :class:`WarehouseAlerts`; anything with the
fields of :class:`AlertLike` works (tests use :class:`MemoryAlerts`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from helpers.core.config import WorkbookConfig
from helpers.core.timeutil import as_utc, naive_utc
from helpers.oncall import incidents as incmod
from helpers.oncall import routing
from helpers.oncall.notify import Message, Notifier, Recipient
from helpers.oncall.schedule import Schedule, schedule_for
from helpers.storage.warehouse import get_engine, metadata

alert_timeline = sa.Table(
    "alert_timeline",
    metadata,
    sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(), nullable=False),  # naive UTC: when it happened (the tick's as_of)
    sa.Column(
        "step", sa.String(24), nullable=False
    ),  # opened|deferred|notify|renotify|secondary|lead|cross_team|ack|resolve|incident
    sa.Column("who", sa.String(64), nullable=False, default=""),
    sa.Column("channel", sa.String(120), nullable=False, default=""),  # channels used, comma-separated
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("step_key", sa.String(64), nullable=False),  # e.g. notify, renotify:3
    sa.Column("due_at", sa.DateTime(), nullable=True),  # when the ladder made it due
    sa.UniqueConstraint("alert_id", "step_key", "who", name="ux_alert_timeline_step"),
    sa.Index("ix_alert_timeline_alert", "alert_id"),
)

EVENT_OF_STEP = {
    "notify": "trigger",
    "renotify": "renotify",
    "secondary": "escalate",
    "lead": "escalate",
    "cross_team": "cross_team",
}


# ---------------------------------------------------------------- alerts


class AlertLike(Protocol):
    """What the ladder needs of an alert (issue 4's ``alerts.Alert`` has all of it)."""

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
class AlertRecord:
    """A plain alert (tests, drills, anything without the ``alerts`` table)."""

    alert_id: str
    pipeline: str
    check_id: str
    severity: str
    opened_at: dt.datetime
    summary: str = ""
    catalogue_id: str | None = None
    runbook: str | None = None
    status: str = "open"
    acknowledged_at: dt.datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: dt.datetime | None = None
    resolution: str | None = None
    kind: str = "domain"


class AlertStore(Protocol):
    """Where alerts live: list the active ones, find one, acknowledge and resolve."""

    def active(self) -> list[AlertLike]: ...
    def get(self, alert_id: str) -> AlertLike | None: ...
    def acknowledge(self, alert_id: str, *, by: str, at: dt.datetime) -> None: ...
    def resolve(self, alert_id: str, *, at: dt.datetime, note: str) -> None: ...


@dataclass
class MemoryAlerts:
    """An in-memory :class:`AlertStore` of :class:`AlertRecord` s."""

    alerts: dict[str, AlertRecord] = field(default_factory=dict)

    def add(self, *alerts: AlertRecord) -> MemoryAlerts:
        for a in alerts:
            self.alerts[str(a.alert_id)] = a
        return self

    def active(self) -> list[AlertLike]:
        return [a for a in self.alerts.values() if a.status != "resolved"]

    def get(self, alert_id: str) -> AlertLike | None:
        return self.alerts.get(str(alert_id))

    def acknowledge(self, alert_id: str, *, by: str, at: dt.datetime) -> None:
        a = self.alerts[str(alert_id)]
        if a.status == "open":
            self.alerts[str(alert_id)] = replace(
                a, status="acknowledged", acknowledged_at=at, acknowledged_by=by
            )

    def resolve(self, alert_id: str, *, at: dt.datetime, note: str) -> None:
        a = self.alerts[str(alert_id)]
        if a.status != "resolved":
            self.alerts[str(alert_id)] = replace(a, status="resolved", resolved_at=at, resolution=note)


class WarehouseAlerts:
    """Issue 4's ``alerts`` table as an :class:`AlertStore` (alert ids are integers there)."""

    def __init__(self, *, engine: Engine | None = None) -> None:
        self.engine = engine

    @staticmethod
    def _id(alert_id: str) -> int:
        try:
            return int(alert_id)
        except ValueError:
            raise ValueError(
                f"alert id: expected a number as listed by `workbook alerts`, got {alert_id!r}"
            ) from None

    def active(self) -> list[AlertLike]:
        from helpers.oncall import alerts

        return list(alerts.list_alerts(open_only=True, limit=10_000, engine=self.engine))

    def get(self, alert_id: str) -> AlertLike | None:
        from helpers.oncall import alerts

        return alerts.get_alert(self._id(alert_id), engine=self.engine)

    def acknowledge(self, alert_id: str, *, by: str, at: dt.datetime) -> None:
        from helpers.oncall import alerts

        alerts.acknowledge(self._id(alert_id), by=by, at=at, engine=self.engine)

    def resolve(self, alert_id: str, *, at: dt.datetime, note: str) -> None:
        from helpers.oncall import alerts

        alerts.resolve(self._id(alert_id), at=at, note=note, engine=self.engine)


# ---------------------------------------------------------------- the ladder (pure)


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
        who = schedule.secondary_for(alert.pipeline, secondary_at)
        r = routing.engineer(team, who, "secondary")
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


# ---------------------------------------------------------------- the timeline


@dataclass(frozen=True)
class TimelineEntry:
    alert_id: str
    at: dt.datetime
    step: str
    who: str
    channel: str
    detail: str
    step_key: str
    due_at: dt.datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in self.__dict__.items()}


def timeline(alert_id: str, *, engine: Engine | None = None) -> list[TimelineEntry]:
    """The alert's timeline in order."""
    q = (
        sa.select(alert_timeline)
        .where(alert_timeline.c.alert_id == str(alert_id))
        .order_by(alert_timeline.c.at, alert_timeline.c.entry_id)
    )
    with (engine or get_engine()).connect() as conn:
        rows = conn.execute(q).mappings().all()
    return [
        TimelineEntry(
            alert_id=r["alert_id"],
            at=as_utc(r["at"]),
            step=r["step"],
            who=r["who"],
            channel=r["channel"],
            detail=r["detail"],
            step_key=r["step_key"],
            due_at=as_utc(r["due_at"]) if r["due_at"] is not None else None,
        )
        for r in rows
    ]


def _claim(entries: Sequence[TimelineEntry], engine: Engine) -> bool:
    """Insert the entries of one step atomically; False when another tick already recorded it."""
    try:
        with engine.begin() as conn:
            conn.execute(
                alert_timeline.insert(),
                [
                    dict(
                        alert_id=e.alert_id,
                        at=naive_utc(e.at),
                        step=e.step,
                        who=e.who,
                        channel=e.channel,
                        detail=e.detail,
                        step_key=e.step_key,
                        due_at=naive_utc(e.due_at),
                    )
                    for e in entries
                ],
            )
        return True
    except IntegrityError:
        return False


# ---------------------------------------------------------------- messages


def message_for(schedule: Schedule, alert: AlertLike, step: Step, *, event: str | None = None) -> Message:
    """The notification text of one step of ``alert``."""
    event = event or EVENT_OF_STEP.get(step.step, step.step)
    prefix = {
        "renotify": "Reminder, not acknowledged: ",
        "escalate": "Escalated: ",
        "cross_team": "Data team needs your help: ",
        "acknowledge": "Acknowledged: ",
        "resolve": "Resolved: ",
    }.get(event, "")
    subject = f"{prefix}[{alert.severity}] {alert.pipeline}: {alert.summary} (alert {alert.alert_id})"
    from helpers.runbooks import registry as runbooks  # the pre-executed diagnosis travels with every page

    diagnosis = tuple(runbooks.notification_lines(alert.alert_id)) if str(alert.alert_id).isdigit() else ()
    body = "\n".join(
        line
        for line in (
            step.detail,
            f"check: {alert.check_id}"
            + (f" (failure catalogue: {alert.catalogue_id})" if alert.catalogue_id else ""),
            f"opened: {schedule.local(alert.opened_at):%a %Y-%m-%d %H:%M %Z}",
            f"runbook: {alert.runbook}" if alert.runbook else "",
            *diagnosis,
            f"acknowledge: workbook ack {alert.alert_id} --by YOU"
            if event in ("trigger", "renotify", "escalate")
            else "",
        )
        if line
    )
    return Message(
        alert_id=str(alert.alert_id),
        event=event,
        subject=subject,
        body=body,
        pipeline=alert.pipeline,
        severity=alert.severity,
        step=step.key,
        runbook=alert.runbook,
    )


# ---------------------------------------------------------------- driving it


def _acked_at(entries: Sequence[TimelineEntry]) -> dt.datetime | None:
    return next((e.at for e in entries if e.step == "ack"), None)


def escalate_alert(
    cfg: WorkbookConfig,
    schedule: Schedule,
    alert: AlertLike,
    as_of: dt.datetime,
    *,
    notifier: Notifier,
    engine: Engine,
) -> list[TimelineEntry]:
    """Take the steps of one alert due at ``as_of``; returns the timeline entries written."""
    alert_id = str(alert.alert_id)
    past = timeline(alert_id, engine=engine)
    steps = due_steps(
        schedule, alert, as_of=as_of, done={e.step_key for e in past}, acknowledged_at=_acked_at(past)
    )
    written: list[TimelineEntry] = []
    for step in steps:
        message = message_for(schedule, alert, step) if step.recipients else None
        channels = ",".join(notifier.channel_names(message, step.recipients)) if message else ""
        # "opened" and "deferred" happened when the alert opened; notifications happen now
        when = step.due_at if message is None else as_utc(as_of)
        entries = [
            TimelineEntry(
                alert_id,
                when,
                step.step,
                r.key,
                channels,
                f"{r.role}: {step.detail}",
                step.key,
                step.due_at,
            )
            for r in step.recipients
        ] or [TimelineEntry(alert_id, when, step.step, "", "", step.detail, step.key, step.due_at)]
        if not _claim(entries, engine):
            continue
        written.extend(entries)
        if message is not None:
            notifier.send(message, step.recipients, at=as_of)
    notified = any(e.step_key == "notify" for e in past) or any(e.step_key == "notify" for e in written)
    known = alert.pipeline in cfg.pipelines.pipelines  # an unconfigured pipeline has no fix SLA
    if (
        known
        and notified
        and incmod.needs_incident(getattr(alert, "kind", None), alert.severity, acknowledged=False)
    ):
        written.extend(_ensure_incident(schedule, alert, "critical", as_of, engine))
    return written


def escalate(
    cfg: WorkbookConfig,
    store: AlertStore,
    as_of: dt.datetime,
    *,
    notifier: Notifier,
    engine: Engine | None = None,
    schedule: Schedule | None = None,
) -> list[TimelineEntry]:
    """One tick of every active alert's ladder at ``as_of`` (idempotent for the same ``as_of``).

    Also closes the loop on notified alerts that were resolved elsewhere (a passing check), and
    retries deliveries that failed on earlier ticks. Alerts opened after ``as_of`` are left for a
    later tick.
    """
    engine = engine or get_engine()
    schedule = schedule or schedule_for(cfg, engine=engine)
    as_of = as_utc(as_of)
    written: list[TimelineEntry] = []
    for alert in sorted(store.active(), key=lambda a: (as_utc(a.opened_at), str(a.alert_id))):
        if as_utc(alert.opened_at) > as_of:
            continue
        written.extend(escalate_alert(cfg, schedule, alert, as_of, notifier=notifier, engine=engine))
    written.extend(close_resolved(cfg, schedule, store, as_of, notifier=notifier, engine=engine))
    notifier.redeliver(at=as_of)
    return written


def close_resolved(
    cfg: WorkbookConfig,
    schedule: Schedule,
    store: AlertStore,
    as_of: dt.datetime,
    *,
    notifier: Notifier,
    engine: Engine,
) -> list[TimelineEntry]:
    """Record and announce the resolution of notified alerts resolved outside ``workbook resolve``.

    A passing check resolves its alert in the alerts table; the people paged (and PagerDuty's
    incident, by ``dedup_key``) hear of it here, and the alert's incident closes.
    """
    q = sa.select(alert_timeline.c.alert_id, alert_timeline.c.step).where(
        alert_timeline.c.step.in_(("notify", "resolve"))
    )
    with engine.connect() as conn:
        rows = conn.execute(q.distinct()).all()
    notified = {a for a, step in rows if step == "notify"}
    closed = {a for a, step in rows if step == "resolve"}
    out: list[TimelineEntry] = []
    for alert_id in sorted(notified - closed):
        try:
            alert = store.get(alert_id)
        except ValueError:  # an id from another store (e.g. a drill's in-memory alerts)
            continue
        if alert is None or alert.resolved_at is None or as_utc(alert.resolved_at) > as_of:
            continue
        note = getattr(alert, "resolution", None) or "resolved"
        entry = TimelineEntry(alert_id, as_utc(alert.resolved_at), "resolve", "", "", note, "resolve")
        if not _claim([entry], engine):
            continue
        out.append(entry)
        incmod.resolve_incident(alert_id, at=alert.resolved_at, note=note, engine=engine)
        step = Step("resolve", "resolve", as_utc(alert.resolved_at), detail=f"resolved: {note}")
        engaged = _engaged(cfg, timeline(alert_id, engine=engine))
        notifier.send(message_for(schedule, alert, step, event="resolve"), engaged, at=as_of)
    return out


def _ensure_incident(
    schedule: Schedule, alert: AlertLike, reason: str, at: dt.datetime, engine: Engine
) -> list[TimelineEntry]:
    incident, new = incmod.open_incident(
        schedule,
        alert_id=str(alert.alert_id),
        pipeline=alert.pipeline,
        severity=alert.severity,
        summary=alert.summary,
        opened_at=alert.opened_at,
        reason=reason,
        check_id=alert.check_id,
        catalogue_id=alert.catalogue_id,
        engine=engine,
    )
    if not new:
        return []
    entry = TimelineEntry(
        str(alert.alert_id),
        as_utc(at),
        "incident",
        "",
        "",
        f"incident {incident.incident_id} opened ({reason}); fix by "
        f"{schedule.local(incident.fix_deadline):%a %Y-%m-%d %H:%M %Z}",
        "incident",
        incident.fix_deadline,
    )
    return [entry] if _claim([entry], engine) else []


def _engaged(cfg: WorkbookConfig, entries: Sequence[TimelineEntry]) -> list[Recipient]:
    keys = dict.fromkeys(e.who for e in entries if e.who and e.step in EVENT_OF_STEP)
    return [routing.recipient(cfg.team, k) for k in keys]


def _get(store: AlertStore, alert_id: str) -> AlertLike:
    alert = store.get(str(alert_id))
    if alert is None:
        raise LookupError(f"no alert {alert_id}; `workbook alerts` lists them")
    return alert


def acknowledge(
    cfg: WorkbookConfig,
    store: AlertStore,
    alert_id: str,
    *,
    at: dt.datetime,
    by: str | None = None,
    notifier: Notifier,
    engine: Engine | None = None,
) -> TimelineEntry:
    """Acknowledge an alert: the ladder stops, an incident opens, the engaged people hear of it.

    ``by`` defaults to the first person notified (else whoever the alert routes to now). A second
    acknowledgement returns the first one unchanged.
    """
    engine = engine or get_engine()
    schedule = schedule_for(cfg, engine=engine)
    alert = _get(store, alert_id)
    past = timeline(str(alert_id), engine=engine)
    previous = next((e for e in past if e.step == "ack"), None)
    if previous is not None:
        return previous
    if alert.status == "resolved":
        raise ValueError(
            f"alert {alert_id} is already resolved (at {alert.resolved_at}); nothing to acknowledge"
        )
    if by is None:
        first = next((e.who for e in past if e.step_key == "notify"), None)
        by = first or routing.route(schedule, alert.pipeline, at).recipients[0].key
    person = routing.recipient(cfg.team, by)  # validates the name
    entry = TimelineEntry(
        str(alert_id), as_utc(at), "ack", person.key, "cli", f"acknowledged by {person.label}", "ack"
    )
    if not _claim([entry], engine):
        return next(e for e in timeline(str(alert_id), engine=engine) if e.step == "ack")
    store.acknowledge(str(alert_id), by=person.key, at=at)
    known = alert.pipeline in cfg.pipelines.pipelines
    if known and incmod.needs_incident(getattr(alert, "kind", None), alert.severity, acknowledged=True):
        _ensure_incident(schedule, alert, "acknowledged", at, engine)
    step = Step("ack", "ack", as_utc(at), detail=f"acknowledged by {person.label}")
    engaged = _engaged(cfg, past)
    if engaged:
        notifier.send(message_for(schedule, alert, step, event="acknowledge"), engaged, at=at)
    return entry


def resolve(
    cfg: WorkbookConfig,
    store: AlertStore,
    alert_id: str,
    *,
    note: str,
    at: dt.datetime,
    by: str | None = None,
    notifier: Notifier,
    engine: Engine | None = None,
) -> TimelineEntry:
    """Resolve an alert with a note: the alert, its incident and the PagerDuty incident close."""
    if not note or not note.strip():
        raise ValueError("resolve: --note is required (what was wrong and what fixed it)")
    engine = engine or get_engine()
    schedule = schedule_for(cfg, engine=engine)
    alert = _get(store, alert_id)
    past = timeline(str(alert_id), engine=engine)
    previous = next((e for e in past if e.step == "resolve"), None)
    if previous is not None:
        return previous
    who = routing.recipient(cfg.team, by).key if by else ""
    entry = TimelineEntry(str(alert_id), as_utc(at), "resolve", who, "cli", note.strip(), "resolve")
    if not _claim([entry], engine):
        return next(e for e in timeline(str(alert_id), engine=engine) if e.step == "resolve")
    if alert.status != "resolved":
        store.resolve(str(alert_id), at=at, note=note.strip())
    incmod.resolve_incident(str(alert_id), at=at, note=note.strip(), engine=engine)
    engaged = _engaged(cfg, past)
    if engaged:
        step = Step("resolve", "resolve", as_utc(at), detail=f"resolved: {note.strip()}")
        notifier.send(message_for(schedule, alert, step, event="resolve"), engaged, at=at)
    return entry


# ---------------------------------------------------------------- the scheduler's tick and the handoff


def scheduler_hook(
    *, as_of: dt.datetime, now: dt.datetime, pipelines: Sequence[str], config: WorkbookConfig
) -> None:
    """``scheduler.TICK_HOOKS`` entry ``"helpers.oncall.escalation:scheduler_hook"``: escalate at every tick.

    Channels come from the environment like ``workbook escalate``; ``pipelines`` is ignored (every
    open alert climbs its ladder whichever pipelines this scheduler runs).
    """
    import time

    from helpers.oncall.notify import channels_from_env

    notifier = Notifier(
        channels_from_env(config.team.notify), policy=config.team.notify.retry, sleep=time.sleep
    )
    escalate(config, WarehouseAlerts(), as_of, notifier=notifier)


@dataclass(frozen=True)
class HandoffBrief:
    """What the on-call handoff meeting goes through (``notebooks/runbooks/oncall_handoff.ipynb``)."""

    as_of: dt.datetime
    handoff_at: dt.datetime
    outgoing: str
    incoming: str
    meeting_minutes: int
    incoming_week: Any  # oncall.RotationWeek
    open_alerts: list[dict[str, Any]]
    incidents: list[dict[str, Any]]
    at_risk: list[dict[str, Any]]
    this_week: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        """JSON-able figures for the record cell."""
        return {
            "as_of": self.as_of.isoformat(),
            "handoff_at": self.handoff_at.isoformat(),
            "outgoing": self.outgoing,
            "incoming": self.incoming,
            "holidays": [h.name for h in self.incoming_week.holidays],
            "month_end_days": len(self.incoming_week.month_end_days),
            "open_alerts": len(self.open_alerts),
            "open_incidents": len(self.incidents),
            "at_risk": len(self.at_risk),
            "timeline_entries_this_week": len(self.this_week),
        }


def handoff_brief(
    cfg: WorkbookConfig,
    as_of: dt.datetime,
    *,
    store: AlertStore | None = None,
    engine: Engine | None = None,
    lookback_days: int = 7,
) -> HandoffBrief:
    """The handoff nearest ``as_of`` (this Monday's or the coming one): who, and what is open.

    Open alerts (opened by ``as_of``), open incidents with their fix deadlines, what is at risk
    (incidents within ``monitors.sla_at_risk_hours`` of their deadline and open ``sla_at_risk`` /
    ``upstream_at_risk`` alerts), and the timeline of the last ``lookback_days`` days.
    """
    engine = engine or get_engine()
    store = store or WarehouseAlerts(engine=engine)
    schedule = schedule_for(cfg, engine=engine)
    as_of = as_utc(as_of)
    index = schedule.week_index(as_of)
    if schedule.handoff(index + 1) - as_of < as_of - schedule.handoff(index):
        index += 1
    incoming = schedule.week(index)
    within = dt.timedelta(hours=cfg.pipelines.monitors.sla_at_risk_hours)
    alerts = [a for a in store.active() if as_utc(a.opened_at) <= as_of]
    open_alerts = [
        {
            "alert_id": str(a.alert_id),
            "pipeline": a.pipeline,
            "severity": a.severity,
            "status": a.status,
            "opened_at": as_utc(a.opened_at),
            "age_hours": round((as_of - as_utc(a.opened_at)).total_seconds() / 3600, 1),
            "summary": a.summary,
            "runbook": a.runbook,
        }
        for a in sorted(alerts, key=lambda a: as_utc(a.opened_at))
    ]
    open_inc = incmod.open_incidents(as_of, engine=engine)
    incidents_rows = [
        {
            "incident_id": i.incident_id,
            "alert_id": i.alert_id,
            "pipeline": i.pipeline,
            "fix_deadline": i.fix_deadline,
            "hours_left": round(i.time_left(as_of).total_seconds() / 3600, 1),
            "at_risk": i.at_risk(as_of, within=within),
            "summary": i.summary,
        }
        for i in open_inc
    ]
    at_risk = [
        {"what": f"incident {r['incident_id']} (alert {r['alert_id']})", "pipeline": r["pipeline"],
         "deadline": r["fix_deadline"], "summary": r["summary"]}
        for r in incidents_rows
        if r["at_risk"]
    ] + [
        {"what": f"alert {a.alert_id} ({getattr(a, 'kind', '')})", "pipeline": a.pipeline, "deadline": None,
         "summary": a.summary}
        for a in alerts
        if getattr(a, "kind", "") in incmod.NO_INCIDENT_KINDS
    ]  # fmt: skip
    since = as_of - dt.timedelta(days=lookback_days)
    q = (
        sa.select(alert_timeline)
        .where(alert_timeline.c.at > naive_utc(since), alert_timeline.c.at <= naive_utc(as_of))
        .order_by(alert_timeline.c.at, alert_timeline.c.entry_id)
    )
    with engine.connect() as conn:
        week_rows = [
            {
                "alert_id": r["alert_id"],
                "at": as_utc(r["at"]),
                "step": r["step"],
                "who": r["who"],
                "detail": r["detail"],
            }
            for r in conn.execute(q).mappings().all()
        ]
    return HandoffBrief(
        as_of=as_of,
        handoff_at=incoming.start,
        outgoing=schedule.week(index - 1).engineer,
        incoming=incoming.engineer,
        meeting_minutes=cfg.team.rotation.handoff_meeting_minutes,
        incoming_week=incoming,
        open_alerts=open_alerts,
        incidents=incidents_rows,
        at_risk=at_risk,
        this_week=week_rows,
    )
