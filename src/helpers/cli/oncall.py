"""Verbs for paging: escalate, ack, resolve, timeline, incidents, notifications (the ``oncall``
group is in ``helpers.cli.rotation``).

Only this layer reads the wall clock (``helpers.cli.common.wall_clock``) and the secrets in the
environment (through ``notify.channels_from_env``); everything below takes explicit times.
Exit codes as everywhere: 0 ok, 2 usage or bad input (an unknown alert id, a resolve refused
because the alert's check still fails). ``ack``, ``resolve`` and ``timeline`` take
several alert ids and check them all before changing anything.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Mapping, Sequence
from typing import Any

from helpers.checks import store as checkstore
from helpers.cli import console
from helpers.cli.common import as_of_arg, wall_clock
from helpers.cli.console import LAST, NEVER, Column, format_age, format_left, id_key
from helpers.core import config as cfgmod
from helpers.core.errors import EXIT_OK, UsageError
from helpers.core.timeutil import as_utc
from helpers.oncall import alerts as alertsmod
from helpers.oncall import escalation, incidents
from helpers.oncall.notify import Notifier, channels_from_env, list_notifications
from helpers.runbooks.registry import notification_lines

# ---------------------------------------------------------------- shared pieces


def _now(text: str | None) -> dt.datetime:
    value = as_of_arg(text)
    return value if value is not None else wall_clock()


def _notifier(cfg: cfgmod.WorkbookConfig) -> Notifier:
    return Notifier(channels_from_env(cfg.team.notify), policy=cfg.team.notify.retry, sleep=time.sleep)


# ---------------------------------------------------------------- the ladder


TIMELINE_COLUMNS = (
    Column("alert_id", "alert", shrink=NEVER),
    Column("at", shrink=NEVER),
    Column("step", shrink=NEVER),
    Column("who", shrink=NEVER),
    Column("channel", shrink=LAST, min_width=10, drop=1),
    Column("detail", min_width=30),
)


def _entry_rows(entries: Sequence[Any]) -> list[dict[str, Any]]:
    """Timeline entries as rows, by alert id (as numbers), then time."""
    ordered = sorted(entries, key=lambda e: (id_key(e.alert_id), e.at))
    return [{c.key: getattr(e, c.key) for c in TIMELINE_COLUMNS} for e in ordered]


def cmd_escalate(args: argparse.Namespace) -> int:
    cfg = cfgmod.get()
    as_of = _now(args.as_of)
    written = escalation.escalate(
        cfg, escalation.WarehouseAlerts(), as_of, notifier=_notifier(cfg), annotate=notification_lines
    )
    if args.json:
        console.print_json([e.as_json() for e in sorted(written, key=lambda e: (id_key(e.alert_id), e.at))])
    else:
        console.print_table(
            _entry_rows(written),
            TIMELINE_COLUMNS,
            title=f"Escalation at {as_of:%Y-%m-%d %H:%M}Z",
            empty=f"nothing due at {as_of:%Y-%m-%d %H:%M}Z",
            wide=args.wide,
        )
    return EXIT_OK


# ---------------------------------------------------------------- ack and resolve


def alert_ids(args: argparse.Namespace, *, active_only: bool = True) -> list[str]:
    """The alert ids a verb acts on, in the order given, each once; ids must be numbers.

    ``--incident N`` adds the incident's alerts (its lead first; with ``active_only``, those still
    open or acknowledged); an unknown incident is a usage error.
    """
    ids: list[str] = []
    for text in args.alerts or ():
        if not str(text).isdigit():
            raise UsageError(f"alert id: expected a number as listed by `workbook alerts`, got {text!r}")
        if str(int(text)) not in ids:
            ids.append(str(int(text)))
    for number in getattr(args, "incident", None) or ():
        if incidents.get_incident_by_id(number) is None:
            raise UsageError(
                f"no incident {number}: `workbook incidents --all` lists them (nothing was changed)"
            )
        for alert_id, _role in incidents.members(number):
            alert = alertsmod.get_alert(int(alert_id)) if alert_id.isdigit() else None
            keep = alert is not None and (not active_only or alert.status != "resolved")
            if keep and alert_id not in ids:
                ids.append(alert_id)
    if not ids:
        raise UsageError(
            "name alert ids, or --incident N (`workbook alerts` and `workbook incidents` list them)"
        )
    return ids


def known_alerts(ids: Sequence[str]) -> dict[str, alertsmod.Alert]:
    """The alerts of ``ids``; an unknown id is a usage error naming every unknown one."""
    found = {i: alertsmod.get_alert(int(i)) for i in ids}
    missing = [i for i, a in found.items() if a is None]
    if missing:
        raise UsageError(f"no alert {', '.join(missing)}: `workbook alerts` lists them (nothing was changed)")
    return {i: a for i, a in found.items() if a is not None}


def still_failing(alert: alertsmod.Alert) -> dict[str, Any] | None:
    """The latest stored result of the alert's check and partition when it failed, else ``None``."""
    for result in checkstore.list_results(check_id=alert.check_id, limit=2000):
        if result["partition"] == alert.partition:
            return result if result["status"] in ("fail", "error") else None
    return None


