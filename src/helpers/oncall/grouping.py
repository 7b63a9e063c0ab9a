"""Active alerts into incidents, one per cause: what each escalation tick pages about.

At every tick (:func:`helpers.oncall.escalation.escalate`) the active alerts are grouped by cause
(:mod:`helpers.oncall.causes`). An alert already in an open incident stays there. The others join
the open incident of their cause, or re-open one resolved within
``escalation.reopen_within_minutes`` (a flap), or open a new one led by the cause's first alert.
A symptom joining is written on both timelines (the symptom's: "joined incident N"; the lead's: the
symptom) and pages nobody. The ladder then runs once per incident (:class:`IncidentSubject`, on the
lead alert's timeline). An incident none of whose alerts is active any more resolves
(:func:`resolve_finished`), and everyone it paged hears so once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from helpers.core.config import WorkbookConfig
from helpers.core.timeutil import as_utc
from helpers.oncall import causes
from helpers.oncall import incidents as incmod
from helpers.oncall.ladder import AlertLike
from helpers.oncall.schedule import Schedule
from helpers.oncall.timeline import TimelineEntry

_RANK = {"warning": 1, "critical": 2}
Lookup = Callable[[str], AlertLike | None]  # an alert by id, None when the store has no such alert
SYMPTOMS_SHOWN = 5  # in a notification: the first symptoms, then "and N more"


@dataclass(frozen=True)
class IncidentSubject:
    """An incident as the ladder sees it (``AlertLike``): the lead alert's id, pipeline, check and
    runbook; the incident's severity, opening, acknowledgement and resolution."""

    alert_id: str
    incident_id: int
    pipeline: str
    check_id: str
    catalogue_id: str | None
    severity: str
    opened_at: dt.datetime
    status: str
    acknowledged_at: dt.datetime | None
    resolved_at: dt.datetime | None
    summary: str
    runbook: str | None
    kind: str = "incident"
    cause: str = ""
    symptoms: tuple[str, ...] = field(default=())
    at_risk: tuple[str, ...] = field(default=())
    count: int = 1  # alerts in the incident, the lead included

    @property
    def reference(self) -> str:
        """How a notification names it: ``incident 3, alert 15 + 6 more``."""
        more = f" + {self.count - 1} more" if self.count > 1 else ""
        return f"incident {self.incident_id}, alert {self.alert_id}{more}"

    def lines(self) -> list[str]:
        """What a notification says about the incident beyond the lead alert."""
        out = [f"incident {self.incident_id}: {self.cause}"]
        if self.symptoms:
            shown = list(self.symptoms[:SYMPTOMS_SHOWN])
            more = len(self.symptoms) - len(shown)
            out.append("symptoms: " + "; ".join(shown) + (f"; and {more} more" if more > 0 else ""))
        if self.at_risk:
            out.append("investor figures at risk from: " + ", ".join(self.at_risk))
        return out


def _worst(*severities: str) -> str:
    return max(severities, key=lambda s: _RANK.get(s, 0))


def _symptom_line(alert: AlertLike) -> str:
    return f"[{alert.severity}] {alert.check_id}"


def _subject(
    inc: incmod.Incident, lead: AlertLike | None, symptoms: Sequence[str], count: int
) -> IncidentSubject:
    return IncidentSubject(
        alert_id=inc.alert_id,
        incident_id=inc.incident_id,
        pipeline=inc.pipeline,
        check_id=inc.check_id or (lead.check_id if lead else ""),
        catalogue_id=inc.catalogue_id,
        severity=inc.severity,
        opened_at=inc.opened_at,
        status=inc.status,
        acknowledged_at=inc.acknowledged_at,
        resolved_at=inc.resolved_at,
        summary=inc.cause or inc.summary,
        runbook=lead.runbook if lead is not None else None,
        cause=inc.cause or inc.summary,
        symptoms=tuple(symptoms),
        at_risk=inc.at_risk,
        count=count,
    )


def subject_of(incident_id: int, lead: AlertLike | None, *, engine: Engine) -> IncidentSubject:
    """An incident as the ladder sees it, from the warehouse (its symptoms are not listed)."""
    inc = incmod.get_incident_by_id(incident_id, engine=engine)
    if inc is None:
        raise LookupError(f"no incident {incident_id}; `workbook incidents --all` lists them")
    return _subject(inc, lead, (), max(len(incmod.members(incident_id, engine=engine)), 1))


