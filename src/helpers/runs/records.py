"""Run records in ``pipeline_runs`` and ``run_scraps``.

The lock against two runs of the same pipeline and partition is a partial unique index on
``(pipeline, logical_date)`` for active rows, so it holds across processes and machines that
share the warehouse. A run records its runner's host, pid and process start time; a run whose
process died without recording its end (a SIGKILLed runner) is detected by them
(:func:`runner_alive`) and closed by :func:`mark_dead`: every command that reads runs calls
``helpers.runs.reaper.reap_dead_runs`` first, and a new run of the same partition does it too.

Two frames in one record: ``as_of`` is the data frame (what the run could see), ``queued_at``,
``started_at`` and ``finished_at`` are when it really happened, on the clock of the process that
recorded it (the wall clock in production, also for the runs a runbook's fix starts: the runner
hands its clock to the notebook's kernel). Runs are ordered by when they were queued, then
``as_of``, then id (:data:`RUN_ORDER`, :func:`order_key`): the latest run of a partition is the last
one started, whatever its ``as_of`` (a re-run at an earlier ``as_of`` replaced the partition too).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psutil
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from helpers.core import secrets
from helpers.core.timeutil import as_utc, naive_utc
from helpers.storage.warehouse import (
    ACTIVE_STATUSES,
    discard_run,
    get_engine,
    pipeline_runs,
    publish_run,
    run_scraps,
)

# The order of run records, oldest first: when they were queued, then their as_of, then their id.
RUN_ORDER = (pipeline_runs.c.queued_at, pipeline_runs.c.as_of, pipeline_runs.c.run_id)
RUN_ORDER_COLUMNS = ("queued_at", "as_of", "run_id")  # the same, for a frame of run records

_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)


def order_key(record: Mapping[str, Any] | RunRecord) -> tuple[dt.datetime, dt.datetime, str]:
    """A run's place in :data:`RUN_ORDER` (a missing time sorts first), for records in memory."""

    def get(name: str) -> Any:
        return record.get(name) if isinstance(record, Mapping) else getattr(record, name, None)

    def ts(v: Any) -> dt.datetime:
        return as_utc(v) if v is not None else _EARLIEST

    return ts(get("queued_at") or get("started_at")), ts(get("as_of")), str(get("run_id"))


class RunConflict(RuntimeError):
    """The same pipeline and partition is already running."""

    def __init__(self, existing: Mapping[str, Any]):
        self.existing = dict(existing)
        started = existing.get("started_at") or existing.get("queued_at")
        super().__init__(
            f"{existing['pipeline']} {existing['logical_date']} is already {existing['status']} as run "
            f"{existing['run_id']} (pid {existing.get('pid')} on {existing.get('host')}, since {started})"
        )


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    pipeline: str
    logical_date: str
    status: str
    as_of: dt.datetime | None
    parameters: dict[str, Any]
    trigger: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    error_summary: str | None
    failed_cell: int | None
    archive_path: str | None
    code_version: str | None
    validation_status: str | None
    validation_summary: str | None
    queued_at: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunRecord:
        def ts(v: Any) -> dt.datetime | None:
            return as_utc(v) if v is not None else None

        return cls(
            run_id=row["run_id"],
            pipeline=row["pipeline"],
            logical_date=row["logical_date"],
            status=row["status"],
            as_of=ts(row["as_of"]),
            parameters=json.loads(row["parameters"] or "{}"),
            trigger=row["trigger"],
            started_at=ts(row["started_at"]),
            finished_at=ts(row["finished_at"]),
            error_summary=row["error_summary"],
            failed_cell=row["failed_cell"],
            archive_path=row["archive_path"],
            code_version=row["code_version"],
            validation_status=row["validation_status"],
            validation_summary=row["validation_summary"],
            queued_at=ts(row.get("queued_at")),
        )

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            out[k] = v.isoformat() if isinstance(v, dt.datetime) else v
        out["duration_s"] = self.duration_s
        return out


def new_run_id(pipeline: str, logical_date: str, now: dt.datetime) -> str:
    """``<pipeline>-<date>-<UTC start>-<random>``: sortable, unique, readable."""
    return f"{pipeline}-{logical_date}-{as_utc(now):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


# Two readings of one process's start time differ by clock-tick rounding at most.
CREATE_TIME_TOLERANCE_S = 1.0


def process_created() -> float:
    """This process's start time (epoch seconds), recorded with its pid: a reused pid has another."""
    return psutil.Process().create_time()