def refusals(found: Mapping[str, alertsmod.Alert], *, force: bool) -> dict[str, str]:
    """Why each alert may not be resolved yet, by id: its check still fails (unless ``force``)."""
    out: dict[str, str] = {}
    for alert_id, alert in found.items():
        if force or alert.status == "resolved" or alert.evidence.get("deadline_kind") == "fix_deadline":
            continue  # a fix-deadline alert passes once the problem it watches is resolved
        result = still_failing(alert)
        if result is not None:
            out[alert_id] = (
                f"its check {alert.check_id} ({alert.partition}) still fails "
                f"(evaluated as of {result['as_of']:%Y-%m-%d %H:%M}Z: {result['summary']})"
            )
    return out


def acknowledge_alerts(
    cfg: cfgmod.WorkbookConfig, ids: Sequence[str], *, at: dt.datetime, by: str | None, note: str | None
) -> list[Any]:
    """Acknowledge each alert (after checking they all exist and are active): their ladders stop."""
    closed = [i for i, a in known_alerts(ids).items() if a.status == "resolved"]
    if closed:
        raise UsageError(
            f"alert {', '.join(closed)} is already resolved: nothing to acknowledge (nothing was changed)"
        )
    store, notifier = escalation.WarehouseAlerts(), _notifier(cfg)
    entries = []
    for alert_id in ids:
        try:
            entries.append(
                escalation.acknowledge(
                    cfg,
                    store,
                    alert_id,
                    at=at,
                    by=by,
                    notifier=notifier,
                    annotate=notification_lines,
                    note=note,
                )
            )
        except LookupError as e:
            raise UsageError(str(e)) from None
    return entries


def resolve_alerts(
    cfg: cfgmod.WorkbookConfig,
    ids: Sequence[str],
    *,
    at: dt.datetime,
    by: str | None,
    note: str,
    force: bool,
) -> list[Any]:
    """Resolve each alert with ``note``; refused (nothing changes) while a check still fails.

    ``force`` resolves anyway (the note says why); the alert reopens at the next failing evaluation.
    """
    if not note or not note.strip():
        raise UsageError("resolve: --note is required (what was wrong and what fixed it)")
    found = known_alerts(ids)
    refused = refusals(found, force=force)
    if refused:
        lines = [f"alert {i}: {why}" for i, why in refused.items()]
        raise UsageError(
            f"refused to resolve {', '.join(refused)} (nothing was changed):\n  "
            + "\n  ".join(lines)
            + "\nfix the cause (the next passing check resolves it), or resolve with --force and a --note"
        )
    store, notifier = escalation.WarehouseAlerts(), _notifier(cfg)
    noted = note.strip() + (
        " (forced while its check still failed)" if force and refusals(found, force=False) else ""
    )
    return [
        escalation.resolve(
            cfg, store, alert_id, note=noted, at=at, by=by, notifier=notifier, annotate=notification_lines
        )
        for alert_id in ids
    ]


def cmd_ack(args: argparse.Namespace) -> int:
    cfg = cfgmod.get()
    entries = acknowledge_alerts(cfg, alert_ids(args), at=_now(args.as_of), by=args.by, note=args.note)
    if args.json:
        console.print_json([{**e.as_json(), "note": args.note} for e in entries])
        return EXIT_OK
    for e in entries:
        note = f" ({args.note})" if args.note else ""
        print(
            f"alert {e.alert_id}: acknowledged by {e.who} at {e.at:%Y-%m-%d %H:%M}Z{note}; the ladder stops"
        )
    return EXIT_OK


