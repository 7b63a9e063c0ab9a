"""Verified reads of thousands of small deliveries in one DuckDB scan: the rows and report of ``read_verified``.

:func:`read_verified_bulk` returns exactly what :func:`helpers.storage.verified.read_verified`
(``combine="arrow"``) returns, faster where a source is thousands of daily files (Growth reads every
daily partition of the history on each run; pyarrow opens them one by one at 1-2 ms a file):

1. every delivery's sha256 is checked against its manifest first, as ``read_verified`` does; a
   changed or missing file is rejected whole with the same record (``verified._read_one``);
2. the Parquet schema and key-value metadata of every remaining file are read in one DuckDB call
   (once per file content: kept by sha256 beside the landing zone, ``<data>/cache``); the fast
   path is taken only when all files share one schema, that schema holds every
   column asked for, and each contract column in it has its contract type (so no value can be
   quarantined and no delivery lacks a column);
3. then DuckDB reads them all in one scan (files in manifest order, rows in file order), cast to
   the first file's own Arrow schema, with ``_partition`` and ``_arrived_at`` as ``read_verified`` adds them;
   where a chunk holds exactly the next deliveries' rows (:mod:`helpers.storage.chunks`), it is
   scanned in place of their files, and the read writes the next chunk once enough deliveries
   have settled.

Anything else (schemas differing between deliveries, type drift, a missing column, a type this
module does not map) falls back to ``read_verified`` itself, so the guarantees stay those of
:mod:`helpers.storage.verified`: quarantine with reasons and counts, nothing dropped silently.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from helpers.core import paths as core_paths
from helpers.storage import chunks, contracts, digests, landing, verified

# Arrow types whose values DuckDB returns unchanged (a timezone's name aside, restored by the cast).
_SAFE = (pa.types.is_string, pa.types.is_integer, pa.types.is_boolean, pa.types.is_date32)
_SAFE += (pa.types.is_timestamp, pa.types.is_decimal128, pa.types.is_float64)


MIN_FILES = 8  # fewer deliveries are read file by file (a DuckDB scan's fixed cost is more than theirs)
_CONNECTION: list = []  # one in-process DuckDB per process, a cursor per read


def _connect():  # noqa: ANN202 - duckdb is imported here: most callers never need it
    if not _CONNECTION:
        import duckdb

        _CONNECTION.append(duckdb.connect(config={"threads": 2, "memory_limit": "2GB"}))
    return _CONNECTION[0].cursor()


_SIGNATURE_SQL = (
    "SELECT s.file_name, s.sig || '#' || coalesce(k.kv, '-') FROM ("
    "SELECT file_name, string_agg(concat_ws(':', name, type, type_length, repetition_type, "
    "num_children, converted_type, scale, precision, field_id, logical_type), '|') "
    "FROM parquet_schema(?) GROUP BY file_name) s(file_name, sig) LEFT JOIN ("
    "SELECT file_name, string_agg(hex(key) || '=' || hex(value), '|' ORDER BY key) "
    "FROM parquet_kv_metadata(?) GROUP BY file_name) k(file_name, kv) USING (file_name)"
)  # a file without key-value metadata is "-", which no hex string is
SIGNATURES_FILE = "parquet-signatures.json"
_SIGNATURES: dict[str, dict[str, str]] = {}  # cache file -> {file sha256: signature digest}


def _signature_cache(root: Path | None) -> Path:
    """Beside the landing zone (``<data>/cache``): the signatures of files already seen, by content."""
    return (root or core_paths.landing_dir()).parent / "cache" / SIGNATURES_FILE


def _load_signatures(path: Path) -> dict[str, str]:
    if str(path) not in _SIGNATURES:
        try:
            data = json.loads(path.read_text())
            _SIGNATURES[str(path)] = (
                {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
            )
        except (OSError, ValueError):  # none yet, or unreadable: every signature is read again
            _SIGNATURES[str(path)] = {}
    return _SIGNATURES[str(path)]


def _save_signatures(path: Path, new: dict[str, str]) -> None:
    """Add ``new`` to the cache file (merged with what another process wrote; replaced in one step)."""
    try:
        _SIGNATURES[str(path)] = core_paths.merge_json(path, {**_load_signatures(path), **new})
    except OSError:  # a read-only home: the cache is an optimisation, never a failure
        pass


def _signatures(con, paths: list[str]) -> dict[str, str]:  # noqa: ANN001
    """Each file's signature: its Parquet schema and key-value metadata, hashed (one DuckDB call)."""
    got = con.execute(_SIGNATURE_SQL, [paths, paths]).fetchall()
    return {p: hashlib.sha256(sig.encode()).hexdigest()[:32] for p, sig in got}