def _joined(inc: incmod.Incident, alert: AlertLike, at: dt.datetime) -> list[TimelineEntry]:
    """Record a symptom joining: on its own timeline and on the lead's (nobody is paged)."""
    entries = [
        TimelineEntry(str(alert.alert_id), at, "incident", "", "", f"joined incident {inc.incident_id}: {inc.cause}",
                      f"incident:{inc.incident_id}"),
        TimelineEntry(inc.alert_id, at, "symptom", "", "", f"{_symptom_line(alert)}: {alert.summary}",
                      f"symptom:{alert.alert_id}"),
    ]  # fmt: skip
    return entries


def _open_or_reopen(
    cfg: WorkbookConfig,
    schedule: Schedule,
    cause: causes.Cause,
    waiting: Sequence[AlertLike],
    as_of: dt.datetime,
    engine: Engine,
) -> tuple[incmod.Incident | None, list[TimelineEntry]]:
    """The incident of ``cause`` for alerts in none yet: open, re-opened after a flap, or new; None
    when the alerts are only about deadlines and may not open one (see :func:`incident_subjects`)."""
    window = dt.timedelta(minutes=cfg.team.escalation.reopen_within_minutes)
    found = incmod.incident_for_cause(cause.key, as_of=as_of, reopen_within=window, engine=engine)
    if found is not None and found.status == "open":
        return found, []
    failing = [a for a in waiting if not causes.is_deadline(a)]
    if not failing and (found is not None or all(causes.is_watcher(a) for a in waiting)):
        return None, []
    if found is not None:  # resolved a moment ago: the same problem is back
        incmod.reopen(found.incident_id, engine=engine)
        entry = TimelineEntry(found.alert_id, as_of, "reopened", "", "",
                              f"incident {found.incident_id} re-opened: {cause.summary} failed again",
                              f"reopened:{as_of:%Y%m%dT%H%M%S}")  # fmt: skip
        reopened = incmod.get_incident_by_id(found.incident_id, engine=engine)
        assert reopened is not None
        return reopened, [entry]
    lead = causes.lead_alert(cause, waiting)
    inc, new = incmod.open_for_cause(
        schedule, cause_key=cause.key, cause=cause.summary, lead_alert_id=str(lead.alert_id),
        pipeline=lead.pipeline if lead.pipeline in cfg.pipelines.pipelines else _known(cfg, waiting),
        severity=causes.worst_severity(waiting), opened_at=as_utc(lead.opened_at), at=as_of,
        check_id=lead.check_id, catalogue_id=lead.catalogue_id,
        at_risk=causes.at_risk(cause, waiting, cfg.pipelines), engine=engine,
    )  # fmt: skip
    if not new:
        return inc, []
    deadline = f"{schedule.local(inc.fix_deadline):%a %Y-%m-%d %H:%M %Z}"
    entry = TimelineEntry(inc.alert_id, as_of, "incident", "", "",
                          f"incident {inc.incident_id} opened: {cause.summary}; fix by {deadline}", "incident",
                          inc.fix_deadline)  # fmt: skip
    return inc, [entry]


def _known(cfg: WorkbookConfig, alerts: Sequence[AlertLike]) -> str:
    """A configured pipeline among the alerts' (an incident needs one for its SLA), else the first's."""
    return next((a.pipeline for a in alerts if a.pipeline in cfg.pipelines.pipelines), alerts[0].pipeline)


