"""The ``check_results`` table: every evaluation of every check, per run and per monitor pass.

A row per result: which check, pipeline and partition, the run it belongs to (``run_id`` NULL for a
monitor evaluation outside a run), when it was evaluated and against which ``as_of``, its status
(pass/fail/error), severity, summary and evidence (JSON: numbers and sample rows). Timestamps are
stored as naive UTC, like every ops table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from helpers.checks.framework import CheckResult
from helpers.core.timeutil import as_utc, naive_utc
from helpers.storage.warehouse import get_engine, metadata, register_tables

check_results = sa.Table(
    "check_results",
    metadata,
    sa.Column("result_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("check_id", sa.String(160), nullable=False),
    sa.Column("pipeline", sa.String(64), nullable=False),
    sa.Column("partition", sa.String(32), nullable=False),
    sa.Column("run_id", sa.String(80), nullable=True),
    sa.Column("evaluated_at", sa.DateTime(), nullable=False),
    sa.Column("as_of", sa.DateTime(), nullable=False),
    sa.Column("status", sa.String(8), nullable=False),  # pass | fail | error
    sa.Column("severity", sa.String(8), nullable=False),  # warning | critical
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("catalogue_id", sa.String(40), nullable=True),
    sa.Column("runbook", sa.Text, nullable=True),
    sa.Column("blocking", sa.Boolean, nullable=False, default=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("evidence", sa.Text, nullable=False, default="{}"),
    sa.Index("ix_check_results_check_partition", "check_id", "partition"),
    sa.Index("ix_check_results_pipeline", "pipeline"),
    sa.Index("ix_check_results_run", "run_id"),
)

register_tables(check_results)


def record_results(results: Iterable[CheckResult], *, engine: Engine | None = None) -> int:
    """Append results; returns how many were written."""
    rows = [
        dict(
            check_id=r.check_id,
            pipeline=r.pipeline,
            partition=r.partition,
            run_id=r.run_id,
            evaluated_at=naive_utc(r.evaluated_at),
            as_of=naive_utc(r.as_of),
            status=r.status,
            severity=r.severity,
            kind=r.kind,
            catalogue_id=r.catalogue_id,
            runbook=r.runbook,
            blocking=r.blocking,
            summary=r.summary,
            evidence=json.dumps(r.as_json()["evidence"], sort_keys=True),
        )
        for r in results
    ]
    if rows:
        with (engine or get_engine()).begin() as conn:
            conn.execute(check_results.insert(), rows)
    return len(rows)


def list_results(
    *,
    pipeline: str | None = None,
    check_id: str | None = None,
    run_id: str | None = None,
    status: str | None = None,
    limit: int = 200,
    engine: Engine | None = None,
) -> list[dict[str, Any]]:
    """Stored results, most recent first, with ``evidence`` parsed and timestamps aware UTC."""
    q = sa.select(check_results)
    for col, value in (
        ("pipeline", pipeline),
        ("check_id", check_id),
        ("run_id", run_id),
        ("status", status),
    ):
        if value is not None:
            q = q.where(check_results.c[col] == value)
    q = q.order_by(check_results.c.result_id.desc()).limit(limit)
    with (engine or get_engine()).connect() as conn:
        return [_row(r) for r in conn.execute(q).mappings().all()]


def _row(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["evidence"] = json.loads(out["evidence"] or "{}")
    for k in ("evaluated_at", "as_of"):
        out[k] = as_utc(out[k])
    return out