def cmd_resolve(args: argparse.Namespace) -> int:
    cfg = cfgmod.get()
    entries = resolve_alerts(
        cfg, alert_ids(args), at=_now(args.as_of), by=args.by, note=args.note, force=args.force
    )
    if args.json:
        console.print_json([e.as_json() for e in entries])
        return EXIT_OK
    for e in entries:
        print(f"alert {e.alert_id}: resolved at {e.at:%Y-%m-%d %H:%M}Z: {e.detail}")
    return EXIT_OK


def cmd_timeline(args: argparse.Namespace) -> int:
    ids = alert_ids(args, active_only=False)
    entries = [e for i in ids for e in escalation.timeline(i)]
    missing = [
        i for i in ids if alertsmod.get_alert(int(i)) is None and not any(e.alert_id == i for e in entries)
    ]
    if missing:
        raise UsageError(f"no alert {', '.join(missing)}: `workbook alerts` lists them")
    if args.json:
        console.print_json([e.as_json() for e in entries])
    else:
        console.print_table(
            _entry_rows(entries),
            TIMELINE_COLUMNS,
            title=f"Alert {', '.join(ids)}",
            empty="no timeline yet",
            wide=args.wide,
        )
    return EXIT_OK


# ---------------------------------------------------------------- incidents and notifications


INCIDENT_COLUMNS = (
    Column("incident_id", "incident", shrink=NEVER),
    Column("severity", shrink=NEVER),
    Column("status", shrink=NEVER),
    Column("cause", min_width=24),
    Column("owner", shrink=NEVER, drop=2),
    Column("alerts", shrink=NEVER, drop=4),
    Column("alert_id", "lead alert", shrink=NEVER, drop=3),
    Column("age", shrink=NEVER),
    Column("left", shrink=NEVER),
    Column("figures_at_risk", "figures at risk", min_width=12, drop=1),
)


def incident_owner(pipeline: str, cfg: cfgmod.WorkbookConfig) -> str:
    """Who owns an incident: its lead pipeline's owners (``DE1/DE2``), or ``team``."""
    p = cfg.pipelines.pipelines.get(pipeline)
    if p is None or p.owners.team:
        return "team"
    return "/".join(dict.fromkeys(o for o in (p.owners.primary, p.owners.secondary) if o))


def incident_rows(found: Sequence[Any], as_of: dt.datetime) -> list[dict[str, Any]]:
    """Incidents as table rows, by id (as numbers): ages and time left as ``3 d 4 h``."""
    cfg = cfgmod.get()
    rows = []
    for inc in sorted(found, key=lambda i: id_key(i.incident_id)):
        data = inc.as_json(as_of)
        at_risk = data.get("at_risk")
        rows.append(
            {
                **data,
                "owner": incident_owner(inc.pipeline, cfg),
                "alerts": len(incidents.members(inc.incident_id)) or 1,
                "cause": data.get("cause") or data.get("pipeline"),
                "age": format_age(as_utc(as_of) - inc.opened_at),
                "left": format_left(inc.time_left(as_of)) if inc.status == "open" else "",
                "figures_at_risk": ", ".join(at_risk) if isinstance(at_risk, list) else "",
            }
        )
    return rows


def cmd_incidents(args: argparse.Namespace) -> int:
    as_of = _now(args.as_of)
    found = incidents.list_incidents() if args.all else incidents.open_incidents(as_of)
    found = sorted(found, key=lambda i: id_key(i.incident_id))
    if args.json:
        cfg = cfgmod.get()
        console.print_json([{**i.as_json(as_of), "owner": incident_owner(i.pipeline, cfg),
                             "alerts": [a for a, _r in incidents.members(i.incident_id)]} for i in found])  # fmt: skip
        return EXIT_OK
    rows = incident_rows(found, as_of)
    columns = [c for c in INCIDENT_COLUMNS if any(c.key in r for r in rows)] or list(INCIDENT_COLUMNS)
    title = f"{'Incidents' if args.all else 'Open incidents'} as of {as_of:%Y-%m-%d %H:%M}Z"
    console.print_table(rows, columns, title=title, empty="no open incidents", wide=args.wide)
    return EXIT_OK


