"""``workbook drill``: inject a catalogue fault into a sandboxed demo company and grade the response.

``workbook drill ID [--json] [--keep]`` runs one drill; ``workbook drill --all [--json]`` runs the 16
(one progress line per drill on stderr) and prints the table: id, fault injected, month, accounts,
detected (check), routed (who @ when), diagnosed (cause), repaired, rows lost, result, seconds.
Exit 1 if any drill fails, 2 for a bad id, date or parameter.
Sandboxes live under ``--workdir`` (default: a temporary folder, removed afterwards unless ``--keep``).

``--date YYYY-MM`` moves the drill to another month (``drill_specs.at``), ``--param k=v`` sets a
fault parameter (or the company's size: ``accounts``, ``months``, ``events_per_user_day``) and
``--seed S`` the demo company's seed (``drill_specs.with_params``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from helpers.cli import console
from helpers.core.errors import EXIT_FAILED, EXIT_OK, UsageError

if TYPE_CHECKING:
    from helpers.demo.drill_specs import DrillSpec

# The table fits 100 columns: the fault, the check and the cause give way first (--wide and --json
# show every field; the injected ``--fault`` text is whole in the lines under the table); the month
# and the seed are in the title. The fault column shows what follows the id (date and parameters).
COLUMNS = (
    console.Column("id", shrink=console.NEVER),
    console.Column("fault", shrink=console.FIRST, drop=3),
    console.Column("accounts", shrink=console.NEVER),
    console.Column("detected", shrink=console.FIRST, drop=2),
    console.Column("routed", shrink=console.NEVER),
    console.Column("diagnosed", shrink=console.FIRST, drop=1),
    console.Column("repaired", shrink=console.NEVER),
    console.Column("rows_lost", shrink=console.NEVER),
    console.Column("result", shrink=console.NEVER),
    console.Column("seconds", shrink=console.NEVER),
)


def table_row(r) -> dict:
    """A result's table row, the fault shown as what follows its id."""
    row = r.row()
    return {**row, "fault": row["fault"].removeprefix(r.id) or "-"}


def cmd_drill(args: argparse.Namespace) -> int:
    from helpers.demo import drill

    if args.all == bool(args.id):
        raise UsageError("drill: give a catalogue ID or --all (not both)")
    ids = list(drill.SPECS) if args.all else [args.id]
    if not args.all and args.id not in drill.SPECS:
        raise UsageError(f"drill: no drill {args.id!r}; expected one of: {', '.join(drill.SPECS)}")
    specs = drill_specs_for(ids, date=args.date, params=args.param or [], seed=args.seed, every=args.all)

    def progress(r: drill.DrillResult) -> None:
        row = r.row()
        detail = f" ({r.error})" if r.error else ""
        print(
            f"drill {row['id']}: {row['result']} in {row['seconds']} s - fault {r.fault} ({r.month}, "
            f"{r.accounts} accounts, seed {r.seed}), detected {row['detected']}, "
            f"routed {row['routed']}, diagnosed {row['diagnosed']}, repaired {row['repaired']}, "
            f"rows lost {row['rows_lost']}{detail}",
            file=sys.stderr,
            flush=True,
        )

    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        results = drill.run_drills(specs, workdir=workdir, keep=args.keep, progress=progress)
    else:
        with tempfile.TemporaryDirectory(prefix="workbook-drill-") as tmp:
            keep_dir = Path(tempfile.mkdtemp(prefix="workbook-drill-kept-")) if args.keep else None
            results = drill.run_drills(
                specs, workdir=keep_dir or Path(tmp), keep=args.keep, progress=progress
            )
    if args.json:
        console.print_json([r.as_json() for r in results] if args.all else results[0].as_json())
    else:
        first, tick = results[0], specs[0].tick_at
        title = f"drills in {first.month} (tick {tick:%Y-%m-%d %H:%M} UTC), demo seed {first.seed}"
        console.print_table([table_row(r) for r in results], COLUMNS, title=title, wide=args.wide)
        for r in results:
            print(f"{r.id}: injected --fault {r.fault} into {r.accounts} accounts")
        for r in results:
            if not r.passed:
                print(f"{r.id}: {_why(r)}", file=sys.stderr)
            if r.sandbox:
                print(f"{r.id}: sandbox kept at {r.sandbox}", file=sys.stderr)
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAILED


