"""run-all, backfill and the scheduler end to end: real CLI processes running real notebooks.

Test pipelines (tests/conftest.py): ``smoke`` writes ``smoke_table``; ``t_down`` depends on it and
doubles its partition into ``chain_table``, running its checks inside the run; ``smoke_fail``
always fails and ``t_after_fail`` depends on it. Each notebook run costs a few seconds, so the
tests share runs between assertions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from conftest import workbook
from helpers.checks import store
from helpers.runs import records as runs
from helpers.runs import scheduler
from helpers.storage import warehouse

pytestmark = pytest.mark.notebooks
DAY = "2026-11-02"
AS_OF = "2026-11-03T06:00:00Z"


def cli_json(*args: str, env: dict | None = None) -> tuple[int, dict]:
    proc = workbook(*args, "--json", "-q", env=env)
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def by_pipeline(outcomes: list[dict]) -> dict[str, dict]:
    return {o["pipeline"]: o for o in outcomes}


def test_run_all_in_dependency_order_blocks_behind_a_failure_and_alerts(home):
    code, out = cli_json(
        "run-all", "--date", DAY, "--as-of", AS_OF, "--pipelines", "smoke,t_down,smoke_fail,t_after_fail"
    )
    assert code == 1, out  # something failed
    states = by_pipeline(out["outcomes"])
    assert {p: o["status"] for p, o in states.items()} == {
        "smoke": "succeeded",
        "t_down": "succeeded",
        "smoke_fail": "failed",
        "t_after_fail": "blocked",
    }
    assert states["t_after_fail"]["reason"].startswith(
        f"upstream smoke_fail {DAY} failed (run {states['smoke_fail']['run_id']}"
    )
    blocked = runs.get_run(states["t_after_fail"]["run_id"])
    assert blocked.status == "blocked" and "upstream smoke_fail" in blocked.error_summary
    smoke, down = runs.get_run(states["smoke"]["run_id"]), runs.get_run(states["t_down"]["run_id"])
    assert smoke.finished_at <= down.started_at  # the dependant waited for its upstream
    chain = warehouse.read_table("chain_table", where={"run_date": DAY})
    assert chain["amount_cents"].tolist() == [200, 400, 600]

    # t_down's notebook ran its checks (registered + built-in) and recorded them with its run id
    recorded = {r["check_id"]: r["status"] for r in store.list_results(run_id=down.run_id)}
    assert recorded == {
        "t_down.same_rows_as_upstream": "pass",
        "t_down.nulls.chain_table": "pass",
        "t_down.row_count.chain_table": "pass",
    }

    # the failed upstream blocks the dependant again on its own: exit 3, and alerts name both
    again = workbook("run-all", "--date", DAY, "--as-of", AS_OF, "--pipelines", "t_after_fail", "-q")
    assert again.returncode == 3, again.stderr
    assert "blocked: upstream smoke_fail" in again.stderr
    listed = workbook("alerts", "--open", "--json", "--as-of", "2026-11-03T08:00:00Z")
    alerts = {(a["check_id"], a["partition"]): a for a in json.loads(listed.stdout)}
    failed = alerts[("smoke_fail.run_status", DAY)]
    assert (failed["severity"], failed["owner"], failed["runbook"]) == (
        "critical",
        "DE4",
        "notebooks/runbooks/backfill.ipynb",
    )
    assert failed["age_hours"] == 2.0
    assert alerts[("t_after_fail.run_status", DAY)]["severity"] == "warning"
    assert (
        alerts[("t_after_fail.upstream_at_risk.smoke_fail", "current")]["catalogue_id"] == "upstream_missing"
    )
    human = workbook("alerts", "--open", "--wide", "--as-of", "2026-11-03T08:00:00Z")
    assert "smoke_fail.run_status" in human.stdout and "2 h 0 min" in human.stdout

    # an upstream that never ran for the date blocks too
    code, out = cli_json("run-all", "--date", "2026-11-01", "--as-of", AS_OF, "--pipelines", "t_down")
    assert code == 3
    assert out["outcomes"][0]["reason"] == "upstream smoke 2026-11-01 has no succeeded run"


def _statuses(pipeline: str) -> list[str]:
    return [r.status for r in runs.list_runs(pipeline=pipeline, limit=100)]


def test_backfill_killed_midway_resumes_and_matches_an_uninterrupted_backfill(home, tmp_path):
    span = ("--from", "2026-11-01", "--to", "2026-11-02", "--as-of", AS_OF, "--no-checks")
    reference = tmp_path / "reference"
    (reference / "runs").mkdir(parents=True)
    (reference / "data").mkdir()
    code, out = cli_json("backfill", "smoke", *span, env={"WORKBOOK_HOME": str(reference)})
    assert code == 0 and [o["status"] for o in out["outcomes"]] == ["succeeded"] * 2

    proc = subprocess.Popen(
        [sys.executable, "-m", "helpers.cli.main", "backfill", "smoke", *span, "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes the kernel with it, like a crash
    )
    try:
        deadline = time.monotonic() + 240  # a guard against a hang, not a timing assertion
        while _statuses("smoke").count("succeeded") < 1 or "running" not in _statuses("smoke"):
            assert proc.poll() is None, "the backfill finished before it could be interrupted"
            assert time.monotonic() < deadline, "the backfill never reached its second date"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _statuses("smoke")
    assert before == ["running", "succeeded"]  # cut off in the middle of its second date

    code, out = cli_json("backfill", "smoke", *span)
    assert code == 0, out
    resumed = [(o["partition"], o["status"]) for o in out["outcomes"]]
    assert resumed == [("2026-11-01", "skipped"), ("2026-11-02", "succeeded")]  # picks up where it stopped
    dead = [r for r in runs.list_runs(pipeline="smoke", status="failed")]
    assert len(dead) == 1 and "runner died" in dead[0].error_summary

    ref_engine = warehouse.get_engine(f"sqlite:///{reference / 'runs' / 'warehouse.sqlite'}")
    pd.testing.assert_frame_equal(
        warehouse.read_table("smoke_table"), warehouse.read_table("smoke_table", engine=ref_engine)
    )

    def writes(engine: sa.Engine) -> list[tuple]:
        with engine.connect() as conn:
            q = sa.select(
                warehouse.partition_writes.c.table_name,
                warehouse.partition_writes.c.partition_key,
                warehouse.partition_writes.c.row_count,
            ).order_by(warehouse.partition_writes.c.partition_key)
            return [tuple(r) for r in conn.execute(q)]

    assert writes(warehouse.get_engine()) == writes(ref_engine)


def test_backfill_skips_done_dates_and_reruns_dependants_of_changed_ones(home):
    one_day = ("--from", DAY, "--to", DAY, "--as-of", AS_OF, "--no-checks")
    code, out = cli_json("backfill", "smoke", *one_day, "--downstream")
    assert code == 0 and [(o["pipeline"], o["status"]) for o in out["outcomes"]] == [
        ("smoke", "succeeded"),
        ("t_down", "succeeded"),
    ]
    first_down = out["outcomes"][1]["run_id"]

    code, out = cli_json("backfill", "smoke", *one_day, "--downstream")
    assert code == 0
    assert [(o["pipeline"], o["status"], o["reason"]) for o in out["outcomes"]] == [
        ("smoke", "skipped", "already succeeded"),
        ("t_down", "skipped", "up to date with its upstreams"),
    ]

    code, out = cli_json("backfill", "smoke", *one_day, "--downstream", "--force")
    assert code == 0 and [o["status"] for o in out["outcomes"]] == ["succeeded", "succeeded"]
    assert out["outcomes"][1]["run_id"] != first_down
    assert _statuses("t_down") == ["succeeded", "succeeded"]


def test_scheduler_once_is_idempotent_and_catches_up_after_an_outage(home):
    def tick(as_of: str) -> tuple[int, dict]:
        return cli_json("scheduler", "--once", "--as-of", as_of, "--pipelines", "smoke")

    code, first = tick("2026-11-02T06:20:00Z")  # smoke fires at 06:15: the first tick looks back 1 minute
    assert code == 0 and first["slots"] == [] and first["status"] == "completed"

    # down for three days: the next tick runs the three missed slots, oldest first
    code, caught_up = tick("2026-11-05T07:00:00Z")
    assert code == 0, caught_up
    assert [(s["scheduled_for"], s["partition"]) for s in caught_up["slots"]] == [
        ("2026-11-03T06:15:00+00:00", "2026-11-02"),
        ("2026-11-04T06:15:00+00:00", "2026-11-03"),
        ("2026-11-05T06:15:00+00:00", "2026-11-04"),
    ]
    assert [r["status"] for r in caught_up["runs"]] == ["succeeded"] * 3
    in_run_order = sorted(runs.list_runs(pipeline="smoke"), key=lambda r: r.started_at)
    assert [r.logical_date for r in in_run_order] == ["2026-11-02", "2026-11-03", "2026-11-04"]
    assert all(r.trigger == "scheduler" for r in in_run_order)

    # the same tick again starts nothing
    code, again = tick("2026-11-05T07:00:00Z")
    assert code == 0 and again["slots"] == [] and again["runs"] == []
    # ...even when the tick history is lost: the slots table's key refuses a second claim
    engine = warehouse.get_engine()
    with engine.begin() as conn:
        conn.execute(scheduler.scheduler_ticks.delete().where(scheduler.scheduler_ticks.c.tick_id > 1))
    code, replay = tick("2026-11-05T07:00:00Z")
    assert code == 0 and replay["window_start"] == "2026-11-02T06:20:00+00:00"
    assert replay["slots"] == [] and replay["runs"] == []
    assert len(runs.list_runs(pipeline="smoke")) == 3
    slots = scheduler.list_slots()
    assert [(s["logical_date"], s["status"]) for s in slots] == [
        ("2026-11-02", "succeeded"),
        ("2026-11-03", "succeeded"),
        ("2026-11-04", "succeeded"),
    ]
    assert all(t["status"] == "completed" for t in scheduler.list_ticks())


def test_long_running_scheduler_ticks_and_stops_cleanly_on_sigterm(home):
    proc = subprocess.Popen(
        [sys.executable, "-m", "helpers.cli.main", "scheduler", "--pipelines", "smoke"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        lines = []
        while not any(line.startswith("tick ") for line in lines):
            line = proc.stdout.readline()
            assert line, f"scheduler exited early: {proc.stderr.read()}"
            lines.append(line)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    assert "scheduler stopped after 1 tick(s)" in out
    [recorded] = scheduler.list_ticks()
    assert (recorded["mode"], recorded["status"]) == ("loop", "completed")


def test_scheduler_crontab_prints_runnable_lines(home):
    proc = workbook("scheduler", "--crontab")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    smoke = next(ln for ln in lines if "--pipelines smoke " in ln)
    assert smoke.startswith("15 6 * * * cd ") and str(Path(__file__).resolve().parents[2]) in smoke
    assert "WORKBOOK_HOME=" + str(home) in lines
