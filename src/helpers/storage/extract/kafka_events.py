"""The Kafka extract's per-message path and batch decoding (``helpers.storage.extract.kafka``).

A message is decoded (:func:`decode_event`: JSON object, pseudonymised), then filed as a parsed
Segment v1 row (:func:`event_row`) or landed raw (:func:`raw_row`) for the engagement pipeline's
schema contract; only an undecodable message is quarantined (:func:`quarantined_message`).
:func:`decode_batch` runs a whole batch, valid v1 messages through the columnar fast path of
``kafka_batch``; :func:`finish_batch` completes a batch whose fast path ran in the decode worker
(``kafka_decode``). ``kafka`` re-exports every name here; its docstring states the rules.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from helpers.core.timeutil import as_utc
from helpers.storage.contracts import EVENTS_SCHEMA, JSON_COLUMNS, SCHEMA_VERSION, email_sha256
from helpers.storage.extract.kafka_batch import (
    COLUMNS,
    SEGMENT_TYPES,
    Received,
    fast_row,
    merge_rows,
    micros,
    rows_table,
)
from helpers.storage.quarantine import QuarantinedRow

log = logging.getLogger("helpers.storage.extract.kafka")  # the consumer's log, as before the split

TIME_NAMES = frozenset(("timestamp", "sentAt", "receivedAt"))
_OBJECTS = JSON_COLUMNS["events"]  # Segment's objects, landed as JSON text


@dataclass(frozen=True)
class Message:
    """One consumed record, independent of the client library (so parsing is pure and testable)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp_ms: int | None = None


