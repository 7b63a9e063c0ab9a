"""``workbook signoff``, ``reopen`` and ``audit``: signing a month's figures, reopening a published month,
and the month's audit log (see ``helpers.investor.signoff`` and ``helpers.investor.publication``).

Exit codes: 0 ok, 2 usage (a bad month, someone who is not an engineer, a month with no figures or
nothing to reopen), 5 the month is published and locked (``signoff`` on a locked month).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any

from helpers.cli import console
from helpers.cli.common import wall_clock
from helpers.core import config as cfgmod
from helpers.core.errors import EXIT_OK, UsageError

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
SIGNOFF_COLUMNS = ("id", "engineer", "signed", "status", "voided_by_run", "note")
AUDIT_COLUMNS = ("at", "event", "who", "what")


def month_arg(text: str | None) -> str:
    """``--month`` as YYYY-MM, or a usage error naming the flag."""
    if not _MONTH.match(text or ""):
        raise UsageError(f"--month: expected a month as YYYY-MM, got {text!r}")
    return str(text)


def signoff_rows(signoffs: Sequence[Any]) -> list[dict[str, Any]]:
    """Sign-offs as table rows (``status``: valid, void or superseded; a void one names the run)."""
    return [
        {
            "id": s.signoff_id,
            "engineer": s.engineer,
            "signed": f"{s.signed_at:%Y-%m-%d %H:%M}Z",
            "status": s.status,
            "voided_by_run": s.voided_by_run or "",
            "note": (s.note or "")[:30],
        }
        for s in signoffs
    ]


def print_signoffs(
    period: str, signoffs: Sequence[Any], required: Sequence[str], lacking: Sequence[str]
) -> None:
    """The month's sign-offs and who is still missing."""
    console.print_table(signoff_rows(signoffs), SIGNOFF_COLUMNS, title=f"Sign-offs {period}",
                        empty=f"no sign-off of {period} yet")  # fmt: skip
    need = ", ".join(required) or "nobody (close.required_signoffs: [])"
    print(f"required: {need}; " + (f"missing: {', '.join(lacking)}" if lacking else "all signed"))


def cmd_signoff(args: argparse.Namespace) -> int:
    """Record a sign-off (``--by``) and list the month's sign-offs; without ``--by``, only list them."""
    from helpers.investor import signoff

    period = month_arg(args.month)
    config = cfgmod.get()
    now = wall_clock()
    recorded = None
    if args.by:
        recorded = signoff.sign(period, args.by, note=args.note, now=now, config=config)
    else:
        signoff.refresh(period, now=now, config=config)
    items = signoff.list_signoffs(period)
    lacking = signoff.missing(period, config)
    if args.json:
        console.print_json({
            "period": period,
            "recorded": recorded.as_json() if recorded else None,
            "signoffs": [s.as_json() for s in items],
            "required": list(config.required_signoffs),
            "missing": lacking,
        })  # fmt: skip
        return EXIT_OK
    if recorded is not None:
        print(f"{recorded.engineer} signed off {period}: {len(recorded.figures)} figures of runs "
              + ", ".join(f"{p} {r}" for p, r in recorded.runs.items()))  # fmt: skip
    print_signoffs(period, items, config.required_signoffs, lacking)
    return EXIT_OK


def cmd_reopen(args: argparse.Namespace) -> int:
    """Unlock a published month, withdraw its report (kept), log it and tell the team."""
    from helpers.investor import publication

    period = month_arg(args.month)
    done = publication.reopen(period, by=args.by, reason=args.reason or "", now=wall_clock())
    if args.json:
        console.print_json(done.as_json())
        return EXIT_OK
    print(
        f"{period} reopened by {args.by}: version {done.version} withdrawn, {done.unlocked} partitions unlocked"
    )
    print(f"withdrawn report kept at: {done.withdrawn_to or '(its file was already gone)'}")
    print(f"notified: {', '.join(done.notified)}")
    print(f"next: fix, re-run, sign off again; `workbook close --month {period} --final` publishes "
          f"version {done.version + 1} with a Restated table")  # fmt: skip
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    """Every event of the month's close: close, sign-offs, voids, refusals, publications, reopenings."""
    from helpers.investor import signoff

    period = month_arg(args.month)
    signoff.refresh(period, now=wall_clock())  # a figure changed since: its void is an event too
    events = signoff.audit_events(period)
    if args.json:
        console.print_json([e.as_json() for e in events])
        return EXIT_OK
    rows = [
        {"at": f"{e.at:%Y-%m-%d %H:%M}Z", "event": e.event, "who": e.who, "what": e.what[:100]}
        for e in events
    ]
    console.print_table(
        rows, AUDIT_COLUMNS, title=f"Audit log {period}", empty=f"no close event for {period}"
    )
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``signoff``, ``reopen`` and ``audit`` to the ``workbook`` parser."""
    p = sub.add_parser(
        "signoff",
        help="sign off a month's investor figures (bound to the runs and figures now); list the sign-offs",
        description="Record that an engineer checked the month's investor figures. The sign-off is bound to "
        "those figures and runs; a run that changes one voids it. `workbook close --final` needs one from "
        "each engineer of close.required_signoffs. Exit codes: 0 ok, 2 usage, 5 the month is locked.",
    )
    p.add_argument("--month", required=True, help="the month, YYYY-MM")
    p.add_argument("--by", help="the engineer signing off (e.g. DE2); without it: list the sign-offs")
    p.add_argument("--note", help="what was checked, for the audit log")
    p.add_argument("--json", action="store_true", help="print the sign-offs as JSON")
    p.set_defaults(func=cmd_signoff)

    p = sub.add_parser(
        "reopen",
        help="unlock a published month and withdraw its report (kept), telling the team",
        description="Release the month's locks, mark its published report withdrawn (moved to withdrawn/vN/, "
        "never deleted), record it in the audit log and notify the team. The next `workbook close --final` "
        "publishes the next version, opening with a Restated table.",
    )
    p.add_argument("--month", required=True, help="the published month, YYYY-MM")
    p.add_argument("--by", required=True, help="the engineer reopening it (e.g. DE1)")
    p.add_argument("--reason", required=True, help="why: goes to the audit log and the team")
    p.add_argument("--json", action="store_true", help="print what was done as JSON")
    p.set_defaults(func=cmd_reopen)

    p = sub.add_parser("audit", help="the month's close events: close, sign-offs, voids, publish, reopen")
    p.add_argument("--month", required=True, help="the month, YYYY-MM")
    p.add_argument("--json", action="store_true", help="print the events as JSON")
    p.set_defaults(func=cmd_audit)
