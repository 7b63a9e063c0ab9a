"""The Kafka event consumer against a real Kafka-protocol broker, including a crash between write and commit."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter

import pandas as pd
import pytest

from helpers import landing
from helpers.extract.kafka import (
    EventError,
    Message,
    email_sha256,
    events_table,
    next_offsets,
    parse_event,
)
from helpers.quarantine import read_quarantine

N_EVENTS = 2000
HOURS = 6
BATCH = 500
CRASH_AFTER = 9  # durable files: the first flush writes one per hour (6), so the crash hits flush 2
BASE = dt.datetime(2026, 11, 1, 10, tzinfo=dt.UTC)
SALT = "test-salt"
MALFORMED = [
    b"{not json",
    json.dumps({"type": "track", "userId": "u1", "event": "x"}).encode(),  # no messageId
    json.dumps({"messageId": "m", "type": "page", "userId": "u", "timestamp": "yesterday"}).encode(),
]


def segment_event(i: int) -> dict:
    """Event ``i``: hours interleave (i % 6) so that every batch spans all six hours."""
    at = BASE + dt.timedelta(hours=i % HOURS, seconds=i)
    kind = ("track", "page", "identify")[i % 3]
    event = {
        "messageId": f"msg-{i:05d}",
        "type": kind,
        "userId": f"user-{i % 97}",
        "anonymousId": str(uuid.UUID(int=i)),
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "sentAt": (at + dt.timedelta(seconds=1)).isoformat(),
        "receivedAt": (at + dt.timedelta(seconds=2)).isoformat(),
        "context": {
            "app": {"name": "web", "version": "4.2.0"},
            "device": {"type": "desktop"},
            "ip": "203.0.113.9",
        },
        "properties": {"plan": "team", "seats": i % 10},
        "integrations": {"All": True},
    }
    if kind == "track":
        event["event"] = "Report Viewed"
    if kind == "identify":
        event["traits"] = {"email": f"Person.{i}@Example.com ", "plan": "team"}
    return event


def sent_messages() -> list[tuple[bytes, bytes]]:
    """(key, value) in send order: every event, client retries (some ids 2-3 times), malformed ones."""
    out = []
    for i in range(N_EVENTS):
        event = segment_event(i)
        value = json.dumps(event).encode()
        copies = 3 if i % 100 == 0 else 2 if i % 25 == 0 else 1
        out += [(event["userId"].encode(), value)] * copies
        if i in (300, 900, 1700):
            out.append((b"broken", MALFORMED[(i // 300) % 3]))
    return out


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(timeout=15)
    failures = []
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for key, value in messages:
        producer.produce(topic, value, key, on_delivery=lambda err, _m: err and failures.append(err))
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not failures


def committed(bootstrap: str, topic: str, group: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=15)
    finally:
        consumer.close()
    return {tp.partition: max(tp.offset, 0) for tp in offsets}


def run_consumer(bootstrap: str, topic: str, group: str, crash_after: int | None = None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WORKBOOK_EVENTS_EMAIL_SALT": SALT}
    env.pop("WORKBOOK_KAFKA_CRASH_AFTER_WRITE", None)
    if crash_after:
        env["WORKBOOK_KAFKA_CRASH_AFTER_WRITE"] = str(crash_after)
    args = [
        sys.executable,
        "-m",
        "helpers.extract.kafka",
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        topic,
        "--group-id",
        group,
        "--batch-messages",
        str(BATCH),
        "--idle-timeout",
        "4",
        "--config",
        "session.timeout.ms=6000",
        "--arrived-at",
        "2026-11-01T18:00:00Z",
    ]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.integration
def test_crash_between_write_and_commit_replays_and_loses_nothing(kafka_broker, home):
    topic, group = f"events-{uuid.uuid4().hex[:8]}", "workbook-events-test"
    sent = sent_messages()
    produced_ids = {f"msg-{i:05d}" for i in range(N_EVENTS)}
    produce(kafka_broker, topic, sent)

    crashed = run_consumer(kafka_broker, topic, group, crash_after=CRASH_AFTER)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert len(landing.deliveries("events")) == CRASH_AFTER  # nine durable files ...
    first_commit = committed(kafka_broker, topic, group)
    assert sum(first_commit.values()) == BATCH  # ... but only the first batch committed

    restarted = run_consumer(kafka_broker, topic, group)
    assert restarted.returncode == 0, restarted.stderr
    counts = json.loads(restarted.stdout)
    assert counts["received"] == len(sent) - BATCH  # resumed from the commit, replaying batch 2
    assert counts["received"] == counts["landed"] + counts["quarantined"]
    assert sum(committed(kafka_broker, topic, group).values()) == len(sent)

    landed = landing.read_source("events")
    assert landed["traits"].notna().any() and not landed["traits"].str.contains("@").any()  # pseudonymised
    assert set(landed["messageId"]) == produced_ids  # every event landed at least once, none lost
    by_offset = Counter(zip(landed["_kafka_partition"], landed["_kafka_offset"], strict=True))
    replayed = {key for key, n in by_offset.items() if n > 1}
    assert replayed and max(by_offset.values()) == 2  # the replayed batch shows up as duplicates
    assert all(offset >= first_commit[p] for p, offset in replayed)  # committed work is not replayed
    assert len(landed) == len(sent) - len(MALFORMED) + len(replayed)
    deduped = landed.drop_duplicates("messageId")
    assert len(deduped) == N_EVENTS and set(deduped["messageId"]) == produced_ids
    retried = Counter(landed.drop_duplicates(["_kafka_partition", "_kafka_offset"])["messageId"])
    assert retried["msg-00000"] == 3 and retried["msg-00025"] == 2 and retried["msg-00001"] == 1

    for d in landing.deliveries("events"):  # one file per event hour
        frame = pd.read_parquet(landing.source_dir("events") / d.file, columns=["timestamp", "hour"])
        assert frame["hour"].nunique() == 1 and (frame["timestamp"].dt.hour == frame["hour"]).all()
        assert d.partition == "2026-11-01"

    quarantined = read_quarantine(home / "data" / "quarantine" / "events" / f"{topic}.jsonl")
    assert len(quarantined) == len(MALFORMED)  # replays do not duplicate quarantine lines
    assert sorted(q["field"] or "" for q in quarantined) == ["", "messageId", "timestamp"]
    assert any(q["reason"].startswith("not valid JSON") for q in quarantined)
    positions = set(by_offset) | {(q["partition"], q["offset"]) for q in quarantined}
    assert all(q["topic"] == topic for q in quarantined)
    for partition in range(3):  # every offset of every partition landed or quarantined: no gaps
        offsets = sorted(o for p, o in positions if p == partition)
        assert offsets == list(range(len(offsets)))
    assert len(positions) == len(sent)


@pytest.mark.unit
def test_parse_event_keeps_segment_fields_and_kafka_position():
    event = segment_event(7)
    row = parse_event(Message("t", 2, 41, json.dumps(event).encode(), 1_700_000_000_000), email_salt=SALT)
    assert (row["messageId"], row["type"], row["event"]) == ("msg-00007", "page", None)
    assert row["timestamp"] == BASE + dt.timedelta(hours=1, seconds=7) and row["hour"] == 11
    assert json.loads(row["context"]) == {k: v for k, v in event["context"].items() if k != "ip"}
    assert json.loads(row["extra"]) == {"integrations": {"All": True}}
    assert (row["_kafka_partition"], row["_kafka_offset"]) == (2, 41)
    assert events_table([row]).num_rows == 1


@pytest.mark.unit
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"messageId": None}, "messageId"),
        ({"type": "click"}, "type"),
        ({"timestamp": "2026-13-01T00:00:00Z"}, "timestamp"),
        ({"userId": 42}, "userId"),  # a type change, as from an unannounced schema change
        ({"userId": None, "anonymousId": None}, "userId"),
        ({"properties": [1, 2]}, "properties"),
    ],
)
def test_parse_event_rejects_what_cannot_be_used(change, field):
    event = {**segment_event(3), **change}
    with pytest.raises(EventError) as err:
        parse_event(Message("t", 0, 0, json.dumps(event).encode()), email_salt=SALT)
    assert err.value.field == field


@pytest.mark.unit
def test_next_offsets_is_one_past_the_highest_per_partition():
    messages = [Message("t", 0, 5, b""), Message("t", 0, 3, b""), Message("t", 1, 0, b"")]
    assert next_offsets(messages) == {("t", 0): 6, ("t", 1): 1}


@pytest.mark.unit
def test_emails_are_pseudonymised_and_ips_dropped_before_landing():
    event = {**segment_event(5), "context": {"ip": "203.0.113.9", "traits": {"email": "B@x.io"}}}
    row = parse_event(Message("t", 0, 9, json.dumps(event).encode()), email_salt=SALT)
    traits = json.loads(row["traits"])
    assert "email" not in traits and traits["email_sha256"] == email_sha256("person.5@example.com", SALT)
    assert json.loads(row["context"]) == {"traits": {"email_sha256": email_sha256("b@x.io", SALT)}}
    assert "@" not in json.dumps(row, default=str)
    assert email_sha256("b@x.io", SALT) != email_sha256("b@x.io", "another salt")


@pytest.mark.unit
def test_partition_by_received_at_uses_the_receive_hour():
    event = {**segment_event(1), "receivedAt": "2026-11-02T00:30:00Z"}  # event at 11:00 the day before
    row = parse_event(
        Message("t", 0, 1, json.dumps(event).encode()), email_salt=SALT, partition_by="receivedAt"
    )
    assert (row["receivedAt"].date().isoformat(), row["hour"]) == ("2026-11-02", 0)
    del event["receivedAt"]
    with pytest.raises(EventError, match="receivedAt: missing"):
        parse_event(
            Message("t", 0, 1, json.dumps(event).encode()), email_salt=SALT, partition_by="receivedAt"
        )
