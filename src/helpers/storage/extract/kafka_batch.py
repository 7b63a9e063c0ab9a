"""Batch decoding for the Kafka extract (``helpers.storage.extract.kafka``): columns, not dicts.

The consumer lands a whole batch at once. Each message goes through :func:`fast_row` first: a
decode with ``orjson`` and the Segment v1 checks inlined, returning the landing row as a tuple in
``EVENTS_SCHEMA`` order, or ``None`` whenever anything is unusual (not decodable by orjson, a
digit run that orjson would turn into a float, another ``schema_version``, any failed check). A
``None`` sends the message through the per-message path of ``kafka.py`` unchanged, so raw
landing, quarantine reasons and every edge case stay exactly what they were; the fast path only
ever produces the row the per-message path produces for the same bytes (same JSON text: sorted
keys, ``", "``/``": "`` separators, ``ensure_ascii=False``, through the standard library's own C
encoder).

Rows then become one Arrow table per batch, split per (date, hour) of the partition time and
sorted as ``kafka.events_table`` sorts them (``receivedAt``, ``messageId``, ``_raw_json``; a
stable sort; Arrow compares UTF-8 bytes, which orders as Python compares code points), so every
delivery holds the same rows in the same order as before. Times travel as integer microseconds
since the epoch (:func:`micros`): Arrow converts aware datetimes one by one, in Python.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from json.encoder import c_make_encoder, encode_basestring
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from helpers.storage.contracts import EVENTS_SCHEMA, SCHEMA_VERSION, email_sha256

SEGMENT_TYPES = ("track", "page", "screen", "identify", "group", "alias")
COLUMNS = tuple(EVENTS_SCHEMA.names)
HOUR_US = 3_600_000_000
_TYPES = frozenset(SEGMENT_TYPES)
_UTC = dt.UTC
_fromiso = dt.datetime.fromisoformat
_EPOCH, _EPOCH_UTC = dt.datetime(1970, 1, 1), dt.datetime(1970, 1, 1, tzinfo=_UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_loads = orjson.loads
# orjson turns an integer beyond 64 bits into a float where json keeps an int: such messages
# (and any other run of 19+ digits, e.g. inside a string) take the per-message path.
_DIGITS = bytes(0x30 if 0x30 <= c <= 0x39 else 0x20 for c in range(256))  # digits to "0", the rest to " "
_LONG = b"0" * 19
if c_make_encoder is not None:  # json.dumps(v, sort_keys=True, ensure_ascii=False), minus its per-call setup
    _encode = c_make_encoder(None, None, encode_basestring, None, ": ", ", ", True, False, True)
else:  # pragma: no cover - CPython always has the C encoder

    def _encode(value: Any, _level: int) -> tuple[str]:
        return (json.dumps(value, sort_keys=True, ensure_ascii=False),)


def json_text(value: Any) -> str | None:
    """``json.dumps(value, sort_keys=True, ensure_ascii=False)``, None for None."""
    return None if value is None else "".join(_encode(value, 0))


def _micros(value: Any) -> int:
    """An ISO 8601 string as microseconds since the epoch, UTC (no offset means UTC); raises otherwise.

    Integers rather than datetimes: Arrow converts aware datetimes one by one in Python.
    """
    if type(value) is not str:
        raise TypeError(value)
    d = _fromiso(value)
    return (d - (_EPOCH if d.tzinfo is None else _EPOCH_UTC)) // _MICROSECOND


def micros(value: dt.datetime | None) -> int | None:
    """An aware datetime (or None) as microseconds since the epoch."""
    return None if value is None else (value - _EPOCH_UTC) // _MICROSECOND


def _pseudonymise(event: dict[str, Any], salt: str) -> None:
    """``kafka.pseudonymised`` in place, on an event nobody else holds."""
    context = event.get("context")
    if type(context) is dict:
        context.pop("ip", None)
    for holder in (event, context):
        traits = holder.get("traits") if type(holder) is dict else None
        if type(traits) is dict and "email" in traits:
            out = {k: v for k, v in traits.items() if k != "email"}
            out["email_sha256"] = email_sha256(traits["email"], salt)
            holder["traits"] = out


def fast_row(value: bytes | None, salt: str) -> tuple[Any, ...] | None:
    """The landing row of a valid Segment v1 message in ``COLUMNS`` order, else None (ask the slow path).

    Times are microseconds since the epoch (see :func:`micros`).
    """
    if value is None:
        return None
    try:
        if _LONG in value.translate(_DIGITS):
            return None
        event = _loads(value)
        if type(event) is not dict:
            return None
        _pseudonymise(event, salt)
        return _v1_row(event)
    except Exception:  # any doubt: the per-message path decides, with its own reason
        return None


def _v1_row(event: dict[str, Any]) -> tuple[Any, ...] | None:
    """``kafka.event_row`` for a pseudonymised event when it succeeds and the version is v1, else None."""
    get = event.get
    version = get("schema_version")
    if not (version is None or version == "" or version == SCHEMA_VERSION or str(version) == SCHEMA_VERSION):
        return None
    message_id, kind = get("messageId"), get("type")
    if type(message_id) is not str or not message_id or type(kind) is not str or kind not in _TYPES:
        return None
    user, anonymous, name, page = get("userId"), get("anonymousId"), get("event"), get("name")
    for text in (user, anonymous, name, page):
        if text is not None and type(text) is not str:
            return None
    if not (user or anonymous) or (kind == "track" and not name):
        return None
    context, properties, traits = get("context"), get("properties"), get("traits")
    for obj in (context, properties, traits):
        if obj is not None and type(obj) is not dict:
            return None
    sent = get("sentAt")
    return (
        message_id,
        kind,
        name,
        page,
        user,
        anonymous,
        _micros(get("timestamp")),  # required: None raises, so the slow path says why
        None if sent is None else _micros(sent),
        _micros(get("receivedAt")),
        json_text(context),
        json_text(properties),
        json_text(traits),
        SCHEMA_VERSION,
        None,
    )


@dataclass
class Received:
    """A batch's consumed messages as parallel columns (cheaper than one object per message)."""

    topics: list[str] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    timestamps_ms: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)

    def extend_records(self, records: Sequence[Any]) -> None:
        """Append confluent-kafka records (without errors) in order."""
        self.topics += [r.topic() for r in records]
        self.partitions += [r.partition() for r in records]
        self.offsets += [r.offset() for r in records]
        self.values += [r.value() for r in records]
        self.timestamps_ms += [t[1] if t[0] else None for t in (r.timestamp() for r in records)]

    def at(self, i: int) -> tuple[str, int, int, bytes | None, int | None]:
        return self.topics[i], self.partitions[i], self.offsets[i], self.values[i], self.timestamps_ms[i]

    def next_offsets(self) -> dict[tuple[str, int], int]:
        """One past the highest offset consumed, per (topic, partition)."""
        out: dict[tuple[str, int], int] = {}
        for key, offset in zip(zip(self.topics, self.partitions, strict=True), self.offsets, strict=True):
            if offset >= out.get(key, 0):
                out[key] = offset + 1
        return out


