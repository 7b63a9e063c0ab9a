"""One clock in ``pipeline_runs``: run times are when runs really happened, ``as_of`` is the data frame.

The runner hands its clock to a notebook's kernel (``timeutil.CLOCK_ENV``), so the runs a runbook's
fix starts record the runner's time (the wall clock in production), not the runbook's ``as_of``;
and "the latest run" is the last one queued (then ``as_of``, then id), whatever its ``as_of``.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from helpers.checks.snapshot import load_snapshot
from helpers.core import timeutil
from helpers.runbooks import kit
from helpers.runbooks.context import record_clock
from helpers.runs import orchestrate, runner
from helpers.runs import records as runs

pytestmark = pytest.mark.unit

UTC = dt.UTC
WALL = dt.datetime(2026, 12, 6, 10, 0, tzinfo=UTC)  # "when it really happened" in these tests


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def near(clock: timeutil.Clock, want: dt.datetime) -> bool:
    """``clock`` reads ``want`` advanced by the (small) time this test took, never less."""
    got = clock()
    return want <= got < want + dt.timedelta(minutes=1)


# ---------------------------------------------------------------- the clock handed down


def test_a_handed_clock_reads_the_parents_time_advanced_by_elapsed_time():
    env = {timeutil.CLOCK_ENV: timeutil.clock_handoff(lambda: WALL)}
    clock = timeutil.handed_clock(env)
    assert clock is not None and near(clock, WALL)
    first = clock()
    assert clock() >= first  # never backwards
    assert timeutil.handed_clock({}) is None
    with pytest.raises(ValueError, match=r"WORKBOOK_CLOCK: expected <ISO timestamp>@<monotonic"):
        timeutil.handed_clock({timeutil.CLOCK_ENV: "yesterday"})


def test_the_kernel_gets_the_runners_clock_and_never_an_inherited_one(monkeypatch):
    monkeypatch.setenv(timeutil.CLOCK_ENV, timeutil.clock_handoff(lambda: at("2020-01-01T00:00")))
    env = runner.kernel_environment("run-1", clock=lambda: WALL)
    assert near(timeutil.handed_clock(env), WALL)
    assert timeutil.CLOCK_ENV not in runner.kernel_environment(None)  # no clock given: none inherited


def test_a_runbook_records_on_the_handed_clock_else_on_its_now_else_on_as_of(monkeypatch):
    as_of, now = at("2026-10-10T06:00"), at("2026-12-05T09:00")
    handed = {timeutil.CLOCK_ENV: timeutil.clock_handoff(lambda: WALL)}
    assert near(record_clock(as_of, now, handed), WALL)  # run by the runner (CLI, scheduler)
    assert near(record_clock(as_of, now, {}), now)  # run by hand: the session cell's one clock read
    assert near(record_clock(as_of, None, {}), as_of)  # a library call with neither
    monkeypatch.setenv(timeutil.CLOCK_ENV, handed[timeutil.CLOCK_ENV])
    ctx = kit.load_context("backfill", as_of="2026-10-10T06:00:00Z", now=now, apply_fix=True)
    assert ctx.as_of == as_of and near(ctx.clock, WALL)


def test_a_fix_reruns_at_the_runbooks_as_of_on_the_handed_clock(home, monkeypatch):
    calls = []
    monkeypatch.setattr(orchestrate, "backfill", lambda *a, **k: calls.append(k) or [])
    monkeypatch.setenv(timeutil.CLOCK_ENV, timeutil.clock_handoff(lambda: WALL))
    ctx = kit.load_context("backfill", as_of="2026-10-10T06:00:00Z", apply_fix=True)
    kit.rerun(ctx, [("smoke", "2026-10-09")])
    [call] = calls
    assert call["as_of"] == at("2026-10-10T06:00")  # the data frame: the runbook's as_of
    assert near(call["clock"], WALL)  # the records: when it really ran


# ---------------------------------------------------------------- the order of runs


def record(
    day: str, *, queued: dt.datetime, as_of: dt.datetime, status: str = "succeeded", run_id: str | None = None
) -> str:
    rid = runs.start_run(
        "smoke", day, now=queued, as_of=as_of, parameters={}, code_version=None, run_id=run_id
    )
    runs.finish_run(rid, status=status, now=queued + dt.timedelta(seconds=30))
    return rid


def test_the_latest_run_is_the_last_queued_whatever_its_as_of(home):
    day = "2026-10-09"
    close = record(day, queued=at("2026-12-06T09:00"), as_of=at("2026-11-16T12:00"))
    rerun = record(day, queued=at("2026-12-06T09:30"), as_of=at("2026-10-10T06:00"), status="failed")
    assert runs.latest_run("smoke", day).run_id == rerun  # it ran last: its failure is the state
    assert [r.run_id for r in runs.list_runs(pipeline="smoke")] == [rerun, close]
    snap = load_snapshot(at("2026-12-31T00:00"))
    assert list(snap.runs["run_id"]) == [close, rerun]  # oldest first, the same order
    assert snap.runs.iloc[-1]["status"] == "failed"


def test_runs_queued_at_the_same_time_are_ordered_by_as_of_then_id(home):
    day, same = "2026-10-09", at("2026-12-06T09:00")
    later = record(day, queued=same, as_of=at("2026-10-10T06:00"), run_id="smoke-a")
    earlier = record(day, queued=same, as_of=at("2026-10-10T04:00"), run_id="smoke-z")  # the id ranks last
    assert [r.run_id for r in runs.list_runs(pipeline="smoke")] == [later, earlier]
    assert list(load_snapshot(at("2026-12-31T00:00")).runs["run_id"]) == [earlier, later]


def test_order_key_ranks_records_and_rows_alike():
    a = runs.RunRecord.from_row(
        dict(
            run_id="a", pipeline="smoke", logical_date="2026-10-09", status="succeeded",
            as_of=at("2026-11-16T12:00"), parameters="{}", trigger="manual",
            queued_at=at("2026-12-06T09:00"), started_at=at("2026-12-06T09:00"),
            finished_at=None, error_summary=None, failed_cell=None, archive_path=None,
            code_version=None, validation_status=None, validation_summary=None,
        )
    )  # fmt: skip
    blocked = {"run_id": "b", "as_of": at("2026-10-10T06:00"), "queued_at": at("2026-12-06T09:30")}
    legacy = {"run_id": "c", "as_of": None, "queued_at": None, "started_at": None}
    ranked = sorted([blocked, a, legacy], key=runs.order_key)
    assert [getattr(r, "run_id", None) or r["run_id"] for r in ranked] == ["c", "a", "b"]
    assert runs.order_key(a)[0] == pd.Timestamp("2026-12-06T09:00Z").to_pydatetime()
