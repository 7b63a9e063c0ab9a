"""The warehouse: one SQLAlchemy engine, the ops tables, and the partition write (direct or staged).

The run tables (``pipeline_runs``, ``run_scraps``, ``partition_writes``, ``staged_partitions``) are
defined here; every other ops table is defined on :data:`metadata` by the package that owns it and
declared with :func:`register_tables` when that package is imported.

``WORKBOOK_WAREHOUSE_URL`` selects the database (any SQLAlchemy 2 URL; PostgreSQL and SQLite
are tested). The default is a SQLite file under ``runs/`` in WAL mode, so a notebook kernel
can read while another process writes.

Marts are written only through :func:`replace_partition`. Outside a runner's run it deletes the
partition and inserts its rows in one transaction, so readers see the old partition or the new
one, never a mix, and writing the same rows twice leaves the same table. Inside a runner's run
(the kernel's :data:`RUNNER_ENV` names a run that is ``running``) it *stages* the rows instead, in
a staging table of the run (``staging_<hash>``, listed in ``staged_partitions``): the live table and
``partition_writes`` are untouched until the runner, once the whole notebook succeeded, calls
:func:`publish_run`, which swaps every staged partition into its live table and records the run's
success in ONE transaction. A run that fails or dies is discarded (:func:`discard_run`): its
partitions stay as they were. Reads made by the run itself see what it staged
(:func:`read_table`, :func:`staged_writes`, :func:`partition_table`); nobody else does.

Every write that changes a live partition (a direct write, and each partition of a publish) calls
the checks registered with :func:`register_write_check` inside its transaction: the hook of the
lock guard (``helpers.runs.locks``), which refuses to touch a published month. After a publish has
committed, the listeners registered with :func:`register_publish_listener` are told what it
published: the sign-offs (``helpers.investor.signoff``) void there the ones whose figures changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from helpers.core import envnames, paths
from helpers.core.timeutil import naive_utc

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
    sa.Column("process_created", sa.Float, nullable=True),  # the runner process's start (epoch s): pid reuse
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

# The partitions a runner's run has staged and not yet published: one row per partition, naming the
# run's staging table for that mart (the rows, with the mart's columns). publish_run moves them into
# partition_writes and the live table; discard_run drops them.
staged_partitions = sa.Table(
    "staged_partitions",
    metadata,
    sa.Column("run_id", sa.String(80), primary_key=True),
    sa.Column("table_name", sa.String(128), primary_key=True),
    sa.Column("partition_key", sa.String(255), primary_key=True),
    sa.Column("staging_table", sa.String(63), nullable=False),
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("written_at", sa.DateTime(), nullable=False),
)

# The columns added to existing marts by a newer code version (see register_added_columns): one row
# per table and column, with when and by which run's write it was added.
schema_changes = sa.Table(
    "schema_changes",
    metadata,
    sa.Column("table_name", sa.String(128), primary_key=True),
    sa.Column("column_name", sa.String(128), primary_key=True),
    sa.Column("column_type", sa.String(64), nullable=False),
    sa.Column(
        "added_at", sa.DateTime(), nullable=True
    ),  # naive UTC: the write's written_at (None: an ops table)
    sa.Column("run_id", sa.String(80), nullable=True),
)

# Set by the runner in the environment of the kernel of each run it executes: the run's id. With
# it (and the run ``running`` in pipeline_runs), replace_partition stages instead of writing.
RUNNER_ENV = envnames.RUN_ID


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
            _add_missing_columns(engine, tables if tables is not None else list(metadata.sorted_tables))
            return
        except sa.exc.DBAPIError as exc:
            text = str(exc.orig).lower()
            raced = ("already exists", "duplicate key", "duplicate column")
            if attempt == attempts - 1 or not any(r in text for r in raced):
                raise


def _add_missing_columns(engine: Engine, tables: list[sa.Table]) -> None:
    """Add to an ops table of an older warehouse the nullable columns a newer version defines.

    An ops table only ever gains nullable columns; each one added is recorded in ``schema_changes``
    (without a time: nothing below the CLI reads the clock, and none is at hand here).
    """
    inspector = sa.inspect(engine)
    missing = [
        (t, c)
        for t in tables
        if inspector.has_table(t.name)
        for c in t.columns
        if c.name not in {col["name"] for col in inspector.get_columns(t.name)}
    ]
    if not missing:
        return
    with engine.begin() as conn:
        for table, column in missing:
            if not column.nullable:
                raise RuntimeError(
                    f"warehouse: {table.name}.{column.name} is missing and NOT NULL: cannot add it"
                )
            _add_column(conn, table.name, column.name, column.type, record=table.name != schema_changes.name)


def _add_column(conn: Connection, table: str, column: str, kind: Any, *, record: bool,
                added_at: dt.datetime | None = None, run_id: str | None = None) -> None:  # fmt: skip
    """``ALTER TABLE table ADD COLUMN column kind`` (nullable), recorded in ``schema_changes`` if ``record``."""
    preparer = conn.dialect.identifier_preparer
    ddl = sa.types.to_instance(kind).compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE {preparer.quote(table)} ADD COLUMN {preparer.quote(column)} {ddl}"))
    if record:
        mine = (schema_changes.c.table_name == table) & (schema_changes.c.column_name == column)
        conn.execute(schema_changes.delete().where(mine))
        conn.execute(schema_changes.insert().values(table_name=table, column_name=column, column_type=ddl,
                                                    added_at=naive_utc(added_at), run_id=run_id))  # fmt: skip


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


def partition_value(column: Any, value: Any) -> Any:
    """``value`` as the column compares it: ISO text becomes a date or datetime for such a column
    (PostgreSQL compares no DATE with text)."""
    v = _plain(value)
    if isinstance(v, str) and isinstance(column.type, sa.DateTime):
        return dt.datetime.fromisoformat(v)
    if isinstance(v, str) and isinstance(column.type, sa.Date):
        return dt.date.fromisoformat(v)
    return v


def _in_partition(t: sa.Table, partition: Mapping[str, Any]) -> sa.ColumnElement[bool]:
    return sa.and_(*(t.c[k] == partition_value(t.c[k], v) for k, v in partition.items()))


def _outside_partition(t: sa.Table, partition: Mapping[str, Any]) -> sa.ColumnElement[bool]:
    """Rows not in ``partition`` (a NULL partition column is outside it too)."""
    return sa.or_(
        *(sa.or_(t.c[k] != partition_value(t.c[k], v), t.c[k].is_(None)) for k, v in partition.items())
    )


# ---------------------------------------------------------------- the write checks (lock guard)

WriteCheck = Callable[[Connection, str, str], None]
_write_checks: list[WriteCheck] = []


def register_write_check(check: WriteCheck) -> WriteCheck:
    """Have ``check(conn, table, partition_key)`` called before every write of a live partition.

    It runs inside the writing transaction: for a direct :func:`replace_partition`, and for each
    partition of a :func:`publish_run` (after the run's record was updated, before the swap).
    Raising refuses the write and rolls back its whole transaction: a refused publish publishes
    nothing and leaves the run not succeeded. ``helpers.runs.locks`` registers its lock guard here
    when it is imported. Registering the same function twice keeps one. Returns ``check``.
    """
    if check not in _write_checks:
        _write_checks.append(check)
    return check


def _check_write(conn: Connection, table: str, key: str) -> None:
    for check in list(_write_checks):
        check(conn, table, key)


PublishListener = Callable[[str, "Sequence[StagedPartition]", dt.datetime, Engine], None]
_publish_listeners: list[PublishListener] = []


def register_publish_listener(listener: PublishListener) -> PublishListener:
    """Have ``listener(run_id, published, now, engine)`` called after every :func:`publish_run` that
    published something, once its transaction has committed (``now``: the run's end).

    A listener that raises does not undo the publish: the error becomes a ``RuntimeWarning`` naming
    the run and the listener. Registering the same function twice keeps one. Returns ``listener``.
    """
    if listener not in _publish_listeners:
        _publish_listeners.append(listener)
    return listener


def _tell_publish_listeners(run_id: str, published: Sequence[StagedPartition], now: dt.datetime,
                            engine: Engine) -> None:  # fmt: skip
    for listener in list(_publish_listeners):
        try:
            listener(run_id, published, now, engine)
        except Exception as e:  # the publish stands; say what did not follow it
            name = getattr(listener, "__qualname__", repr(listener))
            warnings.warn(f"run {run_id} published, but {name} failed after it: {type(e).__name__}: {e}",
                          RuntimeWarning, stacklevel=2)  # fmt: skip


# ---------------------------------------------------------------- writing a partition


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

    Inside a runner's run (module doc) the rows are staged instead, and published with the run;
    ``run_id`` must then be the run's id (or None). Reads of the run see the staged rows.
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
        staging_run = _staging_run(conn, table, run_id)
        if staging_run is not None:
            _stage(conn, table, frame, partition, run_id=staging_run, written_at=written_at, dtype=dtype)
        else:
            _write_live(conn, table, frame, partition, run_id=run_id, written_at=written_at, dtype=dtype)
    return len(frame)


# ---------------------------------------------------------------- schema evolution of the marts

_added_columns: dict[str, dict[str, Any]] = {}


def register_added_columns(table: str, columns: Mapping[str, Any]) -> None:
    """Declare columns a newer code version writes to the mart ``table`` ({name: SQLAlchemy type}).

    A warehouse built by an older version lacks them: the first write that carries them adds each
    one (nullable; the older partitions read NULL there) inside its own transaction, and records it
    in ``schema_changes``. A column nobody declared is still refused, so a misspelt column never
    becomes part of a mart. The owner calls this when it is imported, beside the code that writes
    the columns.
    """
    _added_columns.setdefault(table, {}).update(columns)


def _add_declared_columns(conn: Connection, table: str, into: str, extra: list[str], *, written_at: dt.datetime,
                          run_id: str | None) -> None:  # fmt: skip
    declared = _added_columns.get(table, {})
    undeclared = [c for c in extra if c not in declared]
    if undeclared:
        raise ValueError(f"replace_partition({table!r}): columns {undeclared} are not in the table")
    for column in extra:  # the live mart's additions are recorded; a run's staging table follows it
        _add_column(
            conn, into, column, declared[column], record=into == table, added_at=written_at, run_id=run_id
        )


def _check_columns(conn: Connection, table: str, into: str, frame: pd.DataFrame, *, written_at: dt.datetime,
                   run_id: str | None) -> bool:  # fmt: skip
    """Whether ``into`` exists; raises when ``frame`` has columns it lacks (named as ``table``), unless
    they are declared additions (:func:`register_added_columns`), which are added to ``into``."""
    inspector = sa.inspect(conn)
    if not inspector.has_table(into):
        return False
    existing = {c["name"] for c in inspector.get_columns(into)}
    extra = [c for c in frame.columns if c not in existing]
    if extra:
        _add_declared_columns(conn, table, into, extra, written_at=written_at, run_id=run_id)
    return True


def _write_live(
    conn: Connection,
    table: str,
    frame: pd.DataFrame,
    partition: Mapping[str, Any],
    *,
    run_id: str | None,
    written_at: dt.datetime,
    dtype: Mapping[str, Any] | None,
) -> None:
    key = partition_key(partition)
    if _check_columns(conn, table, table, frame, written_at=written_at, run_id=run_id):
        t = sa.Table(table, sa.MetaData(), autoload_with=conn)
        conn.execute(t.delete().where(_in_partition(t, partition)))
        _check_write(conn, table, key)  # after the first write: inside the write transaction
    else:
        _check_write(conn, table, key)
        frame.head(0).to_sql(table, conn, index=False, dtype=dict(dtype or {}) or None)
    if len(frame):
        frame.to_sql(table, conn, index=False, if_exists="append", chunksize=50_000)  # executemany
    _record_write(conn, table, key, row_count=len(frame), written_at=written_at, run_id=run_id)


def _record_write(
    conn: Connection, table: str, key: str, *, row_count: int, written_at: dt.datetime, run_id: str | None
) -> None:
    conn.execute(
        partition_writes.delete().where(
            (partition_writes.c.table_name == table) & (partition_writes.c.partition_key == key)
        )
    )
    conn.execute(
        partition_writes.insert().values(
            table_name=table, partition_key=key, row_count=row_count, written_at=written_at, run_id=run_id
        )
    )


# ---------------------------------------------------------------- staging inside a runner's run


@dataclass(frozen=True)
class StagedPartition:
    """One partition a run staged: its mart, key, row count and the staging table holding the rows."""

    run_id: str
    table_name: str
    partition_key: str
    staging_table: str
    row_count: int
    written_at: dt.datetime

    @property
    def partition(self) -> dict[str, Any]:
        return json.loads(self.partition_key)


def kernel_run_id() -> str | None:
    """The runner's run this process executes (:data:`RUNNER_ENV`), or None outside a runner kernel."""
    return os.environ.get(RUNNER_ENV, "").strip() or None


def _staging_run(conn: Connection, table: str, run_id: str | None) -> str | None:
    """The run whose write this is when it must be staged (None: write the live table).

    Staged only in a runner's kernel, and only for its own run while that run is ``running``: a
    kernel cannot claim another run, nor write for a run that already ended.
    """
    marker = kernel_run_id()
    if marker is None:
        return None
    if run_id is not None and run_id != marker:
        raise ValueError(
            f"replace_partition({table!r}): run_id {run_id!r} is not the run this kernel executes ({marker!r})"
        )
    status = conn.execute(sa.select(pipeline_runs.c.status).where(pipeline_runs.c.run_id == marker)).scalar()
    if status != "running":
        state = f"is {status}" if status else "has no run record"
        raise RuntimeError(f"replace_partition({table!r}): run {marker} {state}; nothing was written")
    return marker


def _staging_name(run_id: str, table: str) -> str:
    return "staging_" + hashlib.sha1(f"{run_id}\x00{table}".encode()).hexdigest()[:24]


def _columns_of(conn: Connection, name: str) -> sa.TableClause:
    """The table ``name`` as its columns (names and types as reflected) for statements on its rows.

    One catalogue query: a full reflection (``sa.Table(..., autoload_with=conn)``) also reads its
    keys, indexes and constraints, about ten times the cost, paid in the publishing process for
    every partition of every run.
    """
    return sa.table(name, *(sa.column(c["name"], c["type"]) for c in sa.inspect(conn).get_columns(name)))


def _copy_table(conn: Connection, source: str, target: str) -> sa.Table:
    """Create ``target`` with the columns (names, types, NULL-ability) of ``source``."""
    columns = sa.inspect(conn).get_columns(source)  # all a copy takes: no keys, indexes or constraints
    copy = sa.Table(
        target, sa.MetaData(), *(sa.Column(c["name"], c["type"], nullable=c["nullable"]) for c in columns)
    )
    copy.create(conn)
    return copy


def _stage(
    conn: Connection,
    table: str,
    frame: pd.DataFrame,
    partition: Mapping[str, Any],
    *,
    run_id: str,
    written_at: dt.datetime,
    dtype: Mapping[str, Any] | None,
) -> None:
    """Stage ``frame`` as ``partition`` of ``table`` for ``run_id`` (replacing what it staged there).

    The staging table copies the live table's columns (or, for a new mart, is created from the
    frame as the live table would be), so a frame the live write would refuse is refused here, at
    the same cell. The ``staged_partitions`` row is written first: it opens the transaction (also
    on SQLite, whose driver starts one only at the first write) that the table creation joins.
    """
    key = partition_key(partition)
    name = _staging_name(run_id, table)
    mine = (
        (staged_partitions.c.run_id == run_id)
        & (staged_partitions.c.table_name == table)
        & (staged_partitions.c.partition_key == key)
    )
    conn.execute(staged_partitions.delete().where(mine))
    conn.execute(
        staged_partitions.insert().values(
            run_id=run_id, table_name=table, partition_key=key, staging_table=name,
            row_count=len(frame), written_at=written_at,
        )
    )  # fmt: skip
    live = _check_columns(conn, table, table, frame, written_at=written_at, run_id=run_id)
    if not _check_columns(conn, table, name, frame, written_at=written_at, run_id=run_id):
        if live:
            _copy_table(conn, table, name)
        else:
            frame.head(0).to_sql(name, conn, index=False, dtype=dict(dtype or {}) or None)
    staged = sa.Table(name, sa.MetaData(), autoload_with=conn)
    conn.execute(staged.delete().where(_in_partition(staged, partition)))
    if len(frame):
        frame.to_sql(name, conn, index=False, if_exists="append", chunksize=50_000)  # executemany


def staged_for(
    run_id: str, *, table: str | None = None, conn: Connection | None = None, engine: Engine | None = None
) -> list[StagedPartition]:
    """The partitions ``run_id`` staged and has not published (of ``table``), in a stable order."""
    q = sa.select(staged_partitions).where(staged_partitions.c.run_id == run_id)
    if table is not None:
        q = q.where(staged_partitions.c.table_name == table)
    q = q.order_by(staged_partitions.c.table_name, staged_partitions.c.partition_key)
    if conn is None:
        with (engine or get_engine()).connect() as c:
            rows = c.execute(q).mappings().all()
    else:
        rows = conn.execute(q).mappings().all()
    return [StagedPartition(**dict(r)) for r in rows]


def publish_run(
    run_id: str, *, run_values: Mapping[str, Any], engine: Engine | None = None
) -> list[StagedPartition]:
    """Publish every partition ``run_id`` staged and record ``run_values`` on its run, in ONE transaction.

    For each staged partition (registered write checks first) the live partition is replaced by
    the staged rows and ``partition_writes`` by the staged bookkeeping; the staging tables are
    dropped. A process killed meanwhile leaves every partition as it was and the run not
    succeeded, or all of it done. A run that is no longer ``running`` (declared dead meanwhile)
    publishes nothing: raises ``RuntimeError`` if it had staged anything. Returns what was published.
    """
    engine = engine or get_engine()
    this_run = pipeline_runs.c.run_id == run_id
    with engine.begin() as conn:
        # the run's update is the first statement: it opens the write transaction on every backend
        running = conn.execute(
            pipeline_runs.update()
            .where(this_run & (pipeline_runs.c.status == "running"))
            .values(**run_values)
        ).rowcount
        staged = staged_for(run_id, conn=conn)
        if not running:
            if staged:
                raise RuntimeError(
                    f"run {run_id} is no longer running: its {len(staged)} staged partition(s) were not published"
                )
            conn.execute(pipeline_runs.update().where(this_run).values(**run_values))
            return []
        for item in staged:
            _publish_partition(conn, item)
        _drop_staged(conn, run_id, staged)
    if staged:
        finished = run_values.get("finished_at")
        _tell_publish_listeners(run_id, staged, finished or max(i.written_at for i in staged), engine)
    return staged


def _publish_partition(conn: Connection, item: StagedPartition) -> None:
    """Replace ``item``'s live partition by its staged rows (inside the publish transaction)."""
    staged = _columns_of(conn, item.staging_table)
    if sa.inspect(conn).has_table(item.table_name):
        live = _columns_of(conn, item.table_name)
    else:
        live = _copy_table(conn, item.staging_table, item.table_name)
    columns = [c.name for c in staged.c]
    extra = [c for c in columns if c not in live.c]
    if extra:
        raise ValueError(f"publish {item.table_name}: staged columns {extra} are not in the table")
    _check_write(conn, item.table_name, item.partition_key)
    partition = item.partition
    conn.execute(live.delete().where(_in_partition(live, partition)))
    rows = sa.select(*(staged.c[c] for c in columns)).where(_in_partition(staged, partition))
    conn.execute(live.insert().from_select(columns, rows))
    _record_write(
        conn, item.table_name, item.partition_key, row_count=item.row_count, written_at=item.written_at,
        run_id=item.run_id,
    )  # fmt: skip


def discard_run(
    run_id: str, *, run_values: Mapping[str, Any] | None = None, engine: Engine | None = None
) -> list[StagedPartition]:
    """Drop what ``run_id`` staged (and record ``run_values`` on its run) in one transaction.

    The live tables are untouched: every partition stays as it was before the run. Returns what
    was discarded.
    """
    engine = engine or get_engine()
    with engine.begin() as conn:
        if run_values:
            conn.execute(pipeline_runs.update().where(pipeline_runs.c.run_id == run_id).values(**run_values))
        staged = staged_for(run_id, conn=conn)
        _drop_staged(conn, run_id, staged)
    return staged


def _drop_staged(conn: Connection, run_id: str, staged: list[StagedPartition]) -> None:
    conn.execute(staged_partitions.delete().where(staged_partitions.c.run_id == run_id))
    for name in sorted({s.staging_table for s in staged}):
        sa.Table(name, sa.MetaData()).drop(conn, checkfirst=True)


# ---------------------------------------------------------------- reading (a run sees what it staged)


def _own_staged(conn: Connection, table: str | None = None) -> list[StagedPartition]:
    """What this kernel's run staged (of ``table``); empty outside a runner kernel."""
    run_id = kernel_run_id()
    return staged_for(run_id, table=table, conn=conn) if run_id else []


def staged_writes(*, conn: Connection) -> list[dict[str, Any]]:
    """This kernel's run's staged partitions as ``partition_writes`` rows with their ``pipeline``.

    What the run's own checks count instead of the published writes of the same partitions
    (``checks.snapshot``); empty outside a runner kernel.
    """
    run_id = kernel_run_id()
    if run_id is None:
        return []
    pipeline = conn.execute(
        sa.select(pipeline_runs.c.pipeline).where(pipeline_runs.c.run_id == run_id)
    ).scalar()
    return [
        dict(table_name=s.table_name, partition_key=s.partition_key, row_count=s.row_count,
             written_at=s.written_at, run_id=s.run_id, pipeline=pipeline)
        for s in staged_for(run_id, conn=conn)
    ]  # fmt: skip


def partition_table(conn: Connection, table: str, partition: Mapping[str, Any]) -> str:
    """The table holding the rows this process sees for ``partition`` of ``table``.

    The staging table when this kernel's run staged that partition, else ``table`` itself.
    """
    key = partition_key(partition)
    found = [s for s in _own_staged(conn, table) if s.partition_key == key]
    return found[0].staging_table if found else table


def _equal(t: sa.Table, where: Mapping[str, Any]) -> list[sa.ColumnElement[bool]]:
    return [t.c[k] == partition_value(t.c[k], v) for k, v in where.items()]


def _visible(conn: Connection, table: str, where: Mapping[str, Any]) -> sa.Select:
    """The rows of ``table`` this process sees, filtered by ``where``, ordered by all columns.

    Outside a run (or for a table the run did not stage) the live rows; else the live rows of
    the partitions the run did not stage, and its staged rows.
    """
    staged = _own_staged(conn, table)
    if not staged:
        t = sa.Table(table, sa.MetaData(), autoload_with=conn)  # NoSuchTableError: no such table
        return sa.select(t).where(*_equal(t, where)).order_by(*t.c)
    s = sa.Table(staged[0].staging_table, sa.MetaData(), autoload_with=conn)
    if not sa.inspect(conn).has_table(table):  # a new mart: only what the run staged
        return sa.select(s).where(*_equal(s, where)).order_by(*s.c)
    t = sa.Table(table, sa.MetaData(), autoload_with=conn)
    live = sa.select(t).where(*_equal(t, where), *(_outside_partition(t, p.partition) for p in staged))
    columns = [s.c[c.name] if c.name in s.c else sa.cast(sa.null(), c.type).label(c.name) for c in t.c]
    own = sa.select(*columns).where(*_equal(s, where))
    both = sa.union_all(live, own).subquery()
    return sa.select(both).order_by(*both.c)


def read_table(
    table: str, *, where: Mapping[str, Any] | None = None, engine: Engine | None = None
) -> pd.DataFrame:
    """Rows of ``table`` (optionally filtered by equality), ordered by all columns for stable output.

    Inside a runner's run, the partitions the run staged read as staged (module doc).
    """
    engine = engine or get_engine()
    with engine.connect() as conn:
        return pd.read_sql(_visible(conn, table, where or {}), conn)
