"""Engagement runbooks verify the complete expected state, never only the part their fix repaired.

Each test injects a fault over several days whose first day is only partly affected, leaves
behind what the pipeline's scheduled runs of those days leave, then runs the runbook's steps in
process (diagnose, fix, verify, as its notebook does) twice: once with a fix that repairs only
part of the damage (its plan narrowed with ``monkeypatch``), which Verify must fail, and once
with the real fix, which Verify must pass, with the figures equal to the clean company's.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from conftest import demo_landing, home_with_demo
from helpers.engagement import checks as engagement_checks
from helpers.engagement import event_contract, evidence, store
from helpers.engagement import runbook as rbe
from helpers.engagement.inputs import load
from helpers.engagement.marts import DAILY_COLUMNS, DAILY_TABLE, METRICS_TABLE
from helpers.engagement.run import compute
from helpers.engagement.store import write
from helpers.engagement.window import DEFAULT_WINDOW_DAYS, PIPELINE, run_window
from helpers.oncall import alerts
from helpers.runbooks import kit
from helpers.runs import records as runs
from helpers.storage import engine as engines
from helpers.storage import warehouse

pytestmark = pytest.mark.notebooks
DEMO = {"accounts": 40, "months": 2, "seed": 11, "end": "2026-10-31", "events": True}
# v2 from 12:00 UTC on the 20th (the first day half v1, half v2) to the 24th; no broken records
SCHEMA_DAYS = ("2026-10-20", "2026-10-21", "2026-10-22", "2026-10-23", "2026-10-24")
SCHEMA_FAULT = "schema_change@2026-10-20:days=5,hour=12"


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return demo_landing(tmp_path_factory, **DEMO)


@pytest.fixture(scope="module")
def schema_faulty(tmp_path_factory) -> Path:
    return demo_landing(tmp_path_factory, **DEMO, faults=(SCHEMA_FAULT,))


def day_run(day: str) -> dt.datetime:
    """What the pipeline's scheduled run of ``day`` leaves (marts, checks, alerts, its run record),
    with the contract in force; returns its ``as_of`` (04:00 the next day)."""
    eng = engines.get_engine("duckdb")
    window = run_window(day, "", DEFAULT_WINDOW_DAYS)
    result = compute(eng, load(eng, window), window)
    at = window.as_of
    run_id = runs.start_run(PIPELINE, day, now=at, as_of=at, parameters={}, code_version=None)
    write(result, run_id=run_id)
    engagement_checks.run_domain_checks(result, run_id=run_id)
    runs.finish_run(run_id, status="succeeded", now=at)
    return at


def runbook(cid: str, day: str, as_of: dt.datetime) -> tuple[kit.Diagnosis, rbe.State, kit.Verification]:
    """The runbook's steps for the open alert of ``day``, in process, with ``apply_fix=True``."""
    (alert,) = [
        a
        for a in alerts.list_alerts(open_only=True, pipeline=PIPELINE)
        if a.check_id == f"{PIPELINE}.{cid}" and a.partition == day
    ]
    ctx = kit.load_context(
        f"engagement/{cid}", alert_id=alert.alert_id, as_of=as_of, apply_fix=True, run_id="test"
    )
    diag = kit.Diagnosis(ctx, default_cause=cid)
    state = rbe.load_state(ctx, cid)
    check = diag.symptom(rbe.check_now(state))
    if cid == "schema_change":  # the notebook's finding
        fmt = evidence.new_format(check, evidence.quarantine_reasons(check))
        diag.finding(cid, "new event format deployed without notice", fmt)
    diag.conclude()
    fixed = rbe.apply_fix(ctx, diag, state)
    assert fixed is not None and fixed.applied and not fixed.error, fixed
    return diag, state, rbe.verify(ctx, diag, state)


def marts(table: str, day: str, root: Path | None = None, as_of: dt.datetime | None = None) -> pd.DataFrame:
    """``table``'s rows of ``day``: published (``root`` None), or computed afresh on ``root``."""
    cols = list(DAILY_COLUMNS) if table == DAILY_TABLE else ["date", "dau", "daily_active_accounts", "events"]
    if root is None:
        frame = warehouse.read_table(table)
    else:
        eng = engines.get_engine("duckdb")
        window = run_window(day, as_of, DEFAULT_WINDOW_DAYS, root=root)
        run = compute(eng, load(eng, window, root=root), window)
        frame = run.daily if table == DAILY_TABLE else run.metrics
    frame = frame[frame["date"].astype(str).str[:10] == day][cols]
    return frame.assign(date=day).sort_values(cols[:2]).reset_index(drop=True)


# ---------------------------------------------------------------- schema_change


