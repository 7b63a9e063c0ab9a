"""Monitors, alerts and scheduler slots on SQLite and PostgreSQL, through the real CLI."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pandas as pd
import pytest

from conftest import workbook
from helpers.checks.framework import CheckResult
from helpers.oncall import alerts
from helpers.runs import records as runs
from helpers.runs import scheduler
from helpers.runs.dag import RunItem
from helpers.storage import warehouse

pytestmark = pytest.mark.integration
H = dt.timedelta(hours=1)
T = dt.datetime(2026, 11, 9, 6, 30, tzinfo=dt.UTC)  # a Monday


def write_chain(day: dt.date, rows: int, *, nulls: int = 0, written_at: dt.datetime = T) -> None:
    amounts = [None] * nulls + list(range(1, rows - nulls + 1))
    frame = pd.DataFrame({"run_date": day.isoformat(), "k": range(rows), "amount_cents": amounts})
    warehouse.replace_partition("chain_table", frame, {"run_date": day.isoformat()}, written_at=written_at)


def checks_json(as_of: dt.datetime) -> tuple[int, dict]:
    proc = workbook("checks", "--pipeline", "t_down", "--as-of", as_of.isoformat(), "--json")
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_checks_and_alerts_cli_end_to_end(warehouse_url):
    last = dt.date(2026, 11, 8)  # a Sunday
    for i in range(35, 0, -1):
        day = last - dt.timedelta(days=i)
        write_chain(day, 40 if day.weekday() >= 5 else 100)
    write_chain(last, 30, nulls=2)  # 25 % under the previous Sundays, and NULLs in a critical column
    run_id = runs.start_run("smoke", "2026-11-09", now=T, as_of=T + 18 * H, parameters={}, code_version=None)
    runs.finish_run(run_id, status="succeeded", now=T + H)

    code, out = checks_json(T + 19 * H)
    assert code == 1  # a critical check failed
    failing = {r["check_id"]: r for r in out["results"]}
    assert failing["t_down.freshness"]["severity"] == "warning"
    assert failing["t_down.row_count.chain_table"]["evidence"]["variance"] == -0.25
    nulls = failing["t_down.nulls.chain_table"]
    assert nulls["evidence"]["null_counts"] == {"amount_cents": 2}
    assert [r["k"] for r in nulls["evidence"]["samples"]["amount_cents"]] == [0, 1]
    assert "smoke.freshness" not in failing  # the upstream is fresh (its run is 1 h old)

    listed = workbook("alerts", "--open", "--json", "--as-of", (T + 21 * H).isoformat())
    open_alerts = {a["check_id"]: a for a in json.loads(listed.stdout)}
    alert = open_alerts["t_down.nulls.chain_table"]
    assert (alert["severity"], alert["owner"], alert["owners"], alert["status"]) == (
        "critical",
        "DE4",
        ["DE4", "DE3"],
        "open",
    )
    assert alert["runbook"] == "notebooks/runbooks/null_critical_columns.ipynb"  # no Growth catalogue id
    assert alert["age_hours"] == 2.0 and alert["partition"] == "2026-11-08"
    # opened Mon 9 Nov 20:30 in New York, after hours; Growth fixes within 2 business days of business
    # hours (Tue 8 h, Veterans Day skipped, Thu 8 h): Thu 12 Nov 17:00 ET
    assert alert["fix_deadline"] == "2026-11-12T22:00:00+00:00"
    assert open_alerts["t_down.row_count.chain_table"]["catalogue_id"] == "late_account_updates"

    # fixed: the partition is rewritten, the next evaluation resolves what passes now
    write_chain(last, 40, written_at=T + 22 * H)
    code, out = checks_json(T + 23 * H)
    assert code == 0, out
    still_open = {a.check_id for a in alerts.list_alerts(open_only=True)}
    assert not {"t_down.nulls.chain_table", "t_down.row_count.chain_table", "t_down.freshness"} & still_open
    [resolved] = [a for a in alerts.list_alerts() if a.check_id == "t_down.nulls.chain_table"]
    assert resolved.status == "resolved" and resolved.resolved_at == T + 23 * H
    human = workbook("alerts", "--as-of", (T + 23 * H).isoformat(), "--wide")  # every column
    assert "t_down.nulls.chain_table" in human.stdout and "resolved" in human.stdout
    narrow = workbook("alerts", "--as-of", (T + 23 * H).isoformat(), env={"COLUMNS": "100"})
    assert max(map(len, narrow.stdout.splitlines())) <= 100 and "resolved" in narrow.stdout


def test_alert_dedup_index_holds_on_each_backend(warehouse_url):
    def result(status: str, at: dt.datetime) -> CheckResult:
        return CheckResult("smoke.x", "smoke", "2026-11-08", status, "warning", status, {}, at, at)  # type: ignore[arg-type]

    [first] = alerts.sync([result("fail", T)])
    [second] = alerts.sync([result("fail", T + H)])
    assert first.alert_id == second.alert_id and alerts.get_alert(first.alert_id).count == 2
    [closed] = alerts.sync([result("pass", T + 2 * H)])
    [reopened] = alerts.sync([result("fail", T + 3 * H)])
    assert closed.action == "resolved" and reopened.action == "opened"
    assert len(alerts.list_alerts()) == 2 and len(alerts.list_alerts(open_only=True)) == 1


def test_scheduler_slot_claims_are_exclusive_on_each_backend(warehouse_url):
    engine = warehouse.get_engine()
    slot = scheduler.Slot("smoke", T, RunItem("smoke", "2026-11-08", dt.date(2026, 11, 8)))
    assert scheduler._claim(slot, 1, T, engine) is True
    assert scheduler._claim(slot, 2, T, engine) is False  # claimed by this (live) process
    # a claimer that died before finishing: the slot is taken over, once
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    with engine.begin() as conn:
        conn.execute(scheduler.scheduled_slots.update().values(pid=int(dead.stdout)))
    assert scheduler._claim(slot, 3, T, engine) is True
    assert scheduler._claim(slot, 4, T, engine) is False
    [row] = scheduler.list_slots()
    assert row["tick_id"] == 3 and row["status"] == "claimed"