NOTIFICATION_COLUMNS = (
    Column("notification_id", "id", shrink=NEVER),
    Column("alert_id", "alert", shrink=NEVER),
    Column("step", shrink=NEVER),
    Column("channel", shrink=LAST, min_width=10),
    Column("recipient", shrink=LAST, min_width=10),
    Column("attempt", shrink=NEVER, drop=2),
    Column("round", shrink=NEVER, drop=3),
    Column("status", shrink=NEVER),
    Column("error", min_width=20, drop=1),
    Column("at", shrink=NEVER),
)


def cmd_notifications(args: argparse.Namespace) -> int:
    rows = sorted(
        list_notifications(alert_id=args.alert, failed_only=args.failed, limit=args.limit),
        key=lambda r: id_key(r["notification_id"]),
    )
    if args.json:
        console.print_json(rows)
        return EXIT_OK
    console.print_table(
        rows, NOTIFICATION_COLUMNS, title="Notifications", empty="no notifications recorded", wide=args.wide
    )
    return EXIT_OK


# ---------------------------------------------------------------- parser


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's verbs to the ``workbook`` parser."""
    p = sub.add_parser("escalate", help="one tick of every open incident's escalation ladder (idempotent)")
    p.add_argument("--as-of", help="the tick's time (ISO, UTC); default: now")
    p.add_argument("--json", action="store_true")
    p.add_argument("--wide", action="store_true", help="every column, nothing cut (rows may wrap)")
    p.set_defaults(func=cmd_escalate)

    p = sub.add_parser("ack", help="acknowledge alerts (and so their incidents): the escalation stops")
    p.add_argument("alerts", nargs="*", metavar="ALERT", help="alert ids (`workbook alerts` lists them)")
    p.add_argument(
        "--incident", type=int, action="append", metavar="N", help="every open alert of incident N"
    )
    p.add_argument("--by", help="who (DE1..DE4, lead); default: the first person notified")
    p.add_argument("--note", help="what you are doing about it")
    p.add_argument("--as-of", help="when (ISO, UTC); default: now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ack)

    p = sub.add_parser(
        "resolve",
        help="resolve alerts and their incident with a note (refused while the check still fails)",
        description="Resolve alerts with a note. Refused (exit 2, nothing changed) while an alert's check "
        "still fails in its latest evaluation: fix the cause and the next passing check resolves it, or "
        "pass --force with a --note saying why.",
    )
    p.add_argument("alerts", nargs="*", metavar="ALERT", help="alert ids (`workbook alerts` lists them)")
    p.add_argument(
        "--incident", type=int, action="append", metavar="N", help="every open alert of incident N"
    )
    p.add_argument("--note", required=True, help="what was wrong and what fixed it")
    p.add_argument("--force", action="store_true", help="resolve even though the check still fails")
    p.add_argument("--by", help="who resolved it")
    p.add_argument("--as-of", help="when (ISO, UTC); default: now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_resolve)

    p = sub.add_parser("timeline", help="alerts' timelines: notifications, escalations, ack, resolve")
    p.add_argument("alerts", nargs="*", metavar="ALERT", help="alert ids")
    p.add_argument("--incident", type=int, action="append", metavar="N", help="every alert of incident N")
    p.add_argument("--json", action="store_true")
    p.add_argument("--wide", action="store_true", help="every column, nothing cut (rows may wrap)")
    p.set_defaults(func=cmd_timeline)

    p = sub.add_parser("incidents", help="open incidents, one per cause, with owners and fix deadlines")
    p.add_argument("--all", action="store_true", help="resolved ones too")
    p.add_argument("--as-of", help="deadlines as of (ISO, UTC); default: now")
    p.add_argument("--json", action="store_true")
    p.add_argument("--wide", action="store_true", help="every column, nothing cut (rows may wrap)")
    p.set_defaults(func=cmd_incidents)

    p = sub.add_parser("notifications", help="delivery attempts per channel (failures are never lost)")
    p.add_argument("--alert", help="only this alert")
    p.add_argument("--failed", action="store_true", help="only attempts that did not get through")
    p.add_argument("--limit", type=int, default=100, help="the newest N attempts (default 100), oldest first")
    p.add_argument("--json", action="store_true")
    p.add_argument("--wide", action="store_true", help="every column, nothing cut (rows may wrap)")
    p.set_defaults(func=cmd_notifications)
