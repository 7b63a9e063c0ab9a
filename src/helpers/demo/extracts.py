"""In-memory extracts of the demo sources and how they become landing deliveries.

An extract is a pandas DataFrame holding one source's rows in compact internal types plus two
delivery columns: ``_dt`` (the landing partition, an epoch day) and ``_arrival`` (when that
delivery arrives, epoch seconds UTC). Rows with the same ``(_dt, _arrival)`` form one delivery
(one Parquet file); a later arrival for the same partition is a re-delivery (the next
``part-NNNNN``). Faults change rows, or move them between deliveries, by editing these columns.

Each source's columns, key and schedule are its contract (:mod:`helpers.storage.contracts`).
Internal column kinds (converted to the contract's Arrow types only when written, see
:data:`helpers.storage.contracts.KINDS`):
``str``; ``int`` (int64; a nullable ``Int64`` column stays nullable); ``bool``; ``date`` (epoch
day, negative = NULL) -> date32; ``ts`` (epoch seconds, negative = NULL) -> timestamp[us, UTC];
``dec18_6`` / ``dec38_18`` (integers in millionths) -> decimal128. An ``int`` column whose
values are text in one delivery (the ``math_errors`` fault) is written as a string column in
that delivery only: real type drift.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from pyarrow import feather

from helpers.storage import landing
from helpers.storage.contracts import KINDS, SOURCES, SourceDef

PARTITION, ARRIVAL = "_dt", "_arrival"
SCHEDULE = (
    "_deliveries"  # extracts[SCHEDULE]: the scheduled daily deliveries (source, _dt, _arrival) of a batch
)
DAY = 86_400
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def arrival_hour(name: str) -> float:
    """The hour (UTC) of the day after its partition day at which daily source ``name`` arrives,
    as its contract schedules it."""
    return SOURCES[name].schedule_hours - 24


def at(day: np.ndarray | int, hour: float = 0.0) -> np.ndarray:
    """Epoch seconds of ``hour`` o'clock (UTC) on epoch ``day``."""
    return np.asarray(day, dtype=np.int64) * DAY + int(round(hour * 3600))


def day_of(seconds: np.ndarray) -> np.ndarray:
    """Epoch day of epoch seconds."""
    return np.asarray(seconds, dtype=np.int64) // DAY


def deliver(frame: pd.DataFrame, natural_day: np.ndarray, start: int, hour_next_day: float) -> pd.DataFrame:
    """Set the delivery columns of a daily extract: partition = the row's day (rows dated before
    the history's ``start`` go to the initial load, partition ``start``), arriving the next day
    at ``hour_next_day`` UTC."""
    part = np.maximum(np.asarray(natural_day, dtype=np.int64), start)
    frame[PARTITION] = part
    frame[ARRIVAL] = at(part + 1, hour_next_day)
    return frame


def nullable_int(values: np.ndarray, valid: np.ndarray) -> pd.arrays.IntegerArray:
    """An ``Int64`` array: ``values`` where ``valid``, NULL elsewhere."""
    return pd.arrays.IntegerArray(np.where(valid, values, 0).astype(np.int64), ~np.asarray(valid, dtype=bool))


def schedule(names: list[str], start: int, end: int) -> pd.DataFrame:
    """The scheduled deliveries of the daily sources among ``names``: one per day of [start, end]."""
    days = np.arange(start, end + 1)
    parts = [
        pd.DataFrame(
            {"source": n, PARTITION: days, ARRIVAL: days * DAY + int(round(SOURCES[n].schedule_hours * 3600))}
        )
        for n in names
        if SOURCES[n].schedule_hours is not None
    ]
    if not parts:
        return pd.DataFrame(
            {
                "source": pd.Series(dtype=object),
                PARTITION: pd.Series(dtype=np.int64),
                ARRIVAL: pd.Series(dtype=np.int64),
            }
        )
    return pd.concat(parts, ignore_index=True)


