"""A database table or query (the account database) extracted through SQLAlchemy into the landing zone.

The source URL is a secret: it comes only from an environment variable whose *name* is passed
(``url_env``, default ``WORKBOOK_ACCOUNT_DB_URL``), never as a value, and messages show it with
the password hidden.

Two modes, both landing exactly one delivery per ``as_of`` date (partition = the UTC date of
``as_of``, arrival time = ``as_of``):

- **snapshot** (no ``watermark``): every row of the table or query;
- **incremental** (``watermark="updated_at"``, a table only): the rows with
  ``last landed < updated_at <= as_of``. The last landed watermark is the maximum of that column
  over the rows already delivered, read back from the landing zone itself, so there is no state
  to lose or to drift from what actually landed. The ``<= as_of`` bound makes a run for a past
  ``as_of`` take what was there then. A row whose watermark is NULL can never be picked up
  incrementally: it is quarantined (and counted) on every run until the source fixes it.
  **Late commits.** An application stamps ``updated_at`` when its transaction starts, and the
  row becomes visible when it commits: a row stamped just before the last landed watermark can
  commit after the extract that set it. Each run therefore re-reads ``lookback`` (default 15
  minutes) before the landed watermark and skips the rows already landed there (same primary key
  and watermark value), so a commit up to ``lookback`` late is landed once, not lost.

A run whose ``as_of`` date already has a delivery is a no-op, so re-running is safe. A run that
finds nothing new still lands an empty delivery: it records that the extract ran, which is what
freshness checks need to tell "no changes" from "no extract". Naive timestamps in the source are
taken as UTC.

The source gets its own engine (``sqlalchemy.create_engine``), not ``warehouse.get_engine``,
which would create the workbook's ops tables in the source database.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from helpers.core.timeutil import as_utc
from helpers.storage import landing
from helpers.storage.extract.base import ExtractResult, Kind, quarantine_root
from helpers.storage.quarantine import QuarantinedRow, write_quarantine

DEFAULT_URL_ENV = "WORKBOOK_ACCOUNT_DB_URL"
# Unconstrained NUMERIC columns land with this many decimal places (38 digits in all).
DEFAULT_DECIMAL_SCALE = 18


def source_url(url_env: str) -> str:
    """The SQLAlchemy URL held by the environment variable ``url_env``; ValueError if unset."""
    url = os.environ.get(url_env, "").strip()
    if not url:
        raise ValueError(
            f"environment variable {url_env} is not set; expected the source database's SQLAlchemy URL"
        )
    return url


def redacted(url: str) -> str:
    """The URL with its password hidden, for messages."""
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def arrow_type(column_type: sa.types.TypeEngine[Any]) -> pa.DataType:
    """The Arrow type a source column lands as (money stays Decimal; unknown types land as text)."""
    t = column_type
    if isinstance(t, sa.Boolean):
        return pa.bool_()
    if isinstance(t, sa.Integer):
        return pa.int64()
    if isinstance(t, sa.Float):
        return pa.float64()  # the source's own floats; converting them would not restore precision
    if isinstance(t, sa.Numeric):
        scale = t.scale if t.scale is not None else DEFAULT_DECIMAL_SCALE
        return pa.decimal128(38, scale)
    if isinstance(t, sa.DateTime):
        return pa.timestamp("us", tz="UTC" if t.timezone else None)
    if isinstance(t, sa.Date):
        return pa.date32()
    if isinstance(t, sa.LargeBinary):
        return pa.binary()
    return pa.string()


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def rows_table(types: Mapping[str, pa.DataType], rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows as an Arrow table with exactly ``types`` (columns in that order), also when empty."""
    arrays = []
    for name, kind in types.items():
        values = [row[name] for row in rows]
        if pa.types.is_string(kind):
            values = [_text(v) for v in values]
        elif pa.types.is_timestamp(kind):
            values = [_timestamp(v, aware=kind.tz is not None) for v in values]
        arrays.append(pa.array(values, type=kind))
    return pa.Table.from_arrays(arrays, schema=pa.schema(list(types.items())))


def _timestamp(value: Any, *, aware: bool) -> dt.datetime | None:
    if value is None:
        return None
    value = as_utc(value)
    return value if aware else value.replace(tzinfo=None)


DEFAULT_LOOKBACK = dt.timedelta(minutes=15)


def landed_watermark(source: str, column: str, *, root: Path | None = None) -> dt.datetime | None:
    """The largest ``column`` value over every row of ``source`` delivered so far (aware UTC)."""
    frames = []
    for d in landing.deliveries(source, root=root):
        if d.rows:
            frames.append(pd.read_parquet(landing.source_dir(source, root) / d.file, columns=[column]))
    if not frames:
        return None
    values = pd.concat(frames, ignore_index=True)[column].dropna()
    if values.empty:
        return None
    return as_utc(pd.Timestamp(values.max()).to_pydatetime())


def landed_since(
    source: str, column: str, keys: Sequence[str], since: dt.datetime, *, root: Path | None = None
) -> set[tuple[Any, ...]]:
    """(primary key..., ``column``) of the landed rows whose ``column`` is at or after ``since``."""
    seen: set[tuple[Any, ...]] = set()
    for d in landing.deliveries(source, root=root):
        if not d.rows:
            continue
        frame = pd.read_parquet(landing.source_dir(source, root) / d.file, columns=[*keys, column])
        stamps = pd.to_datetime(frame[column], utc=True)
        recent = frame[stamps >= pd.Timestamp(since)]
        for row in recent.itertuples(index=False):
            *key, stamp = row
            seen.add((*key, _utc_key(stamp)))
    return seen


