"""The other four Engagement runbooks verify the complete expected state, not the part they repaired.

Companion of ``test_runbooks_engagement_complete.py`` (``schema_change``, ``late_events``), with its
helpers: each test injects a fault over several days whose first day is only partly affected,
leaves what the scheduled runs of those days leave, then runs the runbook (diagnose, fix, verify)
twice: after a partial repair Verify must fail naming the day left wrong; after the real fix it
must pass, with every fault day's marts equal to the clean company's (or, where the fault's rows
are real activity, to a fresh computation).

Where the pipeline always computes the right figures (duplicates are always dropped, the hot
account's events are real), the partial repair is stood for by a day's published rows left wrong
after the fix (:func:`corrupt`). Defects found are marked ``xfail(strict=True)`` with their reason:
each turns into a failure (XPASS) once fixed, so the marker is removed with the fix.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from test_runbooks_engagement_complete import DEMO, clean, day_run, marts, runbook

from conftest import demo_landing, home_with_demo
from helpers.engagement import runbook as rbe
from helpers.engagement.inputs import load
from helpers.engagement.marts import ACCOUNTS_TABLE, DAILY_TABLE, METRICS_TABLE
from helpers.engagement.run import compute
from helpers.engagement.window import DEFAULT_WINDOW_DAYS, PIPELINE, run_window
from helpers.oncall import alerts
from helpers.runbooks import kit
from helpers.runs import records as runs
from helpers.storage import engine as engines
from helpers.storage import warehouse

pytestmark = pytest.mark.notebooks
__all__ = ["clean"]  # the module fixture, shared


def corrupt(day: str, by: int = 7) -> None:
    """Stand for a day a partial fix did not restate: its published figures are off by ``by`` events."""
    with warehouse.get_engine().begin() as conn:
        for table in (DAILY_TABLE, METRICS_TABLE):
            conn.execute(
                sa.text(
                    f"UPDATE {table} SET events = events + :by WHERE substr(CAST(date AS TEXT), 1, 10) = :d"
                ),
                {"by": by, "d": day},
            )


def failed_days(verification) -> list[str]:
    return sorted(r.partition for r in verification.results if r.failed)


def assert_marts_as(days, root: Path, at: dt.datetime) -> None:
    """Each day's published marts equal a fresh computation from the landing zone ``root`` as of ``at``
    (the clean company's, or the company's own where the fault's rows are real activity)."""
    for day in days:
        for table in (DAILY_TABLE, METRICS_TABLE):
            pd.testing.assert_frame_equal(
                marts(table, day), marts(table, day, root, at), check_dtype=False, obj=f"{table} {day}"
            )


def open_days(cid: str) -> list[str]:
    return sorted(
        a.partition
        for a in alerts.list_alerts(open_only=True, pipeline=PIPELINE)
        if a.check_id == f"{PIPELINE}.{cid}"
    )


# ---------------------------------------------------------------- duplicate_events

DUP_FAULT = "duplicate_events@2026-10-10:days=3,share=0.05"
DUP_DAYS = ("2026-10-10", "2026-10-11", "2026-10-12")


@pytest.fixture(scope="module")
def dup_faulty(tmp_path_factory) -> Path:
    return demo_landing(tmp_path_factory, **DEMO, faults=(DUP_FAULT,))


def test_duplicate_events_verify_fails_while_a_duplicated_day_is_wrong(home, dup_faulty, clean, monkeypatch):
    home_with_demo(home, dup_faulty)
    for day in DUP_DAYS:
        at = day_run(day)
    assert open_days("duplicate_events") == list(DUP_DAYS)
    real = rbe.PLANS["duplicate_events"]

    def narrowed(ctx, diag, state):  # the fix restates the alert's day; the first day stays wrong
        targets, what, action = real(ctx, diag, state)
        return targets, what, (lambda: (action(), corrupt(DUP_DAYS[0]))) if action else None

    with monkeypatch.context() as m:
        m.setitem(rbe.PLANS, "duplicate_events", narrowed)
        _, state, partial = runbook("duplicate_events", DUP_DAYS[-1], at + dt.timedelta(hours=1))
    assert partial.passed is False
    assert DUP_DAYS[0] in failed_days(partial), partial

    assert open_days("duplicate_events") == [DUP_DAYS[0]]  # the day left wrong keeps its alert

    fix_at = at + dt.timedelta(hours=2)  # the runbook again, on what is left: the first day
    _, state, full = runbook("duplicate_events", DUP_DAYS[0], fix_at)
    assert full.passed is True, full
    assert open_days("duplicate_events") == []
    assert_marts_as(DUP_DAYS, clean, fix_at)


# ---------------------------------------------------------------- data_skew_oom

SKEW_FAULT = "data_skew_oom@2026-10-06:days=3,share=0.85"
SKEW_DAYS = ("2026-10-06", "2026-10-07", "2026-10-08")


@pytest.fixture(scope="module")
def skew_faulty(tmp_path_factory) -> Path:
    return demo_landing(tmp_path_factory, **DEMO, faults=(SKEW_FAULT,))


def skew_runs() -> dt.datetime:
    for day in SKEW_DAYS:
        at = day_run(day)
    assert open_days("data_skew_oom") == list(SKEW_DAYS)  # every day's check names the hot account
    return at


def test_data_skew_verify_fails_while_a_skewed_day_is_wrong(home, skew_faulty, monkeypatch):
    home_with_demo(home, skew_faulty)
    at = skew_runs()
    real = rbe.PLANS["data_skew_oom"]

    def narrowed(ctx, diag, state):  # the fix re-runs the alert's day; the first day stays wrong
        targets, what, action = real(ctx, diag, state)
        return targets, what, (lambda: (action(), corrupt(SKEW_DAYS[0]))) if action else None

    with monkeypatch.context() as m:
        m.setitem(rbe.PLANS, "data_skew_oom", narrowed)
        _, state, partial = runbook("data_skew_oom", SKEW_DAYS[-1], at + dt.timedelta(hours=1))
    # the check's evidence names every skewed day (its hottest one is the first)
    assert set(SKEW_DAYS) <= set(state.check.data["result"]["top_accounts_by_day"])
    assert partial.passed is False
    assert SKEW_DAYS[0] in failed_days(partial), partial


def test_data_skew_full_repair_verifies_and_publishes_fresh_figures(home, skew_faulty):
    home_with_demo(home, skew_faulty)
    at = skew_runs()
    fix_at = at + dt.timedelta(hours=2)
    for _ in SKEW_DAYS:  # the runbook on each open alert, latest first
        if not open_days("data_skew_oom"):
            break
        _, state, full = runbook("data_skew_oom", open_days("data_skew_oom")[-1], fix_at)
        assert full.passed is True, full
    assert open_days("data_skew_oom") == []
    # the automation's events are real activity: every day equals a fresh computation
    assert_marts_as(SKEW_DAYS, skew_faulty, fix_at)


# ---------------------------------------------------------------- upstream_missing

UP_FAULT = "upstream_missing@2026-10-12:days=3,delay_days=5"
UP_DAYS = ("2026-10-12", "2026-10-13", "2026-10-14")


@pytest.fixture(scope="module")
def up_faulty(tmp_path_factory) -> Path:
    return demo_landing(tmp_path_factory, **DEMO, faults=(UP_FAULT,))


def test_upstream_missing_verify_fails_until_every_upstream_has_run(home, up_faulty, clean, monkeypatch):
    home_with_demo(home, up_faulty)
    for day in UP_DAYS:  # Profit and Growth have not run for October: every day's join is pending
        at = day_run(day)
    assert open_days("upstream_missing") == list(UP_DAYS)
    real = rbe.finish_upstreams

    def profit_only(ctx, unfinished, day):  # a partial repair: Growth is left unfinished
        kept = [t for t in unfinished.data["targets"] if not t[0].startswith("growth")]
        assert len(kept) < len(unfinished.data["targets"])
        narrowed = kit.Evidence(unfinished.holds, unfinished.detail, unfinished.frame, {"targets": kept})
        return real(ctx, narrowed, day)

    with monkeypatch.context() as m:
        m.setattr(rbe, "finish_upstreams", profit_only)
        _, state, partial = runbook("upstream_missing", UP_DAYS[-1], at + dt.timedelta(hours=1))
    assert partial.passed is False
    (result,) = partial.results
    assert result.partition == UP_DAYS[-1] and "growth_aggregate has not run for 2026-10" in result.summary
    assert runs.latest_run("profit_unit", "2026-10").status == "succeeded"
    assert runs.latest_run("growth_aggregate", "2026-10") is None
    assert (warehouse.read_table(ACCOUNTS_TABLE)["status"] == "pending").any()

    fix_at = at + dt.timedelta(hours=2)
    _, state, full = runbook("upstream_missing", UP_DAYS[-1], fix_at)
    assert full.passed is True, full
    for pipeline in ("profit_unit", "growth_aggregate"):
        assert runs.latest_run(pipeline, "2026-10").status == "succeeded"
    accounts = warehouse.read_table(ACCOUNTS_TABLE)
    assert (accounts["status"] == "final").all() and accounts["revenue_usd_cents"].notna().all()
    eng = engines.get_engine("duckdb")  # the join equals a run whose upstreams had finished first
    window = run_window(UP_DAYS[-1], fix_at, DEFAULT_WINDOW_DAYS)
    want = compute(eng, load(eng, window), window).accounts
    cols = ["account_id", "events", "revenue_usd_cents", "growth_status", "status"]
    pd.testing.assert_frame_equal(
        accounts[cols].sort_values("account_id").reset_index(drop=True),
        want[cols].sort_values("account_id").reset_index(drop=True),
        check_dtype=False,
    )
    assert_marts_as(UP_DAYS, clean, fix_at)  # the daily figures never depended on the upstreams


# ---------------------------------------------------------------- kafka_outage

KAFKA_FAULT = "kafka_outage@2026-10-20:start_hour=12,hours=30"  # 12:00 on the 20th to 18:00 on the 21st
KAFKA_DAYS = ("2026-10-20", "2026-10-21")


@pytest.fixture(scope="module")
def kafka_faulty(tmp_path_factory) -> Path:
    return demo_landing(tmp_path_factory, **DEMO, faults=(KAFKA_FAULT,))


@pytest.fixture
def outage(home, kafka_faulty, clean, monkeypatch) -> dt.datetime:
    """The outage's scheduled runs on a copy of the landing zone (the fix lands new deliveries),
    with the notebook's ``replay_from`` (the topic's retained copy: the clean company's landing)."""
    shutil.copytree(kafka_faulty, home / "data" / "landing")
    for day in KAFKA_DAYS:
        at = day_run(day)
    assert open_days("kafka_outage") == list(KAFKA_DAYS)  # the first day lost its afternoon only
    real = rbe.load_state

    def with_replay(ctx, cid):
        state = real(ctx, cid)
        state.replay_from = str(clean)
        return state

    monkeypatch.setattr(rbe, "load_state", with_replay)
    return at


def test_kafka_outage_verify_fails_after_a_partial_replay(outage, monkeypatch):
    real = rbe.replay_window

    def last_hours(ctx, check, replay_from):  # a partial repair: 15:00-18:00 of the 21st only
        result = {**check.data["result"], "window_start": f"{KAFKA_DAYS[-1]}T15:00:00+00:00"}
        narrowed = kit.Evidence(check.holds, check.detail, check.frame, {**check.data, "result": result})
        return real(ctx, narrowed, replay_from)

    with monkeypatch.context() as m:
        m.setattr(rbe, "replay_window", last_hours)
        _, state, partial = runbook("kafka_outage", KAFKA_DAYS[-1], outage + dt.timedelta(hours=1))
    assert partial.passed is False
    # the 21st's stream still shows the outage, and so does the 20th's it began on
    assert failed_days(partial) == list(KAFKA_DAYS), partial
    assert "event stream down 2026-10-21 00:00-" in partial.results[0].summary, partial
    assert open_days("kafka_outage") == list(KAFKA_DAYS)


def test_kafka_outage_verify_of_one_day_covers_the_whole_outage(outage, clean):
    fix_at = outage + dt.timedelta(hours=2)
    _, state, full = runbook("kafka_outage", KAFKA_DAYS[-1], fix_at)
    assert full.passed is True, full  # the fix replayed the whole outage, its first day included
    assert_marts_as(KAFKA_DAYS, clean, fix_at)


def test_kafka_outage_full_repair_replays_every_day_of_the_outage(outage, clean):
    fix_at = outage + dt.timedelta(hours=2)
    # the runbook on the last day's alert replays the whole outage: the re-run of the 20th
    # resolves that day's alert too
    _, state, full = runbook("kafka_outage", KAFKA_DAYS[-1], fix_at)
    assert full.passed is True, full
    assert [d for _, d in state.targets] == [KAFKA_DAYS[-1]]
    assert open_days("kafka_outage") == []
    assert_marts_as(KAFKA_DAYS, clean, fix_at)  # every lost message replayed once