def incident_subjects(
    cfg: WorkbookConfig,
    schedule: Schedule,
    active: Sequence[AlertLike],
    as_of: dt.datetime,
    *,
    lookup: Lookup,
    engine: Engine,
) -> tuple[list[IncidentSubject], list[TimelineEntry]]:
    """Group ``active`` into incidents (see the module doc); the open incidents to escalate, and the
    timeline entries of what changed.

    Alerts about a deadline (an SLA at risk, an upstream late for it) join their cause's open
    incident; alone they may open one (a pipeline behind with nothing failing) but never re-open a
    resolved one, and an alert watching a fix deadline never opens one: it passes once its
    incident is resolved. The entries (an incident opened or re-opened, symptoms joining) are for the
    caller to record (:func:`helpers.oncall.timeline.claim`) after the ladders' steps of the tick.
    ``lookup`` finds an alert by id (a lead no longer active)."""
    known = incmod.memberships(engine=engine)
    groups = causes.group(active, cfg.pipelines,
                          incident_causes={a: i.cause_key for a, i in known.items() if i.cause_key})  # fmt: skip
    written: list[TimelineEntry] = []
    by_incident: dict[int, list[AlertLike]] = {}
    for cause, members in groups.values():
        waiting = [
            a for a in members if str(a.alert_id) not in known or known[str(a.alert_id)].status != "open"
        ]
        for a in members:
            if a not in waiting:
                by_incident.setdefault(known[str(a.alert_id)].incident_id, []).append(a)
        if not waiting or not any(a.pipeline in cfg.pipelines.pipelines for a in waiting):
            continue  # an alert of an unconfigured pipeline: no SLA, no owner, see escalate
        inc, entries = _open_or_reopen(cfg, schedule, cause, waiting, as_of, engine)
        written.extend(entries)
        if inc is None:
            continue
        for a in waiting:
            if str(a.alert_id) != inc.alert_id and incmod.attach(inc.incident_id, str(a.alert_id), at=as_of,
                                                                 engine=engine):  # fmt: skip
                written.extend(_joined(inc, a, as_of))
            by_incident.setdefault(inc.incident_id, []).append(a)
    return [_refreshed(cfg, i, m, as_of, lookup, engine) for i, m in sorted(by_incident.items())], written


def _refreshed(
    cfg: WorkbookConfig,
    incident_id: int,
    members: list[AlertLike],
    as_of: dt.datetime,
    lookup: Lookup,
    engine: Engine,
) -> IncidentSubject:
    """Bring an incident up to date with its active alerts (severity, acknowledgement, reach)."""
    inc = incmod.get_incident_by_id(incident_id, engine=engine)
    assert inc is not None
    severity = _worst(inc.severity, *(a.severity for a in members))
    changes: dict[str, Any] = {}
    if severity != inc.severity:
        changes["severity"] = severity
    if inc.cause_key:
        cause = causes.from_key(inc.cause_key, inc.cause or "")
        reach = tuple(dict.fromkeys((*inc.at_risk, *causes.at_risk(cause, members, cfg.pipelines))))
        if reach != inc.at_risk:
            changes["at_risk"] = reach
    if changes:
        incmod.update(incident_id, engine=engine, **changes)
    acked = [a for a in members if getattr(a, "acknowledged_at", None) is not None]
    if acked and inc.acknowledged_at is None:
        first = min(acked, key=lambda a: as_utc(a.acknowledged_at))
        incmod.acknowledge_incident(incident_id, by=getattr(first, "acknowledged_by", None) or "",
                                    at=as_utc(first.acknowledged_at), engine=engine)  # fmt: skip
    inc = incmod.get_incident_by_id(incident_id, engine=engine)
    assert inc is not None
    symptoms = [_symptom_line(a) for a in members if str(a.alert_id) != inc.alert_id]
    count = max(len(incmod.members(incident_id, engine=engine)), 1)
    return _subject(inc, lookup(inc.alert_id), symptoms, count)


def finished_incidents(
    active_ids: Iterable[str], as_of: dt.datetime, *, lookup: Lookup, engine: Engine
) -> list[tuple[incmod.Incident, dt.datetime, str]]:
    """Open incidents opened by ``as_of`` none of whose alerts is active: ``(incident, resolved_at, note)``.

    ``resolved_at`` is when its last alert resolved, ``note`` that alert's resolution. An incident
    whose alerts are unknown to ``lookup`` (another store) is left alone.
    """
    active = set(active_ids)
    out = []
    for inc in incmod.list_incidents(open_only=True, engine=engine):
        if inc.opened_at > as_utc(as_of):
            continue
        ids = [a for a, _role in incmod.members(inc.incident_id, engine=engine)] or [inc.alert_id]
        found = [a for a in map(lookup, ids) if a is not None]
        if any(not causes.is_deadline(a) for a in found):  # its deadline alerts follow it, not lead it
            found = [a for a in found if not causes.is_deadline(a)]
        if any(str(a.alert_id) in active for a in found):
            continue
        done = [a for a in found if getattr(a, "resolved_at", None) is not None]
        if not found or len(done) < len(found):
            continue
        last = max(done, key=lambda a: as_utc(a.resolved_at))
        if as_utc(last.resolved_at) > as_utc(as_of):
            continue
        note = getattr(last, "resolution", None) or "resolved"
        out.append(
            (inc, as_utc(last.resolved_at), note if len(found) == 1 else f"all {len(found)} alerts: {note}")
        )
    return out
