"""Routing: who gets an alert and when, per pipeline and on-call mode, and the watched-time clock."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from conftest import REPO
from helpers.core import config as cfgmod
from helpers.oncall import routing
from helpers.oncall import schedule as oncall

pytestmark = pytest.mark.unit
NY = ZoneInfo("America/New_York")


def ny(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=NY)


@pytest.fixture(scope="module")
def schedule() -> oncall.Schedule:
    cfg = cfgmod.load(REPO / "config")
    return oncall.Schedule(cfg.team, cfg.pipelines, [])


# Weeks: Nov 9 DE1, Nov 16 DE2, Nov 23 DE3 (Thanksgiving), Oct 26 DE3 (month-end Oct 25-31).
@pytest.mark.parametrize(
    "pipeline, opened, notify_at, recipients",
    [
        # Profit at 03:00 on an ordinary Tuesday: the on-call engineer at once
        ("profit_aggregate", "2026-11-10T03:00", "2026-11-10T03:00", [("DE1", "on_call")]),
        ("profit_unit", "2026-11-10T03:00", "2026-11-10T03:00", [("DE1", "on_call")]),
        ("engagement_aggregate", "2026-11-21T23:00", "2026-11-21T23:00", [("DE2", "on_call")]),
        ("investor_aggregate", "2026-11-10T03:00", "2026-11-10T03:00", [("DE1", "on_call")]),
        # Growth on a Saturday: nobody until Monday 09:00, then the primary owner
        ("growth_aggregate", "2026-11-14T10:00", "2026-11-16T09:00", [("DE3", "owner")]),
        ("growth_daily", "2026-11-14T10:00", "2026-11-16T09:00", [("DE4", "owner")]),
        # Growth after hours on a weekday: the next morning; in business hours: at once
        ("growth_aggregate", "2026-11-17T17:00", "2026-11-18T09:00", [("DE3", "owner")]),
        ("growth_aggregate", "2026-11-17T16:59", "2026-11-17T16:59", [("DE3", "owner")]),
        # Veterans Day (Wed Nov 11) is a public holiday of the business calendar: Thursday
        ("growth_aggregate", "2026-11-10T17:00", "2026-11-12T09:00", [("DE3", "owner")]),
        # Growth on Labor Day (a Monday holiday, holiday week): Tuesday 09:00, with the backup
        ("growth_aggregate", "2026-09-07T10:00", "2026-09-08T09:00", [("DE3", "owner"), ("DE4", "backup")]),
        # Growth on a month-end Saturday: DE3 and DE4 both at once, any hour
        (
            "growth_aggregate",
            "2026-10-31T03:00",
            "2026-10-31T03:00",
            [("DE3", "month_end"), ("DE4", "month_end")],
        ),
        (
            "growth_daily",
            "2026-10-31T03:00",
            "2026-10-31T03:00",
            [("DE4", "month_end"), ("DE3", "month_end")],
        ),
        # Profit in the last week of the month: on-call plus the pipeline's owners
        (
            "profit_aggregate",
            "2026-10-28T03:00",
            "2026-10-28T03:00",
            [("DE3", "on_call"), ("DE1", "month_end"), ("DE2", "month_end")],
        ),
        # the team-owned investor aggregate at month-end: every engineer
        (
            "investor_aggregate",
            "2026-10-28T03:00",
            "2026-10-28T03:00",
            [("DE3", "on_call"), ("DE1", "month_end"), ("DE2", "month_end"), ("DE4", "month_end")],
        ),
        # a holiday week adds the secondary as backup
        ("profit_aggregate", "2026-11-23T22:00", "2026-11-23T22:00", [("DE3", "on_call"), ("DE2", "backup")]),
        # DE3 is on call and Engagement's secondary: the other owner backs up
        (
            "engagement_aggregate",
            "2026-12-22T03:00",
            "2026-12-22T03:00",
            [("DE3", "on_call"), ("DE1", "backup")],
        ),
        (
            "investor_aggregate",
            "2026-12-22T03:00",
            "2026-12-22T03:00",
            [("DE3", "on_call"), ("DE2", "backup")],
        ),
    ],
)
def test_route(schedule, pipeline, opened, notify_at, recipients):
    r = routing.route(schedule, pipeline, ny(opened))
    assert r.notify_at == ny(notify_at)
    assert [(p.key, p.role) for p in r.recipients] == recipients
    assert r.deferred is (notify_at != opened)


def test_people_carry_their_contact_details(schedule):
    r = routing.route(schedule, "profit_aggregate", ny("2026-11-10T03:00"))
    assert (r.recipients[0].email, r.recipients[0].slack) == ("de1@example.com", "@de1")
    team = schedule.team
    assert routing.recipient(team, "lead").email == "data-lead@example.com"
    assert routing.recipient(team, "contact:finance").email == "finance@example.com"
    with pytest.raises(ValueError, match="unknown person 'DE9'"):
        routing.recipient(team, "DE9")


@pytest.mark.parametrize(
    "start, minutes, expected",
    [
        ("2026-11-14T10:00", 0, "2026-11-16T09:00"),  # Saturday -> Monday opening
        ("2026-11-14T10:00", 120, "2026-11-16T11:00"),
        ("2026-11-13T16:00", 120, "2026-11-16T10:00"),  # 1 h Friday, 1 h Monday
        ("2026-11-13T16:30", 30, "2026-11-16T09:00"),  # never due at the close itself
        ("2026-11-25T16:00", 120, "2026-11-25T18:00"),  # month-end days count every hour
        ("2026-11-20T16:00", 240, "2026-11-23T12:00"),  # Thanksgiving week Monday is a business day
        ("2026-12-24T16:00", 60, "2026-12-25T00:00"),  # Christmas is in December's month-end
    ],
)
def test_business_time_clock(schedule, start, minutes, expected):
    clock = routing.WatchClock(schedule, always=False)
    assert clock.advance(ny(start), minutes) == ny(expected)


def test_business_time_elapsed_and_deadline_at_close(schedule):
    clock = routing.WatchClock(schedule, always=False)
    assert clock.elapsed(ny("2026-11-13T16:00"), ny("2026-11-16T10:00")) == dt.timedelta(hours=2)
    plain = routing.WatchClock(schedule, always=False, month_end=False)
    assert plain.advance(ny("2026-11-14T10:00"), 16 * 60, at_close=True) == ny("2026-11-17T17:00")
    always = routing.WatchClock(schedule, always=True)
    assert always.advance(ny("2026-11-14T10:00"), 90) == ny("2026-11-14T11:30")
