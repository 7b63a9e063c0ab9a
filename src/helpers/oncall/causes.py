"""The cause behind an alert: alerts that share one belong to one incident.

A late source makes every pipeline that reads it fail its source-freshness check, then its mart
freshness, its SLA and its dependants' "upstream at risk" checks: one cause, many symptoms. This
module names the cause of each active alert (pure: the alerts, the pipelines' lineage and sources):

=====================  ===============================================================================
cause                  alerts it explains
=====================  ===============================================================================
``source:S``           every ``*.source_freshness.S``; the freshness, row-count and SLA alerts of a
                       pipeline reading ``S`` while ``S`` is late; the same alerts downstream
``run:P``              ``P.run_status`` when P's own runs failed (any partition); runs of P's
                       dependants blocked by it; the freshness and SLA alerts of P and of everything
                       downstream of P
``pipeline:P``         a pipeline's stale marts or missed SLA with no failed run nor late source
                       behind them (it did not run: a scheduler down, a missing schedule)
``check:ID:PART``      a data check of its own: a pipeline's domain check, NULLs in a critical column
                       (each with its own runbook), a row-count change with nothing late behind it
=====================  ===============================================================================

Lineage is ``depends_on`` and ``reads`` (:attr:`helpers.core.config.Pipeline.lineage`): the cause of
a symptom of P is looked for in P's own failed runs, then in P's late sources, then upstream,
nearest first. "Upstream at risk" alerts name their upstream and take its cause; "fix deadline"
alerts take the cause of the alert whose deadline they watch. An incident is routed by its *lead*
alert (the first opened of its cause; :func:`lead_alert`); its investor figures at risk are the
pipelines feeding investors at or downstream of the cause (:func:`at_risk`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from helpers.core import config as cfgmod
from helpers.core.timeutil import as_utc
from helpers.oncall.ladder import AlertLike

INVESTOR_FEEDS = ("investors", "investor report", "investor update")
_RANK = {"warning": 1, "critical": 2}
# symptoms of data being late or missing: they take the cause found along the pipeline's lineage
# (NULLs and a pipeline's own domain checks are data problems of their own, with their own runbook)
LINEAGE_KINDS = ("freshness", "row_count", "sla_at_risk")


@dataclass(frozen=True)
class Cause:
    """One cause: its key (the incident's identity), what it is, and a sentence for people."""

    key: str
    kind: str  # source | run | pipeline | check
    subject: str  # the source, the pipeline or the check id
    summary: str


def _kind(alert: AlertLike) -> str:
    return str(getattr(alert, "kind", "") or "domain")


def _partition(alert: AlertLike) -> str:
    return str(getattr(alert, "partition", "") or "")


def _evidence(alert: AlertLike) -> Mapping[str, Any]:
    return getattr(alert, "evidence", None) or {}


def _source_of(alert: AlertLike) -> str | None:
    marker = ".source_freshness."
    return alert.check_id.split(marker, 1)[1] if marker in alert.check_id else None


def _run_failed(alert: AlertLike) -> bool:
    return _kind(alert) == "run_status" and str(_evidence(alert).get("status", "failed")) != "blocked"


DEADLINE_KINDS = ("sla_at_risk", "upstream_at_risk")  # alerts about a deadline, not a failure of their own


def is_deadline(alert: AlertLike) -> bool:
    """An alert about a deadline (an SLA at risk, an upstream late for it), not a failure of its own."""
    return _kind(alert) in DEADLINE_KINDS


def is_watcher(alert: AlertLike) -> bool:
    """An alert watching an open problem's fix deadline (it passes once the problem is resolved)."""
    return _evidence(alert).get("deadline_kind") == "fix_deadline"


def source_cause(source: str) -> Cause:
    return Cause(f"source:{source}", "source", source, f"source {source} is late or missing")


def run_cause(pipeline: str) -> Cause:
    return Cause(f"run:{pipeline}", "run", pipeline, f"{pipeline}: its runs fail")


def pipeline_cause(pipeline: str) -> Cause:
    return Cause(
        f"pipeline:{pipeline}", "pipeline", pipeline, f"{pipeline} is behind (no recent successful run)"
    )


def check_cause(alert: AlertLike) -> Cause:
    part = _partition(alert)
    return Cause(f"check:{alert.check_id}:{part}", "check", alert.check_id, alert.summary or alert.check_id)


class _Lineage:
    """Active alerts indexed the way causes are looked up."""

    def __init__(self, active: Sequence[AlertLike], pipelines: cfgmod.PipelinesConfig):
        self.pipes = pipelines.pipelines
        self.by_id = {str(a.alert_id): a for a in active}
        self.failed_runs: dict[str, list[AlertLike]] = {}
        self.late_sources: set[str] = set()
        for a in active:
            if _run_failed(a):
                self.failed_runs.setdefault(a.pipeline, []).append(a)
            source = _source_of(a)
            if source is not None:
                self.late_sources.add(source)

    def upstream_cause(self, pipeline: str, seen: frozenset[str] = frozenset()) -> Cause | None:
        """What explains trouble in ``pipeline``: its failed run, a late source, else upstream."""
        if pipeline in seen:
            return None
        if self.failed_runs.get(pipeline):
            return run_cause(pipeline)
        p = self.pipes.get(pipeline)
        late = sorted(s for s in (p.sources if p else ()) if s in self.late_sources)
        if late:
            return source_cause(late[0])
        for up in p.lineage if p else ():
            found = self.upstream_cause(up, seen | {pipeline})
            if found is not None:
                return found
        return None


def _order(alert: AlertLike) -> tuple[dt.datetime, int, str]:
    text = str(alert.alert_id)
    return (as_utc(alert.opened_at), int(text) if text.isdigit() else 0, text)


def cause_of(
    alert: AlertLike, lineage: _Lineage, *, incident_causes: Mapping[str, str] | None = None
) -> Cause:
    """The cause of one active alert (see the module doc)."""
    kind, evidence = _kind(alert), _evidence(alert)
    source = _source_of(alert)
    if source is not None:
        return source_cause(source)
    if kind == "run_status":
        p = lineage.pipes.get(alert.pipeline)
        if _run_failed(alert):  # its own failure: the run's error says why (the backfill runbook reads it)
            return run_cause(alert.pipeline)
        for up in p.depends_on if p else ():  # blocked: by the upstream's cause
            found = lineage.upstream_cause(up)
            if found is not None:
                return found
        return run_cause(alert.pipeline)
    if kind == "upstream_at_risk":
        up = str(evidence.get("upstream") or alert.check_id.rsplit(".", 1)[-1])
        return lineage.upstream_cause(up) or pipeline_cause(up)
    if evidence.get("deadline_kind") == "fix_deadline":
        watched = str(evidence.get("alert_id", ""))
        if watched in (incident_causes or {}):
            return from_key(str((incident_causes or {})[watched]), alert.summary)
        if watched in lineage.by_id and watched != str(alert.alert_id):
            return cause_of(lineage.by_id[watched], lineage, incident_causes=incident_causes)
    if kind not in LINEAGE_KINDS:
        return check_cause(alert)
    found = lineage.upstream_cause(alert.pipeline)
    if found is not None:
        return found
    return check_cause(alert) if kind == "row_count" else pipeline_cause(alert.pipeline)


def from_key(key: str, summary: str = "") -> Cause:
    """The cause a stored key names (an incident's ``cause_key``); ``summary`` for a check's."""
    kind, _, rest = key.partition(":")
    if kind == "source":
        return source_cause(rest)
    if kind == "run":
        return run_cause(rest)
    if kind == "pipeline":
        return pipeline_cause(rest)
    return Cause(key, "check", rest.rsplit(":", 1)[0], summary or rest)


def group(
    active: Iterable[AlertLike],
    pipelines: cfgmod.PipelinesConfig,
    *,
    incident_causes: Mapping[str, str] | None = None,
) -> dict[str, tuple[Cause, list[AlertLike]]]:
    """Active alerts by cause key, each group in opening order (the lead alert first).

    ``incident_causes`` maps alert ids already in an incident to its cause key (a "fix deadline"
    alert joins the incident of the alert it watches even once that alert is resolved).
    """
    alerts = sorted(active, key=_order)
    lineage = _Lineage(alerts, pipelines)
    out: dict[str, tuple[Cause, list[AlertLike]]] = {}
    for alert in alerts:
        cause = cause_of(alert, lineage, incident_causes=incident_causes)
        out.setdefault(cause.key, (cause, []))[1].append(alert)
    return out


def lead_alert(cause: Cause, members: Sequence[AlertLike]) -> AlertLike:
    """The alert that routes the incident: the first of the cause itself (the source's freshness,
    the failed run), else the first opened."""
    own = [a for a in members if _source_of(a) == cause.subject or (cause.kind == "run" and _run_failed(a))]
    return sorted(own or members, key=_order)[0]


def worst_severity(members: Iterable[AlertLike]) -> str:
    return max((a.severity for a in members), key=lambda s: _RANK.get(s, 0), default="warning")


def at_risk(cause: Cause, members: Iterable[AlertLike], pipelines: cfgmod.PipelinesConfig) -> list[str]:
    """The pipelines feeding investors that this cause reaches, at or down the lineage of the
    pipelines its alerts are about, in configuration order."""
    pipes = pipelines.pipelines
    hit = {a.pipeline for a in members}
    if cause.kind == "source":
        hit |= {pid for pid, p in pipes.items() if cause.subject in p.sources}
    elif cause.kind in ("run", "pipeline"):
        hit.add(cause.subject)
    changed = True
    while changed:
        below = {pid for pid, p in pipes.items() if pid not in hit and set(p.lineage) & hit}
        changed = bool(below)
        hit |= below
    return [pid for pid, p in pipes.items() if pid in hit and p.feeds in INVESTOR_FEEDS]
