"""Driving each incident's escalation ladder, acknowledgement and resolution.

Only incidents page: at every tick the active alerts are grouped into incidents, one per cause
(``oncall.grouping``, ``oncall.causes``), and each open incident climbs one ladder, recorded on the
timeline of its lead alert. The plan's "When Things Go Wrong" (docs/plan.md), per incident, on the
lead pipeline's watched time (``routing.WatchClock``: real time for the weekly rotation, business
time plus month-end days for Growth):

==============  ====================================================================
``notify``      the routed people (``routing.route``), at once or at the next watched instant
``renotify``    everyone engaged so far, when not acknowledged ``ack_minutes`` (30) after
                opening and every ``renotify_minutes`` (30) after that
``secondary``   the pipeline's secondary owner joins after ``secondary_after_minutes`` (2 h)
``lead``        the team lead after ``lead_after_minutes`` (4 h)
``cross_team``  the contact of a cross-team cause (``escalation.cross_team`` maps the lead alert's
                failure-catalogue id to a contact) after ``cross_team_after_minutes`` (0)
==============  ====================================================================

The steps and when they are due are computed in ``oncall.ladder`` (pure); this module takes them.
A new symptom joining an open incident pages nobody. Acknowledging any alert of an incident stops
its ladder; an incident resolves when all its alerts have, and everyone it paged hears so once.
``workbook escalate --as-of TS`` (and ``workbook tick``, the scheduler's tick) computes the steps
due by ``as_of``, claims each step in ``alert_timeline`` (unique per alert, step and person, so two
ticks never send the same step twice) and then sends it; running it again at the same ``as_of``
does nothing. A tick that comes late sends only the latest reminder it missed, not every one.

Alerts come from the ``alerts`` table (:mod:`helpers.oncall.alerts`) through :class:`WarehouseAlerts`;
anything with the fields of :class:`~helpers.oncall.ladder.AlertLike` works (tests use
:class:`MemoryAlerts`). An alert of a pipeline outside the configuration (no SLA, no owner) climbs
a ladder of its own.

A notification can carry more lines about its alert: the caller passes an ``annotate`` function
(alert id -> lines; the CLI passes the runbook registry's diagnosis and its link), since the
runbooks sit above on-call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from helpers.core.config import WorkbookConfig
from helpers.core.timeutil import as_utc
from helpers.oncall import alerts, grouping, routing
from helpers.oncall import incidents as incmod
from helpers.oncall.ladder import EVENT_OF_STEP, AlertLike, Step, due_steps
from helpers.oncall.notify import Message, Notifier, Recipient
from helpers.oncall.schedule import Schedule, schedule_for
from helpers.oncall.timeline import TimelineEntry, alert_timeline, claim, timeline
from helpers.storage.warehouse import get_engine

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
    incident = alert.lines() if isinstance(alert, grouping.IncidentSubject) else []
    ref = alert.reference if isinstance(alert, grouping.IncidentSubject) else f"alert {alert.alert_id}"
    subject = f"{prefix}[{alert.severity}] {alert.pipeline}: {alert.summary} ({ref})"
    stored = annotate is not None and str(alert.alert_id).isdigit()
    diagnosis = tuple(annotate(alert.alert_id)) if stored else ()  # e.g. the pre-executed diagnosis
    body = "\n".join(
        line
        for line in (
            step.detail,
            *incident,
            f"check: {alert.check_id}"
            + (f" (failure catalogue: {alert.catalogue_id})" if alert.catalogue_id else ""),
            f"opened: {schedule.local(alert.opened_at):%a %Y-%m-%d %H:%M %Z}",
            f"runbook: {alert.runbook}" if alert.runbook else "",
            *diagnosis,
            f"acknowledge: workbook ack {alert.alert_id} --by YOU"
            + (
                f" (acknowledges incident {alert.incident_id})"
                if isinstance(alert, grouping.IncidentSubject)
                else ""
            )
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
    """Take the steps of one ladder (an incident's, or a lone alert's) due at ``as_of``; returns the
    timeline entries written."""
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
                alert_id, when, step.step, r.key, channels, f"{r.role}: {step.detail}", step.key, step.due_at
            )
            for r in step.recipients
        ] or [TimelineEntry(alert_id, when, step.step, "", "", step.detail, step.key, step.due_at)]
        if not claim(entries, engine):
            continue
        written.extend(entries)
        if message is not None:
            notifier.send(message, step.recipients, at=as_of)
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
    """One tick at ``as_of`` (idempotent for the same ``as_of``): group the active alerts into
    incidents, one per cause (``oncall.grouping``), climb each open incident's ladder, close the
    incidents whose alerts all resolved (telling whoever was paged), and retry deliveries that
    failed on earlier ticks. Alerts opened after ``as_of`` are left for a later tick; an alert of a
    pipeline outside the configuration (no SLA, no owner) climbs a ladder of its own.
    """
    engine = engine or get_engine()
    schedule = schedule or schedule_for(cfg, engine=engine)
    as_of = as_utc(as_of)
    active = sorted((a for a in store.active() if as_utc(a.opened_at) <= as_of),
                    key=lambda a: (as_utc(a.opened_at), _numeric(a.alert_id)))  # fmt: skip
    lookup = _lookup(store)
    subjects, changes = grouping.incident_subjects(cfg, schedule, active, as_of, lookup=lookup, engine=engine)
    lone: list[AlertLike] = [a for a in active if a.pipeline not in cfg.pipelines.pipelines]
    written: list[TimelineEntry] = []
    for subject in [*subjects, *lone]:
        if subject.status == "resolved":
            continue
        written.extend(
            escalate_alert(cfg, schedule, subject, as_of, notifier=notifier, engine=engine, annotate=annotate)
        )
    written.extend(e for e in changes if claim([e], engine))
    written.extend(close_resolved(cfg, schedule, store, as_of, notifier=notifier, engine=engine, annotate=annotate,
                                  active=[str(a.alert_id) for a in active]))  # fmt: skip
    notifier.redeliver(at=as_of)
    return written


def group(
    cfg: WorkbookConfig,
    store: AlertStore,
    as_of: dt.datetime,
    *,
    engine: Engine | None = None,
    schedule: Schedule | None = None,
) -> list[grouping.IncidentSubject]:
    """Group the active alerts into incidents at ``as_of`` without paging anyone (``workbook close``
    does, so that it lists the incidents its checks opened); the next tick pages them."""
    engine = engine or get_engine()
    schedule = schedule or schedule_for(cfg, engine=engine)
    as_of = as_utc(as_of)
    active = sorted((a for a in store.active() if as_utc(a.opened_at) <= as_of),
                    key=lambda a: (as_utc(a.opened_at), _numeric(a.alert_id)))  # fmt: skip
    subjects, changes = grouping.incident_subjects(
        cfg, schedule, active, as_of, lookup=_lookup(store), engine=engine
    )
    for entry in changes:
        claim([entry], engine)
    return subjects


def _numeric(alert_id: int | str) -> tuple[int, str]:
    text = str(alert_id)
    return (int(text) if text.isdigit() else 0, text)


def _lookup(store: AlertStore) -> grouping.Lookup:
    def get(alert_id: str) -> AlertLike | None:
        try:
            return store.get(str(alert_id))
        except ValueError:  # an id from another store (e.g. a drill's in-memory alerts)
            return None

    return get


def close_resolved(
    cfg: WorkbookConfig,
    schedule: Schedule,
    store: AlertStore,
    as_of: dt.datetime,
    *,
    notifier: Notifier,
    engine: Engine,
    annotate: Annotator | None = None,
    active: Sequence[str] | None = None,
) -> list[TimelineEntry]:
    """Resolve the open incidents none of whose alerts is active any more (their checks pass, or
    someone resolved them): the incident closes, its lead's timeline says so, and everyone it
    paged hears it once; a lone alert (outside the configuration) the same way."""
    active = [str(a.alert_id) for a in store.active()] if active is None else list(active)
    lookup = _lookup(store)
    out: list[TimelineEntry] = []
    for inc, resolved_at, note in grouping.finished_incidents(active, as_of, lookup=lookup, engine=engine):
        lead = lookup(inc.alert_id)
        entry = TimelineEntry(inc.alert_id, resolved_at, "resolve", "", "", note, "resolve")
        incmod.resolve_incident_id(inc.incident_id, at=resolved_at, note=note, engine=engine)
        if not claim([entry], engine):
            continue
        out.append(entry)
        subject = grouping.subject_of(inc.incident_id, lead, engine=engine)
        _announce_resolution(cfg, schedule, subject, note, resolved_at, as_of, notifier, engine, annotate)
    out.extend(_close_lone(cfg, schedule, store, as_of, notifier=notifier, engine=engine, annotate=annotate))
    return out


def _announce_resolution(cfg: WorkbookConfig, schedule: Schedule, subject: AlertLike, note: str,
                         resolved_at: dt.datetime, as_of: dt.datetime, notifier: Notifier, engine: Engine,
                         annotate: Annotator | None) -> None:  # fmt: skip
    engaged = _engaged(cfg, timeline(str(subject.alert_id), engine=engine))
    if engaged:
        step = Step("resolve", "resolve", resolved_at, detail=f"resolved: {note}")
        notifier.send(
            message_for(schedule, subject, step, event="resolve", annotate=annotate), engaged, at=as_of
        )


def _close_lone(
    cfg: WorkbookConfig,
    schedule: Schedule,
    store: AlertStore,
    as_of: dt.datetime,
    *,
    notifier: Notifier,
    engine: Engine,
    annotate: Annotator | None,
) -> list[TimelineEntry]:
    """Announce the resolution of notified alerts that are in no incident (outside the configuration)."""
    q = sa.select(alert_timeline.c.alert_id, alert_timeline.c.step).where(
        alert_timeline.c.step.in_(("notify", "resolve"))
    )
    with engine.connect() as conn:
        rows = conn.execute(q.distinct()).all()
    notified = {a for a, step in rows if step == "notify"}
    closed = {a for a, step in rows if step == "resolve"}
    in_incidents = set(incmod.memberships(engine=engine)) | {
        i.alert_id for i in incmod.list_incidents(engine=engine)
    }
    out: list[TimelineEntry] = []
    for alert_id in sorted(notified - closed - in_incidents, key=_numeric):
        alert = _lookup(store)(alert_id)
        if alert is None or alert.resolved_at is None or as_utc(alert.resolved_at) > as_of:
            continue
        note = getattr(alert, "resolution", None) or "resolved"
        entry = TimelineEntry(alert_id, as_utc(alert.resolved_at), "resolve", "", "", note, "resolve")
        if claim([entry], engine):
            out.append(entry)
            _announce_resolution(cfg, schedule, alert, note, as_utc(alert.resolved_at), as_of, notifier, engine,
                                 annotate)  # fmt: skip
    return out


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
    note: str | None = None,
) -> TimelineEntry:
    """Acknowledge an alert and so its incident: the incident's ladder stops, its other alerts are
    acknowledged too, and the people it engaged hear who took it.

    ``by`` defaults to the first person notified (else whoever the alert routes to now). A second
    acknowledgement returns the first one unchanged. An alert not yet in an incident (before the
    first tick) is acknowledged alone; the incident it joins at the next tick starts acknowledged.
    """
    engine = engine or get_engine()
    schedule = schedule_for(cfg, engine=engine)
    alert = _get(store, alert_id)
    inc = incmod.incident_of(str(alert_id), engine=engine)
    ladder = inc.alert_id if inc is not None else str(alert_id)
    past = timeline(ladder, engine=engine)
    previous = next((e for e in timeline(str(alert_id), engine=engine) if e.step == "ack"), None)
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
    what = f"acknowledged by {person.label}" + (f" (incident {inc.incident_id})" if inc is not None else "")
    what += f": {note.strip()}" if note and note.strip() else ""
    entry = TimelineEntry(str(alert_id), as_utc(at), "ack", person.key, "cli", what, "ack")
    if not claim([entry], engine):
        return next(e for e in timeline(str(alert_id), engine=engine) if e.step == "ack")
    store.acknowledge(str(alert_id), by=person.key, at=at)
    subject: AlertLike = alert
    if inc is not None:
        first_ack = incmod.acknowledge_incident(inc.incident_id, by=person.key, at=at, engine=engine)
        if ladder != str(alert_id):
            claim([TimelineEntry(ladder, as_utc(at), "ack", person.key, "cli", what, "ack")], engine)
        for other, _role in incmod.members(inc.incident_id, engine=engine):
            found = _lookup(store)(other)
            if found is not None and found.status == "open":
                store.acknowledge(other, by=person.key, at=at)
        if not first_ack:
            return entry  # the incident was acknowledged already: its people know
        subject = grouping.subject_of(inc.incident_id, _lookup(store)(inc.alert_id), engine=engine)
    engaged = _engaged(cfg, past)
    if engaged:
        step = Step("ack", "ack", as_utc(at), detail=what)
        notifier.send(
            message_for(schedule, subject, step, event="acknowledge", annotate=annotate), engaged, at=at
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
    """Resolve an alert with a note. Its incident resolves with it when no other alert of the
    incident is still active (the people it paged hear so, and PagerDuty's incident closes)."""
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
    if not claim([entry], engine):
        return next(e for e in timeline(str(alert_id), engine=engine) if e.step == "resolve")
    if alert.status != "resolved":
        store.resolve(str(alert_id), at=at, note=note.strip())
    inc = incmod.incident_of(str(alert_id), engine=engine)
    if inc is None or inc.status != "open":
        _announce_resolution(cfg, schedule, alert, note.strip(), as_utc(at), at, notifier, engine, annotate)
        return entry
    lookup = _lookup(store)
    others = [a for a, _r in incmod.members(inc.incident_id, engine=engine) if a != str(alert_id)]
    if any((o := lookup(a)) is not None and o.status != "resolved" for a in others):
        return entry  # a symptom resolved; the incident goes on
    incmod.resolve_incident_id(inc.incident_id, at=at, note=note.strip(), engine=engine)
    if inc.alert_id != str(alert_id):
        claim(
            [TimelineEntry(inc.alert_id, as_utc(at), "resolve", who, "cli", note.strip(), "resolve")], engine
        )
    subject = grouping.subject_of(inc.incident_id, lookup(inc.alert_id), engine=engine)
    _announce_resolution(cfg, schedule, subject, note.strip(), as_utc(at), at, notifier, engine, annotate)
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