def _uniform(con, paths: list[str], digests: list[str], cache: Path) -> str | None:  # noqa: ANN001
    """The signature every file shares (the same Parquet schema and key-value metadata), or None.

    A file's signature is read by DuckDB once per content: it is kept by the file's sha256, which
    the caller has just verified against the manifest, so a file that changed is never judged by an
    old signature.
    """
    known = _load_signatures(cache)
    missing = sorted({p for p, h in zip(paths, digests, strict=True) if h not in known})
    new: dict[str, str] = {}
    if missing:
        got = _signatures(con, missing)
        if set(got) != set(missing):
            return None  # a file without a schema row: let read_verified decide
        by_path = dict(zip(paths, digests, strict=True))
        new = {by_path[p]: sig for p, sig in got.items()}
        _save_signatures(cache, new)
    found = {known.get(h) or new[h] for h in digests}
    return found.pop() if len(found) == 1 else None


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


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
    )]  # fmt: skip


@functools.cache
def _glibc():  # noqa: ANN202 - (malloc_trim, mallinfo2) of glibc, or None (another C library)
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim, info = libc.malloc_trim, getattr(libc, "mallinfo2", None)
    except (OSError, AttributeError):
        return None
    if info is not None:
        info.restype = _MallInfo2
    return trim, info


TRIM_FREE_BYTES = 64 << 20  # freed heap memory worth giving back (less is reused by the next step)


def release_memory() -> None:
    """Give the heap memory freed so far back to the system (glibc ``malloc_trim``, Arrow's pool).

    A large read or step frees as much as it keeps (DuckDB's result, the Arrow copy, sort keys),
    and glibc keeps those pages mapped: without this the process's resident memory stays at
    every step's peak. The heap is trimmed only when it holds at least :data:`TRIM_FREE_BYTES`
    freed (glibc's ``mallinfo2``): trimming less costs more than it saves, as the next step maps
    and faults those pages in again. Changes no value; a no-op where glibc is not the C library.
    """
    pa.default_memory_pool().release_unused()
    glibc = _glibc()
    if glibc is None:
        return
    trim, info = glibc
    if info is None or info().fordblks >= TRIM_FREE_BYTES:
        trim(0)


def share_values(frame: pd.DataFrame, columns: Sequence[str], pool: dict[Any, Any]) -> pd.DataFrame:
    """``frame`` with each string (or date) of ``columns`` replaced by the equal one already in
    ``pool`` (added there if new): the same values, one object for each.

    A read makes one Python string per row and per read, about 60 bytes for an 18-character id; a
    million accounts' customer, subscription and invoice ids repeat across sources and rows (an
    invoice id in every line and payment of it). Missing values and other types are left as they
    are; a column of mixed types is left whole (``factorize`` takes 1, 1.0 and True for one value).
    """
    for column in columns:
        if column not in frame.columns or frame[column].dtype != object:
            continue
        values = frame[column].to_numpy()
        if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "date", "empty"):
            continue
        codes, uniques = pd.factorize(values)
        shared = np.empty(len(uniques), dtype=object)
        shared[:] = [pool.setdefault(v, v) for v in uniques]
        out = values.copy()
        present = codes >= 0
        out[present] = shared[codes[present]]
        frame[column] = out
    return frame


def _verified(
    source: str,
    found: list[landing.Delivery],
    root: Path | None,
    columns: list[str] | None,
    contract: pa.Schema | None,
    report: verified.LandingReport,
) -> list[landing.Delivery] | None:
    """The deliveries whose sha256 matches their manifest; each other one is rejected whole into
    ``report`` as ``read_verified`` rejects it. None: one changed back in between (let it decide)."""
    used: list[landing.Delivery] = []
    base = str(landing.source_dir(source, root))
    store = digests.DigestStore(source, root)
    try:
        for d in found:
            if landing.verify_delivery(d, root=root, path=f"{base}/{d.file}", sha256=store.sha256) is None:
                used.append(d)
                continue
            _table, rejected, _rows = verified._read_one(d, root, columns, contract)
            if rejected is None:
                return None
            report.rejected.append(rejected)
            report.received[source] += d.rows
    finally:
        store.save()
    return used


