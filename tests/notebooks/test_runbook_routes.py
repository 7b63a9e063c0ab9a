"""Every check routes to a runbook that names a cause, on a demo company with that fault.

The storm of the on-call review: a small demo company whose data stops at a month end (every
source, mart, SLA and upstream check fails a few weeks later), plus a run that failed with an error
in a cell. Every active alert's check is routed (``catalogue.runbook_for``); the alerts are grouped
by their runbook and each runbook runs once, through the runner as the scheduler's hook runs it, on
one alert of its group: it must name a cause, not "no likely cause confirmed" nor "no problem
found". The domain checks' own faults are the fault drills' (``tests/drills``): each catalogue
runbook diagnoses its drill's fault there.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict

import pytest

from conftest import demo_landing, home_with_demo
from helpers import checks
from helpers.checks import store
from helpers.core import catalogue
from helpers.core import config as cfgmod
from helpers.oncall import alerts
from helpers.runbooks import registry as runbooks
from helpers.runbooks.kit import as_of_clock
from helpers.runs import dag, orchestrate
from helpers.runs import records as runs

pytestmark = pytest.mark.notebooks
UTC = dt.UTC
BUILT = dt.datetime(2026, 10, 1, 16, 45, tzinfo=UTC)  # September built the day the data stops
OPENED = dt.datetime(2026, 11, 5, 12, tzinfo=UTC)  # the storm's first evaluation: the alerts open
AS_OF = dt.datetime(2026, 11, 12, 12, tzinfo=UTC)  # a week later: fix deadlines missed too
SEPTEMBER = (
    ("profit_aggregate", "2026-09-30"),
    ("profit_unit", "2026-09-30"),
    ("growth_aggregate", "2026-09-30"),
    ("growth_daily", "2026-09-30"),
    ("engagement_aggregate", "2026-09-30"),
    ("investor_aggregate", "2026-09-30"),
)
NOT_CONCLUDED = ("no likely cause confirmed", "no problem found")


def _run_september(config: cfgmod.WorkbookConfig) -> None:
    for pipeline, day in SEPTEMBER:
        item = dag.run_item(config.pipelines.get(pipeline), dt.date.fromisoformat(day))
        (outcome,) = orchestrate.run_items([item], clock=as_of_clock(BUILT), as_of=BUILT, config=config)
        assert outcome.status == "succeeded", (pipeline, outcome.reason)


def _failed_run(pipeline: str, day: str) -> None:
    """A run that failed with an error in a cell (the fault of a ``run_status`` alert)."""
    at = dt.datetime.combine(dt.date.fromisoformat(day) + dt.timedelta(days=1), dt.time(6), UTC)
    run_id = runs.start_run(pipeline, day, now=at, as_of=at, parameters={}, code_version=None)
    runs.finish_run(run_id, status="failed", now=at, error_summary="KeyError: 'customers_end' (cell 7)")


@pytest.fixture
def storm(home, tmp_path_factory):
    landing = demo_landing(tmp_path_factory, accounts=40, months=3, end="2026-10-01", events=True)
    home_with_demo(home, landing)
    config = cfgmod.get()
    _run_september(config)
    _failed_run("growth_daily", "2026-11-04")
    checks.evaluate_monitors(OPENED, config=config)
    checks.evaluate_monitors(AS_OF, config=config)
    return config


def test_every_alerted_check_routes_to_a_runbook_that_names_a_cause(storm):
    pipes = storm.pipelines.pipelines
    import helpers.engagement.checks
    import helpers.growth.checks
    import helpers.investor.aggregate
    import helpers.profit.checks  # noqa: F401  (the families register their domain checks)

    domain = {c.id for c in checks.registered()}
    monitor_ids = set(catalogue.monitor_check_ids(pipes))
    evaluated = {r["check_id"] for r in store.list_results(limit=100_000)}
    for check_id in evaluated:  # every check evaluated is one the routing knows
        ref = catalogue.parse_check_id(check_id)
        assert ref.pipeline in pipes, check_id
        assert check_id in domain if ref.kind == "domain" else ref.kind in catalogue.MONITOR_SEGMENTS.values()
        if ref.kind in ("freshness", "source_freshness", "upstream_at_risk", "run_status"):
            assert check_id in monitor_ids, check_id  # the monitors' registry lists it

    groups: dict[str, list[alerts.Alert]] = defaultdict(list)
    for alert in alerts.list_alerts(open_only=True, limit=10_000):
        res = runbooks.resolve_alert(alert, storm)
        assert res.runbook is not None and res.requested is None, (alert.check_id, res.note)
        groups[res.runbook.name].append(alert)
    kinds = {catalogue.parse_check_id(a.check_id).kind for group in groups.values() for a in group}
    assert kinds >= {"freshness", "source_freshness", "sla_at_risk", "upstream_at_risk", "run_status"}
    sources = {
        catalogue.parse_check_id(a.check_id).subject
        for group in groups.values()
        for a in group
        if catalogue.parse_check_id(a.check_id).kind == "source_freshness"
    }
    # every source stopped, but October's cloud bill: the demo lands it in early November, as providers do
    assert sources == {s for p in pipes.values() for s in p.sources} - {"cloud_costs"}
    assert set(groups) >= {
        "profit/missing_subscription_data",
        "profit/expenses_wrong_month",
        "profit/finance_mismatch",
        "profit/stale_data",
        "growth/late_account_updates",
        "engagement/kafka_outage",
        "engagement/late_events",
        "month_end_close",
        "backfill",
    }

    concluded = {}
    for name, group in sorted(groups.items()):
        alert = sorted(group, key=lambda a: a.check_id)[0]
        run = runbooks.diagnose_alert(alert, clock=as_of_clock(AS_OF), as_of=AS_OF, config=storm)
        concluded[name] = (alert.check_id, run.status, run.cause, run.diagnosis)
    failures = {
        name: found
        for name, found in concluded.items()
        if found[1] != "succeeded" or not found[2] or any(t in (found[3] or "") for t in NOT_CONCLUDED)
    }
    assert failures == {}, failures
    # the cause named is the one the route says the alert is about (the general runbooks name theirs)
    for name, (check_id, _status, cause, _text) in concluded.items():
        alert = next(a for a in groups[name] if a.check_id == check_id)
        expected = runbooks.route_alert(alert, storm).catalogue_id
        assert cause == (expected or cause), (check_id, cause, expected)
    assert concluded["backfill"][2] == "job_failure"
    assert concluded["month_end_close"][2] == "month_end_close"


def test_stale_data_stepped_through_by_hand_for_a_stale_alert_diagnoses_its_evaluation(storm, tmp_path):
    """JupyterLab's "run all" with only ``alert_id`` typed in: ``as_of`` is the alert's last
    evaluation, so a source 900 hours late is late, Verify fails and someone is to be called."""
    import papermill

    from helpers.core import paths

    (alert,) = [a for a in alerts.list_alerts(open_only=True) if a.check_id == "profit_aggregate.freshness"]
    out = tmp_path / "stale_data.ipynb"
    papermill.execute_notebook(
        str(paths.notebook_path("notebooks/runbooks/profit/stale_data.ipynb")),
        str(out),
        parameters={"alert_id": str(alert.alert_id)},
        kernel_name=storm.pipelines.runner.kernel_name,
        progress_bar=False,
    )
    cells = json.loads(out.read_text())["cells"]
    text = json.dumps([o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])])
    assert f"as of {AS_OF:%Y-%m-%d %H:%M}" in text  # the alert's last evaluation, not a fixed date
    assert "DIAGNOSIS: stale_data: upstream data delayed" in text
    for wrong in ("on their usual rhythm", "verify: PASSED", "nobody yet"):
        assert wrong not in text, wrong
