"""Incidents: one per cause, with its alerts as symptoms, an owner and a fix deadline from the SLA.

Alerts that share a cause (:mod:`helpers.oncall.causes`: a late source, a failing pipeline, a data
check of its own) belong to one incident: the escalation tick (``oncall.escalation.escalate``)
groups every active alert, opens an incident for a new cause with its first alert as *lead* (the
alert that routes it and whose timeline carries its ladder), and attaches the others as
*symptoms* (``incident_alerts``). An incident's severity is the worst of its alerts; it lists the
pipelines feeding investors its cause reaches (``at_risk``). It resolves when all its alerts have
(a passing check, or ``workbook resolve``); a cause failing again within
``escalation.reopen_within_minutes`` of that re-opens the same incident (a flap) instead of
opening a new one. Acknowledging any of its alerts acknowledges the incident.

The fix deadline counts from the incident's ``opened_at`` (when the problem was detected), on the
SLA of the lead alert's pipeline:

- ``weekly_rotation`` pipelines: the end (local midnight) of the ``sla.fix_business_days``-th
  business day after the day it opened (``businesscal.BusinessCalendar.fix_deadline``): Profit 3,
  Engagement 5 ("one week");
- ``business_hours`` pipelines (Growth, "fix issues during business hours within 2 days"):
  ``fix_business_days`` x the business day's length of business hours from the opening, e.g. an
  alert opened Monday 10:00 is due Wednesday 10:00, one opened on Saturday by Tuesday 17:00.

:func:`open_incidents` gives the "SLA at risk" monitor each open incident with its deadline.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from helpers.core.timeutil import as_utc, naive_utc
from helpers.oncall.routing import WatchClock
from helpers.oncall.schedule import Schedule
from helpers.storage.warehouse import get_engine, metadata, register_tables

NO_INCIDENT_KINDS = ("sla_at_risk", "upstream_at_risk")  # as alerts.NO_FIX_DEADLINE_KINDS

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("incident_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.String(64), nullable=False, unique=True),
    sa.Column("pipeline", sa.String(64), nullable=False),
    sa.Column("check_id", sa.String(160), nullable=True),
    sa.Column("catalogue_id", sa.String(40), nullable=True),
    sa.Column("severity", sa.String(8), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),  # critical | acknowledged
    sa.Column("opened_at", sa.DateTime(), nullable=False),  # naive UTC: the alert's opened_at
    sa.Column("fix_deadline", sa.DateTime(), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # open | resolved
    sa.Column("resolved_at", sa.DateTime(), nullable=True),
    sa.Column("resolution", sa.Text, nullable=True),
    sa.Column("cause_key", sa.String(200), nullable=True),  # helpers.oncall.causes.Cause.key
    sa.Column("cause", sa.Text, nullable=True),  # the cause in words
    sa.Column("acknowledged_at", sa.DateTime(), nullable=True),
    sa.Column("acknowledged_by", sa.String(64), nullable=True),
    sa.Column("at_risk", sa.Text, nullable=True),  # JSON: pipelines feeding investors it reaches
    sa.Index("ix_incidents_status", "status"),
    sa.Index("ix_incidents_cause", "cause_key"),
)

# Which alerts belong to which incident: its lead (the alert whose timeline carries the ladder) and
# its symptoms, with when each joined.
incident_alerts = sa.Table(
    "incident_alerts",
    metadata,
    sa.Column("incident_id", sa.Integer, primary_key=True),
    sa.Column("alert_id", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(8), nullable=False),  # lead | symptom
    sa.Column("joined_at", sa.DateTime(), nullable=False),  # naive UTC (the tick's as_of)
    sa.Index("ix_incident_alerts_alert", "alert_id"),
)

register_tables(incidents, incident_alerts)


@dataclass(frozen=True)
class Incident:
    """One incident with aware UTC times."""

    incident_id: int
    alert_id: str
    pipeline: str
    check_id: str | None
    catalogue_id: str | None
    severity: str
    summary: str
    reason: str
    opened_at: dt.datetime
    fix_deadline: dt.datetime
    status: str
    resolved_at: dt.datetime | None
    resolution: str | None
    cause_key: str | None = None
    cause: str | None = None
    acknowledged_at: dt.datetime | None = None
    acknowledged_by: str | None = None
    at_risk: tuple[str, ...] = ()

    def time_left(self, as_of: dt.datetime) -> dt.timedelta:
        return self.fix_deadline - as_utc(as_of)

    def as_json(self, as_of: dt.datetime | None = None) -> dict[str, Any]:
        out = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in self.__dict__.items()}
        out["at_risk"] = list(self.at_risk)
        if as_of is not None:
            out["hours_left"] = round(self.time_left(as_of).total_seconds() / 3600, 1)
            out["deadline_at_risk"] = self.deadline_at_risk(as_of)
        return out

    def deadline_at_risk(self, as_of: dt.datetime, *, within: dt.timedelta = dt.timedelta(hours=24)) -> bool:
        """Open, and the deadline is within ``within`` (the plan: 24 h before) or already passed."""
        return self.status == "open" and self.time_left(as_of) <= within

    @classmethod
    def from_row(cls, row: Any) -> Incident:
        values = dict(row)
        for k in ("opened_at", "fix_deadline", "resolved_at", "acknowledged_at"):
            values[k] = as_utc(values[k]) if values.get(k) is not None else None
        values["at_risk"] = tuple(json.loads(values.get("at_risk") or "[]"))
        return cls(**values)


def fix_deadline(schedule: Schedule, pipeline_id: str, opened_at: dt.datetime) -> dt.datetime:
    """When a problem opened at ``opened_at`` must be fixed by (see the module doc)."""
    p = schedule.pipelines.get(pipeline_id)
    days = p.sla.fix_business_days
    cal = schedule.calendar
    if p.sla.oncall_mode == "business_hours":
        day = dt.date(2000, 1, 3)
        length = dt.datetime.combine(day, cal.business_end) - dt.datetime.combine(day, cal.business_start)
        clock = WatchClock(schedule, always=False, month_end=False)
        return clock.advance(opened_at, days * length.total_seconds() / 60, at_close=True)
    return cal.fix_deadline(opened_at, days)


def needs_incident(kind: str | None, severity: str, *, acknowledged: bool) -> bool:
    """Whether an alert needs an incident: critical or acknowledged, and not a deadline alert itself."""
    if (kind or "") in NO_INCIDENT_KINDS:
        return False
    return acknowledged or severity == "critical"


def get_incident(alert_id: str, *, engine: Engine | None = None) -> Incident | None:
    with (engine or get_engine()).connect() as conn:
        row = (
            conn.execute(sa.select(incidents).where(incidents.c.alert_id == str(alert_id))).mappings().first()
        )
    return Incident.from_row(row) if row else None


def open_incident(
    schedule: Schedule,
    *,
    alert_id: str,
    pipeline: str,
    severity: str,
    summary: str,
    opened_at: dt.datetime,
    reason: str,
    check_id: str | None = None,
    catalogue_id: str | None = None,
    engine: Engine | None = None,
) -> tuple[Incident, bool]:
    """The alert's incident, opening it if needed; returns ``(incident, newly_opened)``."""
    engine = engine or get_engine()
    existing = get_incident(alert_id, engine=engine)
    if existing is not None:
        return existing, False
    values = dict(
        alert_id=str(alert_id),
        pipeline=pipeline,
        check_id=check_id,
        catalogue_id=catalogue_id,
        severity=severity,
        summary=summary,
        reason=reason,
        opened_at=naive_utc(opened_at),
        fix_deadline=naive_utc(fix_deadline(schedule, pipeline, opened_at)),
        status="open",
    )
    try:
        with engine.begin() as conn:
            conn.execute(incidents.insert().values(**values))
    except IntegrityError:  # opened concurrently by another process
        pass
    incident = get_incident(alert_id, engine=engine)
    assert incident is not None
    return incident, True


