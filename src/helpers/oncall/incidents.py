"""Incidents: an alert that needs work, with a fix deadline from the pipeline's SLA.

An alert opens an incident when it is critical (at its first notification) or when someone
acknowledges it (any severity: acknowledging says "this needs work"). Alerts that are themselves
about a deadline (``sla_at_risk``, ``upstream_at_risk``) never open one, or the SLA monitor would
feed itself. One incident per alert; opening it again is a no-op.

The fix deadline counts from the alert's ``opened_at`` (when the problem was detected):

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
    sa.Index("ix_incidents_status", "status"),
)

register_tables(incidents)


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

    def time_left(self, as_of: dt.datetime) -> dt.timedelta:
        return self.fix_deadline - as_utc(as_of)

    def at_risk(self, as_of: dt.datetime, *, within: dt.timedelta = dt.timedelta(hours=24)) -> bool:
        """Open, and the deadline is within ``within`` (the plan: 24 h before) or already passed."""
        return self.status == "open" and self.time_left(as_of) <= within

    def as_json(self, as_of: dt.datetime | None = None) -> dict[str, Any]:
        out = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in self.__dict__.items()}
        if as_of is not None:
            out["hours_left"] = round(self.time_left(as_of).total_seconds() / 3600, 1)
            out["at_risk"] = self.at_risk(as_of)
        return out

    @classmethod
    def from_row(cls, row: Any) -> Incident:
        values = dict(row)
        for k in ("opened_at", "fix_deadline", "resolved_at"):
            values[k] = as_utc(values[k]) if values[k] is not None else None
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
