"""Verified reads of the landing zone: each delivery's SHA-256 and contract checked before its rows are used.

:func:`read_verified` is what a pipeline reads the landing zone through (Profit and Growth). Per
delivery of the window, on a few threads:

1. the file must still hash to its manifest's sha256 (:func:`helpers.storage.landing.verify_delivery`);
   a changed or missing file is quarantined *whole* ("landing file changed after arrival: <path>");
2. it must hold every contract column it is read for (:func:`helpers.storage.contracts.schema`); a
   delivery lacking one is quarantined whole ("column amount missing in <path>");
3. every value must convert to its contract type; one that does not ('12,50 EUR' in an integer
   amount) quarantines its row, with the file, the 1-based row and the field. Values that do
   convert are kept as delivered (an amount delivered as the text '1250' stays text: the Profit
   screening records that type drift itself).

Nothing is dropped silently: the :class:`LandingReport` lists every delivery and row left out,
pipelines turn it into a critical check and provisional figures, and :meth:`LandingReport.write`
appends it to the quarantine zone (idempotently).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from helpers.storage import contracts, landing
from helpers.storage.quarantine import QuarantinedRow, write_quarantine

THREADS = 8


@dataclass(frozen=True)
class Rejected:
    """A whole delivery left out: its manifest record, the reason and the quarantine record."""

    delivery: landing.Delivery
    reason: str
    kind: str  # "changed" (sha256 mismatch), "missing" (file gone), "columns" (contract column absent)
    row: QuarantinedRow


@dataclass
class LandingReport:
    """What verified reads left out: whole deliveries and single rows, with how much was read."""

    rejected: list[Rejected] = field(default_factory=list)
    quarantined: list[QuarantinedRow] = field(default_factory=list)
    deliveries: dict[str, int] = field(default_factory=dict)  # source -> deliveries read
    received: dict[str, int] = field(default_factory=dict)  # source -> rows in the files read

    def extend(self, other: LandingReport) -> LandingReport:
        self.rejected += other.rejected
        self.quarantined += other.quarantined
        for k, v in other.deliveries.items():
            self.deliveries[k] = self.deliveries.get(k, 0) + v
        for k, v in other.received.items():
            self.received[k] = self.received.get(k, 0) + v
        return self

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.quarantined

    def tampered(self) -> list[Rejected]:
        """Deliveries whose file changed (or vanished) after arrival."""
        return [r for r in self.rejected if r.kind in ("changed", "missing")]

    def reasons(self) -> list[str]:
        """One line per delivery left out, then one per source and field with rows left out."""
        out = [r.reason for r in self.rejected]
        counts: dict[tuple[str, str], int] = {}
        for q in self.quarantined:
            counts[(q.source, q.field or "")] = counts.get((q.source, q.field or ""), 0) + 1
        out += [
            f"{n} row(s) of {s} quarantined: {f} not of its contract type"
            for (s, f), n in sorted(counts.items())
        ]
        return out

    def frame(self) -> pd.DataFrame:
        """Every record left out, one row each: source, file, line, field, reason."""
        rows = [r.row for r in self.rejected] + list(self.quarantined)
        return pd.DataFrame(
            [dict(source=q.source, file=q.file, line=q.line, field=q.field, reason=q.reason) for q in rows],
            columns=["source", "file", "line", "field", "reason"],
        )

    def write(self, root: Path | None = None) -> list[Path]:
        """Append every record to ``<quarantine>/<source>/<partition>_<file>.jsonl`` (idempotent)."""
        groups: dict[tuple[str, str], list[QuarantinedRow]] = {}
        for r in self.rejected:
            name = f"{r.delivery.partition}_{Path(r.delivery.file).stem}"
            groups.setdefault((r.delivery.source, name), []).append(r.row)
        for q in self.quarantined:
            name = f"{Path(q.file).parent.name.removeprefix('dt=')}_{Path(q.file).stem}"
            groups.setdefault((q.source, name), []).append(q)
        return [write_quarantine(s, rows, name=n, root=root) for (s, n), rows in sorted(groups.items())]


# ---------------------------------------------------------------- one delivery


def _reject(d: landing.Delivery, path: Path, reason: str, kind: str, raw: dict, fld: str | None) -> Rejected:
    raw = {"partition": d.partition, "file": d.file, **raw}
    return Rejected(d, reason, kind, QuarantinedRow(d.source, str(path), None, reason, raw, fld))


def _bad_values(table: pa.Table, schema: pa.Schema, source: str, path: Path) -> dict[int, QuarantinedRow]:
    """Rows holding a value that does not convert to its contract type, by 0-based row."""
    bad: dict[int, tuple[str, str]] = {}
    for f in schema:
        if f.name not in table.column_names:
            continue
        col = table.column(f.name)
        if col.type == f.type:
            continue
        try:
            col.cast(f.type)  # the usual case: the whole column converts (kept as delivered)
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
        for i, v in enumerate(col.to_pylist()):
            if v is None or i in bad:
                continue
            if not _converts(v, f.type):
                bad[i] = (f.name, f"{f.name}: {v!r} is not a valid {f.type}")
    if not bad:
        return {}
    out = {}
    for i, (name, why) in sorted(bad.items()):
        raw = {k: None if v is None else str(v) for k, v in table.slice(i, 1).to_pylist()[0].items()}
        out[i] = QuarantinedRow(source, str(path), i + 1, f"row {i + 1}: {why}", raw, name)
    return out


def _converts(value: object, typ: pa.DataType) -> bool:
    candidates = [value, value.strip()] if isinstance(value, str) else [value]
    for v in candidates:
        try:
            pa.array([v]).cast(typ)
            return True
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError):
            continue
    return False


def _read_one(
    d: landing.Delivery, root: Path | None, columns: list[str] | None, schema: pa.Schema | None
) -> tuple[pa.Table | None, Rejected | None, list[QuarantinedRow]]:
    path = landing.source_dir(d.source, root) / d.file
    problem = landing.verify_delivery(d, root=root)
    if problem is not None:
        if problem.startswith("landing file missing"):
            return None, _reject(d, path, problem, "missing", {"expected_sha256": d.sha256}, None), []
        actual = landing.cached_sha256(path)
        raw = {"expected_sha256": d.sha256, "actual_sha256": actual}
        return None, _reject(d, path, problem, "changed", raw, None), []
    try:
        pf = pq.ParquetFile(path)
        present = pf.schema_arrow.names
        wanted = list(columns) if columns else None
        required = wanted if wanted is not None else (schema.names if schema is not None else [])
        if schema is not None:
            required = [c for c in required if c in schema.names]
        missing = [c for c in required if c not in present]
        if missing:
            word = "column" if len(missing) == 1 else "columns"
            reason = f"{word} {', '.join(missing)} missing in {path}"
            return None, _reject(d, path, reason, "columns", {"missing": missing}, missing[0]), []
        if wanted is not None:
            absent = [c for c in wanted if c not in present]  # no contract: the reader's own columns
            if absent:
                raise ValueError(
                    f"{path}: delivery of {d.source} for {d.partition} lacks required column(s) {', '.join(absent)}"
                )
        table = pf.read(columns=wanted)
    except (OSError, pa.ArrowException) as e:
        raise ValueError(
            f"{path}: delivery of {d.source} for {d.partition} is not readable Parquet: {type(e).__name__}: {e}"
        ) from None
    if schema is None:
        return table, None, []
    bad = _bad_values(table, schema, d.source, path)
    if bad:
        keep = np.ones(table.num_rows, dtype=bool)
        keep[list(bad)] = False
        table = table.filter(pa.array(keep))
    return table, None, list(bad.values())


# ---------------------------------------------------------------- a source


@dataclass
class VerifiedRead:
    """The usable rows of one source (with ``_partition`` and ``_arrived_at``) and what was left out."""

    frame: pd.DataFrame
    report: LandingReport


def read_verified(
    source: str,
    *,
    as_of: dt.datetime | None = None,
    start: dt.date | str | None = None,
    end: dt.date | str | None = None,
    columns: list[str] | None = None,
    root: Path | None = None,
    combine: str = "pandas",
) -> VerifiedRead:
    """Every usable row of ``source`` delivered by ``as_of`` for partitions in ``[start, end]``.

    The frame has ``_partition`` and ``_arrived_at``, in manifest order. ``combine="arrow"``
    concatenates the files as Arrow tables first (fast for thousands of small files; falls back to
    pandas on type drift between deliveries); ``"pandas"`` converts each file on its own, as
    :func:`helpers.storage.landing.read_source` does.
    """
    lo, hi = (str(start) if start else None), (str(end) if end else None)
    found = [
        d
        for d in landing.deliveries(source, root=root, as_of=as_of)
        if not ((lo and d.partition < lo) or (hi and d.partition > hi))
    ]
    schema = contracts.schema(source)
    report = LandingReport(deliveries={source: len(found)}, received={source: 0})
    if not found:
        return VerifiedRead(pd.DataFrame(columns=[*(columns or []), "_partition", "_arrived_at"]), report)
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(lambda d: _read_one(d, root, columns, schema), found))
    used, tables = [], []
    for d, (table, rejected, rows) in zip(found, results, strict=True):
        report.quarantined += rows
        if rejected is not None:
            report.rejected.append(rejected)
            report.received[source] += d.rows
            continue
        report.received[source] += table.num_rows + len(rows)
        used.append(d)
        tables.append(table)
    return VerifiedRead(_combine(used, tables, columns, combine), report)


def _combine(
    found: list[landing.Delivery], tables: list[pa.Table], columns: list[str] | None, how: str
) -> pd.DataFrame:
    if not tables:
        return pd.DataFrame(columns=[*(columns or []), "_partition", "_arrived_at"])
    if how == "arrow":
        try:
            frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            frame = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
        sizes = [t.num_rows for t in tables]
        frame["_partition"] = np.repeat([d.partition for d in found], sizes)
        frame["_arrived_at"] = arrivals(found, sizes)
        return frame
    if _uniform(tables):
        return _concatenated(found, tables)
    frames = []
    for d, t in zip(found, tables, strict=True):
        part = t.to_pandas()
        part["_partition"] = d.partition
        part["_arrived_at"] = pd.Timestamp(d.arrived)
        frames.append(part)
    return pd.concat(frames, ignore_index=True)


def arrivals(found: Sequence[landing.Delivery], sizes: Sequence[int] | np.ndarray) -> pd.DatetimeIndex:
    """Each delivery's ``arrived_at`` (UTC, microseconds) repeated over its ``sizes`` rows: parsed
    once per delivery, not once per row (a month of events is 175,000 rows of 60 deliveries)."""
    return pd.to_datetime([d.arrived_at for d in found], utc=True).astype("datetime64[us, UTC]").repeat(sizes)


def _uniform(tables: list[pa.Table]) -> bool:
    """Whether every file has the same schema (types and metadata) and no boolean column holds a
    NULL: then one conversion of the concatenated files gives exactly the frame that converting
    each file and ``pd.concat`` would (same dtypes: an integer column with a NULL in any file is
    float64 either way), without a pandas conversion per file."""
    first = tables[0].schema
    if not all(t.schema.equals(first, check_metadata=True) for t in tables[1:]):
        return False
    flags = [i for i, f in enumerate(first) if pa.types.is_boolean(f.type)]
    return not any(t.column(i).null_count for t in tables for i in flags)


def _concatenated(found: list[landing.Delivery], tables: list[pa.Table]) -> pd.DataFrame:
    """The ``"pandas"`` combination of files of one schema (see :func:`_uniform`), in one conversion."""
    frame = pa.concat_tables(tables).to_pandas().reset_index(drop=True)
    sizes = [t.num_rows for t in tables]
    frame["_partition"] = np.repeat(np.array([d.partition for d in found], dtype=object), sizes)
    arrived = np.array([np.datetime64(pd.Timestamp(d.arrived).tz_convert(None), "us") for d in found])
    frame["_arrived_at"] = pd.DatetimeIndex(np.repeat(arrived, sizes)).tz_localize("UTC")
    return frame