def resolve_incident(
    alert_id: str, *, at: dt.datetime, note: str, engine: Engine | None = None
) -> Incident | None:
    """Close the alert's incident (if it has an open one)."""
    engine = engine or get_engine()
    with engine.begin() as conn:
        conn.execute(
            incidents.update()
            .where((incidents.c.alert_id == str(alert_id)) & (incidents.c.status == "open"))
            .values(status="resolved", resolved_at=naive_utc(at), resolution=note)
        )
    return get_incident(alert_id, engine=engine)


def list_incidents(*, open_only: bool = False, engine: Engine | None = None) -> list[Incident]:
    """Incidents by deadline (``open_only``: status open)."""
    q = sa.select(incidents)
    if open_only:
        q = q.where(incidents.c.status == "open")
    q = q.order_by(incidents.c.fix_deadline, incidents.c.incident_id)
    with (engine or get_engine()).connect() as conn:
        return [Incident.from_row(r) for r in conn.execute(q).mappings().all()]


def open_incidents(as_of: dt.datetime, *, engine: Engine | None = None) -> list[Incident]:
    """Incidents open at ``as_of`` (opened by then, not resolved by then), soonest deadline first.

    This is what the "SLA at risk" monitor reads: each has ``fix_deadline`` and ``at_risk(as_of)``.
    """
    as_of = as_utc(as_of)
    out = []
    for inc in list_incidents(engine=engine):
        if inc.opened_at <= as_of and (inc.resolved_at is None or inc.resolved_at > as_of):
            out.append(inc if inc.status == "open" else _reopened(inc))
    return out


