"""The engagement notebook run by ``workbook run``: scraps, marts, checks, and the backfill it requests."""

from __future__ import annotations

import datetime as dt
import json
import shlex
from pathlib import Path

import pandas as pd
import pytest

from conftest import demo_landing, home_with_demo, workbook
from helpers.engagement.inputs import load
from helpers.engagement.marts import DAILY_COLUMNS, DAILY_TABLE, METRICS_TABLE
from helpers.engagement.run import compute
from helpers.engagement.store import pending_backfill_requests
from helpers.engagement.upstream import UpstreamState
from helpers.engagement.window import run_window
from helpers.oncall import alerts
from helpers.storage import engine, warehouse

pytestmark = pytest.mark.notebooks
DEMO = {"accounts": 60, "months": 3, "seed": 7, "end": "2026-10-31", "events": True}
# every mobile session of the 13th is synced exactly 3 days late: past the 3-day window
LATE = "late_events@2026-10-13:share=1.0,min_days=3,max_days=3"
# The scrap names the investor aggregate and the Engagement runbooks read: a contract.
HEADLINE = {
    "run_date": str,
    "status": str,
    "dau": int,
    "wau": int,
    "mau": int,
    "stickiness": float,
    "active_accounts": int,
    "received": int,
    "accepted": int,
    "quarantined": int,
    "duplicates": int,
    "late_beyond_window": int,
    "engine": str,
    "top_account_share": float,
}


def run(*args: str) -> dict:
    proc = workbook(*args, "--json", "-q")
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


def scraps_of(result: dict) -> dict:
    return json.loads((Path(result["archive"]) / "scraps.json").read_text())


def test_notebook_records_figures_and_a_backfill_that_restores_the_late_day(home, tmp_path_factory):
    faulty = demo_landing(tmp_path_factory, **DEMO, faults=(LATE,))
    clean = demo_landing(tmp_path_factory, **DEMO)
    home_with_demo(home, faulty)

    result = run("run", "engagement_aggregate", "--date", "2026-10-16", "--as-of", "2026-10-17T04:00:00Z")
    assert result["status"] == "succeeded", result
    scraps = scraps_of(result)
    for name, kind in HEADLINE.items():
        assert isinstance(scraps[name], kind), (name, scraps[name])
    assert scraps["engine"] == "duckdb" and scraps["status"] == "pending"  # Profit/Growth have not run
    assert scraps["received"] == scraps["accepted"] + scraps["quarantined"]
    assert (
        scraps["late_beyond_window"] > 0
        and scraps["check_statuses"]["engagement_aggregate.late_events"] == "fail"
    )
    (command,) = scraps["backfill_requests"]
    assert command.startswith(
        "workbook backfill engagement_aggregate --from 2026-10-13 --to 2026-10-13 --force --downstream"
    )
    open_ids = {a.check_id for a in alerts.list_alerts(open_only=True, pipeline="engagement_aggregate")}
    assert {"engagement_aggregate.late_events", "engagement_aggregate.upstream_missing"} <= open_ids
    pending = pending_backfill_requests()
    assert list(pending["command"]) == [command]

    daily = warehouse.read_table(DAILY_TABLE)
    assert sorted(set(daily["date"].astype(str))) == ["2026-10-14", "2026-10-15", "2026-10-16"]
    metrics = warehouse.read_table(METRICS_TABLE, where={"date": dt.date(2026, 10, 16)})
    assert int(metrics["dau"].iloc[0]) == scraps["dau"] and int(metrics["mau"].iloc[0]) == scraps["mau"]

    # the CLI performs the recorded request; the Investor dependant is blocked (Profit/Growth never ran)
    proc = workbook(*shlex.split(command)[1:], "--json")
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr
    outcomes = {(o["pipeline"], o["partition"]): o["status"] for o in json.loads(proc.stdout)["outcomes"]}
    assert outcomes[("engagement_aggregate", "2026-10-13")] == "succeeded"
    restated = warehouse.read_table(DAILY_TABLE, where={"date": dt.date(2026, 10, 13)})

    eng = engine.get_engine("duckdb")
    window = run_window("2026-10-13", "2026-10-17T04:00:00Z", 3, root=clean)
    want = compute(
        eng, load(eng, window, root=clean), window,
        upstream_reader=lambda up, p: (UpstreamState(up.pipeline, up.table, p, False, "-"), pd.DataFrame()),
    ).daily  # fmt: skip
    want = want[want["date"] == dt.date(2026, 10, 13)].reset_index(drop=True)
    got = restated.sort_values("account_id").reset_index(drop=True)
    got["date"] = pd.to_datetime(got["date"]).dt.date
    pd.testing.assert_frame_equal(got[list(DAILY_COLUMNS)], want, check_dtype=False)
