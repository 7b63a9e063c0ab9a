"""The warehouse: one SQLAlchemy engine, the ops tables, and the atomic partition write.

The run tables (``pipeline_runs``, ``run_scraps``, ``partition_writes``) are defined here; every
other ops table is defined on :data:`metadata` by the package that owns it and declared with
:func:`register_tables` when that package is imported.

``WORKBOOK_WAREHOUSE_URL`` selects the database (any SQLAlchemy 2 URL; PostgreSQL and SQLite
are tested). The default is a SQLite file under ``runs/`` in WAL mode, so a notebook kernel
can read while another process writes.

Marts are written only through :func:`replace_partition`: delete the partition and insert its
rows in one transaction, so readers see the old partition or the new one, never a mix, and
writing the same rows twice leaves the same table.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Mapping
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from helpers.core import paths

metadata = sa.MetaData()

RUN_STATUSES = ("queued", "running", "succeeded", "failed", "blocked", "skipped")
ACTIVE_STATUSES = ("queued", "running")

pipeline_runs = sa.Table(
    "pipeline_runs",
    metadata,
    sa.Column("run_id", sa.String(80), primary_key=True),
    sa.Column("pipeline", sa.String(64), nullable=False),
    sa.Column("logical_date", sa.String(10), nullable=False),  # YYYY-MM-DD or YYYY-MM (the partition)
    sa.Column("as_of", sa.DateTime(), nullable=True),
    sa.Column("parameters", sa.Text, nullable=False, default="{}"),  # JSON, never secrets
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("trigger", sa.String(32), nullable=False, default="manual"),
    sa.Column("queued_at", sa.DateTime(), nullable=True),
    sa.Column("started_at", sa.DateTime(), nullable=True),
    sa.Column("finished_at", sa.DateTime(), nullable=True),
    sa.Column("error_summary", sa.Text, nullable=True),
    sa.Column("failed_cell", sa.Integer, nullable=True),
    sa.Column("archive_path", sa.Text, nullable=True),
    sa.Column("code_version", sa.String(64), nullable=True),
    sa.Column("host", sa.String(255), nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("validation_status", sa.String(16), nullable=True),
    sa.Column("validated_at", sa.DateTime(), nullable=True),
    sa.Column("validation_summary", sa.Text, nullable=True),
    sa.Index("ix_pipeline_runs_pipeline_date", "pipeline", "logical_date"),
    sa.Index("ix_pipeline_runs_status", "status"),
    # At most one active run per pipeline and partition: the database enforces the lock.
    sa.Index(
        "ux_pipeline_runs_active",
        "pipeline",
        "logical_date",
        unique=True,
        sqlite_where=sa.text("status IN ('queued', 'running')"),
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    ),
)

run_scraps = sa.Table(
    "run_scraps",
    metadata,
    sa.Column("run_id", sa.String(80), sa.ForeignKey("pipeline_runs.run_id"), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("encoder", sa.String(32), nullable=False),
    sa.Column("value_json", sa.Text, nullable=False),
)

partition_writes = sa.Table(
    "partition_writes",
    metadata,
    sa.Column("table_name", sa.String(128), primary_key=True),
    sa.Column("partition_key", sa.String(255), primary_key=True),  # canonical JSON of the partition
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("written_at", sa.DateTime(), nullable=False),
    sa.Column("run_id", sa.String(80), nullable=True),
)


def warehouse_url() -> str:
    """``WORKBOOK_WAREHOUSE_URL`` or the default SQLite file (a secret: never log it raw)."""
    return os.environ.get("WORKBOOK_WAREHOUSE_URL") or f"sqlite:///{paths.default_warehouse_path()}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


_engines: dict[str, Engine] = {}
# run-all starts runs from a thread pool; held while an engine is created or tables are registered,
# so a table registered meanwhile is created on the new engine too
_engines_lock = threading.RLock()


def register_tables(*tables: sa.Table) -> None:
    """Declare ops tables defined on :data:`metadata` by the package that owns them.

    Each owner calls this when it is imported, beside its table definitions; storage imports
    none of them. The tables are created at once on every engine already open, and
    :func:`get_engine` creates every table defined so far on each new engine, so a table exists
    whichever was first: the engine or the owner's import.
    """
    foreign = [t.name for t in tables if t.metadata is not metadata]
    if foreign:
        raise ValueError(f"register_tables: {foreign} are not defined on warehouse.metadata")
    with _engines_lock:
        for engine in _engines.values():
            _create_tables(engine, tables=list(tables))


def get_engine(url: str | None = None) -> Engine:
    """One engine per URL per process; creates the tables defined so far on first use."""
    url = url or warehouse_url()
    engine = _engines.get(url)
    if engine is not None:
        return engine
    with _engines_lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        sa_url = sa.engine.make_url(url)
        if sa_url.get_backend_name() == "sqlite":
            if sa_url.database and sa_url.database != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(sa_url.database)), exist_ok=True)
            engine = sa.create_engine(sa_url)
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = sa.create_engine(sa_url, pool_pre_ping=True)
        _create_tables(engine)
        _engines[url] = engine
    return engine


def _create_tables(engine: Engine, attempts: int = 5, *, tables: list[sa.Table] | None = None) -> None:
    """``create_all`` (of ``tables``, default all), tolerating another process creating them meanwhile.

    ``create_all`` checks then creates; two processes opening a new warehouse together (parallel
    runs, runbooks) can both see a table missing, and the second ``CREATE`` fails with "already
    exists" (SQLite) or a duplicate key in ``pg_type`` (PostgreSQL). The next attempt sees the table.
    """
    for attempt in range(attempts):
        try:
            metadata.create_all(engine, tables=tables)
            return
        except sa.exc.DBAPIError as exc:
            text = str(exc.orig).lower()
            if attempt == attempts - 1 or not ("already exists" in text or "duplicate key" in text):
                raise


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


def redacted_url(url: str | None = None) -> str:
    """The warehouse URL with its password hidden, for messages."""
    return sa.engine.make_url(url or warehouse_url()).render_as_string(hide_password=True)


def partition_key(partition: Mapping[str, Any]) -> str:
    return json.dumps({k: _plain(v) for k, v in sorted(partition.items())}, sort_keys=True)


def _plain(v: Any) -> Any:
    if isinstance(v, (dt.date, dt.datetime, pd.Timestamp)):
        return v.isoformat()
    return v


def replace_partition(
    table: str,
    frame: pd.DataFrame,
    partition: Mapping[str, Any],
    *,
    written_at: dt.datetime,
    run_id: str | None = None,
    engine: Engine | None = None,
    dtype: Mapping[str, Any] | None = None,
) -> int:
    """Atomically replace the rows of ``table`` where the ``partition`` columns equal its values.

    The delete, the insert and the bookkeeping row in ``partition_writes`` happen in one
    transaction. Every row of ``frame`` must belong to the partition (a row outside it would be
    left behind by the next replace), and the frame must have the table's columns. Returns the
    number of rows written.
    """
    engine = engine or get_engine()
    if not partition:
        raise ValueError(f"replace_partition({table!r}): a partition needs at least one column")
    missing = [c for c in partition if c not in frame.columns]
    if missing:
        raise ValueError(f"replace_partition({table!r}): frame lacks partition column(s) {missing}")
    for col, value in partition.items():
        outside = frame[col].astype(str) != str(_plain(value))
        if outside.any():
            raise ValueError(
                f"replace_partition({table!r}): {int(outside.sum())} row(s) have {col} != {value!r} "
                f"(first at index {frame.index[outside][0]!r})"
            )
    with engine.begin() as conn:
        inspector = sa.inspect(conn)
        if inspector.has_table(table):
            existing = {c["name"] for c in inspector.get_columns(table)}
            extra = [c for c in frame.columns if c not in existing]
            if extra:
                raise ValueError(f"replace_partition({table!r}): columns {extra} are not in the table")
            t = sa.Table(table, sa.MetaData(), autoload_with=conn)
            cond = sa.and_(*(t.c[k] == _plain(v) for k, v in partition.items()))
            conn.execute(t.delete().where(cond))
        else:
            frame.head(0).to_sql(table, conn, index=False, dtype=dict(dtype or {}) or None)
        if len(frame):
            frame.to_sql(table, conn, index=False, if_exists="append", chunksize=5000, method="multi")
        key = partition_key(partition)
        conn.execute(
            partition_writes.delete().where(
                (partition_writes.c.table_name == table) & (partition_writes.c.partition_key == key)
            )
        )
        conn.execute(
            partition_writes.insert().values(
                table_name=table,
                partition_key=key,
                row_count=len(frame),
                written_at=written_at,
                run_id=run_id,
            )
        )
    return len(frame)


def read_table(
    table: str, *, where: Mapping[str, Any] | None = None, engine: Engine | None = None
) -> pd.DataFrame:
    """Rows of ``table`` (optionally filtered by equality), ordered by all columns for stable output."""
    engine = engine or get_engine()
    with engine.connect() as conn:
        t = sa.Table(table, sa.MetaData(), autoload_with=conn)
        q = sa.select(t)
        for k, v in (where or {}).items():
            q = q.where(t.c[k] == _plain(v))
        q = q.order_by(*t.c)
        return pd.read_sql(q, conn)
