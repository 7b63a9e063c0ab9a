"""Frontend events from Kafka into hourly landing files, at least once.

Messages are JSON objects in the Segment spec shape (``messageId``, ``type``, ``userId``,
``anonymousId``, ``timestamp``, ``sentAt``, ``receivedAt``, ``context``, ``properties``, ...).

The delivery guarantee comes from the order of three steps, per batch:

1. buffer the consumed messages, grouped by event hour (UTC ``timestamp``; ``partition_by=
   "receivedAt"`` groups by the hour Segment received them instead);
2. on flush (``batch_messages`` reached, ``batch_seconds`` elapsed, end of input, or a
   rebalance taking partitions away) write the batch's quarantine lines, then one landing
   delivery per (date, hour) through :func:`helpers.landing.write_delivery`, which returns only
   once the file is fsynced and renamed into place and its manifest line is fsynced;
3. only then commit the batch's offsets, synchronously (``enable.auto.commit=false``).

A crash anywhere before step 3 leaves the offsets where they were, so the next consumer replays
the batch: events can land twice, never zero times. Duplicates (replays, and client retries that
reuse a ``messageId``) are removed downstream by ``messageId``; the consumer does not dedupe, and
every landed row keeps ``_kafka_partition``/``_kafka_offset`` so a replay can be told from a
client retry. The landing layout has one folder per date, so an hour is a file of its own (and a
``hour`` column), not a folder.

Personal data is pseudonymised before anything is written: a ``traits.email`` (top level or in
``context``) lands as ``email_sha256`` = sha256 hex of ``salt + email.strip().lower()``, with the
secret salt from ``WORKBOOK_EVENTS_EMAIL_SALT``, and ``context.ip`` is dropped.

A message that is not a usable Segment event (not JSON, no ``messageId``, unknown ``type``,
unparseable ``timestamp`` ...) is quarantined to ``data/quarantine/<source>/<topic>.jsonl`` with
topic, partition, offset and the reason (its raw text pseudonymised when it is a JSON object);
it counts as consumed, so its offset is committed.

Batch bounds and the idle timeout use the monotonic clock (they pace the loop, they are not
business time); the arrival time recorded with each delivery comes from the ``clock`` passed in.
``python -m helpers.extract.kafka --help`` runs the consumer from the command line; the
environment variable ``WORKBOOK_KAFKA_CRASH_AFTER_WRITE=n`` makes that process SIGKILL itself
right after its n-th durable write and before the commit: a fault-injection seam for tests and
drills.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from helpers import landing
from helpers.extract.base import ExtractResult, Kind, quarantine_root
from helpers.quarantine import QuarantinedRow, write_quarantine
from helpers.timeutil import as_utc, parse_as_of

log = logging.getLogger(__name__)

CRASH_ENV = "WORKBOOK_KAFKA_CRASH_AFTER_WRITE"
SALT_ENV = "WORKBOOK_EVENTS_EMAIL_SALT"  # the secret salt of email pseudonyms
BROKEN = "a flush failed part-way: close this consumer and start a new one (the batch will be replayed)"
PartitionBy = Literal["timestamp", "receivedAt"]
PARTITION_BY: tuple[PartitionBy, ...] = ("timestamp", "receivedAt")
SEGMENT_TYPES = ("track", "page", "screen", "identify", "group", "alias")
_KNOWN = ("messageId", "type", "event", "name", "userId", "anonymousId", "timestamp", "sentAt", "receivedAt")
_OBJECTS = ("context", "properties", "traits")
_TS = pa.timestamp("us", tz="UTC")
EVENT_SCHEMA = pa.schema(
    [
        ("messageId", pa.string()),
        ("type", pa.string()),
        ("event", pa.string()),
        ("name", pa.string()),
        ("userId", pa.string()),
        ("anonymousId", pa.string()),
        ("timestamp", _TS),
        ("sentAt", _TS),
        ("receivedAt", _TS),
        ("context", pa.string()),  # JSON text, keys sorted
        ("properties", pa.string()),
        ("traits", pa.string()),
        ("extra", pa.string()),  # any other top-level keys, as JSON text
        ("hour", pa.int8()),  # UTC hour of the partitioning time; its date is the landing partition
        ("_kafka_topic", pa.string()),
        ("_kafka_partition", pa.int32()),
        ("_kafka_offset", pa.int64()),
        ("_kafka_timestamp", _TS),  # the broker record's timestamp, when it has one
    ]
)
DEFAULT_CONFIG: Mapping[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
}


@dataclass(frozen=True)
class Message:
    """One consumed record, independent of the client library (so parsing is pure and testable)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp_ms: int | None = None


