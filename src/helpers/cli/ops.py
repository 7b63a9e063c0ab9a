"""Verbs for running many pipelines and watching them: run-all, backfill, scheduler, tick, checks, alerts.

Exit codes as everywhere: 0 ok, 1 failed, 2 usage, 3 blocked by an upstream, 4 already running.
``checks`` exits 1 when any critical check fails, so cron and CI can react to it; ``tick`` exits 1
when one of its steps failed (the others still ran).

Signals: ``backfill`` turns SIGTERM into an interrupt at once (the run in flight is recorded
failed; re-running the same command resumes). ``run-all`` and ``scheduler`` stop gracefully on the
first SIGTERM/SIGINT (running notebooks finish, nothing new starts) and exit at once on a second
one (the cut-off runs are detected as dead by the run lock later).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from helpers.cli import console
from helpers.cli.board import refresh_status_page
from helpers.cli.common import as_of_arg, interrupt_on_sigterm, wall_clock
from helpers.cli.console import LAST, NEVER, Column, format_age, id_key
from helpers.core import config as cfgmod
from helpers.core.errors import EXIT_FAILED, EXIT_OK, UsageError
from helpers.oncall import alerts as alertsmod
from helpers.runbooks import tick
from helpers.runs.dag import Dag
from helpers.runs.reaper import reap_dead_runs

if TYPE_CHECKING:
    from helpers.runs.scheduler import HookOutcome

STATE_STYLE = {
    "pending": "dim",
    "running": "cyan",
    "succeeded": "green",
    "failed": "bold red",
    "blocked": "yellow",
    "skipped": "dim",
    "conflict": "magenta",
    "locked": "bold magenta",
    "cancelled": "dim",
}


# ---------------------------------------------------------------- shared pieces


class ProgressBoard:
    """A live table of each pipeline's state (stderr), updated from ``on_update`` callbacks.

    Only on a terminal: when stderr is a pipe or a file (cron, CI, ``2>log``) it draws nothing, and
    the command's summary says how the runs ended.
    """

    def __init__(self, title: str, *, enabled: bool = True) -> None:
        self.title = title
        self.enabled = enabled and console.is_terminal(sys.stderr)
        self.rows: dict[tuple[str, str], Any] = {}
        self.lock = threading.Lock()
        self.live: Live | None = None

    def __enter__(self) -> ProgressBoard:
        if self.enabled:
            self.live = Live(self._render(), console=Console(file=sys.stderr), refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.__exit__(*exc)

    def update(self, outcome: Any) -> None:
        with self.lock:
            self.rows[(outcome.pipeline, outcome.partition)] = outcome
            if self.live is not None:
                self.live.update(self._render())

    def _render(self) -> Table:
        table = Table(title=self.title, header_style="bold")
        for col in ("pipeline", "partition", "state", "run id", "detail"):
            table.add_column(col, overflow="fold")
        for o in self.rows.values():
            style = STATE_STYLE.get(o.status, "")
            table.add_row(
                o.pipeline,
                o.partition,
                f"[{style}]{o.status}[/{style}]" if style else o.status,
                o.run_id or "",
                (o.reason or "").replace("[", r"\[")[:120],
            )
        return table


@contextlib.contextmanager
def graceful_stop(label: str) -> Iterator[threading.Event]:
    """First SIGTERM/SIGINT sets the event; a second one exits at once."""
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            sys.stderr.write(f"{label}: second signal, exiting now\n")
            os._exit(EXIT_FAILED)  # worker threads are inside papermill: nothing else would end them
        stop.set()
        sys.stderr.write(f"{label}: stopping after the running work (signal again to exit now)\n")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _date_arg(text: str, flag: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag}: expected a date as YYYY-MM-DD, got {text!r}") from None


def _pipelines_arg(text: str | None, config: cfgmod.WorkbookConfig) -> list[str] | None:
    if not text:
        return None
    chosen = [p.strip() for p in text.split(",") if p.strip()]
    for p in chosen:
        try:
            config.pipelines.get(p)
        except cfgmod.ConfigError as e:
            raise UsageError(f"--pipelines: {e}") from None
    return chosen


def _after_runs_checks(
    outcomes: Sequence[Any], as_of: dt.datetime, config: cfgmod.WorkbookConfig
) -> list[alertsmod.AlertChange]:
    """Evaluate the monitors of the pipelines just run and their dependants (failures, blocks, SLAs)."""
    from helpers import checks

    involved = {o.pipeline for o in outcomes}
    if not involved:
        return []
    graph = Dag.from_config(config.pipelines)
    scope = involved | {d for p in involved for d in graph.descendants(p)}
    _results, changes = checks.evaluate_monitors(
        as_of, pipelines=sorted(scope), now=wall_clock(), config=config
    )
    return changes


def _print_changes(changes: Sequence[alertsmod.AlertChange]) -> None:
    opened = sorted((c for c in changes if c.action == "opened"), key=lambda c: id_key(c.alert_id))
    for c in opened:
        print(f"alert {c.alert_id} opened: {c.severity} {c.check_id} {c.partition}", file=sys.stderr)
    resolved = sum(c.action == "resolved" for c in changes)
    if resolved:
        print(f"{resolved} alert(s) resolved", file=sys.stderr)


# ---------------------------------------------------------------- run-all and backfill


def cmd_run_all(args: argparse.Namespace) -> int:
    """``workbook run-all``."""
    from helpers.runs import orchestrate

    config = cfgmod.get()
    day = _date_arg(args.date, "--date")
    chosen = _pipelines_arg(args.pipelines, config)
    as_of = as_of_arg(args.as_of) or wall_clock()
    with graceful_stop("run-all") as stop, ProgressBoard(f"run-all {day}", enabled=not args.quiet) as board:
        outcomes = orchestrate.run_all(
            day,
            clock=wall_clock,
            as_of=as_of,
            pipelines=chosen,
            config=config,
            workers=args.workers,
            on_update=board.update,
            stop=stop,
        )
    changes = [] if args.no_checks else _after_runs_checks(outcomes, as_of, config)
    code = orchestrate.exit_code(outcomes)
    if args.json:
        console.print_json(
            {
                "date": day,
                "as_of": as_of,
                "exit_code": code,
                "outcomes": [o.as_json() for o in outcomes],
                "alerts": [c.__dict__ for c in changes],
            }
        )
    else:
        _print_summary(outcomes)
        _print_changes(changes)
    return code


def _print_summary(outcomes: Sequence[Any]) -> None:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing to do")
    for o in outcomes:
        if o.status in ("failed", "blocked", "conflict", "locked"):
            why = o.reason if (o.reason or "").startswith(f"{o.status}:") else f"{o.status}: {o.reason}"
            print(f"  {o.pipeline} {o.partition}: {why}", file=sys.stderr)


def cmd_backfill(args: argparse.Namespace) -> int:
    """``workbook backfill``."""
    from helpers.runs import orchestrate

    config = cfgmod.get()
    start, end = _date_arg(args.start, "--from"), _date_arg(args.end, "--to")
    if start > end:  # before anything is drawn
        raise UsageError(f"--from {start} is after --to {end}: expected --from on or before --to")
    try:
        config.pipelines.get(args.pipeline)
    except cfgmod.ConfigError as e:
        raise UsageError(f"backfill: {e}") from None
    as_of = as_of_arg(args.as_of) or wall_clock()
    title = f"backfill {args.pipeline} {start}..{end}"
    try:
        with interrupt_on_sigterm(), ProgressBoard(title, enabled=not args.quiet) as board:
            outcomes = orchestrate.backfill(
                args.pipeline,
                start,
                end,
                clock=wall_clock,
                as_of=as_of,
                force=args.force,
                downstream=args.downstream,
                config=config,
                on_update=board.update,
            )
    except KeyboardInterrupt:
        console.error("backfill interrupted; run the same command again to resume")
        return EXIT_FAILED
    changes = [] if args.no_checks else _after_runs_checks(outcomes, as_of, config)
    code = orchestrate.exit_code(outcomes)
    if args.json:
        console.print_json(
            {
                "exit_code": code,
                "outcomes": [o.as_json() for o in outcomes],
                "alerts": [c.__dict__ for c in changes],
            }
        )
    else:
        _print_summary(outcomes)
        _print_changes(changes)
    return code


# ---------------------------------------------------------------- scheduler


def scheduler_hooks() -> list[Any]:
    """The hooks of every ``workbook scheduler`` tick (``runbooks.tick.scheduler_hooks``): the
    monitors, the dropped-slot checks among them, then diagnosis and escalation."""
    return list(tick.scheduler_hooks())


def slot_lines(result: Any) -> list[str]:
    """What a tick did with the slots it did not simply run: dropped ones, coalesced ones."""
    lines = []
    if result.dropped:
        names = ", ".join(f"{s.pipeline} {s.item.partition}" for s in result.dropped)
        lines.append(
            f"dropped {len(result.dropped)} slot(s) older than catch_up_days={result.catch_up_days}: {names}"
        )
    if result.coalesced:
        keepers: dict[Any, int] = {}
        for keeper in result.coalesced.values():
            keepers[keeper] = keepers.get(keeper, 0) + 1
        names = ", ".join(f"{k.pipeline} {k.item.partition} ({n + 1} slots)" for k, n in keepers.items())
        lines.append(f"coalesced {len(result.coalesced)} slot(s) into one run per partition: {names}")
    return lines


def _dropped_alerts(result: Any) -> list[alertsmod.AlertChange]:
    """The dropped-slot alert changes of the tick's monitor pass (none when it failed)."""
    from helpers.checks import evaluate_monitors
    from helpers.runs.scheduler import hook_name

    name = hook_name(evaluate_monitors)
    return [
        c
        for o in result.hook_outcomes
        if o.name == name and o.error is None
        for c in o.value[1]
        if c.check_id.endswith(".slots_dropped")
    ]