def _mapped(t: pa.DataType) -> bool:
    """Whether the scan maps values of type ``t`` back to the files' own Arrow type unchanged."""
    return any(ok(t) for ok in _SAFE)


def _narrow(schema: pa.Schema, keep: list[str] | None) -> pa.Schema | None:
    """``schema`` reduced to ``keep`` (every column was screened: all of the contract's, typed);
    None when a kept column is missing or repeated (the pyarrow path decides)."""
    if keep is None:
        return schema
    if any(c not in schema.names for c in keep) or len(set(keep)) != len(keep):
        return None
    return pa.schema([schema.field(c) for c in keep], metadata=schema.metadata)


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """``table.to_pandas()``, the same values, freeing each Arrow column once converted (the
    table is not used after this): the Arrow copy and the frame are not both held whole."""
    return table.to_pandas(self_destruct=True, split_blocks=True)


def _scan(source: str, used: list[landing.Delivery], paths: list[str], *, columns: list[str] | None,
          keep: list[str] | None, contract: pa.Schema | None, as_of: dt.datetime | None,
          root: Path | None, whole: bool) -> tuple[pa.Table, pa.Schema, np.ndarray] | None:  # fmt: skip
    """The fast path's scan of ``used`` (files ``paths``, chunks in place of their deliveries where
    they hold them): the rows with a ``__file`` column, their Arrow schema and each delivery's rows;
    None where the fast path must not be taken (module doc). ``whole``: a read of every partition,
    which writes the next chunk when one is due."""
    import duckdb

    con = _connect()
    try:
        signature = _uniform(con, paths, [d.sha256 for d in used], _signature_cache(root))
        schema = _fast_schema(source, paths[0], columns, contract) if signature else None
        if schema is None or "__file" in schema.names:
            return None
        schema = _narrow(schema, keep)
        if schema is None:
            return None
        segments = chunks.plan(source, used, paths, signature, root=root)
        select = ", ".join('"' + c.replace('"', '""') + '"' for c in schema.names)
        # file_index: the file's position in $paths (an integer per row, not its name)
        query = f"SELECT {select}, file_index AS __file FROM read_parquet($paths, hive_partitioning = false)"
        table = con.sql(query, params={"paths": [s.path for s in segments]}).to_arrow_table()
        if whole:  # a read of part of the history would start chunks no other read lines up with
            chunks.extend(source, used, paths, segments, signature=signature, as_of=as_of, con=con, root=root,
                          signature_of=lambda p: _signatures(con, [p]).get(p), mapped=_mapped)  # fmt: skip
    except duckdb.Error:  # out of memory, a file DuckDB cannot read: the pyarrow path decides
        return None
    finally:
        con.close()
    index = table.column("__file").to_numpy().astype(np.int64)
    if len(index) and ((np.diff(index) < 0).any() or index.max() >= len(segments)):
        return None  # not in manifest order: never expected, but order is part of the result
    counts = np.bincount(index, minlength=len(segments))
    sizes = chunks.delivery_sizes(segments, counts)
    return None if sizes is None else (chunks.trim(table, segments, counts), schema, sizes)


