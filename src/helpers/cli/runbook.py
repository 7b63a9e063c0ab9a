"""Verbs for runbooks: run one by hand, diagnose new alerts, list what was diagnosed.

``workbook runbook ID [--alert A] [-p key=value ...] [--apply-fix] [--as-of TS] [--json]`` runs a
runbook (diagnose mode unless ``--apply-fix``) and archives it under ``runs/incidents/<A>/`` (without
an alert ``runs/runbooks/<ID>/``); with ``--alert`` alone the alert's own runbook runs.
``workbook runbook --list`` lists the runbooks, ``workbook diagnose-alerts`` runs the scheduler's
"alerts arrive diagnosed" hook once, ``workbook diagnoses`` lists recorded diagnoses.

Exit codes: 0 ok, 1 the runbook failed (or, with ``--apply-fix``, its Verify still fails),
2 usage (unknown runbook, alert or parameter).
"""

from __future__ import annotations

import argparse
import sys

from helpers.cli import console
from helpers.cli.common import as_of_arg, wall_clock
from helpers.core.errors import EXIT_FAILED, EXIT_OK, UsageError


def cmd_runbook(args: argparse.Namespace) -> int:
    """``workbook runbook``."""
    from helpers.oncall import alerts as alertsmod
    from helpers.runbooks import registry as runbooks
    from helpers.runs import runner

    if args.list:
        return _list_runbooks(args)
    if not args.id and args.alert is None:
        raise UsageError("runbook: give a runbook ID, --alert A, or both (--list shows the runbooks)")
    now = wall_clock()
    as_of = as_of_arg(args.as_of) or now
    params = runner.parse_cli_params(args.param)
    requested = None
    if args.id:
        book = runbooks.find(args.id)
    else:
        alert = alertsmod.get_alert(args.alert)
        if alert is None:
            raise UsageError(f"--alert: no alert {args.alert}; `workbook alerts` lists them")
        res = runbooks.resolve_alert(alert)
        if res.runbook is None:
            raise UsageError(f"alert {args.alert}: {res.note}")
        if res.note:
            print(res.note, file=sys.stderr)
        book, requested = res.runbook, res.requested
    run = runbooks.run_runbook(
        book,
        clock=wall_clock,
        as_of=as_of,
        alert_id=args.alert,
        params=params,
        apply_fix=args.apply_fix,
        requested=requested,
    )
    verified = (run.verification or {}).get("passed")
    failed = run.status != "succeeded" or (args.apply_fix and verified is False)
    if args.json:
        console.print_json(run.as_json())
        return EXIT_FAILED if failed else EXIT_OK
    out = sys.stderr if failed else sys.stdout
    print(f"{run.runbook} ({run.mode}) {run.status}  run {run.run_id}", file=out)
    print(f"diagnosis: {run.diagnosis}", file=out)
    print(f"cause: {run.cause}", file=out)
    for fix in run.fixes:
        state = "applied" if fix.get("applied") else "dry run"
        print(
            f"fix ({state}): {fix.get('description')}"
            + (f"  ERROR {fix['error']}" if fix.get("error") else ""),
            file=out,
        )
    if run.verification:
        print(
            f"verify: {'passed' if verified else 'STILL FAILING' if verified is False else 'nothing to verify'}",
            file=out,
        )
    if run.error:
        print(f"error: {run.error}", file=out)
    print(f"archive: {run.archive}", file=out)
    print(f"open: {run.link}", file=out)
    return EXIT_FAILED if failed else EXIT_OK


def _list_runbooks(args: argparse.Namespace) -> int:
    from helpers.runbooks import registry as runbooks

    rows = runbooks.referenced()
    listed = {r["runbook"] for r in rows}
    rows += [
        {"runbook": b.relpath, "for": "operational", "exists": True}
        for b in runbooks.available()
        if b.relpath not in listed
    ]
    if args.json:
        console.print_json(rows)
    else:
        shown = [{**r, "exists": "yes" if r["exists"] else "to be written"} for r in rows]
        console.print_table(shown, ["runbook", "for", "exists"], title="Runbooks")
    return EXIT_OK


DIAGNOSIS_COLUMNS = (
    "alert_id",
    "runbook",
    "mode",
    "trigger",
    "status",
    "as_of",
    "cause",
    "diagnosis",
    "html",
)


def cmd_diagnoses(args: argparse.Namespace) -> int:
    """``workbook diagnoses``: recorded runbook runs, newest first."""
    from helpers.runbooks import registry as runbooks

    found = runbooks.list_runs(alert_id=args.alert, limit=args.limit)
    if args.json:
        console.print_json([r.as_json() for r in found])
        return EXIT_OK
    rows = [
        {
            "alert_id": r.alert_id,
            "runbook": r.runbook,
            "mode": r.mode,
            "trigger": r.trigger,
            "status": r.status,
            "as_of": r.as_of,
            "cause": r.cause,
            "diagnosis": (r.diagnosis or "")[:120],
            "html": str(r.html) if r.html else "",
        }
        for r in found
    ]
    console.print_table(rows, DIAGNOSIS_COLUMNS, title="Runbook runs", empty="no runbook has run yet")
    return EXIT_OK


def cmd_diagnose_alerts(args: argparse.Namespace) -> int:
    """``workbook diagnose-alerts``: the scheduler's hook, once (for system cron)."""
    from helpers.runbooks import registry as runbooks

    now = wall_clock()
    as_of = as_of_arg(args.as_of) or now
    limit = args.limit if args.limit is not None else runbooks.HOOK_MAX_PER_TICK
    done = runbooks.diagnose_new_alerts(as_of=as_of, now=now, limit=limit)
    if args.json:
        console.print_json([r.as_json() for r in done])
    else:
        for r in done:
            print(f"alert {r.alert_id}: {r.line}")
        if not done:
            print("no alert waiting for a diagnosis")
    return EXIT_FAILED if any(r.status == "failed" for r in done) else EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's verbs to the ``workbook`` parser."""
    p = sub.add_parser("runbook", help="run a runbook (diagnose mode unless --apply-fix) and archive it")
    p.add_argument(
        "id", nargs="?", help="runbook name (row_count_anomaly, profit/stale_data), catalogue id or path"
    )
    p.add_argument("--alert", type=int, help="the alert it is about (default runbook: the alert's own)")
    p.add_argument("-p", "--param", action="append", metavar="KEY=VALUE", help="extra notebook parameter")
    p.add_argument(
        "--apply-fix", action="store_true", help="perform the Fix section (default: diagnose only)"
    )
    p.add_argument("--as-of", help="the 'now' the runbook works at (ISO, UTC); default: now")
    p.add_argument("--list", action="store_true", help="list the runbooks, and which are still to be written")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_runbook)

    p = sub.add_parser(
        "diagnose-alerts", help="run the runbook of every new alert in diagnose mode (the tick hook)"
    )
    p.add_argument("--as-of", help="ISO, UTC; default: now")
    p.add_argument("--limit", type=int, help="at most this many alerts (default 6)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_diagnose_alerts)

    p = sub.add_parser("diagnoses", help="list recorded runbook runs and their diagnoses")
    p.add_argument("--alert", type=int, help="only this alert's")
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_diagnoses)
