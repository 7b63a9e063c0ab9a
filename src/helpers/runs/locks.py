"""Locks on published months: which pipeline partitions and mart partitions a FINAL close froze.

``workbook close --final`` publishes a month and locks, in ``partition_locks``, every partition of
the marts that feed investors for that month (``helpers.investor.close`` decides which): one row
per *pipeline* partition (``profit_aggregate 2026-10``, ``engagement_aggregate 2026-10-17``) and
one per *table* partition (``profit_monthly {"period": "2026-10"}``), each naming the close's
version and who signed it off when. ``workbook reopen`` releases them (the rows stay, with who
released them, when and why).

Two guards read the locks, so a locked month cannot be rewritten:

- the runner refuses a run on a locked pipeline partition before it starts
  (:func:`refuse_locked_run`), and
- every write of a live mart partition (each partition of the runner's publish, and a write outside
  the runner) refuses a locked table partition inside its own transaction
  (:func:`refuse_locked_write`, registered with ``warehouse.register_write_check`` when this module
  is imported; ``helpers.runs`` imports it, so every process that runs or checks a pipeline has it).

Both raise :class:`PartitionLocked`, which the CLI turns into exit code 5 (``EXIT_LOCKED``). The
module sits in ``runs`` so that the runner can read it; it knows nothing about investors.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from helpers.core.errors import EXIT_LOCKED
from helpers.core.timeutil import as_utc, naive_utc
from helpers.storage import warehouse
from helpers.storage.warehouse import metadata, partition_writes, pipeline_runs, register_tables

PIPELINE, TABLE = "pipeline", "table"  # what a lock row freezes

partition_locks = sa.Table(
    "partition_locks",
    metadata,
    sa.Column("lock_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("period", sa.String(7), nullable=False),  # the published month
    sa.Column("version", sa.Integer, nullable=False),  # its publication's version
    sa.Column("kind", sa.String(8), nullable=False),  # pipeline | table
    sa.Column("target", sa.String(128), nullable=False),  # pipeline id or table name
    sa.Column("partition", sa.String(255), nullable=False),  # logical date, or the canonical partition key
    sa.Column("detail", sa.Text, nullable=True),  # why this partition belongs to the month
    sa.Column("locked_at", sa.DateTime(), nullable=False),  # naive UTC
    sa.Column("signed_off", sa.Text, nullable=False, default="[]"),  # JSON [[engineer, ISO time], ...]
    sa.Column("released_at", sa.DateTime(), nullable=True),
    sa.Column("released_by", sa.String(64), nullable=True),
    sa.Column("release_reason", sa.Text, nullable=True),
    sa.Index("ix_partition_locks_target", "kind", "target", "partition"),
    sa.Index("ix_partition_locks_period", "period"),
)

register_tables(partition_locks)


@dataclass(frozen=True)
class Target:
    """One partition to lock: a pipeline's logical date or a table's partition key."""

    kind: str  # pipeline | table
    target: str
    partition: str
    detail: str | None = None


@dataclass(frozen=True)
class Lock:
    """An active lock: what it freezes, the publication that froze it and its sign-offs."""

    period: str
    version: int
    kind: str
    target: str
    partition: str
    locked_at: dt.datetime
    signed_off: tuple[tuple[str, dt.datetime], ...]
    detail: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Lock:
        signed = tuple(
            (who, as_utc(dt.datetime.fromisoformat(at))) for who, at in json.loads(row["signed_off"])
        )
        return cls(row["period"], row["version"], row["kind"], row["target"], row["partition"],
                   as_utc(row["locked_at"]), signed, row["detail"])  # fmt: skip

    def signers(self) -> str:
        """``DE1 at 2026-11-16 11:58 UTC, DE2 at ...`` (or ``nobody``)."""
        return ", ".join(f"{who} at {at:%Y-%m-%d %H:%M} UTC" for who, at in self.signed_off) or "nobody"

    def describe(self, what: str | None = None) -> str:
        """Why ``what`` (default: this lock's own target; the month itself) is refused, and how to unlock it."""
        what = what or f"{self.target} {self.partition}"
        why = f" ({self.detail})" if self.detail else ""
        subject = f"{what} is" if what == self.period else f"{what} belongs to {self.period}{why},"
        return (
            f"locked: {subject} published FINAL (version {self.version}) at "
            f"{self.locked_at:%Y-%m-%d %H:%M} UTC, signed off by {self.signers()}; "
            f"`workbook reopen --month {self.period} --by YOU --reason TEXT` unlocks it"
        )


class PartitionLocked(RuntimeError):
    """A run or a write would change a partition of a published (locked) month: exit code 5."""

    exit_code = EXIT_LOCKED

    def __init__(self, lock: Lock, what: str | None = None):
        self.lock = lock
        super().__init__(lock.describe(what))


# ---------------------------------------------------------------- reading


def _active(q: sa.Select) -> sa.Select:
    return q.where(partition_locks.c.released_at.is_(None)).order_by(partition_locks.c.lock_id)


def find_lock(kind: str, target: str, partition: str, *, conn: Connection | None = None,
              engine: Engine | None = None) -> Lock | None:  # fmt: skip
    """The active lock on one pipeline or table partition (None: not locked)."""
    q = _active(sa.select(partition_locks)).where(
        (partition_locks.c.kind == kind)
        & (partition_locks.c.target == target)
        & (partition_locks.c.partition == partition)
    )
    if conn is not None:
        row = conn.execute(q.limit(1)).mappings().first()
    else:
        with (engine or warehouse.get_engine()).connect() as c:
            row = c.execute(q.limit(1)).mappings().first()
    return Lock.from_row(row) if row else None


def active_locks(period: str | None = None, *, engine: Engine | None = None) -> list[Lock]:
    """Every active lock (of ``period``), in the order they were taken."""
    q = _active(sa.select(partition_locks))
    if period is not None:
        q = q.where(partition_locks.c.period == period)
    with (engine or warehouse.get_engine()).connect() as conn:
        return [Lock.from_row(r) for r in conn.execute(q).mappings().all()]


def month_lock(period: str, *, engine: Engine | None = None) -> Lock | None:
    """The first active lock of ``period`` (None: the month is not locked)."""
    found = active_locks(period, engine=engine)
    return found[0] if found else None


# ---------------------------------------------------------------- the guards


def refuse_locked_run(pipeline: str, partition: str, *, engine: Engine | None = None) -> None:
    """Raise :class:`PartitionLocked` when ``pipeline``'s ``partition`` is locked (the runner, before a run)."""
    lock = find_lock(PIPELINE, pipeline, partition, engine=engine)
    if lock is not None:
        raise PartitionLocked(lock, f"{pipeline} {partition}")


def refuse_locked_write(conn: Connection, table: str, key: str) -> None:
    """Raise :class:`PartitionLocked` when the partition ``key`` of ``table`` is locked.

    Called inside the transaction that would write it (``key``: ``warehouse.partition_key``), so a
    write that started before the month was locked cannot land after it.
    """
    lock = find_lock(TABLE, table, key, conn=conn)
    if lock is not None:
        raise PartitionLocked(lock, f"{table} {key}")


warehouse.register_write_check(refuse_locked_write)


# ---------------------------------------------------------------- what a month's lock covers


def in_month(value: Any, period: str) -> bool:
    """Whether a partition value is the month ``period`` or one of its days."""
    text = str(value)
    return text == period or (len(text) == 10 and text[:7] == period and text[7] == "-")


def month_tables(period: str, pipelines: Iterable[str], *, engine: Engine | None = None) -> list[Target]:
    """The table partitions of ``period`` that runs of ``pipelines`` wrote (from ``partition_writes``).

    A partition belongs to the month when one of its key's values is the month or a day of it.
    """
    q = (
        sa.select(partition_writes.c.table_name, partition_writes.c.partition_key, pipeline_runs.c.pipeline)
        .join(pipeline_runs, pipeline_runs.c.run_id == partition_writes.c.run_id)
        .where(pipeline_runs.c.pipeline.in_(list(pipelines)))
        .order_by(partition_writes.c.table_name, partition_writes.c.partition_key)
    )
    with (engine or warehouse.get_engine()).connect() as conn:
        rows = conn.execute(q).all()
    out: dict[tuple[str, str], Target] = {}
    for table, key, pipeline in rows:
        if any(in_month(v, period) for v in json.loads(key).values()):
            out.setdefault((table, key), Target(TABLE, table, key, f"written by {pipeline}"))
    return list(out.values())


# ---------------------------------------------------------------- taking and releasing


def lock_month(
    period: str,
    targets: Sequence[Target],
    *,
    version: int,
    locked_at: dt.datetime,
    signed_off: Sequence[tuple[str, dt.datetime]],
    conn: Connection,
) -> int:
    """Lock ``targets`` for the publication ``version`` of ``period`` (in the caller's transaction)."""
    signed = json.dumps([[who, as_utc(at).isoformat()] for who, at in signed_off])
    rows = [
        dict(period=period, version=version, kind=t.kind, target=t.target, partition=t.partition,
             detail=t.detail, locked_at=naive_utc(locked_at), signed_off=signed)
        for t in targets
    ]  # fmt: skip
    if rows:
        conn.execute(partition_locks.insert(), rows)
    return len(rows)


def release_month(period: str, *, by: str, at: dt.datetime, reason: str, conn: Connection) -> int:
    """Release every active lock of ``period`` (kept, marked released); returns how many."""
    result = conn.execute(
        partition_locks.update()
        .where((partition_locks.c.period == period) & partition_locks.c.released_at.is_(None))
        .values(released_at=naive_utc(at), released_by=by, release_reason=reason)
    )
    return int(result.rowcount or 0)
