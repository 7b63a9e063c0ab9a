"""Writing an Engagement run: its marts, quarantine files and backfill requests; performing the requests.

Each mart is written with one atomic replace per table and partition (a day, or a month to date;
see ``helpers.engagement.marts``), so a re-run of a window replaces exactly its partitions. A backfill
request (``engagement_backfill_requests``) records a range of event days that a late arrival
restates: :func:`perform_backfill_requests` runs the pending ones through
``orchestrate.backfill(force=True, downstream=True)``, as ``workbook backfill`` does.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

from helpers.core.timeutil import as_utc, naive_utc
from helpers.engagement import event_contract
from helpers.engagement.marts import (
    ACCOUNT_COLUMNS,
    ACCOUNTS_TABLE,
    BACKFILL_TABLE,
    DAILY_COLUMNS,
    DAILY_TABLE,
    INTAKE_TABLE,
    METRICS_TABLE,
    MONTHLY_TABLE,
    mart_types,
)
from helpers.engagement.run import EngagementRun
from helpers.engagement.window import PIPELINE
from helpers.storage import warehouse
from helpers.storage.quarantine import QuarantinedRow, write_quarantine

backfill_requests_table = sa.Table(
    BACKFILL_TABLE,
    sa.MetaData(),
    sa.Column("request_id", sa.String(120), primary_key=True),  # pipeline|from|to|as_of: one per run moment
    sa.Column("pipeline", sa.String(64), nullable=False),
    sa.Column("from_date", sa.Date, nullable=False),
    sa.Column("to_date", sa.Date, nullable=False),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("requested_at", sa.DateTime, nullable=False),  # the requesting run's as_of
    sa.Column("requested_by", sa.String(80), nullable=True),  # run id
    sa.Column("status", sa.String(16), nullable=False),  # requested | done | failed
    sa.Column("done_at", sa.DateTime, nullable=True),
    sa.Column("outcome", sa.Text, nullable=True),
)


def write(
    run: EngagementRun, *, run_id: str | None = None, engine: sa.Engine | None = None
) -> dict[str, int]:
    """Write the run's marts (one atomic replace per table and partition), quarantine and requests.

    Returns the rows written per table. Days past the data horizon are not written (see
    :attr:`helpers.engagement.window.RunWindow.written_days`); months are written month to date.
    """
    engine = engine or warehouse.get_engine()
    at = run.window.as_of
    out: dict[str, int] = {}

    def put(table: str, frame: pd.DataFrame, partition: Mapping[str, Any]) -> None:
        out[table] = out.get(table, 0) + warehouse.replace_partition(
            table,
            frame,
            partition,
            written_at=naive_utc(at),
            run_id=run_id,
            engine=engine,
            dtype=mart_types()[table],
        )

    for d in run.window.written_days:
        put(
            DAILY_TABLE,
            run.daily[run.daily["date"] == d][list(DAILY_COLUMNS)].reset_index(drop=True),
            {"date": d},
        )
        put(METRICS_TABLE, run.metrics[run.metrics["date"] == d].reset_index(drop=True), {"date": d})
    for d in run.intake["date"]:
        put(INTAKE_TABLE, run.intake[run.intake["date"] == d].reset_index(drop=True), {"date": d})
    for m in run.window.months:
        put(
            MONTHLY_TABLE,
            run.monthly[run.monthly["period"] == m.period].reset_index(drop=True),
            {"period": m.period},
        )
        acc = run.accounts[run.accounts["period"] == m.period][list(ACCOUNT_COLUMNS)].reset_index(drop=True)
        acc["revenue_usd_cents"] = acc["revenue_usd_cents"].astype("Int64")  # NULL while pending
        put(ACCOUNTS_TABLE, acc, {"period": m.period})
    if len(run.quarantined):
        write_quarantine(
            "events", event_contract.quarantine_records(run.quarantined), name="engagement_contract"
        )
    if run.landing.rejected:  # deliveries left out whole, one quarantine file per delivery (idempotent)
        run.landing.write()
    if len(run.api_quarantined):
        write_quarantine("api_logs", api_quarantine_records(run.api_quarantined), name="engagement_api")
    out[BACKFILL_TABLE] = record_backfill_requests(
        run.backfill, requested_at=at, run_id=run_id, engine=engine
    )
    return out


def api_quarantine_records(rows: pd.DataFrame) -> list[QuarantinedRow]:
    """``api_logs`` rows the run did not count (:func:`helpers.engagement.transforms.api_unusable`)
    as quarantine records: delivery file, 1-based row, ``missing <field>``."""
    return [
        QuarantinedRow(
            "api_logs",
            str(r.delivery_file),
            int(r.delivery_row) if pd.notna(r.delivery_row) else None,
            f"missing {r.field}",
            {"request_id": r.request_id, "account_id": r.account_id},
            str(r.field),
        )
        for r in rows.itertuples(index=False)
    ]


def record_backfill_requests(
    requests: Sequence[Mapping[str, Any]],
    *,
    requested_at: dt.datetime,
    run_id: str | None,
    engine: sa.Engine | None = None,
) -> int:
    """Record backfill requests (idempotent per pipeline, range and ``requested_at``)."""
    if not requests:
        return 0
    engine = engine or warehouse.get_engine()
    backfill_requests_table.create(engine, checkfirst=True)
    n = 0
    with engine.begin() as conn:
        for r in requests:
            rid = f"{r['pipeline']}|{r['from_date']}|{r['to_date']}|{as_utc(requested_at).isoformat()}"
            exists = conn.execute(
                sa.select(backfill_requests_table.c.request_id).where(
                    backfill_requests_table.c.request_id == rid
                )
            ).first()
            if exists:
                continue
            conn.execute(
                backfill_requests_table.insert().values(
                    request_id=rid,
                    pipeline=r["pipeline"],
                    from_date=r["from_date"],
                    to_date=r["to_date"],
                    events=int(r["events"]),
                    reason=r["reason"],
                    command=r["command"],
                    requested_at=naive_utc(requested_at),
                    requested_by=run_id,
                    status="requested",
                )
            )
            n += 1
    return n


def pending_backfill_requests(*, engine: sa.Engine | None = None) -> pd.DataFrame:
    """Recorded backfill requests not yet performed, oldest first."""
    engine = engine or warehouse.get_engine()
    backfill_requests_table.create(engine, checkfirst=True)
    t = backfill_requests_table
    with engine.connect() as conn:
        return pd.read_sql(
            sa.select(t).where(t.c.status == "requested").order_by(t.c.requested_at, t.c.from_date), conn
        )


def perform_backfill_requests(
    *, clock: Callable[[], dt.datetime], as_of: dt.datetime | None = None, engine: sa.Engine | None = None
) -> list[dict[str, Any]]:
    """Run each pending request through ``orchestrate.backfill(force=True, downstream=True)``.

    Requests for overlapping ranges are merged into one backfill. Each request is marked ``done``
    (or ``failed`` with the outcomes) afterwards; re-running this after an interruption repeats
    what did not finish, as ``workbook backfill`` itself does.
    """
    from helpers.runs import orchestrate

    engine = engine or warehouse.get_engine()
    pending = pending_backfill_requests(engine=engine)
    if pending.empty:
        return []
    first = min(pd.to_datetime(pending["from_date"]).dt.date)
    last = max(pd.to_datetime(pending["to_date"]).dt.date)
    outcomes = orchestrate.backfill(
        PIPELINE, first, last, clock=clock, as_of=as_of, force=True, downstream=True
    )
    ok = all(o.status in ("succeeded", "skipped") for o in outcomes)
    t = backfill_requests_table
    with engine.begin() as conn:
        conn.execute(
            t.update()
            .where(t.c.request_id.in_(list(pending["request_id"])))
            .values(
                status="done" if ok else "failed",
                done_at=naive_utc(clock()),
                outcome=json.dumps([o.as_json() for o in outcomes], sort_keys=True, default=str),
            )
        )
    return [o.as_json() for o in outcomes]
