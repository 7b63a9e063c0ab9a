"""``workbook close`` and ``publications``: the month-end close from the command line (see
``helpers.investor.close``), and what is published.

``close`` builds the trailing months' missing investor figures (``--history N``, default 12), then
prints the close checklist (each pipeline, each check, its owner), which trend months are missing,
the month's sign-offs and the report's path; with ``--final``, the published HTML and its PDF.
``publications`` lists every published version with its HTML and PDF. Exit codes: 0 ok (a DRAFT without ``--final`` is not a failure), 1 a run failed or
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
from helpers.cli.board import refresh_status_page
from helpers.cli.common import as_of_arg, wall_clock
from helpers.cli.console import LAST, NEVER, Column
from helpers.cli.signoff import month_arg, print_signoffs
from helpers.core import config as cfgmod
from helpers.core.errors import UsageError

CHECKLIST_COLUMNS = ("section", "pipeline", "item", "status", "owner", "detail")
DEFAULT_HISTORY = 12  # helpers.investor.history.DEFAULT_MONTHS (not imported: the CLI stays light to load)
PUBLICATION_COLUMNS = (
    Column("period", "month", shrink=NEVER),
    Column("version", shrink=NEVER),
    Column("status", shrink=NEVER),
    Column("published", shrink=NEVER),
    Column("by", shrink=LAST, min_width=4, drop=1),
    Column("folder", shrink=LAST, min_width=12),
    Column("files", min_width=10),
)


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
    history = history_arg(args)
    title = f"close {args.month} as of {as_of:%Y-%m-%d %H:%M}Z"
    quiet = args.quiet or args.json
    with graceful_stop("close") as stop, ProgressBoard(title, enabled=not quiet) as board:
        result = close.run_close(
            args.month,
            as_of=as_of,
            clock=wall_clock,
            final=args.final,
            history=history,
            config=config,
            workers=args.workers,
            on_update=board.update,
            stop=stop,
            by=args.by or getpass.getuser(),
        )
    refresh_status_page(as_of, wall_clock())
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
    if result.history is not None:
        print(result.history.summary())
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
        if result.pdf:
            print(f"pdf: {result.pdf}")
        elif result.pdf_note:
            print(f"warning: {result.pdf_note}", file=sys.stderr)
    if result.report_html:
        print(f"report: {result.report_html}")
    elif not result.locked:
        print("report: not rendered (see the runs above)")
    return result.exit_code


def history_arg(args: argparse.Namespace) -> int:
    """``--history N`` (default 12; 0: none); ``--compare``, its deprecated alias, is ``--history 12``."""
    if args.compare:
        print("note: --compare is deprecated: the close builds the 12 months before by default (--history N)",
              file=sys.stderr)  # fmt: skip
    history = DEFAULT_HISTORY if args.history is None else args.history
    if history < 0:
        raise UsageError(
            f"--history: expected how many months before --month to build (0 or more), got {history}"
        )
    return history


def cmd_publications(args: argparse.Namespace) -> int:
    """Every published version of the investor report (``--month``: one month's), with its HTML and PDF."""
    from helpers.investor import publication

    period = month_arg(args.month) if args.month else None
    found = publication.publications(period)
    if args.json:
        console.print_json([p.as_json() for p in found])
        return 0
    root = publication.published_dir("x").parent
    rows = [
        {"period": p.period, "version": p.version, "status": p.status,
         "published": f"{p.published_at:%Y-%m-%d %H:%M}Z", "by": p.published_by,
         "folder": str(p.html.parent.relative_to(root)) if p.html.is_relative_to(root) else str(p.html.parent),
         "files": "html + pdf" if p.pdf else "html, no pdf"}
        for p in found
    ]  # fmt: skip
    console.print_table(rows, PUBLICATION_COLUMNS, title="Published investor reports",
                        empty="nothing published yet: workbook close --month M --final publishes")  # fmt: skip
    if found:
        print(f"folders under {root}/ (why a pdf is missing: publication.json there)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``close`` and ``publications`` to the ``workbook`` parser."""
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
        "--history",
        type=int,
        metavar="N",
        help=f"also build the missing investor figures of the N months before --month, for the report's "
        f"trends, MoM and YoY (default {DEFAULT_HISTORY}; 0: none; months the landing zone does not cover "
        "are left out, published ones never re-run)",
    )
    p.add_argument("--compare", action="store_true", help="deprecated: the default (--history 12)")
    p.add_argument("--workers", type=int, help="parallel runs (default: runner.workers in config)")
    p.add_argument("--brief", action="store_true", help="list only the checks that do not pass")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    p.add_argument("--json", action="store_true", help="print the result (runs, checklist, paths) as JSON")
    p.set_defaults(func=cmd_close)

    p = sub.add_parser(
        "publications", help="published investor reports: every version, its HTML and PDF, or withdrawn"
    )
    p.add_argument("--month", help="only this month, YYYY-MM")
    p.add_argument("--json", action="store_true", help="print the versions as JSON")
    p.set_defaults(func=cmd_publications)
