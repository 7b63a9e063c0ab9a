"""The Escalate step: who to call now about a pipeline, and who joins when (the plan's "When Things Go Wrong").

From the on-call schedule (swaps, holidays, month-end) and the escalation ladder
(``helpers.oncall.routing``), counted from the alert's opening.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandas as pd

from helpers.checks.framework import json_safe
from helpers.core import catalogue
from helpers.core import config as cfgmod
from helpers.core.timeutil import as_utc
from helpers.oncall import alerts as alertsmod


@dataclass(frozen=True)
class Escalation:
    """Who to call about a pipeline now, and who joins when (the plan's "When Things Go Wrong")."""

    pipeline: str | None
    as_of: dt.datetime
    steps: tuple[dict[str, Any], ...]

    @property
    def call_now(self) -> list[str]:
        """Everyone whose step is due at ``as_of`` (labels such as ``DE1 (Data Engineer 1)``)."""
        return list(dict.fromkeys(s["who"] for s in self.steps if s["due_now"]))

    @property
    def line(self) -> str:
        later = [f"{s['who']} ({s['step']}) at {s['at']}" for s in self.steps if not s["due_now"]]
        text = f"call now: {', '.join(self.call_now) or 'nobody yet'}"
        return text + (f"; later: {'; '.join(later)}" if later else "")

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            list(self.steps), columns=["step", "who", "contact", "role", "at", "due_now", "why"]
        )

    def as_json(self) -> dict[str, Any]:
        return json_safe(
            {
                "pipeline": self.pipeline,
                "as_of": self.as_of,
                "call_now": self.call_now,
                "steps": list(self.steps),
            }
        )

    def __repr__(self) -> str:
        return f"{self.line}\n{self.frame().to_string(index=False)}"


def escalate_to(
    pipeline: str | None,
    as_of: dt.datetime,
    *,
    catalogue_id: str | None = None,
    alert: alertsmod.Alert | None = None,
    opened_at: dt.datetime | None = None,
    config: cfgmod.WorkbookConfig | None = None,
) -> Escalation:
    """Who to call now about ``pipeline`` (or, without one, whoever holds the pager).

    From the on-call schedule (swaps, holidays, month-end) and the escalation ladder, counted from
    the alert's opening (else from ``as_of``): the first responders, the secondary owner after
    ``secondary_after_minutes``, the team lead after ``lead_after_minutes``, and the cross-team
    contact for a cause outside the team (``escalation.cross_team``, by catalogue id: the
    diagnosed ``catalogue_id`` when it is one, else the alert's). ``opened_at`` overrides the
    alert's opening.
    """
    from helpers.oncall import routing
    from helpers.oncall import schedule as oncall

    config = config or cfgmod.get()
    as_of = as_utc(as_of)
    schedule = oncall.schedule_for(config)
    team, esc = config.team, config.team.escalation

    if catalogue_id not in catalogue.FAMILY:
        catalogue_id = alert.catalogue_id if alert else None
    opened = as_utc(opened_at) if opened_at else alert.opened_at if alert else as_of
    steps: list[dict[str, Any]] = []

    def add(step: str, person: Any, at: dt.datetime, why: str) -> None:
        contact = ", ".join(x for x in (person.email, person.slack) if x)
        steps.append(
            dict(
                step=step,
                who=person.label,
                contact=contact,
                role=person.role,
                at=f"{schedule.local(at):%a %Y-%m-%d %H:%M %Z}",
                due_now=at <= as_of,
                why=why,
            )
        )

    if not pipeline:
        state = schedule.on_call_at(as_of)
        add("on_call", routing.engineer(team, state.engineer, "on_call"), as_of, "holds the pager")
        add(
            "lead",
            routing.team_lead(team),
            as_of + dt.timedelta(minutes=esc.lead_after_minutes),
            "if it is still broken after the ladder's lead step",
        )
        return Escalation(None, as_of, tuple(steps))
    first = routing.route(schedule, pipeline, opened)
    for person in first.recipients:
        add("notify", person, first.notify_at, first.reason)
    clock = routing.watch_clock(schedule, pipeline)
    secondary_at = clock.advance(opened, esc.secondary_after_minutes)
    add(
        "secondary",
        routing.recipient(team, schedule.backup_for(pipeline, secondary_at).who, "secondary"),
        secondary_at,
        f"still broken {esc.secondary_after_minutes} min after opening",
    )
    lead_at = clock.advance(opened, esc.lead_after_minutes)
    add("lead", routing.team_lead(team), lead_at, f"still broken {esc.lead_after_minutes} min after opening")
    contact_key = esc.cross_team.get(catalogue_id or "")
    if contact_key:
        add(
            "cross_team",
            routing.contact(team, contact_key),
            clock.advance(opened, esc.cross_team_after_minutes),
            f"cause outside the team ({catalogue_id}): {team.contacts[contact_key].team}",
        )
    return Escalation(pipeline, as_of, tuple(steps))