class EventError(ValueError):
    """A message that is not a usable Segment event; ``field`` names the culprit when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _timestamp(event: Mapping[str, Any], key: str) -> dt.datetime | None:
    """``event[key]`` as aware UTC (no offset means UTC), None when absent; EventError if malformed."""
    value = event.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"{key}: expected an ISO 8601 string, got {type(value).__name__}", key)
    try:
        return as_utc(dt.datetime.fromisoformat(value))
    except ValueError:
        raise EventError(f"{key}: {value!r} is not an ISO 8601 timestamp", key) from None


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)


def pseudonymised(event: dict[str, Any], salt: str) -> dict[str, Any]:
    """``event`` with each traits ``email`` replaced by ``email_sha256`` and ``context.ip`` dropped."""
    out = dict(event)
    context = out.get("context")
    if isinstance(context, dict):
        context = out["context"] = {k: v for k, v in context.items() if k != "ip"}
    for holder, key in ((out, "traits"), (context, "traits")):
        traits = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(traits, dict) and "email" in traits:
            traits = {k: v for k, v in traits.items() if k != "email"}
            traits["email_sha256"] = email_sha256(holder[key]["email"], salt)
            holder[key] = traits
    return out


def decode_event(message: Message, email_salt: str) -> dict[str, Any]:
    """The message as a pseudonymised JSON object; raises :class:`EventError` if it is not one."""
    if message.value is None:
        raise EventError("empty message (no value)")
    try:
        event = json.loads(message.value)
    except UnicodeDecodeError:
        raise EventError("value is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise EventError(f"not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(event, dict):
        raise EventError(f"expected a JSON object, got {type(event).__name__}")
    return pseudonymised(event, email_salt)


def event_row(event: Mapping[str, Any]) -> dict[str, Any]:
    """A decoded Segment v1 event as one landing row; raises :class:`EventError` saying why it cannot be."""
    message_id = event.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise EventError("messageId: missing or not a non-empty string", "messageId")
    kind = event.get("type")
    if kind not in SEGMENT_TYPES:
        raise EventError(f"type: {kind!r} is not one of {', '.join(SEGMENT_TYPES)}", "type")
    for key in ("userId", "anonymousId", "event", "name"):
        if event.get(key) is not None and not isinstance(event[key], str):
            raise EventError(f"{key}: expected a string, got {type(event[key]).__name__}", key)
    if not (event.get("userId") or event.get("anonymousId")):
        raise EventError("userId/anonymousId: an event needs at least one of them", "userId")
    if kind == "track" and not event.get("event"):
        raise EventError("event: a track event needs an event name", "event")
    for key in _OBJECTS:
        if event.get(key) is not None and not isinstance(event[key], dict):
            raise EventError(f"{key}: expected a JSON object, got {type(event[key]).__name__}", key)
    times = {key: _timestamp(event, key) for key in ("timestamp", "sentAt", "receivedAt")}
    if times["timestamp"] is None:
        raise EventError("timestamp: missing; expected an ISO 8601 timestamp", "timestamp")
    if times["receivedAt"] is None:
        raise EventError("receivedAt: missing; the landing is partitioned by it", "receivedAt")
    return {
        **{key: event.get(key) for key in ("messageId", "type", "event", "name", "userId", "anonymousId")},
        **times,
        **{key: _json_text(event.get(key)) for key in _OBJECTS},
        "schema_version": SCHEMA_VERSION,
        "_raw_json": None,
    }


def declared_version(event: Mapping[str, Any]) -> str:
    """The message's ``schema_version`` as text (``"1"``, Segment's, when it declares none)."""
    version = event.get("schema_version")
    return SCHEMA_VERSION if version is None or version == "" else str(version)


def raw_row(event: Mapping[str, Any], message: Message, *, fallback: dt.datetime) -> dict[str, Any]:
    """A decoded message landed unparsed: ``receivedAt``, ``schema_version`` and ``_raw_json`` only.

    ``receivedAt``: the message's own when it is an ISO timestamp, else the broker record's
    timestamp, else ``fallback`` (the arrival clock).
    """
    try:
        received = _timestamp(event, "receivedAt")
    except EventError:
        received = None
    if received is None and message.timestamp_ms:
        received = dt.datetime.fromtimestamp(message.timestamp_ms / 1000, dt.UTC)
    row: dict[str, Any] = dict.fromkeys(EVENTS_SCHEMA.names)
    row.update(
        receivedAt=received or as_utc(fallback),
        schema_version=declared_version(event),
        _raw_json=json.dumps(event, sort_keys=True, ensure_ascii=False),
    )
    return row


def landing_row(
    event: Mapping[str, Any], message: Message, *, fallback: dt.datetime
) -> tuple[dict[str, Any], EventError | None]:
    """The row a decoded message lands as, and why it was landed raw (None when parsed).

    A message declaring a version other than v1 is landed raw as it is; a v1 message that fails
    :func:`event_row` is landed raw too (the schema contract quarantines it downstream, with the
    reason, where it is counted against the day's deliveries).
    """
    if declared_version(event) != SCHEMA_VERSION:
        return raw_row(event, message, fallback=fallback), EventError(
            f"schema_version {declared_version(event)!r}: landed raw for the schema contract",
            "schema_version",
        )
    try:
        return event_row(event), None
    except EventError as e:
        return raw_row(event, message, fallback=fallback), e


def parse_event(message: Message, *, email_salt: str, fallback: dt.datetime | None = None) -> dict[str, Any]:
    """:func:`decode_event` then :func:`landing_row`: the landing row of a message.

    Raises :class:`EventError` only when the message cannot be decoded at all.
    """
    row, _why = landing_row(
        decode_event(message, email_salt),
        message,
        fallback=fallback or dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
    )
    return row


def partition_time(row: Mapping[str, Any], partition_by: str = "receivedAt") -> dt.datetime:
    """The time whose (date, hour) files a row: ``partition_by`` for parsed rows, else ``receivedAt``."""
    return row.get(partition_by) or row["receivedAt"]


def events_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Landing rows as an Arrow table in the contract's schema, ordered as the generator orders
    its files (``receivedAt``, then ``messageId``; raw rows by their text)."""
    ordered = sorted(rows, key=lambda r: (r["receivedAt"], r["messageId"] or "", r["_raw_json"] or ""))
    return pa.Table.from_pylist(ordered, schema=EVENTS_SCHEMA)


def quarantined_message(
    source: str, message: Message, error: EventError, event: Mapping[str, Any] | None = None
) -> QuarantinedRow:
    """The quarantine record of an unusable message: topic, partition, offset, reason, raw text.

    ``raw`` is the decoded, pseudonymised ``event`` when there is one (emails never reach the
    quarantine), else the message text as received.
    """
    if event is not None:
        raw = json.dumps(event, sort_keys=True, ensure_ascii=False)
    else:
        raw = "" if message.value is None else message.value.decode("utf-8", "backslashreplace")
    return QuarantinedRow(
        source,
        f"{message.topic}/{message.partition}",
        None,
        str(error),
        raw,
        error.field,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
    )


def next_offsets(messages: Iterable[Message]) -> dict[tuple[str, int], int]:
    """The offsets to commit after ``messages``: one past the highest consumed, per partition."""
    out: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic, m.partition)
        out[key] = max(out.get(key, 0), m.offset + 1)
    return out


