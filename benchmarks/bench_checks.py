"""Checks at scale: evaluating every monitor over 2 years of run history, marts of N accounts.

    .venv/bin/python benchmarks/bench_checks.py [--accounts 100000] [--days 730] [--runs 3]
    .venv/bin/python benchmarks/bench_checks.py --full          # 1,000,000 accounts

A setup process builds a SQLite warehouse (the default backend) holding what two years of operation
leave behind for every pipeline of ``config/pipelines.yml``: one succeeded run per partition (daily
pipelines: ``--days`` partitions, monthly: ``--days / 30``), a ``partition_writes`` row per mart and
partition (row counts around ``--accounts`` for the per-account marts), and the latest partition of
each mart with its critical columns, ``--accounts`` rows for the per-account marts
(``engagement_daily``, ``profit_unit_monthly``, ``growth_accounts_monthly``). Then each run is a new
process that evaluates all monitors at ``as_of`` (``checks.evaluate_monitors``: freshness, row count
against the baseline, NULLs in the critical columns of the latest partition, run status, SLAs,
upstreams; results stored, alerts synced), timed apart from its interpreter start and imports.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

AS_OF = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC)
PER_ACCOUNT = {"engagement_daily", "profit_unit_monthly", "growth_accounts_monthly"}


def setup_child(accounts: int, days: int) -> None:
    import numpy as np
    import pandas as pd
    import sqlalchemy as sa

    from helpers.core import config
    from helpers.storage import warehouse
    from helpers.storage.warehouse import partition_key, partition_writes, pipeline_runs

    t0 = time.perf_counter()
    cfg = config.get()
    eng = warehouse.get_engine()
    rng = np.random.default_rng(11)
    last_day = AS_OF.date() - dt.timedelta(days=1)
    runs, writes, latest = [], [], []
    for pid, p in cfg.pipelines.pipelines.items():
        monthly = p.partition == "month"
        if monthly:
            labels, y, m = [], last_day.year, last_day.month - 1  # the last complete month backwards
            for _ in range(max(1, days // 30)):
                if m < 1:
                    y, m = y - 1, 12
                labels.append(f"{y:04d}-{m:02d}")
                m -= 1
        else:
            labels = [(last_day - dt.timedelta(days=i)).isoformat() for i in range(days)]
        for label in labels:
            day = dt.date.fromisoformat(label + ("-28" if monthly else ""))
            start = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(4, 0))
            rid = f"{pid}-{label}-bench"
            runs.append(dict(run_id=rid, pipeline=pid, logical_date=label, as_of=start, parameters="{}",
                             status="succeeded", trigger="schedule", queued_at=start, started_at=start,
                             finished_at=start + dt.timedelta(minutes=2)))  # fmt: skip
            for table in p.critical_columns:
                n = accounts if table in PER_ACCOUNT else 12
                part = {"period": label} if monthly else {"date": label}
                writes.append(dict(table_name=table, partition_key=partition_key(part),
                                   row_count=int(n * rng.uniform(0.95, 1.05)), written_at=start + dt.timedelta(minutes=2),
                                   run_id=rid))  # fmt: skip
            if label == labels[0]:
                for table, cols in p.critical_columns.items():
                    latest.append((table, cols, monthly, label, accounts if table in PER_ACCOUNT else 12))
    with eng.begin() as conn:
        conn.execute(sa.insert(pipeline_runs), runs)
        conn.execute(sa.insert(partition_writes), writes)
    for table, cols, monthly, label, n in latest:
        frame = pd.DataFrame({c: (rng.integers(0, 10**6, n) if c.endswith(("cents", "events", "accounts",
                              "customers_end", "value")) else [f"x{i}" for i in range(n)]) for c in cols})  # fmt: skip
        frame["period" if monthly else "date"] = label
        if "date" in cols:
            frame["date"] = label
        with eng.begin() as conn:
            frame.to_sql(table, conn, index=False, if_exists="append", chunksize=100_000)
    print(
        "RESULT "
        + json.dumps({"seconds": time.perf_counter() - t0, "runs": len(runs), "writes": len(writes)})
    )


def measure_child() -> None:
    t0 = time.perf_counter()
    from helpers import checks
    from helpers.checks import monitors
    from helpers.core import config

    cfg = config.get()
    t1 = time.perf_counter()
    snap = time.perf_counter()
    monitors.load_snapshot(AS_OF)
    snap = time.perf_counter() - snap
    t2 = time.perf_counter()
    results, changes = checks.evaluate_monitors(AS_OF, now=AS_OF, config=cfg)
    t3 = time.perf_counter()
    kinds: dict[str, int] = {}
    for r in results:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    print("RESULT " + json.dumps({"imports": t1 - t0, "snapshot": snap, "evaluate": t3 - t2,
                                  "results": len(results), "alerts_changed": len(changes), "kinds": kinds}))  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_setup":
        setup_child(int(sys.argv[2]), int(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--_measure":
        measure_child()
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accounts", type=int, default=100_000)
    p.add_argument("--full", action="store_true", help="1,000,000 accounts")
    p.add_argument("--days", type=int, default=730, help="days of history (default 730: 2 years)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--mem-limit", type=float, default=6, help="GiB per child process tree")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    accounts = 1_000_000 if args.full else args.accounts
    limit = int(args.mem_limit * C.GiB)
    C.header("bench_checks", f"all monitors over {args.days} days of history, {accounts:,} accounts")
    out = []
    with tempfile.TemporaryDirectory(prefix="bench-checks-") as tmp:
        env = {"WORKBOOK_HOME": tmp}
        (Path(tmp) / "runs").mkdir()
        (Path(tmp) / "data" / "landing").mkdir(parents=True)
        r = C.run_limited([sys.executable, __file__, "--_setup", str(accounts), str(args.days)], env=env,
                          mem_limit=limit, as_limit=limit + 2 * C.GiB)  # fmt: skip
        setup = r.result_json()
        if setup is None:
            raise SystemExit(f"setup failed: {r.error}\n{r.stderr[-2000:]}")
        size = (Path(tmp) / "runs" / "warehouse.sqlite").stat().st_size
        print(f"warehouse: {setup['runs']:,} runs, {setup['writes']:,} partition writes, {C.fmt_bytes(size)}, "
              f"built in {setup['seconds']:.1f} s", flush=True)  # fmt: skip
        wh = Path(tmp) / "runs" / "warehouse.sqlite"
        shutil.copyfile(wh, pristine := wh.with_suffix(".pristine"))
        for i in range(args.runs):
            # every run starts from the same warehouse (a run stores its results and opens alerts)
            for extra in (wh.with_name(wh.name + "-wal"), wh.with_name(wh.name + "-shm")):
                extra.unlink(missing_ok=True)
            shutil.copyfile(pristine, wh)
            r = C.run_limited([sys.executable, __file__, "--_measure"], env=env, mem_limit=limit,
                              as_limit=limit + 2 * C.GiB)  # fmt: skip
            got = r.result_json() or {"error": r.error}
            got.update(process=r.wall, peak_rss=r.peak_rss, load=r.load_before)
            out.append(got)
            print(f"  run {i + 1}: evaluate {got.get('evaluate', float('nan')):.2f} s, "
                  f"{got.get('results', 0)} results, load {r.load_before} {got.get('error', '')}", flush=True)  # fmt: skip
    ok = [o for o in out if "evaluate" in o]
    C.print_table(
        [
            {
                "accounts": accounts,
                "history days": args.days,
                "runs": len(ok),
                "evaluate s (median)": C.median([o["evaluate"] for o in ok]),
                "of which snapshot s": C.median([o["snapshot"] for o in ok]),
                "process s": C.median([o["process"] for o in ok]),
                "results": ok[0]["results"] if ok else None,
                "peak RSS": C.fmt_bytes(max((o["peak_rss"] for o in out), default=0)),
                "load avg": "/".join(o["load"] for o in out),
            }
        ],  # fmt: skip
        [
            "accounts",
            "history days",
            "runs",
            "evaluate s (median)",
            "of which snapshot s",
            "process s",
            "results",
            "peak RSS",
            "load avg",
        ],  # fmt: skip
        title="checks.evaluate_monitors over the whole history (SQLite warehouse)",
    )
    if ok:
        print("results per kind: " + json.dumps(ok[0]["kinds"]))
    C.write_json(args.json, out)


if __name__ == "__main__":
    main()