def _micros_to_decimal(values: pd.Series, kind: str) -> pa.Array:
    v = values.to_numpy()
    mask = pd.isna(values).to_numpy()
    ints = np.where(mask, 0, v).astype(np.int64)
    neg = ints < 0
    a = np.abs(ints)
    text = np.char.add(
        np.char.add(np.where(neg, "-", ""), (a // 1_000_000).astype(str)),
        np.char.add(".", np.char.zfill((a % 1_000_000).astype(str), 6)),
    )
    arr = pa.array(text.astype(object), pa.string(), mask=mask)
    return arr.cast(KINDS[kind])


def _column(values: pd.Series, kind: str) -> pa.Array:
    if kind == "str":
        return pa.array(values.to_numpy(dtype=object), pa.string(), from_pandas=True)
    if kind == "int":
        if values.dtype == object and values.map(lambda x: isinstance(x, str)).any():
            return pa.array(
                values.map(lambda x: None if x is None else str(x)).to_numpy(dtype=object), pa.string()
            )
        return pa.array(values, pa.int64(), from_pandas=True)
    if kind == "bool":
        return pa.array(values, pa.bool_(), from_pandas=True)
    if kind in ("date", "ts"):
        if values.dtype == object or str(values.dtype) == "Int64":
            mask = pd.isna(values).to_numpy()
            v = np.where(mask, -1, values.to_numpy(dtype=object)).astype(np.int64)
        else:
            v = values.to_numpy().astype(np.int64)
        mask = v < 0
        if kind == "date":
            return pa.array(v.astype(np.int32), pa.int32(), mask=mask).cast(pa.date32())
        return pa.array(v * 1_000_000, pa.timestamp("us", tz="UTC"), mask=mask)
    return _micros_to_decimal(values, kind)


def to_arrow(sdef: SourceDef, frame: pd.DataFrame) -> pa.Table:
    """The landed table of ``frame``'s rows (internal columns dropped, kinds converted)."""
    arrays = [_column(frame[c], k) for c, k in sdef.columns]
    fields = [pa.field(c, a.type) for (c, _), a in zip(sdef.columns, arrays, strict=True)]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def delivery_groups(part: np.ndarray, arr: np.ndarray, scheduled: pd.DataFrame | None) -> pd.DataFrame:
    """The deliveries of rows sorted by (partition, arrival): ``p``, ``a``, row range ``lo``..``hi``;
    plus an empty one for each ``scheduled`` (``_dt``, ``_arrival``) without rows; by (p, a)."""
    cut = np.flatnonzero((part[1:] != part[:-1]) | (arr[1:] != arr[:-1])) + 1
    lo = np.concatenate([[0], cut]) if len(part) else np.array([], np.int64)
    hi = np.concatenate([cut, [len(part)]]) if len(part) else np.array([], np.int64)
    groups = pd.DataFrame({"p": part[lo], "a": arr[lo], "lo": lo, "hi": hi})
    if scheduled is not None and len(scheduled):
        extra = (
            scheduled[[PARTITION, ARRIVAL]].drop_duplicates().rename(columns={PARTITION: "p", ARRIVAL: "a"})
        )
        extra = extra.merge(groups[["p", "a"]], how="left", indicator=True)
        extra = extra[extra["_merge"] == "left_only"].drop(columns="_merge").assign(lo=0, hi=0)
        groups = pd.concat([groups, extra.astype(np.int64)], ignore_index=True)
    return groups.sort_values(["p", "a"], kind="stable")


class LandingWriter:
    """Writes the deliveries of in-memory extracts with :func:`helpers.storage.landing.write_delivery`.

    ``durable=False``: the generator builds a folder nobody reads yet and publishes it with one
    rename after :meth:`sync`, so per-file fsyncs (three per file) buy nothing.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def deliver(
        self, source: str, partition: str, table: pa.Table, arrived_at: dt.datetime
    ) -> landing.Delivery:
        return landing.write_delivery(
            source, partition, table, arrived_at=arrived_at, root=self.root, durable=False
        )

    def write(
        self, sdef: SourceDef, frame: pd.DataFrame, scheduled: pd.DataFrame | None = None
    ) -> tuple[int, int]:
        """Write every delivery of ``frame`` (sorted by partition, arrival and key), plus an empty
        delivery for each ``scheduled`` (``_dt``, ``_arrival``) that has no rows; (rows, files)."""
        frame = frame.sort_values([PARTITION, ARRIVAL, sdef.key], kind="stable")
        part = frame[PARTITION].to_numpy().astype(np.int64)
        arr = frame[ARRIVAL].to_numpy().astype(np.int64)
        groups = delivery_groups(part, arr, scheduled)
        drift = any(k == "int" and frame[c].dtype == object for c, k in sdef.columns)
        table = None if drift else to_arrow(sdef, frame)
        for p, a, i, j in groups.itertuples(index=False):
            chunk = to_arrow(sdef, frame.iloc[i:j]) if drift else table.slice(i, j - i)
            self.deliver_at(sdef.name, p, a, chunk)
        return len(frame), len(groups)

    def deliver_at(self, source: str, day: int, arrival: int, table: pa.Table) -> None:
        """One delivery of partition epoch ``day`` arriving at epoch second ``arrival``."""
        self.deliver(
            source,
            (EPOCH + dt.timedelta(days=int(day))).date().isoformat(),
            table,
            EPOCH + dt.timedelta(seconds=int(arrival)),
        )

    def sync(self) -> None:
        """Make everything written durable (one sync instead of several per file)."""
        os.sync()


class MergingWriter(LandingWriter):
    """A :class:`LandingWriter` for a company simulated in several chunks: each chunk's rows are
    spilled to an Arrow file per source (``spill``, by partition), and :meth:`finish` writes each
    source's deliveries once, every chunk's rows of a delivery in one file (sorted by arrival and
    key), instead of one file per chunk; a partition at a time, from the memory-mapped spills.
    Not for extracts with type drift (faults)."""

    def __init__(self, root: Path, spill: Path) -> None:
        super().__init__(root)
        self.spill = spill
        self.scheduled: dict[str, list[pd.DataFrame]] = {}
        self.parts: dict[str, int] = {}

    def write(
        self, sdef: SourceDef, frame: pd.DataFrame, scheduled: pd.DataFrame | None = None
    ) -> tuple[int, int]:
        """Spill ``frame`` (files are counted by :meth:`finish`): (rows, 0)."""
        if any(k == "int" and frame[c].dtype == object for c, k in sdef.columns):
            raise ValueError(f"{sdef.name}: a column with type drift cannot be merged across chunks")
        frame = frame.take(np.argsort(frame[PARTITION].to_numpy(), kind="stable"))
        table = to_arrow(sdef, frame)
        table = table.append_column(PARTITION, pa.array(frame[PARTITION].to_numpy().astype(np.int64)))
        table = table.append_column(ARRIVAL, pa.array(frame[ARRIVAL].to_numpy().astype(np.int64)))
        n = self.parts.get(sdef.name, 0)
        (self.spill / sdef.name).mkdir(parents=True, exist_ok=True)
        feather.write_feather(table, self.spill / sdef.name / f"{n:05d}.arrow", compression="uncompressed")
        self.parts[sdef.name] = n + 1
        if scheduled is not None and len(scheduled):
            self.scheduled.setdefault(sdef.name, []).append(scheduled)
        return len(frame), 0

    def finish(self, name: str) -> int:
        """Write the deliveries of source ``name`` from its spilled chunks; the files written."""
        key = SOURCES[name].key
        chunks = [feather.read_table(f, memory_map=True) for f in sorted((self.spill / name).glob("*.arrow"))]
        days = [c[PARTITION].to_numpy() for c in chunks]
        sched = self.scheduled.pop(name, [])
        plan: dict[int, set[int]] = {}  # partition -> arrivals of its scheduled deliveries
        for frame in sched:
            for p, a in zip(frame[PARTITION].tolist(), frame[ARRIVAL].tolist(), strict=True):
                plan.setdefault(int(p), set()).add(int(a))
        files = 0
        for day in sorted({int(d) for ds in days for d in np.unique(ds)} | set(plan)):
            bounds = [(np.searchsorted(ds, day, "left"), np.searchsorted(ds, day, "right")) for ds in days]
            parts = [c.slice(lo, hi - lo) for c, (lo, hi) in zip(chunks, bounds, strict=True) if hi > lo]
            table = pa.concat_tables(parts) if parts else chunks[0].slice(0, 0)
            table = table.sort_by([(ARRIVAL, "ascending"), (key, "ascending")])
            arr = table[ARRIVAL].to_numpy().astype(np.int64)
            lo = np.r_[0, np.flatnonzero(arr[1:] != arr[:-1]) + 1] if len(arr) else np.zeros(0, np.int64)
            hi = np.r_[lo[1:], len(arr)] if len(arr) else lo
            groups = [(int(arr[i]), int(i), int(j)) for i, j in zip(lo, hi, strict=True)]
            groups += [(a, 0, 0) for a in plan.get(day, set()) - {g[0] for g in groups}]
            table = table.drop_columns([PARTITION, ARRIVAL])
            for a, i, j in sorted(groups):
                self.deliver_at(name, day, a, table.slice(i, j - i))
            files += len(groups)
        del chunks, days
        shutil.rmtree(self.spill / name)
        return files