def cmd_scheduler(args: argparse.Namespace) -> int:
    """``workbook scheduler`` (long-running, ``--once`` or ``--crontab``)."""
    from helpers.runs import scheduler

    config = cfgmod.get()
    if args.crontab:
        print("\n".join(scheduler.crontab_lines(config)))
        return EXIT_OK
    chosen = _pipelines_arg(args.pipelines, config)
    if args.once:
        as_of = as_of_arg(args.as_of) or wall_clock()
        with (
            graceful_stop("scheduler") as stop,
            ProgressBoard(f"tick {as_of:%Y-%m-%d %H:%M}Z", enabled=not args.quiet) as board,
        ):
            result = scheduler.tick(
                as_of,
                clock=wall_clock,
                config=config,
                pipelines=chosen,
                stop=stop,
                on_update=board.update,
                hooks=scheduler_hooks(),
            )
        if args.json:
            console.print_json(result.as_json())
        else:
            print(
                f"tick {result.tick_id} at {result.as_of:%Y-%m-%d %H:%M}Z: {len(result.slots)} slot(s) claimed "
                f"since {result.window_start:%Y-%m-%d %H:%M}Z, {result.status}"
            )
            for line in slot_lines(result):
                print(line)
            _print_summary(result.outcomes)
            _print_changes(_dropped_alerts(result))
            for hook, err in result.hook_errors.items():
                print(f"  hook {hook} failed: {err}", file=sys.stderr)
        from helpers.runs import orchestrate

        return orchestrate.exit_code(result.outcomes)
    if args.as_of:
        raise UsageError("--as-of only applies with --once (the long-running scheduler follows the clock)")

    def on_tick(result: Any) -> None:
        try:  # a long-running scheduler: runs that died meanwhile are closed at each tick
            reap_dead_runs(wall_clock())
        except Exception as exc:  # the scheduler keeps ticking; the next tick tries again
            print(f"closing dead runs failed: {exc}", file=sys.stderr, flush=True)
        print(
            f"tick {result.tick_id} at {result.as_of:%Y-%m-%d %H:%M:%S}Z: {len(result.slots)} slot(s), "
            f"{len(result.outcomes)} run(s), {result.status}",
            flush=True,
        )
        for line in slot_lines(result):
            print(f"  {line}", flush=True)
        _print_changes(_dropped_alerts(result))

    with graceful_stop("scheduler") as stop:
        print(f"scheduler started (pid {os.getpid()}); SIGTERM or Ctrl-C stops it", flush=True)
        ticks = scheduler.serve(
            clock=wall_clock,
            stop=stop,
            config=config,
            pipelines=chosen,
            on_tick=on_tick,
            hooks=scheduler_hooks(),
        )
    print(f"scheduler stopped after {ticks} tick(s)", flush=True)
    return EXIT_OK


