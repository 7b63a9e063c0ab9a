"""The ``workbook`` command: its parser, the run, runs, validate and config verbs, and the dispatch.

Each module of :data:`VERB_MODULES` registers its verbs. The CLI is the only layer that reads the
wall clock (``helpers.cli.common.wall_clock``).

Exit codes (docs/architecture.md): 0 ok, 1 failed, 2 usage or bad input, 3 blocked by an upstream,
4 refused because the same work is already running, 5 refused because the partition belongs to a
published month (locked; ``workbook reopen`` unlocks it).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from helpers.cli import board, close, console, demo, drill, explain, oncall, ops, rotation, runbook, signoff
from helpers.cli.common import as_of_arg as _as_of
from helpers.cli.common import wall_clock
from helpers.core import config as cfgmod
from helpers.core.errors import EXIT_CONFLICT, EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_USAGE, UsageError
from helpers.runs import records as runs
from helpers.runs.locks import PartitionLocked
from helpers.runs.reaper import reap_dead_runs
from helpers.storage.warehouse import RUN_STATUSES

# Modules that add verbs: each has ``register(subparsers)``; its handlers return an exit code.
VERB_MODULES = (ops, oncall, rotation, demo, runbook, close, drill, explain, signoff, board)
# Verbs that read runs: dead runs (their runner process gone) are marked failed first (reaper).
REAPING_VERBS = frozenset(
    {"run", "runs", "status", "checks", "tick", "run-all", "backfill", "close", "scheduler", "runbook"}
)

EXIT_CODES_HELP = """exit codes:
  0  ok
  1  failed (a run, a critical check, a refused --final, a failed tick step, a reader gone: `| head`)
  2  usage or bad input
  3  blocked by an upstream that did not succeed
  4  refused: the same work is already running
  5  locked: the partition belongs to a published (FINAL) month; `workbook reopen` unlocks it"""


# ---------------------------------------------------------------- verbs


def cmd_run(args: argparse.Namespace) -> int:
    from helpers.runs import runner  # papermill and nbconvert are slow to import: only when running

    result = runner.run_pipeline(
        args.pipeline,
        args.date,
        clock=wall_clock,
        as_of=_as_of(args.as_of),
        params=runner.parse_cli_params(args.param),
        progress=not args.quiet and console.is_terminal(sys.stderr),  # no bar into a log or a pipe
    )
    failing = _failing_checks(result.run_id)
    if args.json:
        console.print_json(
            {
                "run_id": result.run_id,
                "pipeline": result.pipeline,
                "logical_date": result.logical_date,
                "status": result.status,
                "archive": str(result.archive) if result.archive else None,
                "error": result.error,
                "failed_cell": result.failed_cell,
                "failing_checks": failing,
            }
        )
    elif result.status == "succeeded":
        print(f"{result.pipeline} {result.logical_date}: succeeded  run {result.run_id}")
        print(f"archive: {result.archive}")
        for c in failing:
            print(f"  {c['severity']} check failing: {c['check_id']}: {c['summary']}", file=sys.stderr)
    else:
        print(
            f"{result.pipeline} {result.logical_date}: {result.status}  run {result.run_id}", file=sys.stderr
        )
        print(f"  error: {result.error}", file=sys.stderr)
        print(f"  archive: {result.archive}  (open {result.archive}/notebook.html)", file=sys.stderr)
    return result.exit_code


def _failing_checks(run_id: str | None) -> list[dict[str, str]]:
    """The checks the run recorded as failing, critical first: a run can succeed with its data
    quarantined (a changed landing file, a missing column), and says so here."""
    if not run_id:
        return []
    from helpers.checks import store

    rows = [r for r in store.list_results(run_id=run_id) if r["status"] != "pass"]
    rows.sort(key=lambda r: (r["severity"] != "critical", r["check_id"]))
    return [{k: r[k] for k in ("check_id", "severity", "status", "summary")} for r in rows]


RUN_COLUMNS = (
    "run_id",
    "pipeline",
    "logical_date",
    "status",
    "started_at",
    "duration_s",
    "validation",
    "error",
)


def cmd_runs(args: argparse.Namespace) -> int:
    if args.pipeline:
        cfgmod.get().pipelines.get(args.pipeline)
    records = runs.list_runs(
        pipeline=args.pipeline, status=args.status, logical_date=args.date, limit=args.limit
    )
    if args.json:
        console.print_json([r.as_json() for r in records])
        return EXIT_OK
    rows = [
        {
            "run_id": r.run_id,
            "pipeline": r.pipeline,
            "logical_date": r.logical_date,
            "status": r.status,
            "started_at": r.started_at,
            "duration_s": r.duration_s,
            "validation": r.validation_status,
            "error": (r.error_summary or "")[:90],
        }
        for r in records
    ]
    console.print_table(rows, RUN_COLUMNS, title="Recent runs", empty="no runs recorded yet")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from helpers.runs import validate

    try:
        result = validate.validate_run(args.run_id, now=wall_clock())
    except LookupError as e:
        raise UsageError(str(e)) from None
    if args.json:
        console.print_json({"run_id": result.run_id, "passed": result.passed, "summary": result.summary})
    else:
        print(f"{result.run_id}: validation {'passed' if result.passed else 'FAILED'} ({result.summary})")
        if not result.passed and args.verbose:
            print(result.output)
    return EXIT_OK if result.passed else EXIT_FAILED


def cmd_config(args: argparse.Namespace) -> int:
    cfg = cfgmod.load()
    rows = [
        {
            "pipeline": p.id,
            "primary": "team" if p.owners.team else p.owners.primary,
            "secondary": p.owners.secondary or "",
            "depends_on": ", ".join(p.depends_on),
            "schedule": p.schedule,
            "freshness_h": f"{p.sla.freshness_warn_hours:g}/{p.sla.freshness_critical_hours:g}",
            "fix_days": p.sla.fix_business_days,
            "oncall": p.sla.oncall_mode,
        }
        for p in (cfg.pipelines.pipelines[k] for k in cfg.pipelines.order())
    ]
    if args.json:
        console.print_json(rows)
    else:
        console.print_table(
            rows, list(rows[0]) if rows else [], title=f"Configuration ({cfg.directory}): valid"
        )
    return EXIT_OK


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbook",
        description="Run, watch and repair the data team's pipelines (see README.md).",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser(
        "run",
        help="run one pipeline notebook for one date/period and archive it",
        description="Run one pipeline notebook for one date or month and archive it. A partition of a "
        "published month is locked: the run is refused before it starts (exit 5), naming who signed it off.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("pipeline", help="pipeline id, e.g. profit_aggregate")
    p.add_argument("--date", required=True, help="logical date YYYY-MM-DD (monthly pipelines: YYYY-MM)")
    p.add_argument(
        "--as-of", help="the 'now' the run computes against (ISO, UTC); default: end of the period"
    )
    p.add_argument("-p", "--param", action="append", metavar="KEY=VALUE", help="extra notebook parameter")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar (none unless on a terminal)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("runs", help="list recent runs")
    p.add_argument("--pipeline")
    p.add_argument("--status", choices=RUN_STATUSES)
    p.add_argument("--date", help="only this logical date/period")
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("validate", help="re-execute an archived run with nbval against its own outputs")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="print nbval's output on failure")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("config", help="validate config/ and show the pipelines")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_config)

    for module in VERB_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; its exit code. A reader that goes away (``workbook alerts | head -1``) ends the
    command quietly with exit code 1 (see :func:`reader_gone`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.verb in REAPING_VERBS:
            reap_dead_runs(wall_clock())
        code = int(args.func(args))
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at interpreter exit
        return code
    except BrokenPipeError:
        return reader_gone()
    except (UsageError, cfgmod.ConfigError, ValueError) as e:
        console.error(str(e))
        return EXIT_USAGE
    except runs.RunConflict as e:
        console.error(f"refused: {e}")
        return EXIT_CONFLICT
    except PartitionLocked as e:
        console.error(f"refused: {e}")
        return EXIT_LOCKED
    except KeyboardInterrupt:
        console.error("interrupted")
        return EXIT_FAILED


def reader_gone() -> int:
    """The reader of stdout went away: stop writing, without a traceback, and exit 1.

    As Python's documentation recommends (signal module, "Note on SIGPIPE"): point stdout at
    ``/dev/null`` so the interpreter's final flush does not fail again. Exit code 1 (failed: the
    output was not all written), as Python itself uses for an unhandled ``EPIPE``.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a file descriptor (a test's capture)
        pass
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
