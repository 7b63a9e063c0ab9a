"""Several landing deliveries made durable together: the Kafka extract's flush of one batch.

:func:`write_deliveries` lands what that many calls of
:func:`helpers.storage.landing.write_delivery` land (same files, numbers, manifest lines, in the
same order) with the same crash guarantee, but pays the fsyncs once per batch instead of once
per file: the Parquet files are written and fsynced in parallel threads (concurrent fsyncs share
the filesystem's journal commits), renamed into place one by one in order, each folder is
fsynced once, then all the manifest lines are appended in one write and fsynced once. Only
then does the function return, and only then may the caller commit offsets.

A crash before the manifest fsync leaves complete files without manifest lines (ignored by
readers; the next delivery takes the next free number) or temporary files, exactly the states a
crash inside ``write_delivery`` can leave; the batch is replayed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa

from helpers.core.timeutil import as_utc
from helpers.storage.landing import (
    MANIFEST,
    Delivery,
    cached_sha256,
    claim_number,
    fsync_dir,
    source_dir,
    write_parquet,
)

MAX_THREADS = 8


def write_deliveries(
    source: str,
    items: Sequence[tuple[dt.date, pa.Table]],
    *,
    arrived_at: dt.datetime,
    root: Path | None = None,
) -> list[Delivery]:
    """Land each (partition date, table) as one delivery of ``source``, durably, in order.

    Returns once every file is fsynced and renamed into place and every manifest line is
    fsynced; the deliveries are recorded in the order of ``items``.
    """
    if not items:
        return []
    base = source_dir(source, root)
    parts = [day.isoformat() for day, _table in items]
    for part in sorted(set(parts)):
        (base / f"dt={part}").mkdir(parents=True, exist_ok=True)
    tmps = [
        base / f"dt={part}" / f".incoming-{os.getpid()}-{k}-{id(table)}.parquet.tmp"
        for k, (part, (_day, table)) in enumerate(zip(parts, items, strict=True))
    ]
    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(items))) as pool:
        list(pool.map(write_parquet, tmps, [table for _day, table in items]))
        rels = [claim_number(tmp, base, part) for tmp, part in zip(tmps, parts, strict=True)]
        list(pool.map(fsync_dir, [base / f"dt={part}" for part in sorted(set(parts))]))
        digests = list(pool.map(cached_sha256, [base / rel for rel in rels]))
    arrived = as_utc(arrived_at).isoformat()
    out = [
        Delivery(source, part, rel, table.num_rows, digest, arrived)
        for part, rel, (_day, table), digest in zip(parts, rels, items, digests, strict=True)
    ]
    lines = "".join(json.dumps(asdict(d), sort_keys=True) + "\n" for d in out)
    with open(base / MANIFEST, "a", encoding="utf-8") as fh:
        fh.write(lines)
        fh.flush()
        os.fsync(fh.fileno())
    return out