# ---------------------------------------------------------------- tick


def cmd_tick(args: argparse.Namespace) -> int:
    """``workbook tick``: what every scheduler tick does after its runs, on its own.

    Evaluate the monitors, diagnose the new alerts with their runbooks, escalate
    (``runbooks.tick.scheduler_hooks``, through ``runs.scheduler.run_hooks`` like the scheduler).
    A failing step is reported and exits 1; the steps after it still run. No pipeline runs and no
    ``scheduler_ticks`` row: the built-in scheduler's catch-up window is left alone.
    """
    from helpers.oncall.notify import list_notifications
    from helpers.runs import scheduler

    config = cfgmod.get()
    as_of = as_of_arg(args.as_of) or wall_clock()
    seen = list_notifications(limit=1)
    last_id = int(seen[0]["notification_id"]) if seen else 0
    outcomes = scheduler.run_hooks(
        tick.scheduler_hooks(),
        as_of=as_of,
        clock=wall_clock,
        pipelines=Dag.from_config(config.pipelines).order(),
        config=config,
    )
    sent = [n for n in list_notifications(limit=100_000) if int(n["notification_id"]) > last_id]
    summary = tick_summary(outcomes, sent)
    failed = [o for o in outcomes if o.error is not None]
    refresh_status_page(as_of, wall_clock())
    if args.json:
        console.print_json({"as_of": as_of, "exit_code": EXIT_FAILED if failed else EXIT_OK, **summary})
    elif not args.quiet:
        print_tick_summary(as_of, summary)
    for o in failed:
        console.error(f"tick step {o.name} failed: {o.error}")
    return EXIT_FAILED if failed else EXIT_OK


