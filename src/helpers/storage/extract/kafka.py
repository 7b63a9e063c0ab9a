"""Frontend events from Kafka into the landing zone, at least once, in the ``events`` source contract.

Messages are JSON objects in the Segment spec shape (``messageId``, ``type``, ``userId``,
``anonymousId``, ``timestamp``, ``sentAt``, ``receivedAt``, ``context``, ``properties``, ...).
Landed rows have exactly the columns of ``helpers.storage.contracts.EVENTS_SCHEMA`` (the demo
generator lands the same shape), partitioned by **received date** by default:

- a message that is a valid Segment v1 event lands in columns (``context``/``properties``/
  ``traits`` as JSON text with sorted keys), ``schema_version`` = its declared version or ``"1"``,
  ``_raw_json`` NULL; top-level keys outside the schema (``integrations``, ``channel`` ...) are
  not landed;
- any other JSON object (a newer or unknown ``schema_version``, or a v1 message that fails the
  checks above) lands **raw**: only ``receivedAt``, ``schema_version`` (declared, else ``"1"``)
  and ``_raw_json`` (the pseudonymised object) are set; the engagement pipeline's schema contract
  (``helpers.engagement.event_contract``) maps it or quarantines it with a reason, and a new format becomes
  usable by declaring a contract version, with nothing lost in between;
- only a message that cannot be decoded at all (empty, not UTF-8, not JSON, not a JSON object)
  is quarantined here, to ``data/quarantine/<source>/<topic>.jsonl`` with topic, partition,
  offset and the reason; it counts as consumed, so its offset is committed.

``receivedAt`` of a raw row is the message's own ``receivedAt`` when it is an ISO timestamp, else
the broker record's timestamp, else the arrival clock. Kafka provenance (topic, partition,
offsets) is not a landed column (the contract has none): it is in the quarantine
records and in the log line of every delivery.

The delivery guarantee comes from the order of three steps, per batch:

1. buffer the consumed messages; on flush (``batch_messages`` reached, ``batch_seconds``
   elapsed, end of input, or a rebalance taking partitions away) decode the whole batch
   (valid v1 messages through the columnar fast path of ``helpers.storage.extract.kafka_batch``,
   in a decode worker process (``kafka_decode``) by default, everything else one at a time as
   described above, with identical results: :func:`decode_batch`, :func:`finish_batch`) and
   group it by (date, hour) of ``receivedAt`` (``partition_by=
   "timestamp"`` groups parsed rows by event time instead; raw rows always by ``receivedAt``);
2. write the batch's quarantine lines, then one landing delivery per (date, hour) through
   :func:`helpers.storage.extract.kafka_landing.write_deliveries` (what
   :func:`helpers.storage.landing.write_delivery` does per file, with the fsyncs shared by the
   batch), which returns only once every file is fsynced and renamed into place and every
   manifest line is fsynced;
3. only then commit the batch's offsets, synchronously (``enable.auto.commit=false``).

The stages overlap, in consumed order: while the loop consumes the next batch, decode worker
processes (two by default, taking batches in turn; they hold no GIL of this process, so they use
the other core) decode the batches before it, and one writer thread runs steps 2 and 3 for the
oldest decoded batch (the fsyncs wait on the disk, not the CPU). A batch
is handed to the writer only once the previous one is committed, a rebalance or the end of a run
waits for every stage, and a failed decode or write stops the consumer before any later commit
(a batch still in the decode worker is dropped, never committed, so it is replayed).

A crash anywhere before step 3 leaves the offsets where they were, so the next consumer replays
the batch: events can land twice, never zero times. Duplicates (replays, and client retries that
reuse a ``messageId``) are removed downstream by ``messageId``; the consumer does not dedupe.

Personal data is pseudonymised before anything is written: a ``traits.email`` (top level or in
``context``) lands as ``email_sha256`` = sha256 hex of ``salt + email.strip().lower()``, with the
secret salt from ``WORKBOOK_EVENTS_EMAIL_SALT``, and ``context.ip`` is dropped (in raw rows too).

Batch bounds and the idle timeout use the monotonic clock (they pace the loop, they are not
business time); the arrival time recorded with each delivery comes from the ``clock`` passed in.
``python -m helpers.storage.extract.kafka --help`` runs the consumer from the command line; the
environment variable ``WORKBOOK_KAFKA_CRASH_AFTER_WRITE=n`` makes that process SIGKILL itself
right after its n-th durable write and before the commit: a fault-injection seam for tests and
drills.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from helpers.core.timeutil import parse_as_of
from helpers.storage import landing
from helpers.storage.extract.base import ExtractResult, Kind, quarantine_root
from helpers.storage.extract.kafka_batch import Received, positions, split_hours
from helpers.storage.extract.kafka_decode import DecodeWorker
from helpers.storage.extract.kafka_events import (  # noqa: F401 - the per-message API, re-exported
    TIME_NAMES,
    Decoded,
    EventError,
    Message,
    declared_version,
    decode_batch,
    decode_event,
    email_sha256,
    event_row,
    events_table,
    finish_batch,
    landing_row,
    next_offsets,
    parse_event,
    partition_time,
    pseudonymised,
    quarantined_message,
    raw_row,
)
from helpers.storage.extract.kafka_landing import write_deliveries
from helpers.storage.quarantine import write_quarantine

log = logging.getLogger(__name__)

CRASH_ENV = "WORKBOOK_KAFKA_CRASH_AFTER_WRITE"
SALT_ENV = "WORKBOOK_EVENTS_EMAIL_SALT"  # the secret salt of email pseudonyms
BROKEN = "a flush failed part-way: close this consumer and start a new one (the batch will be replayed)"
PartitionBy = Literal["timestamp", "receivedAt"]
PARTITION_BY: tuple[PartitionBy, ...] = ("timestamp", "receivedAt")
DEFAULT_CONFIG: Mapping[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
}


@dataclass
class ConsumeCounts:
    """What a consumer has done so far. ``received == landed + quarantined`` once flushed;
    ``raw`` of the landed rows were landed unparsed (for the schema contract to map or quarantine)."""

    received: int = 0
    landed: int = 0
    quarantined: int = 0
    raw: int = 0
    files_written: int = 0
    commits: int = 0
    deliveries: list[landing.Delivery] = field(default_factory=list)
    quarantine_files: list[Path] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Counts only, JSON-ready."""
        counts = {
            k: getattr(self, k)
            for k in ("received", "landed", "quarantined", "raw", "files_written", "commits")
        }
        return {**counts, "quarantine_files": sorted({str(p) for p in self.quarantine_files})}