def drill_specs_for(
    ids: Sequence[str], *, date: str | None, params: Sequence[str], seed: int | None, every: bool
) -> list[DrillSpec]:
    """The specs of ``ids`` at ``date``'s month with ``params`` and ``seed`` (UsageError, exit 2, for a
    bad date, a malformed or unknown parameter, or a fault parameter with ``--all``)."""
    from helpers.demo import drill_specs

    try:
        months = drill_specs.months_between(date) if date else 0
        values = drill_specs.parse_params(params)
    except ValueError as e:
        raise UsageError(f"drill: {e}") from None
    if date and len(date.strip()) > 7:
        print(
            f"drill: --date {date}: a drill moves by whole months; it happens in "
            f"{drill_specs.shift_month(drill_specs.BASE_MONTH, months)}",
            file=sys.stderr,
        )
    faulty = sorted(set(values) - set(drill_specs.SHAPE_KEYS))
    if every and faulty:
        raise UsageError(
            f"drill: --param {faulty[0]}: with --all only the company's size may be set "
            f"({', '.join(drill_specs.SHAPE_KEYS)}); fault parameters differ per fault: give an ID"
        )
    out = []
    for drill_id in ids:
        spec = drill_specs.shift(drill_specs.spec_for(drill_id), months)
        try:
            out.append(drill_specs.with_params(spec, values, seed) if values or seed is not None else spec)
        except ValueError as e:
            raise UsageError(f"drill {drill_id}: {e}") from None
    if out:
        _warn_off_day(out[0].tick_at)
    return out


def _warn_off_day(tick: dt.datetime) -> None:
    """Say so when the tick's day is not a business day of the team's calendar (weekend, holiday)."""
    from helpers.core import config as cfgmod
    from helpers.core.businesscal import BusinessCalendar

    try:
        cal = BusinessCalendar.from_team(cfgmod.get().team)
        off = cal.holiday_name(tick.date()) or ("" if cal.is_business_day(tick.date()) else "weekend")
    except Exception:  # no readable team calendar: weekends only
        off = "weekend" if tick.weekday() >= 5 else ""
    if off:
        print(
            f"drill: the tick falls on {tick:%A %Y-%m-%d}, not a business day ({off}): business-hours "
            "pipelines (Growth) page on the next business day, after the drill's tick, so their "
            "routing is graded failed",
            file=sys.stderr,
        )


def _why(r) -> str:
    if r.error:
        return r.error
    if not r.detected.ok:
        return f"no alert with catalogue id {r.id} (failing checks: {', '.join(r.detected.checks) or 'none'})"
    if not r.routed.ok:
        return f"routed to {r.routed.line()}, the schedule says {','.join(r.routed.expected)} @ {r.routed.expected_at}"
    if not r.diagnosed.ok:
        return f"diagnosed {r.diagnosed.cause!r} by {r.diagnosed.runbook}: {r.diagnosed.diagnosis}"
    if not r.repaired.ok:
        bad = [d for d in r.repaired.diffs if not d.get("ok")]
        return f"not repaired (runbook {r.repaired.runbook_status}, verification {r.repaired.verification}); {bad[:3]}"
    return f"{r.rows_lost} rows lost"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``drill`` to the ``workbook`` parser."""
    p = sub.add_parser(
        "drill", help="fault drill: inject a catalogue fault in a sandbox and grade the response"
    )
    p.add_argument("id", nargs="?", help="a failure-catalogue id (docs/architecture.md)")
    p.add_argument("--all", action="store_true", help="run all 16 drills and print the table")
    p.add_argument("--json", action="store_true", help="print the result(s) as JSON")
    p.add_argument("--wide", action="store_true", help="every column of the table, whatever the width")
    p.add_argument("--keep", action="store_true", help="keep the sandbox (its WORKBOOK_HOME) for inspection")
    p.add_argument("--workdir", help="where sandboxes are built (default: a temporary folder)")
    p.add_argument(
        "--date",
        metavar="YYYY-MM",
        help="the month the drill happens in (default 2026-09; YYYY-MM-DD uses its month): the fault, "
        "runs and figures move by whole months, a day <= 15 keeps its day of month, a later day its "
        "distance from the month's end, the tick and the fix stay on the 1st of the next month",
    )
    p.add_argument(
        "--param",
        action="append",
        metavar="K=V",
        help="a fault parameter (overrides or extends the drill's, e.g. days=5), or the demo company's "
        "size: accounts=N, months=N, events_per_user_day=X (repeatable; with --all only the size)",
    )
    p.add_argument("--seed", type=int, help="the demo company's seed (default: the drill's, 7)")
    p.set_defaults(func=cmd_drill)
