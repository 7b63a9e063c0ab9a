"""Incremental cost: one daily engagement run on day 30 vs day 365 of history (ratio; target <= 1.2).

    .venv/bin/python benchmarks/bench_incremental.py [--accounts 1000] [--months 13] [--runs 3]
    .venv/bin/python benchmarks/bench_incremental.py --landing /path/to/data/landing --days 30 365

Builds a demo company (``workbook demo-data``; or reuses ``--landing``) and times, in a new process
per run (cold; the engine started inside), what the ``engagement_aggregate`` notebook does for one
day: ``run_window`` (the data horizon from the manifest), ``load`` (the deliveries it reads),
``compute`` and ``write`` into a fresh warehouse, with the default trailing window (3 days). The
run's cost must depend on the new day and the late window (plus the 30 days MAU needs), not on
the history before them: the ratio day 365 / day 30 is reported raw and per event read (the demo
company grows, so a later day has more events), with the number of files and events each read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

WORKBOOK = str(Path(sys.executable).with_name("workbook"))


def child(day: str) -> None:
    """One daily run, timed per step; prints RESULT json."""
    import pyarrow.parquet as pq

    from helpers.engagement.inputs import load
    from helpers.engagement.run import compute
    from helpers.engagement.store import write
    from helpers.engagement.window import run_window
    from helpers.storage import warehouse
    from helpers.storage.engine import get_engine

    t0 = time.perf_counter()
    eng = get_engine()
    warehouse.get_engine()
    t1 = time.perf_counter()
    window = run_window(day, None)
    inputs = load(eng, window)
    t2 = time.perf_counter()
    run = compute(eng, inputs, window)
    t3 = time.perf_counter()
    write(run, run_id=f"bench-{day}")
    t4 = time.perf_counter()
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in inputs.event_files)
    print("RESULT " + json.dumps({
        "start": t1 - t0, "load": t2 - t1, "compute": t3 - t2, "write": t4 - t3, "run": t4 - t1,
        "event_files": len(inputs.event_files), "events_read": rows,
        "read_from": window.read_from.isoformat(),
    }))  # fmt: skip


def history_start(landing: Path) -> dt.date:
    """First day of the generated history (``_demo.json``)."""
    return dt.date.fromisoformat(json.loads((landing / "_demo.json").read_text())["history"]["start"])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        child(sys.argv[2])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accounts", type=int, default=1000)
    p.add_argument("--months", type=int, default=13)
    p.add_argument("--end", default="2025-10-31", help="last day of the generated history")
    p.add_argument("--landing", type=Path, help="reuse a landing zone built by demo-data")
    p.add_argument("--days", type=int, nargs=2, default=[30, 365], help="days of history (default 30 365)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--full", action="store_true", help="the default demo company: 2,000 accounts x 25 months")
    p.add_argument("--mem-limit", type=float, default=6, help="GiB per child process tree")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    limit = int(args.mem_limit * C.GiB)
    C.header(
        "bench_incremental", f"daily engagement run on day {args.days[0]} vs day {args.days[1]} of history"
    )
    with tempfile.TemporaryDirectory(prefix="bench-incr-") as tmp:
        base = Path(tmp)
        if args.landing:
            landing = args.landing.resolve()
        else:
            cmd = [WORKBOOK, "demo-data", "--accounts", str(args.accounts), "--months", str(args.months),
                   "--end", args.end, "--quiet"]  # fmt: skip
            r = C.run_limited(cmd, env={"WORKBOOK_HOME": str(base / "demo")}, mem_limit=limit)
            if r.status != "ok":
                raise SystemExit(f"demo-data failed: {r.error}")
            print(
                f"demo company: {args.accounts:,} accounts x {args.months} months in {r.wall:.1f} s",
                flush=True,
            )
            landing = base / "demo" / "data" / "landing"
        first = history_start(landing)
        results: dict[int, list[dict[str, Any]]] = {}
        for i in range(args.runs):
            for n in args.days:  # interleaved, so both see the same load over time
                day = (first + dt.timedelta(days=n - 1)).isoformat()
                home = base / f"home-{n}-{i}"
                (home / "data").mkdir(parents=True)
                (home / "runs").mkdir()
                (home / "data" / "landing").symlink_to(landing)
                r = C.run_limited([sys.executable, __file__, "--_child", day], env={"WORKBOOK_HOME": str(home)},
                                  mem_limit=limit, as_limit=limit + 2 * C.GiB)  # fmt: skip
                got = r.result_json() or {"error": r.error}
                got.update(day=day, process=r.wall, peak_rss=r.peak_rss, loadavg=r.load_before)
                results.setdefault(n, []).append(got)
                print(f"  day {n} ({day}) run {i + 1}: {got.get('run', float('nan')):.2f} s, load {r.load_before} "
                      f"{got.get('error', '')}", flush=True)  # fmt: skip
    rows = []
    for n, rs in results.items():
        ok = [r for r in rs if "run" in r]
        rows.append({
            "history day": n, "date": rs[0]["day"], "runs": len(ok),
            "run s (median)": C.median([r["run"] for r in ok]),
            "load s": C.median([r["load"] for r in ok]), "compute s": C.median([r["compute"] for r in ok]),
            "write s": C.median([r["write"] for r in ok]), "engine start s": C.median([r["start"] for r in ok]),
            "files read": ok[0]["event_files"] if ok else None, "events read": ok[0]["events_read"] if ok else None,
            "peak RSS": C.fmt_bytes(max(r["peak_rss"] for r in rs)), "load avg": "/".join(r["loadavg"] for r in rs),
        })  # fmt: skip
    C.print_table(
        rows, list(rows[0]), title="one daily engagement run (DuckDB engine by default), cold process"
    )
    a, b = rows[0], rows[1]
    if a["run s (median)"] and b["run s (median)"]:
        raw = b["run s (median)"] / a["run s (median)"]
        per = (b["run s (median)"] / b["events read"]) / (a["run s (median)"] / a["events read"])
        print(f"ratio day {b['history day']} / day {a['history day']}: {raw:.2f} raw, {per:.2f} per event read "
              f"({b['events read'] / a['events read']:.2f}x the events); target <= 1.2: "
              f"{'met' if raw <= 1.2 else ('met per event read' if per <= 1.2 else 'NOT met')}")  # fmt: skip
    C.write_json(args.json, results)


if __name__ == "__main__":
    main()
