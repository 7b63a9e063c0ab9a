"""The Kafka event consumer against a real Kafka-protocol broker, including a crash between write and commit.

Landed rows follow the source contract (``helpers.storage.contracts.EVENTS_SCHEMA``, partitioned by
received date); messages in another format land raw for the schema contract; only what cannot be
decoded is quarantined here.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import uuid

import pandas as pd
import pytest

from helpers.storage import landing
from helpers.storage.contracts import EVENTS_SCHEMA
from helpers.storage.extract.kafka import (
    EventError,
    Message,
    email_sha256,
    event_row,
    events_table,
    next_offsets,
    parse_event,
    partition_time,
)
from helpers.storage.quarantine import read_quarantine

N_EVENTS = 2000
HOURS = 6
BATCH = 500
CRASH_AFTER = 9  # durable files: the first flush writes one per received hour (6), so the crash hits flush 2
BASE = dt.datetime(2026, 11, 1, 10, tzinfo=dt.UTC)
SALT = "test-salt"
UNDECODABLE = b"{not json"
BROKEN_V1 = [
    {"type": "track", "userId": "u1", "event": "x"},  # no messageId
    {"messageId": "m", "type": "page", "userId": "u", "timestamp": "yesterday", "context": {"groupId": "A1"}},
]
V2 = [
    {
        "schema_version": "2",
        "message_id": f"v2-{k}",
        "type": "track",
        "event_name": "Report Viewed",
        "user_id": "A1-u0001",
        "account": {"id": "A1"},
        "timestamp": int((BASE + dt.timedelta(minutes=k)).timestamp() * 1000),
        "sent_at": int((BASE + dt.timedelta(minutes=k)).timestamp() * 1000),
        "context": {"device": {"type": "web"}, "ip": "203.0.113.9"},
        "traits": {"email": "V2.User@Example.com"},
    }
    for k in range(3)
]


def ms(at: dt.datetime) -> int:
    return int(at.timestamp() * 1000)


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
            "groupId": f"A{i % 7}",
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


def sent_messages() -> list[tuple[bytes, bytes, int]]:
    """(key, value, broker timestamp ms) in send order: events, client retries, other formats, junk."""
    out = []
    for i in range(N_EVENTS):
        event = segment_event(i)
        value = json.dumps(event).encode()
        copies = 3 if i % 100 == 0 else 2 if i % 25 == 0 else 1
        at = ms(
            BASE + dt.timedelta(hours=i % HOURS, seconds=i + 2)
        )  # the broker's time: Segment's receivedAt
        out += [(event["userId"].encode(), value, at)] * copies
        if i in (300, 900, 1700):
            k = (i // 300) % 3
            odd = [UNDECODABLE, *(json.dumps(b).encode() for b in BROKEN_V1)][k]
            out.append((b"odd", odd, at))
        if i in (100, 1100, 1900):
            v2 = V2[(100, 1100, 1900).index(i)]
            out.append((b"v2", json.dumps(v2).encode(), at))
    return out


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes, int]]) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(timeout=15)
    failures = []
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for key, value, at in messages:
        producer.produce(
            topic, value, key, timestamp=at, on_delivery=lambda err, _m: err and failures.append(err)
        )
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
        "helpers.storage.extract.kafka",
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


def logged_offsets(stderr: str, topic: str) -> dict[str, list[tuple[int, int, int]]]:
    """file -> [(partition, first offset, last offset)] from the consumer's provenance log lines."""
    out: dict[str, list[tuple[int, int, int]]] = {}
    for line in stderr.splitlines():
        m = re.search(r"kafka: (\S+) <- (.*)$", line)
        if m:
            out[m.group(1)] = [
                (int(p), int(a), int(b))
                for p, a, b in re.findall(re.escape(topic) + r"/(\d+)@(\d+)-(\d+)", m.group(2))
            ]
    return out