def runner_alive(host: str | None, pid: int | None, created: float | None = None) -> bool:
    """Whether the runner process of a run recorded with ``host``, ``pid`` and ``created`` still runs.

    A run of another host (or without a pid) is taken as alive: its processes cannot be seen from
    here, that host's own commands judge it. Here a run is dead when no process has its pid, the
    process is a zombie, or the pid now belongs to a process started at another time (pid reuse).
    ``created`` is ``None`` for runs recorded before start times were: the pid alone decides.
    """
    if host != socket.gethostname() or pid is None:
        return True
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return created is None or abs(proc.create_time() - created) <= CREATE_TIME_TOLERANCE_S
    except psutil.NoSuchProcess:
        return False


def died_message(pid: int | None, host: str | None) -> str:
    """The error of a run whose runner process died without recording its end."""
    return f"runner died (pid {pid} on {host}, no longer running)"


def mark_dead(
    run_id: str, *, pid: int | None, host: str | None, now: dt.datetime, engine: Engine | None = None
) -> bool:
    """Close the active run ``run_id`` whose runner died: ``failed``, what it staged discarded.

    The staged partitions are dropped first (the live tables never see them), then the run is
    claimed by a conditional UPDATE (only while still ``queued``/``running``), so of two commands
    closing it at once exactly one gets ``True``; a crash in between leaves it active, to be closed
    again. The caller checked that the runner is dead (:func:`runner_alive`).
    """
    engine = engine or get_engine()
    discard_run(run_id, engine=engine)
    with engine.begin() as conn:
        claimed = conn.execute(
            pipeline_runs.update()
            .where((pipeline_runs.c.run_id == run_id) & pipeline_runs.c.status.in_(ACTIVE_STATUSES))
            .values(status="failed", finished_at=naive_utc(now), error_summary=died_message(pid, host))
        ).rowcount
    return bool(claimed)


def active_runs(*, engine: Engine | None = None) -> list[dict[str, Any]]:
    """Every ``queued`` or ``running`` run record, oldest first."""
    engine = engine or get_engine()
    q = sa.select(pipeline_runs).where(pipeline_runs.c.status.in_(ACTIVE_STATUSES)).order_by(*RUN_ORDER)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings().all()]


def active_run(pipeline: str, logical_date: str, *, engine: Engine | None = None) -> dict[str, Any] | None:
    engine = engine or get_engine()
    with engine.connect() as conn:
        row = (
            conn.execute(
                sa.select(pipeline_runs).where(
                    (pipeline_runs.c.pipeline == pipeline)
                    & (pipeline_runs.c.logical_date == logical_date)
                    & pipeline_runs.c.status.in_(ACTIVE_STATUSES)
                )
            )
            .mappings()
            .first()
        )
    return dict(row) if row else None


def start_run(
    pipeline: str,
    logical_date: str,
    *,
    now: dt.datetime,
    as_of: dt.datetime | None,
    parameters: Mapping[str, Any],
    code_version: str | None,
    trigger: str = "manual",
    run_id: str | None = None,
    engine: Engine | None = None,
) -> str:
    """Record a new ``running`` run, or raise :class:`RunConflict` if one is active."""
    engine = engine or get_engine()
    run_id = run_id or new_run_id(pipeline, logical_date, now)
    values = dict(
        run_id=run_id,
        pipeline=pipeline,
        logical_date=logical_date,
        as_of=naive_utc(as_of),
        parameters=_redacted(json.dumps(dict(parameters), sort_keys=True, default=str)),
        status="running",
        trigger=trigger,
        queued_at=naive_utc(now),
        started_at=naive_utc(now),
        code_version=code_version,
        host=socket.gethostname(),
        pid=os.getpid(),
        process_created=process_created(),
    )
    for _attempt in range(2):
        try:
            with engine.begin() as conn:
                conn.execute(pipeline_runs.insert().values(**values))
            return run_id
        except IntegrityError:
            existing = active_run(pipeline, logical_date, engine=engine)
            if existing is None:
                continue  # it finished between our insert and our look: try again
            if runner_alive(existing["host"], existing["pid"], existing.get("process_created")):
                raise RunConflict(existing) from None
            mark_dead(existing["run_id"], pid=existing["pid"], host=existing["host"], now=now, engine=engine)
    existing = active_run(pipeline, logical_date, engine=engine)
    raise RunConflict(
        existing or {"pipeline": pipeline, "logical_date": logical_date, "status": "?", "run_id": "?"}
    )


