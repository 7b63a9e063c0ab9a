"""Engagement pipeline benchmark: events/s and peak memory per engine, with and without a hot account.

One run generates events-shaped Parquet once per size (the landed schema of
``helpers.storage.contracts.EVENTS_SCHEMA``: JSON ``context``/``properties``, 5 % client-retry
duplicates, 30 days, ``accounts = max(1000, events / 100)``), optionally with one account holding
30 % of the events, and measures on the same files, each runner writing the per-account daily
table to Parquet (the same sink for all: at 1M accounts the result has tens of millions of rows,
which ``toPandas`` would first gather in Spark's 2g driver heap; the runners' row and event
counts must agree, or the run prints ``MISMATCH``):

- ``pipeline-duckdb``  the engagement pipeline's own functions on the DuckDB engine (SQLFrame):
                       contract conform, dedup by messageId, per account and day (users, events,
                       sessions by platform; counted once and kept, as the pipeline does) written
                       with ``Engine.write_parquet``, top accounts ranked from the same counts;
- ``pipeline-spark``   the same code on Spark ``local[*]`` (session start reported apart);
- ``duckdb-sql``       the same work as one hand-written DuckDB SQL statement (``COPY ... TO``);
- ``pandas``           the same work in plain pandas (regex JSON extraction, drop_duplicates);
- ``spark-naive-join`` / ``spark-skew-safe`` (hot runs only): Profit/Growth's per-account table
                       joined the naive way (event rows to accounts, AQE and broadcast off: the
                       hot key's rows meet in one task) and the pipeline's way (aggregate to the
                       account grain, then join; AQE on): status, the largest task's share of the
                       shuffled rows, spill, time and memory.

Every measurement runs in a fresh process under a memory limit (``--mem-limit``, 8 GiB: the tree
is killed above it and the result reads "out of memory at 8.00 GiB"; pandas also gets
``RLIMIT_AS``; a child whose own allocator gives up, a JVM heap, reads "out of memory: <its
error>"); peak memory is the whole process tree's RSS (the Spark JVM included), sampled every
50 ms with psutil (``benchmarks/_common.py``). Prints a table and the ratios to
hand-written DuckDB SQL; ``--json`` writes the raw figures.

    .venv/bin/python benchmarks/bench_engagement.py                       # 1M events (make bench)
    .venv/bin/python benchmarks/bench_engagement.py --full                # 1M, 10M, 50M (long)
    .venv/bin/python benchmarks/bench_engagement.py --sizes 1e6 1e7       # a quicker run
    .venv/bin/python benchmarks/bench_engagement.py --sizes 1e6 --only pipeline-duckdb duckdb-sql
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

RUNNERS = ("pipeline-duckdb", "pipeline-spark", "duckdb-sql", "pandas")
SKEW_RUNNERS = ("spark-naive-join", "spark-skew-safe")
CHUNK = 1_000_000
DAYS = 30
DUP_SHARE = 0.05
START = dt.date(2026, 10, 1)


# ---------------------------------------------------------------- data


def generate(root: Path, n: int, hot: float, seed: int = 7, accounts: int | None = None) -> list[str]:
    """``n`` landed event rows (duplicates included) in files of ``CHUNK`` rows under ``root``."""
    from helpers.storage.contracts import EVENTS_SCHEMA

    root.mkdir(parents=True, exist_ok=True)
    accounts = accounts or max(1000, n // 100)
    acct_ids = pa.array([f"A{i:07d}" for i in range(accounts)], pa.string())
    files = []
    rng = np.random.default_rng(seed)
    made = 0
    part = 0
    t0 = int(dt.datetime.combine(START, dt.time(), dt.UTC).timestamp() * 1000)
    while made < n:
        rows = min(CHUNK, n - made)
        base = int(rows / (1 + DUP_SHARE))
        acct = rng.integers(1, accounts, base)
        if hot:
            acct[rng.random(base) < hot] = 0
        user = acct * 10 + rng.integers(0, 10, base)
        day = rng.integers(0, DAYS, base)
        ts = t0 + day * 86_400_000 + rng.integers(0, 86_400_000, base)
        recv = ts + rng.integers(30, 900, base)
        device = rng.choice(3, base, p=[0.8, 0.1, 0.1])
        mid = np.arange(made, made + base)
        # client retries: copies of earlier rows of the chunk, received a little later
        dup = rng.choice(base, rows - base)
        idx = np.concatenate([np.arange(base), dup])
        recv_all = np.concatenate([recv, recv[dup] + rng.integers(1000, 120_000, len(dup))])
        a = pc.take(acct_ids, pa.array(acct[idx]))
        dev = pc.take(pa.array(["web", "ios", "android"]), pa.array(device[idx]))
        uid = pc.binary_join_element_wise(a, "-u", pc.cast(pa.array(user[idx] % 10 + 1000), pa.string()), "")
        sess = pc.cast(
            pa.array((user[idx] * 100 + day[idx]) * 3 + device[idx]), pa.string()
        )  # one user, one platform
        context = pc.binary_join_element_wise(
            '{"device": {"type": "', dev, '"}, "groupId": "', a,
            '", "library": {"name": "analytics.js", "version": "4.15.3"}}', "",
        )  # fmt: skip
        props = pc.binary_join_element_wise('{"plan": "growth", "session_id": "', sess, '"}', "")
        nul = pa.nulls(rows, pa.string())

        def tsa(ms: np.ndarray) -> pa.Array:
            return pa.array(ms.astype(np.int64) * 1000, pa.int64()).cast(pa.timestamp("us", tz="UTC"))

        table = pa.table(
            {
                "messageId": pc.cast(pa.array(mid[idx]), pa.string()),
                "type": pa.repeat("track", rows).cast(pa.string()),
                "event": pa.repeat("Report Viewed", rows).cast(pa.string()),
                "name": nul,
                "userId": uid,
                "anonymousId": nul,
                "timestamp": tsa(ts[idx]),
                "sentAt": tsa(ts[idx]),
                "receivedAt": tsa(recv_all),
                "context": context,
                "properties": props,
                "traits": nul,
                "schema_version": pa.repeat("1", rows).cast(pa.string()),
                "_raw_json": nul,
            },
            schema=EVENTS_SCHEMA,
        )
        path = root / f"part-{part:05d}.parquet"
        pq.write_table(table, path, compression="zstd")
        files.append(str(path))
        made += rows
        part += 1
    return files


# ---------------------------------------------------------------- the measured work (child process)


def written(out: Path) -> dict[str, Any]:
    """Rows and events of a runner's Parquet output (read after the clock stopped)."""
    table = pq.read_table(out, columns=["events"])
    return {"rows_out": table.num_rows, "events_out": int(pc.sum(table.column("events")).as_py() or 0)}


