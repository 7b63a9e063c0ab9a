"""The ``oncall`` verbs: who is on call (now, schedule), swaps (record, emergency cover, list, cancel),
load and the holiday compensation ledger.

Times are the team's (``calendar.timezone`` in ``config/team.yml``): ``--at 2026-12-24`` is noon
that day in the team's time zone, ``--at 2026-12-24T08:00`` is 08:00 there, and a value with an
offset or ``Z`` is taken as given (``BusinessCalendar.local_instant``); ``--from``, ``--to``,
``--week`` and holiday dates are the team's local dates. Only this layer reads the wall clock.
Exit codes as everywhere: 0 ok, 2 usage or bad input (a refused swap or cancellation, an unknown
engineer or swap id).
"""

from __future__ import annotations

import argparse
import datetime as dt
import textwrap
from pathlib import Path
from typing import Any

from helpers.cli import console
from helpers.cli.common import wall_clock
from helpers.core import config as cfgmod
from helpers.core.businesscal import BusinessCalendar
from helpers.core.errors import EXIT_OK, UsageError
from helpers.oncall import routing, swaps
from helpers.oncall import schedule as oncall

LOCAL_FMT = "%a %Y-%m-%d %H:%M %Z"
MODES = {"weekly_rotation": "rotation", "business_hours": "business hours", "month_end": "month-end"}


# ---------------------------------------------------------------- shared pieces


def _fitting(names: Any) -> list[console.Column]:
    """Columns that fit the terminal (cut with an ellipsis, ``--wide`` for everything)."""
    return [console.Column(str(n)) for n in names]


def _date(text: str, flag: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{flag}: expected a date YYYY-MM-DD (the team's local date), got {text!r}"
        ) from None


def _instant(cfg: cfgmod.WorkbookConfig, text: str | None, flag: str) -> dt.datetime:
    """``text`` in the team's time (see the module doc); ``None`` is now."""
    if text is None:
        return wall_clock()
    try:
        return BusinessCalendar.from_team(cfg.team).local_instant(text)
    except ValueError as e:
        raise UsageError(f"{flag}: {e}") from None


def _year(cfg: cfgmod.WorkbookConfig, args: argparse.Namespace) -> int:
    return args.year or BusinessCalendar.from_team(cfg.team).local_date(wall_clock()).year


def _notifies(route: routing.Route) -> str:
    """``DE3, DE2 (backup), DE1 DE4 (month-end)``: who a route reaches, grouped by role."""
    by_role: dict[str, list[str]] = {}
    for r in route.recipients:
        by_role.setdefault(r.role, []).append(r.key)
    parts = []
    for role, keys in by_role.items():
        label = "" if role in ("on_call", "owner") else f" ({role.replace('_', '-')})"
        parts.append(" ".join(keys) + label)
    return ", ".join(parts)


# ---------------------------------------------------------------- now and the schedule


def cmd_oncall_now(args: argparse.Namespace) -> int:
    cfg = cfgmod.get()
    schedule = oncall.schedule_for(cfg)
    at = _instant(cfg, args.at, "--at")
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
        f"  week of {week.week_of}: {schedule.local(week.start):{LOCAL_FMT}} -> {schedule.local(week.end):{LOCAL_FMT}}{swapped}"
    )
    if state.holiday_week:
        names = ", ".join(f"{h.name} ({h.date:%a %d %b})" for h in week.holidays)
        print(f"  holiday week: {names}; backups below (never the engineer on call)")
    if state.month_end:
        print(f"  month-end: everyone on deck ({', '.join(state.on_deck)})")
    rows = [
        {
            "pipeline": r.pipeline,
            "mode": MODES.get(r.mode, r.mode),
            "first_page": "now" if not r.deferred else f"{schedule.local(r.notify_at):%a %d %b %H:%M}",
            "notifies": _notifies(r),
        }
        for r in routes
    ]
    console.print_table(rows, _fitting(rows[0]), title="An alert opened now goes to", wide=args.wide)
    if state.backups:
        backups = [
            {"pipeline": pid, "backup": who, "why": state.backup_reasons.get(pid, "")}
            for pid, who in state.backups.items()
        ]
        console.print_table(
            backups, _fitting(["pipeline", "backup", "why"]), title="Holiday-week backups", wide=args.wide
        )
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
        console.print_json([_week_json(schedule, w) for w in weeks])
        return EXIT_OK
    if args.ics and args.quiet:
        return EXIT_OK
    rows = [_week_row(schedule, w) for w in weeks]
    handoff = f"{schedule.local(weeks[0].start):%a %H:%M %Z}" if weeks else ""
    console.print_table(
        rows,
        _fitting(["week_of", "on_call", "holidays", "month_end", "backups"]),
        title=f"On call {args.start} .. {args.end} (handoff {handoff})",
        wide=args.wide,
    )
    return EXIT_OK


