"""The Engagement runbooks end to end: each fault's alert is diagnosed, fixed and verified.

One demo company (60 accounts) carries the five event faults on separate days; a clean one with
the same seed is the reference. Each test leaves behind what the pipeline's run of the day leaves
(marts, check results, the alert), then runs the alert's runbook through
:func:`helpers.runbooks.registry.run_runbook` with ``apply_fix=True`` (one papermill execution: diagnose,
fix, verify) and compares the repaired ``engagement_daily`` rows of the faulty day with the clean
company's, computed at the same ``as_of``. Tolerance: none (integer counts, exact).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import demo_landing, home_with_demo
from helpers.engagement import checks as engagement_checks
from helpers.engagement import event_contract
from helpers.engagement.inputs import load
from helpers.engagement.marts import ACCOUNTS_TABLE, DAILY_COLUMNS, DAILY_TABLE
from helpers.engagement.run import compute
from helpers.engagement.store import pending_backfill_requests, write
from helpers.engagement.window import DEFAULT_WINDOW_DAYS, PIPELINE, run_window
from helpers.oncall import alerts
from helpers.runbooks import kit
from helpers.runbooks import registry as runbooks
from helpers.runs import records as runs
from helpers.storage import engine as engines
from helpers.storage import warehouse

pytestmark = pytest.mark.notebooks
DEMO = {"accounts": 60, "months": 3, "seed": 7, "end": "2026-10-31", "events": True}
FAULTS = (
    "data_skew_oom@2026-10-06:share=0.6",  # >= 200 events that day: the check judges it
    "duplicate_events@2026-10-09",
    "late_events@2026-10-13:share=1.0,min_days=3,max_days=3",  # past the 3-day window
    "kafka_outage@2026-10-20",
    "schema_change@2026-10-24:days=2,broken=0",
)
FIX_DELAY = dt.timedelta(hours=2)  # the runbook runs two hours after the pipeline's run


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return demo_landing(tmp_path_factory, **DEMO)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory) -> Path:
    return demo_landing(tmp_path_factory, **DEMO, faults=FAULTS)


def truth(root: Path, fault: str) -> dict:
    faults = json.loads((root / "_faults.json").read_text())["faults"]
    return next(f for f in faults if f["fault"] == fault and f["source"] == "events")


def day_run(day: str, contract: event_contract.EventContract = event_contract.CONTRACT) -> dt.datetime:
    """What the pipeline's scheduled run of ``day`` leaves: marts, check results, alerts, its run
    record (in-process, at the scheduled 04:00 the next day). Returns that ``as_of``."""
    eng = engines.get_engine("duckdb")
    window = run_window(day, "", DEFAULT_WINDOW_DAYS)
    result = compute(eng, load(eng, window, contract=contract), window, contract=contract)
    at = window.as_of
    run_id = runs.start_run(PIPELINE, day, now=at, as_of=at, parameters={}, code_version=None)
    write(result, run_id=run_id)
    engagement_checks.run_domain_checks(result, run_id=run_id)
    runs.finish_run(run_id, status="succeeded", now=at)
    return at


def open_alert(cid: str, day: str) -> alerts.Alert:
    found = [
        a
        for a in alerts.list_alerts(open_only=True, pipeline=PIPELINE)
        if a.check_id == f"{PIPELINE}.{cid}" and a.partition == day
    ]
    assert len(found) == 1, [a.check_id for a in alerts.list_alerts(open_only=True)]
    return found[0]


def fix(cid: str, day: str, at: dt.datetime, **params) -> runbooks.RunbookRun:
    alert = open_alert(cid, day)
    assert alert.catalogue_id == cid and alert.runbook.endswith(f"engagement/{cid}.ipynb")
    as_of = at + FIX_DELAY
    run = runbooks.run_runbook(
        runbooks.resolve_alert(alert).runbook,
        clock=kit.as_of_clock(as_of),
        as_of=as_of,
        alert_id=alert.alert_id,
        apply_fix=True,
        params=params,
    )
    assert run.status == "succeeded", run.error
    assert run.cause == cid and run.diagnosis.startswith(cid), run.diagnosis
    assert all(f["applied"] and not f["error"] for f in run.fixes) and run.fixes, run.fixes
    assert run.verification["passed"] is True, run.verification
    assert alerts.get_alert(alert.alert_id).status == "resolved"
    return run


def mart_day(day: str) -> pd.DataFrame:
    frame = warehouse.read_table(DAILY_TABLE)
    frame = frame[frame["date"].astype(str).str[:10] == day]
    return frame[list(DAILY_COLUMNS[1:])].sort_values("account_id").reset_index(drop=True)


def clean_day(clean: Path, day: str, as_of: dt.datetime) -> pd.DataFrame:
    """The clean company's rows of ``day`` from a run of that day at ``as_of``."""
    eng = engines.get_engine("duckdb")
    window = run_window(day, as_of, DEFAULT_WINDOW_DAYS, root=clean)
    daily = compute(eng, load(eng, window, root=clean), window).daily
    daily = daily[daily["date"] == dt.date.fromisoformat(day)]
    return daily[list(DAILY_COLUMNS[1:])].sort_values("account_id").reset_index(drop=True)


def assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert len(want) > 0
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


# ---------------------------------------------------------------- one test per catalogue id


def test_late_events_backfills_the_late_day(home, faulty, clean):
    home_with_demo(home, faulty)
    gt = truth(faulty, "late_events")
    day_run(gt["date"])  # the scheduled run of the 13th: its mobile events have not arrived
    before = mart_day(gt["date"])
    at = day_run("2026-10-16")  # they arrive on the 16th: past their day's 3-day window
    run = fix("late_events", "2026-10-16", at)
    assert "mobile users went offline" in run.diagnosis and "2026-10-13" in run.diagnosis
    assert f"{gt['details']['events']} of {gt['details']['events']} late events from mobile" in run.diagnosis
    assert pending_backfill_requests().empty
    after = mart_day(gt["date"])
    assert int(after["events"].sum()) - int(before["events"].sum()) == gt["details"]["events"]
    assert_same(after, clean_day(clean, gt["date"], at + FIX_DELAY))


def test_kafka_outage_replays_the_window(home, faulty, clean, tmp_path):
    shutil.copytree(faulty, home / "data" / "landing")  # the fix lands a new delivery: a copy
    gt = truth(faulty, "kafka_outage")
    at = day_run(gt["date"])
    before = mart_day(gt["date"])
    run = fix("kafka_outage", gt["date"], at, replay_from=str(clean))  # the topic's retained copy
    assert "Kafka broker crashed" in run.diagnosis and gt["details"]["window_start"][:16] in run.diagnosis
    (applied,) = run.fixes
    assert applied["result"]["replayed"] == gt["details"]["lost_rows"]
    after = mart_day(gt["date"])
    assert int(after["events"].sum()) - int(before["events"].sum()) == gt["details"]["lost_rows"]
    assert_same(after, clean_day(clean, gt["date"], at + FIX_DELAY))


def test_duplicate_events_are_counted_once(home, faulty, clean):
    home_with_demo(home, faulty)
    gt = truth(faulty, "duplicate_events")
    at = day_run("2026-10-10")
    run = fix("duplicate_events", "2026-10-10", at)
    messages = gt["details"]["messages"]
    assert f"of {messages} duplicated messages" in run.diagnosis and gt["date"] in run.diagnosis
    finding = next(f for f in run.evidence["findings"] if f["reason"] == "no deduplication")
    assert not finding["holds"] and f"{gt['details']['extra_rows']} copies removed" in finding["detail"]
    assert_same(mart_day(gt["date"]), clean_day(clean, gt["date"], at + FIX_DELAY))


def test_data_skew_names_the_hot_account(home, faulty, clean):
    home_with_demo(home, faulty)
    gt = truth(faulty, "data_skew_oom")
    account = gt["details"]["account"]
    at = day_run("2026-10-07")
    run = fix("data_skew_oom", "2026-10-07", at)
    assert f"account {account} holds" in run.diagnosis and gt["date"] in run.diagnosis
    # the automation's events are real traffic: the hot account keeps exactly them, nothing else moves
    got = mart_day(gt["date"]).set_index("account_id")
    want = clean_day(clean, gt["date"], at + FIX_DELAY).set_index("account_id")
    clean_events = int(want["events"].get(account, 0))  # the automation may be its only traffic
    assert got.loc[account, "events"] - clean_events == gt["details"]["extra_events"]
    assert_same(got.drop(index=account), want.drop(index=account, errors="ignore"))


def test_upstream_missing_runs_profit_and_growth_then_publishes(home, faulty, clean):
    home_with_demo(home, clean)
    at = day_run("2026-10-16")  # Profit and Growth never ran for October: account rows pending
    accounts = warehouse.read_table(ACCOUNTS_TABLE)
    assert (accounts["status"] == "pending").all() and accounts["revenue_usd_cents"].isna().all()
    run = fix("upstream_missing", "2026-10-16", at)
    assert "didn't finish yet" in run.diagnosis and "profit_unit" in run.diagnosis, run.diagnosis
    for pipeline in ("profit_aggregate", "profit_unit", "growth_aggregate"):
        assert runs.latest_run(pipeline, "2026-10").status == "succeeded"
    accounts = warehouse.read_table(ACCOUNTS_TABLE)
    assert (accounts["status"] == "final").all() and accounts["revenue_usd_cents"].notna().all()
    # the join now equals a run whose upstreams had finished first
    eng = engines.get_engine("duckdb")
    window = run_window("2026-10-16", at + FIX_DELAY, DEFAULT_WINDOW_DAYS)
    want = compute(eng, load(eng, window), window).accounts
    cols = ["account_id", "events", "revenue_usd_cents", "growth_status", "status"]
    pd.testing.assert_frame_equal(
        accounts[cols].sort_values("account_id").reset_index(drop=True),
        want[cols].sort_values("account_id").reset_index(drop=True),
        check_dtype=False,
    )
    assert int(accounts["revenue_usd_cents"].sum()) > 0