def tick_summary(outcomes: Sequence[HookOutcome], sent: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a tick did, from its steps' return values and the notifications recorded meanwhile."""
    out: dict[str, Any] = {
        "steps": [{"step": o.name, "ok": o.error is None, "error": o.error} for o in outcomes],
        "checks": None,
        "alerts": {"opened": [], "updated": [], "resolved": []},
        "diagnoses": [],
        "notifications": {"sent": 0, "failed": 0, "by_recipient": {}},
    }
    for o in outcomes:
        value = o.value
        if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, list) for v in value):
            results, changes = value  # checks.evaluate_monitors
            out["checks"] = {
                "evaluated": len(results),
                "failing": sum(bool(getattr(r, "failed", False)) for r in results),
                "critical": sum(
                    bool(getattr(r, "failed", False)) and getattr(r, "severity", "") == "critical"
                    for r in results
                ),
            }
            for c in changes:
                out["alerts"].setdefault(c.action, []).append(c.alert_id)
        elif isinstance(value, list) and all(hasattr(v, "runbook") and hasattr(v, "cause") for v in value):
            out["diagnoses"] += [  # registry.diagnose_new_alerts
                {"alert_id": r.alert_id, "runbook": r.runbook, "status": r.status, "cause": r.cause}
                for r in value
            ]
    for kind in out["alerts"]:
        out["alerts"][kind] = sorted(out["alerts"][kind], key=id_key)
    out["diagnoses"].sort(key=lambda d: id_key(d["alert_id"]))
    notes = out["notifications"]
    for n in sent:
        if n["status"] == "sent" and n["channel"] == "warehouse":  # the inbox: one row per person and message
            notes["sent"] += 1
            notes["by_recipient"][n["recipient"]] = notes["by_recipient"].get(n["recipient"], 0) + 1
        elif n["status"] in ("failed", "gave_up"):
            notes["failed"] += 1
    return out


def print_tick_summary(as_of: dt.datetime, summary: Mapping[str, Any]) -> None:
    """The tick's summary for people: a few lines, each fitting the terminal."""
    width, mark = console.output_width(), console.ellipsis_for()
    lines = [f"tick at {as_of:%Y-%m-%d %H:%M}Z"]
    checks = summary["checks"]
    if checks is not None:
        lines.append(
            f"  checks: {checks['evaluated']} evaluated, {checks['failing']} failing "
            f"({checks['critical']} critical)"
        )
    alerts = summary["alerts"]
    lines.append(
        "  alerts: "
        + ", ".join(f"{len(alerts.get(k, []))} {k}" for k in ("opened", "updated", "resolved"))
        + (f" (opened: {', '.join(str(a) for a in alerts['opened'])})" if alerts.get("opened") else "")
    )
    lines.append(f"  diagnosed: {len(summary['diagnoses'])} alert(s)")
    for d in summary["diagnoses"]:
        lines.append(f"    alert {d['alert_id']}: {d['runbook']}: {d['cause'] or d['status']}")
    notes = summary["notifications"]
    who = ", ".join(f"{k} {v}" for k, v in sorted(notes["by_recipient"].items()))
    lines.append(
        f"  notifications: {notes['sent']} to people, {notes['failed']} deliveries failed"
        + (f" ({who})" if who else "")
    )
    for line in lines:
        print(console.ellipsize(line, width, mark=mark) if len(line) > width else line)