def _utc_key(value: Any) -> dt.datetime:
    return as_utc(pd.Timestamp(value).to_pydatetime())


def extract_sql(
    source: str,
    *,
    as_of: dt.datetime,
    table: str | None = None,
    query: str | None = None,
    watermark: str | None = None,
    schema: str | None = None,
    url_env: str = DEFAULT_URL_ENV,
    root: Path | None = None,
    lookback: dt.timedelta = DEFAULT_LOOKBACK,
) -> ExtractResult:
    """Land ``table`` (or the text ``query``) of the database at ``$url_env`` for ``as_of``'s date.

    Snapshot unless ``watermark`` names a timestamp column of ``table`` (see the module notes).
    Rows are ordered by the watermark then the primary key (or every column), so the same source
    state lands the same file. ``root`` is the landing folder; quarantine goes beside it.
    """
    if (table is None) == (query is None):
        raise ValueError(f"{source}: pass exactly one of table= or query=")
    if watermark and query is not None:
        raise ValueError(
            f"{source}: incremental extraction (watermark={watermark!r}) needs table=, not query="
        )
    as_of = as_utc(as_of)
    partition = as_of.date().isoformat()
    done = [d for d in landing.deliveries(source, root=root) if d.partition == partition]
    if done:
        return ExtractResult(
            source, 0, 0, 0, note=f"already extracted for {partition} ({done[0].file}); nothing to do"
        )
    url = source_url(url_env)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            quarantined: list[QuarantinedRow] = []
            if table is not None:
                rows, quarantined, types = _read_table(
                    conn, source, table, schema, watermark, as_of, url, root=root, lookback=lookback
                )
                table_out = rows_table(types, rows)
            else:
                # A text query has no declared types: Arrow infers them from the values.
                result = conn.execute(sa.text(str(query)))
                names = list(result.keys())
                rows = [dict(r) for r in result.mappings()]
                table_out = pa.Table.from_pylist(rows) if rows else _empty(names)
    finally:
        engine.dispose()
    qfile = None
    if quarantined:
        qfile = write_quarantine(source, quarantined, name=table, root=quarantine_root(root))
    delivery = landing.write_delivery(source, partition, table_out, arrived_at=as_of, root=root)
    return ExtractResult(
        source,
        received=table_out.num_rows + len(quarantined),
        landed=table_out.num_rows,
        quarantined=len(quarantined),
        deliveries=(delivery,),
        quarantine_file=qfile,
    )


def _empty(names: Sequence[str]) -> pa.Table:
    return pa.table({name: pa.array([], type=pa.string()) for name in names})


def _read_table(
    conn: sa.Connection,
    source: str,
    table: str,
    schema: str | None,
    watermark: str | None,
    as_of: dt.datetime,
    url: str,
    *,
    root: Path | None,
    lookback: dt.timedelta = DEFAULT_LOOKBACK,
) -> tuple[list[dict[str, Any]], list[QuarantinedRow], dict[str, pa.DataType]]:
    try:
        t = sa.Table(table, sa.MetaData(schema=schema), autoload_with=conn)
    except sa.exc.NoSuchTableError:
        raise ValueError(f"{source}: table {table!r} not found in {redacted(url)}") from None
    types = {c.name: arrow_type(c.type) for c in t.columns}
    keys = list(t.primary_key.columns) or list(t.columns)
    q = sa.select(t)
    if not watermark:
        rows = [dict(r) for r in conn.execute(q.order_by(*keys)).mappings()]
        return rows, [], types
    if watermark not in t.c:
        raise ValueError(f"{source}: table {table!r} has no column {watermark!r} to use as the watermark")
    col = t.c[watermark]
    if not isinstance(col.type, sa.DateTime):
        raise ValueError(
            f"{source}: watermark column {table}.{watermark} is {col.type}; expected a timestamp column"
        )
    aware = bool(col.type.timezone)
    upper = _timestamp(as_of, aware=aware)
    cond = col <= upper
    last = landed_watermark(source, watermark, root=root)
    seen: set[tuple[Any, ...]] = set()
    if last is not None:
        since = last - lookback
        cond = sa.and_(col >= _timestamp(since, aware=aware), cond)
        seen = landed_since(source, watermark, [k.name for k in keys], since, root=root)
    q = q.where(sa.or_(cond, col.is_(None))).order_by(col, *keys)
    rows, quarantined = [], []
    for r in conn.execute(q).mappings():
        row = dict(r)
        if seen and row[watermark] is not None:
            if (*(row[k.name] for k in keys), _utc_key(row[watermark])) in seen:
                continue  # landed by an earlier run (re-read inside the lookback)
        if row[watermark] is None:
            reason = f"{watermark} is NULL: the row cannot be extracted incrementally"
            quarantined.append(QuarantinedRow(source, table, None, reason, row, watermark))
        else:
            rows.append(row)
    return rows, quarantined, types


@dataclass(frozen=True)
class SqlTable:
    """The ``sql`` adapter: one table (snapshot or incremental) or query of a database named by env var."""

    kind: ClassVar[Kind] = "sql"
    source: str = "account_db"
    table: str | None = None
    query: str | None = None
    watermark: str | None = None
    schema: str | None = None
    url_env: str = DEFAULT_URL_ENV
    root: Path | None = None
    lookback: dt.timedelta = DEFAULT_LOOKBACK

    def extract(self, as_of: dt.datetime) -> ExtractResult:
        """Land the table for ``as_of``'s date (a no-op if that date already has a delivery)."""
        return extract_sql(
            self.source,
            as_of=as_of,
            table=self.table,
            query=self.query,
            watermark=self.watermark,
            schema=self.schema,
            url_env=self.url_env,
            root=self.root,
            lookback=self.lookback,
        )