def _week_json(schedule: oncall.Schedule, w: oncall.RotationWeek) -> dict[str, Any]:
    backups = (
        [schedule.backup_for(p, w.start) for p in schedule.pipelines.pipelines] if w.holiday_week else []
    )
    return {
        **w.as_json(),
        "handoff_from": schedule.week(w.index - 1).engineer,
        "backups": {b.pipeline: b.who for b in backups},
        "backup_reasons": {b.pipeline: b.reason for b in backups},
    }


def _week_row(schedule: oncall.Schedule, w: oncall.RotationWeek) -> dict[str, Any]:
    backups = ""
    if w.holiday_week:
        fallbacks = [
            b
            for b in (schedule.backup_for(p, w.start) for p in schedule.pipelines.pipelines)
            if ";" in b.reason
        ]
        backups = "secondaries" + (f"; {len(fallbacks)} fall back" if fallbacks else "")
    days = w.month_end_days
    return {
        "week_of": w.week_of,
        "on_call": w.engineer + (f" (was {w.scheduled})" if w.swaps else ""),
        "holidays": ", ".join(f"{h.date:%d %b} {h.name}" for h in w.holidays),
        "month_end": ""
        if not days
        else f"{days[0]:%d %b}"
        if len(days) == 1
        else f"{days[0]:%d}-{days[-1]:%d %b}",
        "backups": backups,
    }


# ---------------------------------------------------------------- swaps


def cmd_oncall_swap(args: argparse.Namespace) -> int:
    cfg = cfgmod.get()
    if args.cancel is not None:
        return _cancel(cfg, args)
    if not (args.a and args.b and args.week):
        raise UsageError(
            "swap: expected two engineers and --week (or --cancel ID); e.g. swap DE1 DE2 --week 2026-12-07"
        )
    if args.emergency and not args.approved_by:
        raise UsageError(
            "--emergency: expected --approved-by naming the team lead and the other engineer "
            f"(e.g. --approved-by {args.b},lead): an emergency cover needs both engineers and the lead"
        )
    record = oncall.record_swap(
        cfg,
        args.a,
        args.b,
        _date(args.week, "--week"),
        _instant(cfg, args.at, "--requested-at"),
        by=args.by,
        emergency=args.emergency,
        approved_by=[p.strip() for v in args.approved_by or () for p in v.split(",") if p.strip()],
        reason=args.reason,
    )
    return _print_swap(cfg, record, "recorded", args.json)


def _cancel(cfg: cfgmod.WorkbookConfig, args: argparse.Namespace) -> int:
    ref = args.cancel.strip()
    if ref.startswith("team.yml"):
        raise UsageError(f"--cancel {ref}: that swap is planned in config/team.yml; remove it there")
    if not ref.isdigit():
        raise UsageError(f"--cancel: expected a swap id (a number from `workbook oncall swaps`), got {ref!r}")
    if args.a or args.b or args.emergency or args.approved_by:
        raise UsageError("--cancel ID takes --by, --reason and --at only (the swap is known by its id)")
    if not args.by:
        raise UsageError("--cancel: expected --by naming who cancels (one of the two engineers, or lead)")
    at = _instant(cfg, args.at, "--at")
    record = oncall.cancel_swap(cfg, int(ref), args.by, at, reason=args.reason)
    return _print_swap(cfg, record, "cancelled", args.json)


def _print_swap(cfg: cfgmod.WorkbookConfig, record: swaps.SwapRecord, done: str, as_json: bool) -> int:
    schedule = oncall.schedule_for(cfg)
    week = schedule.week(schedule.week_index_of_date(record.swap.week_of))
    if as_json:
        console.print_json({**record.as_json(), "on_call": week.engineer, "scheduled": week.scheduled})
        return EXIT_OK
    s = record.swap
    event = record.events[-1]
    agreed = (
        f"; agreed: {', '.join(dict.fromkeys([event.by or '', *event.approved_by]))}"
        if record.kind == "emergency"
        else ""
    )
    what = "emergency cover" if record.kind == "emergency" else "swap"
    print(
        f"{done}: {what} {record.ref}: {s.a} <-> {s.b} for the week of {s.week_of} "
        f"by {event.by} at {schedule.local(event.at):{LOCAL_FMT}}{agreed}"
    )
    print(f"  on call that week: {week.engineer} (scheduled {week.scheduled})")
    return EXIT_OK


