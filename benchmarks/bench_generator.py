"""Demo-company generator throughput (rows/s per source) and peak memory, at 1x and 10x scale.

    .venv/bin/python benchmarks/bench_generator.py [--scale 1 10] [--months 25] [--no-events]

Scale 1 is the default invocation (2,000 accounts, 25 months, events included); scale 10 is
20,000 accounts. Each scale runs in a child process writing into a temporary folder (deleted
afterwards); the parent samples the resident memory of the child's whole process tree with
psutil every 20 ms and reports the peak. A source's time is what building and writing its
extract took (the four event sources share the events generator's time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

END = dt.date(2026, 10, 31)  # fixed, so runs are comparable
BASE_ACCOUNTS = 2000


def child(accounts: int, months: int, events: bool, root: Path) -> None:
    """Generate one landing zone and print rows, files and seconds per source as JSON."""
    from helpers.demo.generate import EVENT_SOURCES, Timings, generate
    from helpers.demo.spec import DemoSpec

    timings = Timings()
    t0 = time.perf_counter()
    summary = generate(
        DemoSpec(accounts=accounts, months=months, end=END), root, events=events, timings=timings
    )
    wall = time.perf_counter() - t0
    out = {}
    for name, info in summary.sources.items():
        seconds = timings.get("events", 0.0) if name in EVENT_SOURCES else timings.get(name, 0.0)
        out[name] = {"rows": info["rows"], "files": info["files"], "seconds": seconds}
    print(json.dumps({"wall": wall, "simulate": timings.get("simulate", 0.0), "sources": out}))


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run(scale: int, months: int, events: bool) -> dict:
    accounts = BASE_ACCOUNTS * scale
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(accounts),
            "--months",
            str(months),
            "--root",
            str(Path(tmp) / "landing"),
        ]
        if not events:
            cmd.append("--no-events")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        ps = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            try:
                peak = max(peak, tree_rss(ps))
            except psutil.NoSuchProcess:
                break
            time.sleep(0.02)
        out = proc.stdout.read() if proc.stdout else ""
        if proc.returncode:
            raise SystemExit(f"scale {scale}: the generator failed (exit {proc.returncode})")
        result = json.loads(out.strip().splitlines()[-1])
        result.update(scale=scale, accounts=accounts, peak_rss_mb=peak / 2**20)
        return result


def report(r: dict) -> None:
    print(
        f"\nscale {r['scale']}x: {r['accounts']:,} accounts — wall {r['wall']:.1f}s, peak RSS {r['peak_rss_mb']:,.0f} MB (process tree)"
    )
    print(f"  simulate (all chunks): {r['simulate']:.2f}s")
    print(f"  {'source':<24}{'rows':>12}{'files':>8}{'seconds':>10}{'rows/s':>14}")
    total_rows = 0
    for name, s in r["sources"].items():
        rate = s["rows"] / s["seconds"] if s["seconds"] else float("nan")
        total_rows += s["rows"]
        print(f"  {name:<24}{s['rows']:>12,}{s['files']:>8,}{s['seconds']:>10.2f}{rate:>14,.0f}")
    print(f"  {'total':<24}{total_rows:>12,}{'':>8}{r['wall']:>10.2f}{total_rows / r['wall']:>14,.0f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--scale", type=int, nargs="+", default=[1, 10], help="multiples of 2,000 accounts (default: 1 10)"
    )
    p.add_argument("--months", type=int, default=25)
    p.add_argument("--no-events", action="store_true", help="business sources only")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.months, not args.no_events, args.root)
        return
    print(
        f"bench_generator: {platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.1f} GiB RAM; history {args.months} months to {END}"
    )
    for scale in args.scale:
        report(run(scale, args.months, not args.no_events))


if __name__ == "__main__":
    main()