@pytest.mark.integration
def test_crash_between_write_and_commit_replays_and_loses_nothing(kafka_broker, home, duckdb_engine):
    topic, group = f"events-{uuid.uuid4().hex[:8]}", "workbook-events-test"
    sent = sent_messages()
    produced_ids = {f"msg-{i:05d}" for i in range(N_EVENTS)}
    produce(kafka_broker, topic, sent)

    crashed = run_consumer(kafka_broker, topic, group, crash_after=CRASH_AFTER)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    durable = landing.deliveries("events")
    assert len(durable) == CRASH_AFTER  # nine durable files ...
    first_commit = committed(kafka_broker, topic, group)
    assert sum(first_commit.values()) == BATCH  # ... but only the first batch committed
    uncommitted = durable[HOURS:]  # the crashed batch's files: written, never committed
    provenance = logged_offsets(crashed.stderr, topic)
    assert set(provenance) == {d.file for d in durable}  # every delivery's Kafka origin is logged
    for d in uncommitted:  # committed work is not in them: they come from after the commit
        assert all(lo >= first_commit[p] for p, lo, _hi in provenance[d.file])

    restarted = run_consumer(kafka_broker, topic, group)
    assert restarted.returncode == 0, restarted.stderr
    counts = json.loads(restarted.stdout)
    assert counts["received"] == len(sent) - BATCH  # resumed from the commit, replaying batch 2
    assert counts["received"] == counts["landed"] + counts["quarantined"]
    assert sum(committed(kafka_broker, topic, group).values()) == len(sent)

    landed = landing.read_source("events")
    assert list(landed.columns) == EVENTS_SCHEMA.names  # the generator's contract, nothing else
    text = landed[["traits", "_raw_json", "context"]].fillna("").to_string()
    assert "@" not in text and "203.0.113.9" not in text  # pseudonymised, IPs dropped (raw rows too)
    assert set(landed["messageId"].dropna()) == produced_ids  # every event landed at least once
    replayed_rows = sum(d.rows for d in uncommitted)
    assert len(landed) == len(sent) - 1 + replayed_rows  # all but the undecodable one, plus the replay
    parsed = landed[landed["_raw_json"].isna()]
    assert (parsed["schema_version"] == "1").all()
    assert parsed.drop_duplicates("messageId")["messageId"].size == N_EVENTS
    raw = landed[landed["_raw_json"].notna()].drop_duplicates("_raw_json")
    assert sorted(raw["schema_version"]) == ["1", "1", "2", "2", "2"]  # two broken v1, three v2: landed raw
    assert raw["messageId"].isna().all() and raw["receivedAt"].notna().all()

    for d in landing.deliveries("events"):  # one file per received hour, in its received date
        frame = pd.read_parquet(landing.source_dir("events") / d.file, columns=["receivedAt"])
        assert frame["receivedAt"].dt.hour.nunique() == 1
        assert (frame["receivedAt"].dt.date.astype(str) == d.partition).all()

    quarantined = read_quarantine(home / "data" / "quarantine" / "events" / f"{topic}.jsonl")
    assert len(quarantined) == 1  # only the undecodable message; replays do not duplicate the line
    (q,) = quarantined
    assert q["reason"].startswith("not valid JSON") and q["topic"] == topic and q["offset"] is not None

    # downstream, the schema contract (v2 declared) accepts v1 and v2 and quarantines the broken v1 messages
    from helpers.engagement import event_contract
    from helpers.engagement.transforms import conformed

    frame = conformed(
        duckdb_engine,
        duckdb_engine.read_parquet(
            [str(landing.source_dir("events") / d.file) for d in landing.deliveries("events")]
        ),
        event_contract.BUILT_IN.with_version(event_contract.V2),
    )
    out = duckdb_engine.to_pandas(frame, ["received_at", "message_id"])
    reasons = out[out["reason"].notna()].drop_duplicates("raw_text")["reason"].tolist()
    assert sorted(reasons) == ["missing messageId", "unparseable timestamp"]
    v2 = out[(out["schema_version"] == "2") & out["reason"].isna()]
    assert set(v2["message_id"]) == {"v2-0", "v2-1", "v2-2"} and set(v2["account_id"]) == {"A1"}


