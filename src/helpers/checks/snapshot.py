"""What the monitors read, loaded once per evaluation: the :class:`Snapshot`.

Run records, mart writes (``partition_writes``, only those made by ``as_of``; inside a runner's run
with the run's staged partitions in place of their published writes), landing arrivals
of the pipelines' sources, and the fix deadlines of the open problems: each open alert's own
deadline, replaced by its incident's where the alert belongs to one (``oncall.incidents``). A resolved
alert stays in the deadlines while an open ``sla_at_risk`` alert still refers to it, so that
alert can resolve once the fix is met.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from helpers.checks.framework import CURRENT, Severity
from helpers.core.periods import DAY_LABEL, MONTH_LABEL
from helpers.core.timeutil import as_utc
from helpers.oncall import alerts as alertsmod
from helpers.runs.records import RUN_ORDER_COLUMNS
from helpers.storage import landing, warehouse
from helpers.storage.warehouse import get_engine, partition_writes, pipeline_runs


@dataclass(frozen=True)
class FixDeadline:
    """A problem that must be fixed by a deadline: an open alert, or an incident opened from one."""

    alert_id: str
    pipeline: str
    check_id: str
    partition: str
    severity: Severity
    opened_at: dt.datetime
    fix_deadline: dt.datetime
    resolved_at: dt.datetime | None = None
    catalogue_id: str | None = None
    runbook: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """Everything the monitors read, loaded once per evaluation (times aware UTC).

    ``writes`` holds only writes made by ``as_of`` (``written_at`` is in the ``as_of`` frame);
    ``runs`` holds every run record, oldest first in ``records.RUN_ORDER``. A run's ``queued_at``,
    ``started_at`` and ``finished_at`` are when it really ran (wall clock): they order runs and give
    durations, and are never compared with ``as_of`` (a run's own ``as_of`` is).
    """

    as_of: dt.datetime
    runs: pd.DataFrame
    writes: pd.DataFrame
    arrivals: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    deadlines: Sequence[FixDeadline] = ()


def partition_label(partition_key: str) -> str | None:
    """The date (``YYYY-MM-DD``) or month (``YYYY-MM``) in a ``partition_writes`` key, if any."""
    try:
        values = json.loads(partition_key).values()
    except (json.JSONDecodeError, AttributeError):
        return None
    for v in values:
        text = str(v)[:10]
        if DAY_LABEL.match(text):
            return text
    for v in values:
        if MONTH_LABEL.match(str(v)):
            return str(v)
    return None


def with_staged(writes: pd.DataFrame, staged: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``writes`` with the partitions of ``staged`` replaced by (or added as) their staged rows.

    Inside a runner's run the run's own partitions are staged, not yet in ``partition_writes``:
    its checks judge what it is about to publish (``warehouse.staged_writes``).
    """
    if not staged:
        return writes
    own = pd.DataFrame(list(staged)).reindex(columns=writes.columns)
    mine = set(zip(own["table_name"], own["partition_key"], strict=True))
    keep = [k not in mine for k in zip(writes["table_name"], writes["partition_key"], strict=True)]
    kept = writes[keep]
    return own if kept.empty else pd.concat([kept, own], ignore_index=True)


def _aware(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


def load_snapshot(
    as_of: dt.datetime,
    *,
    sources: Iterable[str] = (),
    engine: Engine | None = None,
    landing_root: Any = None,
) -> Snapshot:
    """Read run records, mart writes (by ``as_of``), landing arrivals and alerts."""
    engine = engine or get_engine()
    as_of = as_utc(as_of)
    with engine.connect() as conn:
        runs = pd.read_sql(
            sa.select(
                pipeline_runs.c.run_id,
                pipeline_runs.c.pipeline,
                pipeline_runs.c.logical_date,
                pipeline_runs.c.status,
                pipeline_runs.c.as_of,
                pipeline_runs.c.queued_at,
                pipeline_runs.c.started_at,
                pipeline_runs.c.finished_at,
                pipeline_runs.c.error_summary,
            ),
            conn,
        )
        writes = pd.read_sql(
            sa.select(partition_writes, pipeline_runs.c.pipeline).select_from(
                partition_writes.outerjoin(pipeline_runs, partition_writes.c.run_id == pipeline_runs.c.run_id)
            ),
            conn,
        )
        writes = with_staged(writes, warehouse.staged_writes(conn=conn))
    for col in ("as_of", "queued_at", "started_at", "finished_at"):
        runs[col] = _aware(runs[col])
    runs = runs.sort_values(list(RUN_ORDER_COLUMNS), na_position="first", kind="stable")
    writes["written_at"] = _aware(writes["written_at"])
    writes = writes[writes["written_at"] <= pd.Timestamp(as_of)].copy()
    writes["label"] = writes["partition_key"].map(partition_label)
    arrivals = {s: landing.arrivals(s, root=landing_root, as_of=as_of) for s in sorted(set(sources))}
    active = alertsmod.list_alerts(open_only=True, engine=engine)
    referenced = {
        a.evidence.get("alert_id")
        for a in active
        if a.kind == "sla_at_risk" and a.evidence.get("deadline_kind") == "fix_deadline"
    }
    extra = [
        alert
        for alert_id in sorted(i for i in referenced if isinstance(i, int))
        if (alert := alertsmod.get_alert(alert_id, engine=engine)) is not None and alert.status == "resolved"
    ]
    deadlines = fix_deadlines([*active, *extra], as_of=as_of, engine=engine)
    return Snapshot(as_of, runs.reset_index(drop=True), writes.reset_index(drop=True), arrivals, deadlines)


def fix_deadlines(
    alerts: Sequence[alertsmod.Alert], *, as_of: dt.datetime, engine: Engine
) -> list[FixDeadline]:
    """The fix deadlines of the open problems: each open incident's (one for all its alerts), and
    the own deadline of an alert in no open incident.

    An incident's deadline comes with its own severity and catalogue id; an incident whose alert
    is not among ``alerts`` (resolved, or kept in another store) still counts.
    """
    from helpers.oncall import incidents  # the incidents opened from alerts, with their deadlines

    by_id = {str(a.alert_id): a for a in alerts}
    grouped = {a for a, inc in incidents.memberships(engine=engine).items() if inc.status == "open"}
    out: dict[str, FixDeadline] = {
        str(a.alert_id): FixDeadline(
            str(a.alert_id),
            a.pipeline,
            a.check_id,
            a.partition,
            a.severity,  # type: ignore[arg-type]
            a.opened_at,
            a.fix_deadline,
            a.resolved_at,
            a.catalogue_id,
            a.runbook,
        )
        for a in alerts
        if a.fix_deadline is not None
        and a.kind not in alertsmod.NO_FIX_DEADLINE_KINDS
        and str(a.alert_id) not in grouped  # its incident's deadline covers it
    }
    for item in incidents.open_incidents(as_of=as_of, engine=engine):
        alert = by_id.get(str(item.alert_id))
        out[str(item.alert_id)] = FixDeadline(
            str(item.alert_id),
            item.pipeline,
            getattr(item, "check_id", None) or (alert.check_id if alert else ""),
            alert.partition if alert else CURRENT,
            getattr(item, "severity", None) or (alert.severity if alert else "warning"),
            as_utc(item.opened_at),
            as_utc(item.fix_deadline),
            as_utc(item.resolved_at) if getattr(item, "resolved_at", None) else None,
            getattr(item, "catalogue_id", None),
            alert.runbook if alert else None,
        )
    return list(out.values())