def test_schema_change_declares_v2_replays_every_day_and_verifies_the_whole_state(
    home, schema_faulty, clean, monkeypatch
):
    home_with_demo(home, schema_faulty)
    for day in SCHEMA_DAYS:
        at = day_run(day)  # the contract in force declares v1 only: v2 rows are quarantined
    stuck = rbe.quarantined_days(["2"])
    assert set(SCHEMA_DAYS) <= set(stuck) and event_contract.CONTRACT.known_versions == ("1",)
    first = rbe.quarantined_days(["2"])[SCHEMA_DAYS[0]]  # the first day is only half v2

    # a partial repair: v2 declared, but only the alert's own day re-run
    with monkeypatch.context() as m:
        m.setattr(rbe, "replay_days", lambda day, versions: [day])
        diag, state, partial = runbook("schema_change", SCHEMA_DAYS[-1], at + dt.timedelta(hours=1))
    assert [d for _, d in state.targets] == [SCHEMA_DAYS[-1]]
    assert partial.passed is False
    (result,) = partial.results
    assert f"{SCHEMA_DAYS[0]} ({first})" in result.summary and "still quarantined" in result.summary
    assert alerts.list_alerts(open_only=True, pipeline=PIPELINE)  # the alert stays open

    # the fix: every received day that still quarantines v2 rows is re-run (the partial one re-ran
    # the 24th, whose window re-read the 22nd and the 23rd)
    left = list(rbe.quarantined_days(["2"]))
    assert left[:2] == list(SCHEMA_DAYS[:2]) and SCHEMA_DAYS[2] not in left
    (declared,) = event_contract.declared()
    assert declared.version == event_contract.V2 and declared.declared_by
    fix_at = at + dt.timedelta(hours=2)
    diag, state, full = runbook("schema_change", SCHEMA_DAYS[-1], fix_at)
    assert "schema_version 2 (declared in the contract since" in diag.text
    assert [d for _, d in state.targets] == [*left, SCHEMA_DAYS[-1]]  # what the partial fix left
    assert full.passed is True, full
    assert rbe.quarantined_days() == {}
    assert len(event_contract.declared()) == 1  # declaring again is a no-op
    for day in SCHEMA_DAYS:  # equal to the clean company's, the half-v2 first day included
        for table in (DAILY_TABLE, METRICS_TABLE):
            pd.testing.assert_frame_equal(
                marts(table, day), marts(table, day, clean, fix_at), check_dtype=False, obj=f"{table} {day}"
            )


@pytest.mark.unit
def test_a_declared_version_is_data_with_who_and_when(tmp_path):
    path = tmp_path / event_contract.CONTRACT_FILE
    at = dt.datetime(2026, 10, 1, 17, 30, tzinfo=dt.UTC)
    assert event_contract.declared(path) == () and event_contract.in_force(path).known_versions == ("1",)
    d = event_contract.declare(event_contract.V2, by="DE3", at=at, reason="alert 1", path=path)
    assert (d.declared_by, d.declared_at, d.reason) == ("DE3", at.isoformat(), "alert 1")
    assert event_contract.in_force(path).known_versions == ("1", "2")
    assert event_contract.declared(path)[0].version == event_contract.V2  # read back, field for field
    assert "declared_by: DE3" in path.read_text() and path.read_text().startswith("# Declared versions")
    again = event_contract.declare(event_contract.V2, by="DE4", at=at, reason="again", path=path)
    assert again.declared_by == "DE3" and len(event_contract.declared(path)) == 1
    other = event_contract.ContractVersion(
        "2", "raw_json", {**event_contract.V2.fields}, event_types=("track",)
    )
    with pytest.raises(ValueError, match="declared with another mapping"):
        event_contract.declare(other, by="DE3", at=at, reason="", path=path)
    path.write_text(path.read_text().replace("kind: epoch_ms", "kind: seconds"))
    with pytest.raises(ValueError, match=r"declared\[0\]\.fields\.event_ts\.sources\[0\]\.kind"):
        event_contract.declared(path)


# ---------------------------------------------------------------- late_events

# half of the mobile sessions of the 10th to the 13th (those days partly delivered on time)
# arrive 3 days late: each beyond the window of the run that receives it
LATE_FAULT = "late_events@2026-10-10:days=4,share=0.5,min_days=3,max_days=3"
LATE_DAYS = ("2026-10-10", "2026-10-11", "2026-10-12", "2026-10-13")


@pytest.fixture(scope="module")
def late_faulty(tmp_path_factory) -> Path:
    return demo_landing(tmp_path_factory, **DEMO, faults=(LATE_FAULT,))


def test_late_events_verify_fails_until_every_late_day_is_restated(home, late_faulty, clean, monkeypatch):
    home_with_demo(home, late_faulty)
    for day in (*LATE_DAYS, "2026-10-14", "2026-10-15", "2026-10-16"):
        at = day_run(day)
    pending = store.pending_backfill_requests()
    assert (pending["from_date"].astype(str).min(), pending["to_date"].astype(str).max()) == (
        LATE_DAYS[0],
        LATE_DAYS[-1],
    )

    # a partial repair: only the last late day restated (its window reaches back to the 11th, the
    # 10th is left as the first runs wrote it)
    with monkeypatch.context() as m:
        m.setattr(
            rbe, "perform_backfill", lambda ctx, check: kit.rerun(ctx, rbe.backfill_targets(check)[-1:])
        )
        _, state, partial = runbook("late_events", "2026-10-16", at + dt.timedelta(hours=1))
    assert partial.passed is False
    assert all(r.failed for r in partial.results)
    assert f"pending backfill requests: {LATE_DAYS[0]}" in partial.results[0].summary, partial

    fix_at = at + dt.timedelta(hours=2)
    _, state, full = runbook("late_events", "2026-10-16", fix_at)
    assert full.passed is True, full
    assert store.pending_backfill_requests().empty
    for day in LATE_DAYS:  # both late days equal the clean company's, each computed afresh
        for table in (DAILY_TABLE, METRICS_TABLE):
            pd.testing.assert_frame_equal(
                marts(table, day), marts(table, day, clean, fix_at), check_dtype=False, obj=f"{table} {day}"
            )