@dataclass
class Decoded:
    """A batch decoded: landing rows (``COLUMNS`` order, times as epoch microseconds), the message
    each came from, quarantine records."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    sources: list[int] = field(default_factory=list)  # index in the batch of each row's message
    quarantined: list[QuarantinedRow] = field(default_factory=list)
    raw: int = 0
    table: pa.Table | None = None  # every row (``rows_table``) when a decode worker did the fast path

    def landing_table(self) -> pa.Table:
        """All the batch's rows as :func:`kafka_batch.rows_table` (``_pos``: the source message)."""
        return rows_table(self.rows, self.sources) if self.table is None else self.table


def decode_batch(
    received: Received, *, source: str, email_salt: str, clock: Callable[[], dt.datetime]
) -> Decoded:
    """Every message of a batch as a landing row or a quarantine record, in consumed order.

    Valid v1 messages take :func:`kafka_batch.fast_row`; anything else takes the per-message path
    (:func:`decode_event`, :func:`landing_row`, :func:`quarantined_message`), with ``clock()`` as
    the fallback ``receivedAt``, exactly as when messages were decoded one at a time.
    """
    out = Decoded()
    for i, value in enumerate(received.values):
        row = fast_row(value, email_salt)
        if row is None:
            _decode_one(out, received, i, source=source, email_salt=email_salt, clock=clock)
        else:
            out.rows.append(row)
            out.sources.append(i)
    return out


def finish_batch(
    received: Received,
    fast: pa.Table,
    slow: Sequence[int],
    *,
    source: str,
    email_salt: str,
    clock: Callable[[], dt.datetime],
) -> Decoded:
    """:func:`decode_batch` for a batch whose fast path ran in a decode worker
    (:func:`kafka_batch.fast_table`): the messages ``slow`` take the per-message path here, and
    ``table`` holds every row in consumed order, as ``decode_batch`` would have produced them."""
    out = Decoded()
    for i in slow:
        _decode_one(out, received, i, source=source, email_salt=email_salt, clock=clock)
    out.table = merge_rows(fast, out.rows, out.sources)
    return out


def _decode_one(
    out: Decoded,
    received: Received,
    i: int,
    *,
    source: str,
    email_salt: str,
    clock: Callable[[], dt.datetime],
) -> None:
    """The per-message path for message ``i`` of the batch: a row (parsed or raw) or a quarantine record."""
    message = Message(*received.at(i))
    try:
        event = decode_event(message, email_salt)
    except EventError as e:
        out.quarantined.append(quarantined_message(source, message, e))
        return
    landed, why = landing_row(event, message, fallback=clock())
    if why is not None:
        out.raw += 1
        log.info(
            "kafka: %s/%d@%d landed raw (schema_version %s): %s",
            message.topic, message.partition, message.offset, landed["schema_version"], why,
        )  # fmt: skip
    out.rows.append(tuple(micros(landed[c]) if c in TIME_NAMES else landed[c] for c in COLUMNS))
    out.sources.append(i)