def test_schema_change_reruns_once_the_version_is_declared(home, faulty, clean):
    home_with_demo(home, faulty)
    gt = truth(faulty, "schema_change")
    v1_only = event_contract.EventContract(versions=(event_contract.V1, event_contract.V1_RAW))
    at = day_run("2026-10-25", contract=v1_only)  # the run read v2 before the contract declared it
    alert = open_alert("schema_change", "2026-10-25")
    assert alert.severity == "critical"
    run = fix("schema_change", "2026-10-25", at)
    assert "schema_version 2 (not declared" in run.diagnosis
    # the fix declared v2 as data (who: the engineer on call, when: the fix's as_of), then replayed
    (declared,) = event_contract.declared()
    assert (declared.version, declared.declared_at) == (event_contract.V2, (at + FIX_DELAY).isoformat())
    assert declared.declared_by == run.fixes[0]["result"]["declared"][0]["declared_by"]
    assert_same(mart_day("2026-10-25"), clean_day(clean, "2026-10-25", at + FIX_DELAY))
    assert gt["details"]["v2"] > 0


# ---------------------------------------------------------------- clean data: no problem found


def test_clean_data_diagnoses_no_problem_found(home, clean):
    home_with_demo(home, clean)
    at = day_run("2026-10-10")
    run = runbooks.run_runbook(
        "engagement/duplicate_events", clock=kit.as_of_clock(at + FIX_DELAY), as_of=at + FIX_DELAY
    )
    assert (run.status, run.cause, run.mode) == ("succeeded", "no_problem_found", "diagnose"), run.diagnosis
    assert run.diagnosis.startswith("no problem found") and "2026-10-10 [pass" in run.diagnosis
    assert [f["reason"] for f in run.evidence["findings"]] == [
        "no deduplication",
        "client retry logic gone wrong",
        "network glitch",
    ]
    assert not run.fixes or not any(f["applied"] for f in run.fixes)


# ---------------------------------------------------------------- the findings' rules (pure)


def _state(**result) -> kit.Evidence:
    return kit.Evidence(True, "failing", data={"partition": "2026-10-20", "result": result})


@pytest.mark.unit
def test_outage_findings_tell_network_broker_and_producer_apart():
    from helpers.engagement import evidence

    window = {"window_start": "2026-10-20T09:00:00+00:00", "window_end": "2026-10-20T15:00:00+00:00"}
    flowing = pd.DataFrame(
        {"source": ["web_analytics", "api_logs"], "in_window": [90, 40], "week_before": [100, 50]}
    )
    down = flowing.assign(in_window=[3, 0])

    def verdicts(observed: int, others: pd.DataFrame) -> list[str]:
        state = _state(**window, observed=observed, expected=40.0)
        return [w for w in ("network", "broker", "producer") if evidence.outage_cause(state, others, w).holds]

    assert verdicts(0, flowing) == ["broker"]
    assert verdicts(5, flowing) == ["producer"]
    assert verdicts(0, down) == ["network"]
    quiet = kit.Evidence(False, "ok", data={"partition": "2026-10-20", "result": {}})
    assert not evidence.outage_cause(quiet, flowing, "broker").holds


@pytest.mark.unit
def test_schema_findings_separate_new_versions_from_incomplete_records():
    from helpers.engagement import evidence
    from helpers.engagement import runbook as rbe

    state = _state(
        by_reason={"unknown schema_version '2'": 46, "unknown schema_version '9'": 3, "missing timestamp": 2},
        quarantined_ids={"m1": "missing timestamp", "m2": "missing timestamp"},
    )
    reasons = evidence.quarantine_reasons(state)
    fmt = evidence.new_format(state, reasons)
    assert fmt.holds and fmt.data["undeclared"] == ["2", "9"]  # v2 is in force once the fix declares it
    assert (
        "46 row(s) of schema_version 2 (not" in fmt.detail
        and "3 row(s) of schema_version 9 (not" in fmt.detail
    )
    broken = evidence.broken_records(state, reasons)
    assert broken.holds and broken.detail.startswith("missing timestamp: 2")
    with pytest.raises(ValueError, match="schema_version 9 is not declared") as refused:
        rbe.redeclared_rerun(None, state, fmt)  # v2 has a reviewed mapping, 9 none: nothing declared
    assert "version: '9'" in str(refused.value)  # with a draft entry to review
    assert event_contract.CONTRACT.known_versions == ("1",)


@pytest.mark.unit
def test_duplicate_findings_tell_retries_from_redeliveries():
    from helpers.engagement import evidence

    copies = pd.DataFrame(
        {
            "message_id": ["a", "b", "c"],
            "copies": [2, 3, 2],
            "distinct_sent_at": [2, 3, 1],
            "received_spread_s": [4, 9, 60],
        }
    )
    state = _state()
    assert evidence.duplicate_cause(state, copies, "retry").holds
    assert not evidence.duplicate_cause(state, copies, "network").holds
    assert "4 extra rows" in evidence.duplicate_cause(state, copies, "retry").detail
    assert evidence.duplicate_cause(state, copies.assign(distinct_sent_at=1), "network").holds