class EventError(ValueError):
    """Personal data is pseudonymised before anything is written: a ``traits.email`` (top level or in
    ``context``) lands as ``email_sha256`` = sha256 hex of ``salt + email.strip().lower()``, with the
    secret salt from ``WORKBOOK_EVENTS_EMAIL_SALT``, and ``context.ip`` is dropped.

    A message that is not a usable Segment event; ``field`` names the culprit when there is one."""

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


def email_sha256(email: Any, salt: str) -> str:
    """The pseudonym landed instead of an email: sha256 hex of ``salt + email.strip().lower()``."""
    return hashlib.sha256((salt + str(email).strip().lower()).encode("utf-8")).hexdigest()


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


def event_row(
    event: Mapping[str, Any], message: Message, *, partition_by: str = "timestamp"
) -> dict[str, Any]:
    """A decoded Segment event as one landing row; raises :class:`EventError` saying why it cannot be.

    ``hour`` is the UTC hour of ``partition_by`` (``timestamp``, the event time, or ``receivedAt``).
    """
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
    at = times[partition_by]
    if at is None:
        raise EventError(f"{partition_by}: missing; the landing is partitioned by it", partition_by)
    extra = {k: v for k, v in event.items() if k not in _KNOWN and k not in _OBJECTS}
    return {
        **{key: event.get(key) for key in ("messageId", "type", "event", "name", "userId", "anonymousId")},
        **times,
        **{key: _json_text(event.get(key)) for key in _OBJECTS},
        "extra": _json_text(extra) if extra else None,
        "hour": at.hour,
        "_kafka_topic": message.topic,
        "_kafka_partition": message.partition,
        "_kafka_offset": message.offset,
        "_kafka_timestamp": (
            dt.datetime.fromtimestamp(message.timestamp_ms / 1000, dt.UTC) if message.timestamp_ms else None
        ),
    }


def parse_event(message: Message, *, email_salt: str, partition_by: str = "timestamp") -> dict[str, Any]:
    """:func:`decode_event` then :func:`event_row`: a message as one landing row, or EventError."""
    return event_row(decode_event(message, email_salt), message, partition_by=partition_by)


def events_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Landing rows as an Arrow table with :data:`EVENT_SCHEMA`, ordered by partition and offset."""
    ordered = sorted(rows, key=lambda r: (r["_kafka_topic"], r["_kafka_partition"], r["_kafka_offset"]))
    return pa.Table.from_pylist(ordered, schema=EVENT_SCHEMA)


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
class ConsumeCounts:
    """What a consumer has done so far. ``received == landed + quarantined`` once flushed."""

    received: int = 0
    landed: int = 0
    quarantined: int = 0
    files_written: int = 0
    commits: int = 0
    deliveries: list[landing.Delivery] = field(default_factory=list)
    quarantine_files: list[Path] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Counts only, JSON-ready."""
        counts = {
            k: getattr(self, k) for k in ("received", "landed", "quarantined", "files_written", "commits")
        }
        return {**counts, "quarantine_files": sorted({str(p) for p in self.quarantine_files})}


