"""``workbook drill``: inject a catalogue fault into a sandboxed demo company and grade the response.

``workbook drill ID [--json] [--keep]`` runs one drill; ``workbook drill --all [--json]`` runs the 16
(one progress line per drill on stderr) and prints the table: id, detected (check), routed (who @
when), diagnosed (cause), repaired, rows lost, result, seconds. Exit 1 if any drill fails.
Sandboxes live under ``--workdir`` (default: a temporary folder, removed afterwards unless ``--keep``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from helpers.cli import console
from helpers.core.errors import EXIT_FAILED, EXIT_OK, UsageError

COLUMNS = ("id", "detected", "routed", "diagnosed", "repaired", "rows_lost", "result", "seconds")


def cmd_drill(args: argparse.Namespace) -> int:
    from helpers.demo import drill

    if args.all == bool(args.id):
        raise UsageError("drill: give a catalogue ID or --all (not both)")
    ids = list(drill.SPECS) if args.all else [args.id]
    if not args.all and args.id not in drill.SPECS:
        raise UsageError(f"drill: no drill {args.id!r}; expected one of: {', '.join(drill.SPECS)}")

    def progress(r: drill.DrillResult) -> None:
        row = r.row()
        detail = f" ({r.error})" if r.error else ""
        print(
            f"drill {row['id']}: {row['result']} in {row['seconds']} s - detected {row['detected']}, "
            f"routed {row['routed']}, diagnosed {row['diagnosed']}, repaired {row['repaired']}, "
            f"rows lost {row['rows_lost']}{detail}",
            file=sys.stderr,
            flush=True,
        )

    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        results = drill.run_drills(ids, workdir=workdir, keep=args.keep, progress=progress)
    else:
        with tempfile.TemporaryDirectory(prefix="workbook-drill-") as tmp:
            keep_dir = Path(tempfile.mkdtemp(prefix="workbook-drill-kept-")) if args.keep else None
            results = drill.run_drills(ids, workdir=keep_dir or Path(tmp), keep=args.keep, progress=progress)
    if args.json:
        console.print_json([r.as_json() for r in results] if args.all else results[0].as_json())
    else:
        console.print_table([r.row() for r in results], COLUMNS)
        for r in results:
            if not r.passed:
                print(f"{r.id}: {_why(r)}", file=sys.stderr)
            if r.sandbox:
                print(f"{r.id}: sandbox kept at {r.sandbox}", file=sys.stderr)
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAILED


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
    p.add_argument("--keep", action="store_true", help="keep the sandbox (its WORKBOOK_HOME) for inspection")
    p.add_argument("--workdir", help="where sandboxes are built (default: a temporary folder)")
    p.set_defaults(func=cmd_drill)
