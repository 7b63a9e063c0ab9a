"""``workbook close``: the month-end close from the command line (see ``helpers.investor.close``).

Prints the close checklist (each pipeline, each check, its owner), the month's sign-offs and the
report's path. Exit codes: 0 ok (a DRAFT without ``--final`` is not a failure), 1 a run failed or
``--final`` was refused (the blocker or the missing sign-off is named), 2 usage, 3 something was
blocked by an upstream, 4 the same work is running, 5 ``--final`` on a month already published and
locked (``workbook reopen`` first).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from typing import Any

from helpers.cli import console
from helpers.cli.common import as_of_arg, wall_clock
from helpers.cli.signoff import month_arg, print_signoffs
from helpers.core import config as cfgmod
from helpers.core.errors import UsageError

CHECKLIST_COLUMNS = ("section", "pipeline", "item", "status", "owner", "detail")


def print_incidents(month: str, items: Sequence[Any], shown: int = 5) -> None:
    """The incidents open for the month, with their owners (critical ones keep it DRAFT)."""
    if not items:
        print(f"open incidents touching {month}: none")
        return
    blocking = sum(not i.ok for i in items)
    print(
        f"open incidents touching {month}: {len(items)} ({blocking} critical about the month: no FINAL while open)"
    )
    for i in sorted(items, key=lambda i: i.ok)[:shown]:
        mark = "blocks" if not i.ok else "about now"
        print(f"  {console.ellipsize(i.item, 64)}  {mark}, owner {i.owner}")
    if len(items) > shown:
        print(f"  and {len(items) - shown} more: workbook incidents")


def cmd_close(args: argparse.Namespace) -> int:
    """Run the close of ``--month`` at ``--as-of`` (default: now) and print the checklist."""
    from helpers.cli.ops import ProgressBoard, graceful_stop
    from helpers.investor import close

    month_arg(args.month)
    config = cfgmod.get()
    as_of = as_of_arg(args.as_of) or wall_clock()
    try:
        close.close_partitions(args.month, as_of)
    except ValueError as e:
        raise UsageError(f"--month/--as-of: {e}") from None
    title = f"close {args.month} as of {as_of:%Y-%m-%d %H:%M}Z"
    quiet = args.quiet or args.json
    with graceful_stop("close") as stop, ProgressBoard(title, enabled=not quiet) as board:
        result = close.run_close(
            args.month,
            as_of=as_of,
            clock=wall_clock,
            final=args.final,
            compare=args.compare,
            config=config,
            workers=args.workers,
            on_update=board.update,
            stop=stop,
            by=args.by or getpass.getuser(),
        )
    if args.json:
        console.print_json(result.as_json())
        return result.exit_code
    rows = [{**r, "detail": str(r["detail"])[:140]} for r in result.status.checklist().to_dict("records")]
    if args.brief:
        rows = [r for r in rows if r["status"] != "ok" or r["section"] != "checks"]
    console.print_table(
        rows, CHECKLIST_COLUMNS, title=f"Close checklist {args.month} ({result.status.label})"
    )
    passed = sum(i.ok for i in result.status.items if i.section == "checks")
    total = sum(i.section == "checks" for i in result.status.items)
    print(f"{passed} of {total} checks pass" + (" (passing ones not listed: --brief)" if args.brief else ""))
    print_incidents(args.month, [i for i in result.status.items if i.section == "incidents"])
    for o in result.outcomes:
        if o.status in ("failed", "blocked", "conflict"):
            print(f"  {o.pipeline} {o.partition}: {o.status}: {o.reason}", file=sys.stderr)
    status = result.status
    print(f"status: {status.label}" + ("" if status.final else f" ({len(status.blockers)} blocker(s))"))
    if not status.final:
        print(f"first blocker: {status.blocker_lines(1)[0]}")
    if result.finance_pack_html:
        print(f"finance pack: {result.finance_pack_html}")
    print_signoffs(args.month, result.signoffs, config.required_signoffs, result.missing_signoffs)
    if result.locked:
        print(f"nothing run: {result.locked}")
    if result.refused:
        console.error(result.refused)
    if result.published:
        print(f"published (version {result.version}): {result.published}")
    if result.report_html:
        print(f"report: {result.report_html}")
    elif not result.locked:
        print("report: not rendered (see the runs above)")
    return result.exit_code


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``close`` to the ``workbook`` parser."""
    p = sub.add_parser(
        "close", help="month-end close: run the month's DAG, checks and report; print the checklist"
    )
    p.add_argument("--month", required=True, help="the month to close, YYYY-MM")
    p.add_argument("--as-of", help="the 'now' of the runs and checks (ISO, UTC); default: now")
    p.add_argument(
        "--final",
        action="store_true",
        help="publish the report and lock the month; refused (exit 1) while anything blocks it or a required "
        "sign-off is missing, and (exit 5) when the month is already published",
    )
    p.add_argument("--by", help="who runs the close, for the audit log (default: your login name)")
    p.add_argument(
        "--compare",
        action="store_true",
        help="first build the figures of the month before and a year before when missing (MoM, YoY)",
    )
    p.add_argument("--workers", type=int, help="parallel runs (default: runner.workers in config)")
    p.add_argument("--brief", action="store_true", help="list only the checks that do not pass")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    p.add_argument("--json", action="store_true", help="print the result (runs, checklist, paths) as JSON")
    p.set_defaults(func=cmd_close)
