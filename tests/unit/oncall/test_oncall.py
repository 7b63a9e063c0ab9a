"""The on-call schedule: rotation, handoffs, holidays, month-end, swaps, the .ics, load and comp."""

import datetime as dt
import json
import shutil
from zoneinfo import ZoneInfo

import icalendar
import pytest
import yaml

from conftest import REPO
from helpers.cli.main import main
from helpers.core import config as cfgmod
from helpers.core.catalogue import FAMILY
from helpers.core.config import Swap
from helpers.oncall import schedule as oncall

pytestmark = pytest.mark.unit
NY = ZoneInfo("America/New_York")


def ny(text: str) -> dt.datetime:
    """A New York wall time as an aware datetime."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=NY)


@pytest.fixture(scope="module")
def cfg() -> cfgmod.WorkbookConfig:
    return cfgmod.load(REPO / "config")


@pytest.fixture
def schedule(cfg) -> oncall.Schedule:
    return oncall.Schedule(cfg.team, cfg.pipelines, [])


# Rotation from Mon 2026-01-05 09:00 EST: DE1, DE2, DE3, DE4, repeat. Nov 9 is week 44 -> DE1.
@pytest.mark.parametrize(
    "at, engineer, week_of, holiday, month_end, on_deck",
    [
        # an ordinary week (Wednesday afternoon)
        ("2026-11-11T15:00", "DE1", "2026-11-09", False, False, ("DE1",)),
        # across the weekly handoff, Monday 09:00 New York
        ("2026-11-16T08:59", "DE1", "2026-11-09", False, False, ("DE1",)),
        ("2026-11-16T09:00", "DE2", "2026-11-16", False, False, ("DE2",)),
        # the handoff stays at 09:00 local across the DST change (Sun 2026-03-08)
        ("2026-03-09T08:59", "DE1", "2026-03-02", False, False, ("DE1",)),
        ("2026-03-09T09:00", "DE2", "2026-03-09", False, False, ("DE2",)),
        # Thanksgiving week before month-end starts: DE3 on call, secondaries on backup
        ("2026-11-23T10:00", "DE3", "2026-11-23", True, False, ("DE3", "DE1", "DE2", "DE4")),
        # Thanksgiving 2026 (Thu Nov 26) is also in November's last 7 days: everyone on deck
        ("2026-11-26T12:00", "DE3", "2026-11-23", True, True, ("DE1", "DE2", "DE3", "DE4")),
        # Christmas week before the 25th: holiday backups; on the day also month-end
        ("2026-12-22T12:00", "DE3", "2026-12-21", True, False, ("DE3", "DE1", "DE2", "DE4")),
        ("2026-12-25T12:00", "DE3", "2026-12-21", True, True, ("DE1", "DE2", "DE3", "DE4")),
        # last week of an ordinary month (Oct 25-31): everyone
        ("2026-10-24T23:59", "DE2", "2026-10-19", False, False, ("DE2",)),
        ("2026-10-25T00:00", "DE2", "2026-10-19", False, True, ("DE1", "DE2", "DE3", "DE4")),
        ("2026-10-28T03:00", "DE3", "2026-10-26", False, True, ("DE1", "DE2", "DE3", "DE4")),
        ("2026-11-01T00:00", "DE3", "2026-10-26", False, False, ("DE3",)),
    ],
)
def test_who_is_on_call(schedule, at, engineer, week_of, holiday, month_end, on_deck):
    state = schedule.on_call_at(ny(at))
    assert state.engineer == engineer
    assert state.week.week_of == dt.date.fromisoformat(week_of)
    assert state.holiday_week is holiday
    assert state.month_end is month_end
    assert state.on_deck == on_deck


def test_holiday_week_puts_each_pipelines_secondary_on_backup_unless_on_call(schedule):
    for at, holiday in (("2026-11-26T12:00", "Thanksgiving Day"), ("2026-12-25T12:00", "Christmas Day")):
        state = schedule.on_call_at(ny(at))
        assert [h.name for h in state.week.holidays] == [holiday]
        assert state.backups == {
            "profit_aggregate": "DE2",
            "profit_unit": "DE1",
            "growth_aggregate": "DE4",
            "growth_daily": "DE3",
            "engagement_aggregate": "DE1",  # its secondary DE3 is on call: its other owner
            "investor_aggregate": "DE2",  # team-owned: who handed the pager over
            # the reports are team-owned too
            "month_end_report": "DE2",
            "finance_reconciliation_report": "DE2",
            "weekly_metrics_review": "DE2",
        }
    assert schedule.on_call_at(ny("2026-11-18T12:00")).backups == {}


def test_major_holidays_match_configured_names_not_substrings(cfg):
    found = {(h.date, h.name) for h in oncall.major_holidays(cfg.team, [2026])}
    assert (dt.date(2026, 11, 26), "Thanksgiving Day") in found  # "Thanksgiving" matches as a prefix
    assert (dt.date(2026, 7, 3), "Independence Day (observed)") in found
    assert not any("Juneteenth" in name for _, name in found)  # "...National Independence Day"
    assert not any("Veterans" in name or "Columbus" in name for _, name in found)


def test_a_monday_holiday_belongs_to_the_week_starting_that_morning(schedule):
    week = schedule.week_at(ny("2026-09-07T12:00"))  # Labor Day
    assert week.week_of == dt.date(2026, 9, 7)
    assert [h.name for h in week.holidays] == ["Labor Day"]
    assert not schedule.week_at(ny("2026-09-07T08:00")).holiday_week


def swap(week_of: str, a: str, b: str, requested: str) -> Swap:
    return Swap(week_of=dt.date.fromisoformat(week_of), a=a, b=b, requested_at=ny(requested))


@pytest.mark.parametrize(
    "requested, accepted",
    [
        ("2026-11-30T09:00", True),  # exactly 7 days before the Mon 2026-12-07 09:00 handoff
        ("2026-11-20T17:00", True),
        ("2026-11-30T09:01", False),
        ("2026-12-01T09:00", False),  # 6 days' notice
    ],
)
def test_swap_needs_seven_days_notice(schedule, requested, accepted):
    s = swap("2026-12-07", "DE1", "DE2", requested)
    if accepted:
        after = schedule.with_swap(s)
        assert after.on_call_at(ny("2026-12-08T12:00")).engineer == "DE2"
        assert after.week_at(ny("2026-12-08T12:00")).scheduled == "DE1"
        assert after.on_call_at(ny("2026-12-15T12:00")).engineer == "DE2"  # only that week moves
    else:
        with pytest.raises(oncall.SwapRefused) as err:
            schedule.with_swap(s)
        message = str(err.value)
        assert "needs 7 days' notice" in message
        assert "week of Mon 2026-12-07" in message
        assert "request by Mon 2026-11-30 09:00 EST" in message
        assert f"requested {ny(requested):%a %Y-%m-%d %H:%M}" in message


def test_six_days_notice_is_refused_with_the_dates(schedule):
    with pytest.raises(oncall.SwapRefused, match=r"6\.0 days ahead"):
        schedule.check_swap(swap("2026-12-07", "DE2", "DE1", "2026-12-01T09:00"))


def test_a_trade_is_two_swaps_and_a_swap_needs_the_on_call_engineer(schedule):
    traded = schedule.with_swap(swap("2026-12-07", "DE1", "DE2", "2026-11-01T09:00")).with_swap(
        swap("2026-12-14", "DE2", "DE1", "2026-11-01T09:05")
    )
    assert [traded.on_call_at(ny(d)).engineer for d in ("2026-12-08T12:00", "2026-12-15T12:00")] == [
        "DE2",
        "DE1",
    ]
    with pytest.raises(oncall.SwapRefused, match="neither DE3 nor DE4 is on call .* DE1 is"):
        schedule.check_swap(swap("2026-12-07", "DE3", "DE4", "2026-11-01T09:00"))
    with pytest.raises(oncall.SwapRefused, match="not an engineer"):
        schedule.check_swap(swap("2026-12-07", "DE1", "DE9", "2026-11-01T09:00"))


def test_schedule_weeks_and_handoff_meetings(schedule):
    weeks = schedule.weeks_between(dt.date(2026, 11, 16), dt.date(2026, 11, 30))
    assert [(w.week_of.isoformat(), w.engineer) for w in weeks] == [
        ("2026-11-16", "DE2"),
        ("2026-11-23", "DE3"),
        ("2026-11-30", "DE4"),
    ]
    handoffs = [e for e in oncall.calendar_entries(schedule, weeks) if e.kind == "handoff"]
    assert [(e.engineers, e.start, e.end - e.start) for e in handoffs] == [
        (("DE1", "DE2"), ny("2026-11-16T09:00"), dt.timedelta(minutes=30)),
        (("DE2", "DE3"), ny("2026-11-23T09:00"), dt.timedelta(minutes=30)),
        (("DE3", "DE4"), ny("2026-11-30T09:00"), dt.timedelta(minutes=30)),
    ]


def test_ics_is_valid_and_round_trips_the_schedule(schedule):
    swapped = schedule.with_swap(swap("2026-12-07", "DE1", "DE2", "2026-11-01T09:00"))
    weeks = swapped.weeks_between(dt.date(2026, 11, 1), dt.date(2027, 1, 10))
    data = oncall.schedule_ics(swapped, weeks, stamp=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))

    cal = icalendar.Calendar.from_ical(data)
    events = list(cal.walk("VEVENT"))
    assert str(cal["version"]) == "2.0" and cal["prodid"]
    assert [tz.tz_name for tz in cal.timezones] == ["America/New_York"]
    assert all(ev.get("uid") and ev.get("dtstamp") for ev in events)
    assert len({str(ev["uid"]) for ev in events}) == len(events)
    on_call = [ev for ev in events if str(ev["x-workbook-kind"]) == "on_call"]
    assert len(on_call) == len(weeks)  # one event per on-call week
    assert str(on_call[0]["dtstart"].params["TZID"]) == "America/New_York"

    back = oncall.entries_from_ics(data)
    assert back == oncall.calendar_entries(swapped, weeks)
    who_when = {(e.start, e.engineers) for e in back if e.kind == "on_call"}
    assert (ny("2026-12-07T09:00"), ("DE2",)) in who_when  # the swap is in the calendar
    assert (ny("2026-11-23T09:00"), ("DE3",)) in who_when


def test_load_shows_ownership_and_balanced_rotation(schedule):
    loads = {x.engineer: x for x in oncall.load_by_engineer(schedule, 2026)}
    assert loads["DE1"].primary_of == ("profit_aggregate", "engagement_aggregate")
    assert loads["DE3"].secondary_of == ("growth_daily", "engagement_aggregate")
    assert all(x.investor_pipelines >= 1 for x in loads.values())  # check_ownership's rule, visible
    assert sum(x.on_call_weeks for x in loads.values()) == 52
    assert {x.on_call_weeks for x in loads.values()} == {13}
    # DE3 holds the pager for both Thanksgiving and Christmas 2026: the imbalance shows
    assert (loads["DE3"].holiday_weeks, loads["DE3"].holidays_on_call) == (2, 2)
    assert sum(x.holidays_on_call for x in loads.values()) == 6
    month_end_days = sum(x.month_end_days_on_call for x in loads.values())
    assert month_end_days == 12 * 7


def test_comp_ledger_credits_whoever_holds_the_pager_at_noon(schedule):
    ledger = oncall.comp_ledger(
        schedule, 2026, {("DE3", dt.date(2026, 11, 26)): ("pay_1_5x", ny("2026-11-27T10:00"))}
    )
    assert [(e.date.isoformat(), e.holiday, e.engineer, e.choice) for e in ledger] == [
        ("2026-01-01", "New Year's Day", "DE4", None),
        ("2026-05-25", "Memorial Day", "DE1", None),
        ("2026-07-04", "Independence Day", "DE2", None),
        ("2026-09-07", "Labor Day", "DE4", None),
        ("2026-11-26", "Thanksgiving Day", "DE3", "pay_1_5x"),
        ("2026-12-25", "Christmas Day", "DE3", None),
    ]


# ---------------------------------------------------------------- stored swaps and choices (warehouse)


def test_recorded_swap_persists_and_applies(home):
    cfg = cfgmod.get()
    oncall.record_swap(cfg, "DE1", "DE2", dt.date(2026, 12, 9), ny("2026-11-20T10:00"))
    stored = oncall.stored_swaps()
    assert stored == [
        Swap(week_of=dt.date(2026, 12, 7), a="DE1", b="DE2", requested_at=ny("2026-11-20T10:00"))
    ]
    assert oncall.schedule_for(cfg).on_call_at(ny("2026-12-08T12:00")).engineer == "DE2"
    with pytest.raises(oncall.SwapRefused, match="already swapped"):
        oncall.record_swap(cfg, "DE2", "DE1", dt.date(2026, 12, 7), ny("2026-11-20T11:00"))


def test_comp_choice_is_recorded_for_the_holiday_on_call_only(home):
    cfg = cfgmod.get()
    entry = oncall.record_comp_choice(cfg, "DE3", dt.date(2026, 12, 25), "comp_day", ny("2026-12-28T10:00"))
    assert (entry.holiday, entry.choice) == ("Christmas Day", "comp_day")
    oncall.record_comp_choice(cfg, "DE3", dt.date(2026, 12, 25), "pay_1_5x", ny("2026-12-29T10:00"))
    assert oncall.stored_comp_choices()[("DE3", dt.date(2026, 12, 25))][0] == "pay_1_5x"
    with pytest.raises(ValueError, match="DE1 is not on call on a major holiday on 2026-12-25"):
        oncall.record_comp_choice(cfg, "DE1", dt.date(2026, 12, 25), "comp_day", ny("2026-12-28T10:00"))
    with pytest.raises(ValueError, match="expected one of comp_day, pay_1_5x"):
        oncall.record_comp_choice(cfg, "DE3", dt.date(2026, 12, 25), "cash", ny("2026-12-28T10:00"))


def test_cli_swap_refusal_exits_2_and_names_the_dates(home, capsys):
    code = main(
        ["oncall", "swap", "DE1", "DE2", "--week", "2026-12-07", "--requested-at", "2026-12-01T14:00:00Z"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "needs 7 days' notice" in err and "2026-11-30 09:00 EST" in err and "2026-12-01 09:00 EST" in err
    assert oncall.stored_swaps() == []
    assert (
        main(
            ["oncall", "swap", "DE1", "DE2", "--week", "2026-12-07", "--requested-at", "2026-11-20T14:00:00Z"]
        )
        == 0
    )
    assert "on call that week: DE2 (scheduled DE1)" in capsys.readouterr().out


def test_cli_now_and_schedule_ics(home, tmp_path, capsys):
    assert main(["oncall", "now", "--at", "2026-11-26T17:00:00Z", "--json"]) == 0
    now = json.loads(capsys.readouterr().out)
    assert now["engineer"] == "DE3" and now["holiday_week"] and now["month_end"]
    growth = next(r for r in now["routes"] if r["pipeline"] == "growth_aggregate")
    assert {p["who"] for p in growth["recipients"]} == {"DE3", "DE4"}
    ics = tmp_path / "oncall.ics"
    assert (
        main(["oncall", "schedule", "--from", "2026-11-16", "--to", "2026-12-31", "--ics", str(ics), "-q"])
        == 0
    )
    entries = oncall.entries_from_ics(ics.read_bytes())
    assert sum(e.kind == "on_call" for e in entries) == 7
    assert main(["oncall", "schedule", "--from", "2026-12-31", "--to", "2026-11-16"]) == 2


def test_cross_team_mapping_names_known_contacts_and_catalogue_ids(tmp_path):
    cfg = cfgmod.load(REPO / "config")
    assert set(cfg.team.escalation.cross_team) <= set(FAMILY)
    assert cfg.team.escalation.cross_team["finance_mismatch"] == "finance"
    shutil.copy(REPO / "config" / "pipelines.yml", tmp_path / "pipelines.yml")
    team = yaml.safe_load((REPO / "config" / "team.yml").read_text())
    team["escalation"].setdefault("cross_team", {})["kafka_outage"] = "sales_ops"  # an override in team.yml
    (tmp_path / "team.yml").write_text(yaml.safe_dump(team))
    with pytest.raises(
        cfgmod.ConfigError, match=r"escalation\.cross_team\.kafka_outage: expected one of contacts"
    ):
        cfgmod.load(tmp_path)


def test_swaps_in_team_yml_follow_the_same_rules(home):
    cfg = cfgmod.get()
    good = swap("2026-12-07", "DE1", "DE2", "2026-11-01T09:00")
    late = swap("2026-12-14", "DE2", "DE3", "2026-12-10T09:00")
    ok = cfg.model_copy(update={"team": cfg.team.model_copy(update={"swaps": (good,)})})
    assert oncall.schedule_for(ok).on_call_at(ny("2026-12-08T12:00")).engineer == "DE2"
    bad = cfg.model_copy(update={"team": cfg.team.model_copy(update={"swaps": (good, late)})})
    with pytest.raises(
        cfgmod.ConfigError, match=r"team\.yml: swaps\.1: swap refused: .* needs 7 days' notice"
    ):
        oncall.schedule_for(bad)
