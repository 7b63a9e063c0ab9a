"""The landed rows an Engagement run reads: ``events`` and ``api_logs`` deliveries arrived by ``as_of``.

``events`` are read for received partitions from the window's roll-up start (less a day of clock
skew) to ``as_of``'s date; ``api_logs`` for the months the window touches. Files are read by the
engine (engine DataFrames, nothing collected); an empty read gets a zero-row file with the
source's landed schema, so its columns are right. Events are read with their provenance (file and
row), so a quarantined event names where it was landed.

An ``events`` delivery whose rows are all of later days, received after the run's days, is left
unread (:mod:`helpers.engagement.spans`): it is verified and counted all the same.

Every delivery is verified before the engine sees it (:func:`screen_delivery`): its file must still
hash to its manifest's sha256 (:func:`helpers.storage.landing.verify_delivery`), be readable
Parquet, and hold each column the run reads in a type of its contract
(``helpers.storage.contracts.SCHEMAS``). A delivery that fails is not read: it is quarantined
whole (:class:`helpers.storage.verified.Rejected`, in :attr:`Inputs.landing`), the run's
``landing_integrity`` check fails (critical) and its figures are provisional
(``helpers.engagement.run``). Values inside a delivery are judged by the event contract.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from helpers.core.timeutil import naive_utc
from helpers.engagement.event_contract import CONTRACT, LANDED_COLUMNS
from helpers.engagement.spans import SpanStore, contract_digest, measure, needed
from helpers.engagement.transforms import conformed
from helpers.engagement.window import RunWindow
from helpers.storage import landing
from helpers.storage.contracts import SCHEMAS
from helpers.storage.digests import DigestStore
from helpers.storage.engine import Engine
from helpers.storage.quarantine import QuarantinedRow
from helpers.storage.verified import THREADS, LandingReport, Rejected

log = logging.getLogger(__name__)

# The columns each source is read for (the engine reads nothing else of them).
READ_COLUMNS: dict[str, tuple[str, ...]] = {
    "events": LANDED_COLUMNS,
    "api_logs": ("request_id", "account_id", "api_key_id", "timestamp"),
}
# Short labels of why a delivery was left out (intake reasons, pending reasons).
KIND_LABELS = {
    "changed": "landing file changed after arrival",
    "missing": "landing file missing",
    "columns": "a contract column missing or of another type",
    "unreadable": "not readable Parquet",
}


@dataclass
class Inputs:
    """The landed rows a run reads (engine DataFrames) and which files they came from."""

    events: Any
    api: Any
    event_files: list[str]
    api_files: list[str]
    arrivals: pd.DataFrame  # events partitions read: partition (date), first arrived_at (naive UTC)
    landing: LandingReport = field(default_factory=LandingReport)  # deliveries left out whole
    events_unread: int = 0  # events deliveries verified but not read: nothing on or before the run's days
    # where the spans of the deliveries read are kept (helpers.engagement.spans)
    spans: SpanStore | None = None
    unmeasured: dict[str, str] = field(default_factory=dict)  # read deliveries without a span: file -> sha256

    def keep_spans(self, engine: Engine, rows: Any, contract: Any) -> None:
        """Measure the spans of the deliveries read that had none, from the run's conformed ``rows``,
        and keep them for the next runs (a cache: a failure is logged, the run goes on).

        Raises ``ValueError`` when deliveries were left unread under another contract than ``contract``.
        """
        if self.spans is not None and self.spans.digest != contract_digest(contract):
            if self.events_unread:
                raise ValueError(
                    "these inputs were loaded for another event contract: load(..., contract=...)"
                )
            return
        if self.spans is None or not self.unmeasured:
            return
        try:
            self.spans.save(measure(engine, rows, self.unmeasured))
        except Exception as exc:  # noqa: BLE001  (the figures never depend on it)
            log.warning("event spans not measured (%s): the next runs read every delivery", exc)


_EMPTY: dict[str, Path] = {}


def empty_parquet(source: str) -> str:
    """A zero-row file with the source's landed schema (so an empty read has the right columns)."""
    if source not in _EMPTY:
        path = Path(tempfile.gettempdir()) / f"workbook-empty-{source}-{os.getpid()}.parquet"
        pq.write_table(SCHEMAS[source].empty_table(), path)
        _EMPTY[source] = path
    return str(_EMPTY[source])


