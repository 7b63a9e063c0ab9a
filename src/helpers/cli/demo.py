"""``workbook demo-data``: generate the demo company's landing zone (``$WORKBOOK_HOME/data/landing``).

The wall clock is read here only, to default ``--end`` to the last day of the previous month
(and the command says which end it used); everything below takes the end explicitly.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

from helpers.cli import console
from helpers.cli.common import wall_clock
from helpers.core import paths
from helpers.core.errors import EXIT_OK, UsageError
from helpers.demo.spec import DemoSpec, FaultSpec


def default_end(today: dt.date) -> dt.date:
    """The last day of the month before ``today``'s."""
    return today.replace(day=1) - dt.timedelta(days=1)


def _spec(args: argparse.Namespace) -> tuple[DemoSpec, str]:
    if args.end:
        try:
            end = dt.date.fromisoformat(args.end)
        except ValueError:
            raise UsageError(f"--end {args.end!r}: expected a date YYYY-MM-DD") from None
        said = f"end {end} (--end)"
    else:
        end = default_end(wall_clock().date())
        said = f"end {end} (default: the last day of the previous month)"
    try:
        faults = tuple(FaultSpec.parse(f) for f in args.fault or ())
    except ValueError as e:
        raise UsageError(str(e)) from None
    spec = DemoSpec(
        accounts=args.accounts,
        months=args.months,
        seed=args.seed,
        end=end,
        events_per_user_day=args.events_per_user_day,
        faults=faults,
    )
    return spec, said


def cmd_demo_data(args: argparse.Namespace) -> int:
    """Generate the landing zone (or print the last complete month) and print the summary."""
    from helpers.demo import generate

    spec, said = _spec(args)
    if args.last_complete_month:
        print(generate.last_complete_month(spec))
        return EXIT_OK
    root = paths.landing_dir()
    quiet = args.quiet or args.json
    if not quiet:
        print(f"demo-data: {spec.accounts:,} accounts, {spec.months} months, seed {spec.seed}, {said}")

    def progress(message: str) -> None:
        if not quiet:
            print(f"  {message}", flush=True)

    t0 = time.perf_counter()
    try:
        summary = generate.generate(
            spec, root, events=not args.no_events, force=args.force, progress=progress
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    seconds = time.perf_counter() - t0
    if args.json:
        console.print_json({**summary.as_json(), "landing": str(root), "seconds": round(seconds, 2)})
        return EXIT_OK
    rows = [{"source": name, **info} for name, info in summary.sources.items()]
    console.print_table(
        rows,
        ["source", "rows", "files", "first_partition", "last_partition"],
        title=f"Demo landing zone {root} ({spec.start} .. {spec.end})",
    )
    if summary.faults:
        console.print_table(
            [
                {
                    "fault": r.fault,
                    "source": r.source,
                    "date": r.date,
                    "rows": len(r.rows),
                    "what": r.description,
                }
                for r in summary.faults
            ],
            ["fault", "source", "date", "rows", "what"],
            title="Faults injected (ground truth: _faults.json)",
        )
    else:
        print("no faults injected")
    total = sum(int(v["rows"]) for v in summary.sources.values())
    print(f"{total:,} rows in {seconds:.1f}s; ground truth in {root / generate.FAULTS_FILE}", file=sys.stdout)
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo-data`` verb to the ``workbook`` parser."""
    p = sub.add_parser(
        "demo-data",
        help="generate the demo company's landing zone (replaces a previous demo landing zone)",
        description="Generate the demo SaaS company's raw source extracts into $WORKBOOK_HOME/data/landing, "
        "optionally with faults from the failure catalogue (ground truth in data/landing/_faults.json).",
    )
    p.add_argument("--accounts", type=int, default=2000, help="accounts over the history (default 2000)")
    p.add_argument(
        "--months", type=int, default=25, help="months of history ending with --end's month (default 25)"
    )
    p.add_argument("--seed", type=int, default=42, help="random seed (same seed and arguments -> same bytes)")
    p.add_argument(
        "--end", help="last day of the history, YYYY-MM-DD (default: last day of the previous month)"
    )
    p.add_argument(
        "--fault",
        action="append",
        metavar="ID[@DATE][:key=value,...]",
        help="inject a failure-catalogue fault (repeatable), e.g. stale_data@2026-10-24:source=billing_invoices",
    )
    p.add_argument(
        "--events-per-user-day",
        type=float,
        default=DemoSpec.events_per_user_day,
        help="product event density",
    )
    p.add_argument("--no-events", action="store_true", help="skip the product events (business sources only)")
    p.add_argument("--force", action="store_true", help="replace a landing zone the generator did not write")
    p.add_argument(
        "--last-complete-month",
        action="store_true",
        help="print YYYY-MM of the history's last complete month (the --end month) and exit",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_demo_data)
