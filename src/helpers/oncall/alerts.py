"""Alerts: what a failing check opens, what repeats update, and what a passing check resolves.

An alert is keyed by ``(check_id, partition)``: at most one *active* alert (``open`` or
``acknowledged``) per key, enforced by a partial unique index like the run lock. Its life:

- a failing (or erroring) check result opens it, or updates the active one: ``last_seen_at``,
  ``count``, summary, evidence and the latest run id change; severity only ever escalates;
- a passing result for the same key resolves it (``resolved_at``), but only when it is at least as
  recent as the last failure, so an evaluation of an older ``as_of`` cannot close a newer problem;
- a later failure after resolution opens a new alert (the resolved one is history).

Every alert carries what routing (:mod:`helpers.oncall.routing`) needs: pipeline, owner and owners,
severity, the failure-catalogue id (from which routing derives the cross-team contact,
``escalation.cross_team`` in team.yml), the runbook that diagnoses it (by its failing source or
upstream: ``core.catalogue.runbook_for``), whether month-end heightened monitoring
applies, and the fix deadline (the pipeline's ``sla.fix_business_days`` in business days from
opening, via ``businesscal``), which the "SLA at risk" monitor watches. This is
the hook for incidents: anything with an ``opened_at`` and a ``fix_deadline`` is tracked.

Times are in the ``as_of`` frame: ``opened_at`` is the ``as_of`` of the evaluation that opened it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from helpers.checks.framework import CheckResult
from helpers.core import businesscal, catalogue
from helpers.core import config as cfgmod
from helpers.core.timeutil import as_utc, naive_utc
from helpers.storage.warehouse import get_engine, metadata, register_tables

ACTIVE = ("open", "acknowledged")
ALERT_STATUSES = ("open", "acknowledged", "resolved")
# Kinds whose alert is itself about a deadline (or mirrors another alert): no fix deadline of their own.
NO_FIX_DEADLINE_KINDS = ("sla_at_risk", "upstream_at_risk")
_RANK = {"warning": 1, "critical": 2}

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("alert_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("check_id", sa.String(160), nullable=False),
    sa.Column("partition", sa.String(32), nullable=False),
    sa.Column("pipeline", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("owner", sa.String(32), nullable=True),  # primary owner, or "team"
    sa.Column("owners", sa.Text, nullable=False, default="[]"),  # JSON: primary, secondary
    sa.Column("severity", sa.String(8), nullable=False),
    sa.Column("catalogue_id", sa.String(40), nullable=True),
    sa.Column("runbook", sa.Text, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("opened_at", sa.DateTime(), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(), nullable=False),
    sa.Column("acknowledged_at", sa.DateTime(), nullable=True),
    sa.Column("acknowledged_by", sa.String(64), nullable=True),
    sa.Column("resolved_at", sa.DateTime(), nullable=True),
    sa.Column("resolution", sa.Text, nullable=True),
    sa.Column("count", sa.Integer, nullable=False, default=1),
    sa.Column("fix_deadline", sa.DateTime(), nullable=True),
    sa.Column("heightened", sa.Boolean, nullable=False, default=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("evidence", sa.Text, nullable=False, default="{}"),
    sa.Column("run_id", sa.String(80), nullable=True),
    sa.Index("ix_alerts_status", "status"),
    sa.Index("ix_alerts_pipeline", "pipeline"),
    sa.Index(
        "ux_alerts_active",
        "check_id",
        "partition",
        unique=True,
        sqlite_where=sa.text("status IN ('open', 'acknowledged')"),
        postgresql_where=sa.text("status IN ('open', 'acknowledged')"),
    ),
)

register_tables(alerts)


@dataclass(frozen=True)
class Alert:
    """One row of ``alerts`` with aware UTC times and parsed JSON."""

    alert_id: int
    check_id: str
    partition: str
    pipeline: str
    kind: str
    owner: str | None
    owners: list[str]
    severity: str
    catalogue_id: str | None
    runbook: str | None
    status: str
    opened_at: dt.datetime
    last_seen_at: dt.datetime
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None
    resolved_at: dt.datetime | None
    resolution: str | None
    count: int
    fix_deadline: dt.datetime | None
    heightened: bool
    summary: str
    evidence: dict[str, Any]
    run_id: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Alert:
        values = dict(row)
        for k in ("opened_at", "last_seen_at", "acknowledged_at", "resolved_at", "fix_deadline"):
            values[k] = as_utc(values[k]) if values[k] is not None else None
        values["owners"] = json.loads(values["owners"] or "[]")
        values["evidence"] = json.loads(values["evidence"] or "{}")
        values["heightened"] = bool(values["heightened"])
        return cls(**values)

    def age(self, as_of: dt.datetime) -> dt.timedelta:
        """How long it has been open at ``as_of`` (until resolution, once resolved)."""
        end = self.resolved_at if self.resolved_at is not None else as_utc(as_of)
        return end - self.opened_at

    def as_json(self, as_of: dt.datetime | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            out[k] = v.isoformat() if isinstance(v, dt.datetime) else v
        if as_of is not None:
            out["age_hours"] = round(self.age(as_of).total_seconds() / 3600, 2)
        return out


@dataclass(frozen=True)
class AlertChange:
    """What :func:`sync` did for one result: ``opened``, ``updated`` or ``resolved``."""

    alert_id: int
    action: str
    check_id: str
    partition: str
    severity: str


def _active(conn: Connection, check_id: str, partition: str) -> Mapping[str, Any] | None:
    return (
        conn.execute(
            sa.select(alerts).where(
                (alerts.c.check_id == check_id)
                & (alerts.c.partition == partition)
                & alerts.c.status.in_(ACTIVE)
            )
        )
        .mappings()
        .first()
    )


def _routing_fields(
    result: CheckResult, as_of: dt.datetime, config: cfgmod.WorkbookConfig, cal: businesscal.BusinessCalendar
) -> dict[str, Any]:
    pipeline = config.pipelines.pipelines.get(result.pipeline)
    close = config.pipelines.close
    _period, _deadline, in_close = businesscal.close_window(
        cal,
        as_of,
        report_final_business_days=close.report_final_business_days,
        heightened_from_days_before_month_end=close.heightened_from_days_before_month_end,
    )
    if pipeline is None:  # a check of something outside config: record it, route it to nobody
        return dict(owner=None, owners="[]", heightened=False, fix_deadline=None)
    owners = ["team"] if pipeline.owners.team else [pipeline.owners.primary, pipeline.owners.secondary]
    fix_deadline = None
    if result.kind not in NO_FIX_DEADLINE_KINDS:
        from helpers.oncall import incidents  # one rule for alerts and incidents (business hours for Growth)
        from helpers.oncall import (
            schedule as oncall,  # one rule for alerts and incidents (business hours for Growth)
        )

        fix_deadline = incidents.fix_deadline(
            oncall.Schedule(config.team, config.pipelines, [], calendar=cal), pipeline.id, as_of
        )
    return dict(
        owner=owners[0],
        owners=json.dumps(owners),
        heightened=bool(in_close and pipeline.sla.month_end_heightened),
        fix_deadline=naive_utc(fix_deadline),
    )


def sync(
    results: Iterable[CheckResult],
    *,
    config: cfgmod.WorkbookConfig | None = None,
    engine: Engine | None = None,
) -> list[AlertChange]:
    """Open, update or resolve alerts from check results (each at its own ``as_of``)."""
    config = config or cfgmod.get()
    engine = engine or get_engine()
    cal = businesscal.BusinessCalendar.from_team(config.team)
    changes: list[AlertChange] = []
    for result in results:
        for _attempt in range(2):  # a concurrent opener wins the unique index: then update theirs
            try:
                with engine.begin() as conn:
                    change = _apply(conn, result, config, cal)
                break
            except IntegrityError:
                continue
        else:
            raise RuntimeError(f"alerts.sync: could not record {result.check_id} {result.partition}")
        if change is not None:
            changes.append(change)
    return changes


def _apply(
    conn: Connection,
    result: CheckResult,
    config: cfgmod.WorkbookConfig,
    cal: businesscal.BusinessCalendar,
) -> AlertChange | None:
    as_of = as_utc(result.as_of)
    existing = _active(conn, result.check_id, result.partition)
    evidence = json.dumps(result.as_json()["evidence"], sort_keys=True)
    if not result.failed:
        if existing is None or as_of < as_utc(existing["last_seen_at"]):
            return None
        conn.execute(
            alerts.update()
            .where(alerts.c.alert_id == existing["alert_id"])
            .values(
                status="resolved",
                resolved_at=naive_utc(as_of),
                resolution=f"check passed: {result.summary}",
            )
        )
        return AlertChange(
            existing["alert_id"], "resolved", result.check_id, result.partition, existing["severity"]
        )
    summary = result.summary if result.status == "fail" else f"check error: {result.summary}"
    if existing is not None:
        severity = max(existing["severity"], result.severity, key=_RANK.__getitem__)
        conn.execute(
            alerts.update()
            .where(alerts.c.alert_id == existing["alert_id"])
            .values(
                last_seen_at=naive_utc(max(as_of, as_utc(existing["last_seen_at"]))),
                count=existing["count"] + 1,
                severity=severity,
                summary=summary,
                evidence=evidence,
                run_id=result.run_id or existing["run_id"],
            )
        )
        return AlertChange(existing["alert_id"], "updated", result.check_id, result.partition, severity)
    route = catalogue.runbook_for(result.check_id, result.pipeline, pipelines=config.pipelines.pipelines,
                                  evidence=result.evidence, catalogue_id=result.catalogue_id,
                                  runbook=result.runbook)  # fmt: skip
    values = dict(
        check_id=result.check_id,
        partition=result.partition,
        pipeline=result.pipeline,
        kind=result.kind,
        severity=result.severity,
        catalogue_id=result.catalogue_id or route.catalogue_id,
        runbook=route.runbook,
        status="open",
        opened_at=naive_utc(as_of),
        last_seen_at=naive_utc(as_of),
        count=1,
        summary=summary,
        evidence=evidence,
        run_id=result.run_id,
        **_routing_fields(result, as_of, config, cal),
    )
    alert_id = conn.execute(alerts.insert().values(**values)).inserted_primary_key[0]
    return AlertChange(int(alert_id), "opened", result.check_id, result.partition, result.severity)


def resolve_absent(
    pipelines: Iterable[str],
    present: Iterable[str],
    *,
    as_of: dt.datetime,
    partition: str,
    engine: Engine | None = None,
) -> list[AlertChange]:
    """Resolve active monitor alerts of ``pipelines`` for ``partition`` whose check no longer exists.

    A monitor evaluation produces every check it still has; an alert whose check it did not produce
    (a source removed from config, a dependency dropped) would otherwise stay open for ever.
    Domain checks are left alone: they are only evaluated inside their pipeline's run.
    """
    engine = engine or get_engine()
    keep = set(present)
    changes: list[AlertChange] = []
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(alerts).where(
                alerts.c.pipeline.in_(list(pipelines))
                & (alerts.c.partition == partition)
                & (alerts.c.kind != "domain")
                & alerts.c.status.in_(ACTIVE)
            )
        ).mappings()
        for row in list(rows):
            if row["check_id"] in keep:
                continue
            conn.execute(
                alerts.update()
                .where(alerts.c.alert_id == row["alert_id"])
                .values(
                    status="resolved",
                    resolved_at=naive_utc(as_of),
                    resolution="check no longer monitored (configuration changed)",
                )
            )
            changes.append(
                AlertChange(row["alert_id"], "resolved", row["check_id"], row["partition"], row["severity"])
            )
    return changes


# ---------------------------------------------------------------- reading and closing


def list_alerts(
    *,
    open_only: bool = False,
    pipeline: str | None = None,
    limit: int = 500,
    engine: Engine | None = None,
) -> list[Alert]:
    """Alerts, most recently seen first (``open_only``: open or acknowledged)."""
    q = sa.select(alerts)
    if open_only:
        q = q.where(alerts.c.status.in_(ACTIVE))
    if pipeline:
        q = q.where(alerts.c.pipeline == pipeline)
    q = q.order_by(alerts.c.last_seen_at.desc(), alerts.c.alert_id.desc()).limit(limit)
    with (engine or get_engine()).connect() as conn:
        return [Alert.from_row(r) for r in conn.execute(q).mappings().all()]


def get_alert(alert_id: int, *, engine: Engine | None = None) -> Alert | None:
    """One alert by id (``None`` if there is no such alert)."""
    with (engine or get_engine()).connect() as conn:
        row = conn.execute(sa.select(alerts).where(alerts.c.alert_id == alert_id)).mappings().first()
    return Alert.from_row(row) if row else None


def acknowledge(alert_id: int, *, by: str, at: dt.datetime, engine: Engine | None = None) -> None:
    """Mark an open alert acknowledged (routing's escalation ladder stops there)."""
    with (engine or get_engine()).begin() as conn:
        conn.execute(
            alerts.update()
            .where((alerts.c.alert_id == alert_id) & (alerts.c.status == "open"))
            .values(status="acknowledged", acknowledged_at=naive_utc(at), acknowledged_by=by)
        )


def resolve(alert_id: int, *, at: dt.datetime, note: str, engine: Engine | None = None) -> None:
    """Resolve an active alert by hand (a later failure of its check opens a new one)."""
    with (engine or get_engine()).begin() as conn:
        conn.execute(
            alerts.update()
            .where((alerts.c.alert_id == alert_id) & alerts.c.status.in_(ACTIVE))
            .values(status="resolved", resolved_at=naive_utc(at), resolution=note)
        )
