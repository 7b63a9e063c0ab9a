"""Driving each alert's escalation ladder, acknowledgement and resolution, and the alert timeline.

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

The steps and when they are due are computed in ``oncall.ladder`` (pure); this module takes them.
An acknowledgement stops the ladder; resolving closes the alert and its incident. ``workbook
escalate --as-of TS`` (the scheduler's tick) computes the steps due by ``as_of`` from the alert,
the schedule and the timeline, claims each step in ``alert_timeline`` (unique per alert, step and
person, so two ticks never send the same step twice) and then sends it; running it again at the
same ``as_of`` does nothing. A tick that comes late sends only the latest reminder it missed, not
every one. The timeline records every step: ``opened``, ``deferred`` (waiting for business
hours), the notifications, ``ack`` and ``resolve``.

Alerts come from the ``alerts`` table (:mod:`helpers.oncall.alerts`) through :class:`WarehouseAlerts`; anything with the
fields of :class:`~helpers.oncall.ladder.AlertLike` works (tests use :class:`MemoryAlerts`).

A notification can carry more lines about its alert: the caller passes an ``annotate`` function
(alert id -> lines; the CLI passes the runbook registry's diagnosis and its link), since the
runbooks sit above on-call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from helpers.core.config import WorkbookConfig
from helpers.core.timeutil import as_utc, naive_utc
from helpers.oncall import alerts, routing
from helpers.oncall import incidents as incmod
from helpers.oncall.ladder import EVENT_OF_STEP, AlertLike, Step, due_steps
from helpers.oncall.notify import Message, Notifier, Recipient
from helpers.oncall.schedule import Schedule, schedule_for
from helpers.storage.warehouse import get_engine, metadata, register_tables

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

register_tables(alert_timeline)

# Lines a notification about an alert adds, by alert id (see the module doc).
Annotator = Callable[[int | str], Sequence[str]]


# ---------------------------------------------------------------- where alerts live


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
        return list(alerts.list_alerts(open_only=True, limit=10_000, engine=self.engine))

    def get(self, alert_id: str) -> AlertLike | None:
        return alerts.get_alert(self._id(alert_id), engine=self.engine)

    def acknowledge(self, alert_id: str, *, by: str, at: dt.datetime) -> None:
        alerts.acknowledge(self._id(alert_id), by=by, at=at, engine=self.engine)

    def resolve(self, alert_id: str, *, at: dt.datetime, note: str) -> None:
        alerts.resolve(self._id(alert_id), at=at, note=note, engine=self.engine)


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


def message_for(
    schedule: Schedule,
    alert: AlertLike,
    step: Step,
    *,
    event: str | None = None,
    annotate: Annotator | None = None,
) -> Message:
    """The notification text of one step of ``alert`` (with ``annotate``'s lines for a stored alert)."""
    event = event or EVENT_OF_STEP.get(step.step, step.step)
    prefix = {
        "renotify": "Reminder, not acknowledged: ",
        "escalate": "Escalated: ",
        "cross_team": "Data team needs your help: ",
        "acknowledge": "Acknowledged: ",
        "resolve": "Resolved: ",
    }.get(event, "")
    subject = f"{prefix}[{alert.severity}] {alert.pipeline}: {alert.summary} (alert {alert.alert_id})"
    stored = annotate is not None and str(alert.alert_id).isdigit()
    diagnosis = tuple(annotate(alert.alert_id)) if stored else ()  # e.g. the pre-executed diagnosis
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
    annotate: Annotator | None = None,
) -> list[TimelineEntry]:
    """Take the steps of one alert due at ``as_of``; returns the timeline entries written."""
    alert_id = str(alert.alert_id)
    past = timeline(alert_id, engine=engine)
    steps = due_steps(
        schedule, alert, as_of=as_of, done={e.step_key for e in past}, acknowledged_at=_acked_at(past)
    )
    written: list[TimelineEntry] = []
    for step in steps:
        message = message_for(schedule, alert, step, annotate=annotate) if step.recipients else None
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
    annotate: Annotator | None = None,
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
        written.extend(
            escalate_alert(cfg, schedule, alert, as_of, notifier=notifier, engine=engine, annotate=annotate)
        )
    written.extend(
        close_resolved(cfg, schedule, store, as_of, notifier=notifier, engine=engine, annotate=annotate)
    )
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
    annotate: Annotator | None = None,
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
        notifier.send(
            message_for(schedule, alert, step, event="resolve", annotate=annotate), engaged, at=as_of
        )
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
    annotate: Annotator | None = None,
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
        notifier.send(
            message_for(schedule, alert, step, event="acknowledge", annotate=annotate), engaged, at=at
        )
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
    annotate: Annotator | None = None,
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
        notifier.send(message_for(schedule, alert, step, event="resolve", annotate=annotate), engaged, at=at)
    return entry


# ---------------------------------------------------------------- the scheduler's tick


def scheduler_hook(
    *,
    as_of: dt.datetime,
    now: dt.datetime,
    pipelines: Sequence[str],
    config: WorkbookConfig,
    annotate: Annotator | None = None,
) -> None:
    """A scheduler tick hook (``runs.scheduler.tick``'s ``hooks``): escalate at every tick.

    Channels come from the environment like ``workbook escalate``; ``pipelines`` is ignored (every
    open alert climbs its ladder whichever pipelines this scheduler runs).
    """
    import time

    from helpers.oncall.notify import channels_from_env

    notifier = Notifier(
        channels_from_env(config.team.notify), policy=config.team.notify.retry, sleep=time.sleep
    )
    escalate(config, WarehouseAlerts(), as_of, notifier=notifier, annotate=annotate)
