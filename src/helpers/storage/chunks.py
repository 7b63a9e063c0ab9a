"""Chunks of a source's deliveries: the rows of many small daily files in one Parquet file, read
by :mod:`helpers.storage.bulkread` in their place; the same rows either way.

A source lands one small file a day (761 files per source after two years at the default size),
and opening them costs more than reading their rows. A *chunk* holds the rows of a run of
consecutive deliveries (in manifest order, each in file order) in one file with the deliveries'
own Parquet schema and key-value metadata. Chunks live beside the landing zone, in
``<data>/cache/chunks/<source>/``: the Parquet file and a sidecar (``.json``) naming each delivery
it holds (file, sha256, rows), the schema signature it shares with them and its own sha256.

- **When a chunk is read**: only where the deliveries a read would take, in order, are exactly
  the chunk's (same files, same sha256, each just verified against its manifest), the chunk has
  their schema signature and it still hashes to its recorded sha256; or, for a read from a start
  partition or as of a day before the chunk's last delivery arrived, where enough of the
  deliveries it takes are a run of the chunk's (:data:`PARTIAL_MIN_DELIVERIES`,
  :data:`PARTIAL_MIN_SHARE`): the chunk is scanned and the rows of its other deliveries dropped
  (:func:`trim`). A delivery rejected, changed or not yet arrived by the read's ``as_of``, or a
  changed chunk, and the daily files are read.
- **When one is written** (:func:`extend`, by a bulk read): for the deliveries after the last
  chunk the read used that arrived at least :data:`SETTLE` before its ``as_of`` (a month's late
  deliveries are in by then), once there are :data:`MIN_DELIVERIES` of them. A chunk whose written
  schema does not match its deliveries' is not kept. The folder is a cache: deleting it only makes
  the next reads slower, and a home that cannot be written just reads the daily files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from helpers.core import paths as core_paths
from helpers.storage import landing

CHUNK_DIR = "chunks"
MIN_DELIVERIES = 28  # about a month of daily deliveries
SETTLE = dt.timedelta(days=7)


@dataclass(frozen=True)
class Chunk:
    """One chunk file and the deliveries whose rows it holds, in order."""

    path: Path
    files: tuple[str, ...]  # each delivery's file, relative to its source's folder
    digests: tuple[str, ...]  # each delivery's sha256, as its manifest records it
    rows: tuple[int, ...]  # each delivery's rows
    signature: str  # the Parquet schema signature it shares with them (``bulkread``)
    sha256: str  # the chunk file's own


@dataclass(frozen=True)
class Segment:
    """What a bulk read scans for ``count`` deliveries from ``first`` (their index in the read's
    list): a daily file (``rows`` None) or a chunk (``rows``: each delivery's rows). A chunk that
    also holds deliveries outside the read has ``skip`` rows of them before the read's and
    ``total`` rows in all (:func:`trim` drops the others)."""

    path: str
    first: int
    count: int
    rows: tuple[int, ...] | None = None
    skip: int = 0
    total: int | None = None

    def scanned(self) -> int | None:
        """The rows a scan of the file returns (None for a daily file: whatever it holds)."""
        if self.rows is None:
            return None
        return self.total if self.total is not None else sum(self.rows)


# A chunk that starts before a read's deliveries (a read from a start partition: Profit's months)
# is scanned for them when they are at least this many and at least this share of its rows: one
# scan of the whole chunk, less than opening their daily files.
PARTIAL_MIN_DELIVERIES = MIN_DELIVERIES
PARTIAL_MIN_SHARE = 0.25


def chunk_dir(source: str, root: Path | None = None) -> Path:
    """``<data>/cache/chunks/<source>``: beside the landing zone (``root``: a landing zone)."""
    return (root or core_paths.landing_dir()).parent / "cache" / CHUNK_DIR / source


def _parse(sidecar: Path) -> Chunk | None:
    try:
        data = json.loads(sidecar.read_text())
        files, digests, rows = (tuple(data[k]) for k in ("files", "sha256s", "rows"))
        if not files or not (len(files) == len(digests) == len(rows)):
            return None
        return Chunk(sidecar.with_suffix(".parquet"), tuple(map(str, files)), tuple(map(str, digests)),
                     tuple(int(r) for r in rows), str(data["signature"]), str(data["sha256"]))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):  # a half-written or foreign file: not a chunk
        return None


def chunks_of(source: str, root: Path | None = None) -> dict[str, list[Chunk]]:
    """The chunks of ``source``, by their first delivery's file (longest first)."""
    folder = chunk_dir(source, root)
    if not folder.is_dir():
        return {}
    out: dict[str, list[Chunk]] = {}
    for sidecar in sorted(folder.glob("*.json")):
        chunk = _parse(sidecar)
        if chunk is not None:
            out.setdefault(chunk.files[0], []).append(chunk)
    for found in out.values():
        found.sort(key=lambda c: -len(c.files))
    return out


def _run(chunk: Chunk, at: int, used: list[landing.Delivery], i: int) -> int:
    """How many of ``used`` from ``i`` are the chunk's deliveries from ``at``, in order (same file
    and sha256)."""
    n = 0
    while (at + n < len(chunk.files) and i + n < len(used) and used[i + n].file == chunk.files[at + n]
           and used[i + n].sha256 == chunk.digests[at + n]):  # fmt: skip
        n += 1
    return n


def _segment(holding: Sequence[tuple[Chunk, int]], used: list[landing.Delivery], i: int,
             signature: str) -> Segment | None:  # fmt: skip
    """The chunk segment to scan for ``used[i]`` and the deliveries after it (``holding``: the chunks
    that hold its file, and where), or None. A chunk whose deliveries are exactly the next ones
    first (the longest); else one holding a run of enough of them (:data:`PARTIAL_MIN_DELIVERIES`,
    :data:`PARTIAL_MIN_SHARE` of its rows), its other rows dropped by :func:`trim`. Either way the
    chunk still hashes to its recorded sha256."""
    for chunk, at in sorted(holding, key=lambda h: (h[1] != 0, -len(h[0].files))):
        if chunk.signature != signature:
            continue
        n = _run(chunk, at, used, i)
        if at == 0 and n == len(chunk.files):
            segment = Segment(str(chunk.path), i, n, chunk.rows)
        elif n >= PARTIAL_MIN_DELIVERIES and sum(chunk.rows[at : at + n]) >= PARTIAL_MIN_SHARE * sum(
            chunk.rows
        ):
            segment = Segment(str(chunk.path), i, n, chunk.rows[at : at + n], skip=sum(chunk.rows[:at]),
                              total=sum(chunk.rows))  # fmt: skip
        else:
            continue
        try:
            if landing.cached_sha256(chunk.path) == chunk.sha256:
                return segment
        except OSError:
            pass
    return None


def plan(source: str, used: list[landing.Delivery], paths: list[str], signature: str, *,
         root: Path | None = None) -> list[Segment]:  # fmt: skip
    """What to scan for ``used`` (verified deliveries, in order; ``paths`` their files): a chunk
    wherever one holds exactly the next deliveries (module doc), or enough of them after
    deliveries the read does not take (:func:`_segment`), their daily files elsewhere."""
    holding: dict[str, list[tuple[Chunk, int]]] = {}  # delivery file -> the chunks holding it, and where
    for chunk in (c for chunks in chunks_of(source, root).values() for c in chunks):
        for at, file in enumerate(chunk.files):
            holding.setdefault(file, []).append((chunk, at))
    out: list[Segment] = []
    i = 0
    while i < len(used):
        segment = _segment(holding.get(used[i].file, ()), used, i, signature) or Segment(paths[i], i, 1)
        out.append(segment)
        i += segment.count
    return out


def trim(table: pa.Table, segments: list[Segment], counts: np.ndarray) -> pa.Table:
    """``table`` (a scan of ``segments``, ``counts`` rows each, in order) without the rows of the
    deliveries a partial chunk holds outside the read."""
    if not any(s.total is not None for s in segments):
        return table
    keep = np.ones(table.num_rows, dtype=bool)
    start = 0
    for seg, n in zip(segments, counts.tolist(), strict=True):
        if seg.total is not None:
            kept = sum(seg.rows or ())
            keep[start : start + seg.skip] = False
            keep[start + seg.skip + kept : start + n] = False
        start += n
    return table.filter(pa.array(keep))


def delivery_sizes(segments: list[Segment], counts: np.ndarray) -> np.ndarray | None:
    """Rows per delivery from rows per segment (``counts``); None when a chunk's rows are not what
    its sidecar says (the caller reads the daily files instead)."""
    sizes: list[int] = []
    for seg, n in zip(segments, counts.tolist(), strict=True):
        if seg.rows is None:
            sizes.append(n)
        elif seg.scanned() == n:
            sizes.extend(seg.rows)
        else:
            return None
    return np.asarray(sizes, dtype=np.int64)


def _settled(
    used: list[landing.Delivery], segments: list[Segment], as_of: dt.datetime | None
) -> tuple[int, int]:
    """Where a new chunk starts in ``used`` (after the last chunk read) and how many deliveries it
    takes: up to the first that arrived less than :data:`SETTLE` before ``as_of`` (0: not enough yet)."""
    start = max((s.first + s.count for s in segments if s.rows is not None), default=0)
    if as_of is None:
        return start, 0
    n = 0
    for d in used[start:]:
        if d.arrived > as_of - SETTLE:
            break
        n += 1
    return start, (n if n >= MIN_DELIVERIES else 0)


def extend(source: str, used: list[landing.Delivery], paths: list[str], segments: list[Segment], *,
           signature: str, signature_of: Callable[[str], str | None], mapped: Callable[[pa.DataType], bool],
           as_of: dt.datetime | None, con: Any, root: Path | None = None) -> Path | None:  # fmt: skip
    """Write the next chunk of ``source`` when enough settled deliveries follow the last one (see the
    module doc); its path, or None. ``signature_of(path)``: a Parquet file's schema signature;
    ``mapped(type)``: whether a scan returns a column of that type unchanged (every column must be);
    ``con``: a DuckDB cursor. Never raises for a cache that cannot be written."""
    import duckdb

    start, n = _settled(used, segments, as_of)
    if not n:
        return None
    take, files = used[start : start + n], paths[start : start + n]
    folder = chunk_dir(source, root)
    key = hashlib.sha256("\n".join(f"{d.file} {d.sha256}" for d in take).encode()).hexdigest()[:32]
    final = folder / f"{key}.parquet"
    tmp = folder / f".{key}.{os.getpid()}.tmp"
    try:
        schema = pq.read_schema(files[0])
        if not all(mapped(f.type) for f in schema):
            return None
        table = con.sql("SELECT *, file_index AS __chunk_file FROM read_parquet($paths, hive_partitioning = false)",
                        params={"paths": files}).to_arrow_table()  # fmt: skip
        index = table.column("__chunk_file").to_numpy().astype(np.int64)
        if len(index) and (np.diff(index) < 0).any():
            return None  # not in file order: never expected, but order is the point
        rows = np.bincount(index, minlength=len(files)).tolist()
        table = table.drop_columns(["__chunk_file"]).cast(schema)
        folder.mkdir(parents=True, exist_ok=True)
        landing.write_parquet(tmp, table, durable=False)
        if signature_of(str(tmp)) != signature:
            tmp.unlink(missing_ok=True)
            return None  # written differently from its deliveries: the daily files stay the read
        digest = landing.file_sha256(tmp)
        os.replace(tmp, final)
        core_paths.write_atomic(final.with_suffix(".json"), json.dumps({
            "source": source, "files": [d.file for d in take], "sha256s": [d.sha256 for d in take],
            "rows": rows, "signature": signature, "sha256": digest,
        }))  # fmt: skip
        return final
    except (OSError, pa.ArrowException, ValueError, duckdb.Error):  # a read-only or full disk: optional
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return None
