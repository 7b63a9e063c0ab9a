"""Verified reads of thousands of small deliveries in one DuckDB scan: the rows and report of ``read_verified``.

:func:`read_verified_bulk` returns exactly what :func:`helpers.storage.verified.read_verified`
(``combine="arrow"``) returns, faster where a source is thousands of daily files (Growth reads every
daily partition of the history on each run; pyarrow opens them one by one at 1-2 ms a file):

1. every delivery's sha256 is checked against its manifest first, as ``read_verified`` does; a
   changed or missing file is rejected whole with the same record (``verified._read_one``);
2. the Parquet schema and key-value metadata of every remaining file are read in one DuckDB call
   each; the fast path is taken only when all files share one schema, that schema holds every
   column asked for, and each contract column in it has its contract type (so no value can be
   quarantined and no delivery lacks a column);
3. then DuckDB reads them all in one scan (files in manifest order, rows in file order), cast to
   the first file's own Arrow schema, with ``_partition`` and ``_arrived_at`` as ``read_verified`` adds them.

Anything else (schemas differing between deliveries, type drift, a missing column, a type this
module does not map) falls back to ``read_verified`` itself, so the guarantees stay those of
:mod:`helpers.storage.verified`: quarantine with reasons and counts, nothing dropped silently.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from helpers.storage import contracts, landing, verified

# Arrow types whose values DuckDB returns unchanged (a timezone's name aside, restored by the cast).
_SAFE = (pa.types.is_string, pa.types.is_integer, pa.types.is_boolean, pa.types.is_date32)
_SAFE += (pa.types.is_timestamp, pa.types.is_decimal128, pa.types.is_float64)


_CONNECTION: list = []  # one in-process DuckDB per process, a cursor per read


def _connect():  # noqa: ANN202 - duckdb is imported here: most callers never need it
    if not _CONNECTION:
        import duckdb

        _CONNECTION.append(duckdb.connect(config={"threads": 2, "memory_limit": "2GB"}))
    return _CONNECTION[0].cursor()


def _uniform(con, paths: list[str]) -> bool:  # noqa: ANN001
    """True when every file has the same Parquet schema and the same key-value metadata."""
    schema_sql = (
        "SELECT file_name, string_agg(concat_ws(':', name, type, type_length, repetition_type, "
        "num_children, converted_type, scale, precision, field_id, logical_type), '|') "
        "FROM parquet_schema(?) GROUP BY file_name"
    )
    kv_sql = (
        "SELECT file_name, string_agg(hex(key) || '=' || hex(value), '|' ORDER BY key) "
        "FROM parquet_kv_metadata(?) GROUP BY file_name"
    )
    schemas = dict(con.execute(schema_sql, [paths]).fetchall())
    kvs = dict(con.execute(kv_sql, [paths]).fetchall())
    if len(schemas) != len(paths):
        return False
    return len({(schemas[p], kvs.get(p)) for p in paths}) == 1


def _fast_schema(
    source: str, first: str, columns: list[str] | None, contract: pa.Schema | None
) -> pa.Schema | None:
    """The Arrow schema the fast path reads into, or None when it must not be taken."""
    ref = pq.read_schema(first)
    wanted = list(columns) if columns else list(ref.names)
    required = wanted if columns else (list(contract.names) if contract is not None else [])
    if len(set(ref.names)) != len(ref.names) or any(c not in ref.names for c in [*wanted, *required]):
        return None  # read_verified rejects the deliveries (or raises): let it
    out = pa.schema([ref.field(c) for c in wanted], metadata=ref.metadata)
    for f in out:
        if not any(ok(f.type) for ok in _SAFE):
            return None
        if contract is not None and f.name in contract.names and contract.field(f.name).type != f.type:
            return None  # type drift: read_verified screens the values
    return out


def read_verified_bulk(
    source: str,
    *,
    as_of: dt.datetime | None = None,
    start: dt.date | str | None = None,
    end: dt.date | str | None = None,
    columns: list[str] | None = None,
    root: Path | None = None,
) -> verified.VerifiedRead:
    """:func:`helpers.storage.verified.read_verified` (``combine="arrow"``), read in one DuckDB scan
    when every delivery has the same schema (module doc); the same frame and report either way."""

    def fallback() -> verified.VerifiedRead:
        return verified.read_verified(
            source, as_of=as_of, start=start, end=end, columns=columns, root=root, combine="arrow"
        )

    lo, hi = (str(start) if start else None), (str(end) if end else None)
    found = [
        d
        for d in landing.deliveries(source, root=root, as_of=as_of)
        if not ((lo and d.partition < lo) or (hi and d.partition > hi))
    ]
    contract = contracts.schema(source)
    if len(found) < 2:
        return fallback()
    report = verified.LandingReport(deliveries={source: len(found)}, received={source: 0})
    used: list[landing.Delivery] = []
    for d in found:
        if landing.verify_delivery(d, root=root) is None:
            used.append(d)
            continue
        _table, rejected, _rows = verified._read_one(d, root, columns, contract)
        if rejected is None:  # changed back in between: let read_verified decide
            return fallback()
        report.rejected.append(rejected)
        report.received[source] += d.rows
    paths = [str(landing.source_dir(source, root) / d.file) for d in used]
    if not used or len(set(paths)) != len(paths):
        return fallback()
    import duckdb

    con = _connect()
    try:
        schema = _fast_schema(source, paths[0], columns, contract) if _uniform(con, paths) else None
        if schema is None or "__file" in schema.names:
            return fallback()
        select = ", ".join('"' + c.replace('"', '""') + '"' for c in schema.names)
        query = f"SELECT {select}, filename AS __file FROM read_parquet($paths, filename = true)"
        table = con.sql(query, params={"paths": paths}).to_arrow_table()
    except duckdb.Error:  # out of memory, a file DuckDB cannot read: the pyarrow path decides
        return fallback()
    finally:
        con.close()
    files = pc.dictionary_encode(table.column("__file")).combine_chunks()
    order = {p: i for i, p in enumerate(paths)}
    codes = np.asarray([order[f] for f in files.dictionary.to_pylist()], dtype=np.int64)
    index = codes[files.indices.to_numpy(zero_copy_only=False)] if len(files) else codes[:0]
    if len(index) and (np.diff(index) < 0).any():
        return fallback()  # not in manifest order: never expected, but order is part of the result
    sizes = np.bincount(index, minlength=len(paths))
    table = table.drop_columns(["__file"]).cast(schema)
    report.received[source] += int(table.num_rows)
    frame = table.to_pandas()
    frame["_partition"] = np.repeat([d.partition for d in used], sizes)
    arrived = pd.to_datetime(np.repeat([d.arrived_at for d in used], sizes), utc=True)
    frame["_arrived_at"] = arrived.astype("datetime64[us, UTC]")
    return verified.VerifiedRead(frame, report)