# ---------------------------------------------------------------- checks and alerts

CHECK_COLUMNS = (
    Column("check_id", "check", shrink=LAST, min_width=24),
    Column("pipeline", shrink=LAST, min_width=12),
    Column("partition", shrink=NEVER, drop=2),
    Column("status", shrink=NEVER),
    Column("severity", shrink=NEVER),
    Column("summary", min_width=30),
)


def cmd_checks(args: argparse.Namespace) -> int:
    """``workbook checks``: evaluate the monitors; exit 1 when a critical check fails."""
    from helpers import checks

    config = cfgmod.get()
    if args.pipeline:
        _pipelines_arg(args.pipeline, config)
    now = wall_clock()
    as_of = as_of_arg(args.as_of) or now
    results, changes = checks.evaluate_monitors(
        as_of, pipelines=[args.pipeline] if args.pipeline else None, now=now, config=config
    )
    critical = [r for r in results if r.failed and r.severity == "critical"]
    if args.json:
        console.print_json(
            {
                "as_of": as_of,
                "results": [r.as_json() for r in results if args.all or r.failed],
                "alerts": [c.__dict__ for c in changes],
                "failed": sum(r.failed for r in results),
                "critical": len(critical),
            }
        )
    elif not args.quiet:
        shown = [r for r in results if args.all or r.failed]
        console.print_table(
            [r.as_json() for r in shown],
            CHECK_COLUMNS,
            title=f"Checks as of {as_of:%Y-%m-%d %H:%M}Z",
            empty="every check passed",
            wide=args.wide,
        )
        print(f"{len(results)} checks, {sum(r.failed for r in results)} failing ({len(critical)} critical)")
        _print_changes(changes)
    return EXIT_FAILED if critical else EXIT_OK


# Left out first when the terminal is narrow (``drop``): partition, check, diagnosis, runbook
# (`workbook runbook --alert ID` finds it).
ALERT_COLUMNS = (
    Column("alert_id", "id", shrink=NEVER),
    Column("severity", shrink=NEVER),
    Column("status", shrink=NEVER),
    Column("pipeline", shrink=LAST, min_width=12),
    Column("owner", shrink=NEVER),
    Column("check_id", "check", shrink=LAST, drop=5, min_width=20),
    Column("partition", shrink=NEVER, drop=6),
    Column("age", shrink=NEVER),
    Column("runbook", shrink=LAST, drop=3, min_width=14),
    Column("summary", min_width=24),
    Column("diagnosis", drop=4, min_width=30),
)


def cmd_alerts(args: argparse.Namespace) -> int:
    """``workbook alerts``: by id (as numbers); one line each, fitting the terminal unless ``--wide``."""
    config = cfgmod.get()
    if args.pipeline:
        _pipelines_arg(args.pipeline, config)
    as_of = as_of_arg(args.as_of) or wall_clock()
    found = sorted(
        alertsmod.list_alerts(open_only=args.open, pipeline=args.pipeline), key=lambda a: id_key(a.alert_id)
    )
    from helpers.runbooks import (
        registry as runbooks,  # alerts arrive diagnosed: show the runbook's diagnosis and link
    )

    diag = runbooks.latest_diagnoses([a.alert_id for a in found])
    if args.json:
        out = []
        for a in found:
            item = a.as_json(as_of)
            item["age"] = format_age(a.age(as_of))
            item["diagnosis"] = diag[a.alert_id].as_json() if a.alert_id in diag else None
            out.append(item)
        console.print_json(out)
        return EXIT_OK
    rows = [
        {
            "alert_id": a.alert_id,
            "severity": a.severity,
            "status": a.status,
            "pipeline": a.pipeline,
            "owner": "/".join(o for o in a.owners if o),
            "check_id": a.check_id,
            "partition": a.partition,
            "age": format_age(a.age(as_of)),
            "runbook": a.runbook
            if args.wide or not a.runbook
            else runbooks.Runbook.from_path(a.runbook).name,
            "summary": a.summary,
            "diagnosis": diag[a.alert_id].line if a.alert_id in diag else "",
        }
        for a in found
    ]
    title = f"{'Open alerts' if args.open else 'Alerts'} as of {as_of:%Y-%m-%d %H:%M}Z"
    console.print_table(rows, ALERT_COLUMNS, title=title, empty="no alerts", wide=args.wide)
    return EXIT_OK