def cmd_oncall_swaps(args: argparse.Namespace) -> int:
    cfg = cfgmod.get()
    schedule = oncall.schedule_for(cfg)
    as_of = _instant(cfg, args.at, "--at")
    listed = []
    for r in [*swaps.config_records(cfg.team), *swaps.swap_records()]:
        week = schedule.week(schedule.week_index_of_date(r.swap.week_of))
        if args.all or as_of < week.end:
            listed.append((r, week, r.status(week.start, week.end, as_of)))
    if args.json:
        console.print_json(
            [{**r.as_json(), "status": status, "on_call": w.engineer} for r, w, status in listed]
        )
        return EXIT_OK
    rows = [
        {
            "id": r.ref,
            "week_of": r.swap.week_of,
            "swap": f"{r.swap.a} <-> {r.swap.b}",
            "kind": r.kind,
            "recorded_by": r.request.by or "?",
            "recorded_at": f"{schedule.local(r.request.at):%Y-%m-%d %H:%M %Z}",
            "status": status,
        }
        for r, _, status in listed
    ]
    scope = "every swap" if args.all else "this week and later (--all: past weeks too)"
    console.print_table(
        rows,
        _fitting(rows[0] if rows else []),
        title=f"On-call swaps: {scope}",
        empty="no swaps",
        wide=args.wide,
    )
    width = console.output_width()
    for r, _, _ in listed:
        for line in _swap_notes(schedule, r):
            text = f"{r.ref}: {line}"
            print("  " + (text if args.wide else console.ellipsize(text, width - 2)))
    return EXIT_OK


def _swap_notes(schedule: oncall.Schedule, r: swaps.SwapRecord) -> list[str]:
    notes = []
    if r.kind == "emergency":
        notes.append(
            f"emergency cover agreed by {', '.join(dict.fromkeys([r.request.by or '?', *r.request.approved_by]))}"
        )
    if r.request.reason:
        notes.append(f"reason: {r.request.reason}")
    c = r.cancellation
    if c is not None:
        why = f": {c.reason}" if c.reason else ""
        notes.append(f"cancelled by {c.by} at {schedule.local(c.at):%Y-%m-%d %H:%M %Z}{why}")
    return notes


# ---------------------------------------------------------------- load and compensation


def cmd_oncall_load(args: argparse.Namespace) -> int:
    cfg = cfgmod.get()
    year = _year(cfg, args)
    loads = oncall.load_by_engineer(oncall.schedule_for(cfg), year)
    if args.json:
        console.print_json([x.as_json() for x in loads])
        return EXIT_OK
    print("Ownership (investor aggregate and reports: team-owned)")
    width = console.output_width()
    for x in loads:
        text = f"{x.engineer}: primary of {', '.join(x.primary_of) or '-'}; secondary of {', '.join(x.secondary_of) or '-'}"
        print(
            textwrap.fill(
                text, width=width if not args.wide else 10_000, initial_indent="  ", subsequent_indent="    "
            )
        )
    rows = [
        {
            "engineer": x.engineer,
            "investor": x.investor_pipelines,
            "weeks": x.on_call_weeks,
            "holiday_weeks": x.holiday_weeks,
            "holidays": x.holidays_on_call,
            "backup_weeks": x.backup_weeks,
            "month_end_days": x.month_end_days_on_call,
        }
        for x in loads
    ]
    console.print_table(rows, _fitting(rows[0]), title=f"On-call load {year}", wide=args.wide)
    return EXIT_OK


def cmd_oncall_comp(args: argparse.Namespace) -> int:
    cfg = cfgmod.get()
    year = _year(cfg, args)
    recorded = None
    if args.choose:
        who, day, choice = args.choose
        recorded = oncall.record_comp_choice(cfg, who, _date(day, "--choose DATE"), choice, wall_clock())
        year = recorded.date.year if args.year is None else year
    schedule = oncall.schedule_for(cfg)
    ledger = oncall.comp_ledger(schedule, year, oncall.stored_comp_choices())
    summary = oncall.comp_summary(ledger, oncall.load_by_engineer(schedule, year))
    if args.json:
        console.print_json(
            {
                "year": year,
                "recorded": recorded.as_json() if recorded else None,
                "ledger": [e.as_json() for e in ledger],
                "fairness": summary,
            }
        )
        return EXIT_OK
    if recorded:
        print(
            f"recorded: {recorded.engineer} chose {recorded.choice} for {recorded.holiday} ({recorded.date})"
        )
    rows = [
        {
            "date": e.date,
            "holiday": e.holiday,
            "engineer": e.engineer,
            "week_of": e.week_of,
            "choice": e.choice or "pending",
            "chosen_at": f"{schedule.local(e.chosen_at):%Y-%m-%d %H:%M %Z}" if e.chosen_at else "",
        }
        for e in ledger
    ]
    console.print_table(
        rows, _fitting(rows[0] if rows else []), title=f"Holiday compensation ledger {year}", wide=args.wide
    )
    fairness = [
        {
            "engineer": s["engineer"],
            "holidays": s["holidays_on_call"],
            "comp_day": s["comp_day"],
            "pay_1.5x": s["pay_1_5x"],
            "pending": s["pending"],
            "hol_weeks": s["holiday_weeks"],
            "backups": s["backup_weeks"],
            "month_end": s["month_end_days_on_call"],
        }
        for s in summary
    ]
    console.print_table(
        fairness,
        _fitting(fairness[0]),
        title=f"Holiday and month-end load {year} (days, weeks)",
        wide=args.wide,
    )
    return EXIT_OK