def positions(received: Received, index: np.ndarray) -> str:
    """Kafka provenance of the messages ``index`` for the log: offset ranges per topic/partition."""
    offsets = np.asarray(received.offsets, dtype=np.int64)[index]
    keys = [(received.topics[i], received.partitions[i]) for i in index.tolist()]
    spans = []
    for key in sorted(set(keys)):
        mine = offsets[np.fromiter((k == key for k in keys), dtype=bool, count=len(keys))]
        spans.append(f"{key[0]}/{key[1]}@{mine.min()}-{mine.max()} ({mine.size})")
    return ", ".join(spans)


def rows_table(rows: Sequence[tuple[Any, ...]], sources: Sequence[int]) -> pa.Table:
    """Landing rows (``COLUMNS`` order, times as epoch microseconds) as an Arrow table in the
    contract's schema, plus ``_pos``: the position in its batch of the message each row came from."""
    if rows:
        columns = zip(*rows, strict=True)
        arrays = [pa.array(col, type=f.type) for col, f in zip(columns, EVENTS_SCHEMA, strict=True)]
    else:
        arrays = [pa.array([], type=f.type) for f in EVENTS_SCHEMA]
    arrays.append(pa.array(sources, type=pa.int64()))
    return pa.Table.from_arrays(arrays, schema=EVENTS_SCHEMA.append(pa.field("_pos", pa.int64())))


def fast_table(values: Sequence[bytes | None], salt: str) -> tuple[pa.Table, list[int]]:
    """:func:`fast_row` of each value: the rows it decoded as :func:`rows_table` (``_pos``: the
    value's index), and the indices of the values it left to the per-message path (a decode worker
    runs this on a batch; see ``kafka_decode``)."""
    rows, sources, slow = [], [], []
    for i, value in enumerate(values):
        row = fast_row(value, salt)
        if row is None:
            slow.append(i)
        else:
            rows.append(row)
            sources.append(i)
    return rows_table(rows, sources), slow


def merge_rows(fast: pa.Table, rows: Sequence[tuple[Any, ...]], sources: Sequence[int]) -> pa.Table:
    """A :func:`fast_table` table plus the per-message path's rows, in consumed order (``_pos``)."""
    if not rows:
        return fast
    table = pa.concat_tables([fast, rows_table(rows, sources)])
    return table.take(pc.sort_indices(table["_pos"]))


def hourly_tables(
    rows: Sequence[tuple[Any, ...]], partition_by: str
) -> list[tuple[dt.date, int, pa.Table, np.ndarray]]:
    """Rows split per (date, hour) of their partition time, each sorted as ``events_table`` sorts.

    Returns (date, hour, table, positions of its rows in ``rows``), in (date, hour) order.
    """
    if not rows:
        return []
    return split_hours(rows_table(rows, range(len(rows))), partition_by)


def split_hours(table: pa.Table, partition_by: str) -> list[tuple[dt.date, int, pa.Table, np.ndarray]]:
    """A :func:`rows_table` table split per (date, hour) of the partition time, each part sorted as
    ``events_table`` sorts (a stable sort: rows in table order break ties).

    Returns (date, hour, table in ``EVENTS_SCHEMA``, the ``_pos`` of its rows), in (date, hour) order.
    """
    if not table.num_rows:
        return []
    when = table["receivedAt"]
    if partition_by != "receivedAt":  # parsed rows by that column, raw rows (None there) by receivedAt
        when = pc.coalesce(table[partition_by], when)
    hours = np.floor_divide(pc.cast(when, pa.int64()).to_numpy(), HOUR_US)
    keyed = table.append_column("_id", pc.fill_null(table["messageId"], "")).append_column(
        "_raw", pc.fill_null(table["_raw_json"], "")
    )
    pos = table["_pos"].to_numpy()
    out = []
    for hour in np.unique(hours).tolist():
        index = np.flatnonzero(hours == hour)
        part = keyed.take(pa.array(index))
        order = pc.sort_indices(
            part, sort_keys=[("receivedAt", "ascending"), ("_id", "ascending"), ("_raw", "ascending")]
        )
        at = dt.datetime.fromtimestamp(hour * 3600, _UTC)
        out.append((at.date(), at.hour, part.take(order).select(list(COLUMNS)), pos[index[order.to_numpy()]]))
    return out