# ---------------------------------------------------------------- parser


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's verbs to the ``workbook`` parser."""
    p = sub.add_parser("run-all", help="run every pipeline for a date in dependency order (parallel)")
    p.add_argument("--date", required=True, help="YYYY-MM-DD; monthly pipelines run its month")
    p.add_argument("--as-of", help="the 'now' of the runs and checks (ISO, UTC); default: now")
    p.add_argument("--pipelines", help="comma-separated subset (others are judged by their run records)")
    p.add_argument("--workers", type=int, help="parallel runs (default: runner.workers in config)")
    p.add_argument("--no-checks", action="store_true", help="do not evaluate the monitors afterwards")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    p.add_argument("--json", action="store_true", help="print the final states as JSON")
    p.set_defaults(func=cmd_run_all)

    p = sub.add_parser("backfill", help="run one pipeline over a date range, resumably")
    p.add_argument("pipeline")
    p.add_argument("--from", dest="start", required=True, help="first date YYYY-MM-DD")
    p.add_argument("--to", dest="end", required=True, help="last date YYYY-MM-DD (inclusive)")
    p.add_argument("--force", action="store_true", help="re-run partitions that already succeeded")
    p.add_argument("--downstream", action="store_true", help="then bring the dependants up to date")
    p.add_argument("--as-of", help="the 'now' of the runs (ISO, UTC); default: now, so late data is seen")
    p.add_argument("--no-checks", action="store_true", help="do not evaluate the monitors afterwards")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("scheduler", help="run the pipelines on their cron schedules (UTC)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one tick, then exit (for tests and system cron)")
    mode.add_argument("--crontab", action="store_true", help="print equivalent crontab lines")
    p.add_argument("--as-of", help="with --once: the tick's time (ISO, UTC); default: now")
    p.add_argument("--pipelines", help="comma-separated subset to schedule")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--json", action="store_true", help="with --once: print the tick as JSON")
    p.set_defaults(func=cmd_scheduler)

    p = sub.add_parser(
        "tick",
        help="evaluate the monitors, diagnose new alerts, escalate (what cron and the scheduler call)",
        description="One tick without runs: evaluate the monitors (opening, updating and resolving "
        "alerts), diagnose the new alerts with their runbooks, then escalate and notify. The built-in "
        "scheduler does the same after each tick's runs; every line of `scheduler --crontab` calls it. "
        "Exit 1 when a step failed (the others still ran).",
    )
    p.add_argument("--as-of", help="the tick's time (ISO, UTC); default: now")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors (exit code only)")
    p.add_argument("--json", action="store_true", help="print what the tick did as JSON")
    p.set_defaults(func=cmd_tick)

    p = sub.add_parser("checks", help="evaluate the monitors and update the alerts (exit 1 on a critical)")
    p.add_argument("--pipeline", help="only this pipeline (and what its checks need from upstream)")
    p.add_argument("--as-of", help="evaluate as of this time (ISO, UTC); default: now")
    p.add_argument("--all", action="store_true", help="list passing checks too")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing (exit code only)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--wide", action="store_true", help="every column, nothing cut (rows may wrap)")
    p.set_defaults(func=cmd_checks)

    p = sub.add_parser("alerts", help="list alerts with severity, owner, runbook and age")
    p.add_argument("--open", action="store_true", help="only open or acknowledged alerts")
    p.add_argument("--pipeline")
    p.add_argument("--as-of", help="age as of this time (ISO, UTC); default: now")
    p.add_argument("--json", action="store_true")
    p.add_argument("--wide", action="store_true", help="every column, nothing cut (rows may wrap)")
    p.set_defaults(func=cmd_alerts)
