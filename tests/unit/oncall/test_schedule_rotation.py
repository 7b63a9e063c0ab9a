"""On-call edge cases: holiday backups never the person on call, the team's time zone for --at,
swaps listed, cancelled and covered in an emergency, and the `oncall` verbs' output."""

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from conftest import REPO
from helpers.cli.main import main
from helpers.core import config as cfgmod
from helpers.core.businesscal import BusinessCalendar
from helpers.core.config import Owners
from helpers.oncall import schedule as oncall
from helpers.oncall import swaps
from helpers.storage.warehouse import get_engine

pytestmark = pytest.mark.unit
NY = ZoneInfo("America/New_York")
UTC = dt.UTC


def ny(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=NY)


@pytest.fixture(scope="module")
def cfg() -> cfgmod.WorkbookConfig:
    return cfgmod.load(REPO / "config")


@pytest.fixture
def schedule(cfg) -> oncall.Schedule:
    return oncall.Schedule(cfg.team, cfg.pipelines, [])


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- backups


def test_thanksgiving_backup_is_never_the_engineer_on_call(schedule):
    """Thanksgiving 2026: DE3 holds the pager and is engagement_aggregate's secondary owner."""
    state = schedule.on_call_at(dt.datetime(2026, 11, 26, 15, tzinfo=UTC))
    assert state.engineer == "DE3" and state.holiday_week
    assert state.backups["engagement_aggregate"] == "DE1"  # its other (primary) owner
    assert state.backup_reasons["engagement_aggregate"] == "DE3 is on call; other owner"
    assert state.backups["profit_aggregate"] == "DE2"
    assert state.backup_reasons["profit_aggregate"] == "secondary owner"
    assert state.backups["investor_aggregate"] == "DE2"  # team-owned: who handed the pager over
    assert state.backup_reasons["investor_aggregate"] == "handed the pager over"
    # a business-hours pipeline is paged to its primary owner first: its secondary backs up
    assert state.backups["growth_daily"] == "DE3"
    assert schedule.first_responder("growth_daily", state.at) == "DE4"


def test_no_holiday_week_of_the_year_pairs_anyone_with_themselves(schedule):
    weeks = [w for w in schedule.weeks_in_year(2026) + schedule.weeks_in_year(2027) if w.holiday_week]
    assert len(weeks) >= 10
    for w in weeks:
        at = w.start + dt.timedelta(hours=3)
        for pid in schedule.pipelines.pipelines:
            backup = schedule.backup_for(pid, at)
            assert backup.who != schedule.first_responder(pid, at), (w.week_of, pid, backup)


def test_a_swap_moves_the_backup_with_the_pager(cfg, schedule):
    # DE1 takes Thanksgiving week from DE3: engagement_aggregate's secondary (DE3) backs up again,
    # and profit_aggregate's secondary DE2 stays; DE1 is primary of engagement_aggregate
    swapped = schedule.with_swap(
        cfgmod.Swap(week_of=dt.date(2026, 11, 23), a="DE3", b="DE1", requested_at=ny("2026-11-01T09:00"))
    )
    state = swapped.on_call_at(ny("2026-11-25T12:00"))
    assert state.engineer == "DE1"
    assert state.backups["engagement_aggregate"] == "DE3"
    assert state.backups["profit_unit"] == "DE2"  # profit_unit's secondary DE1 is on call
    assert state.backup_reasons["profit_unit"] == "DE1 is on call; other owner"


def test_when_both_owners_are_taken_the_lead_backs_up(cfg):
    # not reachable with a valid config (owners differ); the rule still never repeats a person
    pipelines = cfg.pipelines.model_copy(deep=True)
    p = pipelines.pipelines["engagement_aggregate"]
    object.__setattr__(p, "owners", Owners.model_construct(primary="DE3", secondary="DE3", team=False))
    schedule = oncall.Schedule(cfg.team, pipelines, [])
    backup = schedule.backup_for("engagement_aggregate", ny("2026-11-25T12:00"))
    assert (backup.who, backup.reason) == ("lead", "DE3 is on call; team lead")


