"""The landing zone: immutable, dated deliveries of raw source extracts with their arrival times.

Layout, per source::

    data/landing/<source>/dt=YYYY-MM-DD/part-00000.parquet   first delivery for that date
    data/landing/<source>/dt=YYYY-MM-DD/part-00001.parquet   a later (re-)delivery: a new file, never an edit
    data/landing/<source>/_manifest.jsonl                    one line per delivered file, append-only

A manifest line records the partition, file, row count, sha256 and ``arrived_at`` (UTC). Freshness
and lateness are measured from ``arrived_at``; readers ask for what had arrived *as of* a moment,
so a run for a past ``as_of`` sees exactly what a run at that moment would have seen.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from helpers import paths
from helpers.timeutil import as_utc

MANIFEST = "_manifest.jsonl"


@dataclass(frozen=True)
class Delivery:
    source: str
    partition: str  # YYYY-MM-DD
    file: str  # relative to the source folder
    rows: int
    sha256: str
    arrived_at: str  # ISO UTC

    @property
    def arrived(self) -> dt.datetime:
        return as_utc(dt.datetime.fromisoformat(self.arrived_at))


def source_dir(source: str, root: Path | None = None) -> Path:
    return (root or paths.landing_dir()) / source


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_delivery(
    source: str,
    partition: dt.date | str,
    data: pd.DataFrame | pa.Table,
    *,
    arrived_at: dt.datetime,
    root: Path | None = None,
    durable: bool = True,
) -> Delivery:
    """Write one delivery of ``source`` for ``partition`` as a new Parquet file and record it.

    ``durable=False`` skips the fsyncs (≈10 ms a file): only for bulk writers that can simply be
    re-run after a crash, such as the demo generator; extractors keep the default.

    The file is written under a temporary name, fsynced and renamed, then its manifest line is
    appended: a crash leaves either no trace or a complete file (a file without its manifest
    line is ignored by readers, and the next delivery takes the next number).
    """
    part = partition if isinstance(partition, str) else partition.isoformat()
    dt.date.fromisoformat(part)  # validates
    folder = source_dir(source, root) / f"dt={part}"
    folder.mkdir(parents=True, exist_ok=True)
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    tmp = folder / f".incoming-{os.getpid()}-{id(table)}.parquet.tmp"
    # Microsecond timestamps: SQLFrame/DuckDB can't read Parquet's TIMESTAMPTZ_NS, and no source is finer.
    pq.write_table(table, tmp, compression="zstd", coerce_timestamps="us", allow_truncated_timestamps=True)
    if durable:
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    # Claim the next free number with link(), which never overwrites: two writers on the same
    # partition (two consumers of one group) get distinct files instead of clobbering each other.
    seq = len(list(folder.glob("part-*.parquet")))
    while True:
        rel = f"dt={part}/part-{seq:05d}.parquet"
        target = source_dir(source, root) / rel
        try:
            os.link(tmp, target)
            break
        except FileExistsError:
            seq += 1
    os.unlink(tmp)
    if durable:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new name survives a power cut, not only a killed process
        finally:
            os.close(dir_fd)
    delivery = Delivery(source, part, rel, table.num_rows, _sha256(target), as_utc(arrived_at).isoformat())
    manifest = source_dir(source, root) / MANIFEST
    with open(manifest, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(asdict(delivery), sort_keys=True) + "\n")
        fh.flush()
        if durable:
            os.fsync(fh.fileno())
    return delivery


def deliveries(source: str, *, root: Path | None = None, as_of: dt.datetime | None = None) -> list[Delivery]:
    """Every recorded delivery of ``source`` (arrived by ``as_of`` if given), in manifest order."""
    manifest = source_dir(source, root) / MANIFEST
    if not manifest.exists():
        return []
    out = []
    with open(manifest, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                d = Delivery(**json.loads(line))
            except (json.JSONDecodeError, TypeError) as e:
                raise ValueError(f"{manifest}: line {n}: not a manifest record ({e})") from None
            if as_of is None or d.arrived <= as_utc(as_of):
                out.append(d)
    return out


def sources(root: Path | None = None) -> list[str]:
    base = root or paths.landing_dir()
    return sorted(p.name for p in base.iterdir() if (p / MANIFEST).exists()) if base.exists() else []


def read_source(
    source: str,
    *,
    as_of: dt.datetime | None = None,
    start: dt.date | str | None = None,
    end: dt.date | str | None = None,
    columns: Iterable[str] | None = None,
    root: Path | None = None,
    with_arrival: bool = False,
) -> pd.DataFrame:
    """All rows of ``source`` delivered by ``as_of`` for partitions in ``[start, end]``.

    With ``with_arrival`` the frame gains ``_partition`` and ``_arrived_at`` columns. Readers that
    need the latest delivery of a re-delivered partition (rather than all of them) dedupe on the
    source's own keys: re-deliveries are data, not corrections applied behind their back.
    """
    lo = str(start) if start is not None else None
    hi = str(end) if end is not None else None
    frames = []
    for d in deliveries(source, root=root, as_of=as_of):
        if (lo and d.partition < lo) or (hi and d.partition > hi):
            continue
        frame = pd.read_parquet(source_dir(source, root) / d.file, columns=list(columns) if columns else None)
        if with_arrival:
            frame["_partition"] = d.partition
            frame["_arrived_at"] = pd.Timestamp(d.arrived)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(columns) if columns else None)
    return pd.concat(frames, ignore_index=True)


def arrivals(source: str, *, root: Path | None = None, as_of: dt.datetime | None = None) -> pd.DataFrame:
    """The manifest as a frame: partition, file, rows, arrived_at (for freshness and lateness)."""
    rows = [asdict(d) for d in deliveries(source, root=root, as_of=as_of)]
    frame = pd.DataFrame(rows, columns=["source", "partition", "file", "rows", "sha256", "arrived_at"])
    frame["arrived_at"] = pd.to_datetime(frame["arrived_at"], utc=True)
    return frame