@dataclass
class _Batch:
    messages: list[Message] = field(default_factory=list)
    rows: dict[tuple[dt.date, int], list[dict[str, Any]]] = field(default_factory=dict)
    quarantined: list[QuarantinedRow] = field(default_factory=list)
    started: float | None = None  # monotonic time of the first message


class EventConsumer:
    """A bounded or long-running consumer landing Segment events hourly, committing after the write.

    ``clock`` gives the arrival time recorded for each delivery (aware UTC). ``config`` adds to or
    overrides librdkafka settings (e.g. ``session.timeout.ms``); auto-commit stays off whatever it
    says. ``on_progress`` is called with the counts after every flush.
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topics: Sequence[str],
        group_id: str,
        clock: Callable[[], dt.datetime],
        email_salt: str,
        partition_by: PartitionBy = "timestamp",
        source: str = "events",
        root: Path | None = None,
        batch_messages: int = 10_000,
        batch_seconds: float = 60.0,
        config: Mapping[str, Any] | None = None,
        on_progress: Callable[[ConsumeCounts], None] | None = None,
        crash_after_writes: int | None = None,
    ) -> None:
        if batch_messages < 1 or batch_seconds <= 0:
            raise ValueError("batch_messages must be >= 1 and batch_seconds > 0")
        if partition_by not in PARTITION_BY:
            raise ValueError(f"partition_by must be one of {PARTITION_BY}, got {partition_by!r}")
        if not email_salt:
            raise ValueError("email_salt must be a non-empty secret (emails are landed as salted hashes)")
        self.source = source
        self.email_salt = email_salt
        self.partition_by = partition_by
        self.topics = list(topics)
        self.root = root
        self.clock = clock
        self.batch_messages = batch_messages
        self.batch_seconds = batch_seconds
        self.on_progress = on_progress
        self.crash_after_writes = crash_after_writes
        self.counts = ConsumeCounts()
        self._batch = _Batch()
        settings = {**DEFAULT_CONFIG, **dict(config or {})}
        settings.update({"bootstrap.servers": bootstrap_servers, "group.id": group_id})
        settings["enable.auto.commit"] = False  # the whole guarantee rests on this
        self._consumer = Consumer(settings)
        self._subscribed = False
        self._assigned_at: float | None = None  # monotonic time of the latest assignment
        self._broken = False  # set when a flush failed part-way

    # -- the loop ---------------------------------------------------------------------------
    def consume(
        self,
        max_messages: int | None = None,
        idle_timeout_s: float = 10.0,
        *,
        assignment_timeout_s: float = 60.0,
    ) -> ConsumeCounts:
        """Consume until ``max_messages`` were received or none arrived for ``idle_timeout_s``.

        Idle time counts from the group assignment, which can take a session timeout when a
        previous member died without leaving; without any assignment within
        ``assignment_timeout_s`` the call returns with what it has (nothing).

        Flushes (write, then commit) whenever a batch bound is reached and once more at the end,
        so on return everything received is landed or quarantined and committed.
        """
        if self._broken:
            raise RuntimeError(BROKEN)
        if not self._subscribed:
            self._consumer.subscribe(
                self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            self._subscribed = True
        received = 0
        started = last_message = time.monotonic()
        while max_messages is None or received < max_messages:
            # Never fetch past the batch bound: a batch is exactly ``batch_messages`` when full.
            want = min(500, self.batch_messages - len(self._batch.messages))
            if max_messages is not None:
                want = min(want, max_messages - received)
            records = self._consumer.consume(num_messages=want, timeout=0.5)
            now = time.monotonic()
            for record in records:
                error = record.error()
                if error is not None:
                    self._handle_error(error)
                    continue
                self._add(
                    Message(
                        record.topic(),
                        record.partition(),
                        record.offset(),
                        record.value(),
                        record.timestamp()[1] if record.timestamp()[0] else None,
                    ),
                    now,
                )
                received += 1
                last_message = now
            if self._batch_full(now):
                self.flush()
            if self._assigned_at is None:
                if now - started >= assignment_timeout_s:
                    log.warning("kafka: no partitions assigned within %.0f s", assignment_timeout_s)
                    break
            elif now - max(last_message, self._assigned_at) >= idle_timeout_s:
                break
        self.flush()
        return self.counts

    def close(self) -> None:
        """Flush what is buffered, then leave the group."""
        self.flush()
        self._consumer.close()

    def __enter__(self) -> EventConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:  # never commit after a failure: drop the batch, it will be replayed
            self._batch = _Batch()
            self._broken = True
            self._consumer.close()

    # -- batching ---------------------------------------------------------------------------
    def _add(self, message: Message, now: float) -> None:
        batch = self._batch
        if batch.started is None:
            batch.started = now
        batch.messages.append(message)
        self.counts.received += 1
        event = None
        try:
            event = decode_event(message, self.email_salt)
            row = event_row(event, message, partition_by=self.partition_by)
        except EventError as e:
            batch.quarantined.append(quarantined_message(self.source, message, e, event))
            return
        batch.rows.setdefault((row[self.partition_by].date(), row["hour"]), []).append(row)

    def _batch_full(self, now: float) -> bool:
        batch = self._batch
        return bool(batch.messages) and (
            len(batch.messages) >= self.batch_messages
            or (batch.started is not None and now - batch.started >= self.batch_seconds)
        )

    def flush(self, *, commit: bool = True) -> None:
        """Write the buffered batch durably, then (unless ``commit=False``) commit its offsets."""
        if self._broken:
            raise RuntimeError(BROKEN)
        batch, self._batch = self._batch, _Batch()
        if not batch.messages:
            return
        try:
            self._write(batch)
        except BaseException:
            # A later commit would skip this batch's offsets: this consumer must not commit again.
            self._broken = True
            raise
        if commit:
            self._commit(batch.messages)
        if self.on_progress is not None:
            self.on_progress(self.counts)

    def _write(self, batch: _Batch) -> None:
        """Quarantine lines first, then one durable delivery per (date, hour); no commit here."""
        for topic in sorted({q.topic for q in batch.quarantined if q.topic}):
            rows = [q for q in batch.quarantined if q.topic == topic]
            path = write_quarantine(self.source, rows, name=topic, root=quarantine_root(self.root))
            self.counts.quarantine_files.append(path)
        self.counts.quarantined += len(batch.quarantined)
        for (day, _hour), rows in sorted(batch.rows.items()):
            delivery = landing.write_delivery(
                self.source, day, events_table(rows), arrived_at=as_utc(self.clock()), root=self.root
            )
            self.counts.deliveries.append(delivery)
            self.counts.files_written += 1
            self.counts.landed += len(rows)
            if self.crash_after_writes is not None and self.counts.files_written >= self.crash_after_writes:
                os.kill(os.getpid(), signal.SIGKILL)  # fault injection: durable write, no commit

    def _commit(self, messages: Iterable[Message]) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(next_offsets(messages).items())]
        for tp in self._consumer.commit(offsets=offsets, asynchronous=False) or []:
            if tp.error is not None:
                raise KafkaException(tp.error)
        self.counts.commits += 1

    # -- callbacks ----------------------------------------------------------------------------
    def _on_assign(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        self._assigned_at = time.monotonic()

    def _on_revoke(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        # Partitions are about to move to another member: land and commit what we hold first.
        if not self._broken:
            self.flush()

    def _on_lost(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        # The partitions are already someone else's: a commit would fail. Land the batch anyway;
        # the new owner replays it, and the duplicates are removed downstream.
        if not self._broken:
            self.flush(commit=False)

    def _handle_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise KafkaException(error)
        log.warning("kafka: %s", error)


@dataclass(frozen=True)
class KafkaEvents:
    """The ``kafka`` adapter: a bounded consumer run whose deliveries arrive ``as_of``."""

    kind: ClassVar[Kind] = "kafka"
    bootstrap_servers: str
    topics: tuple[str, ...]
    group_id: str
    source: str = "events"
    config: Mapping[str, Any] = field(default_factory=dict)
    root: Path | None = None
    batch_messages: int = 10_000
    partition_by: PartitionBy = "timestamp"
    salt_env: str = SALT_ENV  # names the variable holding the email salt (a secret: never a value here)

    def extract(
        self, as_of: dt.datetime, *, max_messages: int | None = None, idle_timeout_s: float = 10.0
    ) -> ExtractResult:
        """Consume until idle (or ``max_messages``), landing and committing as :class:`EventConsumer` does."""
        consumer = EventConsumer(
            bootstrap_servers=self.bootstrap_servers,
            topics=self.topics,
            group_id=self.group_id,
            clock=lambda: as_of,
            email_salt=email_salt(self.salt_env),
            partition_by=self.partition_by,
            source=self.source,
            root=self.root,
            batch_messages=self.batch_messages,
            config=self.config,
        )
        with consumer:
            counts = consumer.consume(max_messages=max_messages, idle_timeout_s=idle_timeout_s)
        files = sorted(set(counts.quarantine_files))
        return ExtractResult(
            self.source,
            received=counts.received,
            landed=counts.landed,
            quarantined=counts.quarantined,
            deliveries=tuple(counts.deliveries),
            quarantine_file=files[0] if len(files) == 1 else None,
        )


def email_salt(salt_env: str = SALT_ENV) -> str:
    """The email pseudonym salt from the environment variable ``salt_env``; ValueError if unset."""
    salt = os.environ.get(salt_env, "")
    if not salt:
        raise ValueError(
            f"environment variable {salt_env} is not set; expected the secret salt for email pseudonyms"
        )
    return salt


def _config_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: consume, print the counts as JSON. The wall clock is read here, and only here."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.extract.kafka", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--bootstrap-servers", required=True, help="host:port[,host:port...]")
    parser.add_argument("--topic", action="append", required=True, help="topic to consume (repeatable)")
    parser.add_argument(
        "--group-id", required=True, help="consumer group; its committed offsets are the progress"
    )
    parser.add_argument("--source", default="events", help="landing source name (default: events)")
    parser.add_argument("--max-messages", type=int, default=None, help="stop after this many messages")
    parser.add_argument("--idle-timeout", type=float, default=10.0, help="stop after this many idle seconds")
    parser.add_argument("--batch-messages", type=int, default=10_000, help="flush after this many messages")
    parser.add_argument("--batch-seconds", type=float, default=60.0, help="flush after this many seconds")
    parser.add_argument(
        "--config", type=_config_pair, action="append", default=[], help="librdkafka key=value"
    )
    parser.add_argument(
        "--arrived-at", type=parse_as_of, default=None, help="fixed arrival time (replays, tests)"
    )
    parser.add_argument("--partition-by", choices=PARTITION_BY, default="timestamp", help="hour files by")
    args = parser.parse_args(argv)
    try:
        salt = email_salt()
    except ValueError as e:
        parser.error(str(e))
    crash = os.environ.get(CRASH_ENV)
    fixed = args.arrived_at

    def clock() -> dt.datetime:
        return fixed or dt.datetime.now(dt.UTC)

    consumer = EventConsumer(
        bootstrap_servers=args.bootstrap_servers,
        topics=args.topic,
        group_id=args.group_id,
        clock=clock,
        email_salt=salt,
        partition_by=args.partition_by,
        source=args.source,
        batch_messages=args.batch_messages,
        batch_seconds=args.batch_seconds,
        config=dict(args.config),
        crash_after_writes=int(crash) if crash else None,
    )
    with consumer:
        counts = consumer.consume(max_messages=args.max_messages, idle_timeout_s=args.idle_timeout)
    print(json.dumps(counts.summary(), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
