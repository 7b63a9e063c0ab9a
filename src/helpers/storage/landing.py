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
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from helpers.core import paths
from helpers.core.timeutil import as_utc
from helpers.storage import contracts

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


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, hex: what the arrival manifest records for each delivery."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# (path, size, st_mtime_ns, st_ctime_ns, st_ino) -> sha256: a file is hashed once per process
# while its stat is unchanged; any change of the stat re-hashes it.
_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}


def cached_sha256(path: str | Path) -> str:
    """:func:`file_sha256`, cached per process by the file's path and stat (raises ``OSError``)."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    digest = _DIGESTS.get(key)
    if digest is None:
        digest = _DIGESTS[key] = file_sha256(path)
    return digest


def verify_delivery(
    d: Delivery,
    *,
    root: Path | None = None,
    path: str | Path | None = None,
    sha256: Callable[[str | Path], str] = cached_sha256,
) -> str | None:
    """None when the delivered file still hashes to its manifest's sha256; else the reason,
    naming the file: "landing file changed after arrival: <path> (sha256 <12 hex> ≠ manifest
    <12 hex>)" or "landing file missing: <path>". ``path``: the file, when the caller has it;
    ``sha256``: how to hash it (``helpers.storage.digests.DigestStore.sha256`` keeps the hashes)."""
    path = source_dir(d.source, root) / d.file if path is None else path
    try:
        actual = sha256(path)
    except FileNotFoundError:
        return f"landing file missing: {path}"
    except OSError as e:
        return f"landing file missing: {path} ({type(e).__name__}: {e})"
    if actual == d.sha256:
        return None
    return f"landing file changed after arrival: {path} (sha256 {actual[:12]} ≠ manifest {d.sha256[:12]})"


def write_parquet(tmp: Path, table: pa.Table, *, durable: bool = True) -> None:
    """Write ``table`` to the temporary file ``tmp`` (fsynced when ``durable``)."""
    # Microsecond timestamps: SQLFrame/DuckDB can't read Parquet's TIMESTAMPTZ_NS, and no source is finer.
    pq.write_table(table, tmp, compression="zstd", coerce_timestamps="us", allow_truncated_timestamps=True)
    if durable:
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())


def claim_number(tmp: Path, base: Path, part: str) -> str:
    """Link ``tmp`` to the next free ``dt=<part>/part-NNNNN.parquet`` under ``base`` and drop ``tmp``.

    link() never overwrites: two writers on the same partition (two consumers of one group) get
    distinct files instead of clobbering each other.
    """
    seq = len(list((base / f"dt={part}").glob("part-*.parquet")))
    while True:
        rel = f"dt={part}/part-{seq:05d}.parquet"
        try:
            os.link(tmp, base / rel)
            break
        except FileExistsError:
            seq += 1
    os.unlink(tmp)
    return rel


def fsync_dir(folder: Path) -> None:
    """Make the names in ``folder`` survive a power cut, not only a killed process."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
    write_parquet(tmp, table, durable=durable)
    rel = claim_number(tmp, source_dir(source, root), part)
    target = source_dir(source, root) / rel
    if durable:
        fsync_dir(folder)
    delivery = Delivery(
        source, part, rel, table.num_rows, cached_sha256(target), as_utc(arrived_at).isoformat()
    )
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
    records = _manifest(manifest)
    if as_of is None:
        return [d for d, _ in records]
    cutoff = as_utc(as_of)
    return [d for d, arrived in records if (d.arrived if arrived is None else arrived) <= cutoff]


# path -> ((size, st_mtime_ns, st_ctime_ns, st_ino), the manifest's records with their arrival): a
# manifest is parsed once per process while its stat is unchanged (an append changes it); only
# its latest state is kept. An unparseable ``arrived_at`` is kept as None: it raises where it is
# compared, as before.
_MANIFESTS: dict[str, tuple[tuple[int, int, int, int], tuple[tuple[Delivery, dt.datetime | None], ...]]] = {}


def _arrival(d: Delivery) -> dt.datetime | None:
    try:
        return d.arrived
    except (TypeError, ValueError):
        return None


def _manifest(manifest: Path) -> tuple[tuple[Delivery, dt.datetime | None], ...]:
    st = os.stat(manifest)
    stat = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    cached = _MANIFESTS.get(str(manifest))
    if cached is not None and cached[0] == stat:
        return cached[1]
    out = []
    with open(manifest, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                d = Delivery(**orjson.loads(line))  # orjson's error is a json.JSONDecodeError
            except (json.JSONDecodeError, TypeError) as e:
                raise ValueError(f"{manifest}: line {n}: not a manifest record ({e})") from None
            out.append((d, _arrival(d)))
    records = tuple(out)
    _MANIFESTS[str(manifest)] = (stat, records)
    return records


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
        frame = _read_delivery(source_dir(source, root) / d.file, d, columns)
        if with_arrival:
            frame["_partition"] = d.partition
            frame["_arrived_at"] = pd.Timestamp(d.arrived)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(columns) if columns else None)
    return pd.concat(frames, ignore_index=True)


