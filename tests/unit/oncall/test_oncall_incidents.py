"""Incidents: fix deadlines from the pipeline's SLA in business days, and what the SLA monitor reads."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from conftest import REPO
from helpers.core import config as cfgmod
from helpers.oncall import incidents
from helpers.oncall import schedule as oncall

pytestmark = pytest.mark.unit
NY = ZoneInfo("America/New_York")


def ny(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=NY)


@pytest.fixture(scope="module")
def schedule() -> oncall.Schedule:
    cfg = cfgmod.load(REPO / "config")
    return oncall.Schedule(cfg.team, cfg.pipelines, [])


@pytest.mark.parametrize(
    "pipeline, opened, deadline",
    [
        # Profit: end of the 3rd business day; Thanksgiving and the weekend do not count
        ("profit_aggregate", "2026-11-25T10:00", "2026-12-02T00:00"),
        ("profit_unit", "2026-11-10T03:00", "2026-11-17T00:00"),  # Veterans Day skipped
        # Engagement: 5 business days ("one week"), Christmas skipped
        ("engagement_aggregate", "2026-12-21T10:00", "2026-12-30T00:00"),
        # Growth: 2 business days of business hours from the opening
        ("growth_aggregate", "2026-11-16T10:00", "2026-11-18T10:00"),
        ("growth_daily", "2026-11-14T10:00", "2026-11-17T17:00"),  # opened Saturday: Mon 9-17, Tue 9-17
        ("growth_aggregate", "2026-11-25T15:00", "2026-11-30T15:00"),  # Thu 26 is Thanksgiving
    ],
)
def test_fix_deadline(schedule, pipeline, opened, deadline):
    assert incidents.fix_deadline(schedule, pipeline, ny(opened)) == ny(deadline)


@pytest.mark.parametrize(
    "kind, severity, acknowledged, needed",
    [
        ("domain", "critical", False, True),
        ("freshness", "warning", False, False),
        ("freshness", "warning", True, True),
        ("sla_at_risk", "critical", True, False),  # a deadline alert never feeds itself
        ("upstream_at_risk", "critical", False, False),
    ],
)
def test_which_alerts_need_an_incident(kind, severity, acknowledged, needed):
    assert incidents.needs_incident(kind, severity, acknowledged=acknowledged) is needed


def test_open_incidents_feed_the_sla_monitor(home):
    cfg = cfgmod.get()
    schedule = oncall.schedule_for(cfg)
    inc, new = incidents.open_incident(
        schedule,
        alert_id="41",
        pipeline="profit_aggregate",
        severity="critical",
        summary="profit differs from Finance's ledger",
        opened_at=ny("2026-11-25T10:00"),
        reason="critical",
    )
    assert new and inc.fix_deadline == ny("2026-12-02T00:00")
    again, new_again = incidents.open_incident(
        schedule,
        alert_id="41",
        pipeline="profit_aggregate",
        severity="critical",
        summary="x",
        opened_at=ny("2026-11-26T10:00"),
        reason="acknowledged",
    )
    assert not new_again and again.incident_id == inc.incident_id
    assert incidents.open_incidents(ny("2026-11-25T09:59")) == []
    (seen,) = incidents.open_incidents(ny("2026-11-30T12:00"))
    assert not seen.deadline_at_risk(ny("2026-11-30T12:00"))
    assert seen.deadline_at_risk(ny("2026-12-01T00:00"))  # 24 h before the deadline
    assert seen.as_json(ny("2026-12-01T12:00"))["hours_left"] == 12.0
    incidents.resolve_incident("41", at=ny("2026-12-01T15:00"), note="ledger re-synced")
    assert incidents.open_incidents(ny("2026-12-01T16:00")) == []
    assert [i.status for i in incidents.list_incidents()] == ["resolved"]