def finish_run(
    run_id: str,
    *,
    status: str,
    now: dt.datetime,
    error_summary: str | None = None,
    failed_cell: int | None = None,
    archive_path: str | None = None,
    engine: Engine | None = None,
) -> None:
    """Record the end of a run, with what it wrote.

    ``succeeded`` publishes every partition the run staged and records the end in one transaction
    (``warehouse.publish_run``: all of it or nothing; raises if a write check refuses it); any
    other status discards what the run staged, with the record (``warehouse.discard_run``).
    """
    values: dict[str, Any] = dict(
        status=status, finished_at=naive_utc(now), error_summary=_redacted(error_summary)
    )
    if failed_cell is not None:
        values["failed_cell"] = failed_cell
    if archive_path is not None:
        values["archive_path"] = archive_path
    if status == "succeeded":
        publish_run(run_id, run_values=values, engine=engine)
    else:
        discard_run(run_id, run_values=values, engine=engine)


def record_outcome(
    pipeline: str,
    logical_date: str,
    *,
    status: str,
    now: dt.datetime,
    reason: str,
    as_of: dt.datetime | None = None,
    trigger: str = "manual",
    engine: Engine | None = None,
) -> str:
    """Record a run that did not execute (``blocked`` or ``skipped``) with its reason."""
    engine = engine or get_engine()
    run_id = new_run_id(pipeline, logical_date, now)
    with engine.begin() as conn:
        conn.execute(
            pipeline_runs.insert().values(
                run_id=run_id,
                pipeline=pipeline,
                logical_date=logical_date,
                as_of=naive_utc(as_of),
                parameters="{}",
                status=status,
                trigger=trigger,
                queued_at=naive_utc(now),
                finished_at=naive_utc(now),
                error_summary=_redacted(reason),
                host=socket.gethostname(),
            )
        )
    return run_id


def save_scraps(run_id: str, scraps: Mapping[str, tuple[str, Any]], *, engine: Engine | None = None) -> None:
    """Store ``name -> (encoder, JSON-able value)`` for a run, replacing what was there."""
    engine = engine or get_engine()
    with engine.begin() as conn:
        conn.execute(run_scraps.delete().where(run_scraps.c.run_id == run_id))
        if scraps:
            conn.execute(
                run_scraps.insert(),
                [
                    dict(
                        run_id=run_id,
                        name=name,
                        encoder=enc,
                        value_json=_redacted(json.dumps(val, sort_keys=True, default=str)),
                    )
                    for name, (enc, val) in scraps.items()
                ],
            )


def get_scraps(run_id: str, *, engine: Engine | None = None) -> dict[str, Any]:
    engine = engine or get_engine()
    with engine.connect() as conn:
        rows = conn.execute(sa.select(run_scraps).where(run_scraps.c.run_id == run_id)).mappings().all()
    return {r["name"]: json.loads(r["value_json"]) for r in rows}


def get_run(run_id: str, *, engine: Engine | None = None) -> RunRecord | None:
    engine = engine or get_engine()
    with engine.connect() as conn:
        row = (
            conn.execute(sa.select(pipeline_runs).where(pipeline_runs.c.run_id == run_id)).mappings().first()
        )
    return RunRecord.from_row(row) if row else None


def list_runs(
    *,
    pipeline: str | None = None,
    status: str | None = None,
    logical_date: str | None = None,
    limit: int = 50,
    engine: Engine | None = None,
) -> list[RunRecord]:
    """Most recent first (:data:`RUN_ORDER`)."""
    engine = engine or get_engine()
    q = sa.select(pipeline_runs)
    if pipeline:
        q = q.where(pipeline_runs.c.pipeline == pipeline)
    if status:
        q = q.where(pipeline_runs.c.status == status)
    if logical_date:
        q = q.where(pipeline_runs.c.logical_date == logical_date)
    q = q.order_by(*(c.desc() for c in RUN_ORDER)).limit(limit)
    with engine.connect() as conn:
        return [RunRecord.from_row(r) for r in conn.execute(q).mappings().all()]


def latest_run(pipeline: str, logical_date: str, *, engine: Engine | None = None) -> RunRecord | None:
    runs = list_runs(pipeline=pipeline, logical_date=logical_date, limit=1, engine=engine)
    return runs[0] if runs else None


def set_validation(
    run_id: str, *, status: str, summary: str, now: dt.datetime, engine: Engine | None = None
) -> None:
    engine = engine or get_engine()
    with engine.begin() as conn:
        conn.execute(
            pipeline_runs.update()
            .where(pipeline_runs.c.run_id == run_id)
            .values(
                validation_status=status, validation_summary=_redacted(summary), validated_at=naive_utc(now)
            )
        )


def _redacted(text: str | None) -> str | None:
    """``text`` without any secret in any form: what ``pipeline_runs`` and ``run_scraps`` store."""
    return secrets.redact(text, secrets.secret_values())[0] if text else text