def _reopened(inc: Incident) -> Incident:
    # Seen from an as_of before its resolution, a resolved incident was still open.
    return Incident(**{**inc.__dict__, "status": "open", "resolved_at": None, "resolution": None})


# ---------------------------------------------------------------- incidents by cause


def _one(q: sa.Select, engine: Engine) -> Incident | None:
    with engine.connect() as conn:
        row = conn.execute(q.limit(1)).mappings().first()
    return Incident.from_row(row) if row else None


def get_incident_by_id(incident_id: int, *, engine: Engine | None = None) -> Incident | None:
    """One incident by its number (``None``: there is none)."""
    return _one(
        sa.select(incidents).where(incidents.c.incident_id == int(incident_id)), engine or get_engine()
    )


def incident_for_cause(
    cause_key: str, *, as_of: dt.datetime, reopen_within: dt.timedelta, engine: Engine | None = None
) -> Incident | None:
    """The open incident of a cause, else the one resolved at most ``reopen_within`` before ``as_of``
    (a flap: the caller re-opens it), else ``None``."""
    engine = engine or get_engine()
    mine = incidents.c.cause_key == cause_key
    found = _one(sa.select(incidents).where(mine & (incidents.c.status == "open")), engine)
    if found is not None:
        return found
    since = naive_utc(as_utc(as_of) - reopen_within)
    q = sa.select(incidents).where(
        mine & (incidents.c.status == "resolved") & (incidents.c.resolved_at >= since)
    )
    return _one(q.order_by(incidents.c.resolved_at.desc()), engine)


def open_for_cause(
    schedule: Schedule,
    *,
    cause_key: str,
    cause: str,
    lead_alert_id: str,
    pipeline: str,
    severity: str,
    opened_at: dt.datetime,
    at: dt.datetime,
    check_id: str | None = None,
    catalogue_id: str | None = None,
    at_risk: Sequence[str] = (),
    engine: Engine | None = None,
) -> tuple[Incident, bool]:
    """The incident of ``lead_alert_id``, opening it for ``cause_key`` if needed: ``(incident, new)``."""
    engine = engine or get_engine()
    values = dict(
        alert_id=str(lead_alert_id), pipeline=pipeline, check_id=check_id, catalogue_id=catalogue_id,
        severity=severity, summary=cause, reason="cause", opened_at=naive_utc(opened_at),
        fix_deadline=naive_utc(fix_deadline(schedule, pipeline, opened_at)), status="open",
        cause_key=cause_key, cause=cause, at_risk=json.dumps(list(at_risk)),
    )  # fmt: skip
    new = True
    try:
        with engine.begin() as conn:
            incident_id = conn.execute(incidents.insert().values(**values)).inserted_primary_key[0]
            conn.execute(incident_alerts.insert().values(incident_id=incident_id, alert_id=str(lead_alert_id),
                                                         role="lead", joined_at=naive_utc(at)))  # fmt: skip
    except IntegrityError:  # opened concurrently by another tick
        new = False
    incident = get_incident(str(lead_alert_id), engine=engine)
    assert incident is not None
    return incident, new


