"""The month_end_close runbook's evidence: the close checklist as the runbook reads it, with its own items."""

from __future__ import annotations

import pytest
import test_close_status as seeded  # a closed September seeded straight into the warehouse

from helpers.investor import close
from helpers.investor import runbook as ri
from helpers.runbooks import kit

pytestmark = pytest.mark.unit
P, AS_OF = seeded.P, seeded.AS_OF


def test_the_runbook_reads_the_close_checklist_and_adds_coverage_and_open_alerts(home):
    seeded.seed_month()
    ctx = kit.load_context("month_end_close", as_of=AS_OF)
    checklist = ri.close_checklist(ctx, P)
    status = close.close_status(P, AS_OF)
    frame = checklist.frame
    assert frame[frame["section"].isin(["runs", "checks", "monitors", "sources"])]["item"].tolist() == [
        i.item for i in status.items
    ]
    own = frame[frame["section"].isin(["coverage", "alerts"])]
    assert set(own["pipeline"]) == set(close.investor_pipelines(ctx.config)) and own["ok"].all()
    assert not checklist.holds and checklist.detail.startswith(f"close {P}: all {len(frame)} item(s) done")
    assert checklist.data["deadline"] == status.deadline and checklist.data["targets"] == []


def test_a_failing_check_past_the_deadline_is_the_symptom_with_its_target(home):
    seeded.seed_month(failing_check=True)
    ctx = kit.load_context("month_end_close", as_of=AS_OF)
    checklist = ri.close_checklist(ctx, P)
    assert checklist.holds and checklist.data["hours_left"] < 0  # the deadline has passed: MISSED
    assert (
        "MISSED" in checklist.detail and "profit_aggregate profit_aggregate.math_errors" in checklist.detail
    )
    assert checklist.data["targets"] == [["profit_aggregate", P]]
    checks = ri.close_items(checklist, section="checks")
    assert checks.holds and checks.data["targets"] == [["profit_aggregate", P]]
    assert not ri.close_items(checklist, "ran after", section="runs").holds
    assert ri.close_items(checklist, section="coverage").detail == "'coverage' done everywhere"
