"""Evidence and the fix of the ``incident_fix`` runbook: open problems racing their fix deadline.

A fix-deadline alert is about another alert (:func:`underlying_alert`); the runbook looks at where
each such problem stands (:func:`incident_state`), whether its check passes now, and fixes it by
recording the passing check or running its own runbook with fixes applied (:func:`fix_incident`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from helpers.oncall import alerts as alertsmod
from helpers.runbooks.context import RunbookContext
from helpers.runbooks.diagnosis import NO_PROBLEM
from helpers.runbooks.evidence import Evidence
from helpers.runbooks.formatting import hours
from helpers.runbooks.verification import verify


def underlying_alert(ctx: RunbookContext) -> alertsmod.Alert | None:
    """The alert a fix-deadline alert is about (its evidence's ``alert_id``), if any."""
    if ctx.alert is None:
        return None
    target = ctx.alert.evidence.get("alert_id")
    if target is None and ".sla.fix_deadline." in ctx.alert.check_id:
        target = ctx.alert.check_id.rsplit(".", 1)[-1]
    try:
        return alertsmod.get_alert(int(target)) if target is not None else None
    except ValueError:
        return None


def underlying_cause(ctx: RunbookContext, alert: alertsmod.Alert | None) -> str:
    """The cause of the problem behind a deadline: its latest diagnosis, else its catalogue id."""
    from helpers.runbooks import registry as runbooks

    if alert is None:
        return "fix_deadline"
    run = runbooks.latest_diagnosis(alert.alert_id)
    cause = run.cause if run is not None else None
    return cause if cause and cause != NO_PROBLEM else alert.catalogue_id or "fix_deadline"


def incident_state(ctx: RunbookContext) -> Evidence:
    """Open problems racing their fix deadline: the underlying alert (or every open one in scope)
    with its status, who acknowledged it, whether anyone was notified, and the hours left."""
    from helpers.oncall import escalation, incidents

    target = underlying_alert(ctx)
    if target is not None:
        items = [target]
    else:
        items = [
            a
            for a in alertsmod.list_alerts(open_only=True, limit=10_000)
            if a.pipeline in ctx.scope and a.fix_deadline and a.opened_at <= ctx.as_of
        ]
    rows = []
    for a in items:
        inc = incidents.incident_of(str(a.alert_id))
        deadline = inc.fix_deadline if inc else a.fix_deadline
        ladder = inc.alert_id if inc else str(a.alert_id)  # an incident pages on its lead alert's timeline
        steps = {e.step for e in escalation.timeline(ladder)}
        rows.append(
            dict(
                alert_id=a.alert_id,
                pipeline=a.pipeline,
                check_id=a.check_id,
                status=a.status,
                acknowledged_by=a.acknowledged_by,
                notified="notify" in steps,
                fix_deadline=deadline,
                hours_left=hours(deadline - ctx.as_of) if deadline else None,
                catalogue_id=a.catalogue_id,
                summary=a.summary,
            )
        )
    cols = [
        "alert_id",
        "pipeline",
        "check_id",
        "status",
        "acknowledged_by",
        "notified",
        "fix_deadline",
        "hours_left",
        "catalogue_id",
        "summary",
    ]
    frame = pd.DataFrame(rows, columns=cols)
    within = ctx.config.pipelines.monitors.sla_at_risk_hours
    active = frame[frame["status"].isin(alertsmod.ACTIVE)] if len(frame) else frame
    near = active["hours_left"].map(lambda h: h is not None and h <= within) if len(active) else []
    risky = active[near] if len(active) else active
    if len(risky):
        detail = "; ".join(
            f"alert {r.alert_id} ({r.check_id}) {r.status}, {r.hours_left:g} h to its fix deadline"
            for r in risky.itertuples()
        )
    elif len(active):
        detail = f"{len(active)} open alert(s), none within {within:g} h of its fix deadline"
    else:
        detail = "no open alert with a fix deadline"
    return Evidence(
        bool(len(risky)),
        detail,
        risky if len(risky) else frame,
        {"alert_ids": risky["alert_id"].tolist() if len(risky) else []},
    )


def unacknowledged(racing: Evidence) -> Evidence:
    """Of :func:`incident_state`, alerts nobody acknowledged (the ladder is still climbing)."""
    frame = racing.frame
    bad = frame[frame["status"] == "open"] if len(frame) and racing.holds else frame.head(0)
    detail = ", ".join(f"alert {r.alert_id} not acknowledged" for r in bad.itertuples()) or "acknowledged"
    return Evidence(bool(len(bad)), detail, bad)


def fix_pending(racing: Evidence) -> Evidence:
    """Of :func:`incident_state`, alerts acknowledged whose fix is not done."""
    frame = racing.frame
    bad = frame[frame["status"] == "acknowledged"] if len(frame) and racing.holds else frame.head(0)
    detail = ", ".join(
        f"alert {r.alert_id} acknowledged by {r.acknowledged_by}, still open" for r in bad.itertuples()
    )
    return Evidence(bool(len(bad)), detail or "no acknowledged alert left open", bad)


def cross_team_wait(ctx: RunbookContext, cause: str) -> Evidence:
    """The cause lies with another team (``escalation.cross_team``): the fix waits on its contact."""
    key = ctx.config.team.escalation.cross_team.get(cause)
    if not key:
        return Evidence(False, f"{cause} is the data team's own")
    contact = ctx.config.team.contacts[key]
    return Evidence(True, f"{cause} needs {contact.team} ({contact.name}, {contact.email or contact.slack})")


def _sub_context(ctx: RunbookContext, alert: alertsmod.Alert, *, apply_fix: bool) -> RunbookContext:
    known = alert.pipeline in ctx.config.pipelines.pipelines
    return RunbookContext(
        ctx.runbook, ctx.as_of, apply_fix, ctx.run_id, ctx.config, alert,
        alert.pipeline if known else None, alert.partition, alert.check_id, ctx.clock,
    )  # fmt: skip


def check_passes_now(ctx: RunbookContext, alert: alertsmod.Alert | None) -> Evidence:
    """Fixed but not closed: the underlying alert's check passes now while the alert is open."""
    if alert is None:
        return Evidence(False, "no underlying alert")
    result = verify(alert.check_id, _sub_context(ctx, alert, apply_fix=False))
    now = {True: "passes", False: "fails", None: "cannot be re-run"}[result.passed]
    holds = result.passed is True and alert.status in alertsmod.ACTIVE
    return Evidence(holds, f"check {alert.check_id} now {now} (alert {alert.status})", result.frame())


def fix_incident(ctx: RunbookContext, alert: alertsmod.Alert | None) -> dict[str, Any]:
    """Close the underlying alert if its check passes now; else run its runbook with fixes applied."""
    from helpers.runbooks import registry as runbooks

    if alert is None:
        return {"action": "none", "reason": "no underlying alert"}
    sub = _sub_context(ctx, alert, apply_fix=True)
    if check_passes_now(ctx, alert).holds:
        return {"action": "recorded the passing check", "verification": verify(alert.check_id, sub).as_json()}
    res = runbooks.resolve_alert(alert)
    if res.runbook is None:
        return {"action": "none", "reason": res.note}
    run = runbooks.run_runbook(
        res.runbook, clock=ctx.clock, as_of=ctx.as_of, alert_id=alert.alert_id,
        apply_fix=True, trigger="incident_fix", requested=res.requested, config=ctx.config,
    )  # fmt: skip
    return {"action": f"ran {run.runbook} with apply_fix=True", "run": run.as_json()}
