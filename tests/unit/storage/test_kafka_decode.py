"""The Kafka extract's decode worker process lands exactly what the in-process decode lands.

A batch's fast path runs in ``kafka_decode.DecodeWorker`` (another process, the other core); the
consumer finishes the batch (the per-message path for what the worker declined) with
``finish_batch``. Same rows, same order, same (date, hour) files, same provenance, same
quarantine records as ``decode_batch`` + ``hourly_tables``; a worker that fails or dies stops the
consumer before any commit of that batch or a later one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import test_kafka_batch as same  # the mixed batch and fake broker (tests/unit/storage is on sys.path)

from helpers.storage.contracts import EVENTS_SCHEMA
from helpers.storage.extract.kafka import decode_batch, finish_batch
from helpers.storage.extract.kafka_batch import fast_table, hourly_tables, split_hours
from helpers.storage.extract.kafka_decode import DecodeFailed, DecodeWorker

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def worker():
    w = DecodeWorker()
    w.start()
    yield w
    w.close()


def in_process(received, partition_by):
    decoded = decode_batch(received, source="events", email_salt=same.SALT, clock=lambda: same.FALLBACK)
    sources = np.asarray(decoded.sources, dtype=np.int64)
    hours = [(d, h, t, sources[i]) for d, h, t, i in hourly_tables(decoded.rows, partition_by)]
    return decoded, hours


@pytest.mark.parametrize("partition_by", ["receivedAt", "timestamp"])
def test_the_worker_path_lands_what_the_in_process_path_lands(worker, partition_by):
    received = same.batch()
    want, want_hours = in_process(received, partition_by)
    worker.submit(received.values, same.SALT)
    fast, slow = worker.result()
    assert 0 < len(slow) < len(received) and fast.num_rows + len(slow) == len(received)
    got = finish_batch(
        received, fast, slow, source="events", email_salt=same.SALT, clock=lambda: same.FALLBACK
    )
    hours = split_hours(got.landing_table(), partition_by)

    assert [(d, h) for d, h, _t, _i in hours] == [(d, h) for d, h, _t, _i in want_hours]
    for (_d, _h, table, index), (_wd, _wh, want_table, want_index) in zip(hours, want_hours, strict=True):
        assert table.schema == EVENTS_SCHEMA
        assert table.equals(want_table)  # same rows in the same order
        assert index.tolist() == want_index.tolist()  # each row from the same message
        assert same.parquet_bytes(table) == same.parquet_bytes(want_table)
    assert got.quarantined == want.quarantined and len(got.quarantined) >= 5
    assert got.raw == want.raw > 0
    assert sum(t.num_rows for *_x, t, _i in hours) + len(got.quarantined) == len(received)


def test_the_worker_runs_the_same_fast_path_as_this_process(worker):
    values = same.batch().values
    worker.submit(values, same.SALT)
    fast, slow = worker.result()
    here, here_slow = fast_table(values, same.SALT)
    assert fast.equals(here) and slow == here_slow
    with pytest.raises(RuntimeError, match="already holds a batch"):
        worker.submit(values, same.SALT)
        worker.submit(values, same.SALT)
    worker.result()


def test_a_failure_in_the_worker_is_raised_with_its_reason(worker):
    worker._requests.send(([b"{}"], "salt", "a third argument"))  # fast_table raises a TypeError
    worker._busy = True
    with pytest.raises(DecodeFailed, match="kafka decode worker failed"):
        worker.result()
    worker.submit([json.dumps(same.v1(2)).encode()], same.SALT)  # the worker serves on
    fast, slow = worker.result()
    assert fast.num_rows == 1 and slow == []


def add(consumer, start: int, n: int = 10) -> None:
    consumer._add([same.FakeRecord(k, json.dumps(same.v1(k)).encode()) for k in range(start, start + n)], 0.0)


def test_a_dead_worker_stops_the_consumer_before_that_batch_or_any_later_is_committed(monkeypatch, tmp_path):
    steps: list = []
    consumer = same.consumer_with(monkeypatch, tmp_path, steps)
    assert len(consumer._decoders) == 2  # the default: two workers, taking batches in turn
    add(consumer, 0)
    consumer.flush()  # batch 1: the first worker, written, committed
    gone = consumer._decoders[1]  # batch 2's worker
    gone.start()
    gone._process.kill()
    gone._process.wait()
    add(consumer, 10)
    with pytest.raises(DecodeFailed, match="gone"):
        consumer.flush(wait=False)
    add(consumer, 20)
    with pytest.raises(RuntimeError, match="flush failed"):
        consumer.flush()
    consumer.__exit__(RuntimeError, RuntimeError("stop"), None)
    assert [s[0] for s in steps] == ["write", "commit", "close"]  # batches 2 and 3: never committed
    assert all(d._process is None for d in consumer._decoders)


def test_a_worker_dying_mid_batch_is_a_failure_not_an_empty_batch():
    worker = DecodeWorker()
    try:
        worker.submit([json.dumps(same.v1(k)).encode() for k in range(50_000)], same.SALT)  # a second or so
        worker._process.kill()
        with pytest.raises(DecodeFailed, match="died"):
            worker.result()
    finally:
        worker.close()


def test_without_a_worker_the_loop_decodes_each_batch_itself(monkeypatch, tmp_path):
    steps: list = []
    consumer = same.consumer_with(monkeypatch, tmp_path, steps)
    consumer._decoders = []  # what decode_processes=0 builds
    for start in (0, 10, 20):
        add(consumer, start)
        consumer.flush(wait=False)
    consumer.close()
    assert [s[0] for s in steps] == ["write", "commit"] * 3 + ["close"]
    assert consumer.counts.landed == 30 and consumer.counts.commits == 3


def test_a_script_without_a_main_guard_can_use_the_worker(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "consume.py"  # module-level code, no ``if __name__ == "__main__"``
    script.write_text(
        "import json\n"
        "from helpers.storage.extract.kafka_decode import DecodeWorker\n"
        "w = DecodeWorker()\n"
        "w.submit([json.dumps({'messageId': 'm', 'type': 'page', 'userId': 'u',"
        " 'timestamp': '2026-11-01T00:00:00Z', 'receivedAt': '2026-11-01T00:00:01Z'}).encode(), b'x'], 's')\n"
        "fast, slow = w.result()\n"
        "w.close()\n"
        "print('ran', fast.num_rows, slow)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["ran 1 [1]"]  # once: the worker did not run the script again


def test_the_command_line_refuses_a_negative_number_of_decode_processes(capsys):
    from helpers.storage.extract import kafka

    argv = [
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--topic",
        "t",
        "--group-id",
        "g",
        "--decode-processes",
        "-1",
    ]
    with pytest.raises(SystemExit) as stop:
        kafka.main(argv)
    assert stop.value.code == 2
    assert "--decode-processes: expected 0 or more, got -1" in capsys.readouterr().err