def run_pipeline(engine_name: str, files: list[str], out: Path) -> dict[str, Any]:
    from helpers.engagement import transforms
    from helpers.engagement.inputs import empty_parquet
    from helpers.storage.engine import get_engine

    t = time.perf_counter()
    eng = get_engine(engine_name)
    started = time.perf_counter() - t
    t = time.perf_counter()
    raw = eng.read_parquet(files, name="bench_events")
    rows = transforms.conformed(eng, raw)
    events = transforms.first_copies(eng, rows)
    api = transforms.api_requests(eng, eng.read_parquet([empty_parquet("api_logs")], name="bench_api"))
    days = [START + dt.timedelta(days=i) for i in range(DAYS)]
    counts = transforms.account_days(eng, events, days)  # as the pipeline: kept for daily and top
    eng.write_parquet(transforms.daily_per_account(eng, counts, api, days), out)
    top = eng.to_pandas(transforms.top_accounts(eng, counts, n=1))
    seconds = time.perf_counter() - t
    share = float((top["events"] / top["day_events"]).max())
    return {"seconds": seconds, "start_seconds": started, **written(out), "top_share": share}


# The fastest of the hand-written forms tried on 3M events (QUALIFY row_number 11.8 s, five arg_min
# 14.4 s, min(struct) 17.2 s, DISTINCT ON 17.5 s; a staged aggregation as the pipeline's 13.2 s).
HAND_SQL = """
WITH c AS (
  SELECT messageId AS message_id, coalesce(userId, anonymousId) AS user_id,
         json_extract_string(context, '$.groupId') AS account_id,
         CASE WHEN json_extract_string(context, '$.device.type') IN ('ios', 'android') THEN 'mobile' ELSE 'web' END AS platform,
         json_extract_string(properties, '$.session_id') AS session_id,
         "timestamp" AS event_ts, receivedAt AS received_at
  FROM read_parquet({files})
  WHERE schema_version = '1' AND _raw_json IS NULL
), d AS (
  SELECT * FROM c
  WHERE message_id IS NOT NULL AND account_id IS NOT NULL AND event_ts IS NOT NULL AND user_id IS NOT NULL
  QUALIFY row_number() OVER (PARTITION BY message_id ORDER BY received_at) = 1
)
SELECT account_id, CAST(event_ts AS DATE) AS date,
       count(DISTINCT user_id) AS active_users, count(*) AS events, count(DISTINCT session_id) AS sessions,
       count(DISTINCT user_id) FILTER (platform = 'web') AS web_users, count(*) FILTER (platform = 'web') AS web_events,
       count(DISTINCT session_id) FILTER (platform = 'web') AS web_sessions,
       count(DISTINCT user_id) FILTER (platform = 'mobile') AS mobile_users,
       count(*) FILTER (platform = 'mobile') AS mobile_events,
       count(DISTINCT session_id) FILTER (platform = 'mobile') AS mobile_sessions
FROM d GROUP BY 1, 2
"""