def test_load_counts_holiday_backup_weeks_without_the_pager(schedule):
    # 2026's holiday weeks: 25 May DE1, 29 Jun DE2, 7 Sep DE4, 23 Nov DE3, 21 Dec DE3, 28 Dec DE4.
    # DE1 backs up profit_unit (secondary) whenever DE1 is not on call: 5 weeks; in DE3's weeks
    # DE1 also takes engagement_aggregate (its secondary DE3 holds the pager), the same weeks.
    loads = {x.engineer: x for x in oncall.load_by_engineer(schedule, 2026)}
    assert loads["DE1"].backup_weeks == 5
    assert loads["DE1"].holiday_weeks == 1


def test_cli_now_shows_the_backup_and_why(home, capsys):
    code, out, _ = run(capsys, "oncall", "now", "--at", "2026-11-26T15:00:00Z")
    assert code == 0
    line = next(
        ln for ln in out.splitlines() if ln.startswith("engagement_aggregate") and "other owner" in ln
    )
    assert "DE1" in line and "DE3 is on call; other owner" in line
    code, out, _ = run(capsys, "oncall", "now", "--at", "2026-11-26T15:00:00Z", "--json")
    now = json.loads(out)
    assert now["backups"]["engagement_aggregate"] == "DE1"
    assert now["backup_reasons"]["engagement_aggregate"] == "DE3 is on call; other owner"


# ---------------------------------------------------------------- the team's time zone


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-12-24", dt.datetime(2026, 12, 24, 17, tzinfo=UTC)),  # noon EST
        ("2026-07-04", dt.datetime(2026, 7, 4, 16, tzinfo=UTC)),  # noon EDT
        ("2026-11-30T08:30", dt.datetime(2026, 11, 30, 13, 30, tzinfo=UTC)),  # local wall time
        ("2026-11-30T08:30:00Z", dt.datetime(2026, 11, 30, 8, 30, tzinfo=UTC)),
        ("2026-11-30T08:30:00+01:00", dt.datetime(2026, 11, 30, 7, 30, tzinfo=UTC)),
    ],
)
def test_a_time_the_team_writes_is_read_in_its_time_zone(cfg, text, expected):
    assert BusinessCalendar.from_team(cfg.team).local_instant(text) == expected


def test_a_bad_time_names_what_is_expected(cfg):
    with pytest.raises(ValueError, match=r"expected a date YYYY-MM-DD \(noon in America/New_York\)"):
        BusinessCalendar.from_team(cfg.team).local_instant("24/12/2026")


@pytest.mark.parametrize(
    "at, engineer",
    [
        ("2026-11-30", "DE4"),  # Monday noon New York: after the 09:00 handoff (midnight UTC is Sunday)
        ("2026-11-30T10:00", "DE4"),  # 10:00 New York
        ("2026-11-30T10:00:00Z", "DE3"),  # 05:00 New York: before the handoff
        ("2026-11-30T08:59", "DE3"),
    ],
)
def test_cli_now_at_reads_the_teams_time(home, capsys, at, engineer):
    code, out, _ = run(capsys, "oncall", "now", "--at", at, "--json")
    assert code == 0
    assert json.loads(out)["engineer"] == engineer


def test_cli_now_at_a_date_is_that_day_in_the_team_time_zone(home, capsys):
    code, out, _ = run(capsys, "oncall", "now", "--at", "2026-12-24")
    assert code == 0
    assert out.startswith("On call at Thu 2026-12-24 12:00 EST: DE3")
    code, _, err = run(capsys, "oncall", "now", "--at", "Christmas Eve")
    assert code == 2 and "--at: expected a date YYYY-MM-DD" in err and "'Christmas Eve'" in err


# ---------------------------------------------------------------- swaps: record, list, cancel