@pytest.mark.unit
def test_parse_event_lands_segment_fields_in_the_generator_schema():
    event = segment_event(7)
    row = parse_event(Message("t", 2, 41, json.dumps(event).encode(), 1_700_000_000_000), email_salt=SALT)
    assert list(row) == EVENTS_SCHEMA.names
    assert (row["messageId"], row["type"], row["event"], row["schema_version"]) == (
        "msg-00007",
        "page",
        None,
        "1",
    )
    assert row["timestamp"] == BASE + dt.timedelta(hours=1, seconds=7) and row["_raw_json"] is None
    assert json.loads(row["context"]) == {k: v for k, v in event["context"].items() if k != "ip"}
    assert events_table([row]).schema == EVENTS_SCHEMA


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
def test_unusable_v1_events_are_landed_raw_not_quarantined(change, field):
    event = {**segment_event(3), **change}
    with pytest.raises(EventError) as err:
        event_row(event)
    assert err.value.field == field
    message = Message("t", 0, 0, json.dumps(event).encode(), ms(BASE))
    row = parse_event(message, email_salt=SALT)
    assert row["schema_version"] == "1" and row["messageId"] is None
    assert json.loads(row["_raw_json"])["type"] == event["type"]
    assert row["receivedAt"] == BASE + dt.timedelta(hours=3, seconds=5)  # its own receivedAt


@pytest.mark.unit
def test_a_newer_schema_version_lands_raw_with_the_broker_time():
    message = Message("t", 1, 5, json.dumps(V2[1]).encode(), ms(BASE + dt.timedelta(minutes=30)))
    row = parse_event(message, email_salt=SALT)
    assert row["schema_version"] == "2" and row["receivedAt"] == BASE + dt.timedelta(minutes=30)
    raw = json.loads(row["_raw_json"])
    assert raw["message_id"] == "v2-1" and "ip" not in raw["context"]
    assert raw["traits"] == {"email_sha256": email_sha256("v2.user@example.com", SALT)}
    fallback = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)  # no broker time: the arrival clock
    assert (
        parse_event(Message("t", 1, 6, message.value), email_salt=SALT, fallback=fallback)["receivedAt"]
        == fallback
    )


@pytest.mark.unit
@pytest.mark.parametrize("value", [None, b"\xff\xfe", UNDECODABLE, b"[1, 2]"])
def test_only_undecodable_messages_are_errors(value):
    with pytest.raises(EventError):
        parse_event(Message("t", 0, 0, value), email_salt=SALT)


@pytest.mark.unit
def test_next_offsets_is_one_past_the_highest_per_partition():
    messages = [Message("t", 0, 5, b""), Message("t", 0, 3, b""), Message("t", 1, 0, b"")]
    assert next_offsets(messages) == {("t", 0): 6, ("t", 1): 1}


@pytest.mark.unit
def test_emails_are_pseudonymised_and_ips_dropped_before_landing():
    event = {
        **segment_event(5),
        "context": {"ip": "203.0.113.9", "traits": {"email": "B@x.io"}, "groupId": "A1"},
    }
    row = parse_event(Message("t", 0, 9, json.dumps(event).encode()), email_salt=SALT)
    traits = json.loads(row["traits"])
    assert "email" not in traits and traits["email_sha256"] == email_sha256("person.5@example.com", SALT)
    assert json.loads(row["context"]) == {
        "traits": {"email_sha256": email_sha256("b@x.io", SALT)},
        "groupId": "A1",
    }
    assert "@" not in json.dumps(row, default=str)
    assert email_sha256("b@x.io", SALT) != email_sha256("b@x.io", "another salt")


@pytest.mark.unit
def test_rows_are_filed_by_received_time_by_default():
    event = {**segment_event(1), "receivedAt": "2026-11-02T00:30:00Z"}  # event at 11:00 the day before
    row = parse_event(Message("t", 0, 1, json.dumps(event).encode()), email_salt=SALT)
    assert partition_time(row) == dt.datetime(2026, 11, 2, 0, 30, tzinfo=dt.UTC)
    assert partition_time(row, "timestamp") == BASE + dt.timedelta(hours=1, seconds=1)
    del event["receivedAt"]  # a v1 event without receivedAt cannot be filed by it: landed raw
    raw = parse_event(Message("t", 0, 1, json.dumps(event).encode(), ms(BASE)), email_salt=SALT)
    assert raw["_raw_json"] is not None and partition_time(raw, "timestamp") == BASE
