"""The on-call handoff brief: who hands over to whom, and what is open, at risk and what changed.

``notebooks/runbooks/oncall_handoff.ipynb`` goes through it at the weekly handoff meeting.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from helpers.core.config import WorkbookConfig
from helpers.core.timeutil import as_utc, naive_utc
from helpers.oncall import incidents as incmod
from helpers.oncall.escalation import AlertStore, WarehouseAlerts, alert_timeline
from helpers.oncall.ladder import AlertLike
from helpers.oncall.schedule import Schedule, schedule_for
from helpers.storage.warehouse import get_engine


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
    index = nearest_handoff(schedule, as_of)
    incoming = schedule.week(index)
    within = dt.timedelta(hours=cfg.pipelines.monitors.sla_at_risk_hours)
    alerts = [a for a in store.active() if as_utc(a.opened_at) <= as_of]
    incidents = incident_rows(as_of, within=within, engine=engine)
    return HandoffBrief(
        as_of=as_of,
        handoff_at=incoming.start,
        outgoing=schedule.week(index - 1).engineer,
        incoming=incoming.engineer,
        meeting_minutes=cfg.team.rotation.handoff_meeting_minutes,
        incoming_week=incoming,
        open_alerts=open_alert_rows(alerts, as_of),
        incidents=incidents,
        at_risk=at_risk_rows(incidents, alerts),
        this_week=timeline_rows(as_of - dt.timedelta(days=lookback_days), as_of, engine=engine),
    )


def nearest_handoff(schedule: Schedule, as_of: dt.datetime) -> int:
    """The rotation week whose handoff is nearest ``as_of`` (on a Friday: the coming Monday's)."""
    index = schedule.week_index(as_of)
    if schedule.handoff(index + 1) - as_of < as_of - schedule.handoff(index):
        index += 1
    return index


def open_alert_rows(alerts: Sequence[AlertLike], as_of: dt.datetime) -> list[dict[str, Any]]:
    """One row per open alert, oldest first, with its age at ``as_of``."""
    return [
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


def incident_rows(as_of: dt.datetime, *, within: dt.timedelta, engine: Engine) -> list[dict[str, Any]]:
    """One row per incident open at ``as_of``: its deadline, hours left and whether it is at risk."""
    return [
        {
            "incident_id": i.incident_id,
            "alert_id": i.alert_id,
            "pipeline": i.pipeline,
            "fix_deadline": i.fix_deadline,
            "hours_left": round(i.time_left(as_of).total_seconds() / 3600, 1),
            "at_risk": i.deadline_at_risk(as_of, within=within),
            "summary": i.summary,
        }
        for i in incmod.open_incidents(as_of, engine=engine)
    ]


def at_risk_rows(incidents: Sequence[dict[str, Any]], alerts: Sequence[AlertLike]) -> list[dict[str, Any]]:
    """What is at risk: incidents near their deadline, then the open deadline alerts themselves."""
    return [
        {"what": f"incident {r['incident_id']} (alert {r['alert_id']})", "pipeline": r["pipeline"],
         "deadline": r["fix_deadline"], "summary": r["summary"]}
        for r in incidents
        if r["at_risk"]
    ] + [
        {"what": f"alert {a.alert_id} ({getattr(a, 'kind', '')})", "pipeline": a.pipeline, "deadline": None,
         "summary": a.summary}
        for a in alerts
        if getattr(a, "kind", "") in incmod.NO_INCIDENT_KINDS
    ]  # fmt: skip


def timeline_rows(since: dt.datetime, as_of: dt.datetime, *, engine: Engine) -> list[dict[str, Any]]:
    """Every alert's timeline entries in ``(since, as_of]``, in order."""
    q = (
        sa.select(alert_timeline)
        .where(alert_timeline.c.at > naive_utc(since), alert_timeline.c.at <= naive_utc(as_of))
        .order_by(alert_timeline.c.at, alert_timeline.c.entry_id)
    )
    with engine.connect() as conn:
        return [
            {
                "alert_id": r["alert_id"],
                "at": as_utc(r["at"]),
                "step": r["step"],
                "who": r["who"],
                "detail": r["detail"],
            }
            for r in conn.execute(q).mappings().all()
        ]