@dataclass
class _Batch:
    received: Received = field(default_factory=Received)
    started: float | None = None  # monotonic time of the first message


class EventConsumer:
    """A bounded or long-running consumer landing events per received hour, committing after the write.

    ``clock`` gives the arrival time recorded for each delivery (aware UTC). ``config`` adds to or
    overrides librdkafka settings (e.g. ``session.timeout.ms``); auto-commit stays off whatever it
    says. ``on_progress`` is called with the counts after every flush. ``decode_processes`` worker
    processes (``kafka_decode``) run the batches' fast path, in turn, while the loop consumes the
    next batch; with 0 the loop decodes each batch itself.
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topics: Sequence[str],
        group_id: str,
        clock: Callable[[], dt.datetime],
        email_salt: str,
        partition_by: PartitionBy = "receivedAt",
        source: str = "events",
        root: Path | None = None,
        batch_messages: int = 10_000,
        batch_seconds: float = 60.0,
        config: Mapping[str, Any] | None = None,
        on_progress: Callable[[ConsumeCounts], None] | None = None,
        crash_after_writes: int | None = None,
        decode_processes: int = 2,
    ) -> None:
        if batch_messages < 1 or batch_seconds <= 0:
            raise ValueError("batch_messages must be >= 1 and batch_seconds > 0")
        if decode_processes < 0:
            raise ValueError(f"decode_processes must be >= 0, got {decode_processes}")
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
        self.fetch_messages = 500  # records asked of each Consumer.consume call
        self.first_message_at: float | None = None  # monotonic time the first message arrived
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-landing")
        self._pending: Future[None] | None = None  # the batch being written and committed
        self._decoders = [DecodeWorker() for _ in range(decode_processes)]
        self._decoded = 0  # batches sent to the decoders so far: batch k goes to decoder k % n
        self._decoding: deque[tuple[Received, bool, DecodeWorker]] = deque()  # oldest first: commit?

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
            for decoder in self._decoders:
                decoder.start()  # their imports overlap the group join
        received = 0
        started = last_message = time.monotonic()
        while max_messages is None or received < max_messages:
            # Never fetch past the batch bound: a batch is exactly ``batch_messages`` when full.
            want = min(self.fetch_messages, self.batch_messages - len(self._batch.received))
            if max_messages is not None:
                want = min(want, max_messages - received)
            # A synchronous commit on the writer can wait while this call waits for messages: poll
            # briefly while a batch is in flight, then land it at once when nothing came.
            busy = self._pending is not None or bool(self._decoding)
            records = self._consumer.consume(num_messages=want, timeout=0.05 if busy else 0.5)
            now = time.monotonic()
            good = [record for record in records if record.error() is None]
            if len(good) != len(records):
                for record in records:
                    if record.error() is not None:
                        self._handle_error(record.error())
            if good:
                self._add(good, now)
                received += len(good)
                last_message = now
            elif busy:  # nothing arrived: land and commit now rather than after the idle timeout
                self._catch_up()
            if self._batch_full(now):
                self.flush(wait=False)
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
        try:
            self.flush()
        finally:
            self._stop_decoder()
        self._writer.shutdown()
        self._consumer.close()

    def __enter__(self) -> EventConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:  # never commit after a failure: drop the batch, it will be replayed
            self._batch = _Batch()
            self._broken = True
            self._stop_decoder()  # batches in the decode workers are dropped too: never committed
            if self._pending is not None:  # a batch handed over before the failure: let it finish
                self._pending.exception()
            self._writer.shutdown()
            self._consumer.close()

    # -- batching ---------------------------------------------------------------------------
    def _add(self, records: Sequence[Any], now: float) -> None:
        batch = self._batch
        if batch.started is None:
            batch.started = now
        batch.received.extend_records(records)
        self.counts.received += len(records)
        if self.first_message_at is None:
            self.first_message_at = now

    def _batch_full(self, now: float) -> bool:
        batch = self._batch
        return bool(batch.received) and (
            len(batch.received) >= self.batch_messages
            or (batch.started is not None and now - batch.started >= self.batch_seconds)
        )

    def flush(self, *, commit: bool = True, wait: bool = True) -> None:
        """Write the buffered batch durably, then (unless ``commit=False``) commit its offsets.

        The batch goes to the next decode worker (or is decoded here, without any); once decoded
        (the oldest first, when every worker is busy or when waiting) its writes and commit run
        on the writer thread, one batch at a time and in consumed order, after the previous
        batch's commit. ``wait=False`` (the consume loop) returns as soon as the batch is handed
        over, so the next batch is consumed while this one is decoded and an older one is written
        and fsynced; ``wait=True`` returns once every batch so far is committed.
        """
        if self._broken:
            raise RuntimeError(BROKEN)
        batch, self._batch = self._batch, _Batch()
        try:
            if batch.received and not self._decoders:
                decoded = decode_batch(
                    batch.received, source=self.source, email_salt=self.email_salt, clock=self.clock
                )
                self._hand_to_writer(batch.received, decoded, commit)
            elif batch.received:
                if len(self._decoding) == len(self._decoders):  # every decoder busy: the oldest first
                    self._take_decoded(commit)
                decoder = self._decoders[self._decoded % len(self._decoders)]
                decoder.submit(batch.received.values, self.email_salt)
                self._decoding.append((batch.received, commit, decoder))
                self._decoded += 1
            while wait and self._decoding:
                self._take_decoded(commit)
        except BaseException:
            self._broken = True  # a batch's offsets must never be skipped by a later commit
            raise
        if wait:
            self._settle()

    def _catch_up(self) -> None:
        """Land and commit every batch handed over so far (decoded or being decoded)."""
        try:
            while self._decoding:
                self._take_decoded(True)  # each batch keeps its own commit flag
        except BaseException:
            self._broken = True
            raise
        self._settle()

    def _take_decoded(self, commit: bool) -> None:
        """Finish the oldest batch in a decode worker (its per-message path); hand it to the writer."""
        received, wanted, decoder = self._decoding.popleft()
        fast, slow = decoder.result()
        decoded = finish_batch(
            received, fast, slow, source=self.source, email_salt=self.email_salt, clock=self.clock
        )
        self._hand_to_writer(received, decoded, commit and wanted)

    def _hand_to_writer(self, received: Received, decoded: Decoded, commit: bool) -> None:
        # What needs no disk is prepared here, off the writer's path (the writes and commits are
        # what paces the pipeline): the (date, hour) tables and the offsets to commit.
        hours = split_hours(decoded.landing_table(), self.partition_by)
        upto = received.next_offsets() if commit else None
        self._settle()  # one batch on the writer at a time, in order
        self._pending = self._writer.submit(self._land, received, decoded, hours, upto)

    def _stop_decoder(self) -> None:
        self._decoding.clear()
        for decoder in self._decoders:
            decoder.close()

    def _settle(self) -> None:
        """Wait for the batch on the writer thread; its failure breaks this consumer and is raised."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            pending.result()
        except BaseException:
            # A later commit would skip this batch's offsets: this consumer must not commit again.
            self._broken = True
            raise
        if self.on_progress is not None:
            self.on_progress(self.counts)

    def _land(
        self,
        received: Received,
        decoded: Decoded,
        hours: list[tuple[dt.date, int, Any, Any]],
        upto: Mapping[tuple[str, int], int] | None,
    ) -> None:
        """(Writer thread) quarantine lines, one durable delivery per (date, hour) of ``hours``
        (``kafka_batch.split_hours``), then the commit of the offsets ``upto`` (None: no commit)."""
        self.counts.raw += decoded.raw
        quarantined = decoded.quarantined
        for topic in sorted({q.topic for q in quarantined if q.topic}):
            rows = [q for q in quarantined if q.topic == topic]
            path = write_quarantine(self.source, rows, name=topic, root=quarantine_root(self.root))
            self.counts.quarantine_files.append(path)
        self.counts.quarantined += len(quarantined)
        if self.crash_after_writes is not None:  # fault injection: only the files up to the n-th
            hours = hours[: max(self.crash_after_writes - self.counts.files_written, 0)]
        written = write_deliveries(
            self.source,
            [(day, table) for day, _h, table, _i in hours],
            arrived_at=self.clock(),
            root=self.root,
        )
        logged = log.isEnabledFor(logging.INFO)
        for delivery, (_day, _hour, table, index) in zip(written, hours, strict=True):
            if logged:  # the provenance costs a pass over the rows: only when it is logged
                log.info("kafka: %s <- %s", delivery.file, positions(received, index))
            self.counts.deliveries.append(delivery)
            self.counts.files_written += 1
            self.counts.landed += table.num_rows
            if self.crash_after_writes is not None and self.counts.files_written >= self.crash_after_writes:
                os.kill(os.getpid(), signal.SIGKILL)  # fault injection: durable write, no commit
        if upto is not None:
            self._commit(upto)

    def _commit(self, upto: Mapping[tuple[str, int], int]) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(upto.items())]
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
    partition_by: PartitionBy = "receivedAt"
    salt_env: str = SALT_ENV  # names the variable holding the email salt (a secret: never a value here)
    decode_processes: int = 2  # worker processes decoding batches beside the loop (0: the loop does)

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
            decode_processes=self.decode_processes,
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
        prog="python -m helpers.storage.extract.kafka", description=__doc__.split("\n")[0]
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
    parser.add_argument(
        "--partition-by",
        choices=PARTITION_BY,
        default="receivedAt",
        help="date/hour files by (default receivedAt)",
    )
    parser.add_argument(
        "--decode-processes",
        type=int,
        default=2,
        help="worker processes decoding batches beside the loop (default 2; 0: the loop decodes them)",
    )
    args = parser.parse_args(argv)
    if args.decode_processes < 0:
        parser.error(f"--decode-processes: expected 0 or more, got {args.decode_processes}")
    # the log is where Kafka provenance goes (topic/partition/offsets of each delivery): stderr
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
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
        decode_processes=args.decode_processes,
    )
    with consumer:
        counts = consumer.consume(max_messages=args.max_messages, idle_timeout_s=args.idle_timeout)
    print(json.dumps(counts.summary(), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