def landed_deliveries(
    source: str, first: dt.date, last: dt.date, *, as_of: dt.datetime, root: Path | None = None
) -> list[landing.Delivery]:
    """The deliveries of ``source`` for partitions in [first, last] arrived by ``as_of``."""
    lo, hi = first.isoformat(), last.isoformat()
    return [d for d in landing.deliveries(source, root=root, as_of=as_of) if lo <= d.partition <= hi]


def landed_files(
    source: str, first: dt.date, last: dt.date, *, as_of: dt.datetime, root: Path | None = None
) -> list[str]:
    """Paths of the deliveries of ``source`` for partitions in [first, last] arrived by ``as_of``."""
    base = landing.source_dir(source, root)
    return [str(base / d.file) for d in landed_deliveries(source, first, last, as_of=as_of, root=root)]


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Whether the engines read ``actual`` as ``expected`` (same family; an all-null column reads as NULL)."""
    if actual == expected or pa.types.is_null(actual):
        return True
    for family in (pa.types.is_string, pa.types.is_large_string):
        if family(expected):
            return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    for family in (pa.types.is_timestamp, pa.types.is_integer):
        if family(expected):
            return family(actual)
    return False


def _schema_problem(d: landing.Delivery, path: Path) -> tuple[str, str, dict[str, Any], str | None] | None:
    """(kind, reason, raw, field) when the file cannot be read for the run's columns, else None."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
        return "unreadable", f"not readable Parquet: {path}: {type(e).__name__}: {e}", {}, None
    expected = SCHEMAS[d.source]
    wanted = READ_COLUMNS[d.source]
    missing = [c for c in wanted if c not in schema.names]
    if missing:
        word = "column" if len(missing) == 1 else "columns"
        return "columns", f"{word} {', '.join(missing)} missing in {path}", {"missing": missing}, missing[0]
    for c in wanted:
        got, want = schema.field(c).type, expected.field(c).type
        if not _compatible(got, want):
            reason = f"column {c} of {path} is {got}, expected {want}"
            return "columns", reason, {"column": c, "type": str(got), "expected": str(want)}, c
    return None


def screen_delivery(
    d: landing.Delivery,
    *,
    root: Path | None = None,
    sha256: Callable[[str | Path], str] = landing.cached_sha256,
) -> Rejected | None:
    """None when the delivery can be read as landed; else why it is left out (quarantined whole).

    ``sha256``: how to hash its file (``helpers.storage.digests.DigestStore.sha256`` keeps the hashes).
    """
    path = landing.source_dir(d.source, root) / d.file
    problem = landing.verify_delivery(d, root=root, path=path, sha256=sha256)
    base = {"partition": d.partition, "file": d.file, "rows": d.rows, "expected_sha256": d.sha256}
    if problem is not None:
        kind = "missing" if problem.startswith("landing file missing") else "changed"
        if kind == "changed":
            base["actual_sha256"] = landing.cached_sha256(path)
        return Rejected(d, problem, kind, QuarantinedRow(d.source, str(path), None, problem, base, None))
    found = _schema_problem(d, path)
    if found is None:
        return None
    kind, reason, raw, column = found
    return Rejected(d, reason, kind, QuarantinedRow(d.source, str(path), None, reason, base | raw, column))


def screen(
    deliveries: list[landing.Delivery], *, root: Path | None = None
) -> tuple[list[str], LandingReport]:
    """The files of the deliveries that can be read, and the report of those left out whole.

    The files' SHA-256 are kept between runs by their stat (:mod:`helpers.storage.digests`): a
    file unchanged since a run hashed it is not read again to verify it.
    """
    report = LandingReport()
    if not deliveries:
        return [], report
    stores = {source: DigestStore(source, root) for source in {d.source for d in deliveries}}
    try:
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            verdicts = list(
                pool.map(lambda d: screen_delivery(d, root=root, sha256=stores[d.source].sha256), deliveries)
            )
    finally:
        for store in stores.values():
            store.save()
    files = []
    for d, rejected in zip(deliveries, verdicts, strict=True):
        report.deliveries[d.source] = report.deliveries.get(d.source, 0) + 1
        report.received[d.source] = report.received.get(d.source, 0) + d.rows
        if rejected is None:
            files.append(str(landing.source_dir(d.source, root) / d.file))
        else:
            report.rejected.append(rejected)
    return files, report