def run_sql(files: list[str], out: Path) -> dict[str, Any]:
    import duckdb

    from helpers.core import config

    conf = config.get().pipelines.engine.duckdb
    conn = duckdb.connect()
    conn.execute(f"SET memory_limit = '{conf.memory_limit}'")
    conn.execute(f"SET threads = {int(conf.threads)}")
    conn.execute("SET TimeZone = 'UTC'")
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    query = HAND_SQL.format(files=json.dumps(files).replace('"', "'"))
    conn.execute(f"COPY ({query}) TO '{out / 'part-0.parquet'}' (FORMAT parquet)")
    return {"seconds": time.perf_counter() - t, **written(out)}


def run_pandas(files: list[str], path: Path) -> dict[str, Any]:
    import pandas as pd

    t = time.perf_counter()
    cols = [
        "messageId",
        "userId",
        "anonymousId",
        "timestamp",
        "receivedAt",
        "context",
        "properties",
        "schema_version",
        "_raw_json",
    ]
    ev = pd.concat([pd.read_parquet(f, columns=cols) for f in files], ignore_index=True)
    ev = ev[(ev["schema_version"] == "1") & ev["_raw_json"].isna()]
    ev["account_id"] = ev["context"].str.extract(r'"groupId": "([^"]*)"', expand=False)
    device = ev["context"].str.extract(r'"device": \{[^}]*"type": "([^"]*)"', expand=False)
    ev["platform"] = np.where(device.isin(["ios", "android"]), "mobile", "web")
    ev["session_id"] = ev["properties"].str.extract(r'"session_id": "([^"]*)"', expand=False)
    ev["user_id"] = ev["userId"].fillna(ev["anonymousId"])
    ev = ev.drop(columns=["context", "properties", "userId", "anonymousId"])
    ev = ev.dropna(subset=["messageId", "account_id", "timestamp", "user_id"])
    ev = ev.sort_values("receivedAt", kind="stable").drop_duplicates("messageId")
    ev["date"] = ev["timestamp"].dt.date
    g = ev.groupby(["account_id", "date"])
    cols_out = {
        "active_users": g["user_id"].nunique(),
        "events": g.size(),
        "sessions": g["session_id"].nunique(),
    }
    for p in ("web", "mobile"):
        gp = ev[ev["platform"] == p].groupby(["account_id", "date"])
        cols_out[f"{p}_users"], cols_out[f"{p}_events"], cols_out[f"{p}_sessions"] = (
            gp["user_id"].nunique(),
            gp.size(),
            gp["session_id"].nunique(),
        )
    daily = pd.DataFrame(cols_out).fillna(0).reset_index()
    path.mkdir(parents=True, exist_ok=True)
    daily.to_parquet(path / "part-0.parquet", index=False)
    return {"seconds": time.perf_counter() - t, **written(path)}


