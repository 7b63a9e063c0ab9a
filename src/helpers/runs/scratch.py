"""The scratch warehouse of a notebook run by hand: a copy of the published warehouse, and this kernel on it.

:func:`open_scratch` (called by :func:`helpers.runs.session.open_session` for an interactive run)
rebuilds ``runs/scratch/<pipeline>.sqlite`` from the published warehouse and points this process
at it: ``WORKBOOK_WAREHOUSE_URL`` (so every :func:`helpers.storage.warehouse.get_engine` call
without a URL, and any process started from here, uses the scratch) and
``WORKBOOK_QUARANTINE_DIR`` (``runs/scratch/<pipeline>.quarantine``). The published URL is kept in
:data:`PUBLISHED_ENV`, so opening a session again in the same kernel copies the published warehouse
again, not the scratch.

The copy, made each time a session opens (so the scratch is the published warehouse as of then,
plus what this notebook wrote since):

- SQLite: SQLite's online backup from a read-only connection (``mode=ro``): a consistent snapshot,
  read page by page (about the file's size; a second or two for a few hundred MB). A read-only
  connection never writes the database file, nor checkpoints its WAL.
- Any other database (PostgreSQL): every table's rows, read in one read-only ``REPEATABLE READ``
  transaction and inserted into the scratch, in 5,000-row batches (cost: the whole warehouse over
  the network, per session). Ops tables declared so far get their own definitions and indexes;
  the other tables (marts) get their columns with generic types.

Locks (``helpers.runs.locks``) guard the published months, not the scratch: the copied locks are
released in the scratch (:func:`release_locks`), so a locked month can be recomputed there; the
session says that publishing it needs ``workbook reopen`` first.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from helpers.core import paths
from helpers.runs import locks
from helpers.storage import warehouse

PUBLISHED_ENV = "WORKBOOK_PUBLISHED_WAREHOUSE_URL"  # the published URL, while this process is on a scratch
WAREHOUSE_ENV = "WORKBOOK_WAREHOUSE_URL"
QUARANTINE_ENV = "WORKBOOK_QUARANTINE_DIR"
BATCH_ROWS = 5000
SCRATCH_RELEASE = "a scratch copy: locks guard the published warehouse only"


def published_url() -> str:
    """The published warehouse's URL, also while this process is pointed at a scratch."""
    return os.environ.get(PUBLISHED_ENV) or warehouse.warehouse_url()


def scratch_url(pipeline: str) -> str:
    return f"sqlite:///{paths.scratch_warehouse_path(pipeline)}"


def open_scratch(pipeline: str, published: str) -> Path:
    """Rebuild ``pipeline``'s scratch warehouse from ``published`` and point this process at it.

    Returns the scratch file. Never writes ``published``.
    """
    path = paths.scratch_warehouse_path(pipeline)
    url = scratch_url(pipeline)
    if _same_database(url, published):
        raise ValueError(f"the published warehouse is {path}: a scratch cannot replace it")
    if path.exists():  # a session opened before in this kernel: close its connections first
        warehouse.get_engine(url).dispose()
    for leftover in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        leftover.unlink(missing_ok=True)
    quarantine = paths.scratch_quarantine_dir(pipeline)
    shutil.rmtree(quarantine, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    copy_warehouse(published, path)
    os.environ[PUBLISHED_ENV] = published
    os.environ[WAREHOUSE_ENV] = url
    os.environ[QUARANTINE_ENV] = str(quarantine)
    engine = warehouse.get_engine(url)
    warehouse.metadata.create_all(engine)  # also on an engine cached by an earlier session
    return path


def copy_warehouse(source_url: str, target: Path) -> None:
    """Copy the database at ``source_url`` into the new SQLite file ``target``, reading it only."""
    src = sa.engine.make_url(source_url)
    if src.get_backend_name() == "sqlite":
        database = src.database or ""
        if database in ("", ":memory:") or not Path(database).exists():
            return  # nothing published yet: the scratch starts empty
        source = sqlite3.connect(f"{Path(database).resolve().as_uri()}?mode=ro", uri=True)
        dest = sqlite3.connect(str(target))
        try:
            source.backup(dest)
        finally:
            dest.close()
            source.close()
        return
    _copy_rows(source_url, target)


def _copy_rows(source_url: str, target: Path) -> None:
    """Every table's rows from a non-SQLite database into ``target``, in one read-only snapshot."""
    engine = sa.create_engine(source_url)  # not warehouse.get_engine: that would create tables there
    dest = sa.create_engine(f"sqlite:///{target}")
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":  # one consistent snapshot, and nothing written
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            found = sa.MetaData()
            found.reflect(conn)
            tables = _scratch_tables(found)
            tables.create_all(dest)
            for table in found.sorted_tables:
                _copy_table(conn, table, dest, tables.tables[table.name])
            conn.rollback()
    finally:
        engine.dispose()
        dest.dispose()


def _scratch_tables(found: sa.MetaData) -> sa.MetaData:
    """The scratch's tables: declared ops tables as declared, the others with generic column types."""
    out = sa.MetaData()
    for name, table in found.tables.items():
        declared = warehouse.metadata.tables.get(name)
        if declared is not None:
            declared.to_metadata(out)
            continue
        sa.Table(
            name, out, *(sa.Column(c.name, _generic(c.type), nullable=c.nullable) for c in table.columns)
        )
    return out


def _generic(kind: sa.types.TypeEngine) -> sa.types.TypeEngine:
    try:
        return kind.as_generic()
    except NotImplementedError:
        return sa.Text()


def _copy_table(conn: sa.Connection, source: sa.Table, dest: sa.Engine, target: sa.Table) -> None:
    names = [c.name for c in source.columns if c.name in target.columns]
    result = conn.execution_options(stream_results=True).execute(sa.select(*(source.c[n] for n in names)))
    with dest.begin() as out:
        for batch in _batches(result):
            out.execute(target.insert(), [dict(zip(names, row, strict=True)) for row in batch])


def _batches(result: sa.CursorResult[Any]) -> Iterator[list[Any]]:
    while rows := result.fetchmany(BATCH_ROWS):
        yield rows


def _same_database(a: str, b: str) -> bool:
    ua, ub = sa.engine.make_url(a), sa.engine.make_url(b)
    if ua.get_backend_name() == ub.get_backend_name() == "sqlite":
        return (
            bool(ua.database and ub.database) and Path(ua.database).resolve() == Path(ub.database).resolve()
        )
    return False


def release_locks(now: dt.datetime) -> list[locks.Lock]:
    """Release, in this process's scratch, every lock copied from the published warehouse.

    Locks guard the published months; the scratch is never published, so a notebook run by hand
    may recompute a locked month there. The released rows stay (``released_by`` ``scratch``).
    Returns the locks that were active in the published warehouse.
    """
    engine = warehouse.get_engine()
    held = locks.active_locks(engine=engine)
    with engine.begin() as conn:
        for period in sorted({lock.period for lock in held}):
            locks.release_month(period, by="scratch", at=now, reason=SCRATCH_RELEASE, conn=conn)
    return held
