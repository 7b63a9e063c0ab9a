"""Verbs for on-call and paging: oncall (now, schedule, swap, load, comp), escalate, ack, resolve,
timeline, incidents, notifications.

Only this layer reads the wall clock (``helpers.cli.common.wall_clock``) and the secrets in the
environment (through ``notify.channels_from_env``); everything below takes explicit times.
Exit codes as everywhere: 0 ok, 2 usage or bad input (a refused swap, an unknown alert).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path
from typing import Any

from helpers.cli import console
from helpers.cli.common import as_of_arg, wall_clock
from helpers.core import config as cfgmod
from helpers.core.errors import EXIT_OK, UsageError
from helpers.oncall import escalation, incidents, routing
from helpers.oncall import schedule as oncall
from helpers.oncall.notify import Notifier, channels_from_env, list_notifications
from helpers.runbooks.registry import notification_lines

LOCAL_FMT = "%a %Y-%m-%d %H:%M %Z"


# ---------------------------------------------------------------- shared pieces


def _date(text: str, flag: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag}: expected a date YYYY-MM-DD, got {text!r}") from None


def _now(text: str | None) -> dt.datetime:
    value = as_of_arg(text)
    return value if value is not None else wall_clock()


def _notifier(cfg: cfgmod.WorkbookConfig) -> Notifier:
    return Notifier(channels_from_env(cfg.team.notify), policy=cfg.team.notify.retry, sleep=time.sleep)


def _people(recipients: Any) -> str:
    return ", ".join(f"{r.key} ({r.role})" for r in recipients)


# ---------------------------------------------------------------- oncall


def cmd_oncall_now(args: argparse.Namespace) -> int:
    cfg = cfgmod.get()
    schedule = oncall.schedule_for(cfg)
    at = _now(args.at)
    state = schedule.on_call_at(at)
    routes = [routing.route(schedule, pid, at) for pid in cfg.pipelines.order()]
    if args.json:
        console.print_json({**state.as_json(), "routes": [r.as_json() for r in routes]})
        return EXIT_OK
    week = state.week
    person = cfg.team.engineers[state.engineer]
    print(f"On call at {schedule.local(at):{LOCAL_FMT}}: {state.engineer} ({person.name}, {person.email})")
    swapped = f", swapped from {week.scheduled}" if week.swaps else ""
    print(
        f"  week of {week.week_of}: {schedule.local(week.start):{LOCAL_FMT}} -> "
        f"{schedule.local(week.end):{LOCAL_FMT}}{swapped}"
    )
    if state.holiday_week:
        names = ", ".join(f"{h.name} ({h.date:%a %d %b})" for h in week.holidays)
        print(f"  holiday week: {names}; secondary owners on backup")
    if state.month_end:
        print(f"  month-end: everyone on deck ({', '.join(state.on_deck)})")
    rows = [
        {
            "pipeline": r.pipeline,
            "mode": r.mode,
            "first_notification": "now" if not r.deferred else f"{schedule.local(r.notify_at):{LOCAL_FMT}}",
            "notifies": _people(r.recipients),
            "backup": state.backups.get(r.pipeline, ""),
        }
        for r in routes
    ]
    console.print_table(rows, list(rows[0]), title="An alert opened now goes to")
    return EXIT_OK


def cmd_oncall_schedule(args: argparse.Namespace) -> int:
    cfg = cfgmod.get()
    schedule = oncall.schedule_for(cfg)
    weeks = schedule.weeks_between(_date(args.start, "--from"), _date(args.end, "--to"))
    if args.ics:
        data = oncall.schedule_ics(schedule, weeks, stamp=wall_clock())
        Path(args.ics).write_bytes(data)
        events = len(oncall.calendar_entries(schedule, weeks))
        print(f"wrote {events} events ({len(weeks)} on-call weeks and their handoffs) to {args.ics}")
    if args.json:
        console.print_json(
            [{**w.as_json(), "handoff_from": schedule.week(w.index - 1).engineer} for w in weeks]
        )
        return EXIT_OK
    if args.ics and args.quiet:
        return EXIT_OK
    rows = []
    for w in weeks:
        previous = schedule.week(w.index - 1).engineer
        rows.append(
            {
                "week_of": w.week_of,
                "handoff": f"{schedule.local(w.start):%a %H:%M %Z}",
                "on_call": w.engineer + (f" (swapped; was {w.scheduled})" if w.swaps else ""),
                "handoff_meeting": f"{previous} -> {w.engineer}" if previous != w.engineer else "",
                "holidays": ", ".join(f"{h.name} {h.date:%d %b}" for h in w.holidays),
                "backups": "secondary owners" if w.holiday_week else "",
                "month_end": (
                    f"{w.month_end_days[0]:%d %b}-{w.month_end_days[-1]:%d %b}: everyone"
                    if w.month_end_days
                    else ""
                ),
            }
        )
    console.print_table(
        rows, list(rows[0]) if rows else [], title=f"On-call schedule {args.start} .. {args.end}"
    )
    return EXIT_OK


def cmd_oncall_swap(args: argparse.Namespace) -> int:
    cfg = cfgmod.get()
    requested = _now(args.requested_at)
    swap = oncall.record_swap(cfg, args.a, args.b, _date(args.week, "--week"), requested)
    schedule = oncall.schedule_for(cfg)
    week = schedule.week(schedule.week_index_of_date(swap.week_of))
    print(
        f"recorded: {swap.a} <-> {swap.b} for the week of {swap.week_of} "
        f"(requested {requested:%Y-%m-%d %H:%M}Z); on call that week: {week.engineer} (scheduled {week.scheduled})"
    )
    return EXIT_OK


def _year(args: argparse.Namespace) -> int:
    return args.year or wall_clock().year


def cmd_oncall_load(args: argparse.Namespace) -> int:
    cfg = cfgmod.get()
    loads = oncall.load_by_engineer(oncall.schedule_for(cfg), _year(args))
    if args.json:
        console.print_json([x.as_json() for x in loads])
        return EXIT_OK
    rows = [
        {
            "engineer": x.engineer,
            "primary_of": ", ".join(x.primary_of),
            "secondary_of": ", ".join(x.secondary_of),
            "investor": x.investor_pipelines,
            "on_call_weeks": x.on_call_weeks,
            "holiday_weeks": x.holiday_weeks,
            "holidays_on_call": x.holidays_on_call,
            "backup_weeks": x.backup_weeks,
            "month_end_days_on_call": x.month_end_days_on_call,
        }
        for x in loads
    ]
    console.print_table(
        rows, list(rows[0]), title=f"On-call load {_year(args)} (investor aggregate: team-owned)"
    )
    return EXIT_OK


def cmd_oncall_comp(args: argparse.Namespace) -> int:
    cfg = cfgmod.get()
    year = _year(args)
    if args.choose:
        who, day, choice = args.choose
        entry = oncall.record_comp_choice(cfg, who, _date(day, "--choose DATE"), choice, wall_clock())
        print(f"recorded: {entry.engineer} chose {entry.choice} for {entry.holiday} ({entry.date})")
        year = entry.date.year if args.year is None else year
    schedule = oncall.schedule_for(cfg)
    ledger = oncall.comp_ledger(schedule, year, oncall.stored_comp_choices())
    summary = oncall.comp_summary(ledger, oncall.load_by_engineer(schedule, year))
    if args.json:
        console.print_json({"year": year, "ledger": [e.as_json() for e in ledger], "fairness": summary})
        return EXIT_OK
    rows = [
        {
            "date": e.date,
            "holiday": e.holiday,
            "engineer": e.engineer,
            "week_of": e.week_of,
            "choice": e.choice or "pending",
            "chosen_at": e.chosen_at,
        }
        for e in ledger
    ]
    console.print_table(rows, list(rows[0]) if rows else [], title=f"Holiday compensation ledger {year}")
    console.print_table(summary, list(summary[0]), title=f"Holiday and month-end load {year}")
    return EXIT_OK


# ---------------------------------------------------------------- the ladder


TIMELINE_COLUMNS = ("alert_id", "at", "step", "who", "channel", "detail")


def _entry_rows(entries: list[escalation.TimelineEntry]) -> list[dict[str, Any]]:
    return [{c: getattr(e, c) for c in TIMELINE_COLUMNS} for e in entries]


def cmd_escalate(args: argparse.Namespace) -> int:
    cfg = cfgmod.get()
    as_of = _now(args.as_of)
    written = escalation.escalate(
        cfg, escalation.WarehouseAlerts(), as_of, notifier=_notifier(cfg), annotate=notification_lines
    )
    if args.json:
        console.print_json([e.as_json() for e in written])
    else:
        console.print_table(
            _entry_rows(written),
            TIMELINE_COLUMNS,
            title=f"Escalation at {as_of:%Y-%m-%d %H:%M}Z",
            empty=f"nothing due at {as_of:%Y-%m-%d %H:%M}Z",
        )
    return EXIT_OK


def cmd_ack(args: argparse.Namespace) -> int:
    cfg = cfgmod.get()
    try:
        entry = escalation.acknowledge(
            cfg,
            escalation.WarehouseAlerts(),
            args.alert,
            at=_now(args.as_of),
            by=args.by,
            notifier=_notifier(cfg),
            annotate=notification_lines,
        )
    except LookupError as e:
        raise UsageError(str(e)) from None
    print(f"alert {args.alert}: acknowledged by {entry.who} at {entry.at:%Y-%m-%d %H:%M}Z; the ladder stops")
    return EXIT_OK


def cmd_resolve(args: argparse.Namespace) -> int:
    cfg = cfgmod.get()
    try:
        entry = escalation.resolve(
            cfg,
            escalation.WarehouseAlerts(),
            args.alert,
            note=args.note,
            at=_now(args.as_of),
            by=args.by,
            notifier=_notifier(cfg),
            annotate=notification_lines,
        )
    except LookupError as e:
        raise UsageError(str(e)) from None
    print(f"alert {args.alert}: resolved at {entry.at:%Y-%m-%d %H:%M}Z: {entry.detail}")
    return EXIT_OK


def cmd_timeline(args: argparse.Namespace) -> int:
    entries = escalation.timeline(args.alert)
    if args.json:
        console.print_json([e.as_json() for e in entries])
    else:
        console.print_table(
            _entry_rows(entries), TIMELINE_COLUMNS, title=f"Alert {args.alert}", empty="no timeline yet"
        )
    return EXIT_OK


def cmd_incidents(args: argparse.Namespace) -> int:
    as_of = _now(args.as_of)
    found = incidents.list_incidents() if args.all else incidents.open_incidents(as_of)
    if args.json:
        console.print_json([i.as_json(as_of) for i in found])
        return EXIT_OK
    rows = [
        {
            "incident": i.incident_id,
            "alert": i.alert_id,
            "pipeline": i.pipeline,
            "severity": i.severity,
            "status": i.status,
            "opened_at": i.opened_at,
            "fix_deadline": i.fix_deadline,
            "hours_left": round(i.time_left(as_of).total_seconds() / 3600, 1),
            "at_risk": "yes" if i.at_risk(as_of) else "",
            "summary": i.summary[:80],
        }
        for i in found
    ]
    console.print_table(rows, list(rows[0]) if rows else [], title="Incidents", empty="no open incidents")
    return EXIT_OK


def cmd_notifications(args: argparse.Namespace) -> int:
    rows = list_notifications(alert_id=args.alert, failed_only=args.failed, limit=args.limit)
    if args.json:
        console.print_json(rows)
        return EXIT_OK
    columns = (
        "notification_id",
        "alert_id",
        "step",
        "channel",
        "recipient",
        "attempt",
        "round",
        "status",
        "error",
        "at",
    )
    console.print_table(rows, columns, title="Notifications", empty="no notifications recorded")
    return EXIT_OK


# ---------------------------------------------------------------- parser


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's verbs to the ``workbook`` parser."""
    p = sub.add_parser("oncall", help="the on-call schedule: now, schedule, swap, load, comp")
    verbs = p.add_subparsers(dest="oncall_verb", required=True, metavar="SUBCOMMAND")

    q = verbs.add_parser("now", help="who is on call (and who an alert would reach) at a time")
    q.add_argument("--at", "--as-of", dest="at", help="the time (ISO; UTC if no offset); default: now")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_oncall_now)

    q = verbs.add_parser("schedule", help="the rotation between two dates, optionally as an .ics calendar")
    q.add_argument("--from", dest="start", required=True, help="first day YYYY-MM-DD")
    q.add_argument("--to", dest="end", required=True, help="last day YYYY-MM-DD (inclusive)")
    q.add_argument("--ics", metavar="FILE", help="also write an iCalendar file (weeks and handoff meetings)")
    q.add_argument("-q", "--quiet", action="store_true", help="with --ics: no table")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_oncall_schedule)

    q = verbs.add_parser("swap", help="swap the pager between two engineers for one week (7 days' notice)")
    q.add_argument("a", help="engineer, e.g. DE1")
    q.add_argument("b", help="engineer, e.g. DE2")
    q.add_argument("--week", required=True, help="a day of the rotation week (its Monday), YYYY-MM-DD")
    q.add_argument("--requested-at", help="when the swap was asked for (ISO); default: now")
    q.set_defaults(func=cmd_oncall_swap)

    q = verbs.add_parser("load", help="ownership, on-call, holiday and month-end load per engineer")
    q.add_argument("--year", type=int, help="default: this year")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_oncall_load)

    q = verbs.add_parser("comp", help="the holiday compensation ledger and the fairness view")
    q.add_argument("--year", type=int, help="default: this year (or the chosen holiday's)")
    q.add_argument(
        "--choose",
        nargs=3,
        metavar=("ENGINEER", "DATE", "CHOICE"),
        help="record a choice for a holiday on call: CHOICE is comp_day or pay_1_5x",
    )
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_oncall_comp)

    p = sub.add_parser("escalate", help="one tick of every open alert's escalation ladder (idempotent)")
    p.add_argument("--as-of", help="the tick's time (ISO, UTC); default: now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_escalate)

    p = sub.add_parser("ack", help="acknowledge an alert: its escalation stops")
    p.add_argument("alert", help="alert id")
    p.add_argument("--by", help="who (DE1..DE4, lead); default: the first person notified")
    p.add_argument("--as-of", help="when (ISO, UTC); default: now")
    p.set_defaults(func=cmd_ack)

    p = sub.add_parser("resolve", help="resolve an alert and its incident with a note")
    p.add_argument("alert", help="alert id")
    p.add_argument("--note", required=True, help="what was wrong and what fixed it")
    p.add_argument("--by", help="who resolved it")
    p.add_argument("--as-of", help="when (ISO, UTC); default: now")
    p.set_defaults(func=cmd_resolve)

    p = sub.add_parser("timeline", help="an alert's timeline: notifications, escalations, ack, resolve")
    p.add_argument("alert", help="alert id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_timeline)

    p = sub.add_parser("incidents", help="open incidents with their fix deadlines")
    p.add_argument("--all", action="store_true", help="resolved ones too")
    p.add_argument("--as-of", help="deadlines as of (ISO, UTC); default: now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_incidents)

    p = sub.add_parser("notifications", help="delivery attempts per channel (failures are never lost)")
    p.add_argument("--alert", help="only this alert")
    p.add_argument("--failed", action="store_true", help="only attempts that did not get through")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_notifications)
