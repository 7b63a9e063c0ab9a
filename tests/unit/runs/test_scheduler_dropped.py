"""The scheduler records the slots it drops (older than catch_up_days), alerts on them until a run
covers their partition, and coalesces missed slots of one partition into one run.

The runs themselves are faked (``orchestrate.run_items``): these tests are about which runs a tick
asks for and what it records, not about executing notebooks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io

import pytest

from helpers.runs import orchestrate, records, scheduler

pytestmark = pytest.mark.unit

UTC = dt.UTC


@pytest.fixture
def fake_runs(monkeypatch):
    """Replace the runner: every item "succeeds" with a run id; returns the list of calls."""
    calls: list[list] = []

    def run_items(items, **kwargs):
        calls.append(list(items))
        return [
            orchestrate.Outcome(
                it.pipeline, it.partition, "succeeded", run_id=f"run-{it.pipeline}-{it.partition}"
            )
            for it in items
        ]

    monkeypatch.setattr(orchestrate, "run_items", run_items)
    return calls


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def tick(as_of: dt.datetime, pipelines: list[str], hooks=()) -> scheduler.TickResult:
    return scheduler.tick(as_of, clock=lambda: as_of, pipelines=pipelines, hooks=hooks)


def slots_by_status(pipeline: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in scheduler.list_slots():
        if row["pipeline"] == pipeline:
            out.setdefault(row["status"], []).append(row)
    return out


def test_slots_older_than_catch_up_days_are_recorded_dropped_with_a_reason(home, fake_runs):
    # smoke: daily at 06:15, catch_up_days 7. Ten days without a completed tick.
    assert tick(at("2026-11-02T06:20"), ["smoke"]).slots == []
    result = tick(at("2026-11-12T06:20"), ["smoke"])
    assert [s.item.partition for s in result.dropped] == ["2026-11-02", "2026-11-03", "2026-11-04"]
    ran = [it.partition for call in fake_runs for it in call]
    assert ran == [f"2026-11-{d:02d}" for d in range(5, 12)]  # the 7 days in the window, each once
    rows = slots_by_status("smoke")
    assert sorted(r["logical_date"] for r in rows["dropped"]) == ["2026-11-02", "2026-11-03", "2026-11-04"]
    assert len(rows["succeeded"]) == 7 and "claimed" not in rows
    for r in rows["dropped"]:
        assert r["run_id"] is None and r["tick_id"] == result.tick_id
        assert "older than catch_up_days=7" in r["reason"] and "2026-11-05 06:20Z" in r["reason"]
    assert result.as_json()["dropped"][0] == {
        "pipeline": "smoke",
        "scheduled_for": "2026-11-03T06:15:00+00:00",
        "partition": "2026-11-02",
    }
    [latest, _first] = scheduler.list_ticks()
    assert "smoke 2026-11-02 2026-11-03T06:15Z" in latest["summary"]


def test_without_an_outage_nothing_is_dropped(home, fake_runs):
    tick(at("2026-11-02T06:20"), ["smoke"])
    result = tick(at("2026-11-05T06:20"), ["smoke"])
    assert result.dropped == [] and result.coalesced == {}
    assert [it.partition for call in fake_runs for it in call] == ["2026-11-02", "2026-11-03", "2026-11-04"]
    assert "dropped" not in slots_by_status("smoke")


def test_seven_missed_ticks_of_one_month_to_date_partition_give_one_run(home, fake_runs):
    # profit_aggregate: monthly, daily at 05:00; 11-10 .. 11-16 all run the month to date 2026-11.
    tick(at("2026-11-09T05:30"), ["profit_aggregate"])
    result = tick(at("2026-11-16T05:30"), ["profit_aggregate"])
    assert len(result.slots) == 7 and result.dropped == []
    calls = [[(it.pipeline, it.partition, it.reference_day) for it in call] for call in fake_runs]
    assert calls == [[("profit_aggregate", "2026-11", dt.date(2026, 11, 15))]]  # the latest slot's
    assert [(o.partition, o.status) for o in result.outcomes] == [("2026-11", "succeeded")]
    keeper = max(result.slots, key=lambda s: s.scheduled_for)
    assert keeper.scheduled_for == at("2026-11-16T05:00")
    assert set(result.coalesced) == set(result.slots) - {keeper}
    assert set(result.coalesced.values()) == {keeper}
    rows = slots_by_status("profit_aggregate")
    assert [r["scheduled_for"] for r in rows["succeeded"]] == [dt.datetime(2026, 11, 16, 5, 0)]
    assert len(rows["coalesced"]) == 6
    for r in rows["coalesced"]:
        assert r["run_id"] == "run-profit_aggregate-2026-11" and "2026-11-16 05:00Z" in r["reason"]


def test_a_missed_slot_whose_partition_runs_anyway_is_folded_in_not_dropped(home, fake_runs):
    # 13 days off: the slots of 11-13 .. 11-18 are older than 7 days, but 2026-11 runs in this tick.
    tick(at("2026-11-12T05:30"), ["profit_aggregate"])
    result = tick(at("2026-11-25T05:30"), ["profit_aggregate"])
    assert result.dropped == []
    assert len(fake_runs) == 1 and [it.partition for it in fake_runs[0]] == ["2026-11"]
    assert len(result.coalesced) == 12
    rows = slots_by_status("profit_aggregate")
    assert len(rows["coalesced"]) == 12 and len(rows["succeeded"]) == 1 and "dropped" not in rows


def test_scheduler_once_says_what_it_dropped_and_alerts_until_a_run_covers_it(home, fake_runs, monkeypatch):
    from helpers.cli.main import main
    from helpers.oncall import alerts
    from helpers.runbooks import tick as tickmod

    from helpers import checks

    # the monitors (the dropped-slot checks among them), without diagnosis and escalation
    monkeypatch.setattr(tickmod, "scheduler_hooks", lambda: [checks.evaluate_monitors])
    monkeypatch.setenv("COLUMNS", "100")

    def once(as_of: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["scheduler", "--once", "--pipelines", "smoke", "--as-of", as_of, "-q"])
        return code, out.getvalue(), err.getvalue()

    assert once("2026-11-02T06:20:00Z")[0] == 0
    code, out, err = once("2026-11-12T06:20:00Z")
    assert code == 0
    assert (
        "dropped 3 slot(s) older than catch_up_days=7: smoke 2026-11-02, smoke 2026-11-03, smoke 2026-11-04"
    ) in out
    found = {
        a.partition: a for a in alerts.list_alerts(open_only=True) if a.check_id == "smoke.slots_dropped"
    }
    assert sorted(found) == ["2026-11-02", "2026-11-03", "2026-11-04"]
    alert = found["2026-11-02"]
    assert alert.severity == "warning" and alert.kind == "slots_dropped"
    assert alert.runbook.endswith("backfill.ipynb")
    assert "workbook backfill smoke --from 2026-11-02 --to 2026-11-02" in alert.summary
    assert f"alert {alert.alert_id} opened: warning smoke.slots_dropped 2026-11-02" in err

    # A backfill of 2026-11-02 (a succeeded run at an as_of after the slot fired) resolves its alert.
    run_id = records.start_run(
        "smoke",
        "2026-11-02",
        now=at("2026-11-12T07:00"),
        as_of=at("2026-11-12T07:00"),
        parameters={},
        code_version=None,
        trigger="backfill",
    )
    records.finish_run(run_id, status="succeeded", now=at("2026-11-12T07:01"))
    assert once("2026-11-12T07:10:00Z")[0] == 0
    still = {a.partition for a in alerts.list_alerts(open_only=True) if a.check_id == "smoke.slots_dropped"}
    assert still == {"2026-11-03", "2026-11-04"}
    resolved = alerts.get_alert(alert.alert_id)
    assert resolved.status == "resolved" and run_id in resolved.resolution


def test_a_run_before_the_slot_fired_does_not_cover_it(home, fake_runs):
    from helpers.checks import slots

    tick(at("2026-11-02T06:20"), ["smoke"])
    tick(at("2026-11-12T06:20"), ["smoke"])
    early = records.start_run(
        "smoke", "2026-11-03", now=at("2026-11-03T01:00"), as_of=at("2026-11-03T01:00"),
        parameters={}, code_version=None,
    )  # fmt: skip
    records.finish_run(early, status="succeeded", now=at("2026-11-03T01:01"))
    results = {
        r.partition: r for r in slots.slots_dropped_results(at("2026-11-12T06:30"), pipelines=["smoke"])
    }
    assert results["2026-11-03"].failed  # the slot fired 11-04 06:15: the earlier run missed late data
    assert results["2026-11-03"].evidence["slots"] == ["2026-11-04T06:15Z"]
    # Drops older than monitors.lookback_days (7) are no longer evaluated.
    assert slots.slots_dropped_results(at("2026-11-20T06:30"), pipelines=["smoke"]) == []


def test_coalesce_keeps_the_latest_slot_of_each_partition():
    from helpers.runs.dag import RunItem

    def slot(pipeline: str, day: int, partition: str) -> scheduler.Slot:
        fired = dt.datetime(2026, 11, day, 5, tzinfo=UTC)
        return scheduler.Slot(
            pipeline, fired, RunItem(pipeline, partition, fired.date() - dt.timedelta(days=1))
        )

    a1, a2, a3 = slot("m", 10, "2026-11"), slot("m", 11, "2026-11"), slot("m", 12, "2026-11")
    d1, d2 = slot("d", 10, "2026-11-09"), slot("d", 11, "2026-11-10")
    keepers, into = scheduler.coalesce([a3, d1, a1, d2, a2])
    assert keepers == [d1, d2, a3]
    assert into == {a1: a3, a2: a3}