def spark_stage_metrics(session: Any, events: int) -> dict[str, Any]:
    """Spill, and the most shuffled rows one task read as a share of the events (status store).

    A task that must hold 30 % of all events is what runs out of memory at scale, whatever
    the stage: the share is taken against the input, not against the stage's own total (a stage
    that AQE coalesced into one task reads "100 %" of a few thousand aggregated rows).
    """
    sc = session.sparkContext
    store = sc._jsc.sc().statusStore()
    jvm = sc._jvm
    stages = store.stageList(
        jvm.java.util.ArrayList(),
        False,
        False,
        sc._gateway.new_array(jvm.double, 0),
        jvm.java.util.ArrayList(),
    )
    spill, biggest = 0, 0
    it = stages.iterator()
    while it.hasNext():
        s = it.next()
        spill += int(s.diskBytesSpilled()) + int(s.memoryBytesSpilled())
        if int(s.shuffleReadRecords()) == 0:
            continue
        tasks = store.taskList(s.stageId(), s.attemptId(), 100_000).iterator()
        while tasks.hasNext():
            m = tasks.next().taskMetrics()
            if m.isDefined():
                biggest = max(biggest, int(m.get().shuffleReadMetrics().recordsRead()))
    return {
        "spill_bytes": spill,
        "max_task_rows": biggest,
        "max_task_share": round(biggest / max(events, 1), 3),
    }


def run_spark_join(files: list[str], naive: bool) -> dict[str, Any]:
    """Per-account revenue joined with engagement: naively at the event grain, or aggregated first."""
    from helpers.engagement import transforms
    from helpers.storage.engine import get_engine

    eng = get_engine("spark")
    spark, F = eng.session, eng.F
    if naive:  # the plan a first version writes: no AQE, no broadcast, event rows meet accounts in a shuffle
        spark.conf.set("spark.sql.adaptive.enabled", "false")
        spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
    t = time.perf_counter()
    events = transforms.first_copies(eng, transforms.conformed(eng, eng.read_parquet(files)))
    accounts = (
        events.select("account_id")
        .distinct()
        .select(
            F.col("account_id").alias("account_id"),
            (F.abs(F.hash(F.col("account_id"))) % 100_000).cast("long").alias("revenue_usd_cents"),
        )
    )
    try:
        if naive:
            joined = accounts.join(events, on="account_id")  # the events side is buffered per key
            out = joined.groupBy("account_id").agg(
                F.count(F.lit(1)).alias("events"),
                F.countDistinct("user_id").alias("users"),
                F.max("revenue_usd_cents").alias("revenue"),
            )
        else:
            per = events.groupBy("account_id").agg(
                F.count(F.lit(1)).alias("events"), F.countDistinct("user_id").alias("users")
            )
            out = transforms.full_join(eng, per, accounts, ["account_id"])
        rows = out.count()
        status, error = "ok", ""
    except Exception as e:  # the naive plan may die: that is the finding
        rows, status, error = 0, "failed", f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    n = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return {
        "seconds": time.perf_counter() - t,
        "rows_out": rows,
        "status": status,
        "error": error,
        **spark_stage_metrics(spark, n),
    }


def child(kind: str, files_list: str) -> None:
    files = json.loads(Path(files_list).read_text())
    sink = Path(files_list).parent / f"out-{kind}"  # every runner writes its daily table here
    if kind == "pipeline-duckdb":
        out = run_pipeline("duckdb", files, sink)
    elif kind == "pipeline-spark":
        out = run_pipeline("spark", files, sink)
    elif kind == "duckdb-sql":
        out = run_sql(files, sink)
    elif kind == "pandas":
        out = run_pandas(files, sink)
    elif kind in SKEW_RUNNERS:
        out = run_spark_join(files, naive=kind == "spark-naive-join")
    else:
        raise SystemExit(f"unknown runner {kind}")
    print("RESULT " + json.dumps(out))


# ---------------------------------------------------------------- the harness (parent process)