def swaps_json(capsys, *extra: str) -> list[dict]:
    code, out, err = run(capsys, "oncall", "swaps", "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def test_swaps_are_listed_with_who_recorded_them_and_their_status(home, capsys):
    code, out, _ = run(
        capsys, "oncall", "swap", "DE1", "DE2", "--week", "2026-12-07", "--by", "DE2",
        "--requested-at", "2026-11-20T10:00", "--json",
    )  # fmt: skip
    assert code == 0
    recorded = json.loads(out)
    assert (recorded["id"], recorded["kind"], recorded["recorded_by"], recorded["on_call"]) == (
        "1",
        "swap",
        "DE2",
        "DE2",
    )
    assert recorded["requested_at"] == "2026-11-20T15:00:00+00:00"  # 10:00 New York

    listed = swaps_json(capsys, "--at", "2026-12-01")
    assert [(s["id"], s["week_of"], s["a"], s["b"], s["status"]) for s in listed] == [
        ("1", "2026-12-07", "DE1", "DE2", "upcoming")
    ]
    assert swaps_json(capsys, "--at", "2026-12-08")[0]["status"] == "in effect"
    assert swaps_json(capsys, "--at", "2026-12-20") == []  # past weeks only with --all
    assert swaps_json(capsys, "--at", "2026-12-20", "--all")[0]["status"] == "past"

    code, out, _ = run(capsys, "oncall", "swaps", "--at", "2026-12-01")
    assert code == 0
    row = next(ln for ln in out.splitlines() if ln.startswith("1 "))
    assert "2026-12-07" in row and "DE1 <-> DE2" in row and "DE2" in row and "2026-11-20 10:00 EST" in row
    assert "upcoming" in row


def test_a_swap_is_cancelled_before_its_week_and_the_cancellation_is_kept(home, capsys):
    cfg = cfgmod.get()
    oncall.record_swap(cfg, "DE1", "DE2", dt.date(2026, 12, 7), ny("2026-11-20T10:00"))
    assert oncall.schedule_for(cfg).engineer_at(ny("2026-12-08T12:00")) == "DE2"

    code, out, _ = run(
        capsys, "oncall", "swap", "--cancel", "1", "--by", "DE2", "--reason", "plans changed",
        "--at", "2026-12-03T09:00", "--json",
    )  # fmt: skip
    assert code == 0
    cancelled = json.loads(out)
    assert (cancelled["cancelled"], cancelled["cancelled_by"], cancelled["cancel_reason"]) == (
        True, "DE2", "plans changed",
    )  # fmt: skip
    assert cancelled["on_call"] == "DE1"  # the rotation again
    assert oncall.schedule_for(cfg).engineer_at(ny("2026-12-08T12:00")) == "DE1"
    listed = swaps_json(capsys, "--at", "2026-12-04")
    assert [(s["id"], s["status"], s["cancelled_by"]) for s in listed] == [("1", "cancelled", "DE2")]
    assert [e["event"] for e in listed[0]["events"]] == ["recorded", "cancelled"]

    # cancelled twice, by someone else, or unknown: exit 2 naming the value
    code, _, err = run(capsys, "oncall", "swap", "--cancel", "1", "--by", "DE1", "--at", "2026-12-03T10:00")
    assert code == 2 and "swap 1 was already cancelled by DE2" in err
    code, _, err = run(capsys, "oncall", "swap", "--cancel", "7", "--by", "DE1", "--at", "2026-12-03T10:00")
    assert code == 2 and "unknown swap 7; expected a recorded swap id (1)" in err
    code, _, err = run(capsys, "oncall", "swap", "--cancel", "x1", "--by", "DE1")
    assert code == 2 and "expected a swap id" in err and "'x1'" in err

    # recording the same swap again reinstates it (same id), with the new request
    again = oncall.record_swap(cfg, "DE1", "DE2", dt.date(2026, 12, 7), ny("2026-11-29T09:00"))
    assert again.ref == "1" and not again.cancelled
    assert [e.event for e in again.events] == ["recorded", "cancelled", "recorded"]
    assert oncall.schedule_for(cfg).engineer_at(ny("2026-12-08T12:00")) == "DE2"


def test_a_cancel_is_refused_once_the_week_started_or_by_someone_else(home, capsys):
    cfg = cfgmod.get()
    oncall.record_swap(cfg, "DE1", "DE2", dt.date(2026, 12, 7), ny("2026-11-20T10:00"))
    code, _, err = run(capsys, "oncall", "swap", "--cancel", "1", "--by", "DE1", "--at", "2026-12-07T09:00")
    assert code == 2 and "which started Mon 2026-12-07 09:00 EST" in err
    code, _, err = run(capsys, "oncall", "swap", "--cancel", "1", "--by", "DE4", "--at", "2026-12-01")
    assert code == 2 and "swap 1 is DE1 <-> DE2; DE4 is neither, nor the lead" in err
    code, _, err = run(capsys, "oncall", "swap", "--cancel", "1", "--by", "DE9", "--at", "2026-12-01")
    assert code == 2 and "unknown person 'DE9'; expected one of DE1, DE2, DE3, DE4 or lead" in err
    assert run(capsys, "oncall", "swap", "--cancel", "1", "--by", "lead", "--at", "2026-12-01")[0] == 0


def test_a_cancel_that_would_orphan_a_later_swap_of_the_week_is_refused(home):
    cfg = cfgmod.get()
    oncall.record_swap(cfg, "DE1", "DE2", dt.date(2026, 12, 7), ny("2026-11-20T10:00"))
    oncall.record_swap(cfg, "DE2", "DE3", dt.date(2026, 12, 7), ny("2026-11-21T10:00"))
    assert oncall.schedule_for(cfg).engineer_at(ny("2026-12-08T12:00")) == "DE3"
    with pytest.raises(
        oncall.SwapRefused, match=r"swap 2 \(DE2 <-> DE3, same week\) only applies after swap 1"
    ):
        oncall.cancel_swap(cfg, 1, "DE1", ny("2026-12-01T09:00"))
    oncall.cancel_swap(cfg, 2, "DE3", ny("2026-12-01T09:00"))
    oncall.cancel_swap(cfg, 1, "DE1", ny("2026-12-01T09:05"))
    assert oncall.schedule_for(cfg).engineer_at(ny("2026-12-08T12:00")) == "DE1"


def test_a_swap_stored_before_events_existed_is_listed_as_recorded(home, capsys):
    with get_engine().begin() as conn:
        conn.execute(
            sa.insert(swaps.oncall_swaps).values(
                week_of="2026-12-07", a="DE1", b="DE2", requested_at=dt.datetime(2026, 11, 20, 15)
            )
        )
    listed = swaps_json(capsys, "--at", "2026-12-01")
    assert [(s["id"], s["kind"], s["recorded_by"], s["status"]) for s in listed] == [
        ("1", "swap", None, "upcoming")
    ]
    assert oncall.schedule_for(cfgmod.get()).engineer_at(ny("2026-12-08T12:00")) == "DE2"


# ---------------------------------------------------------------- emergency cover


def test_an_emergency_cover_inside_the_notice_needs_both_engineers_and_the_lead(home, capsys):
    base = ["oncall", "swap", "DE1", "DE2", "--week", "2026-12-07", "--requested-at", "2026-12-04T18:00"]
    code, _, err = run(capsys, *base)
    assert code == 2 and "needs 7 days' notice" in err and "both engineers and the team lead" in err

    code, _, err = run(capsys, *base, "--emergency", "--by", "DE1", "--approved-by", "DE2")
    assert code == 2
    assert "emergency cover refused" in err and "missing: lead (agreed: DE1, DE2)" in err
    code, _, err = run(capsys, *base, "--emergency", "--by", "DE1", "--approved-by", "lead")
    assert code == 2 and "missing: DE2" in err
    code, _, err = run(capsys, *base, "--emergency")
    assert code == 2 and "--emergency: expected --approved-by" in err
    code, _, err = run(capsys, *base, "--approved-by", "DE2,lead")
    assert code == 2 and "approvals are for an emergency cover" in err
    code, _, err = run(capsys, *base, "--emergency", "--approved-by", "DE2,boss")
    assert code == 2 and "approved by: unknown person 'boss'" in err
    assert swaps.swap_records() == []

    code, out, err = run(
        capsys,
        *base,
        "--emergency",
        "--by",
        "DE1",
        "--approved-by",
        "DE2,lead",
        "--reason",
        "DE1 is ill",
        "--json",
    )
    assert code == 0, err
    cover = json.loads(out)
    assert (cover["kind"], cover["recorded_by"], cover["approved_by"], cover["reason"]) == (
        "emergency", "DE1", ["DE2", "lead"], "DE1 is ill",
    )  # fmt: skip
    assert cover["on_call"] == "DE2"
    assert oncall.schedule_for(cfgmod.get()).engineer_at(ny("2026-12-08T12:00")) == "DE2"
    code, out, _ = run(capsys, "oncall", "swaps", "--at", "2026-12-05")
    assert "emergency" in out and "1: emergency cover agreed by DE1, DE2, lead" in out


def test_an_emergency_cover_is_refused_once_the_week_started(home, capsys):
    code, _, err = run(
        capsys, "oncall", "swap", "DE1", "DE2", "--week", "2026-12-07", "--requested-at", "2026-12-08T10:00",
        "--emergency", "--approved-by", "DE2,lead",
    )  # fmt: skip
    assert code == 2 and "the week of Mon 2026-12-07" in err and "has started" in err
    assert swaps.swap_records() == []


# ---------------------------------------------------------------- every verb: JSON, width, unknown values


def test_unknown_engineers_exit_2_naming_the_value(home, capsys):
    code, _, err = run(
        capsys, "oncall", "swap", "DE1", "DE9", "--week", "2026-12-07", "--requested-at", "2026-11-01"
    )
    assert code == 2 and "'DE9' is not an engineer; expected one of DE1, DE2, DE3, DE4" in err
    code, _, err = run(capsys, "oncall", "comp", "--choose", "DE9", "2026-12-25", "comp_day")
    assert code == 2 and "unknown engineer 'DE9'; expected one of DE1, DE2, DE3, DE4" in err
    code, _, err = run(
        capsys,
        "oncall",
        "swap",
        "DE1",
        "DE2",
        "--week",
        "2026-12-07",
        "--by",
        "DE4",
        "--requested-at",
        "2026-11-01",
    )
    assert code == 2 and "recorded by DE4; expected DE1, DE2 or lead" in err
    code, _, err = run(capsys, "oncall", "swap", "DE1", "DE2")
    assert code == 2 and "expected two engineers and --week" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["oncall", "now", "--at", "2026-11-26T15:00:00Z"],
        ["oncall", "now", "--at", "2026-11-14T10:00"],  # Growth deferred to Monday
        ["oncall", "schedule", "--from", "2026-06-29", "--to", "2027-01-10"],
        ["oncall", "swaps", "--at", "2026-11-01", "--all"],
        ["oncall", "load", "--year", "2026"],
        ["oncall", "comp", "--year", "2026"],
    ],
)
def test_every_verb_is_readable_at_100_columns_and_speaks_json(home, capsys, monkeypatch, argv):
    monkeypatch.delenv("COLUMNS", raising=False)
    cfg = cfgmod.get()
    oncall.record_swap(cfg, "DE1", "DE2", dt.date(2026, 12, 7), ny("2026-11-20T10:00"), by="lead")
    oncall.record_swap(
        cfg, "DE2", "DE3", dt.date(2026, 11, 16), ny("2026-11-12T10:00"), emergency=True, approved_by=["DE3", "lead"],
        reason="a family emergency that needs a long explanation in the record",
    )  # fmt: skip
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) > 3
    assert max(len(ln) for ln in lines) <= 100, "\n".join(ln for ln in lines if len(ln) > 100)
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    assert json.loads(out)