def attach(incident_id: int, alert_id: str, *, at: dt.datetime, engine: Engine | None = None) -> bool:
    """Add an alert to an incident as a symptom; False when it already belongs to one."""
    try:
        with (engine or get_engine()).begin() as conn:
            taken = conn.execute(
                sa.select(incident_alerts.c.incident_id).where(incident_alerts.c.alert_id == str(alert_id))
            ).first()
            if taken is not None:
                return False
            conn.execute(incident_alerts.insert().values(incident_id=incident_id, alert_id=str(alert_id),
                                                         role="symptom", joined_at=naive_utc(at)))  # fmt: skip
        return True
    except IntegrityError:
        return False


def members(incident_id: int, *, engine: Engine | None = None) -> list[tuple[str, str]]:
    """``(alert_id, role)`` of every alert of an incident, the lead first, then in joining order."""
    q = (
        sa.select(incident_alerts.c.alert_id, incident_alerts.c.role)
        .where(incident_alerts.c.incident_id == int(incident_id))
        .order_by((incident_alerts.c.role != "lead"), incident_alerts.c.joined_at, incident_alerts.c.alert_id)
    )
    with (engine or get_engine()).connect() as conn:
        return [(str(a), str(r)) for a, r in conn.execute(q).all()]


def memberships(*, engine: Engine | None = None) -> dict[str, Incident]:
    """Every alert that belongs to an incident, with that incident."""
    with (engine or get_engine()).connect() as conn:
        links = conn.execute(sa.select(incident_alerts.c.alert_id, incident_alerts.c.incident_id)).all()
        rows = conn.execute(sa.select(incidents)).mappings().all()
    by_id = {int(r["incident_id"]): Incident.from_row(r) for r in rows}
    return {
        str(alert_id): by_id[int(incident_id)] for alert_id, incident_id in links if int(incident_id) in by_id
    }


def incident_of(alert_id: str, *, engine: Engine | None = None) -> Incident | None:
    """The incident an alert belongs to (lead or symptom), if any."""
    engine = engine or get_engine()
    q = sa.select(incidents).join(incident_alerts, incident_alerts.c.incident_id == incidents.c.incident_id)
    return _one(q.where(incident_alerts.c.alert_id == str(alert_id)), engine) or get_incident(
        alert_id, engine=engine
    )


def update(incident_id: int, *, engine: Engine | None = None, **values: Any) -> None:
    """Set columns of an incident (``severity``, ``at_risk`` as a list, ``summary``)."""
    if "at_risk" in values:
        values["at_risk"] = json.dumps(list(values["at_risk"]))
    with (engine or get_engine()).begin() as conn:
        conn.execute(incidents.update().where(incidents.c.incident_id == int(incident_id)).values(**values))


def reopen(incident_id: int, *, engine: Engine | None = None) -> None:
    """A flap: the resolved incident is open again (its deadline and its timeline continue)."""
    update(incident_id, status="open", resolved_at=None, resolution=None, engine=engine)


def acknowledge_incident(incident_id: int, *, by: str, at: dt.datetime, engine: Engine | None = None) -> bool:
    """Mark an open incident acknowledged (the first acknowledgement counts); True if it was not yet."""
    with (engine or get_engine()).begin() as conn:
        done = conn.execute(
            incidents.update()
            .where((incidents.c.incident_id == int(incident_id)) & incidents.c.acknowledged_at.is_(None))
            .values(acknowledged_at=naive_utc(at), acknowledged_by=by)
        ).rowcount
    return bool(done)


def resolve_incident_id(
    incident_id: int, *, at: dt.datetime, note: str, engine: Engine | None = None
) -> bool:
    """Resolve an open incident with a note; True if it was open."""
    with (engine or get_engine()).begin() as conn:
        done = conn.execute(
            incidents.update()
            .where((incidents.c.incident_id == int(incident_id)) & (incidents.c.status == "open"))
            .values(status="resolved", resolved_at=naive_utc(at), resolution=note)
        ).rowcount
    return bool(done)
