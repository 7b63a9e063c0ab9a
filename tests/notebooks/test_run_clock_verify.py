"""A runbook's repair after a run at a past ``--as-of`` verifies (issue 20: two clocks in pipeline_runs).

The run of the faulty day is recorded on the wall clock (``workbook run --as-of`` in the past, as a
close does); the alert's runbook is then run with ``--apply-fix`` at a later past ``--as-of``. Its
re-runs used to record times in the runbook's ``as_of`` frame, so the run before the fix looked
like the latest one and Verify failed (exit 1) after a successful repair. Now the runner hands its
clock (the CLI's wall clock) to the runbook's kernel: the re-run is the latest run of its partition
and Verify passes. Everything goes through the real CLI, in new processes.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from conftest import demo_landing, home_with_demo, workbook
from helpers.oncall import alerts
from helpers.runs import records as runs

pytestmark = pytest.mark.notebooks

PIPELINE = "engagement_aggregate"
DEMO = {"accounts": 40, "months": 2, "seed": 7, "end": "2026-10-31", "events": True}
FAULTS = (
    "duplicate_events@2026-10-09",
    "late_events@2026-10-13:share=1.0,min_days=3,max_days=3",  # past the 3-day window
)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    return demo_landing(tmp_path_factory, **DEMO, faults=FAULTS)


def run_day(day: str, as_of: str) -> runs.RunRecord:
    done = workbook("run", PIPELINE, "--date", day, "--as-of", as_of, "-q", "--json")
    assert done.returncode == 0, done.stderr
    return runs.get_run(json.loads(done.stdout)["run_id"])


def repair(cid: str, day: str, as_of: str) -> dict:
    [alert] = [
        a
        for a in alerts.list_alerts(open_only=True, pipeline=PIPELINE)
        if a.check_id == f"{PIPELINE}.{cid}" and a.partition == day
    ]
    done = workbook("runbook", "--alert", str(alert.alert_id), "--apply-fix", "--as-of", as_of, "--json")
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    run = json.loads(done.stdout)
    assert run["cause"] == cid and run["fixes"] and all(f["applied"] and not f["error"] for f in run["fixes"])
    assert run["verification"]["passed"] is True, run["verification"]
    assert alerts.get_alert(alert.alert_id).status == "resolved"
    return run


def assert_rerun_is_latest(day: str, before: runs.RunRecord, as_of: str) -> None:
    latest = runs.latest_run(PIPELINE, day)
    assert latest.run_id != before.run_id and latest.status == "succeeded"
    assert latest.as_of == dt.datetime.fromisoformat(as_of)  # the data frame: the runbook's as_of
    # the record's times are when it really ran (the wall clock), after the run it repaired
    assert latest.started_at > before.finished_at > latest.as_of


def test_duplicate_events_repair_after_a_run_at_a_past_as_of_verifies(home, faulty):
    home_with_demo(home, faulty)
    before = run_day("2026-10-09", "2026-10-10T04:00:00Z")
    assert before.started_at > before.as_of + dt.timedelta(days=30)  # recorded on the wall clock
    repair("duplicate_events", "2026-10-09", "2026-10-10T06:00:00+00:00")
    assert_rerun_is_latest("2026-10-09", before, "2026-10-10T06:00:00+00:00")


def test_late_events_repair_after_runs_at_a_past_as_of_verifies(home, faulty):
    home_with_demo(home, faulty)
    before = run_day("2026-10-13", "2026-10-14T04:00:00Z")  # its mobile events have not arrived
    run_day("2026-10-16", "2026-10-17T04:00:00Z")  # they arrive: past the 13th's window
    repair("late_events", "2026-10-16", "2026-10-17T06:00:00+00:00")
    assert_rerun_is_latest("2026-10-13", before, "2026-10-17T06:00:00+00:00")
