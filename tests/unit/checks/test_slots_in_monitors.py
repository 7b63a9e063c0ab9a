"""The scheduler's dropped-slot check ``<pipeline>.slots_dropped`` is a monitor like the others:
``workbook checks`` and ``workbook tick`` (``checks.evaluate_monitors``) evaluate it, not only the
scheduler's ticks; it is in the monitors' registry and routes to the backfill runbook.

The scheduler's runs are faked (``orchestrate.run_items``): only the dropped slots matter here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json

import pytest

from helpers import checks
from helpers.checks import monitors
from helpers.core import catalogue
from helpers.core import config as cfgmod
from helpers.oncall import alerts
from helpers.runs import orchestrate, records, scheduler

pytestmark = pytest.mark.unit

UTC = dt.UTC
DROPPED = ["2026-11-02", "2026-11-03", "2026-11-04"]  # smoke: daily, catch_up_days 7, ten days off
AS_OF = dt.datetime(2026, 11, 12, 6, 20, tzinfo=UTC)


@pytest.fixture
def dropped(home, monkeypatch) -> None:
    """Two scheduler ticks ten days apart: the slots of ``DROPPED`` are recorded dropped."""

    def run_items(items, **kwargs):
        return [orchestrate.Outcome(it.pipeline, it.partition, "succeeded", run_id="fake") for it in items]

    monkeypatch.setattr(orchestrate, "run_items", run_items)
    for as_of in (dt.datetime(2026, 11, 2, 6, 20, tzinfo=UTC), AS_OF):
        scheduler.tick(as_of, clock=lambda as_of=as_of: as_of, pipelines=["smoke"], hooks=())


def slot_results(results) -> dict[str, str]:
    return {r.partition: r.status for r in results if r.check_id == "smoke.slots_dropped"}


def test_the_monitors_evaluate_the_dropped_slots(dropped):
    found = [r for r in monitors.evaluate_monitors(AS_OF, pipelines=["smoke"]) if r.kind == "slots_dropped"]
    assert {r.partition: r.status for r in found} == dict.fromkeys(DROPPED, "fail")
    assert all("workbook backfill smoke --from" in r.summary for r in found)
    assert "smoke.slots_dropped" not in {
        r.check_id for r in monitors.evaluate_monitors(AS_OF, pipelines=["profit_aggregate"])
    }


def test_workbook_checks_alerts_on_dropped_slots_until_a_run_covers_them(dropped, monkeypatch):
    from helpers.cli.main import main

    monkeypatch.setenv("COLUMNS", "100")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        main(["checks", "--pipeline", "smoke", "--as-of", "2026-11-12T06:20:00Z", "--json"])
    listed = json.loads(out.getvalue())["results"]
    assert slot_results(checks.CheckResult(**r) for r in listed) == dict.fromkeys(DROPPED, "fail")
    opened = {a.partition for a in alerts.list_alerts(open_only=True) if a.check_id == "smoke.slots_dropped"}
    assert opened == set(DROPPED)
    # a backfill of 11-03 covers its dropped slot: the next evaluation resolves that alert
    rid = records.start_run("smoke", "2026-11-03", now=AS_OF, as_of=AS_OF, parameters={}, code_version=None)
    records.finish_run(rid, status="succeeded", now=AS_OF)
    results, _changes = checks.evaluate_monitors(AS_OF + dt.timedelta(hours=1), pipelines=["smoke"])
    assert slot_results(results) == {"2026-11-02": "fail", "2026-11-03": "pass", "2026-11-04": "fail"}
    still = {a.partition for a in alerts.list_alerts(open_only=True) if a.check_id == "smoke.slots_dropped"}
    assert still == {"2026-11-02", "2026-11-04"}


def test_workbook_tick_evaluates_them_too(dropped, monkeypatch):
    from helpers.cli.main import main
    from helpers.runbooks import registry

    monkeypatch.setattr(registry, "diagnose_new_alerts", lambda **kwargs: [])  # no runbook kernels here
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        main(["tick", "--as-of", "2026-11-12T06:20:00Z", "--json"])
    found = {
        a.alert_id: a.partition
        for a in alerts.list_alerts(open_only=True)
        if a.check_id == "smoke.slots_dropped"
    }
    assert sorted(found.values()) == DROPPED
    assert set(found) <= set(json.loads(out.getvalue())["alerts"]["opened"])  # opened by this tick


def test_the_registry_lists_the_dropped_slot_check_and_routes_it_to_backfill(home):
    pipes = cfgmod.get().pipelines.pipelines
    assert "smoke.slots_dropped" in catalogue.monitor_check_ids(pipes)
    route = catalogue.runbook_for("smoke.slots_dropped", "smoke", pipelines=pipes)
    assert route.runbook == catalogue.GENERAL_RUNBOOKS["run_status"]
    assert "dropped by the scheduler" in route.reason
