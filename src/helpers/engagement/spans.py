"""Which ``events`` deliveries a run can leave unread: those with nothing on or before its last day.

A run reads the events deliveries received from its roll-up start up to ``as_of``, because a copy
received late still counts (``helpers.engagement.inputs``). Rebuilding a month a year back, that is
a year of deliveries, nearly all of them events of later days. Yet a delivery whose events are all
dated after the last day the run computes (:attr:`RunWindow.last_event_day`), and that was received
after its last intake day, changes none of the run's figures: its events fall in no day, roll-up
or month the run writes; its received rows in no intake day; and a message it holds is one of
those later events in every copy (copies are identical but for ``receivedAt``), so it changes
neither which copy of a counted message comes first nor how many copies that message has.

A delivery's *span* says that much: the earliest event day and the earliest received day of its
rows, as the event contract reads them (quarantined rows included; NULL where no row has one). A
span is a function of the file's content and the contract, so it is kept by the delivery's
SHA-256 (verified against its manifest before the run reads it) in
``<data>/cache/event_spans/<contract>.json``, ``<contract>`` a digest of the contract's
definition. A run measures the deliveries without a span before it reads any
(:func:`helpers.engagement.inputs.measure_new`: one pass over their conformed rows computing only
the two days); where that fails, the run that reads a delivery measures it from the rows it
conformed (:func:`measure`). Runs leave a delivery unread where it has nothing for them (:func:`needed`).
Leaving a delivery unread changes nothing else: it is still verified and counted in the run's
landing report (``LandingReport``) as before. The store is a cache: missing, unreadable or
read-only, every delivery is read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from helpers.core import paths as core_paths
from helpers.engagement.window import RunWindow
from helpers.storage.engine import Engine

log = logging.getLogger(__name__)

SPANS_DIR = "event_spans"
Span = tuple[dt.date | None, dt.date | None]  # earliest event day, earliest received day


def contract_digest(contract: Any) -> str:
    """A digest of the contract's definition (its versions, fields and sources, as ``repr`` shows them)."""
    return hashlib.sha256(repr(contract).encode()).hexdigest()[:16]


def _day(value: Any) -> dt.date | None:
    return dt.date.fromisoformat(value) if isinstance(value, str) else None


class SpanStore:
    """The spans measured so far under one contract (``root``: a landing zone; default the workbook's)."""

    def __init__(self, contract: Any, root: Path | None = None) -> None:
        base = (root or core_paths.landing_dir()).parent / "cache" / SPANS_DIR
        self.digest = contract_digest(contract)
        self.path = base / f"{self.digest}.json"
        try:
            data = json.loads(self.path.read_text())
            self._spans: dict[str, Any] = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self._spans = {}

    def get(self, sha256: str) -> Span | None:
        entry = self._spans.get(sha256)
        if not (isinstance(entry, list) and len(entry) == 2):
            return None
        try:
            return _day(entry[0]), _day(entry[1])
        except ValueError:
            return None

    def save(self, new: Mapping[str, Span]) -> None:
        """Add ``new`` spans (merged with what another process wrote); a cache: never raises."""
        if not new:
            return
        entries = {sha: [d.isoformat() if d else None for d in span] for sha, span in new.items()}
        try:
            self._spans = core_paths.merge_json(self.path, entries)
        except OSError as exc:
            log.info("event spans not kept (%s): every delivery is read again next time", exc)


def needed(span: Span, window: RunWindow) -> bool:
    """Whether a delivery of ``span`` can change a figure of the run of ``window`` (see the module doc)."""
    first_event, first_received = span
    return (first_event is not None and first_event <= window.last_event_day) or (
        first_received is not None and first_received <= window.run_date
    )


def measure(engine: Engine, rows: Any, files: Mapping[str, str]) -> dict[str, Span]:
    """The spans of the deliveries ``files`` (delivery file -> SHA-256) from the run's conformed
    ``rows`` (``helpers.engagement.transforms.conformed``); a delivery without rows has (None, None)."""
    if not files:
        return {}
    F = engine.F
    found = engine.to_pandas(
        rows.where(F.col("delivery_file").isin(list(files)))
        .groupBy(F.col("delivery_file").alias("delivery_file"))
        .agg(
            F.min(F.to_date(F.col("event_ts"))).alias("first_event"),
            F.min(F.col("received_date")).alias("first_received"),
        ),
        ["delivery_file"],
    )
    spans: dict[str, Span] = {sha: (None, None) for sha in files.values()}
    for r in found.itertuples(index=False):
        spans[files[r.delivery_file]] = (_as_date(r.first_event), _as_date(r.first_received))
    return spans


def _as_date(value: Any) -> dt.date | None:
    if value is None or value != value:  # None, NaN or NaT
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])