def _bulk(
    source: str,
    *,
    as_of: dt.datetime | None,
    start: dt.date | str | None,
    end: dt.date | str | None,
    columns: list[str] | None,
    root: Path | None,
    keep: list[str] | None,
) -> tuple[pa.Table, np.ndarray, list[landing.Delivery], verified.LandingReport] | None:
    """The fast path of :func:`read_verified_bulk`: the rows (Arrow, in the schema read), each
    used delivery's row count, the used deliveries and the report; None where it must not be taken."""
    lo, hi = (str(start) if start else None), (str(end) if end else None)
    found = [
        d
        for d in landing.deliveries(source, root=root, as_of=as_of)
        if not ((lo and d.partition < lo) or (hi and d.partition > hi))
    ]
    contract = contracts.schema(source)
    if len(found) < MIN_FILES:
        return None
    report = verified.LandingReport(deliveries={source: len(found)}, received={source: 0})
    used = _verified(source, found, root, columns, contract, report)
    base = str(landing.source_dir(source, root))
    paths = [f"{base}/{d.file}" for d in used or []]
    if not used or len(set(paths)) != len(paths):
        return None
    got = _scan(
        source,
        used,
        paths,
        columns=columns,
        keep=keep,
        contract=contract,
        as_of=as_of,
        root=root,
        whole=lo is None,
    )
    if got is None:
        return None
    table, schema, sizes = got
    table = table.drop_columns(["__file"]).cast(schema)
    report.received[source] += int(table.num_rows)
    return table, sizes, used, report


def read_verified_bulk(
    source: str,
    *,
    as_of: dt.datetime | None = None,
    start: dt.date | str | None = None,
    end: dt.date | str | None = None,
    columns: list[str] | None = None,
    root: Path | None = None,
    keep: list[str] | None = None,
) -> verified.VerifiedRead:
    """:func:`helpers.storage.verified.read_verified` (``combine="arrow"``), read in one DuckDB scan
    when every delivery has the same schema (module doc); the same frame and report either way.

    ``keep`` (with ``columns=None``): every delivery is verified and screened as a read of all its
    columns is (the same deliveries and rows left out, the same report), and only these columns
    (in this order, each one a contract column) are returned, so the frame is the full read's
    ``frame[keep + ["_partition", "_arrived_at"]]`` without holding the other columns in memory.
    """
    if keep is not None and columns is not None:
        raise ValueError(f"read_verified_bulk({source}): pass columns or keep, not both")
    got = _bulk(source, as_of=as_of, start=start, end=end, columns=columns, root=root, keep=keep)
    if got is None:
        read = verified.read_verified(
            source, as_of=as_of, start=start, end=end, columns=columns, root=root, combine="arrow"
        )
        if keep is None or any(c not in read.frame.columns for c in keep):
            return read  # nothing read (no columns at all): the full read's frame as it is
        return verified.VerifiedRead(
            read.frame[[*keep, "_partition", "_arrived_at"]].copy(deep=False), read.report
        )
    table, sizes, used, report = got
    frame = _to_pandas(table)
    release_memory()  # the Arrow copy and DuckDB's result, freed: give them back
    # one str object per delivery, shared by its rows (np.repeat of a list would make one per row)
    frame["_partition"] = np.repeat(np.array([d.partition for d in used], dtype=object), sizes)
    frame["_arrived_at"] = verified.arrivals(used, sizes)
    return verified.VerifiedRead(frame, report)


def read_verified_table(
    source: str,
    *,
    columns: list[str],
    as_of: dt.datetime | None = None,
    start: dt.date | str | None = None,
    end: dt.date | str | None = None,
    root: Path | None = None,
) -> tuple[pa.Table, verified.LandingReport]:
    """The rows :func:`read_verified_bulk` reads of ``columns``, as an Arrow table (without
    ``_partition`` and ``_arrived_at``), and the same report: for a reader that reduces the rows
    before pandas sees them (a pandas string per row costs more than the scan). Empty: no rows.

    Where the deliveries drifted (read file by file), a column whose values are of more than one
    type has no Arrow type: it comes as text (``astype("string")``), missing values missing.
    """
    got = _bulk(source, as_of=as_of, start=start, end=end, columns=columns, root=root, keep=None)
    if got is not None:
        return got[0], got[3]
    read = verified.read_verified(
        source, as_of=as_of, start=start, end=end, columns=columns, root=root, combine="arrow"
    )
    if not len(read.frame) or any(c not in read.frame.columns for c in columns):
        return pa.table({c: pa.array([], pa.null()) for c in columns}), read.report
    return pa.table({c: _arrow_column(read.frame[c]) for c in columns}), read.report


def _arrow_column(values: pd.Series) -> pa.Array:
    """``values`` as Arrow, as text where they are of more than one type (see read_verified_table)."""
    try:
        return pa.Array.from_pandas(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.Array.from_pandas(values.astype("string"))