def _read_delivery(path: Path, d: Delivery, columns: Iterable[str] | None) -> pd.DataFrame:
    """One delivered file; an unreadable file or a missing column is an error naming the file (and field)."""
    wanted = list(columns) if columns else None
    try:
        if wanted:
            present = set(pq.read_schema(path).names)
            missing = [c for c in wanted if c not in present]
            if missing:
                raise ValueError(
                    f"{path}: delivery of {d.source} for {d.partition} lacks required column(s) "
                    f"{', '.join(missing)}"
                )
        return pd.read_parquet(path, columns=wanted)
    except ValueError as e:
        if str(e).startswith(str(path)):
            raise
        raise ValueError(
            f"{path}: delivery of {d.source} for {d.partition} is not readable Parquet: {e}"
        ) from None
    except (OSError, pa.ArrowException) as e:
        raise ValueError(
            f"{path}: delivery of {d.source} for {d.partition} is not readable Parquet: {type(e).__name__}: {e}"
        ) from None


# ---------------------------------------------------------------- screening against the contract


def source_schema(source: str) -> pa.Schema | None:
    """The landed contract of ``source`` (see :mod:`helpers.storage.contracts`); ``None`` if none."""
    return contracts.schema(source)


def screen_file(source: str, path: Path, *, schema: pa.Schema | None = None):
    """Screen one delivered file against its source's contract: accepted rows and quarantined ones.

    A file that cannot be read at all, or lacks a column of the contract, raises ``ValueError``
    naming the file (and the columns). A value that does not convert to its column's type, or
    an event object that is not JSON, quarantines its row (``line`` = the 1-based row of the
    file, ``field`` = the column); received = accepted + quarantined (``quarantine.ScreenedRows``).
    """
    from helpers.storage.quarantine import QuarantinedRow, ScreenedRows

    schema = schema if schema is not None else source_schema(source)
    if schema is None:
        raise ValueError(f"{path}: no contract for source {source!r}")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise ValueError(
            f"{path}: {source} delivery is not readable Parquet: {type(e).__name__}: {e}"
        ) from None
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise ValueError(f"{path}: {source} delivery lacks required column(s) {', '.join(missing)}")
    bad: dict[int, tuple[str, str, object]] = {}
    columns = {}
    for f in schema:
        col = table.column(f.name)
        try:
            columns[f.name] = col if col.type == f.type else col.cast(f.type)
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        values = col.to_pylist()
        cast = []
        for i, v in enumerate(values):
            try:
                cast.append(pa.array([v]).cast(f.type)[0].as_py() if v is not None else None)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                bad.setdefault(i, (f.name, f"{f.name}: {v!r} is not a valid {f.type}", v))
                cast.append(None)
        columns[f.name] = pa.array(cast, type=f.type)
    for name in contracts.JSON_COLUMNS.get(source, ()):
        for i, v in enumerate(table.column(name).to_pylist()):
            if v is None or i in bad:
                continue
            try:
                ok = isinstance(json.loads(v), dict)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                bad[i] = (name, f"{name}: not a JSON object", v)
    frame = pa.table(columns, schema=schema).to_pandas()
    rows = frame.to_dict("records") if bad else []
    quarantined = tuple(
        QuarantinedRow(
            source,
            str(path),
            i + 1,
            f"row {i + 1}: {reason}",
            {k: str(v) for k, v in rows[i].items()} | {field: str(raw)},
            field,
        )
        for i, (field, reason, raw) in sorted(bad.items())
    )
    accepted = frame.drop(index=sorted(bad)).reset_index(drop=True) if bad else frame
    return ScreenedRows(accepted, quarantined, table.num_rows)


# (manifest path, its stat, as_of) -> the arrivals frame: monitors, checks and the status board
# ask for every source's several times in one process; an append to the manifest changes its stat.
_ARRIVALS: dict[tuple[str, tuple[int, int, int, int], dt.datetime | None], pd.DataFrame] = {}


def arrivals(source: str, *, root: Path | None = None, as_of: dt.datetime | None = None) -> pd.DataFrame:
    """The manifest as a frame: partition, file, rows, arrived_at (for freshness and lateness)."""
    manifest = source_dir(source, root) / MANIFEST
    try:
        st = os.stat(manifest)
        key = (str(manifest), (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino), as_of)
    except OSError:
        key = None
    if key is not None and key in _ARRIVALS:
        return _ARRIVALS[key].copy()
    columns = ["source", "partition", "file", "rows", "sha256", "arrived_at"]
    rows = [(d.source, d.partition, d.file, d.rows, d.sha256, d.arrived_at)
            for d in deliveries(source, root=root, as_of=as_of)]  # fmt: skip
    frame = pd.DataFrame.from_records(rows, columns=columns)
    frame["arrived_at"] = pd.to_datetime(frame["arrived_at"], utc=True, format="ISO8601")
    if key is not None:
        for old in [k for k in _ARRIVALS if k[0] == key[0] and k[1] != key[1]]:
            del _ARRIVALS[old]  # the manifest has changed since: only its latest state is kept
        if len(_ARRIVALS) >= 512:
            _ARRIVALS.clear()
        _ARRIVALS[key] = frame.copy()
    return frame
