"""The Kafka extract's batch path lands exactly what the per-message path lands, message for message.

``decode_batch`` + ``hourly_tables`` (orjson, inlined v1 checks, Arrow tables) against
``parse_event`` / ``events_table`` / ``partition_time`` (json, one message at a time): same rows,
same order, same (date, hour) files, same quarantine records and raw counts, for a batch that
mixes valid v1 events, client retries, messages landed raw and undecodable ones.
"""

from __future__ import annotations

import datetime as dt
import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from helpers.storage.contracts import EVENTS_SCHEMA
from helpers.storage.extract.kafka import (
    EventError,
    Message,
    decode_batch,
    events_table,
    parse_event,
    partition_time,
    quarantined_message,
)
from helpers.storage.extract.kafka_batch import Received, fast_row, hourly_tables, json_text, positions

pytestmark = pytest.mark.unit

SALT = "unit-salt"
BASE = dt.datetime(2026, 11, 1, 22, tzinfo=dt.UTC)
FALLBACK = dt.datetime(2026, 11, 3, 12, tzinfo=dt.UTC)


def v1(i: int) -> dict:
    at = BASE + dt.timedelta(minutes=7 * i, microseconds=i)
    event = {
        "messageId": f"m-{i:04d}",
        "type": ("track", "page", "identify", "screen")[i % 4],
        "userId": f"u{i % 5}" if i % 6 else None,
        "anonymousId": f"anon-{i}",
        "timestamp": at.isoformat() if i % 3 else at.isoformat().replace("+00:00", "Z"),
        "sentAt": (at + dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%f+01:00") if i % 5 else None,
        "receivedAt": (at + dt.timedelta(seconds=2)).replace(tzinfo=None).isoformat(),
        "context": {"ip": "203.0.113.9", "groupId": f"A{i % 3}", "locale": "fr-FR", "zé": 'ünï\n\t"q"'},
        "properties": {
            "b": 1.5e-7,
            "a": [1, 2.0, None, True],
            "n": -0.0,
            "big": 10**17,
            "x": {"z": 1, "y": 2},
        },
        "integrations": {"All": True},
    }
    if event["type"] == "track":
        event["event"] = "Report Viewed"
    if event["type"] == "identify":
        event["traits"] = {"email": f" Person.{i}@Example.com", "plan": "team"}
        event["context"]["traits"] = {"email": "C@x.io"}
    if i % 7 == 0:
        event["schema_version"] = 1  # an int 1 is v1 too
    return event


ODD = [
    None,  # empty
    b"\xff\xfe",  # not UTF-8
    b"{not json",
    b"[1, 2]",
    b'"text"',
    b"\xef\xbb\xbf" + json.dumps(v1(1)).encode(),  # a UTF-8 BOM: json accepts it, orjson does not
    json.dumps({**v1(2), "schema_version": "2", "message_id": "v2"}).encode(),  # another version: raw
    json.dumps({**v1(3), "messageId": ""}).encode(),  # broken v1: raw
    json.dumps({**v1(4), "timestamp": "yesterday"}).encode(),
    json.dumps({**v1(5), "receivedAt": None}).encode(),  # raw, filed by the broker time
    json.dumps({**v1(6), "userId": 42}).encode(),
    json.dumps({**v1(8), "properties": {"huge": 2**70}}).encode(),  # orjson would make it a float
    json.dumps({**v1(9), "properties": {"nan": float("nan")}}).encode(),  # json accepts NaN
    json.dumps({**v1(10), "type": "click"}).encode(),
    json.dumps({**v1(11), "type": "track", "event": ""}).encode(),
    json.dumps({**v1(12), "context": ["ip"]}).encode(),
    json.dumps({**v1(13), "sentAt": 17}).encode(),
    json.dumps({**v1(14), "schema_version": 1.0}).encode(),  # "1.0" is not "1": raw
]


def batch() -> Received:
    received = Received()
    values = []
    for i in range(120):
        value = json.dumps(v1(i), ensure_ascii=i % 2 == 0).encode()
        values += [value] * (2 if i % 10 == 0 else 1)  # client retries
        if i % 8 == 0:
            values.append(ODD[(i // 8) % len(ODD)])
    values += ODD[len(values) % len(ODD) :] + ODD
    for n, value in enumerate(values):
        received.topics.append("a" if n % 4 else "b")
        received.partitions.append(n % 3)
        received.offsets.append(1000 + n)
        received.values.append(value)
        received.timestamps_ms.append(
            int((BASE + dt.timedelta(minutes=n)).timestamp() * 1000) if n % 9 else None
        )
    return received


def rows() -> list:
    return decode_batch(batch(), source="events", email_salt=SALT, clock=lambda: FALLBACK).rows


def per_message(received: Received, partition_by: str):
    """What the consumer landed before batches: rows per (date, hour), quarantine records."""
    hours: dict = {}
    quarantined = []
    for i in range(len(received)):
        message = Message(*received.at(i))
        try:
            row = parse_event(message, email_salt=SALT, fallback=FALLBACK)
        except EventError as e:
            quarantined.append(quarantined_message("events", message, e))
            continue
        at = partition_time(row, partition_by)
        hours.setdefault((at.date(), at.hour), []).append(row)
    return {key: events_table(rows) for key, rows in sorted(hours.items())}, quarantined


def parquet_bytes(table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", coerce_timestamps="us", allow_truncated_timestamps=True)
    return sink.getvalue()


@pytest.mark.parametrize("partition_by", ["receivedAt", "timestamp"])
def test_a_mixed_batch_lands_exactly_what_the_per_message_path_landed(partition_by):
    received = batch()
    expected, expected_quarantine = per_message(received, partition_by)
    decoded = decode_batch(received, source="events", email_salt=SALT, clock=lambda: FALLBACK)
    got = hourly_tables(decoded.rows, partition_by)

    assert [(day, hour) for day, hour, _t, _i in got] == list(expected)
    assert len(expected) > 3  # the batch spans several hours and dates
    for (day, hour, table, _index), want in zip(got, expected.values(), strict=True):
        assert table.schema == EVENTS_SCHEMA
        assert table.to_pylist() == want.to_pylist(), (day, hour)
        assert parquet_bytes(table) == parquet_bytes(want)  # the landed bytes themselves
    assert decoded.quarantined == expected_quarantine
    assert len(decoded.quarantined) >= 5  # None, not UTF-8, not JSON, a list, a string
    raw = sum(t.column("_raw_json").null_count < t.num_rows for _d, _h, t, _i in got)
    assert raw and decoded.raw == sum(t.num_rows - t.column("_raw_json").null_count for *_x, t, _i in got)
    assert len(decoded.rows) + len(decoded.quarantined) == len(received)  # nothing dropped


def test_rows_keep_their_kafka_provenance_and_offsets_are_one_past_the_highest():
    received = batch()
    decoded = decode_batch(received, source="events", email_salt=SALT, clock=lambda: FALLBACK)
    sources = np.asarray(decoded.sources)
    for _day, _hour, table, index in hourly_tables(decoded.rows, "receivedAt"):
        ids = table.column("messageId").to_pylist()
        for row_id, message in zip(ids, sources[index].tolist(), strict=True):
            if row_id is not None:  # each row comes from the message that carried it
                assert json.loads(received.values[message].lstrip(b"\xef\xbb\xbf"))["messageId"] == row_id
        spans: dict = {}
        for m in sources[index].tolist():
            spans.setdefault((received.topics[m], received.partitions[m]), []).append(received.offsets[m])
        assert positions(received, sources[index]) == ", ".join(
            f"{t}/{p}@{min(o)}-{max(o)} ({len(o)})" for (t, p), o in sorted(spans.items())
        )
    assert received.next_offsets() == {
        (t, p): 1 + max(o for tt, pp, o in zip(received.topics, received.partitions, received.offsets, strict=True)
                        if (tt, pp) == (t, p))
        for t, p in set(zip(received.topics, received.partitions, strict=True))
    }  # fmt: skip


@pytest.mark.parametrize(
    "value",
    [{"b": [1, 2.5, 1e16, -0.0, 1e-7], "a": {"é": '\x00\u2028"\\/'}}, {}, [], "x", 3, None, {"z": None}],
)
def test_json_text_is_the_sorted_json_dumps_text(value):
    assert json_text(value) == (
        None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)
    )


def test_the_fast_path_pseudonymises_and_declines_what_it_cannot_decide():
    row = fast_row(json.dumps(v1(2)).encode(), SALT)
    assert row is not None and "@" not in repr(row) and "203.0.113.9" not in repr(row)
    for value in ODD:
        assert fast_row(value, SALT) is None  # the per-message path decides those


def test_write_deliveries_lands_what_write_delivery_lands_one_by_one(tmp_path):
    from helpers.storage import landing
    from helpers.storage.extract.kafka_landing import write_deliveries

    tables = [
        (dt.date(2026, 11, 1 + k % 2), t)
        for k, (*_x, t, _i) in enumerate(hourly_tables(rows(), "receivedAt"))
    ]
    at = dt.datetime(2026, 11, 3, 1, tzinfo=dt.UTC)
    one = [
        landing.write_delivery("events", day, t, arrived_at=at, root=tmp_path / "one") for day, t in tables
    ]
    both = write_deliveries("events", tables, arrived_at=at, root=tmp_path / "batch")
    assert both == one and len(both) > 3  # same files, numbers, rows, sha256, arrival, in order
    for name in ("one", "batch"):
        assert landing.deliveries("events", root=tmp_path / name) == one
    again = write_deliveries("events", tables[:2], arrived_at=at, root=tmp_path / "batch")
    assert [d.file for d in again] == [
        landing.write_delivery("events", day, t, arrived_at=at, root=tmp_path / "one").file
        for day, t in tables[:2]
    ]  # later deliveries take the next free numbers
    assert not list((tmp_path / "batch").rglob("*.tmp"))


class FakeRecord:
    def __init__(self, n: int, value: bytes | None) -> None:
        self.n, self._value = n, value

    def error(self):
        return None

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return self.n % 2

    def offset(self) -> int:
        return self.n // 2

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, int(BASE.timestamp() * 1000) + self.n)


class FakeKafka:
    def __init__(self, steps: list) -> None:
        self.steps = steps

    def commit(self, offsets, asynchronous: bool):
        assert asynchronous is False
        self.steps.append(("commit", {(tp.topic, tp.partition): tp.offset for tp in offsets}))
        return offsets

    def close(self) -> None:
        self.steps.append(("close",))


def consumer_with(monkeypatch, tmp_path, steps: list, fail_on: int | None = None):
    from helpers.storage.extract import kafka

    real = kafka.write_deliveries

    def recording(source, items, **kw):
        steps.append(("write", sum(t.num_rows for _d, t in items)))
        if fail_on is not None and sum(s[0] == "write" for s in steps) == fail_on:
            raise OSError("disk full")
        return real(source, items, **kw)

    monkeypatch.setattr(kafka, "write_deliveries", recording)
    consumer = kafka.EventConsumer(
        bootstrap_servers="127.0.0.1:9", topics=["t"], group_id="g", clock=lambda: FALLBACK,
        email_salt=SALT, root=tmp_path, batch_messages=10,
    )  # fmt: skip
    consumer._consumer.close()
    consumer._consumer = FakeKafka(steps)
    return consumer


def test_each_batch_is_committed_after_its_durable_write_and_in_order(monkeypatch, tmp_path):
    steps: list = []
    consumer = consumer_with(monkeypatch, tmp_path, steps)
    values = [json.dumps(v1(i)).encode() for i in range(25)] + [b"{not json"]
    for start in range(0, len(values), 10):  # three batches, the next one decoded while one is written
        consumer._add([FakeRecord(n, values[n]) for n in range(start, min(start + 10, len(values)))], 0.0)
        consumer.flush(wait=False)
    consumer.close()
    assert [s[0] for s in steps] == ["write", "commit", "write", "commit", "write", "commit", "close"]
    assert [s[1] for s in steps if s[0] == "write"] == [10, 10, 5]  # the undecodable one: quarantined
    assert steps[-2][1] == {("t", 0): 13, ("t", 1): 13}  # one past the highest offset per partition
    assert consumer.counts.summary()["landed"] == 25 and consumer.counts.quarantined == 1
    assert consumer.counts.received == 26 and consumer.counts.commits == 3


def test_a_failed_write_stops_every_later_commit(monkeypatch, tmp_path):
    steps: list = []
    consumer = consumer_with(monkeypatch, tmp_path, steps, fail_on=2)
    for start in (0, 10, 20):
        consumer._add([FakeRecord(n, json.dumps(v1(n)).encode()) for n in range(start, start + 10)], 0.0)
        try:
            consumer.flush(wait=False)
        except OSError:
            break
    with pytest.raises((OSError, RuntimeError)):
        consumer.flush()
    with pytest.raises(RuntimeError, match="flush failed"):
        consumer.flush()
    assert [s[0] for s in steps] == ["write", "commit", "write"]  # batch 2 never committed, nor batch 3
