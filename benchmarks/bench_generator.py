"""Demo-company generator throughput (rows/s per source) and peak memory, at 1x and 10x scale.

    .venv/bin/python benchmarks/bench_generator.py [--scale 1] [--months 25] [--no-events]
    .venv/bin/python benchmarks/bench_generator.py --full        # scales 1 and 10
    .venv/bin/python benchmarks/bench_generator.py --accounts 100000 --months 13 --events-per-user-day 0.004

Scale 1 is the default invocation (2,000 accounts, 25 months, events included); scale 10 is
20,000 accounts; ``--accounts`` gives sizes directly and ``--events-per-user-day`` the event density
(default: the demo's). Each scale runs in a child process writing into a temporary folder (deleted
afterwards) under a memory limit (``--mem-limit``, GiB); the parent samples the resident memory
of the child's whole process tree with psutil every 20 ms and reports the peak
(``benchmarks/_common.py``). A source's time is what building and writing its
extract took (the four event sources share the events generator's time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

END = dt.date(2026, 10, 31)  # fixed, so runs are comparable
BASE_ACCOUNTS = 2000


def child(accounts: int, months: int, events: bool, root: Path, density: float | None) -> None:
    """Generate one landing zone and print rows, files and seconds per source as JSON."""
    from helpers.demo.generate import EVENT_SOURCES, Timings, generate
    from helpers.demo.spec import DemoSpec

    timings = Timings()
    t0 = time.perf_counter()
    spec = DemoSpec(accounts=accounts, months=months, end=END)
    if density is not None:
        spec = DemoSpec(accounts=accounts, months=months, end=END, events_per_user_day=density)
    summary = generate(spec, root, events=events, timings=timings)
    wall = time.perf_counter() - t0
    out = {}
    for name, info in summary.sources.items():
        seconds = timings.get("events", 0.0) if name in EVENT_SOURCES else timings.get(name, 0.0)
        out[name] = {"rows": info["rows"], "files": info["files"], "seconds": seconds}
    print(json.dumps({"wall": wall, "simulate": timings.get("simulate", 0.0), "sources": out}))


def run(accounts: int, months: int, events: bool, limit: int, density: float | None) -> dict:
    scale = accounts / BASE_ACCOUNTS
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        cmd = [sys.executable, __file__, "--child", str(accounts), "--months", str(months),
               "--root", str(Path(tmp) / "landing")]  # fmt: skip
        if not events:
            cmd.append("--no-events")
        if density is not None:
            cmd += ["--events-per-user-day", repr(density)]
        r = C.run_limited(cmd, mem_limit=limit, as_limit=limit + 2 * C.GiB, interval=0.02)
        if r.status != "ok":
            raise SystemExit(f"scale {scale}: the generator failed: {r.error}")
        result = json.loads(r.stdout.strip().splitlines()[-1])
        result.update(scale=scale, accounts=accounts, peak_rss_mb=r.peak_rss / 2**20, load=r.load_before)
        return result


def report(r: dict) -> None:
    print(
        f"\nscale {r['scale']:g}x: {r['accounts']:,} accounts — wall {r['wall']:.1f}s, peak RSS {r['peak_rss_mb']:,.0f} MB "
        f"(process tree), load average {r['load']}"
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
        "--scale",
        type=int,
        nargs="+",
        default=None,
        help="multiples of 2,000 accounts (default: 1; --full: 1 10)",
    )
    p.add_argument("--full", action="store_true", help="scales 1 and 10")
    p.add_argument("--accounts", type=int, nargs="+", help="sizes in accounts (instead of --scale)")
    p.add_argument("--events-per-user-day", type=float, help="event density (default: the demo's)")
    p.add_argument("--mem-limit", type=float, default=6, help="GiB for the generator's process tree")
    p.add_argument("--months", type=int, default=25)
    p.add_argument("--no-events", action="store_true", help="business sources only")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.months, not args.no_events, args.root, args.events_per_user_day)
        return
    scales = args.scale or ([1, 10] if args.full else [1])
    sizes = args.accounts or [BASE_ACCOUNTS * s for s in scales]
    C.header("bench_generator", f"demo-company generator, history {args.months} months to {END}")
    for accounts in sizes:
        limit = int(args.mem_limit * C.GiB)
        report(run(accounts, args.months, not args.no_events, limit, args.events_per_user_day))


if __name__ == "__main__":
    main()