def measure(kind: str, files: list[str], workdir: Path, timeout: float, limit: int) -> dict[str, Any]:
    """One runner in a new process under the memory limit (the whole tree's RSS, the JVM included)."""
    listing = workdir / "files.json"
    listing.write_text(json.dumps(files))
    r = C.run_limited(
        [sys.executable, __file__, "--_child", kind, str(listing)],
        mem_limit=limit,
        # An address-space limit only for pandas, which would otherwise grow past the limit between
        # two samples: the JVM and DuckDB reserve far more address space than they use (hand SQL at
        # 50M events failed to start a thread under limit + 2 GiB at 4.2 GiB resident). The
        # resident limit applies to every runner.
        as_limit=limit + 2 * C.GiB if kind == "pandas" else None,
        timeout=timeout,
    )
    result = r.result_json()
    if result is None:
        result = {"status": r.status if r.status != "ok" else "failed", "error": r.error}
    result.setdefault("status", "ok")
    shutil.rmtree(workdir / f"out-{kind}", ignore_errors=True)
    return {**result, "wall_seconds": r.wall, "peak_rss_bytes": r.peak_rss, "load": r.load_before}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=float,
        default=None,
        help="events per run (default 1e6; --full: 1e6 1e7 5e7)",
    )
    parser.add_argument("--full", action="store_true", help="1M, 10M and 50M events (long)")
    parser.add_argument(
        "--accounts", type=int, default=None, help="accounts (default: events / 100, at least 1,000)"
    )
    parser.add_argument(
        "--mem-limit", type=float, default=8, help="GiB per measured process tree (default 8)"
    )
    parser.add_argument(
        "--hot", nargs="+", type=float, default=[0.0, 0.3], help="share of the hot account (0 0.3)"
    )
    parser.add_argument(
        "--only", nargs="+", choices=RUNNERS + SKEW_RUNNERS, default=None, help="runners to measure"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where the Parquet goes (default: a temp dir)"
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per measurement")
    parser.add_argument("--json", type=Path, default=None, help="write the raw results here")
    args = parser.parse_args()
    args.sizes = args.sizes or ([1e6, 1e7, 5e7] if args.full else [1e6])
    limit = int(args.mem_limit * C.GiB)
    C.header("bench_engagement", f"engagement at {', '.join(f'{s:,.0f}' for s in args.sizes)} events")
    runners = args.only or [*RUNNERS, *SKEW_RUNNERS]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-engagement-"))
    results = []
    try:
        for size in args.sizes:
            n = int(size)
            for hot in args.hot:
                data = workdir / f"n{n}-hot{hot}"
                t = time.perf_counter()
                files = generate(data, n, hot, accounts=args.accounts)
                print(
                    f"# {n:,} events, hot account {hot:.0%}: data in {time.perf_counter() - t:.1f} s",
                    flush=True,
                )
                for kind in runners:
                    if kind in SKEW_RUNNERS and not hot:
                        continue
                    r = measure(kind, files, workdir, args.timeout, limit)
                    r.update(runner=kind, events=n, hot=hot)
                    results.append(r)
                    rate = n / r["seconds"] / 1e6 if r.get("seconds") else float("nan")
                    extra = f" start {r['start_seconds']:.1f}s" if "start_seconds" in r else ""
                    if kind in SKEW_RUNNERS:
                        extra += f" max-task {r.get('max_task_share')} spill {r.get('spill_bytes', 0) / 2**20:.0f}MiB"
                    print(
                        f"  {kind:17s} {r['status']:6s} {r.get('seconds', float('nan')):7.2f} s  {rate:5.2f} M ev/s  "
                        f"peak {r['peak_rss_bytes'] / 2**30:5.2f} GiB load {r['load']}{extra} {r.get('error', '')}",
                        flush=True,
                    )
                outputs = {
                    (r["rows_out"], r["events_out"])
                    for r in results
                    if r["events"] == n and r["hot"] == hot and r["runner"] in RUNNERS and r["status"] == "ok"
                }
                if len(outputs) > 1:
                    print(
                        f"  MISMATCH: the runners' outputs differ (rows, events): {sorted(outputs)}",
                        flush=True,
                    )
                shutil.rmtree(data, ignore_errors=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\nratios to hand-written DuckDB SQL (events/s; > 1 is faster)")
    for size in args.sizes:
        for hot in args.hot:
            sql = next(
                (
                    r
                    for r in results
                    if r["runner"] == "duckdb-sql" and r["events"] == int(size) and r["hot"] == hot
                ),
                None,
            )
            if not sql or sql["status"] != "ok":
                continue
            cells = [
                f"{r['runner']} {sql['seconds'] / r['seconds']:.2f}x"
                for r in results
                if r["events"] == int(size)
                and r["hot"] == hot
                and r["runner"] in RUNNERS
                and r.get("seconds")
            ]
            print(f"  {int(size):>11,} hot {hot:.0%}: " + ", ".join(cells))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