def _worth_reading(
    deliveries: list[landing.Delivery],
    files: list[str],
    window: RunWindow,
    store: SpanStore,
    root: Path | None,
) -> tuple[list[str], dict[str, str], int]:
    """Of the readable ``files`` (of ``deliveries``): those the run reads, those of them without a
    span yet (file -> sha256), and how many it leaves unread (:func:`helpers.engagement.spans.needed`)."""
    readable = set(files)
    base = landing.source_dir("events", root)
    read: list[str] = []
    unmeasured: dict[str, str] = {}
    for d in deliveries:
        path = str(base / d.file)
        if path not in readable:
            continue
        span = store.get(d.sha256)
        if span is None:
            unmeasured[d.file] = d.sha256
        if span is None or needed(span, window):
            read.append(path)
    return read, unmeasured, len(files) - len(read)


def measure_new(
    engine: Engine,
    deliveries: list[landing.Delivery],
    files: list[str],
    store: SpanStore,
    contract: Any,
    root: Path | None,
) -> int:
    """Measure and keep the spans of the readable ``files`` (of ``deliveries``) that have none,
    in one pass over their conformed rows that computes only the two days a span holds; returns
    how many. Then a run reads only the deliveries it needs (:func:`_worth_reading`) even where
    none was measured yet: rebuilding a month a year back, that is a month of the year's
    deliveries. A cache: a failure is logged and the run reads every delivery without a span.
    """
    readable = set(files)
    base = landing.source_dir("events", root)
    new = {
        d.file: d.sha256 for d in deliveries if str(base / d.file) in readable and store.get(d.sha256) is None
    }
    if not new:
        return 0
    name = "engagement_span_rows"
    rows = None
    try:
        src = engine.read_parquet([str(base / f) for f in new], name="engagement_span_src", provenance=True)
        rows = conformed(engine, src, contract, name=name)
        store.save(measure(engine, rows, new))
    except Exception as exc:  # noqa: BLE001  (the figures never depend on it)
        log.warning("event spans not measured (%s): the run reads every delivery without one", exc)
    finally:
        if rows is not None:
            engine.release(rows, name)
    return len(new)


def load(engine: Engine, window: RunWindow, *, root: Path | None = None, contract: Any = CONTRACT) -> Inputs:
    """Read the run's ``events`` and ``api_logs`` deliveries (see the module doc for the ranges);
    an events delivery with nothing on or before the run's days is verified and counted, not read
    (:mod:`helpers.engagement.spans`; deliveries not measured yet are measured first: :func:`measure_new`)."""
    ev = landed_deliveries("events", window.read_from, window.as_of.date(), as_of=window.as_of, root=root)
    api_from = min(window.start, *(m.start for m in window.months)) if window.months else window.start
    api = landed_deliveries("api_logs", api_from, window.rollup_end, as_of=window.as_of, root=root)
    ev_files, report = screen(ev, root=root)
    store = SpanStore(contract, root)
    measure_new(engine, ev, ev_files, store, contract, root)
    ev_files, unmeasured, unread = _worth_reading(ev, ev_files, window, store, root)
    api_files, api_report = screen(api, root=root)
    report.extend(api_report)
    events = engine.read_parquet(
        ev_files or [empty_parquet("events")], name="engagement_events_src", provenance=True
    )
    api_df = engine.read_parquet(
        api_files or [empty_parquet("api_logs")], name="engagement_api_src", provenance=True
    )
    read = [
        d
        for d in landing.deliveries("events", root=root, as_of=window.as_of)
        if window.read_from.isoformat() <= d.partition
    ]
    arrivals = pd.DataFrame(
        {
            "partition": [dt.date.fromisoformat(d.partition) for d in read],
            "arrived_at": [naive_utc(d.arrived) for d in read],
        },
        columns=["partition", "arrived_at"],
    )
    arrivals = arrivals.groupby("partition", as_index=False)["arrived_at"].min()
    return Inputs(events, api_df, ev_files, api_files, arrivals, report, unread, store, unmeasured)
