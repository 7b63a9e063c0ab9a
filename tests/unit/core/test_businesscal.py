"""Business-day arithmetic against the ``holidays`` calendar (Thanksgiving and Christmas 2026)."""

from __future__ import annotations

import datetime as dt

import holidays
import pytest

from helpers.core import businesscal
from helpers.core.businesscal import BusinessCalendar

pytestmark = pytest.mark.unit
D = dt.date


@pytest.fixture(scope="module")
def cal() -> BusinessCalendar:
    return BusinessCalendar("US", timezone="America/New_York")


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def test_business_days_match_the_holidays_package(cal):
    us = holidays.country_holidays("US", years=[2026, 2027])
    day = D(2026, 11, 1)
    while day <= D(2027, 1, 31):
        assert cal.is_business_day(day) == (day.weekday() < 5 and day not in us), day
        day += dt.timedelta(days=1)
    assert cal.holiday_name(D(2026, 11, 26)) == "Thanksgiving Day"
    assert cal.holiday_name(D(2026, 12, 25)) == "Christmas Day"
    assert not cal.is_business_day(D(2026, 7, 3))  # Independence Day (observed): the 4th is a Saturday


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        (D(2026, 11, 25), 1, D(2026, 11, 27)),  # Wed -> Fri: Thanksgiving Thursday skipped
        (D(2026, 11, 25), 3, D(2026, 12, 1)),  # ... and the weekend
        (D(2026, 11, 26), 0, D(2026, 11, 27)),  # n=0 on a holiday: the next business day
        (D(2026, 12, 24), 1, D(2026, 12, 28)),  # Thu -> Mon: Christmas Friday and the weekend
        (D(2026, 12, 23), 2, D(2026, 12, 28)),
        (D(2026, 12, 31), 1, D(2027, 1, 4)),  # New Year's Day 2027 is a Friday
        (D(2026, 11, 20), 5, D(2026, 11, 30)),
    ],
)
def test_add_business_days_across_thanksgiving_and_christmas(cal, start, n, expected):
    assert cal.add_business_days(start, n) == expected
    if n:
        assert cal.business_days_between(start, expected) == n
        assert cal.business_days_between(expected, start) == -n


def test_fix_deadlines_per_pipeline_sla(cal):
    opened = utc("2026-11-25T20:00:00")  # Wed 15:00 in New York
    assert cal.fix_deadline(opened, 3) == utc("2026-12-02T05:00:00")  # Profit: end of Tue 1 Dec (EST)
    assert cal.fix_deadline(opened, 2) == utc("2026-12-01T05:00:00")  # Growth: end of Mon 30 Nov
    assert cal.fix_deadline(opened, 5) == utc("2026-12-04T05:00:00")  # Engagement: end of Thu 3 Dec
    # 22:00 in New York on the 25th is already the 26th in UTC: the local day counts
    assert cal.fix_deadline(utc("2026-11-26T03:00:00"), 3) == utc("2026-12-02T05:00:00")
    # Wed 23 Dec + 3: Thu 24, (Christmas, weekend), Mon 28, Tue 29
    assert cal.fix_deadline(utc("2026-12-23T15:00:00"), 3) == utc("2026-12-30T05:00:00")


def test_month_end_close_deadline(cal):
    assert cal.nth_business_day_after_month_end(2026, 11, 3) == D(2026, 12, 3)
    assert cal.close_deadline("2026-11", 3) == utc("2026-12-04T05:00:00")
    assert cal.nth_business_day_after_month_end(2026, 12, 1) == D(2027, 1, 4)  # 1 Jan is a holiday
    assert cal.close_deadline("2026-12", 3) == utc("2027-01-07T05:00:00")
    with pytest.raises(ValueError):
        cal.nth_business_day_after_month_end(2026, 12, 0)


def test_end_of_week_deadline_follows_holidays_and_daylight_saving(cal):
    assert cal.week_deadline(utc("2026-12-22T15:00:00")) == utc("2026-12-25T05:00:00")  # ends Thu 24th
    assert cal.week_deadline(utc("2026-11-24T15:00:00")) == utc("2026-11-28T05:00:00")  # Fri 27th works
    assert cal.week_deadline(utc("2026-10-27T15:00:00")) == utc("2026-10-31T04:00:00")  # EDT
    assert cal.week_deadline(utc("2026-11-03T15:00:00")) == utc("2026-11-07T05:00:00")  # EST
    # Saturday belongs to the week that just ended
    assert cal.week_deadline(utc("2026-11-07T15:00:00")) == utc("2026-11-07T05:00:00")


def test_close_window_and_heightened_monitoring(cal):
    kw = dict(report_final_business_days=3, heightened_from_days_before_month_end=7)
    assert businesscal.close_window(cal, utc("2026-12-02T12:00:00"), **kw) == (
        "2026-11",
        utc("2026-12-04T05:00:00"),
        True,
    )
    assert businesscal.close_window(cal, utc("2026-12-10T12:00:00"), **kw) == (
        "2026-12",
        utc("2027-01-07T05:00:00"),
        False,
    )
    # the last 7 days of December start on the 25th, local midnight
    assert businesscal.close_window(cal, utc("2026-12-25T04:59:00"), **kw)[2] is False
    assert businesscal.close_window(cal, utc("2026-12-25T05:00:00"), **kw)[2] is True


def test_business_hours_in_the_team_time_zone(cal):
    assert cal.is_business_hours(utc("2026-11-25T14:00:00"))  # Wed 09:00 EST
    assert not cal.is_business_hours(utc("2026-11-25T13:59:00"))
    assert not cal.is_business_hours(utc("2026-11-26T15:00:00"))  # Thanksgiving
    assert not cal.is_business_hours(utc("2026-11-28T15:00:00"))  # Saturday


def test_from_team_config_uses_the_configured_calendar():
    from helpers.core import config

    team = config.load().team
    cal = BusinessCalendar.from_team(team)
    assert cal.country == team.calendar.country
    assert str(cal.tz) == team.calendar.timezone