# ---------------------------------------------------------------- parser


TIME_HELP = "a date (noon in the team's time zone), a local date and time, or ISO with Z/offset"


def _output_flags(q: argparse.ArgumentParser) -> None:
    q.add_argument("--json", action="store_true", help="print the result as JSON")
    q.add_argument("--wide", action="store_true", help="every column and every character, whatever the width")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``oncall`` verb group to the ``workbook`` parser."""
    p = sub.add_parser("oncall", help="the on-call schedule: now, schedule, swap, swaps, load, comp")
    verbs = p.add_subparsers(dest="oncall_verb", required=True, metavar="SUBCOMMAND")

    q = verbs.add_parser("now", help="who is on call (and who an alert would reach) at a time")
    q.add_argument("--at", "--as-of", dest="at", help=f"the time: {TIME_HELP}; default: now")
    _output_flags(q)
    q.set_defaults(func=cmd_oncall_now)

    q = verbs.add_parser("schedule", help="the rotation between two dates, optionally as an .ics calendar")
    q.add_argument("--from", dest="start", required=True, help="first day YYYY-MM-DD (team's local date)")
    q.add_argument("--to", dest="end", required=True, help="last day YYYY-MM-DD (inclusive)")
    q.add_argument("--ics", metavar="FILE", help="also write an iCalendar file (weeks and handoff meetings)")
    q.add_argument("-q", "--quiet", action="store_true", help="with --ics: no table")
    _output_flags(q)
    q.set_defaults(func=cmd_oncall_schedule)

    q = verbs.add_parser(
        "swap",
        help="swap the pager for one week (7 days' notice), an emergency cover, or cancel a swap",
        description="Swap the pager between two engineers for one rotation week, with 7 days' notice. "
        "Inside the notice, --emergency records a cover when both engineers and the team lead agree "
        "(--by one of them, --approved-by the others). --cancel ID cancels a recorded swap before its "
        "week starts; the cancellation is recorded, not deleted.",
    )
    q.add_argument("a", nargs="?", help="engineer, e.g. DE1")
    q.add_argument("b", nargs="?", help="engineer, e.g. DE2")
    q.add_argument("--week", help="a day of the rotation week (its Monday), YYYY-MM-DD")
    q.add_argument(
        "--by", help="who records (or cancels) it: one of the two engineers or lead; default: the first"
    )
    q.add_argument(
        "--emergency", action="store_true", help="a cover inside the notice period (needs --approved-by)"
    )
    q.add_argument(
        "--approved-by",
        action="append",
        metavar="WHO[,WHO]",
        help="who else agreed: the other engineer and lead",
    )
    q.add_argument("--reason", help="why (kept with the swap or its cancellation)")
    q.add_argument("--cancel", metavar="ID", help="cancel recorded swap ID (see `workbook oncall swaps`)")
    q.add_argument(
        "--requested-at",
        "--at",
        dest="at",
        help=f"when it is asked for or cancelled: {TIME_HELP}; default: now",
    )
    q.add_argument("--json", action="store_true", help="print the swap as JSON")
    q.set_defaults(func=cmd_oncall_swap)

    q = verbs.add_parser("swaps", help="the swaps: id, week, who, recorded by and when, status")
    q.add_argument("--all", action="store_true", help="past and cancelled swaps too")
    q.add_argument("--at", dest="at", help=f"status as of: {TIME_HELP}; default: now")
    _output_flags(q)
    q.set_defaults(func=cmd_oncall_swaps)

    q = verbs.add_parser("load", help="ownership, on-call, holiday and month-end load per engineer")
    q.add_argument("--year", type=int, help="default: this year")
    _output_flags(q)
    q.set_defaults(func=cmd_oncall_load)

    q = verbs.add_parser("comp", help="the holiday compensation ledger and the fairness view")
    q.add_argument("--year", type=int, help="default: this year (or the chosen holiday's)")
    q.add_argument(
        "--choose",
        nargs=3,
        metavar=("ENGINEER", "DATE", "CHOICE"),
        help="record a choice for a holiday on call: CHOICE is comp_day or pay_1_5x",
    )
    _output_flags(q)
    q.set_defaults(func=cmd_oncall_comp)
